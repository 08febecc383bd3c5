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

async fn hls_viewer(sh: &Shared, id: u64, entry: Url, mut rng: Rng) {
    let mut stop = sh.stop.clone();
    // the master (or a media playlist given directly), retried until it works
    let (doc, url) = loop {
        if let Some(f) = sh.fetch_unrecorded(Kind::Master, &entry).await {
            match sh.hls.get(&f.body, parse_hls) {
                Ok((doc, _)) => {
                    let kind = match &*doc {
                        HlsDoc::Master(_) => Kind::Master,
                        HlsDoc::Media(_) => Kind::Playlist,
                    };
                    sh.record_ok(kind, &f);
                    break (doc, f.url);
                }
                Err(e) => {
                    sh.record_ok(Kind::Master, &f);
                    sh.parse_error(Kind::Master, &f.url, &e);
                }
            }
        }
        if sleep_or_stop(&mut stop, Instant::now() + RETRY).await {
            return;
        }
    };
    match &*doc {
        HlsDoc::Media(_) => {
            let mut track = HlsTrack::new(sh, url, None, 0, false);
            track.run(&mut rng).await;
        }
        HlsDoc::Master(m) => {
            let variants: Vec<Url> = m
                .variants
                .iter()
                .filter_map(|(uri, _, _)| url.join(uri).ok())
                .collect();
            if variants.is_empty() {
                sh.parse_error(Kind::Master, &url, "master playlist without variants");
                return;
            }
            let vi = (id % variants.len() as u64) as usize;
            let audio = m
                .audio_for(m.variants[vi].2.as_deref())
                .and_then(|u| url.join(u).ok());
            let mut video = HlsTrack::new(sh, variants[vi].clone(), Some(variants), vi, true);
            match audio {
                Some(a) => {
                    let mut audio = HlsTrack::new(sh, a, None, 0, false);
                    let mut arng = Rng::for_viewer(sh.opts.seed ^ 0xA0D1_0000, id);
                    tokio::join!(video.run(&mut rng), audio.run(&mut arng));
                }
                None => video.run(&mut rng).await,
            }
        }
    }
}

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

struct HlsTrack<'a> {
    sh: &'a Shared,
    url: Url,
    variants: Option<Vec<Url>>,
    variant: usize,
    /// Video follows ABR switches; audio stays.
    switches: bool,
    checkers: HashMap<String, HlsChecker>,
    last_seq: Option<u64>,
    last_body: u64,
    inits: Inits,
    /// Newest sequence number seen and when, for staleness without date-times.
    advanced: Option<(u64, Instant)>,
    downloaded: usize,
}

impl<'a> HlsTrack<'a> {
    fn new(
        sh: &'a Shared,
        url: Url,
        variants: Option<Vec<Url>>,
        variant: usize,
        switches: bool,
    ) -> Self {
        HlsTrack {
            sh,
            url,
            variants,
            variant,
            switches,
            checkers: HashMap::new(),
            last_seq: None,
            last_body: 0,
            inits: Inits::default(),
            advanced: None,
            downloaded: 0,
        }
    }

