//! The answers the proxy makes itself, from `request_filter`: manifests (the origin's, or
//! personalized for the viewer), edge auth refusals, an outage's joined slate segments, CORS
//! preflights and the session's tracking JSON; and the request id every answer carries.

use super::*;
use crate::manifest_cache::Manifest;

pub(super) const REQUEST_ID: &str = "x-request-id";

/// A request id: unique within the process (a counter) and across restarts and nodes (a
/// random prefix).
pub(super) fn new_request_id() -> String {
    static PREFIX: once_cell::sync::Lazy<u32> = once_cell::sync::Lazy::new(|| {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        u32::from_le_bytes(b)
    });
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:08x}{n:012x}", *PREFIX)
}

/// An incoming request id worth keeping (so a CDN's id follows the request through).
pub(super) fn sane_request_id(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Writes a complete response from the proxy itself, with the request id and CORS headers.
pub(super) async fn respond(
    session: &mut Session,
    ctx: &RequestCtx,
    status: u16,
    headers: Vec<(header::HeaderName, String)>,
    body: Bytes,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 6))?;
    for (k, v) in headers {
        resp.append_header(k, v)?;
    }
    resp.insert_header(REQUEST_ID, &ctx.request_id)?;
    resp.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
    add_cors(&mut resp, ctx)?;
    let head = session.req_header().method == Method::HEAD;
    session
        .write_response_header(Box::new(resp), head || body.is_empty())
        .await?;
    if !head && !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// The request's CORS headers on a response; the origin's own are dropped when the policy
/// decides instead.
pub(super) fn add_cors(resp: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    let Some(cors) = ctx.cors.as_ref() else {
        return Ok(());
    };
    if cors.replaces_origin_headers() {
        let theirs: Vec<header::HeaderName> = resp
            .headers
            .keys()
            .filter(|k| crate::cors::is_cors_header(k))
            .cloned()
            .collect();
        for k in theirs {
            resp.remove_header(&k);
        }
    }
    for (k, v) in cors.response_headers(ctx.origin.as_ref()) {
        resp.append_header(k, v)?;
    }
    Ok(())
}

pub(super) async fn respond_text(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    detail: &str,
    text: String,
) -> Result<()> {
    let cs = cache_status::for_error(detail);
    ctx.cache_status = Some(cs.clone());
    let mut headers = vec![
        (
            header::CONTENT_TYPE,
            "text/plain; charset=utf-8".to_string(),
        ),
        (header::HeaderName::from_static("cache-status"), cs),
    ];
    if let Some(p) = &ctx.plugin {
        headers.push((
            header::HeaderName::from_static("manifold-plugin"),
            p.clone(),
        ));
    }
    if let Some(secs) = ctx.retry_after {
        headers.push((header::RETRY_AFTER, secs.to_string()));
        headers.push((header::CACHE_CONTROL, "no-store".into()));
    }
    if matches!(detail, "origin-error" | "origin-timeout") {
        // the origin is failing: players and CDNs that honour it come back shortly (the
        // manifest cache retries the origin at least once a target duration meanwhile)
        headers.push((header::RETRY_AFTER, "2".into()));
        headers.push((header::CACHE_CONTROL, "no-store".into()));
    }
    respond(session, ctx, status, headers, Bytes::from(text + "\n")).await
}

