//! One simulated viewer, HLS or DASH, behaving like a player at the live edge.
//!
//! **HLS**: fetch the master (a personalized master starts a session; its variant URIs, often
//! absolute paths, lead into it), pick variant `id mod n` of the ladder sorted by bandwidth and
//! the audio rendition of its group if it has a URI, then per track: load the media playlist
//! (following redirects, and reloading from where the redirect led, so the viewer stays in its
//! session), download the last 3 segments, then every new one in full (each new `EXT-X-MAP`
//! once). Reload a target duration after the last load started if the playlist changed, half
//! of it if not (RFC 8216 §6.3.4). On each reload, with probability `--abr-switch`, switch the
//! video track to another variant, continuing at the next sequence number.
//!
//! **DASH**: fetch the MPD (following redirects, then reloading from its `Location`), every
//! `minimumUpdatePeriod` reload it, resolve which segments are available now ([`super::mpd`])
//! for one video representation (spread over the ladder, same ABR switches) and the audio, and
//! download those newer than the last one fetched, starting at the live edge (last 3).
//!
//! Every successful manifest load is checked against the session's earlier ones
//! ([`super::consistency`]) and its staleness recorded; every request lands in the metrics.

use super::consistency::{
    hash_of, is_ad_uri, DashChecker, HlsChecker, MediaFacts, MpdFacts, SegmentFacts,
};
use super::http::{BodyMode, Client, FetchError, Fetched};
use super::metrics::{Kind, Metrics};
use super::mpd::{self, Clock, From, Media};
use super::scenario::Rng;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use url::Url;

/// HLS or DASH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Hls,
    Dash,
}

impl Protocol {
    /// From the target URL's extension.
    pub fn of_url(url: &Url) -> Option<Protocol> {
        let path = url.path();
        if path.ends_with(".m3u8") {
            Some(Protocol::Hls)
        } else if path.ends_with(".mpd") {
            Some(Protocol::Dash)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Hls => "hls",
            Protocol::Dash => "dash",
        }
    }
}

/// How viewers behave.
#[derive(Debug, Clone)]
pub struct PlayerOptions {
    /// Probability, per reload, that a viewer switches its video rendition.
    pub abr_switch: f64,
    /// Segments from the live edge a viewer starts with.
    pub live_edge_segments: usize,
    /// Largest manifest accepted.
    pub max_manifest_bytes: usize,
    pub seed: u64,
    /// Appended to the entry URL's query; `{viewer}` becomes the viewer's number.
    pub query: Option<String>,
    /// Send CMCD (CTA-5004) in query form on every request, as hls.js, dash.js and Shaka do
    /// by default when CMCD is on: a different `CMCD=` value each time.
    pub cmcd: bool,
}

impl Default for PlayerOptions {
    fn default() -> Self {
        PlayerOptions {
            abr_switch: 0.02,
            live_edge_segments: 3,
            max_manifest_bytes: 8 << 20,
            seed: 1,
            query: None,
            cmcd: false,
        }
    }
}

/// A parsed HLS playlist.
#[derive(Debug)]
pub enum HlsDoc {
    Master(MasterFacts),
    Media(MediaFacts),
}

/// What a viewer needs from a master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterFacts {
    /// (URI, bandwidth, audio group), sorted by bandwidth; I-frame playlists left out.
    pub variants: Vec<(String, u64, Option<String>)>,
    /// Audio renditions with a URI: (group, URI, default).
    pub audio: Vec<(String, String, bool)>,
}

impl MasterFacts {
    /// The audio rendition for a variant's group: the default one, else the first.
    pub fn audio_for(&self, group: Option<&str>) -> Option<&str> {
        let group = group?;
        let in_group = || self.audio.iter().filter(move |a| a.0 == group);
        in_group()
            .find(|a| a.2)
            .or_else(|| in_group().next())
            .map(|a| a.1.as_str())
    }
}

