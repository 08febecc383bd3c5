//! Step 2 (manifests): a coalescing cache of origin manifests. Concurrent misses for one
//! manifest share a single origin fetch (moka's `or_try_insert_with`); each entry lives as long
//! as its kind allows: half a target duration for live playlists (or the origin's `max-age` if
//! shorter), longer for masters and VOD.

use crate::cache_policy::{capped_ttl, origin_directives};
use crate::config::TenantCachePolicy;
use crate::origin::{Fetched, OriginClient, OriginError};
use crate::parse::{parse, ManifestKind, Parsed};
use crate::route::Route;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use manifold_ssai::low_latency::{Blocking, Progress};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Origin response headers worth passing on with a manifest.
fn passed_on(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "content-type"
            | "cache-control"
            | "expires"
            | "etag"
            | "last-modified"
            | "timing-allow-origin"
    ) || n.starts_with("access-control-")
}

/// A cached origin manifest.
#[derive(Debug)]
pub struct Manifest {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub kind: ManifestKind,
    /// Parsed once here, for every request personalizing it.
    pub parsed: Parsed,
    /// The parsed view in the plugin bindings' types, made on the first plugin call.
    pub wire: std::sync::OnceLock<Option<crate::plugin::Wire>>,
    pub ttl: Duration,
    pub fetched: Instant,
    /// A live manifest's window: what its segments span (HLS) or its time-shift buffer (DASH).
    pub window: Option<Duration>,
    /// LL-HLS: where its segments and parts stand (a playlist that can block reloads).
    pub progress: Option<Progress>,
}

