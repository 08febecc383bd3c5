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
        // Long: one arm per algorithm, each loading its key the way the algorithm needs.
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
mod tests;