    async fn run(&mut self, rng: &mut Rng) {
        let sh = self.sh;
        let m = &sh.metrics;
        let mut stop = sh.stop.clone();
        let mut target = Duration::from_secs(2);
        loop {
            if *stop.borrow() {
                return;
            }
            let t0 = Instant::now();
            let Some(f) = sh.fetch(Kind::Playlist, &self.url).await else {
                if sleep_or_stop(&mut stop, t0 + target / 2).await {
                    return;
                }
                continue;
            };
            // reload from where a redirect led: the session
            self.url = f.url;
            let (doc, body_hash) = match sh.hls.get(&f.body, parse_hls) {
                Ok(d) => d,
                Err(e) => {
                    sh.parse_error(Kind::Playlist, &self.url, &e);
                    if sleep_or_stop(&mut stop, t0 + target / 2).await {
                        return;
                    }
                    continue;
                }
            };
            let HlsDoc::Media(pl) = &*doc else {
                sh.parse_error(
                    Kind::Playlist,
                    &self.url,
                    "a master where a media playlist was expected",
                );
                if sleep_or_stop(&mut stop, t0 + target).await {
                    return;
                }
                continue;
            };
            target = Duration::from_secs_f64(pl.target_duration.clamp(0.5, 60.0));
            let changed = body_hash != self.last_body;
            self.last_body = body_hash;
            // consistency, per playlist of the session
            let checker = self
                .checkers
                .entry(self.url.path().to_string())
                .or_default();
            let v = checker.observe(pl);
            m.add(&m.counters.reloads_checked, 1);
            if !v.is_empty() {
                sh.violations(&self.url, v);
            }
            if pl.shows_break() {
                m.add(&m.counters.manifests_with_breaks, 1);
            }
            self.staleness(pl);
            // new segments, from the live edge on the first load
            let msn = pl.media_sequence;
            let len = pl.segments.len();
            let from = match self.last_seq {
                None if pl.end_list => 0,
                None => len.saturating_sub(sh.opts.live_edge_segments),
                Some(last) if last + 1 < msn => {
                    m.add(&m.counters.segments_skipped, msn - last - 1);
                    0
                }
                Some(last) => ((last + 1 - msn) as usize).min(len),
            };
            for (i, s) in pl.segments.iter().enumerate().skip(from) {
                if *stop.borrow() {
                    return;
                }
                if pl.end_list && self.downloaded >= sh.opts.live_edge_segments {
                    // VOD: one segment per its duration once the buffer is filled
                    let pace =
                        Instant::now() + Duration::from_secs_f64(s.duration.clamp(0.0, 60.0));
                    if sleep_or_stop(&mut stop, pace).await {
                        return;
                    }
                }
                self.download(s).await;
                self.last_seq = Some(msn + i as u64);
            }
            if pl.end_list {
                return;
            }
            if self.switches && rng.chance(sh.opts.abr_switch) {
                if let Some(vs) = &self.variants {
                    if vs.len() > 1 {
                        let step = 1 + rng.below(vs.len() as u64 - 1) as usize;
                        self.variant = (self.variant + step) % vs.len();
                        self.url = vs[self.variant].clone();
                        self.last_body = 0;
                        m.add(&m.counters.abr_switches, 1);
                    }
                }
            }
            let wait = if changed { target } else { target / 2 };
            if sleep_or_stop(&mut stop, t0 + wait).await {
                return;
            }
        }
    }

    async fn download(&mut self, s: &SegmentFacts) {
        let sh = self.sh;
        if let Some(map) = &s.map {
            match self.url.join(map) {
                Ok(u) => {
                    if self.inits.first_time(&u) {
                        sh.fetch(Kind::Init, &u).await;
                    }
                }
                Err(e) => sh.parse_error(
                    Kind::Playlist,
                    &self.url,
                    &format!("bad EXT-X-MAP URI {map:?}: {e}"),
                ),
            }
        }
        match self.url.join(&s.uri) {
            Ok(u) => {
                if sh.fetch(Kind::Segment, &u).await.is_some() && s.is_ad {
                    sh.metrics.add(&sh.metrics.counters.ad_segments, 1);
                }
                self.downloaded += 1;
            }
            Err(e) => sh.parse_error(
                Kind::Playlist,
                &self.url,
                &format!("bad segment URI {:?}: {e}", s.uri),
            ),
        }
    }

    /// How far behind live the playlist is: now minus the end of its newest segment (by
    /// program date-time), else the time since the media sequence last advanced.
    fn staleness(&mut self, pl: &MediaFacts) {
        if pl.end_list {
            return;
        }
        let newest = pl.media_sequence + pl.segments.len() as u64;
        let now = Instant::now();
        match self.advanced {
            Some((n, _)) if n >= newest => {}
            _ => self.advanced = Some((newest, now)),
        }
        let behind = match pl
            .segments
            .last()
            .and_then(|s| s.pdt_ms.map(|t| (t, s.duration)))
        {
            Some((t, d)) => {
                let end = t + (d * 1000.0).round() as i64;
                Duration::from_millis((now_ms() - end).max(0) as u64)
            }
            None => match self.advanced {
                Some((_, at)) => now.duration_since(at),
                None => return,
            },
        };
        self.sh.metrics.staleness(behind);
    }
}

/// Per media type: the newest segment fetched and the inits fetched.
#[derive(Default)]
struct DashCursor {
    after: Option<f64>,
    inits: Inits,
}