impl Manifest {
    fn new(f: Fetched, route: &Route) -> Manifest {
        let policy = &route.tenant.cache;
        let (kind, parsed) = if f.status == StatusCode::OK {
            parse(route.class, &f.body)
        } else {
            (
                ManifestKind::Unparsed(format!("status {}", f.status)),
                Parsed::None,
            )
        };
        let ttl = ttl_for(f.status, &kind, &f.headers, policy);
        if let ManifestKind::Unparsed(why) = &kind {
            if f.status == StatusCode::OK {
                tracing::warn!(
                    tenant = %route.tenant.id,
                    path = %route.origin_path,
                    reason = %why,
                    "origin manifest does not parse; passing it through"
                );
            }
        }
        let headers = f
            .headers
            .iter()
            .filter(|(k, _)| passed_on(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let window = match &parsed {
            Parsed::HlsMedia { playlist, .. } if kind.is_live() => Some(Duration::from_secs_f64(
                playlist
                    .segments
                    .iter()
                    .map(|s| s.duration as f64)
                    .filter(|d| d.is_finite() && *d > 0.0)
                    .sum::<f64>()
                    .min(86_400.0),
            )),
            Parsed::Dash { mpd, .. } if kind.is_live() => mpd.timeShiftBufferDepth,
            _ => None,
        };
        Manifest {
            wire: Default::default(),
            window,
            progress: live_progress(&kind, &f.body),
            status: f.status,
            headers,
            body: f.body,
            kind,
            parsed,
            ttl,
            fetched: Instant::now(),
        }
    }

    /// A manifest the proxy made in place of the origin's (slate during an outage, the content
    /// back after it), like `like`: parsed, so every later step takes it as the origin's.
    pub fn synthesized(like: &Manifest, body: Bytes, route: &Route) -> Manifest {
        let (kind, parsed) = parse(route.class, &body);
        Manifest {
            wire: Default::default(),
            progress: live_progress(&kind, &body),
            status: StatusCode::OK,
            headers: like.headers.clone(),
            window: like.window,
            ttl: like.live_unit().map_or(Duration::from_secs(1), |u| u / 2),
            fetched: Instant::now(),
            body,
            kind,
            parsed,
        }
    }

    /// Seconds of freshness left (negative once expired), for `Cache-Status: ttl=`.
    pub fn remaining_ttl(&self) -> i64 {
        let age = self.fetched.elapsed();
        if age <= self.ttl {
            (self.ttl - age).as_secs() as i64
        } else {
            -((age - self.ttl).as_secs() as i64)
        }
    }
}

fn live_progress(kind: &ManifestKind, body: &[u8]) -> Option<Progress> {
    matches!(kind, ManifestKind::HlsMedia { live: true, .. })
        .then(|| Progress::of(body))
        .flatten()
}

/// `path?q` or `path&q`.
pub fn with_query(path: &str, q: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{q}")
}

/// How long a manifest answer stays cached (zero: coalesced while in flight, never stored).
pub fn ttl_for(
    status: StatusCode,
    kind: &ManifestKind,
    headers: &HeaderMap,
    policy: &TenantCachePolicy,
) -> Duration {
    let origin = origin_directives(headers);
    let default = match status {
        StatusCode::OK => match kind {
            ManifestKind::HlsMaster => policy.master_ttl,
            ManifestKind::HlsMedia { live: false, .. } | ManifestKind::DashStatic => {
                policy.vod_manifest_ttl
            }
            live => policy
                .live_manifest_ttl
                .or_else(|| live.half_refresh())
                .unwrap_or(Duration::from_secs(1)),
        },
        StatusCode::NOT_FOUND | StatusCode::GONE => policy.negative_ttl,
        _ => return Duration::ZERO,
    };
    capped_ttl(default, &origin, policy).unwrap_or(Duration::ZERO)
}

/// How a manifest request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// From cache.
    Hit,
    /// This request fetched it from the origin.
    Miss,
    /// Another request was fetching it; this one waited and shared the answer.
    Collapsed,
    /// The origin is failing: the last good answer, past its TTL (within the stale limit).
    Stale,
}

/// A key whose origin is failing: no new fetch before `retry_at` (exponential backoff), so a
/// crowd of viewers does not turn an outage into a retry storm.
#[derive(Clone)]
struct Failing {
    retry_at: Instant,
    attempts: u32,
    /// What the last attempt got: an error, or a 5xx answer.
    last: Result<Arc<Manifest>, Arc<OriginError>>,
}

/// No manifest answer is kept longer (moka adds TTLs to instants: they must not overflow).
const MAX_TTL: Duration = Duration::from_secs(7 * 86_400);

const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(4);

fn backoff(attempts: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(8))
        .min(BACKOFF_MAX)
}

impl Manifest {
    /// How often this manifest is refreshed when live (its target duration or MPD period).
    fn live_unit(&self) -> Option<Duration> {
        match &self.kind {
            ManifestKind::HlsMedia { live: true, target } => Some(*target),
            ManifestKind::DashDynamic { refresh } => Some(*refresh),
            _ => None,
        }
    }

    /// How long past its fetch this answer may stand in for a failing origin: live manifests
    /// for the tenant's stale window (by default their own live window: a player that
    /// buffered all of it has nothing left to play), masters and VOD for `stale_if_error`.
    pub fn stale_limit(&self, policy: &TenantCachePolicy) -> Duration {
        match self.live_unit() {
            Some(unit) => {
                let window = policy
                    .stale_live_window
                    .or_else(|| {
                        policy
                            .stale_manifest_targets
                            .map(|n| unit.saturating_mul(n))
                    })
                    .or(self.window)
                    .unwrap_or(unit.saturating_mul(3));
                self.ttl.saturating_add(window).min(MAX_TTL)
            }
            None => self.ttl.saturating_add(policy.stale_if_error).min(MAX_TTL),
        }
    }
}

struct PerEntryTtl;

impl moka::Expiry<Arc<str>, Arc<Manifest>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        value: &Arc<Manifest>,
        _created_at: Instant,
    ) -> Option<Duration> {
        // what is left of it: an entry carried into a new cache keeps its own expiry
        Some(
            value
                .ttl
                .saturating_sub(value.fetched.elapsed())
                .min(MAX_TTL),
        )
    }
}

