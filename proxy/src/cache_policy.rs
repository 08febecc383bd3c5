//! How long responses stay cached: origin `Cache-Control` (RFC 9111, shared-cache reading) with
//! per-tenant defaults and overrides, for segments (pingora-cache) and manifests.

use crate::config::{ForwardConfig, TenantCachePolicy};
use http::{header, HeaderMap, StatusCode};
use pingora_cache::cache_control::{CacheControl, Cacheable, InterpretCacheControl};
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheMeta, NoCacheReason, RespCacheable, VarianceBuilder};
use pingora_http::{RequestHeader, ResponseHeader};
use std::time::{Duration, SystemTime};

/// Whether a viewer's request header reaches the origin on a segment miss. What does not
/// cannot change the origin's answer: it is also ignored in `Vary`. Dropped always:
/// `Accept-Encoding` (the cache stores one identity-encoded copy for everyone) and `Origin`
/// (the edge answers CORS itself); credentials and CMCD unless the tenant forwards them.
pub fn forwarded_header(name: &str, forward: &ForwardConfig) -> bool {
    let n = name.to_ascii_lowercase();
    match n.as_str() {
        "accept-encoding" | "origin" | "te" => false,
        "cookie" | "authorization" => forward.credentials,
        _ if n.starts_with("cmcd-") => forward.cmcd,
        _ => true,
    }
}

/// What a response's `Vary` asks the cache to tell apart.
#[derive(Debug, PartialEq, Eq)]
pub enum Vary {
    /// Nothing (no `Vary`, or only headers the proxy does not forward).
    None,
    /// `Vary: *`: every request is different, so nothing is stored.
    Any,
    /// These forwarded request headers (lowercase).
    On(Vec<String>),
}

pub fn vary(resp: &HeaderMap, forward: &ForwardConfig) -> Vary {
    let mut names: Vec<String> = Vec::new();
    for v in resp.get_all(header::VARY) {
        let Ok(v) = v.to_str() else { return Vary::Any };
        for n in v.split(',').map(|n| n.trim().to_ascii_lowercase()) {
            if n == "*" {
                return Vary::Any;
            }
            if !n.is_empty() && forwarded_header(&n, forward) && !names.contains(&n) {
                names.push(n);
            }
        }
    }
    if names.is_empty() {
        Vary::None
    } else {
        names.sort();
        Vary::On(names)
    }
}

/// The variance key of `req` for a response that varies on `names`.
pub fn variance(names: &[String], req: &RequestHeader) -> Option<HashBinary> {
    let mut b = VarianceBuilder::new();
    for n in names {
        let mut value = Vec::new();
        for (i, v) in req.headers.get_all(n.as_str()).iter().enumerate() {
            if i > 0 {
                value.extend_from_slice(b", ");
            }
            value.extend_from_slice(v.as_bytes());
        }
        b.add_owned_name_value(n.clone(), value);
    }
    b.finalize()
}

/// RFC 9111 section 3.5: a shared cache stores a response to a request with credentials only
/// if the response explicitly allows it.
fn shareable_with_credentials(headers: &HeaderMap) -> bool {
    CacheControl::from_headers_named(header::CACHE_CONTROL.as_str(), headers).is_some_and(|cc| {
        cc.public() || cc.must_revalidate() || cc.s_maxage().ok().flatten().is_some()
    })
}

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