async fn dash_viewer(sh: &Shared, id: u64, entry: Url, mut rng: Rng) {
    let m = &sh.metrics;
    let mut stop = sh.stop.clone();
    let mut checker = DashChecker::default();
    let mut video_index = id as usize;
    let mut video = DashCursor::default();
    let mut audio = DashCursor::default();
    let mut url = entry;
    let mut period = Duration::from_secs(2);
    let mut first = true;
    loop {
        if *stop.borrow() {
            return;
        }
        let t0 = Instant::now();
        let kind = Kind::Mpd;
        let Some(f) = sh.fetch(kind, &url).await else {
            let wait = if first { RETRY } else { period / 2 };
            if sleep_or_stop(&mut stop, t0 + wait).await {
                return;
            }
            continue;
        };
        let doc = match sh.mpds.get(&f.body, parse_mpd) {
            Ok((d, _)) => d,
            Err(e) => {
                sh.parse_error(kind, &f.url, &e);
                if sleep_or_stop(&mut stop, t0 + period / 2).await {
                    return;
                }
                continue;
            }
        };
        let mpd = &doc.mpd;
        // reload from the MPD's Location (the session), else from where redirects led
        url = match mpd.locations.first().map(|l| f.url.join(l.url.trim())) {
            Some(Ok(u)) => u,
            _ => f.url.clone(),
        };
        let dynamic = mpd.mpdtype.as_deref() == Some("dynamic");
        period = mpd
            .minimumUpdatePeriod
            .filter(|d| !d.is_zero())
            .or(mpd.maxSegmentDuration)
            .unwrap_or(Duration::from_secs(2))
            .clamp(Duration::from_millis(500), Duration::from_secs(60));
        let v = checker.observe(&doc.facts);
        m.add(&m.counters.reloads_checked, 1);
        if !v.is_empty() {
            sh.violations(&f.url, v);
        }
        if doc.facts.shows_break {
            m.add(&m.counters.manifests_with_breaks, 1);
        }
        let clock = Clock::of(mpd, now_ms());
        if dynamic {
            if let Some(edge) = mpd::live_edge(mpd, clock) {
                m.staleness(Duration::from_secs_f64(
                    (clock.now - edge).clamp(0.0, 86_400.0),
                ));
            }
        }
        if !first && rng.chance(sh.opts.abr_switch) {
            video_index += 1 + rng.below(7) as usize;
            m.add(&m.counters.abr_switches, 1);
        }
        let n = sh.opts.live_edge_segments;
        let from = |c: &DashCursor| c.after.map(From::After).unwrap_or(From::LiveEdge(n));
        let (vf, af) = (from(&video), from(&audio));
        let plan = match mpd::plan(mpd, &f.url, clock, video_index, |media| match media {
            Media::Video => vf,
            Media::Audio => af,
        }) {
            Ok(p) => p,
            Err(e) => {
                sh.parse_error(kind, &f.url, &e.to_string());
                if sleep_or_stop(&mut stop, t0 + period).await {
                    return;
                }
                continue;
            }
        };
        // a joining viewer takes the last few segments over all periods
        let (vt, at): (Vec<_>, Vec<_>) = plan.into_iter().partition(|t| t.media == Media::Video);
        let vt = live_edge_only(vt, vf, n);
        let at = live_edge_only(at, af, n);
        tokio::join!(
            download_dash(sh, &vt, &mut video, &stop),
            download_dash(sh, &at, &mut audio, &stop)
        );
        first = false;
        if !dynamic {
            return;
        }
        if sleep_or_stop(&mut stop, t0 + period).await {
            return;
        }
    }
}

/// With [`From::LiveEdge`], keeps only the last `n` segments over all periods.
fn live_edge_only(mut tracks: Vec<mpd::TrackPlan>, from: From, n: usize) -> Vec<mpd::TrackPlan> {
    if let From::LiveEdge(_) = from {
        let mut keep = n;
        for t in tracks.iter_mut().rev() {
            let k = t.segments.len().min(keep);
            t.segments.drain(..t.segments.len() - k);
            keep -= k;
        }
    }
    tracks
}

