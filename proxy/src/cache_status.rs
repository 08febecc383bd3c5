//! RFC 9211 `Cache-Status` values, so every response says how the cache handled it.

use crate::manifest_cache::Lookup;
use pingora_cache::{CachePhase, HttpCache, NoCacheReason};
use std::time::SystemTime;

pub const NAME: &str = "Manifold";

/// For a response the pingora cache state machine handled (segments and pass-through).
pub fn for_proxied(cache: &HttpCache, status: u16) -> String {
    match cache.phase() {
        CachePhase::Hit => {
            if cache.lock_duration().is_some() {
                // waited on another request's fetch of the same object
                format!("{NAME}; fwd=miss; fwd-status={status}; collapsed")
            } else {
                format!("{NAME}; hit; ttl={}", remaining(cache))
            }
        }
        CachePhase::Miss => {
            if cache.enabled() {
                format!("{NAME}; fwd=uri-miss; fwd-status={status}; stored")
            } else {
                format!("{NAME}; fwd=uri-miss; fwd-status={status}")
            }
        }
        CachePhase::Expired => format!("{NAME}; fwd=stale; fwd-status={status}; stored"),
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => {
            format!("{NAME}; hit; fwd=stale; fwd-status=304")
        }
        CachePhase::Stale => format!("{NAME}; hit; ttl={}; detail=stale", remaining(cache)),
        CachePhase::StaleUpdating => {
            format!(
                "{NAME}; hit; ttl={}; detail=stale-updating",
                remaining(cache)
            )
        }
        CachePhase::Disabled(NoCacheReason::NeverEnabled) | CachePhase::Bypass => {
            format!("{NAME}; fwd=bypass; fwd-status={status}")
        }
        CachePhase::Disabled(reason) => format!(
            "{NAME}; fwd=uri-miss; fwd-status={status}; detail={}",
            reason.as_str().to_ascii_lowercase()
        ),
        CachePhase::Uninit | CachePhase::CacheKey => format!("{NAME}; fwd=uri-miss"),
    }
}

/// The metrics label of what the cache did for a proxied response (no string building: this
/// runs for every segment request).
pub fn result_of(cache: &HttpCache) -> &'static str {
    match cache.phase() {
        CachePhase::Hit if cache.lock_duration().is_some() => "coalesced",
        CachePhase::Hit | CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "hit",
        CachePhase::Stale | CachePhase::StaleUpdating => "stale",
        CachePhase::Disabled(NoCacheReason::NeverEnabled) | CachePhase::Bypass => "bypass",
        _ => "miss",
    }
}

fn remaining(cache: &HttpCache) -> i64 {
    let Some(meta) = cache.maybe_cache_meta() else {
        return 0;
    };
    let now = SystemTime::now();
    match meta.fresh_until().duration_since(now) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// For a manifest served from the manifest cache.
pub fn for_manifest(lookup: Lookup, status: u16, stored: bool, ttl: i64) -> String {
    match lookup {
        Lookup::Hit => format!("{NAME}; hit; ttl={ttl}"),
        Lookup::Miss if stored => {
            format!("{NAME}; fwd=uri-miss; fwd-status={status}; stored; ttl={ttl}")
        }
        Lookup::Miss => format!("{NAME}; fwd=uri-miss; fwd-status={status}"),
        Lookup::Collapsed => format!("{NAME}; fwd=uri-miss; fwd-status={status}; collapsed"),
        Lookup::Stale => format!("{NAME}; hit; ttl={ttl}; detail=stale-if-error"),
    }
}

/// For an answer the proxy made itself (no tenant, bad request, origin failure).
pub fn for_error(detail: &str) -> String {
    format!("{NAME}; fwd=bypass; detail={detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_values() {
        assert_eq!(
            for_manifest(Lookup::Hit, 200, true, 2),
            "Manifold; hit; ttl=2"
        );
        assert_eq!(
            for_manifest(Lookup::Miss, 200, true, 1),
            "Manifold; fwd=uri-miss; fwd-status=200; stored; ttl=1"
        );
        assert_eq!(
            for_manifest(Lookup::Collapsed, 503, false, 0),
            "Manifold; fwd=uri-miss; fwd-status=503; collapsed"
        );
        assert_eq!(
            for_manifest(Lookup::Miss, 503, false, 0),
            "Manifold; fwd=uri-miss; fwd-status=503"
        );
    }

    #[test]
    fn never_enabled_cache_is_a_bypass() {
        let cache = HttpCache::new();
        assert_eq!(
            for_proxied(&cache, 200),
            "Manifold; fwd=bypass; fwd-status=200"
        );
        assert_eq!(
            for_error("unknown-tenant"),
            "Manifold; fwd=bypass; detail=unknown-tenant"
        );
    }
}
