//! Riding out an outage of every origin with slate (`[tenants.cache] on_outage = "slate"`,
//! live HLS media playlists). While the origin fails, the live edge keeps advancing with the
//! tenant's slate after the last good playlist's segments, one slate entry per content
//! segment the origin would have published; when the origin is back, the content resumes after
//! a discontinuity, its segments that the slate stood in for left out.
//!
//! One slate entry per content segment keeps the origin's own media sequence numbers: nothing
//! is renumbered, so when the slate has slid out of the window every node serves the origin's
//! playlist again (with its discontinuity sequence raised by the discontinuities the slate
//! added, which stays for the stream's life). Slate segments shorter than the content's are
//! joined, consecutive ones, into one entry of about a target duration (`mf_cat`: the proxy
//! serves them as one segment). Playlists are the same for every viewer of a rendition (the
//! personalized path starts from them as from the origin's) and derive from the record only.
//!
//! DASH players compute the live edge from the clock and retry failing segments by themselves:
//! MPDs are served stale (see `manifest_cache`).

use crate::ads::AdCatalog;
use crate::creatives::{AdMedia, Creatives, Packaging, RenditionWant};
use crate::manifest_cache::{Lookup, Manifest, ManifestCache};
use crate::origin::OriginError;
use crate::parse::Parsed;
use crate::route::{Class, Route};
use bytes::Bytes;
use chrono::{DateTime, FixedOffset};
use m3u8_rs::{MediaPlaylist, MediaSegment};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

pub use crate::route::CAT_PARAM;

/// At most this much slate in one outage; then the origin's failure shows.
const MAX_SLATE: Duration = Duration::from_secs(3600);

/// One slate entry: a slate segment, or consecutive ones joined.
#[derive(Debug, Clone, PartialEq)]
pub struct SlateEntry {
    /// The first segment (a path under the tenant, as the viewer sees it).
    pub path: String,
    /// File names of the segments joined after it (same directory).
    pub extra: Vec<String>,
    pub duration: f64,
}

/// The slate, cut into entries of about the content's segment duration.
#[derive(Debug, Clone, PartialEq)]
pub struct Slate {
    pub entries: Vec<SlateEntry>,
    /// `EXT-X-MAP` (fMP4).
    pub map: Option<String>,
    cycle: f64,
}

impl Slate {
    /// Joins `media`'s segments `round(target / segment)` at a time (only siblings; leftovers
    /// at the end of the slate are not used).
    pub fn from_media(media: &AdMedia, target: f64) -> Option<Slate> {
        let segs = &media.segments;
        let avg = segs.iter().map(|s| s.1).sum::<f64>() / segs.len().max(1) as f64;
        if !(avg > 0.0 && target > 0.0) {
            return None;
        }
        let per = ((target / avg).round() as usize).clamp(1, 16);
        let dir = |p: &str| p.rsplit_once('/').map(|(d, _)| d.to_string());
        let mut entries = Vec::new();
        for group in segs.chunks_exact(per) {
            let d = dir(&group[0].0)?;
            let mut extra = Vec::new();
            for (p, _) in &group[1..] {
                let (pd, name) = p.rsplit_once('/')?;
                if pd != d || name.contains('?') {
                    return Slate::from_media(media, avg); // not siblings: one at a time
                }
                extra.push(name.to_string());
            }
            entries.push(SlateEntry {
                path: group[0].0.clone(),
                extra,
                duration: group.iter().map(|s| s.1).sum(),
            });
        }
        let cycle = entries.iter().map(|e| e.duration).sum();
        (!entries.is_empty()).then_some(Slate {
            entries,
            map: media.map.clone(),
            cycle,
        })
    }

    /// Entry `j` of the endless slate, whether it starts a lap (a discontinuity), and when it
    /// starts (seconds from the outage's start).
    fn entry(&self, j: u64) -> (&SlateEntry, bool, f64) {
        let c = self.entries.len() as u64;
        let k = (j % c) as usize;
        let within: f64 = self.entries[..k].iter().map(|e| e.duration).sum();
        (
            &self.entries[k],
            k == 0,
            (j / c) as f64 * self.cycle + within,
        )
    }