/// Parses an HLS playlist into what the viewer and the checks use.
pub fn parse_hls(body: &[u8]) -> Result<HlsDoc, String> {
    match m3u8_rs::parse_playlist_res(body) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => {
            let mut variants: Vec<(String, u64, Option<String>)> = m
                .variants
                .into_iter()
                .filter(|v| !v.is_i_frame)
                .map(|v| (v.uri, v.bandwidth, v.audio))
                .collect();
            variants.sort_by_key(|v| v.1);
            let audio = m
                .alternatives
                .into_iter()
                .filter(|a| a.media_type == m3u8_rs::AlternativeMediaType::Audio)
                .filter_map(|a| Some((a.group_id, a.uri?, a.default)))
                .collect();
            Ok(HlsDoc::Master(MasterFacts { variants, audio }))
        }
        Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => {
            let mut map: Option<String> = None;
            let segments = m
                .segments
                .into_iter()
                .map(|s| {
                    if let Some(m) = &s.map {
                        map = Some(m.uri.clone());
                    }
                    let cue = s.daterange.as_ref().is_some_and(|d| {
                        d.other_attributes
                            .as_ref()
                            .is_some_and(|o| o.keys().any(|k| k.starts_with("SCTE35")))
                    }) || s
                        .unknown_tags
                        .iter()
                        .any(|t| t.tag.starts_with("X-CUE-OUT") || t.tag == "X-CUE-IN");
                    SegmentFacts {
                        uri_hash: hash_of(s.uri.as_str()),
                        is_ad: is_ad_uri(&s.uri),
                        duration: s.duration as f64,
                        discontinuity: s.discontinuity,
                        pdt_ms: s.program_date_time.map(|t| t.timestamp_millis()),
                        map: map.clone(),
                        cue,
                        uri: s.uri,
                    }
                })
                .collect();
            Ok(HlsDoc::Media(MediaFacts {
                target_duration: m.target_duration as f64,
                media_sequence: m.media_sequence,
                discontinuity_sequence: m.discontinuity_sequence,
                end_list: m.end_list,
                segments,
            }))
        }
        Err(e) => {
            let mut msg = e.to_string();
            msg.truncate(200);
            Err(format!("not an HLS playlist: {msg}"))
        }
    }
}

/// A parsed MPD with its consistency facts.
pub struct MpdDoc {
    pub mpd: dash_mpd_core::MPD,
    pub facts: MpdFacts,
}

pub fn parse_mpd(body: &[u8]) -> Result<MpdDoc, String> {
    let text = std::str::from_utf8(body).map_err(|_| "MPD is not UTF-8".to_string())?;
    let mpd = dash_mpd_core::parse(text).map_err(|e| {
        let mut msg = e.to_string();
        msg.truncate(200);
        format!("not an MPD: {msg}")
    })?;
    let facts = mpd::facts(&mpd);
    Ok(MpdDoc { mpd, facts })
}

/// Parsed documents by body: viewers of an unpersonalized stream share one parse per reload
/// instead of one each. Bounded; cleared when full.
pub struct ParseCache<T> {
    map: Mutex<HashMap<(u64, usize), Arc<T>>>,
    cap: usize,
}

impl<T> ParseCache<T> {
    pub fn new(cap: usize) -> Self {
        ParseCache {
            map: Mutex::new(HashMap::new()),
            cap,
        }
    }

