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

use crate::catalog::AdCatalog;
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

mod record;
mod slate;
pub use record::*;
pub use slate::*;

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
            if let Some(catalog) = &route.tenant.catalog {
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
    let resolver = catalog.resolver(&route.tenant, &manifests, "");
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