/// `scheme://host[:port]` the request came to: guided sessions' URLs are absolute, since
/// players resolve an asset list's assets and a DASH event's presentation against the page.
fn request_origin(session: &Session) -> String {
    let req = session.req_header();
    let host = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers.get(header::HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or_default();
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    format!("{}://{host}", if tls { "https" } else { "http" })
}

pub(super) fn request_host(req: &RequestHeader) -> Option<&str> {
    req.uri
        .host()
        .or_else(|| req.headers.get(header::HOST).and_then(|h| h.to_str().ok()))
}

impl EdgeProxy {
    /// The fetch and personalize steps of a manifest request, and the answer.
    pub(super) async fn serve_manifest(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(route) = ctx.route.clone() else {
            return Error::e_explain(ErrorType::InternalError, "manifest without route");
        };
        let Some(tenancy) = ctx.tenancy.clone() else {
            return Error::e_explain(ErrorType::InternalError, "manifest without config");
        };
        if let Some(why) = &route.bad_directive {
            return respond_text(session, ctx, 400, "bad-directive", why.clone()).await;
        }
        let personalizes = tenancy.personalizer.personalizes(&route.tenant.id);
        let got = blocking::first(&tenancy.manifests, &route, personalizes).await;
        // slate-mode tenants: the live edge goes on with slate while the origin is down
        let got = (tenancy.outages)
            .through(&tenancy.manifests, &route, got)
            .await;
        let (mut m, lookup) = match got {
            Ok(got) => got,
            Err(e) => {
                tracing::warn!(
                    tenant = %route.tenant.id,
                    url = %route.tenant.origin_url(&route.origin_path),
                    error = %e,
                    "manifest fetch failed"
                );
                let detail = if e.status() == 504 {
                    "origin-timeout"
                } else {
                    "origin-error"
                };
                return respond_text(session, ctx, e.status(), detail, e.to_string()).await;
            }
        };
        let status = m.status.as_u16();
        let ttl = m.remaining_ttl();
        let cs = cache_status::for_manifest(lookup, status, !m.ttl.is_zero(), ttl);
        ctx.cache_status = Some(cs.clone());
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let origin = request_origin(session);
        let held = Instant::now();
        let outcome = loop {
            let outcome = tenancy
                .personalizer
                .run(
                    &route,
                    &m,
                    session.req_header(),
                    client_ip,
                    ctx.access.as_ref(),
                    &origin,
                )
                .await;
            // a session's blocking reload: personalized again as each origin part comes out
            let (Some(b), Outcome::Personalized { body, .. }) = (route.blocking, &outcome) else {
                break outcome;
            };
            match blocking::next(&m, body, b, held.elapsed()) {
                blocking::Next::Serve => break outcome,
                blocking::Next::TooFar(why) => {
                    return respond_text(session, ctx, 400, "bad-directive", why).await;
                }
                blocking::Next::Wait(ask) => {
                    match tenancy.manifests.get_blocking(&route, ask).await {
                        Ok((next, _)) if next.status == http::StatusCode::OK => m = next,
                        _ => break outcome,
                    }
                }
            }
        };
        let answer = match answer_of(outcome, &m, &route) {
            Ok(a) => a,
            Err(Instead::Redirect(location)) => {
                ctx.plugin = Some("session-created".into());
                let headers = vec![
                    (header::LOCATION, location),
                    (header::CACHE_CONTROL, "no-store".into()),
                    (header::HeaderName::from_static("cache-status"), cs),
                ];
                return respond(session, ctx, 302, headers, Bytes::new()).await;
            }
            Err(Instead::TooManySessions(r)) => {
                ctx.retry_after = Some(r.retry_after().as_secs().max(1));
                let text = match r {
                    crate::session_limit::Refused::Client(_) => {
                        "too many new sessions from this address: retry later"
                    }
                    crate::session_limit::Refused::Tenant(_) => {
                        "too many new sessions for this service: retry later"
                    }
                };
                tracing::debug!(tenant = %route.tenant.id, client = ?session.client_addr(), why = r.as_str(), "session start refused");
                return respond_text(session, ctx, 429, "session-rate", text.into()).await;
            }
            Err(Instead::BadRequest(text)) => {
                tracing::info!(tenant = %route.tenant.id, error = %text, "session not started");
                return respond_text(session, ctx, 400, "bad-insertion", text).await;
            }
            Err(Instead::Forbidden) => {
                let text = "invalid session: this URL was not issued by this service".to_string();
                return respond_text(session, ctx, 403, "bad-session", text).await;
            }
            Err(Instead::FailedClosed(f)) => {
                ctx.plugin = Some(format!("failed; reason={}; served=503", f.kind.as_str()));
                let text = format!("plugin failed ({}): {}", f.kind.as_str(), f.message);
                return respond_text(session, ctx, 503, "plugin-failed", text).await;
            }
        };
        let mut headers = manifest_headers(&m, answer.personalized, ttl, route.class);
        headers.push((header::HeaderName::from_static("cache-status"), cs));
        if let Some(p) = answer.plugin {
            ctx.plugin = Some(p.clone());
            headers.push((header::HeaderName::from_static("manifold-plugin"), p));
        }
        respond(session, ctx, status, headers, answer.body).await
    }
}

/// A manifest to serve: its body, its `Manifold-Plugin` header, whether it is the viewer's own.
struct Answer {
    body: Bytes,
    plugin: Option<String>,
    personalized: bool,
}

/// What goes out instead of a manifest.
enum Instead {
    Redirect(String),
    TooManySessions(crate::session_limit::Refused),
    Forbidden,
    BadRequest(String),
    FailedClosed(crate::plugin::PluginFailure),
}

/// The answer for what personalizing `m` came to.
fn answer_of(
    outcome: Outcome,
    m: &Manifest,
    route: &Route,
) -> std::result::Result<Answer, Instead> {
    let (body, plugin, personalized) = match outcome {
        Outcome::Redirect(location) => return Err(Instead::Redirect(location)),
        Outcome::TooManySessions(r) => return Err(Instead::TooManySessions(r)),
        Outcome::Forbidden => return Err(Instead::Forbidden),
        Outcome::BadRequest(text) => return Err(Instead::BadRequest(text)),
        Outcome::FailedClosed(f) => return Err(Instead::FailedClosed(f)),
        Outcome::PassThrough => match (&m.parsed, route.tenant.slate_outage) {
            // slate mode needs each rendition's shape: masters name them
            (crate::parse::Parsed::HlsMaster { playlist, .. }, true) => {
                let mut out = playlist.clone();
                let group = crate::route::group_of(&route.content_path);
                crate::session_urls::add_hints(&mut out, None, Some(&group));
                let mut buf = Vec::with_capacity(m.body.len() + 256);
                let _ = out.write_to(&mut buf);
                (Bytes::from(buf), None, false)
            }
            _ => (m.body.clone(), None, false),
        },
        Outcome::Unparsable => (
            m.body.clone(),
            Some("skipped; reason=unparsable-manifest; served=origin".into()),
            false,
        ),
        Outcome::Personalized {
            body,
            version,
            micros,
        } => (
            blocking::finish(m, body),
            Some(format!("ok; version={version}; us={micros}")),
            true,
        ),
        Outcome::FailedOpen(f) => (
            m.body.clone(),
            Some(format!("failed; reason={}; served=origin", f.kind.as_str())),
            false,
        ),
        Outcome::FailedReplayed { body, failure } => (
            body,
            Some(format!(
                "failed; reason={}; served=session",
                failure.kind.as_str()
            )),
            true,
        ),
    };
    Ok(Answer {
        body,
        plugin,
        personalized,
    })
}

/// The origin's headers for a manifest, less its shared validators and caching when the body
/// is the viewer's own; a content type if the origin sent none.
fn manifest_headers(
    m: &Manifest,
    personalized: bool,
    ttl: i64,
    class: Class,
) -> Vec<(header::HeaderName, String)> {
    let mut headers: Vec<(header::HeaderName, String)> = m
        .headers
        .iter()
        .filter(|(k, _)| {
            !personalized
                || !matches!(
                    k.as_str(),
                    "cache-control" | "etag" | "last-modified" | "expires"
                )
        })
        .filter_map(|(k, v)| Some((k.clone(), v.to_str().ok()?.to_string())))
        .collect();
    if personalized {
        headers.push((
            header::CACHE_CONTROL,
            format!("private, max-age={}", ttl.max(0)),
        ));
    }
    if !m.headers.iter().any(|(k, _)| k == header::CONTENT_TYPE) {
        let ct = match class {
            Class::DashManifest => "application/dash+xml",
            _ => "application/vnd.apple.mpegurl",
        };
        headers.push((header::CONTENT_TYPE, ct.into()));
    }
    headers
}

impl EdgeProxy {
    /// Edge auth ([`auth`]) for tenants that require it: the route to go on with (the token
    /// parameter kept from the origin and the cache keys), or `None` once the refusal (401 or
    /// 403, with its reason in the body and a log line) is sent.
    pub(super) async fn authorize(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut route: Route,
    ) -> Result<Option<Route>> {
        let Some(a) = route.tenant.auth.clone() else {
            return Ok(Some(route));
        };
        let Some(tenancy) = ctx.tenancy.clone() else {
            return Error::e_explain(ErrorType::InternalError, "auth without config");
        };
        let checked = a.check(
            session.req_header(),
            &route.tenant.id,
            route.session.as_deref(),
            &tenancy.personalizer.keys,
            auth::now(),
        );
        let denied = match checked {
            Ok(access) => {
                route.origin_path = a.strip_param(&route.origin_path);
                route.key_path = a.strip_param(&route.key_path);
                ctx.access = Some(access);
                return Ok(Some(route));
            }
            Err(d) => d,
        };
        tracing::info!(
            rid = %ctx.request_id,
            tenant = %route.tenant.id,
            path = %route.content_path,
            status = denied.status,
            reason = denied.reason,
            "edge auth refused the request: {}",
            denied.message
        );
        let cs = cache_status::for_error(denied.reason);
        ctx.cache_status = Some(cs.clone());
        let mut headers = vec![
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (header::CACHE_CONTROL, "no-store".into()),
            (header::HeaderName::from_static("cache-status"), cs),
        ];
        if denied.status == 401 {
            // RFC 6750: an error code only when a token was sent
            let error = if denied.reason == "auth-missing" {
                String::new()
            } else {
                ", error=\"invalid_token\"".into()
            };
            headers.push((
                header::WWW_AUTHENTICATE,
                format!("Bearer realm=\"{}\"{error}", route.tenant.id),
            ));
        }
        ctx.route = Some(route);
        let body = Bytes::from(denied.message + "\n");
        respond(session, ctx, denied.status, headers, body).await?;
        Ok(None)
    }

    /// Slate segments joined into one (`mf_cat`): this one and its listed siblings, from the
    /// copy pinned while the origin was up (fetched now if it is not there).
    pub(super) async fn serve_joined(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(route), Some(tenancy)) = (ctx.route.clone(), ctx.tenancy.clone()) else {
            return Error::e_explain(ErrorType::InternalError, "joined segment without route");
        };
        let first = route.content_path.as_str();
        let dir = first.rsplit_once('/').map_or("", |(d, _)| d);
        let paths: Vec<String> = std::iter::once(first.to_string())
            .chain(route.join.iter().flatten().map(|n| format!("{dir}/{n}")))
            .collect();
        let mut body = bytes::BytesMut::new();
        for (i, path) in paths.iter().enumerate() {
            let part = match tenancy.outages.part(&tenancy.manifests, &route, path).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(tenant = %route.tenant.id, path, error = %e, "slate segment unavailable");
                    return respond_text(session, ctx, 502, "origin-error", e).await;
                }
            };
            if i == 0 && route.lead {
                let mut l = crate::ts_lead::Leader::default();
                body.extend_from_slice(&l.push(Some(part), true).unwrap_or_default());
            } else {
                body.extend_from_slice(&part);
            }
        }
        let ct = if first.ends_with(".ts") {
            "video/mp2t"
        } else {
            "video/mp4"
        };
        let cs = format!("{}; fwd=bypass; detail=slate", cache_status::NAME);
        ctx.cache_status = Some(cs.clone());
        let headers = vec![
            (header::CONTENT_TYPE, ct.to_string()),
            (header::CACHE_CONTROL, "public, max-age=3600".into()),
            (header::HeaderName::from_static("cache-status"), cs),
        ];
        respond(session, ctx, 200, headers, body.freeze()).await
    }

    /// `OPTIONS`: a CORS preflight gets the policy's answer, any other OPTIONS the methods.
    pub(super) async fn options(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let req = session.req_header();
        let preflight = req
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
            .then(|| ctx.cors.as_ref().and_then(|c| c.preflight(&req.headers)))
            .flatten();
        ctx.cache_status = Some(cache_status::for_error("preflight"));
        let mut resp = ResponseHeader::build(204, Some(10))?;
        match preflight {
            Some(headers) => {
                for (k, v) in headers {
                    resp.append_header(k, v)?;
                }
            }
            None => {
                resp.insert_header(header::ALLOW, crate::cors::ALLOWED_METHODS)?;
                add_cors(&mut resp, ctx)?;
            }
        }
        resp.insert_header(REQUEST_ID, &ctx.request_id)?;
        resp.insert_header(header::CONTENT_LENGTH, "0")?;
        session.write_response_header(Box::new(resp), true).await
    }

    /// A guided session's asset list, ad playlist or pod MPD.
    pub(super) async fn serve_guided(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        asked: Result<crate::guided::Asked, String>,
        token: &str,
    ) -> Result<()> {
        let (Some(tenancy), Some(route)) = (ctx.tenancy.clone(), ctx.route.clone()) else {
            return Error::e_explain(ErrorType::InternalError, "guided without route");
        };
        let asked = match asked {
            Ok(a) => a,
            Err(text) => return respond_text(session, ctx, 404, "no-guided", text).await,
        };
        let p = &tenancy.personalizer;
        let Some(sid) = p.keys.verify(&route.tenant.id, token) else {
            let text = "invalid session: this URL was not issued by this service".to_string();
            return respond_text(session, ctx, 403, "bad-session", text).await;
        };
        let prefix = route.session_prefix(token);
        // asset URIs are absolute: hls.js resolves them against the page, not the asset list
        let req = session.req_header();
        let host = req
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| req.headers.get(header::HOST).and_then(|h| h.to_str().ok()))
            .unwrap_or_default()
            .to_string();
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let origin = format!("{}://{host}", if tls { "https" } else { "http" });
        let assets = crate::assets::Assets {
            origin: &origin,
            route: &route,
            store: &*p.store,
            manifests: &p.manifests,
            sid: &sid,
            prefix: &prefix,
        };
        let query = session.req_header().uri.query().map(str::to_string);
        match assets.answer(asked, query.as_deref()).await {
            Ok(a) => {
                let cs = cache_status::for_error("guided");
                ctx.cache_status = Some(cs.clone());
                let headers = vec![
                    (header::CONTENT_TYPE, a.content_type.into()),
                    (header::CACHE_CONTROL, crate::assets::CACHE_CONTROL.into()),
                    (header::HeaderName::from_static("cache-status"), cs),
                ];
                respond(session, ctx, 200, headers, a.body).await
            }
            Err(r) => {
                tracing::info!(tenant = %route.tenant.id, status = r.status, error = %r.text, "guided resource refused");
                respond_text(session, ctx, r.status, r.detail, r.text).await
            }
        }
    }

    /// The client-side tracking JSON of a session.
    pub(super) async fn serve_tracking(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        tenant: &str,
        token: &str,
    ) -> Result<()> {
        let Some(tenancy) = ctx.tenancy.clone() else {
            return Error::e_explain(ErrorType::InternalError, "tracking without config");
        };
        let p = &tenancy.personalizer;
        let Some(sid) = p.keys.verify(tenant, token) else {
            let text = "invalid session".to_string();
            return respond_text(session, ctx, 403, "bad-session", text).await;
        };
        match p.store.get(&sid).await {
            Ok(st) => {
                ctx.cache_status = Some(cache_status::for_error("tracking"));
                let body = tracking_json(&st).to_string();
                respond(
                    session,
                    ctx,
                    200,
                    vec![
                        (header::CONTENT_TYPE, "application/json".into()),
                        (header::CACHE_CONTROL, "no-store".into()),
                        (
                            header::HeaderName::from_static("cache-status"),
                            cache_status::for_error("tracking"),
                        ),
                    ],
                    Bytes::from(body),
                )
                .await
            }
            Err(e) => {
                tracing::warn!(tenant, error = %e, "tracking JSON: session store failed");
                respond_text(session, ctx, 503, "session-store", e.to_string()).await
            }
        }
    }
}
