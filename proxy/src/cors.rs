//! CORS for web players: every response the proxy makes or passes carries the tenant's policy
//! (manifests, session redirects, segments, `tracking.json`, errors), and preflights are
//! answered before routing errors and edge auth, so a player that sends a header (CMCD in
//! header mode, `Authorization`) can start at all. The origin's own `Access-Control-*` headers
//! are dropped: a page's access to a stream is the edge's decision, not the origin's.
//!
//! `[cors]` is the default for every tenant (and for requests no tenant claims);
//! `[tenants.cors]` replaces it for one tenant.

use crate::invalid::Invalid;
use http::{header, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use std::time::Duration;

/// The `[cors]` / `[tenants.cors]` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// `false`: the proxy adds nothing and passes the origin's CORS headers on.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `["*"]` (any page), or exact origins (`https://player.example.com`) echoed back with
    /// `Vary: Origin`.
    #[serde(default = "any_origin")]
    pub allow_origins: Vec<String>,
    /// Let pages send cookies/credentials (needs exact origins, not `*`).
    #[serde(default)]
    pub allow_credentials: bool,
    /// Request headers a page may send; empty: whatever the preflight asks for.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers a page may read (beyond the CORS-safelisted ones).
    #[serde(default = "default_expose")]
    pub expose_headers: Vec<String>,
    /// How long a browser may cache a preflight answer.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// Send `Timing-Allow-Origin` too, so the pages allowed can measure segment downloads
    /// with Resource Timing (throughput, protocol), as player QoE tools do.
    #[serde(default = "yes")]
    pub timing_allow_origin: bool,
}

fn yes() -> bool {
    true
}
fn any_origin() -> Vec<String> {
    vec!["*".into()]
}
fn default_expose() -> Vec<String> {
    [
        "Cache-Status",
        "Manifold-Plugin",
        "X-Request-Id",
        "Content-Range",
        "Content-Length",
        "Age",
        "Date",
    ]
    .map(String::from)
    .to_vec()
}
fn default_max_age() -> Duration {
    Duration::from_secs(3600)
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            enabled: true,
            allow_origins: any_origin(),
            allow_credentials: false,
            allow_headers: Vec::new(),
            expose_headers: default_expose(),
            max_age: default_max_age(),
            timing_allow_origin: true,
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl CorsConfig {
    /// Checks the section; `at` names it in errors (`cors`, `tenants[2].cors`).
    pub fn validate(&self, at: &str) -> Result<(), Invalid> {
        let any = self.allow_origins.iter().any(|o| o == "*");
        if self.allow_origins.is_empty() {
            return Err(Invalid::new(
                format!("{at}.allow_origins"),
                "needs \"*\" or at least one origin",
            ));
        }
        if any && self.allow_origins.len() > 1 {
            return Err(Invalid::new(
                format!("{at}.allow_origins"),
                "\"*\" cannot be combined with exact origins",
            ));
        }
        if any && self.allow_credentials {
            return Err(Invalid::new(
                format!("{at}.allow_credentials"),
                "credentials need exact allow_origins, not \"*\" (browsers refuse the combination)",
            ));
        }
        for o in self.allow_origins.iter().filter(|o| *o != "*") {
            let ok = url::Url::parse(o).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.path() == "/"
                    && !o.ends_with('/')
                    && u.query().is_none()
            });
            if !ok {
                return Err(Invalid::new(
                    format!("{at}.allow_origins"),
                    format!("{o:?} is not an origin (scheme://host[:port], no path)"),
                ));
            }
        }
        for (name, list) in [
            ("allow_headers", &self.allow_headers),
            ("expose_headers", &self.expose_headers),
        ] {
            if let Some(h) = list.iter().find(|h| !is_token(h)) {
                return Err(Invalid::new(
                    format!("{at}.{name}"),
                    format!("{h:?} is not a header name"),
                ));
            }
        }
        if self.max_age > Duration::from_secs(86_400) {
            return Err(Invalid::new(format!("{at}.max_age"), "must be at most 24h"));
        }
        Ok(())
    }
}

/// A compiled policy: header values built once.
#[derive(Debug)]
pub struct CorsPolicy {
    enabled: bool,
    /// `None`: any origin (`*`).
    origins: Option<Vec<HeaderValue>>,
    credentials: bool,
    allow_headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
    timing: bool,
}

const ALLOW_METHODS: &str = "GET, HEAD, OPTIONS";

impl CorsPolicy {
    pub fn new(c: &CorsConfig) -> CorsPolicy {
        let join = |v: &[String]| {
            (!v.is_empty())
                .then(|| HeaderValue::from_str(&v.join(", ")).ok())
                .flatten()
        };
        CorsPolicy {
            enabled: c.enabled,
            origins: (!c.allow_origins.iter().any(|o| o == "*")).then(|| {
                c.allow_origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok())
                    .collect()
            }),
            credentials: c.allow_credentials,
            allow_headers: join(&c.allow_headers),
            expose: join(&c.expose_headers),
            max_age: HeaderValue::from(c.max_age.as_secs()),
            timing: c.timing_allow_origin,
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if allowed.
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match &self.origins {
            None => Some(HeaderValue::from_static("*")),
            Some(list) => origin.filter(|o| list.contains(o)).cloned(),
        }
    }

    /// The CORS headers of an ordinary (non-preflight) response to a request from `origin`.
    /// With `*` they do not depend on the request, so a cache in front may share them.
    pub fn response_headers(&self, origin: Option<&HeaderValue>) -> Vec<(HeaderName, HeaderValue)> {
        if !self.enabled {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(4);
        if self.origins.is_some() {
            out.push((header::VARY, HeaderValue::from_static("Origin")));
        }
        let Some(allow) = self.allow_origin(origin) else {
            return out;
        };
        if self.credentials {
            out.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        if let Some(e) = &self.expose {
            out.push((header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone()));
        }
        if self.timing {
            out.push((
                HeaderName::from_static("timing-allow-origin"),
                allow.clone(),
            ));
        }
        out.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, allow));
        out
    }