    /// Entries that have ended `elapsed` seconds into the outage.
    fn ended_by(&self, elapsed: f64) -> u64 {
        if elapsed <= 0.0 || self.cycle <= 0.0 {
            return 0;
        }
        let laps = (elapsed / self.cycle).floor();
        let mut n = laps as u64 * self.entries.len() as u64;
        let mut t = laps * self.cycle;
        for e in &self.entries {
            t += e.duration;
            if t > elapsed + 1e-6 {
                break;
            }
            n += 1;
        }
        n
    }
}

/// What the renditions of one stream (those one master lists) share in an outage. Players
/// align renditions by media sequence number, so the slate starts, grows and ends at the same
/// numbers in each: a video rendition that went back to content one segment before its audio
/// would leave the two a segment apart for good.
struct Shared {
    /// The first content segment the slate stands in for.
    start: u64,
    /// When the slate starts (the end of the segment before), wall clock.
    t0: SystemTime,
    /// The first rendition's slate, which counts the entries for all: renditions' slates
    /// differ by milliseconds, enough to put their counts one apart near an entry's end.
    grid: Slate,
    /// Entries shown so far (never fewer on a later playlist).
    shown: AtomicU64,
    /// Set when the origin is back: the slate's length for good.
    end: OnceLock<u64>,
}

impl Shared {
    /// Entries the clock says are out at `now`.
    fn due_at(&self, now: SystemTime) -> u64 {
        let elapsed = now.duration_since(self.t0).unwrap_or_default();
        self.grid.ended_by(elapsed.min(MAX_SLATE).as_secs_f64())
    }

    /// Entries to show at `now`: never fewer than were shown, and no more once it ended.
    fn due(&self, now: SystemTime) -> u64 {
        if let Some(n) = self.end.get() {
            return *n;
        }
        let n = self.due_at(now);
        self.shown.fetch_max(n, Ordering::Relaxed).max(n)
    }

    /// The origin is back with a playlist whose live edge is before segment `edge`: the slate
    /// ends there (it stood in for what the origin could not serve), and never before what
    /// viewers were shown. The first rendition to see the origin back decides for all.
    fn end_at(&self, edge: u64, now: SystemTime) -> u64 {
        *self.end.get_or_init(|| {
            let edge = edge.saturating_sub(self.start);
            self.shown
                .load(Ordering::Relaxed)
                .max(self.due_at(now).min(edge))
        })
    }
}

/// One outage of one rendition: where the slate starts, and how much of it was shown.
pub struct Record {
    /// The last good playlist, up to the stream's slate start.
    base: MediaPlaylist,
    /// Its last segment's number: slate entry `j` stands in for content segment
    /// `last_seq + 1 + j`.
    last_seq: u64,
    /// Entries before the stream's slate start: a last good copy older than the other
    /// renditions' cannot show what it does not have (0 but in that case).
    lead: u64,
    /// Its date-time at the slate's start, if the playlist carries them.
    pdt0: Option<DateTime<FixedOffset>>,
    slate: Slate,
    /// How slate URIs are written: relative to the playlist's directory.
    dir: String,
    /// The stream's outage.
    shared: Arc<Shared>,
    /// Discontinuity tags the origin put on segments numbered past `last_seq` (what the
    /// slate replaced, and where the content resumes), as far as playlists have shown them.
    origin_discs: parking_lot::Mutex<BTreeMap<u64, bool>>,
}

impl Record {
    /// The record of a rendition whose last good copy is `base`, joining the stream's outage
    /// if another rendition started it (and it has not ended).
    fn new(
        base: &MediaPlaylist,
        fetched: SystemTime,
        slate: Slate,
        dir: &str,
        stream: Option<Arc<Shared>>,
    ) -> Option<Record> {
        let mut base = base.clone();
        let stream = stream.filter(|s| s.end.get().is_none() && base.media_sequence < s.start);
        if let Some(s) = &stream {
            // what the other renditions replace with slate, this one does too
            let keep = (s.start - base.media_sequence).min(base.segments.len() as u64);
            base.segments.truncate(keep as usize);
        }
        let last = base.segments.last()?;
        let last_seq = base.media_sequence + base.segments.len() as u64 - 1;
        let pdt_end = last.program_date_time.and_then(|p| {
            p.checked_add_signed(chrono::Duration::milliseconds(
                (last.duration as f64 * 1000.0) as i64,
            ))
        });
        let shared = match stream {
            Some(s) => s,
            None => {
                // when that segment ended by its date-time, kept within two target durations
                // of when the playlist was fetched (the origin's clock may not be ours)
                let slack = Duration::from_secs(base.target_duration.clamp(1, 86_400) * 2);
                let earliest = fetched.checked_sub(slack).unwrap_or(fetched);
                let t0 = pdt_end
                    .map(|p| {
                        SystemTime::UNIX_EPOCH
                            + Duration::from_millis(p.timestamp_millis().max(0) as u64)
                    })
                    .map_or(fetched, |t| t.clamp(earliest, fetched));
                Arc::new(Shared {
                    start: last_seq + 1,
                    t0,
                    grid: slate.clone(),
                    shown: AtomicU64::new(0),
                    end: OnceLock::new(),
                })
            }
        };
        Some(Record {
            lead: shared.start.saturating_sub(last_seq + 1),
            base,
            last_seq,
            pdt0: pdt_end,
            slate,
            dir: dir.to_string(),
            shared,
            origin_discs: parking_lot::Mutex::new(BTreeMap::new()),
        })
    }