pub use crate::config::Quota;

/// One tenant's manifests: its own caches, so no tenant's requests can evict another's.
struct Shelf {
    entries: moka::future::Cache<Arc<str>, Arc<Manifest>>,
    /// The last 200 answer per key, for stale-if-error.
    last_good: moka::sync::Cache<Arc<str>, Arc<Manifest>>,
    failing: moka::sync::Cache<Arc<str>, Failing>,
    /// LL-HLS: the newest playlist seen per key, whichever reload fetched it.
    latest: moka::sync::Cache<Arc<str>, Arc<Manifest>>,
    quota: Quota,
}

/// What an entry costs: its body, its parsed forms (each segment or variant as m3u8-rs and
/// the plugin view and its bindings copy hold it, their strings about the text each; a DASH object tree is several
/// times its text) and headers; at least the tenant's bytes per entry, so the entry count
/// holds too.
fn weight(m: &Manifest, floor: u64) -> u32 {
    use std::mem::size_of;
    let body = m.body.len();
    let parsed = match &m.parsed {
        Parsed::HlsMedia { playlist, .. } => {
            // the view twice: the core's, and the plugin bindings' copy of it
            let per = size_of::<m3u8_rs::MediaSegment>()
                + 2 * size_of::<crate::types::Segment>()
                + size_of::<std::ops::Range<usize>>();
            body * 3 + playlist.segments.len() * per
        }
        Parsed::HlsMaster { playlist, .. } => {
            let per = size_of::<m3u8_rs::VariantStream>() + 2 * size_of::<crate::types::Variant>();
            body * 3 + (playlist.variants.len() + playlist.alternatives.len()) * per
        }
        Parsed::Dash { .. } => body * 9,
        Parsed::None => 0,
    };
    let est = (body + parsed + 2048) as u64;
    est.max(floor).min(u32::MAX as u64) as u32
}