    /// The answer to a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`): the
    /// headers of a 204, or `None` when the policy is off (the request is then an ordinary
    /// OPTIONS). A disallowed origin gets a 204 without `Allow-Origin`: the browser refuses.
    pub fn preflight(&self, req: &HeaderMap) -> Option<Vec<(HeaderName, HeaderValue)>> {
        if !self.enabled {
            return None;
        }
        let origin = req.get(header::ORIGIN);
        let mut out = vec![(
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        )];
        let Some(allow) = self.allow_origin(origin) else {
            return Some(out);
        };
        out.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, allow));
        out.push((
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        ));
        let asked = req
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.split(',').all(|h| is_token(h.trim())));
        let headers = match (&self.allow_headers, asked) {
            (Some(list), _) => Some(list.clone()),
            // whatever a player asks for (CMCD-*, Authorization, Range): the proxy reads
            // only what it knows, so reflecting the request is safe
            (None, Some(a)) => HeaderValue::from_str(a).ok(),
            (None, None) => None,
        };
        if let Some(h) = headers {
            out.push((header::ACCESS_CONTROL_ALLOW_HEADERS, h));
        }
        if self.credentials {
            out.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        out.push((header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone()));
        Some(out)
    }

    /// Whether the origin's own CORS headers are dropped from what is passed on.
    pub fn replaces_origin_headers(&self) -> bool {
        self.enabled
    }
}

/// `Access-Control-*` and `Timing-Allow-Origin` response headers (the origin's, when the edge
/// decides instead).
pub fn is_cors_header(name: &HeaderName) -> bool {
    name.as_str().starts_with("access-control-") || name.as_str() == "timing-allow-origin"
}

/// The methods the proxy answers, for `Allow`.
pub const ALLOWED_METHODS: &str = ALLOW_METHODS;

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn get<'a>(h: &'a [(HeaderName, HeaderValue)], name: &str) -> Option<&'a str> {
        h.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn any_origin_by_default_with_exposed_headers() {
        let p = CorsPolicy::new(&CorsConfig::default());
        let h = p.response_headers(None);
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        let exposed = get(&h, "access-control-expose-headers").unwrap();
        for name in ["Cache-Status", "Manifold-Plugin", "X-Request-Id"] {
            assert!(exposed.contains(name), "{exposed}");
        }
        assert_eq!(get(&h, "vary"), None, "* does not vary by origin");
        assert_eq!(get(&h, "timing-allow-origin"), Some("*"));
    }

    #[test]
    fn preflight_reflects_requested_headers() {
        let p = CorsPolicy::new(&CorsConfig::default());
        let h = p
            .preflight(&req(&[
                ("origin", "https://site.example"),
                ("access-control-request-method", "GET"),
                (
                    "access-control-request-headers",
                    "cmcd-request, authorization",
                ),
            ]))
            .unwrap();
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        assert_eq!(
            get(&h, "access-control-allow-headers"),
            Some("cmcd-request, authorization")
        );
        assert_eq!(get(&h, "access-control-allow-methods"), Some(ALLOW_METHODS));
        assert_eq!(get(&h, "access-control-max-age"), Some("3600"));
        // a header list that is not a list of names is not reflected
        let h = p
            .preflight(&req(&[
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x\"y"),
            ]))
            .unwrap();
        assert_eq!(get(&h, "access-control-allow-headers"), None);
    }

    #[test]
    fn exact_origins_are_echoed_and_vary() {
        let c = CorsConfig {
            allow_origins: vec!["https://a.example".into()],
            allow_credentials: true,
            ..CorsConfig::default()
        };
        c.validate("cors").unwrap();
        let p = CorsPolicy::new(&c);
        let ok = HeaderValue::from_static("https://a.example");
        let h = p.response_headers(Some(&ok));
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("https://a.example")
        );
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&h, "vary"), Some("Origin"));
        let other = HeaderValue::from_static("https://evil.example");
        let h = p.response_headers(Some(&other));
        assert_eq!(get(&h, "access-control-allow-origin"), None);
        assert_eq!(get(&h, "vary"), Some("Origin"));
    }

    #[test]
    fn disabled_adds_nothing() {
        let p = CorsPolicy::new(&CorsConfig {
            enabled: false,
            ..CorsConfig::default()
        });
        assert!(p.response_headers(None).is_empty());
        assert!(p
            .preflight(&req(&[("access-control-request-method", "GET")]))
            .is_none());
        assert!(!p.replaces_origin_headers());
    }

    #[test]
    fn bad_sections_are_refused() {
        let bad = |c: CorsConfig| c.validate("cors").unwrap_err().field;
        assert_eq!(
            bad(CorsConfig {
                allow_credentials: true,
                ..CorsConfig::default()
            }),
            "cors.allow_credentials"
        );
        assert_eq!(
            bad(CorsConfig {
                allow_origins: vec!["https://a.example/path".into()],
                ..CorsConfig::default()
            }),
            "cors.allow_origins"
        );
        assert_eq!(
            bad(CorsConfig {
                allow_origins: vec!["*".into(), "https://a.example".into()],
                ..CorsConfig::default()
            }),
            "cors.allow_origins"
        );
        assert_eq!(
            bad(CorsConfig {
                expose_headers: vec!["bad header".into()],
                ..CorsConfig::default()
            }),
            "cors.expose_headers"
        );
    }
}