    /// Entries to show at `now`.
    fn due(&self, now: SystemTime) -> u64 {
        self.lead + self.shared.due(now)
    }

    /// The slate's length once the origin is back.
    fn end(&self) -> Option<u64> {
        self.shared.end.get().map(|n| self.lead + n)
    }

    /// The origin is back with `p`: the slate's length for good (see [`Shared::end_at`]).
    fn end_at(&self, p: &MediaPlaylist, now: SystemTime) -> u64 {
        let edge = p.media_sequence + p.segments.len() as u64;
        self.lead + self.shared.end_at(edge, now)
    }

    fn fmp4(&self) -> bool {
        self.base.segments.iter().any(|s| s.map.is_some())
    }

    /// Slate entry `j` as a playlist segment.
    fn slate_segment(&self, j: u64) -> MediaSegment {
        let (e, lap, at) = self.slate.entry(j);
        // always the joined form (even of one segment): served from the pinned copy
        let mut uri = format!(
            "{}?{CAT_PARAM}={}",
            relative(&self.dir, &e.path),
            e.extra.join(",")
        );
        let starts = j == 0 || lap;
        if starts && !self.fmp4() && e.path.ends_with(".ts") {
            // its audio leads to its video's decode time, like any creative's first segment
            let sep = if uri.contains('?') { '&' } else { '?' };
            uri.push_str(&format!("{sep}{}=1", crate::route::LEAD_PARAM));
        }
        let unencrypted = self.base.segments.iter().any(|s| {
            s.key
                .as_ref()
                .is_some_and(|k| k.method != m3u8_rs::KeyMethod::None)
        });
        MediaSegment {
            uri,
            duration: e.duration as f32,
            discontinuity: starts,
            map: (starts && self.fmp4())
                .then_some(self.slate.map.as_ref())
                .flatten()
                .map(|m| m3u8_rs::Map {
                    uri: format!("{}?{CAT_PARAM}=", relative(&self.dir, m)),
                    ..Default::default()
                }),
            key: (starts && unencrypted).then(|| m3u8_rs::Key {
                method: m3u8_rs::KeyMethod::None,
                ..Default::default()
            }),
            program_date_time: self.pdt0.and_then(|p| {
                p.checked_add_signed(chrono::Duration::milliseconds((at * 1000.0) as i64))
            }),
            ..Default::default()
        }
    }

    /// The playlist while the origin is down: the last good one's segments, then `n` slate
    /// entries, the window sliding by one segment per entry.
    pub fn during(&self, n: u64) -> MediaPlaylist {
        let mut out = self.base.clone();
        let w = out.segments.len() as u64;
        // n entries in, n out: the window keeps its length; only what stays is built
        let base_gone = n.min(w) as usize;
        let slate_gone = n.saturating_sub(w);
        let c = self.slate.entries.len() as u64;
        let discs_gone = out.segments[..base_gone]
            .iter()
            .filter(|s| s.discontinuity)
            .count() as u64
            + slate_gone.div_ceil(c);
        let content_map = self.content_map();
        out.segments.drain(..base_gone);
        out.segments
            .extend((slate_gone..n).map(|j| self.slate_segment(j)));
        out.media_sequence = self.base.media_sequence + n;
        out.discontinuity_sequence = self.base.discontinuity_sequence + discs_gone;
        self.fix_first(&mut out, content_map);
        out.target_duration = self.target(&out);
        out.end_list = false;
        out
    }