/// Whether and for how long pingora-cache keeps a segment response. `credentialed`: the origin
/// request carried the viewer's `Cookie` or `Authorization`.
pub fn segment_cacheability(
    resp: &ResponseHeader,
    policy: &TenantCachePolicy,
    forward: &ForwardConfig,
    credentialed: bool,
    now: SystemTime,
) -> RespCacheable {
    if credentialed && !shareable_with_credentials(&resp.headers) {
        return RespCacheable::Uncacheable(NoCacheReason::Custom("credentials"));
    }
    if vary(&resp.headers, forward) == Vary::Any {
        return RespCacheable::Uncacheable(NoCacheReason::Custom("vary"));
    }
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
        assert_eq!(
            ttl_of(
                segment_cacheability(&r, &p, &ForwardConfig::default(), false, now),
                now
            ),
            Some(120)
        );
        let r = resp(200, &[("cache-control", "max-age=120, s-maxage=30")]);
        assert_eq!(
            ttl_of(
                segment_cacheability(&r, &p, &ForwardConfig::default(), false, now),
                now
            ),
            Some(30)
        );
        let r = resp(200, &[]);
        assert_eq!(
            ttl_of(
                segment_cacheability(&r, &p, &ForwardConfig::default(), false, now),
                now
            ),
            Some(3600)
        );
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
                ttl_of(
                    segment_cacheability(&r, &p, &ForwardConfig::default(), false, now),
                    now
                ),
                None,
                "{h:?}"
            );
        }
        let r = resp(503, &[("cache-control", "max-age=60")]);
        assert_eq!(
            ttl_of(
                segment_cacheability(&r, &p, &ForwardConfig::default(), false, now),
                now
            ),
            None
        );
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
        assert_eq!(
            ttl_of(
                segment_cacheability(&r, &p, &ForwardConfig::default(), false, now),
                now
            ),
            Some(7)
        );
    }

    #[test]
    fn not_found_is_cached_briefly() {
        let p = TenantCachePolicy::default();
        let now = SystemTime::now();
        let r = resp(404, &[("cache-control", "max-age=600")]);
        assert_eq!(
            ttl_of(
                segment_cacheability(&r, &p, &ForwardConfig::default(), false, now),
                now
            ),
            Some(1)
        );
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
    fn credentialed_responses_are_shared_only_when_the_origin_allows() {
        let p = TenantCachePolicy::default();
        let f = ForwardConfig {
            credentials: true,
            ..Default::default()
        };
        let now = SystemTime::now();
        let stored = |h: &[(&str, &str)], cred| {
            ttl_of(segment_cacheability(&resp(200, h), &p, &f, cred, now), now)
        };
        assert_eq!(stored(&[("cache-control", "max-age=60")], true), None);
        assert_eq!(stored(&[], true), None);
        assert_eq!(stored(&[("cache-control", "max-age=60")], false), Some(60));
        for cc in [
            "public, max-age=60",
            "s-maxage=60",
            "max-age=60, must-revalidate",
        ] {
            assert_eq!(stored(&[("cache-control", cc)], true), Some(60), "{cc}");
        }
    }

    #[test]
    fn vary_counts_only_forwarded_headers() {
        let f = ForwardConfig::default();
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.append(header::VARY, v.parse().unwrap());
            m
        };
        assert_eq!(vary(&h("Accept-Encoding, Origin"), &f), Vary::None);
        assert_eq!(vary(&h("Cookie, CMCD-Request"), &f), Vary::None);
        assert_eq!(
            vary(&h("User-Agent, accept-language, Accept-Encoding"), &f),
            Vary::On(vec!["accept-language".into(), "user-agent".into()])
        );
        assert_eq!(vary(&h("*"), &f), Vary::Any);
        let creds = ForwardConfig {
            credentials: true,
            cmcd: true,
        };
        assert_eq!(
            vary(&h("Cookie, CMCD-Request"), &creds),
            Vary::On(vec!["cmcd-request".into(), "cookie".into()])
        );
        // the variance follows the request's values
        let names = vec!["user-agent".to_string()];
        let mut a = RequestHeader::build("GET", b"/x.ts", None).unwrap();
        a.insert_header("user-agent", "A").unwrap();
        let mut b = RequestHeader::build("GET", b"/x.ts", None).unwrap();
        b.insert_header("user-agent", "B").unwrap();
        assert_ne!(variance(&names, &a), variance(&names, &b));
        assert_eq!(variance(&names, &a), variance(&names, &a.clone()));
        let r = resp(200, &[("vary", "*")]);
        let now = SystemTime::now();
        assert_eq!(
            ttl_of(
                segment_cacheability(&r, &TenantCachePolicy::default(), &f, false, now),
                now
            ),
            None
        );
    }

    #[test]
    fn credentials_cmcd_encoding_and_origin_stay_home() {
        let f = ForwardConfig::default();
        for h in [
            "Cookie",
            "authorization",
            "Accept-Encoding",
            "Origin",
            "CMCD-Request",
        ] {
            assert!(!forwarded_header(h, &f), "{h}");
        }
        for h in ["user-agent", "x-forwarded-for", "accept"] {
            assert!(forwarded_header(h, &f), "{h}");
        }
        let all = ForwardConfig {
            credentials: true,
            cmcd: true,
        };
        assert!(forwarded_header("cookie", &all) && forwarded_header("cmcd-object", &all));
        assert!(!forwarded_header("accept-encoding", &all));
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
