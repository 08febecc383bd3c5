//! How long responses stay cached: origin `Cache-Control` (RFC 9111, shared-cache reading) with
//! per-tenant defaults and overrides, for segments (pingora-cache) and manifests.

use crate::config::TenantCachePolicy;
use http::{header, HeaderMap, StatusCode};
use pingora_cache::cache_control::{CacheControl, Cacheable, InterpretCacheControl};
use pingora_cache::{CacheMeta, NoCacheReason, RespCacheable};
use pingora_http::ResponseHeader;
use std::time::{Duration, SystemTime};

/// What the origin said about caching a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginDirectives {
    /// `no-store` / `private` / `Set-Cookie` forbid a shared cache to store it.
    pub storable: bool,
    /// `s-maxage`, else `max-age` (`no-cache` reads as zero); `None` when unspecified.
    pub fresh: Option<Duration>,
    pub stale_if_error: Option<Duration>,
}

pub fn origin_directives(headers: &HeaderMap) -> OriginDirectives {
    let cc = CacheControl::from_headers_named(header::CACHE_CONTROL.as_str(), headers);
    let cookie = headers.contains_key(header::SET_COOKIE);
    match cc {
        Some(cc) => OriginDirectives {
            storable: !cookie && !matches!(cc.is_cacheable(), Cacheable::No),
            fresh: cc.fresh_duration(),
            stale_if_error: cc.serve_stale_if_error_duration(),
        },
        None => OriginDirectives {
            storable: !cookie,
            fresh: None,
            stale_if_error: None,
        },
    }
}

/// TTL from the tenant's default, shortened (never lengthened) by the origin's own freshness,
/// unless the tenant ignores origin directives. `None`: do not store.
pub fn capped_ttl(
    default: Duration,
    origin: &OriginDirectives,
    policy: &TenantCachePolicy,
) -> Option<Duration> {
    if policy.ignore_origin_cache_control {
        return Some(default);
    }
    if !origin.storable {
        return None;
    }
    Some(origin.fresh.map_or(default, |f| f.min(default)))
}

/// Whether and for how long pingora-cache keeps a segment response.
pub fn segment_cacheability(
    resp: &ResponseHeader,
    policy: &TenantCachePolicy,
    now: SystemTime,
) -> RespCacheable {
    let origin = origin_directives(&resp.headers);
    let ttl = match resp.status {
        StatusCode::OK => {
            if policy.ignore_origin_cache_control {
                Some(policy.segment_ttl)
            } else if origin.storable {
                Some(origin.fresh.unwrap_or(policy.segment_ttl))
            } else {
                None
            }
        }
        // a crowd asking for a segment that is not there yet is coalesced too, briefly
        StatusCode::NOT_FOUND | StatusCode::GONE => {
            capped_ttl(policy.negative_ttl, &origin, policy)
        }
        _ => return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache),
    };
    match ttl {
        Some(ttl) if !ttl.is_zero() => {
            let sie = origin.stale_if_error.unwrap_or(policy.stale_if_error);
            let sie = sie.as_secs().min(u32::MAX as u64) as u32;
            RespCacheable::Cacheable(CacheMeta::new(now + ttl, now, 0, sie, resp.clone()))
        }
        _ => RespCacheable::Uncacheable(NoCacheReason::OriginNotCache),
    }
}

/// Whether a response with this `Content-Type` is media worth caching like a segment (for
/// paths without a telling extension).
pub fn is_media_type(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let ct = ct.trim().to_ascii_lowercase();
    ct.starts_with("video/")
        || ct.starts_with("audio/")
        || ct.starts_with("text/vtt")
        || ct.starts_with("application/mp4")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn ttl_of(c: RespCacheable, now: SystemTime) -> Option<u64> {
        match c {
            RespCacheable::Cacheable(m) => {
                Some(m.fresh_until().duration_since(now).unwrap().as_secs())
            }
            RespCacheable::Uncacheable(_) => None,
        }
    }

    #[test]
    fn segments_follow_origin_max_age_else_tenant_default() {
        let p = TenantCachePolicy::default();
        let now = SystemTime::now();
        let r = resp(200, &[("cache-control", "public, max-age=120")]);
        assert_eq!(ttl_of(segment_cacheability(&r, &p, now), now), Some(120));
        let r = resp(200, &[("cache-control", "max-age=120, s-maxage=30")]);
        assert_eq!(ttl_of(segment_cacheability(&r, &p, now), now), Some(30));
        let r = resp(200, &[]);
        assert_eq!(ttl_of(segment_cacheability(&r, &p, now), now), Some(3600));
    }

    #[test]
    fn no_store_private_cookies_and_errors_are_not_cached() {
        let p = TenantCachePolicy::default();
        let now = SystemTime::now();
        for h in [
            vec![("cache-control", "no-store")],
            vec![("cache-control", "private, max-age=60")],
            vec![("set-cookie", "a=b")],
            vec![("cache-control", "max-age=0")],
        ] {
            let r = resp(200, &h);
            assert_eq!(
                ttl_of(segment_cacheability(&r, &p, now), now),
                None,
                "{h:?}"
            );
        }
        let r = resp(503, &[("cache-control", "max-age=60")]);
        assert_eq!(ttl_of(segment_cacheability(&r, &p, now), now), None);
    }

    #[test]
    fn tenant_can_override_origin() {
        let p = TenantCachePolicy {
            ignore_origin_cache_control: true,
            segment_ttl: Duration::from_secs(7),
            ..TenantCachePolicy::default()
        };
        let now = SystemTime::now();
        let r = resp(200, &[("cache-control", "no-store")]);
        assert_eq!(ttl_of(segment_cacheability(&r, &p, now), now), Some(7));
    }

    #[test]
    fn not_found_is_cached_briefly() {
        let p = TenantCachePolicy::default();
        let now = SystemTime::now();
        let r = resp(404, &[("cache-control", "max-age=600")]);
        assert_eq!(ttl_of(segment_cacheability(&r, &p, now), now), Some(1));
    }

    #[test]
    fn capped_ttl_only_shortens() {
        let p = TenantCachePolicy::default();
        let d = Duration::from_secs(10);
        let o = |fresh| OriginDirectives {
            storable: true,
            fresh,
            stale_if_error: None,
        };
        assert_eq!(
            capped_ttl(d, &o(Some(Duration::from_secs(3))), &p),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            capped_ttl(d, &o(Some(Duration::from_secs(60))), &p),
            Some(d)
        );
        assert_eq!(capped_ttl(d, &o(None), &p), Some(d));
        let no = OriginDirectives {
            storable: false,
            fresh: None,
            stale_if_error: None,
        };
        assert_eq!(capped_ttl(d, &no, &p), None);
    }

    #[test]
    fn media_types() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "video/MP2T".parse().unwrap());
        assert!(is_media_type(&h));
        h.insert(header::CONTENT_TYPE, "text/html".parse().unwrap());
        assert!(!is_media_type(&h));
    }
}