    /// The playlist once the origin is back: `p` (the origin's) with the content the slate
    /// stood in for replaced by it. `None` once the slate has left the window; then the
    /// discontinuity sequence offset that stays is in [`Record::offset`].
    pub fn after(&self, p: &MediaPlaylist) -> Option<MediaPlaylist> {
        let n = self.end()?;
        let (l, r) = (self.last_seq, self.last_seq + 1 + n);
        let first = p.media_sequence;
        {
            let mut learned = self.origin_discs.lock();
            for (i, s) in p.segments.iter().enumerate() {
                let seq = first + i as u64;
                if seq > l && seq <= r {
                    learned.insert(seq, s.discontinuity);
                }
            }
        }
        if first > r || n == 0 {
            return None;
        }
        let content_map = self.content_map();
        let mut out = p.clone();
        out.segments.clear();
        for (i, s) in p.segments.iter().enumerate() {
            let seq = first + i as u64;
            if seq <= l {
                out.segments.push(s.clone());
            }
        }
        for j in 0..n {
            if l + 1 + j >= first {
                out.segments.push(self.slate_segment(j));
            }
        }
        for (i, s) in p.segments.iter().enumerate() {
            let seq = first + i as u64;
            if seq >= r {
                let mut s = s.clone();
                if seq == r {
                    s.discontinuity = true;
                    if s.map.is_none() {
                        s.map = content_map.clone();
                    }
                    if s.key.is_none() {
                        s.key = self.content_key();
                    }
                }
                out.segments.push(s);
            }
        }
        // what left the window before `first`: the slate's discontinuities came in, the
        // origin's on the content it replaced did not
        let ours_gone = (0..n)
            .filter(|&j| l + 1 + j < first && self.slate.entry(j).1 | (j == 0))
            .count() as i64;
        let gone_to = first.min(r).max(l + 1);
        let theirs_gone = self
            .origin_discs
            .lock()
            .range(l + 1..gone_to)
            .filter(|(_, d)| **d)
            .count() as i64;
        out.discontinuity_sequence =
            (p.discontinuity_sequence as i64 + ours_gone - theirs_gone).max(0) as u64;
        self.fix_first(&mut out, content_map);
        out.target_duration = self.target(&out);
        Some(out)
    }

    /// The discontinuity sequence offset left once the slate is out of the window: the
    /// discontinuities it added (each lap and the return to content) less those of the
    /// origin's segments it replaced.
    pub fn offset(&self) -> i64 {
        let n = self.end().unwrap_or(0);
        let (l, r) = (self.last_seq, self.last_seq + 1 + n);
        let laps = (0..n).filter(|&j| j == 0 || self.slate.entry(j).1).count() as i64;
        let discs = self.origin_discs.lock();
        let returned = i64::from(!discs.get(&r).copied().unwrap_or(false));
        let theirs = discs
            .range(l + 1..r.max(l + 1))
            .filter(|(_, d)| **d)
            .count() as i64;
        laps + returned - theirs
    }

    fn content_map(&self) -> Option<m3u8_rs::Map> {
        self.base.segments.iter().rev().find_map(|s| s.map.clone())
    }

    fn content_key(&self) -> Option<m3u8_rs::Key> {
        self.base.segments.iter().rev().find_map(|s| s.key.clone())
    }

    /// The first segment of a window carries the init (fMP4) and key in force there.
    fn fix_first(&self, out: &mut MediaPlaylist, content_map: Option<m3u8_rs::Map>) {
        let Some(first) = out.segments.first_mut() else {
            return;
        };
        if self.fmp4() && first.map.is_none() {
            first.map = if first.uri.contains("ads/") || first.uri.contains(CAT_PARAM) {
                self.slate.map.as_ref().map(|m| m3u8_rs::Map {
                    uri: format!("{}?{CAT_PARAM}=", relative(&self.dir, m)),
                    ..Default::default()
                })
            } else {
                content_map
            };
        }
    }

    fn target(&self, out: &MediaPlaylist) -> u64 {
        let longest = out
            .segments
            .iter()
            .map(|s| s.duration.round() as u64)
            .max()
            .unwrap_or(0);
        self.base.target_duration.max(longest)
    }
}

/// `to` (a path under the tenant) relative to directory `dir` (ending in `/`).
fn relative(dir: &str, to: &str) -> String {
    let from: Vec<&str> = dir
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let target: Vec<&str> = to.trim_start_matches('/').split('/').collect();
    let common = from
        .iter()
        .zip(&target)
        .take_while(|(a, b)| a == b)
        .count()
        .min(target.len().saturating_sub(1));
    let mut out = "../".repeat(from.len() - common);
    out.push_str(&target[common..].join("/"));
    out
}

