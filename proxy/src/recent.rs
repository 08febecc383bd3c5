//! The last manifests each session was served, beside the origin manifest they were made
//! from, for the console's session inspector ("what was this viewer served?"). Kept on the
//! node that served them, in a bounded cache: both bodies are `Bytes` shared with the
//! manifest cache and the response, so a record costs no copy, only its weight against the
//! cap while it lasts. And which sessions are watching now (a manifest in the last
//! [`ACTIVE`]): the console's viewer count, `manifold_sessions_active`.

use bytes::Bytes;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Manifests kept per session (the newest ones, whatever rendition they were).
pub const PER_SESSION: usize = 6;
/// A session is watching if it fetched a manifest this recently (players reload every
/// target duration; 30 s covers a 10 s target with two misses).
pub const ACTIVE: Duration = Duration::from_secs(30);
/// Sessions counted at most (a count, not a limit on viewers).
const MAX_ACTIVE: u64 = 500_000;

#[derive(Debug, Clone)]
pub struct Served {
    pub unix_ms: u64,
    /// The viewer's path below the session (`/live/hls/v1.m3u8`).
    pub path: String,
    pub origin: Bytes,
    pub served: Bytes,
    /// How it was made: `personalized`, or `replayed` (the plugin failed, the ledger replayed).
    pub how: &'static str,
}

/// What the inspector shows of one record (bodies as text, lossily).
#[derive(Debug, Serialize)]
pub struct ServedView {
    pub unix_ms: u64,
    pub path: String,
    pub how: &'static str,
    pub origin: String,
    pub served: String,
}

pub struct Recent {
    by_session: Option<moka::sync::Cache<String, Arc<[Served]>>>,
    /// Session → tenant, for sessions seen within [`ACTIVE`].
    active: Option<moka::sync::Cache<String, Arc<str>>>,
}

impl Recent {
    /// Up to `bytes` of manifests, each session's kept `ttl` after its last manifest;
    /// `bytes == 0` keeps nothing (no admin listener to show them).
    pub fn new(bytes: u64, ttl: Duration) -> Recent {
        let by_session = (bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(bytes)
                .time_to_idle(ttl)
                .weigher(|k: &String, v: &Arc<[Served]>| {
                    let w: usize = v
                        .iter()
                        .map(|s| s.origin.len() + s.served.len() + s.path.len() + 64)
                        .sum();
                    (k.len() + w).min(u32::MAX as usize) as u32
                })
                .build()
        });
        let active = (bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(MAX_ACTIVE)
                .time_to_idle(ACTIVE)
                .build()
        });
        Recent { by_session, active }
    }

    /// Sessions watching now, by tenant.
    pub fn active_by_tenant(&self) -> std::collections::BTreeMap<Arc<str>, i64> {
        let mut out = std::collections::BTreeMap::new();
        if let Some(a) = &self.active {
            for (_, tenant) in a.iter() {
                *out.entry(tenant).or_insert(0) += 1;
            }
        }
        out
    }

    /// Adds a manifest served to session `sid`. Two renditions recorded at the same instant
    /// may lose one of the two records (last writer wins): this is a view, not a ledger.
    pub fn record(
        &self,
        sid: &str,
        tenant: &str,
        path: &str,
        m: (&Bytes, &Bytes),
        how: &'static str,
    ) {
        let (Some(cache), Some(active)) = (&self.by_session, &self.active) else {
            return;
        };
        if active.get(sid).is_none() {
            active.insert(sid.to_string(), Arc::from(tenant));
        }
        let (origin, served) = m;
        let unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let new = Served {
            unix_ms,
            path: path.chars().take(512).collect(),
            origin: origin.clone(),
            served: served.clone(),
            how,
        };
        let old = cache.get(sid);
        let kept = old.as_deref().unwrap_or(&[]);
        let skip = (kept.len() + 1).saturating_sub(PER_SESSION);
        let list: Arc<[Served]> = kept.iter().skip(skip).cloned().chain([new]).collect();
        cache.insert(sid.to_string(), list);
    }

    /// The session's records, newest last.
    pub fn get(&self, sid: &str) -> Vec<ServedView> {
        let Some(list) = self.by_session.as_ref().and_then(|c| c.get(sid)) else {
            return Vec::new();
        };
        list.iter()
            .map(|s| ServedView {
                unix_ms: s.unix_ms,
                path: s.path.clone(),
                how: s.how,
                origin: String::from_utf8_lossy(&s.origin).into_owned(),
                served: String::from_utf8_lossy(&s.served).into_owned(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_records_of_a_session_within_its_bytes() {
        let r = Recent::new(1 << 20, Duration::from_secs(60));
        let origin = Bytes::from_static(b"#EXTM3U\n");
        for i in 0..10 {
            let served = Bytes::from(format!("#EXTM3U\n#{i}\n"));
            r.record(
                "s1",
                "t",
                &format!("/v{i}.m3u8"),
                (&origin, &served),
                "personalized",
            );
        }
        let got = r.get("s1");
        assert_eq!(got.len(), PER_SESSION);
        assert_eq!(got.last().unwrap().path, "/v9.m3u8");
        assert_eq!(got[0].path, format!("/v{}.m3u8", 10 - PER_SESSION));
        assert!(got.last().unwrap().served.contains("#9"));
        assert!(r.get("other").is_empty());
        r.record("s2", "u", "/v.m3u8", (&origin, &origin), "personalized");
        let active = r.active_by_tenant();
        assert_eq!((active["t"], active["u"]), (1, 1));

        // a flood of big manifests stays within the cap
        let small = Recent::new(64 << 10, Duration::from_secs(60));
        let big = Bytes::from(vec![b'x'; 16 << 10]);
        for i in 0..100 {
            small.record(
                &format!("s{i}"),
                "t",
                "/v.m3u8",
                (&big, &big),
                "personalized",
            );
        }
        let c = small.by_session.as_ref().unwrap();
        c.run_pending_tasks();
        assert!(c.weighted_size() <= 64 << 10, "{}", c.weighted_size());

        // nothing kept without a console
        let off = Recent::new(0, Duration::from_secs(60));
        off.record("s1", "t", "/v.m3u8", (&origin, &origin), "personalized");
        assert!(off.get("s1").is_empty());
        assert!(off.active_by_tenant().is_empty());
    }
}