async fn download_dash(
    sh: &Shared,
    tracks: &[mpd::TrackPlan],
    cursor: &mut DashCursor,
    stop: &watch::Receiver<bool>,
) {
    for t in tracks {
        for s in &t.segments {
            if *stop.borrow() {
                return;
            }
            if cursor.after.is_some_and(|a| s.start <= a + 1e-3) {
                continue;
            }
            match t.init_url() {
                Ok(Some(u)) if cursor.inits.first_time(&u) => {
                    sh.fetch(Kind::Init, &u).await;
                }
                Ok(_) => {}
                Err(e) => {
                    sh.parse_error(Kind::Mpd, &t.base, &e.to_string());
                    return;
                }
            }
            match t.media_url(s) {
                Ok(u) => {
                    if sh.fetch(Kind::Segment, &u).await.is_some() && is_ad_uri(u.path()) {
                        sh.metrics
                            .counters
                            .ad_segments
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    sh.parse_error(Kind::Mpd, &t.base, &e.to_string());
                    return;
                }
            }
            cursor.after = Some(s.start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_masters_and_media_playlists() {
        let master = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en\",DEFAULT=YES,URI=\"/t/~s/live/cmaf/a0.m3u8?mf_v=a\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=300,AUDIO=\"aud\"\nhi.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=100,AUDIO=\"aud\"\nlo.m3u8\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=50,URI=\"if.m3u8\"\n";
        let HlsDoc::Master(m) = parse_hls(master.as_bytes()).unwrap() else {
            panic!("not a master")
        };
        assert_eq!(m.variants.len(), 2);
        assert_eq!(m.variants[0].0, "lo.m3u8");
        assert_eq!(
            m.audio_for(Some("aud")),
            Some("/t/~s/live/cmaf/a0.m3u8?mf_v=a")
        );
        assert_eq!(m.audio_for(None), None);
        let media = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:12\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n\
#EXT-X-MAP:URI=\"v1/init.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-11-26T12:11:18.240Z\n#EXTINF:2.0,\nv1/12.m4s\n\
#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"/t/~s/ads/ad30/cmaf/v1/init.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-11-26T12:11:20.240Z\n\
#EXT-X-CUE-OUT:DURATION=30\n#EXTINF:2.0,\n/t/~s/ads/ad30/cmaf/v1/0.m4s?mf_b=splice-1&mf_s=0\n";
        let HlsDoc::Media(p) = parse_hls(media.as_bytes()).unwrap() else {
            panic!("not media")
        };
        assert_eq!((p.media_sequence, p.discontinuity_sequence), (12, 1));
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[0].map.as_deref(), Some("v1/init.mp4"));
        assert!(!p.segments[0].is_ad && p.segments[1].is_ad);
        assert!(p.segments[1].discontinuity && p.segments[1].cue);
        assert_eq!(
            p.segments[1].map.as_deref(),
            Some("/t/~s/ads/ad30/cmaf/v1/init.mp4")
        );
        assert_eq!(p.segments[0].pdt_ms.unwrap() % 1000, 240);
        assert!(p.shows_break());
        assert!(parse_hls(b"<html>").is_err());
    }

    #[test]
    fn entry_urls_carry_the_viewer_query() {
        let t = Url::parse("http://127.0.0.1:8080/t/live/hls/master.m3u8?a=1").unwrap();
        assert_eq!(entry_url(&t, None, 3), t);
        assert_eq!(
            entry_url(&t, Some("uid={viewer}&device=tv"), 3).as_str(),
            "http://127.0.0.1:8080/t/live/hls/master.m3u8?a=1&uid=3&device=tv"
        );
        let t = Url::parse("http://127.0.0.1:8080/m.mpd").unwrap();
        assert_eq!(
            entry_url(&t, Some("v={viewer}"), 9).as_str(),
            "http://127.0.0.1:8080/m.mpd?v=9"
        );
    }

    #[test]
    fn parse_cache_shares_identical_bodies() {
        let c: ParseCache<String> = ParseCache::new(2);
        let calls = std::cell::Cell::new(0);
        let parse = |b: &[u8]| {
            calls.set(calls.get() + 1);
            Ok(String::from_utf8_lossy(b).into_owned())
        };
        let (a, ha) = c.get(b"one", parse).unwrap();
        let (b, hb) = c.get(b"one", parse).unwrap();
        assert!(Arc::ptr_eq(&a, &b) && ha == hb);
        assert_eq!(calls.get(), 1);
        c.get(b"two", parse).unwrap();
        c.get(b"three", parse).unwrap(); // full: cleared, then inserted
        assert_eq!(calls.get(), 3);
        assert!(c.get(b"bad", |_| Err::<String, _>("no".into())).is_err());
    }

    #[test]
    fn joining_takes_the_last_segments_over_periods() {
        let seg = |start: f64| mpd::SegRef {
            number: 0,
            time: 0,
            start,
            end: start + 2.0,
        };
        let track = |id: &str, starts: &[f64]| mpd::TrackPlan {
            media: Media::Video,
            period_id: id.into(),
            base: Url::parse("http://127.0.0.1/").unwrap(),
            rep_id: "v".into(),
            bandwidth: 0,
            media_template: "$Number$".into(),
            init_template: None,
            segments: starts.iter().map(|&s| seg(s)).collect(),
        };
        let t = live_edge_only(
            vec![track("0", &[20.0, 22.0, 24.0]), track("ad", &[26.0, 28.0])],
            From::LiveEdge(3),
            3,
        );
        assert_eq!(t[0].segments.len(), 1);
        assert_eq!(t[1].segments.len(), 2);
        let t = live_edge_only(vec![track("0", &[20.0, 22.0])], From::After(1.0), 3);
        assert_eq!(t[0].segments.len(), 2);
    }
}