/// The outages of every rendition, shared by all requests (and carried over reloads), and the
/// slate they need, pinned: the slate lives on the tenant's origin, which is down when it is
/// needed, so each rendition's slate is fetched while the origin is up and kept.
pub struct Outages {
    records: moka::sync::Cache<Arc<str>, Arc<Record>>,
    /// The outage of each stream (tenant and master, see [`Outages::stream_key`]).
    streams: moka::sync::Cache<String, Arc<Shared>>,
    /// What stays once a record is done: the discontinuity sequence offset of the rendition.
    offsets: moka::sync::Cache<Arc<str>, i64>,
    /// Built playlists, by key and what they were built from.
    built: moka::sync::Cache<(Arc<str>, u64), Arc<Manifest>>,
    /// The slate media of each rendition (tenant, packaging, rendition), resolved in advance.
    slates: moka::sync::Cache<(String, Packaging, RenditionWant), Arc<AdMedia>>,
    /// Renditions whose slate was fetched lately (by manifest key).
    warmed: moka::sync::Cache<Arc<str>, ()>,
    /// Slate segments, by path under the tenant (served joined: `mf_cat`).
    pub parts: moka::sync::Cache<(String, String), Bytes>,
}

impl Default for Outages {
    fn default() -> Self {
        Outages {
            records: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(3 * 3600))
                .build(),
            streams: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(3 * 3600))
                .build(),
            offsets: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(6 * 3600))
                .build(),
            built: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            slates: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(6 * 3600))
                .build(),
            warmed: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            parts: moka::sync::Cache::builder()
                .max_capacity(64 << 20)
                .weigher(|k: &(String, String), v: &Bytes| {
                    (k.0.len() + k.1.len() + v.len()).min(u32::MAX as usize) as u32
                })
                .time_to_idle(Duration::from_secs(6 * 3600))
                .build(),
        }
    }
}

fn live_media(m: &Manifest) -> Option<&MediaPlaylist> {
    match &m.parsed {
        Parsed::HlsMedia { playlist, .. } if m.kind.is_live() && !playlist.end_list => {
            Some(playlist)
        }
        _ => None,
    }
}

impl Outages {
    /// The manifest to serve for `got` (what the manifest cache answered), for tenants in
    /// slate mode: slate while the origin fails, the content back after it, the origin's
    /// answer otherwise (and the rendition's slate fetched in the background, for later).
    pub async fn through(
        self: &Arc<Self>,
        manifests: &Arc<ManifestCache>,
        catalog: Option<&Arc<AdCatalog>>,
        route: &Route,
        got: Result<(Arc<Manifest>, Lookup), Arc<OriginError>>,
    ) -> Result<(Arc<Manifest>, Lookup), Arc<OriginError>> {
        if !route.tenant.slate_outage || route.class != Class::HlsPlaylist {
            return got;
        }
        let key = manifests.key(route);
        let failing = match &got {
            Err(_) => true,
            Ok((_, Lookup::Stale)) => true,
            Ok((m, _)) => m.status.is_server_error(),
        };
        if failing {
            return match self.slate(route, &key, manifests) {
                Some(m) => Ok((m, Lookup::Stale)),
                None => got,
            };
        }
        let Ok((m, lookup)) = got else { return got };
        let Some(p) = live_media(&m) else {
            return Ok((m, lookup));
        };
        if self.warmed.get(&key).is_none() {
            self.warmed.insert(key.clone(), ());
            let fmp4 = p.segments.iter().any(|s| s.map.is_some());
            if let Some(catalog) = catalog {
                let (manifests, catalog) = (manifests.clone(), catalog.clone());
                tokio::spawn(warm(self.clone(), manifests, catalog, route.clone(), fmp4));
            }
        }
        let id = Arc::as_ptr(&m) as u64;
        if let Some(rec) = self.records.get(&key) {
            rec.end_at(p, SystemTime::now());
            match rec.after(p) {
                Some(out) => {
                    let built = self.build(&key, id, &m, &out, route);
                    return Ok((built, lookup));
                }
                None => {
                    let offset = rec.offset() + self.offsets.get(&key).unwrap_or(0);
                    self.offsets.insert(key.clone(), offset);
                    self.records.invalidate(&key);
                    tracing::info!(tenant = %route.tenant.id, path = %route.origin_path, offset, "the outage's slate has left the window");
                }
            }
        }
        match self.offsets.get(&key) {
            Some(off) if off != 0 => {
                let mut out = p.clone();
                out.discontinuity_sequence =
                    (out.discontinuity_sequence as i64 + off).max(0) as u64;
                Ok((self.build(&key, id, &m, &out, route), lookup))
            }
            _ => Ok((m, lookup)),
        }
    }

