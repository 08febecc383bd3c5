//! Step 1 of the data path: which tenant a request belongs to, what it asks for (class), and
//! which origin path it maps to.

use crate::config::{Config, ConfigError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub use crate::tenant::Tenant;
pub use manifold_ssai::asked::{Class, VariantHint, LEAD_PARAM};
use manifold_ssai::low_latency::Blocking;

/// A routed request.
#[derive(Debug, Clone)]
pub struct Route {
    pub tenant: Arc<Tenant>,
    /// Path and query to request from the origin (the origin's base path included).
    pub origin_path: String,
    /// What identifies the response in the caches: the origin path without what varies
    /// per viewer but not the response (CMCD, the tenant's volatile parameters).
    pub key_path: String,
    pub class: Class,
    /// What the viewer's URL had before the origin path: `/{tenant}` or empty (host routing).
    pub prefix: String,
    /// Which rendition a personalized master pointed this media playlist request at.
    pub hint: Option<VariantHint>,
    /// Which master listed it (`mf_g`, slate-mode tenants).
    pub group: Option<String>,
    /// The session token from the URL (`/~<token>/`), not yet verified.
    pub session: Option<String>,
    /// The path as the viewer sees it below the tenant and session (`/live/hls/v1.m3u8`).
    pub content_path: String,
    /// An ad segment request names its break and slot (`mf_b`, `mf_s`), for beacons.
    pub ad_slot: Option<(String, u32)>,
    /// A creative's first TS segment in a pod: its audio is made to lead (`mf_lead`).
    pub lead: bool,
    /// A slate segment served from the pinned copy, with these siblings joined after it
    /// (`mf_cat`: file names; empty: just this one).
    pub join: Option<Vec<String>>,
    /// `?insertion=`: how a viewer of a `player-select` tenant wants the session it starts
    /// (unchecked here; never sent to the origin nor part of a cache key).
    pub insertion: Option<String>,
    /// LL-HLS playlists: a blocking reload's `_HLS_msn`/`_HLS_part`, taken out of the origin
    /// path and the cache key (the [`crate::low_latency`] step asks the origin for them).
    pub blocking: Option<Blocking>,
    /// `_HLS_skip` (a delta update), likewise taken out.
    pub skip: Option<String>,
    /// Delivery directives that make no sense (`_HLS_part` alone, not a number): a 400.
    pub bad_directive: Option<String>,
}

impl Route {
    /// The URL prefix of this viewer's session: `/{tenant}/~{token}` (or without the tenant
    /// for host routing).
    pub fn session_prefix(&self, token: &str) -> String {
        format!("{}/~{token}", self.prefix)
    }
}

/// The viewer's choice of insertion mode (`stitched` or `guided`).
pub const INSERTION_PARAM: &str = "insertion";

/// The CMCD query parameter (CTA-5004), as players send it by default.
pub const CMCD_PARAM: &str = "CMCD";

/// Query parameter a personalized master adds to its variant and rendition URIs, so the
/// media playlist request says which rendition it is (ads are matched to it). It never
/// reaches the origin or a cache key.
pub const HINT_PARAM: &str = "mf_v";

/// Query parameter the masters of slate-mode tenants add next to `mf_v`: which master listed
/// the rendition, so an outage's slate lines up in all of a stream's renditions
/// ([`crate::outage`]). Never reaches the origin or a cache key.
pub const GROUP_PARAM: &str = "mf_g";

/// The query parameter joining slate segments of an outage ([`crate::outage`]):
/// `0.ts?mf_cat=1.ts,2.ts` is `0.ts`, `1.ts` and `2.ts` (siblings) as one segment.
pub const CAT_PARAM: &str = "mf_cat";

/// The `mf_g` value for a master at `path`: a stable (FNV-1a) hash, short and opaque.
pub fn group_of(path: &str) -> String {
    let h = path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}")
}

#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No tenant for this host or path prefix.
    UnknownTenant,
    /// A path the proxy refuses to forward (dot segments, no leading slash).
    BadPath,
}

/// Host and path-prefix lookup tables.
#[derive(Debug, Default)]
pub struct Routes {
    by_host: HashMap<String, Arc<Tenant>>,
    by_prefix: HashMap<String, Arc<Tenant>>,
    by_id: HashMap<String, Arc<Tenant>>,
}