    /// The parsed document and the body's hash.
    pub fn get(
        &self,
        body: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<(Arc<T>, u64), String> {
        let h = hash_of(body);
        let key = (h, body.len());
        if let Some(v) = self.map.lock().get(&key) {
            return Ok((v.clone(), h));
        }
        let v = Arc::new(parse(body)?);
        let mut map = self.map.lock();
        if map.len() >= self.cap {
            map.clear();
        }
        map.insert(key, v.clone());
        Ok((v, h))
    }
}

/// What all viewers share.
pub struct Shared {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub opts: PlayerOptions,
    pub stop: watch::Receiver<bool>,
    hls: ParseCache<HlsDoc>,
    mpds: ParseCache<MpdDoc>,
    /// Numbers each CMCD-carrying request (so no two carry the same values).
    cmcd_seq: std::sync::atomic::AtomicU64,
}

/// The `CMCD` query value of request `n` of this kind: buffer length, throughput, object
/// type and so on change from request to request, as a real player's do.
fn cmcd_value(kind: Kind, n: u64) -> String {
    let ot = match kind {
        Kind::Master | Kind::Playlist | Kind::Mpd => "m",
        Kind::Init => "i",
        Kind::Segment => "v",
    };
    let raw = format!(
        "bl={},br={},d=2000,mtp={},ot={ot},sf=h,sid=\"{:016x}\",su,v=1",
        (n % 300) * 100,
        400 + (n % 7) * 100,
        10_000 + (n * 37) % 50_000,
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 8,
    );
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

impl Shared {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        opts: PlayerOptions,
        stop: watch::Receiver<bool>,
    ) -> Shared {
        Shared {
            client,
            metrics,
            opts,
            stop,
            hls: ParseCache::new(256),
            mpds: ParseCache::new(64),
            cmcd_seq: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// GET, recorded in the metrics.
    async fn fetch(&self, kind: Kind, url: &Url) -> Option<Fetched> {
        let f = self.fetch_unrecorded(kind, url).await?;
        self.record_ok(kind, &f);
        Some(f)
    }

    /// GET, with only a failure recorded (as `kind`): the caller records success.
    async fn fetch_unrecorded(&self, kind: Kind, url: &Url) -> Option<Fetched> {
        let mode = if kind.is_manifest() {
            BodyMode::Collect {
                limit: self.opts.max_manifest_bytes,
            }
        } else {
            BodyMode::Count
        };
        let with_cmcd;
        let url = if self.opts.cmcd {
            let n = self
                .cmcd_seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut u = url.clone();
            let q = match u.query() {
                Some(q) if !q.is_empty() => format!("{q}&CMCD={}", cmcd_value(kind, n)),
                _ => format!("CMCD={}", cmcd_value(kind, n)),
            };
            u.set_query(Some(&q));
            with_cmcd = u;
            &with_cmcd
        } else {
            url
        };
        match self.client.get(url, mode).await {
            Ok(f) => Some(f),
            Err(e) => {
                self.record_error(kind, url, &e);
                None
            }
        }
    }

    fn record_ok(&self, kind: Kind, f: &Fetched) {
        self.metrics.ok(kind, f.latency, f.wait, f.bytes);
        if f.redirects > 0 {
            self.metrics
                .add(&self.metrics.counters.redirects, f.redirects as u64);
        }
    }

    fn record_error(&self, kind: Kind, url: &Url, e: &FetchError) {
        self.metrics.request_error(kind, &e.kind(), || {
            format!("{} {}: {e}", kind.name(), url.as_str())
        });
    }

    fn parse_error(&self, kind: Kind, url: &Url, e: &str) {
        self.metrics
            .parse_error(kind, || format!("{} {}: {e}", kind.name(), url.as_str()));
    }

    fn violations(&self, url: &Url, v: Vec<super::consistency::Violation>) {
        for v in v {
            self.metrics
                .violation(v.kind, || format!("{}: {}", url.path(), v.detail));
        }
    }
}

/// Keeps the active-viewer gauge right however the viewer ends (including abort).
struct Presence<'a>(&'a Metrics);

impl Drop for Presence<'_> {
    fn drop(&mut self) {
        self.0.viewer_gone();
    }
}

/// Sleeps until `until`; true if the run is stopping.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, until: Instant) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep_until(until.into()) => *stop.borrow(),
        r = stop.changed() => r.is_err() || *stop.borrow(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The entry URL of viewer `id`, with `--query` appended.
pub fn entry_url(target: &Url, query: Option<&str>, id: u64) -> Url {
    let mut u = target.clone();
    if let Some(q) = query {
        let q = q.replace("{viewer}", &id.to_string());
        let joined = match u.query() {
            Some(existing) if !existing.is_empty() => format!("{existing}&{q}"),
            _ => q,
        };
        u.set_query(Some(&joined));
    }
    u
}

/// Runs viewer `id` until the run stops (or it is aborted, when churn replaces it).
pub async fn viewer(sh: Arc<Shared>, id: u64, target: Url, protocol: Protocol) {
    sh.metrics.viewer_joined();
    let _presence = Presence(&sh.metrics);
    let entry = entry_url(&target, sh.opts.query.as_deref(), id);
    let rng = Rng::for_viewer(sh.opts.seed, id);
    match protocol {
        Protocol::Hls => hls_viewer(&sh, id, entry, rng).await,
        Protocol::Dash => dash_viewer(&sh, id, entry, rng).await,
    }
}

const RETRY: Duration = Duration::from_secs(1);

mod dash;
mod hls;
mod ll;
use dash::dash_viewer;
use hls::hls_viewer;

/// Init segments a track has fetched (a few; the oldest forgotten first).
#[derive(Default)]
struct Inits(Vec<u64>);

impl Inits {
    /// True if `url` is new (and remembers it).
    fn first_time(&mut self, url: &Url) -> bool {
        let h = hash_of(url.as_str());
        if self.0.contains(&h) {
            return false;
        }
        if self.0.len() >= 16 {
            self.0.remove(0);
        }
        self.0.push(h);
        true
    }
}

#[cfg(test)]
mod tests;
