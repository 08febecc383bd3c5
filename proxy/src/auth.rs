//! Step 1b of the data path, right after routing: edge auth (per tenant, optional). A viewer
//! token (JWT, HS256/RS256/ES256) in a query parameter or a header is verified before the
//! request can do anything else: missing or invalid (malformed, bad signature, algorithm not
//! the tenant's, no `exp`) → 401; expired, not yet valid, wrong audience or issuer → 403.
//!
//! A session started by a verified token carries the token's expiry in its signed session
//! token (`/{tenant}/~{token}/...`, see [`SessionKeys::create_until`]), so the session URIs of
//! a personalized manifest (reloads, segments, tracking) are authorized by the session token
//! alone until the viewer token would have expired; a session token that does not verify, or
//! whose session has ended, gets 403. Every other request of an auth tenant (session-less
//! manifests, segments proxied through the cache) needs the viewer token.
//!
//! The claims the tenant lists join the plugin's viewer context as `jwt.<claim>` entries of
//! `viewer.headers` (see [`Grant::viewer_headers`]); for sessions they are kept in the session
//! state and passed on every reload.

use crate::config::AuthConfig;
use crate::session::SessionKeys;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pingora_http::RequestHeader;
use std::borrow::Cow;
use std::path::Path;

pub use crate::config::CLAIM_PREFIX;
/// Longer tokens are not looked at (malformed).
const MAX_TOKEN: usize = 8 * 1024;
/// Longest claim value passed on (characters).
const MAX_CLAIM_VALUE: usize = 1024;
/// Most claims a tenant may pass on.
const MAX_CLAIMS: usize = 32;
/// Largest leeway accepted by the config.
const MAX_LEEWAY_SECS: u64 = 3600;

/// A tenant's verifier, built from its `[tenants.auth]` table.
pub struct TenantAuth {
    alg: Algorithm,
    key: DecodingKey,
    validation: Validation,
    leeway: u64,
    query_param: String,
    header: http::HeaderName,
    claims: Vec<String>,
}

impl std::fmt::Debug for TenantAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the key
        f.debug_struct("TenantAuth")
            .field("alg", &self.alg)
            .field("leeway", &self.leeway)
            .field("query_param", &self.query_param)
            .field("header", &self.header)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// What the verified token grants.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// The claims the tenant passes on (name without prefix, value as text).
    pub claims: Vec<(String, String)>,
    /// `exp`, Unix seconds: a session it starts ends then.
    pub expires: u64,
}

impl Grant {
    /// The claims as viewer-context entries (`jwt.sub`, ...).
    pub fn viewer_headers(
        claims: &[(String, String)],
    ) -> impl Iterator<Item = (String, String)> + '_ {
        claims
            .iter()
            .map(|(k, v)| (format!("{CLAIM_PREFIX}{k}"), v.clone()))
    }
}

/// Why a request of an auth tenant was allowed.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// By a session token of a session a verified viewer token started (still running).
    Session,
    /// By a verified viewer token.
    Token(Grant),
}

/// Why a request was refused: status, a short reason (logs, `Cache-Status` detail) and the
/// text of the response body.
#[derive(Debug, Clone, PartialEq)]
pub struct Denied {
    pub status: u16,
    pub reason: &'static str,
    pub message: String,
}