impl Routes {
    /// Builds the tables, resolving each origin host (a failure names the tenant's field).
    pub fn new(config: &Config, file: &Path) -> Result<Routes, ConfigError> {
        let mut routes = Routes::default();
        for (i, t) in config.tenants.iter().enumerate() {
            let tenant = Arc::new(Tenant::new(config, i, file)?);
            routes.by_id.insert(t.id.clone(), tenant.clone());
            for h in &t.hosts {
                routes
                    .by_host
                    .insert(h.to_ascii_lowercase(), tenant.clone());
            }
            if t.path_prefix {
                routes.by_prefix.insert(t.id.clone(), tenant);
            }
        }
        Ok(routes)
    }

    /// Routes by `Host` first (whole path forwarded), then by the first path segment.
    pub fn route(
        &self,
        host: Option<&str>,
        path: &str,
        query: Option<&str>,
    ) -> Result<Route, RouteError> {
        // Long: one pass over the path and query, taking each part (tenant, session, `mf_*`) where it stands.
        // a URI path holds no raw `?` or `#`; one that did would put the segment after it,
        // dots included, in front of the origin's query (found by the routing fuzz target)
        if !path.starts_with('/')
            || path.contains(['?', '#'])
            || path.split('/').any(is_dot_segment)
        {
            return Err(RouteError::BadPath);
        }
        let host = host.map(strip_port).map(str::to_ascii_lowercase);
        let (tenant, rest, prefix) = match host.as_deref().and_then(|h| self.by_host.get(h)) {
            Some(t) => (t, path, ""),
            None => {
                let (first, rest) = match path[1..].find('/') {
                    Some(i) => (&path[1..i + 1], &path[i + 1..]),
                    None => (&path[1..], "/"),
                };
                let t = self.by_prefix.get(first).ok_or(RouteError::UnknownTenant)?;
                (t, rest, &path[..first.len() + 1])
            }
        };
        // a session segment (`/~<token>`) right after the tenant: the viewer's session
        let (session, rest) = match rest.strip_prefix("/~") {
            Some(after) => {
                let (token, rest) = after.split_at(after.find('/').unwrap_or(after.len()));
                if token.is_empty() || token.len() > 128 {
                    return Err(RouteError::BadPath);
                }
                (
                    Some(token.to_string()),
                    if rest.is_empty() { "/" } else { rest },
                )
            }
            None => (None, rest),
        };
        let mut origin_path = String::with_capacity(
            tenant.origin.base_path.len() + rest.len() + 1 + query.map_or(0, str::len),
        );
        origin_path.push_str(&tenant.origin.base_path);
        origin_path.push_str(rest);
        let mut key_path = origin_path.clone();
        let mut hint = None;
        let mut group = None;
        let mut slot = (None, None);
        let mut first_number = None;
        let mut lead = false;
        let mut join = None;
        let mut insertion = None;
        let class = Class::of(rest);
        let (mut msn, mut part, mut skip, mut bad_directive) = (None, None, None, None);
        if let Some(q) = query {
            let (mut sep, mut key_sep) = ('?', '?');
            let mut push = |to_origin: bool, to_key: bool, pair: &str| {
                if to_origin {
                    origin_path.push(sep);
                    origin_path.push_str(pair);
                    sep = '&';
                }
                if to_key {
                    key_path.push(key_sep);
                    key_path.push_str(pair);
                    key_sep = '&';
                }
            };
            for pair in q.split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                match k {
                    HINT_PARAM => hint = VariantHint::parse(v),
                    GROUP_PARAM => {
                        group = (v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
                            .then(|| v.to_string())
                    }
                    "mf_b" => slot.0 = Some(v.to_string()),
                    "mf_s" => slot.1 = v.parse::<u32>().ok(),
                    // DASH: the URL's segment number counts from `mf_n` at slot `mf_s`
                    "mf_n" => first_number = v.parse::<u64>().ok(),
                    LEAD_PARAM => lead = v == "1",
                    INSERTION_PARAM => insertion = Some(v.chars().take(32).collect()),
                    // LL-HLS delivery directives: per reload, not per response
                    "_HLS_msn" | "_HLS_part" if class == Class::HlsPlaylist => {
                        match v.parse::<u64>().ok().filter(|n| *n < 1 << 40) {
                            Some(n) if k == "_HLS_msn" => msn = Some(n),
                            Some(n) => part = Some(n),
                            None => bad_directive = Some(format!("{k}={v:?} is not a number")),
                        }
                    }
                    "_HLS_skip" if class == Class::HlsPlaylist => {
                        skip = Some(v.chars().take(8).collect())
                    }
                    _ if k.starts_with("_HLS_") && class == Class::Segment => {
                        push(true, false, pair)
                    }
                    CAT_PARAM => {
                        join = Some(
                            v.split(',')
                                .filter(|n| {
                                    !n.is_empty()
                                        && n.len() <= 128
                                        && !n.contains(['/', '\\', '%', '?', '#'])
                                        && *n != ".."
                                        && *n != "."
                                })
                                .take(16)
                                .map(str::to_string)
                                .collect(),
                        );
                    }
                    // CTA-5004 query form: per viewer and per request, never the response's
                    _ if k.eq_ignore_ascii_case(CMCD_PARAM) => {
                        push(tenant.forward.cmcd, false, pair)
                    }
                    _ if tenant.cache.volatile_params.iter().any(|p| p == k) => {
                        push(true, false, pair)
                    }
                    _ => push(true, true, pair),
                }
            }
        }
        if part.is_some() && msn.is_none() {
            bad_directive.get_or_insert_with(|| "_HLS_part without _HLS_msn".into());
        }
        Ok(Route {
            blocking: msn.map(|msn| Blocking { msn, part }),
            skip,
            bad_directive,
            tenant: tenant.clone(),
            origin_path,
            key_path,
            class,
            prefix: prefix.to_string(),
            hint,
            group,
            session,
            content_path: rest.to_string(),
            lead,
            join,
            insertion,
            ad_slot: match (slot, first_number) {
                ((Some(b), Some(s)), None) => Some((b, s)),
                ((Some(b), Some(s)), Some(n0)) => segment_number(rest)
                    .and_then(|n| n.checked_sub(n0))
                    .and_then(|k| u32::try_from(k).ok())
                    .and_then(|k| s.checked_add(k))
                    .map(|k| (b, k)),
                _ => None,
            },
        })
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.by_id.values()
    }