    /// Which stream a rendition belongs to: the master that listed it (`mf_g`), else just
    /// itself.
    fn stream_key(route: &Route, key: &str) -> String {
        match &route.group {
            Some(g) => format!("{}|{g}", route.tenant.id),
            None => key.to_string(),
        }
    }

    /// The slate playlist for a failing origin, if the rendition has a last good live playlist
    /// and its slate was fetched while the origin was up.
    fn slate(
        &self,
        route: &Route,
        key: &Arc<str>,
        manifests: &ManifestCache,
    ) -> Option<Arc<Manifest>> {
        let good = manifests.last_good(key)?;
        let rec = match self.records.get(key) {
            Some(r) if r.end().is_some() => return None, // flapping: stale it is
            Some(r) => r,
            None => {
                let base = live_media(&good)?;
                let fmp4 = base.segments.iter().any(|s| s.map.is_some());
                let packaging = if fmp4 { Packaging::Fmp4 } else { Packaging::Ts };
                let slate_key = (
                    route.tenant.id.clone(),
                    packaging,
                    RenditionWant::for_hint(route.hint),
                );
                let Some(media) = self.slates.get(&slate_key) else {
                    tracing::warn!(tenant = %route.tenant.id, path = %route.origin_path, "outage: no slate fetched for this rendition; serving stale");
                    return None;
                };
                let target = base
                    .segments
                    .iter()
                    .map(|s| s.duration as f64)
                    .fold(0.0, f64::max);
                let slate = Slate::from_media(&media, target)?;
                let dir = route
                    .content_path
                    .rsplit_once('/')
                    .map_or("/".to_string(), |(d, _)| format!("{d}/"));
                let fetched = SystemTime::now() - good.fetched.elapsed();
                let stream = Self::stream_key(route, key);
                let joined = self.streams.get(&stream);
                let rec = Arc::new(Record::new(base, fetched, slate, &dir, joined.clone())?);
                if !joined.is_some_and(|s| Arc::ptr_eq(&s, &rec.shared)) {
                    tracing::warn!(tenant = %route.tenant.id, path = %route.origin_path, "origin down: the live edge goes on with slate");
                    self.streams.insert(stream, rec.shared.clone());
                }
                self.records.insert(key.clone(), rec.clone());
                rec
            }
        };
        let n = rec.due(SystemTime::now());
        let out = rec.during(n);
        crate::metrics::METRICS
            .outage_manifests
            .with_label_values(&[route.tenant.id.as_str(), "slate"])
            .inc();
        Some(self.build(key, u64::MAX - n, &good, &out, route))
    }

    /// A playlist as a manifest (parsed, so the personalized path takes it as the origin's),
    /// built once per key and source.
    fn build(
        &self,
        key: &Arc<str>,
        id: u64,
        like: &Manifest,
        out: &MediaPlaylist,
        route: &Route,
    ) -> Arc<Manifest> {
        let cache_key = (key.clone(), id);
        if let Some(m) = self.built.get(&cache_key) {
            return m;
        }
        let mut text = Vec::with_capacity(like.body.len() + 1024);
        let _ = out.write_to(&mut text);
        let m = Arc::new(Manifest::synthesized(like, Bytes::from(text), route));
        self.built.insert(cache_key, m.clone());
        m
    }

    /// A slate segment from the pinned copy, fetched now if it is not there yet.
    pub async fn part(
        &self,
        manifests: &ManifestCache,
        route: &Route,
        path: &str,
    ) -> Result<Bytes, String> {
        let key = (route.tenant.id.clone(), path.to_string());
        if let Some(b) = self.parts.get(&key) {
            return Ok(b);
        }
        let origin_path = format!("{}{path}", route.tenant.origin.base_path);
        let f = manifests
            .origin()
            .fetch(&route.tenant, &origin_path)
            .await
            .map_err(|e| e.to_string())?;
        if f.status != http::StatusCode::OK {
            return Err(format!("{path}: origin answered {}", f.status));
        }
        let mut b = f.body;
        if route.tenant.normalize_cmaf && crate::cmaf_timing::is_fmp4(path, None) {
            b = crate::cmaf_timing::Normalizer::default()
                .push(Some(b), true)
                .unwrap_or_default();
        }
        self.parts.insert(key, b.clone());
        Ok(b)
    }
}