/// Copies a shelf's manifests into another (a reload that changed the tenant's quota). Runs
/// the cache's async inserts on a thread of its own: reloads build on a blocking thread.
fn refill(from: &Shelf, to: &Shelf) {
    for (k, v) in from.last_good.iter() {
        to.last_good.insert((*k).clone(), v);
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    std::thread::scope(|sc| {
        sc.spawn(|| {
            rt.block_on(async {
                for (k, v) in from.entries.iter() {
                    to.entries.insert((*k).clone(), v).await;
                }
            })
        });
    });
}

impl Shelf {
    fn new(quota: Quota) -> Shelf {
        let floor = quota.bytes / quota.entries.max(1);
        Shelf {
            entries: moka::future::Cache::builder()
                .max_capacity(quota.bytes)
                .weigher(move |_k, m: &Arc<Manifest>| weight(m, floor))
                .expire_after(PerEntryTtl)
                .build(),
            last_good: moka::sync::Cache::builder()
                .max_capacity(quota.bytes)
                .weigher(move |_k, m: &Arc<Manifest>| weight(m, floor))
                .time_to_live(Duration::from_secs(3600))
                .build(),
            failing: moka::sync::Cache::builder()
                .max_capacity(quota.entries)
                .time_to_live(Duration::from_secs(600))
                .build(),
            latest: moka::sync::Cache::builder()
                .max_capacity(quota.bytes / 4)
                .weigher(move |_k, m: &Arc<Manifest>| weight(m, floor))
                .time_to_live(Duration::from_secs(60))
                .build(),
            quota,
        }
    }
}

pub struct ManifestCache {
    shelves: HashMap<String, Arc<Shelf>>,
    /// For a key of no configured tenant (not routed: never used in practice).
    fallback: Arc<Shelf>,
    origin: OriginClient,
}

impl ManifestCache {
    pub fn new(quotas: &HashMap<String, Quota>, origin: OriginClient) -> Self {
        ManifestCache {
            shelves: quotas
                .iter()
                .map(|(t, q)| (t.clone(), Arc::new(Shelf::new(*q))))
                .collect(),
            fallback: Arc::new(Shelf::new(Quota {
                bytes: 1 << 20,
                entries: 16,
            })),
            origin,
        }
    }

    /// The cache for a reloaded config: what was cached stays, so a reload neither refetches
    /// every manifest nor loses the answers that stand in for a failing origin. Keys carry the
    /// tenant's origin fingerprint (`route::Tenant::manifest_key`), so a tenant whose origin or
    /// cache settings changed misses, and its old entries age out. A tenant whose quota
    /// changed (a tenant added or removed changes the split) gets a new shelf with its
    /// entries moved over, as many as the new quota holds.
    pub fn carry_over(&self, quotas: &HashMap<String, Quota>, origin: OriginClient) -> Self {
        let shelves = quotas
            .iter()
            .map(|(t, q)| {
                let shelf = match self.shelves.get(t) {
                    Some(s) if s.quota == *q => s.clone(),
                    Some(old) => {
                        let new = Arc::new(Shelf::new(*q));
                        refill(old, &new);
                        new
                    }
                    None => Arc::new(Shelf::new(*q)),
                };
                (t.clone(), shelf)
            })
            .collect();
        ManifestCache {
            shelves,
            fallback: self.fallback.clone(),
            origin,
        }
    }

    /// The tenant's shelf for a key (`tenant|fingerprint|path`).
    fn shelf(&self, key: &str) -> &Shelf {
        let tenant = key.split('|').next().unwrap_or("");
        self.shelves.get(tenant).unwrap_or(&self.fallback)
    }

    /// Weighed bytes and entries a tenant's manifests hold now (for tests and metrics).
    pub async fn usage(&self, tenant: &str) -> (u64, u64) {
        match self.shelves.get(tenant) {
            Some(s) => {
                s.entries.run_pending_tasks().await;
                (s.entries.weighted_size(), s.entries.entry_count())
            }
            None => (0, 0),
        }
    }

    /// The last good answer, if it may still stand in for the failing origin.
    fn stale(&self, key: &Arc<str>, route: &Route) -> Option<(Arc<Manifest>, Lookup)> {
        let m = self.shelf(key).last_good.get(key)?;
        let ok = m.fetched.elapsed() <= m.stale_limit(&route.tenant.cache);
        if ok {
            crate::metrics::METRICS
                .outage_manifests
                .with_label_values(&[route.tenant.id.as_str(), "stale"])
                .inc();
        }
        ok.then_some((m, Lookup::Stale))
    }

    /// Records a failed attempt and answers with the stale manifest or the failure.
    fn failed(
        &self,
        key: &Arc<str>,
        route: &Route,
        last: Result<Arc<Manifest>, Arc<OriginError>>,
    ) -> Result<(Arc<Manifest>, Lookup), Arc<OriginError>> {
        let shelf = self.shelf(key);
        let attempts = shelf.failing.get(key).map_or(0, |f| f.attempts) + 1;
        // a live manifest is retried at least once a target duration: when the origin comes
        // back, players get the new segments within one refresh
        let unit = shelf
            .last_good
            .get(key)
            .and_then(|m| m.live_unit())
            .unwrap_or(BACKOFF_MAX);
        let wait = backoff(attempts).min(unit.max(BACKOFF_FIRST));
        if attempts == 1 {
            tracing::warn!(
                tenant = %route.tenant.id,
                path = %route.origin_path,
                "origin failing for this manifest: retrying with backoff"
            );
        }
        shelf.failing.insert(
            key.clone(),
            Failing {
                retry_at: Instant::now() + wait,
                attempts,
                last: last.clone(),
            },
        );
        match self.stale(key, route) {
            Some(stale) => Ok(stale),
            None => last.map(|m| (m, Lookup::Miss)),
        }
    }

    /// The origin client (for what is fetched from the origin outside this cache).
    pub fn origin(&self) -> &OriginClient {
        &self.origin
    }

    /// The cache key of a routed request (tenant ids cannot contain '|': unambiguous).
    pub fn key(&self, route: &Route) -> Arc<str> {
        format!("{}|{}", route.tenant.manifest_key, route.key_path).into()
    }

    /// The last good (200) answer for a key, however old (within the hour it is kept).
    pub fn last_good(&self, key: &Arc<str>) -> Option<Arc<Manifest>> {
        self.shelf(key).last_good.get(key)
    }

    /// A blocking reload (LL-HLS): the newest playlist seen if it already answers `b`, else
    /// the origin's answer to exactly `b`, one origin request however many viewers wait for it.
    pub async fn get_blocking(
        &self,
        route: &Route,
        b: Blocking,
    ) -> Result<(Arc<Manifest>, Lookup), Arc<OriginError>> {
        let base = self.key(route);
        if let Some(m) = self.shelf(&base).latest.get(&base) {
            if m.progress.is_some_and(|p| p.answers(b)) {
                return Ok((m, Lookup::Hit));
            }
        }
        let mut asked = route.clone();
        asked.origin_path = with_query(&route.origin_path, &b.query());
        // '#' is in no routed path: the key cannot collide with a plain one
        asked.key_path = format!("{}#{}", route.key_path, b.query());
        self.get(&asked).await
    }

    /// The newest LL-HLS playlist seen for a route, if newer than `than`.
    pub fn newer(&self, route: &Route, than: Option<Progress>) -> Option<Arc<Manifest>> {
        let base = self.key(route);
        let m = self.shelf(&base).latest.get(&base)?;
        (m.progress > than).then_some(m)
    }

    fn note_latest(&self, key: &Arc<str>, m: &Arc<Manifest>) {
        let Some(p) = m.progress else { return };
        let base: Arc<str> = match key.split_once('#') {
            Some((b, _)) => b.into(),
            None => key.clone(),
        };
        let shelf = self.shelf(&base);
        if shelf
            .latest
            .get(&base)
            .is_none_or(|old| old.progress < Some(p))
        {
            shelf.latest.insert(base, m.clone());
        }
    }

    /// The manifest for a routed request, fetching it if needed (one fetch per key at a time).
    pub async fn get(&self, route: &Route) -> Result<(Arc<Manifest>, Lookup), Arc<OriginError>> {
        let key = self.key(route);
        let shelf = self.shelf(&key);
        if let Some(m) = shelf.entries.get(&key).await {
            return Ok((m, Lookup::Hit));
        }
        if let Some(f) = shelf.failing.get(&key) {
            if Instant::now() < f.retry_at {
                // backing off: no origin fetch
                return match self.stale(&key, route) {
                    Some(stale) => Ok(stale),
                    None => f.last.map(|m| (m, Lookup::Collapsed)),
                };
            }
        }
        let entry = shelf
            .entries
            .entry(key.clone())
            .or_try_insert_with(async {
                let fetched = self.origin.fetch(&route.tenant, &route.origin_path).await?;
                Ok::<_, OriginError>(Arc::new(Manifest::new(fetched, route)))
            })
            .await;
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return self.failed(&key, route, Err(e)),
        };
        let fresh = entry.is_fresh();
        let m = entry.into_value();
        if m.status.is_server_error() {
            if fresh {
                return self.failed(&key, route, Ok(m));
            }
            return match self.stale(&key, route) {
                Some(stale) => Ok(stale),
                None => Ok((m, Lookup::Collapsed)),
            };
        }
        if fresh {
            if m.status == StatusCode::OK {
                shelf.last_good.insert(key.clone(), m.clone());
                self.note_latest(&key, &m);
            }
            shelf.failing.invalidate(&key);
        }
        let lookup = if fresh {
            Lookup::Miss
        } else {
            Lookup::Collapsed
        };
        Ok((m, lookup))
    }
}

#[cfg(test)]
mod tests;