    pub fn tenant(&self, id: &str) -> Option<&Arc<Tenant>> {
        self.by_id.get(id)
    }
}

/// The number a segment file is named by (`.../v1/17.m4s` → 17).
fn segment_number(path: &str) -> Option<u64> {
    let file = path.rsplit('/').next()?;
    let stem = file.split('.').next()?;
    stem.parse().ok()
}

/// `.` or `..`, also percent-encoded (`%2e%2E`), or a segment hiding a separator or NUL
/// (`..%2F..`, `%5C`, `\`, `%00`): an origin that decodes or normalizes paths would otherwise
/// let a request climb out of the tenant's base path.
fn is_dot_segment(segment: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    decoded == "." || decoded == ".." || decoded.contains(['/', '\\', '\0'])
}

/// `host:port` / `[v6]:port` → host.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        let text = r#"
[[tenants]]
id = "acme"
hosts = ["acme.tv", "live.acme.tv"]
origin = "http://127.0.0.1:9000/origin"

[[tenants]]
id = "beta"
origin = "http://127.0.0.1:9001"
"#;
        let c = Config::parse(text, Path::new("t.toml")).unwrap();
        Routes::new(&c, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn classes() {
        assert_eq!(Class::of("/a/master.m3u8"), Class::HlsPlaylist);
        assert_eq!(Class::of("/a/manifest.MPD"), Class::DashManifest);
        assert_eq!(Class::of("/a/v0/12.ts"), Class::Segment);
        assert_eq!(Class::of("/a/v0/init.mp4"), Class::Segment);
        assert_eq!(Class::of("/a.m3u8/file"), Class::Other);
        assert_eq!(Class::of("/"), Class::Other);
    }

    #[test]
    fn routes_by_host_then_prefix() {
        let r = routes();
        let by_host = r
            .route(Some("Live.Acme.TV:8080"), "/x/v0.m3u8", Some("a=1"))
            .unwrap();
        assert_eq!(by_host.tenant.id, "acme");
        assert_eq!(by_host.origin_path, "/origin/x/v0.m3u8?a=1");
        assert_eq!(by_host.class, Class::HlsPlaylist);

        let by_prefix = r
            .route(Some("127.0.0.1:8080"), "/beta/live/1.ts", None)
            .unwrap();
        assert_eq!(by_prefix.tenant.id, "beta");
        assert_eq!(by_prefix.origin_path, "/live/1.ts");
        assert_eq!(by_prefix.class, Class::Segment);
        assert_eq!(
            by_prefix.tenant.origin_url(&by_prefix.origin_path),
            "http://127.0.0.1:9001/live/1.ts"
        );

        assert_eq!(r.route(None, "/beta", None).unwrap().origin_path, "/");
    }

    #[test]
    fn refuses_unknown_tenants_and_dot_segments() {
        let r = routes();
        assert_eq!(
            r.route(None, "/nobody/x.ts", None).unwrap_err(),
            RouteError::UnknownTenant
        );
        assert_eq!(
            r.route(Some("evil.tv"), "/", None).unwrap_err(),
            RouteError::UnknownTenant
        );
        assert_eq!(
            r.route(None, "/beta/../acme/x.ts", None).unwrap_err(),
            RouteError::BadPath
        );
        assert_eq!(
            r.route(None, "beta/x.ts", None).unwrap_err(),
            RouteError::BadPath
        );
        assert_eq!(
            r.route(None, "/beta/%2E%2e/x.ts", None).unwrap_err(),
            RouteError::BadPath
        );
        assert!(r.route(None, "/beta/a..b/x.ts", None).is_ok());
        for bad in [
            "/beta/..%2F..%2Fetc/passwd",
            "/beta/x%2fy.ts",
            "/beta/..%5C..%5Cx.ts",
            "/beta/..\\..\\x.ts",
            "/beta/x%00.ts",
            "/beta/.%2E/acme/x.ts",
            "/~tok/../x.ts",
            "/beta/..?c/x.ts",
            "/beta/x#/../../acme/y.ts",
        ] {
            assert_eq!(
                r.route(None, bad, None).unwrap_err(),
                RouteError::BadPath,
                "{bad}"
            );
        }
        // a host-routed request cannot name another tenant's path prefix to escape either
        let x = r.route(Some("acme.tv"), "/beta/x.ts", None).unwrap();
        assert_eq!(
            (x.tenant.id.as_str(), x.origin_path.as_str()),
            ("acme", "/origin/beta/x.ts")
        );
    }

    #[test]
    fn variant_hints_are_taken_out_of_the_query() {
        let r = routes();
        let x = r
            .route(None, "/beta/v1.m3u8", Some("a=1&mf_v=v126336x180&b=2"))
            .unwrap();
        assert_eq!(x.origin_path, "/v1.m3u8?a=1&b=2");
        assert_eq!(
            x.hint,
            Some(VariantHint::Video {
                bandwidth: 126336,
                height: Some(180)
            })
        );
        let y = r.route(None, "/beta/a0.m3u8", Some("mf_v=a")).unwrap();
        assert_eq!(y.origin_path, "/a0.m3u8");
        assert_eq!(y.hint, Some(VariantHint::Audio));
        assert_eq!(
            r.route(None, "/beta/x.m3u8", Some("mf_v=junk"))
                .unwrap()
                .hint,
            None
        );
        for h in [
            VariantHint::Audio,
            VariantHint::Video {
                bandwidth: 5,
                height: None,
            },
        ] {
            assert_eq!(VariantHint::parse(&h.to_param()), Some(h));
        }
    }

    #[test]
    fn session_segments_and_tracking_params() {
        let r = routes();
        let x = r
            .route(
                None,
                "/beta/~tok123/live/v1/9.ts",
                Some("mf_b=splice-1&mf_s=3&t=1"),
            )
            .unwrap();
        assert_eq!(x.session.as_deref(), Some("tok123"));
        assert_eq!(x.origin_path, "/live/v1/9.ts?t=1");
        assert_eq!(x.content_path, "/live/v1/9.ts");
        assert_eq!(x.ad_slot, Some(("splice-1".into(), 3)));
        let d = r
            .route(
                None,
                "/beta/~tok/ads/ad10/dash/v1/7.m4s",
                Some("mf_b=b&mf_s=5&mf_n=2"),
            )
            .unwrap();
        assert_eq!(
            d.ad_slot,
            Some(("b".into(), 10)),
            "slot 5 is number 2, number 7 is slot 10"
        );
        assert!(
            d.origin_path.ends_with("/ads/ad10/dash/v1/7.m4s"),
            "{}",
            d.origin_path
        );
        assert_eq!(x.class, Class::Segment);
        assert_eq!(x.session_prefix("tok123"), "/beta/~tok123");
        let h = r.route(Some("acme.tv"), "/~tok/x.m3u8", None).unwrap();
        assert_eq!(h.session.as_deref(), Some("tok"));
        assert_eq!(h.origin_path, "/origin/x.m3u8");
        assert_eq!(
            r.route(None, "/beta/~/x.ts", None).unwrap_err(),
            RouteError::BadPath
        );
    }

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("a.tv:80"), "a.tv");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("a.tv"), "a.tv");
    }
}