/// Resolves a rendition's slate and fetches its segments, while the origin is up.
async fn warm(
    outages: Arc<Outages>,
    manifests: Arc<ManifestCache>,
    catalog: Arc<AdCatalog>,
    route: Route,
    fmp4: bool,
) {
    let resolver = catalog.resolver(&manifests, "");
    let Some(slate) = resolver.slate() else {
        return;
    };
    let packaging = if fmp4 { Packaging::Fmp4 } else { Packaging::Ts };
    let want = RenditionWant::for_hint(route.hint);
    let media = match resolver.media(slate, packaging, want).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(tenant = %route.tenant.id, error = %e, "slate for outages: cannot resolve");
            return;
        }
    };
    let paths: Vec<String> = media
        .segments
        .iter()
        .map(|(p, _)| p.clone())
        .chain(media.map.clone())
        .collect();
    for path in &paths {
        let path = path.split('?').next().unwrap_or_default();
        if let Err(e) = outages.part(&manifests, &route, path).await {
            tracing::warn!(tenant = %route.tenant.id, error = %e, "slate for outages: cannot fetch a segment");
            return;
        }
    }
    outages
        .slates
        .insert((route.tenant.id.clone(), packaging, want), media);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(first: u64, n: usize, disc_seq: u64) -> MediaPlaylist {
        let t0 = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").unwrap();
        MediaPlaylist {
            version: Some(3),
            target_duration: 2,
            media_sequence: first,
            discontinuity_sequence: disc_seq,
            segments: (0..n as u64)
                .map(|i| MediaSegment {
                    uri: format!("v0/{}.ts", first + i),
                    duration: 2.0,
                    program_date_time: t0
                        .checked_add_signed(chrono::Duration::seconds(2 * (first + i) as i64)),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn slate() -> Slate {
        let media = AdMedia {
            segments: (0..10)
                .map(|i| (format!("/ads/slate/hls/v0/{i}.ts"), 1.0))
                .collect(),
            map: None,
        };
        Slate::from_media(&media, 2.0).unwrap()
    }

    fn record(base: &MediaPlaylist) -> Record {
        Record::new(base, SystemTime::now(), slate(), "/live/hls/", None).unwrap()
    }

    #[test]
    fn slate_segments_are_joined_to_the_content_duration() {
        let s = slate();
        assert_eq!(s.entries.len(), 5);
        assert_eq!(
            s.entries[1],
            SlateEntry {
                path: "/ads/slate/hls/v0/2.ts".into(),
                extra: vec!["3.ts".into()],
                duration: 2.0
            }
        );
        assert_eq!(s.ended_by(0.5), 0);
        assert_eq!(s.ended_by(2.0), 1);
        assert_eq!(s.ended_by(23.0), 11);
        assert_eq!(
            relative("/live/hls/", "/ads/slate/hls/v0/2.ts"),
            "../../ads/slate/hls/v0/2.ts"
        );
        assert_eq!(relative("/", "/ads/x.ts"), "ads/x.ts");
    }

    #[test]
    fn during_the_outage_the_window_slides_with_slate() {
        let base = content(100, 5, 3);
        let r = record(&base);
        let p0 = r.during(0);
        assert_eq!((p0.media_sequence, p0.segments.len()), (100, 5));
        let p2 = r.during(2);
        assert_eq!(
            p2.media_sequence, 102,
            "one content segment out per slate entry"
        );
        assert_eq!(p2.segments.len(), 5);
        assert_eq!(
            p2.segments[3].uri,
            "../../ads/slate/hls/v0/0.ts?mf_cat=1.ts&mf_lead=1"
        );
        assert!(p2.segments[3].discontinuity && !p2.segments[4].discontinuity);
        // date-times continue across the slate
        let end = base.segments[4].program_date_time.unwrap() + chrono::Duration::seconds(2);
        assert_eq!(p2.segments[3].program_date_time, Some(end));
        // a lap of the slate is another discontinuity; the sequence counts those that left
        let p12 = r.during(12);
        assert_eq!(p12.media_sequence, 112);
        let discs: Vec<bool> = p12.segments.iter().map(|s| s.discontinuity).collect();
        assert_eq!(discs, [false, false, false, true, false]);
        assert_eq!(
            p12.discontinuity_sequence,
            3 + 2,
            "the first entry and one lap left"
        );
    }

    #[test]
    fn the_renditions_of_a_stream_start_and_end_the_slate_at_the_same_segments() {
        // video's last good copy ends at 104; audio's was fetched later (105), a subtitle
        // rendition's earlier (103)
        let now = SystemTime::now();
        let video = Record::new(&content(100, 5, 3), now, slate(), "/live/", None).unwrap();
        let join = |base: MediaPlaylist| {
            Record::new(&base, now, slate(), "/live/", Some(video.shared.clone())).unwrap()
        };
        let (audio, subs) = (join(content(101, 5, 3)), join(content(99, 5, 3)));
        let slate_from = |r: &Record, n: u64| {
            let p = r.during(n);
            let i = p
                .segments
                .iter()
                .position(|s| s.uri.contains("slate"))
                .unwrap();
            p.media_sequence + i as u64
        };
        assert_eq!(slate_from(&video, 2), 105);
        assert_eq!(
            slate_from(&audio, 2),
            105,
            "what video replaced, audio does"
        );
        assert_eq!(
            subs.lead, 1,
            "an older copy cannot show 104: slate from there"
        );
        assert_eq!(slate_from(&subs, 3), 104);
        assert_eq!(audio.due(now) + 1, subs.due(now));
        // the first rendition to see the origin back decides where content resumes, for all,
        // whatever live edge the others see when they come back
        video.shared.shown.store(3, Ordering::Relaxed);
        let resumes = |r: &Record, p: MediaPlaylist| {
            r.end_at(&p, now);
            let out = r.after(&p).unwrap();
            let i = out
                .segments
                .iter()
                .position(|s| s.uri == "v0/108.ts")
                .unwrap();
            assert!(out.segments[i].discontinuity);
            assert!(out.segments[i - 1].uri.contains("slate"));
            out.media_sequence + i as u64
        };
        assert_eq!(resumes(&video, content(104, 5, 3)), 108);
        assert_eq!(resumes(&audio, content(105, 5, 3)), 108);
        assert_eq!(resumes(&subs, content(105, 5, 3)), 108);
        // and no rendition's slate grows past it, even one still served the outage's copy
        assert_eq!(audio.due(now + Duration::from_secs(60)), 3);
    }

    #[test]
    fn the_content_comes_back_after_the_slate_with_its_own_numbers() {
        let base = content(100, 5, 3);
        let r = record(&base);
        r.shared.shown.store(3, Ordering::Relaxed);
        r.shared.end.get_or_init(|| 3);
        // the origin back: its window 103..107 (105, 106, 107 were being produced meanwhile;
        // the slate stood in for them)
        let p = content(103, 5, 3);
        let out = r.after(&p).unwrap();
        assert_eq!(out.media_sequence, 103);
        let uris: Vec<&str> = out.segments.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "v0/103.ts",
                "v0/104.ts",
                "../../ads/slate/hls/v0/0.ts?mf_cat=1.ts&mf_lead=1",
                "../../ads/slate/hls/v0/2.ts?mf_cat=3.ts",
                "../../ads/slate/hls/v0/4.ts?mf_cat=5.ts",
            ]
        );
        // the origin reaches 108: content resumes there, after a discontinuity
        let p = content(104, 5, 3);
        let out = r.after(&p).unwrap();
        assert_eq!(out.media_sequence, 104);
        assert_eq!(out.segments.last().unwrap().uri, "v0/108.ts");
        assert!(out.segments.last().unwrap().discontinuity);
        assert_eq!(out.discontinuity_sequence, 3);
        // the slate's first entry left with 105: one discontinuity more in the count
        let p = content(106, 5, 3);
        let out = r.after(&p).unwrap();
        assert_eq!(out.media_sequence, 106);
        assert_eq!(out.discontinuity_sequence, 4);
        // all of it gone: the origin's playlist, its count raised by what the slate added
        assert!(r.after(&content(109, 5, 3)).is_none());
        assert_eq!(r.offset(), 2, "the slate's start and the return to content");
    }
}