fn denied(status: u16, reason: &'static str, message: impl Into<String>) -> Denied {
    Denied {
        status,
        reason,
        message: message.into(),
    }
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Resolves `env:NAME` secrets like the rest of the config.
fn resolve_secret(s: &str) -> Result<String, String> {
    match s.strip_prefix("env:") {
        Some(var) => {
            std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
        }
        None => Ok(s.to_string()),
    }
}

fn name_ok(s: &str, extra: &[u8]) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

impl TenantAuth {
    /// Checks the table and loads the key (`key_file` relative to `base`, the config file's
    /// directory). Errors name the field below `auth` (`alg`, `key_file`, ...).
    pub fn new(c: &AuthConfig, base: &Path) -> Result<TenantAuth, (&'static str, String)> {
        let alg = match c.alg.as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err((
                    "alg",
                    format!("{other:?} is not supported: HS256, RS256 or ES256"),
                ))
            }
        };
        let key = match alg {
            Algorithm::HS256 => {
                if c.key_file.is_some() {
                    return Err(("key_file", "HS256 takes a secret, not a key file".into()));
                }
                let Some(s) = c.secret.as_deref() else {
                    return Err(("secret", "HS256 needs a secret (or env:NAME)".into()));
                };
                let s = resolve_secret(s).map_err(|m| ("secret", m))?;
                if s.len() < 32 {
                    return Err(("secret", "must be at least 32 bytes for HS256".into()));
                }
                DecodingKey::from_secret(s.as_bytes())
            }
            _ => {
                if c.secret.is_some() {
                    return Err((
                        "secret",
                        format!("{} takes a public key file (key_file), not a secret", c.alg),
                    ));
                }
                let Some(file) = c.key_file.as_deref() else {
                    return Err(("key_file", format!("{} needs a PEM public key file", c.alg)));
                };
                let path = base.join(file);
                let pem = std::fs::read(&path)
                    .map_err(|e| ("key_file", format!("cannot read {}: {e}", path.display())))?;
                let parsed = if alg == Algorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ec_pem(&pem)
                };
                let key = parsed.map_err(|e| {
                    (
                        "key_file",
                        format!("{} is not a PEM {} public key: {e}", path.display(), c.alg),
                    )
                })?;
                // builds the verifier once: a key of the wrong kind or curve (P-384 for
                // ES256) is refused here, not at the first viewer
                if let Err(e) = jsonwebtoken::crypto::verify("AA", b"probe", &key, alg) {
                    let what = if alg == Algorithm::ES256 {
                        "a P-256 (prime256v1) public key"
                    } else {
                        "an RSA public key"
                    };
                    return Err((
                        "key_file",
                        format!("{} is not {what} for {}: {e}", path.display(), c.alg),
                    ));
                }
                key
            }
        };
        if c.leeway.as_secs() > MAX_LEEWAY_SECS {
            return Err(("leeway", "must be at most 1h".into()));
        }
        if !name_ok(&c.query_param, b"-_.") {
            return Err((
                "query_param",
                format!(
                    "{:?} must be 1-64 chars of A-Z a-z 0-9 - _ .",
                    c.query_param
                ),
            ));
        }
        let header = http::HeaderName::from_bytes(c.header.to_ascii_lowercase().as_bytes())
            .map_err(|_| ("header", format!("{:?} is not a header name", c.header)))?;
        if c.claims.len() > MAX_CLAIMS {
            return Err(("claims", format!("at most {MAX_CLAIMS} claims")));
        }
        for claim in &c.claims {
            if !name_ok(claim, b"-_.:") {
                return Err((
                    "claims",
                    format!("{claim:?} must be 1-64 chars of A-Z a-z 0-9 - _ . :"),
                ));
            }
        }
        for a in &c.audience {
            if a.is_empty() {
                return Err(("audience", "an empty audience matches nothing".into()));
            }
        }
        let mut validation = Validation::new(alg);
        // exp and nbf are checked here, against one clock (see `verify_token`)
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let mut required = vec!["exp"];
        if c.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&c.audience);
            required.push("aud");
        }
        if !c.issuer.is_empty() {
            validation.set_issuer(&c.issuer);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(TenantAuth {
            alg,
            key,
            validation,
            leeway: c.leeway.as_secs(),
            query_param: c.query_param.clone(),
            header,
            claims: c.claims.clone(),
        })
    }

    /// The query parameter carrying the token (kept from the origin and the plugin).
    pub fn query_param(&self) -> &str {
        &self.query_param
    }

    /// The header carrying the token (never forwarded to the origin either).
    pub fn header_name(&self) -> &str {
        self.header.as_str()
    }

    /// The viewer token of a request: the header (`Bearer ` stripped) first, else the query
    /// parameter (percent-decoded).
    pub fn token_of<'a>(&self, req: &'a RequestHeader) -> Option<Cow<'a, str>> {
        let header = req.headers.get(&self.header).map(|v| v.as_bytes());
        self.token_in(header, req.uri.query())
    }

    /// [`token_of`](Self::token_of) on a header value's bytes and a query string.
    pub fn token_in<'a>(
        &self,
        header: Option<&'a [u8]>,
        query: Option<&'a str>,
    ) -> Option<Cow<'a, str>> {
        if let Some(v) = header {
            let v = std::str::from_utf8(v).unwrap_or("").trim();
            let v = match v.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                _ => v,
            };
            return Some(Cow::Borrowed(v));
        }
        url::form_urlencoded::parse(query?.as_bytes())
            .find(|(k, _)| k == self.query_param.as_str())
            .map(|(_, v)| v)
    }

    /// Verifies a viewer token at `now` (Unix seconds).
    pub fn verify_token(&self, token: &str, now: u64) -> Result<Grant, Denied> {
        if token.is_empty() {
            return Err(denied(401, "auth-missing", "missing viewer token"));
        }
        if token.len() > MAX_TOKEN {
            return Err(denied(
                401,
                "auth-invalid",
                "invalid viewer token: too long",
            ));
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|e| self.refusal(e.kind()))?;
        let claims = data.claims;
        let time = |name: &str| -> Result<Option<u64>, Denied> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .map(Some)
                    .ok_or_else(|| {
                        denied(
                            401,
                            "auth-invalid",
                            format!("invalid viewer token: {name} is not a number of seconds"),
                        )
                    }),
            }
        };
        let Some(exp) = time("exp")? else {
            return Err(denied(
                401,
                "auth-invalid",
                "invalid viewer token: no exp claim",
            ));
        };
        if exp.saturating_add(self.leeway) < now {
            return Err(denied(403, "auth-expired", "viewer token expired"));
        }
        if let Some(nbf) = time("nbf")? {
            if nbf > now.saturating_add(self.leeway) {
                return Err(denied(
                    403,
                    "auth-not-yet-valid",
                    "viewer token not valid yet (nbf)",
                ));
            }
        }
        let pass = self
            .claims
            .iter()
            .filter_map(|name| {
                let v = claims.get(name)?;
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => return None,
                    other => other.to_string(),
                };
                Some((name.clone(), text.chars().take(MAX_CLAIM_VALUE).collect()))
            })
            .collect();
        Ok(Grant {
            claims: pass,
            expires: exp,
        })
    }

    fn refusal(&self, kind: &ErrorKind) -> Denied {
        match kind {
            ErrorKind::InvalidSignature => {
                denied(401, "auth-invalid", "invalid viewer token: bad signature")
            }
            ErrorKind::InvalidAlgorithm => denied(
                401,
                "auth-invalid",
                format!(
                    "invalid viewer token: algorithm not accepted ({:?} expected)",
                    self.alg
                ),
            ),
            ErrorKind::MissingRequiredClaim(c) if c == "aud" => {
                denied(403, "auth-audience", "viewer token has no audience (aud)")
            }
            ErrorKind::MissingRequiredClaim(c) if c == "iss" => {
                denied(403, "auth-issuer", "viewer token has no issuer (iss)")
            }
            ErrorKind::MissingRequiredClaim(c) => denied(
                401,
                "auth-invalid",
                format!("invalid viewer token: no {c} claim"),
            ),
            ErrorKind::InvalidAudience => denied(
                403,
                "auth-audience",
                "viewer token is for another audience (aud)",
            ),
            ErrorKind::InvalidIssuer => denied(
                403,
                "auth-issuer",
                "viewer token is from another issuer (iss)",
            ),
            _ => denied(401, "auth-invalid", "invalid viewer token: malformed"),
        }
    }

    /// Decides a request: `session` is the session token of its URL (not yet verified).
    pub fn check(
        &self,
        req: &RequestHeader,
        tenant: &str,
        session: Option<&str>,
        keys: &SessionKeys,
        now: u64,
    ) -> Result<Access, Denied> {
        if let Some(token) = session {
            match keys.verify_expiry(tenant, token) {
                None => {
                    return Err(denied(
                        403,
                        "bad-session",
                        "invalid session: this URL was not issued by this service",
                    ))
                }
                Some((_, Some(ends))) => {
                    if ends.saturating_add(self.leeway) < now {
                        return Err(denied(
                            403,
                            "session-expired",
                            "session expired: the viewer token that started it has expired",
                        ));
                    }
                    return Ok(Access::Session);
                }
                // a session no viewer token started (auth was off then): the token decides
                Some((_, None)) => {}
            }
        }
        let Some(token) = self.token_of(req) else {
            return Err(denied(
                401,
                "auth-missing",
                format!(
                    "missing viewer token: send it in the {:?} query parameter or the {} header",
                    self.query_param, self.header
                ),
            ));
        };
        self.verify_token(&token, now).map(Access::Token)
    }

    /// Whether one `name=value` pair of a query is the token, however its name is encoded
    /// (the same decoding [`url::form_urlencoded`] applies when the token is read).
    fn is_token_pair(&self, pair: &str) -> bool {
        let name = pair.split('=').next().unwrap_or("");
        url::form_urlencoded::parse(name.as_bytes())
            .next()
            .is_some_and(|(k, _)| k == self.query_param.as_str())
    }

    /// `path?query` without the token parameter (what goes to the origin and the cache keys).
    pub fn strip_param(&self, path_and_query: &str) -> String {
        let Some((path, query)) = path_and_query.split_once('?') else {
            return path_and_query.to_string();
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !self.is_token_pair(pair))
            .collect();
        if kept.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", kept.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;
    use std::path::PathBuf;
    use std::time::Duration;

    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
    const NOW: u64 = 1_800_000_000;

    fn keys_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samples/keys")
    }

    fn cfg(alg: &str) -> AuthConfig {
        let mut c: AuthConfig = toml::from_str(&format!("alg = {alg:?}")).unwrap();
        match alg {
            "HS256" => c.secret = Some(SECRET.into()),
            "RS256" => c.key_file = Some("test-only-rs256-public.pem".into()),
            "ES256" => c.key_file = Some("test-only-es256-public.pem".into()),
            _ => {}
        }
        c.audience = vec!["manifold".into()];
        c.claims = vec!["sub".into(), "tier".into(), "n".into()];
        c
    }

    fn auth(alg: &str) -> TenantAuth {
        TenantAuth::new(&cfg(alg), &keys_dir()).unwrap()
    }

    fn sign(alg: &str, claims: &serde_json::Value) -> String {
        let (a, key) = match alg {
            "HS256" => (
                Algorithm::HS256,
                EncodingKey::from_secret(SECRET.as_bytes()),
            ),
            "RS256" => (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(
                    &std::fs::read(keys_dir().join("test-only-rs256-private.pem")).unwrap(),
                )
                .unwrap(),
            ),
            _ => (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(
                    &std::fs::read(keys_dir().join("test-only-es256-private.pem")).unwrap(),
                )
                .unwrap(),
            ),
        };
        encode(&Header::new(a), claims, &key).unwrap()
    }

    fn good() -> serde_json::Value {
        json!({"sub": "alice", "tier": "gold", "n": 7, "aud": "manifold", "exp": NOW + 600})
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn each_algorithm_verifies_its_tokens_and_passes_the_listed_claims() {
        for alg in ["HS256", "RS256", "ES256"] {
            let g = auth(alg).verify_token(&sign(alg, &good()), NOW).unwrap();
            assert_eq!(
                g.claims,
                vec![
                    ("sub".to_string(), "alice".to_string()),
                    ("tier".to_string(), "gold".to_string()),
                    ("n".to_string(), "7".to_string()),
                ],
                "{alg}"
            );
            assert_eq!(g.expires, NOW + 600);
        }
    }

    #[test]
    fn wrong_algorithm_or_key_is_401() {
        // an RS256 token for an ES256 tenant, an HS256 token for an RS256 tenant
        for (tenant, signer) in [("ES256", "RS256"), ("RS256", "HS256"), ("HS256", "ES256")] {
            let d = auth(tenant)
                .verify_token(&sign(signer, &good()), NOW)
                .unwrap_err();
            assert_eq!(d.status, 401, "{tenant} given {signer}: {d:?}");
            assert!(d.message.contains("algorithm"), "{d:?}");
        }
        // right algorithm, another secret
        let other = encode(
            &Header::new(Algorithm::HS256),
            &good(),
            &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes"),
        )
        .unwrap();
        let d = auth("HS256").verify_token(&other, NOW).unwrap_err();
        assert_eq!((d.status, d.reason), (401, "auth-invalid"));
        assert!(d.message.contains("signature"), "{d:?}");
        // a tampered payload
        let t = sign("ES256", &good());
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        parts[1] = sign(
            "ES256",
            &json!({"sub": "mallory", "aud": "manifold", "exp": NOW + 600}),
        )
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
        let d = auth("ES256")
            .verify_token(&parts.join("."), NOW)
            .unwrap_err();
        assert_eq!(d.status, 401);
    }

    #[test]
    fn alg_none_is_refused() {
        use base64::Engine;
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let t = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&good())
        );
        for alg in ["HS256", "RS256", "ES256"] {
            assert_eq!(auth(alg).verify_token(&t, NOW).unwrap_err().status, 401);
        }
    }

    #[test]
    fn exp_nbf_and_aud_are_checked_with_the_leeway() {
        let a = auth("HS256"); // leeway 30 s by default
        let with = |patch: serde_json::Value| {
            let mut c = good();
            for (k, v) in patch.as_object().unwrap() {
                c[k] = v.clone();
            }
            a.verify_token(&sign("HS256", &c), NOW)
        };
        assert!(with(json!({"exp": NOW - 20})).is_ok(), "within the leeway");
        let d = with(json!({"exp": NOW - 31})).unwrap_err();
        assert_eq!((d.status, d.reason), (403, "auth-expired"));
        assert!(with(json!({"nbf": NOW + 20})).is_ok(), "within the leeway");
        let d = with(json!({"nbf": NOW + 31})).unwrap_err();
        assert_eq!((d.status, d.reason), (403, "auth-not-yet-valid"));
        let d = with(json!({"aud": "someone-else"})).unwrap_err();
        assert_eq!((d.status, d.reason), (403, "auth-audience"));
        assert!(with(json!({"aud": ["x", "manifold"]})).is_ok());
        let mut no_aud = good();
        no_aud.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            a.verify_token(&sign("HS256", &no_aud), NOW)
                .unwrap_err()
                .status,
            403
        );
        let mut no_exp = good();
        no_exp.as_object_mut().unwrap().remove("exp");
        let d = a.verify_token(&sign("HS256", &no_exp), NOW).unwrap_err();
        assert_eq!(d.status, 401, "{d:?}");
        let d = with(json!({"exp": "tomorrow"})).unwrap_err();
        assert_eq!(d.status, 401, "{d:?}");
        let d = with(json!({"nbf": -5})).unwrap_err();
        assert_eq!(d.status, 401, "{d:?}");

        let mut c = cfg("HS256");
        c.leeway = Duration::ZERO;
        c.audience.clear();
        let strict = TenantAuth::new(&c, &keys_dir()).unwrap();
        let mut t = good();
        t["exp"] = json!(NOW - 1);
        assert_eq!(
            strict
                .verify_token(&sign("HS256", &t), NOW)
                .unwrap_err()
                .status,
            403
        );
        // no audience configured: aud is not checked
        t["exp"] = json!(NOW + 1);
        t["aud"] = json!("anything");
        assert!(strict.verify_token(&sign("HS256", &t), NOW).is_ok());
    }

    #[test]
    fn malformed_tokens_are_401_and_never_panic() {
        let a = auth("RS256");
        let long = "a".repeat(MAX_TOKEN + 1);
        let cases = [
            "",
            ".",
            "..",
            "...",
            "a.b.c",
            "eyJhbGciOiJSUzI1NiJ9",
            "eyJhbGciOiJSUzI1NiJ9..",
            "eyJhbGciOiJSUzI1NiJ9.e30.",
            "eyJhbGciOiJSUzI1NiJ9.e30.AAAA",
            "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.AAAA",
            "%%%.%%%.%%%",
            "ey\u{0}.ey.ey",
            "ëÿ.ÿ.ÿ",
            &long,
        ];
        for t in cases {
            let d = a.verify_token(t, NOW).unwrap_err();
            assert_eq!(d.status, 401, "{t:?}: {d:?}");
        }
        // pseudo-random garbage built from token-like pieces
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..2000 {
            let mut t = String::new();
            for _ in 0..(x % 40) {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let pieces = [
                    "eyJ",
                    "hbGciOiJ",
                    ".",
                    "SUzI1NiJ9",
                    "e30",
                    "-",
                    "_",
                    "=",
                    "A",
                    "%",
                ];
                t.push_str(pieces[(x >> 33) as usize % pieces.len()]);
            }
            assert!(a.verify_token(&t, NOW).is_err());
        }
    }

    #[test]
    fn encoded_token_names_are_stripped_too() {
        let a = auth("HS256");
        assert_eq!(
            a.strip_param("/p.m3u8?%74oken=abc&x=1&tok%65n=d&to+ken=k"),
            "/p.m3u8?x=1&to+ken=k"
        );
        assert_eq!(a.strip_param("/p.m3u8?token"), "/p.m3u8");
        assert_eq!(a.strip_param("/p.m3u8?tokens=1"), "/p.m3u8?tokens=1");
    }

    #[test]
    fn token_from_header_or_query() {
        let a = auth("HS256");
        let t = sign("HS256", &good());
        let keys = SessionKeys::new(b"0123456789abcdef0123");
        let check = |r: &RequestHeader| a.check(r, "acme", None, &keys, NOW);
        let bearer = format!("Bearer {t}");
        assert!(matches!(
            check(&req("/x.m3u8", &[("authorization", &bearer)])),
            Ok(Access::Token(_))
        ));
        let lower = format!("bearer {t}");
        assert!(check(&req("/x.m3u8", &[("Authorization", &lower)])).is_ok());
        assert!(check(&req(&format!("/x.m3u8?a=1&token={t}&b=2"), &[])).is_ok());
        let d = check(&req("/x.m3u8?a=1", &[])).unwrap_err();
        assert_eq!((d.status, d.reason), (401, "auth-missing"));
        assert!(d.message.contains("\"token\" query parameter"), "{d:?}");
        // a header that is there but wrong decides (no fallback to the query)
        let d = check(&req(
            &format!("/x.m3u8?token={t}"),
            &[("authorization", "Bearer x.y.z")],
        ))
        .unwrap_err();
        assert_eq!(d.status, 401);
        assert_eq!(
            check(&req("/x.m3u8", &[("authorization", "Basic abc")]))
                .unwrap_err()
                .status,
            401
        );

        // configured names
        let mut c = cfg("HS256");
        c.query_param = "jwt".into();
        c.header = "X-Viewer-Token".into();
        let custom = TenantAuth::new(&c, &keys_dir()).unwrap();
        let check = |r: &RequestHeader| custom.check(r, "acme", None, &keys, NOW);
        assert!(check(&req("/s.ts", &[("x-viewer-token", &t)])).is_ok());
        assert!(check(&req(&format!("/s.ts?jwt={t}"), &[])).is_ok());
        assert!(check(&req(&format!("/s.ts?token={t}"), &[])).is_err());
        assert!(check(&req("/s.ts", &[("authorization", &bearer)])).is_err());
    }

    #[test]
    fn session_tokens_carry_the_authorization() {
        let a = auth("ES256");
        let keys = SessionKeys::new(b"0123456789abcdef0123");
        let bare = req("/live/v1.m3u8", &[]);
        let (_, live) = keys.create_until("acme", NOW + 100);
        assert_eq!(
            a.check(&bare, "acme", Some(&live), &keys, NOW),
            Ok(Access::Session)
        );
        // within the leeway, then ended
        assert!(a
            .check(&bare, "acme", Some(&live), &keys, NOW + 120)
            .is_ok());
        let d = a
            .check(&bare, "acme", Some(&live), &keys, NOW + 131)
            .unwrap_err();
        assert_eq!((d.status, d.reason), (403, "session-expired"));
        // another tenant's, forged, or a changed expiry
        let d = a
            .check(&bare, "other", Some(&live), &keys, NOW)
            .unwrap_err();
        assert_eq!((d.status, d.reason), (403, "bad-session"));
        assert_eq!(
            a.check(
                &bare,
                "acme",
                Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                &keys,
                NOW
            )
            .unwrap_err()
            .status,
            403
        );
        let (_, other_exp) =
            SessionKeys::new(b"another key, 20 bytes").create_until("acme", NOW + 100);
        assert_eq!(
            a.check(&bare, "acme", Some(&other_exp), &keys, NOW)
                .unwrap_err()
                .status,
            403
        );
        // a session no viewer token started needs the viewer token
        let (_, plain) = keys.create("acme");
        assert_eq!(
            a.check(&bare, "acme", Some(&plain), &keys, NOW)
                .unwrap_err()
                .status,
            401
        );
        let t = sign("ES256", &good());
        let with_token = req(&format!("/live/v1.m3u8?token={t}"), &[]);
        assert!(matches!(
            a.check(&with_token, "acme", Some(&plain), &keys, NOW),
            Ok(Access::Token(_))
        ));
    }

    #[test]
    fn the_token_parameter_is_stripped_for_the_origin() {
        let a = auth("HS256");
        assert_eq!(a.strip_param("/a/b.ts?token=x.y.z"), "/a/b.ts");
        assert_eq!(a.strip_param("/a/b.ts?x=1&token=t&y=2"), "/a/b.ts?x=1&y=2");
        assert_eq!(a.strip_param("/a/b.ts?tokens=1&token"), "/a/b.ts?tokens=1");
        assert_eq!(a.strip_param("/a/b.ts"), "/a/b.ts");
    }

    #[test]
    fn config_errors_name_the_field() {
        let dir = keys_dir();
        let err = |c: AuthConfig| TenantAuth::new(&c, &dir).unwrap_err();
        let mut c = cfg("HS256");
        c.alg = "HS512".into();
        assert_eq!(err(c).0, "alg");
        let mut c = cfg("HS256");
        c.secret = Some("short".into());
        assert_eq!(err(c).0, "secret");
        let mut c = cfg("HS256");
        c.secret = Some("env:MANIFOLD_TEST_UNSET_AUTH_SECRET".into());
        let (f, m) = err(c);
        assert_eq!(f, "secret");
        assert!(m.contains("MANIFOLD_TEST_UNSET_AUTH_SECRET"), "{m}");
        let mut c = cfg("RS256");
        c.key_file = Some("missing.pem".into());
        let (f, m) = err(c);
        assert_eq!(f, "key_file");
        assert!(m.contains("cannot read"), "{m}");
        let mut c = cfg("ES256");
        c.key_file = Some("test-only-p384-public.pem".into());
        let (f, m) = err(c);
        assert_eq!(f, "key_file");
        assert!(m.contains("P-256"), "{m}");
        let mut c = cfg("ES256");
        c.key_file = Some("test-only-rs256-public.pem".into());
        assert_eq!(err(c).0, "key_file");
        let mut c = cfg("RS256");
        c.key_file = Some("test-only-es256-public.pem".into());
        assert_eq!(err(c).0, "key_file");
        let mut c = cfg("RS256");
        c.key_file = Some("README.md".into());
        assert_eq!(err(c).0, "key_file");
        let mut c = cfg("RS256");
        c.secret = Some(SECRET.into());
        assert_eq!(err(c).0, "secret");
        let mut c = cfg("HS256");
        c.claims = vec!["sub".into(), "bad claim".into()];
        assert_eq!(err(c).0, "claims");
        let mut c = cfg("HS256");
        c.query_param = "a&b".into();
        assert_eq!(err(c).0, "query_param");
        let mut c = cfg("HS256");
        c.header = "bad header".into();
        assert_eq!(err(c).0, "header");
        let mut c = cfg("HS256");
        c.leeway = Duration::from_secs(7200);
        assert_eq!(err(c).0, "leeway");
    }
}
