//! The pingora `ProxyHttp` implementation that ties the data path together:
//! route → manifest cache (served here) or segment cache/origin (pingora) → respond.
//!
//! Manifests are answered from `request_filter`, which is async: the whole origin manifest is
//! fetched through the coalescing [`ManifestCache`], so later steps (plugin, edits) can work on a
//! complete, parsed manifest and await host calls. Body filters would only see chunks and must
//! be synchronous. Segments take pingora's proxy path with pingora-cache.

use crate::auth::{self, Access};
use crate::cache_policy::{is_media_type, segment_cacheability};
use crate::cache_status;
use crate::cors::CorsPolicy;
use crate::drain::InFlight;
use crate::metrics::{cache_result, origin_outcome, METRICS};
use crate::personalize::Outcome;
use crate::reload::{Live, Tenancy};
use crate::route::{Class, Route, RouteError};
use crate::storage::SegmentStorage;
use crate::tracking::tracking_json;
use crate::tracking::Beacons;
use async_trait::async_trait;
use bytes::Bytes;
use http::{header, Method};
use pingora_cache::lock::CacheKeyLockImpl;
use pingora_cache::{CacheKey, CacheOptionOverrides, NoCacheReason, RespCacheable};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::Instrument;

/// Shared by all requests of the proxy service.
pub struct EdgeProxy {
    /// Routing, manifests and plugins of the current config (swapped on reload).
    pub live: Live,
    pub beacons: Arc<Beacons>,
    pub storage: &'static SegmentStorage,
    pub cache_lock: &'static CacheKeyLockImpl,
    pub lock_timeout: Duration,
    pub max_object_size: usize,
}

/// Per-request state.
pub struct RequestCtx {
    /// The config the request started on: it finishes on it, whatever a reload does.
    tenancy: Option<Arc<Tenancy>>,
    route: Option<Route>,
    /// Edge auth: why the request was let in (tenants with `[tenants.auth]`).
    access: Option<Access>,
    started: Instant,
    /// Set when the proxy answered itself (manifests, errors).
    cache_status: Option<String>,
    /// What the tenant's plugin did (`Manifold-Plugin` header value).
    plugin: Option<String>,
    /// `X-Request-Id`: the viewer's own if it sent a sane one, else ours.
    request_id: String,
    /// When the origin fetch of a proxied request started.
    upstream_started: Option<Instant>,
    /// Whether its outcome was recorded already.
    upstream_recorded: bool,
    /// The CORS policy answering this request: the tenant's once routed, else the default.
    cors: Option<Arc<CorsPolicy>>,
    /// `Retry-After` seconds for an answer the proxy makes (a refused session start).
    retry_after: Option<u64>,
    /// The request's `Origin` (a page's, for CORS).
    origin: Option<http::HeaderValue>,
    /// Rewrites a CMAF fragment's timing on its way into the cache (tenants that normalize).
    normalizer: Option<crate::cmaf_timing::Normalizer>,
    /// Starts a creative's first TS segment's audio at its video's decode time.
    leader: Option<crate::ts_lead::Leader>,
    /// The origin request carried the viewer's credentials (tenants that forward them).
    credentialed: bool,
    /// Origins this request tried (indexes into the tenant's origins), the current one last.
    tried: Vec<usize>,
    /// Counts the request as in flight until the context is dropped (graceful drain).
    _in_flight: InFlight,
}

const REQUEST_ID: &str = "x-request-id";

/// A request id: unique within the process (a counter) and across restarts and nodes (a
/// random prefix).
fn new_request_id() -> String {
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
fn sane_request_id(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Writes a complete response from the proxy itself, with the request id and CORS headers.
async fn respond(
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
fn add_cors(resp: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
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

async fn respond_text(
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

fn request_host(req: &RequestHeader) -> Option<&str> {
    req.uri
        .host()
        .or_else(|| req.headers.get(header::HOST).and_then(|h| h.to_str().ok()))
}

impl EdgeProxy {
    async fn serve_manifest(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let Some(route) = ctx.route.clone() else {
            return Error::e_explain(ErrorType::InternalError, "manifest without route");
        };
        let Some(tenancy) = ctx.tenancy.clone() else {
            return Error::e_explain(ErrorType::InternalError, "manifest without config");
        };
        let got = tenancy.manifests.get(&route).await;
        // slate-mode tenants: the live edge goes on with slate while the origin is down
        let catalog = tenancy.personalizer.catalogs.get(&route.tenant.id);
        let got = (tenancy.outages)
            .through(&tenancy.manifests, catalog, &route, got)
            .await;
        match got {
            Ok((m, lookup)) => {
                let status = m.status.as_u16();
                let stored = !m.ttl.is_zero();
                let ttl = m.remaining_ttl();
                let cs = cache_status::for_manifest(lookup, status, stored, ttl);
                ctx.cache_status = Some(cs.clone());
                let client_ip = session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip());
                let outcome = tenancy
                    .personalizer
                    .run(
                        &route,
                        &m,
                        session.req_header(),
                        client_ip,
                        ctx.access.as_ref(),
                    )
                    .await;
                let (body, plugin_header, personalized) = match outcome {
                    Outcome::Redirect(location) => {
                        ctx.plugin = Some("session-created".into());
                        return respond(
                            session,
                            ctx,
                            302,
                            vec![
                                (header::LOCATION, location),
                                (header::CACHE_CONTROL, "no-store".into()),
                                (header::HeaderName::from_static("cache-status"), cs),
                            ],
                            Bytes::new(),
                        )
                        .await;
                    }
                    Outcome::TooManySessions(r) => {
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
                    Outcome::Forbidden => {
                        let text =
                            "invalid session: this URL was not issued by this service".to_string();
                        return respond_text(session, ctx, 403, "bad-session", text).await;
                    }
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
                        body,
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
                    Outcome::FailedClosed(f) => {
                        ctx.plugin =
                            Some(format!("failed; reason={}; served=503", f.kind.as_str()));
                        let text = format!("plugin failed ({}): {}", f.kind.as_str(), f.message);
                        return respond_text(session, ctx, 503, "plugin-failed", text).await;
                    }
                };
                let mut headers: Vec<(header::HeaderName, String)> = m
                    .headers
                    .iter()
                    .filter(|(k, _)| {
                        // an edited body is the viewer's own: no shared validators or caching
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
                    let ct = match route.class {
                        Class::DashManifest => "application/dash+xml",
                        _ => "application/vnd.apple.mpegurl",
                    };
                    headers.push((header::CONTENT_TYPE, ct.into()));
                }
                headers.push((header::HeaderName::from_static("cache-status"), cs));
                if let Some(p) = plugin_header {
                    ctx.plugin = Some(p.clone());
                    headers.push((header::HeaderName::from_static("manifold-plugin"), p));
                }
                respond(session, ctx, status, headers, body).await
            }
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
                respond_text(session, ctx, e.status(), detail, e.to_string()).await
            }
        }
    }
}

impl EdgeProxy {
    /// Edge auth ([`auth`]) for tenants that require it: the route to go on with (the token
    /// parameter kept from the origin and the cache keys), or `None` once the refusal (401 or
    /// 403, with its reason in the body and a log line) is sent.
    async fn authorize(
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
    async fn serve_joined(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
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
    async fn options(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
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

    /// The client-side tracking JSON of a session.
    async fn serve_tracking(
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

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            tenancy: None,
            route: None,
            access: None,
            started: Instant::now(),
            cache_status: None,
            plugin: None,
            request_id: new_request_id(),
            upstream_started: None,
            upstream_recorded: false,
            cors: None,
            origin: None,
            retry_after: None,
            normalizer: None,
            leader: None,
            credentialed: false,
            tried: Vec::new(),
            _in_flight: InFlight::start(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        if let Some(id) = req
            .headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| sane_request_id(v))
        {
            ctx.request_id = id.to_string();
        }
        if crate::drain::draining() {
            // answer with `Connection: close`: the viewer reconnects to whoever listens next
            session.set_keepalive(None);
        }
        let req = session.req_header();
        let tenancy = self.live.load_full();
        ctx.origin = req.headers.get(header::ORIGIN).cloned();
        ctx.cors = Some(tenancy.cors.clone());
        // request limits ([limits]), before anything else looks at the request
        let limits = tenancy.config.limits;
        if let Err(r) = limits.check(crate::limits::target_len(&req.uri), &req.headers) {
            tracing::warn!(rid = %ctx.request_id, status = r.status, error = %r.message, "request refused");
            ctx.tenancy = Some(tenancy);
            session.set_keepalive(None);
            respond_text(session, ctx, r.status, r.detail, r.message).await?;
            return Ok(true);
        }
        let req = session.req_header();
        let routed = tenancy
            .routes
            .route(request_host(req), req.uri.path(), req.uri.query());
        ctx.tenancy = Some(tenancy);
        if let Ok(r) = &routed {
            ctx.cors = Some(r.tenant.cors.clone());
        }
        // CORS preflights and OPTIONS are answered before routing errors and edge auth: a
        // browser sends no credentials on a preflight, and a player that cannot pass one
        // cannot start at all
        if session.req_header().method == Method::OPTIONS {
            self.options(session, ctx).await?;
            return Ok(true);
        }
        let route = match routed {
            Ok(r) => r,
            Err(RouteError::UnknownTenant) => {
                let text = format!(
                    "unknown tenant: no tenant serves host {:?} or path {:?}",
                    request_host(req).unwrap_or(""),
                    req.uri.path()
                );
                respond_text(session, ctx, 404, "unknown-tenant", text).await?;
                return Ok(true);
            }
            Err(RouteError::BadPath) => {
                let text = format!("bad request path {:?}", req.uri.path());
                respond_text(session, ctx, 400, "bad-path", text).await?;
                return Ok(true);
            }
        };
        // edge auth, before anything the request could cause (beacons, origin, plugin)
        let Some(route) = self.authorize(session, ctx, route).await? else {
            return Ok(true);
        };
        let method = &session.req_header().method;
        if method != Method::GET && method != Method::HEAD {
            let text = format!("method {method} not allowed: GET, HEAD or OPTIONS only");
            let cs = cache_status::for_error("method");
            ctx.cache_status = Some(cs.clone());
            let headers = vec![
                (header::ALLOW, crate::cors::ALLOWED_METHODS.to_string()),
                (header::CONTENT_TYPE, "text/plain; charset=utf-8".into()),
                (header::HeaderName::from_static("cache-status"), cs),
            ];
            respond(session, ctx, 405, headers, Bytes::from(text + "\n")).await?;
            return Ok(true);
        }
        let class = route.class;
        if route.content_path == "/tracking.json" {
            if let Some(token) = route.session.clone() {
                let tenant = route.tenant.id.clone();
                ctx.route = Some(route);
                let span = tracing::info_span!("request", rid = %ctx.request_id);
                self.serve_tracking(session, ctx, &tenant, &token)
                    .instrument(span)
                    .await?;
                return Ok(true);
            }
        }
        if route.join.is_some() && matches!(class, Class::Segment) {
            // consecutive slate segments served as one (outage slate entries)
            ctx.route = Some(route);
            let span = tracing::info_span!("request", rid = %ctx.request_id);
            self.serve_joined(session, ctx).instrument(span).await?;
            return Ok(true);
        }
        ctx.route = Some(route);
        if class.is_manifest() {
            // what the manifest path logs (origin, plugin, session store) carries the request id
            let span = tracing::info_span!("request", rid = %ctx.request_id);
            self.serve_manifest(session, ctx).instrument(span).await?;
            return Ok(true);
        }
        Ok(false)
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        if ctx.route.is_some() {
            let mut overrides = CacheOptionOverrides::default();
            overrides.wait_timeout = Some(self.lock_timeout);
            session.cache.enable(
                self.storage,
                None, // moka evicts by itself
                None,
                Some(self.cache_lock),
                Some(overrides),
            );
            session.cache.set_max_file_size_bytes(self.max_object_size);
        }
        Ok(())
    }

    fn cache_key_callback(&self, _session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        let Some(route) = ctx.route.as_ref() else {
            return Error::e_explain(ErrorType::InternalError, "cache key without route");
        };
        let t = &route.tenant;
        let path = if t.cache.ignore_query {
            route.key_path.split('?').next().unwrap_or_default()
        } else {
            &route.key_path
        };
        // the tenant is part of the key: two tenants never share an entry; normalized CMAF is
        // its own entry, so a reload that turns normalizing on or off never mixes the two, and
        // so is a creative's first TS segment with its audio leading
        let form = match (t.normalize_cmaf, route.lead) {
            (_, true) => "l|",
            (true, false) => "n|",
            (false, false) => "",
        };
        Ok(CacheKey::new(
            format!("{}|{form}{path}", t.id),
            t.id.clone(),
        ))
    }

    fn response_cache_filter(
        &self,
        _session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        let Some(route) = ctx.route.as_ref() else {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::NeverEnabled));
        };
        let media = match route.class {
            Class::Segment => true,
            Class::Other => is_media_type(&resp.headers),
            _ => false,
        };
        if !media {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::Custom(
                "not media",
            )));
        }
        Ok(segment_cacheability(
            resp,
            &route.tenant.cache,
            &route.tenant.forward,
            ctx.credentialed,
            SystemTime::now(),
        ))
    }

    fn cache_vary_filter(
        &self,
        meta: &pingora_cache::CacheMeta,
        ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<pingora_cache::key::HashBinary> {
        let route = ctx.route.as_ref()?;
        // only what reaches the origin can make it answer differently
        match crate::cache_policy::vary(meta.headers(), &route.tenant.forward) {
            crate::cache_policy::Vary::On(names) => crate::cache_policy::variance(&names, req),
            _ => None,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(route) = ctx.route.as_ref() else {
            return Error::e_explain(ErrorType::InternalError, "upstream without route");
        };
        let t = &route.tenant;
        ctx.upstream_started = Some(Instant::now());
        ctx.upstream_recorded = false;
        let Some(pick) = t.origins.pick(&ctx.tried) else {
            return Error::e_explain(ErrorType::ConnectNoRoute, "every origin failed");
        };
        ctx.tried.push(pick.index);
        Ok(Box::new(t.origins.peer(
            pick,
            t.connect_timeout,
            t.read_timeout,
        )))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // a refused or timed-out origin: the next one, in this very request
        if let (Some(route), Some(&current)) = (ctx.route.as_ref(), ctx.tried.last()) {
            let origins = &route.tenant.origins;
            if origins.has_more(&ctx.tried) {
                origins.failed(current, e.etype().as_str());
                e.set_retry(true);
            }
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let idempotent = session.req_header().method.is_idempotent();
        // nothing sent to the viewer yet (a timeout before the answer, a reset): the next
        // origin can still give the whole answer
        let fresh = session.response_written().is_none();
        let next = ctx.route.as_ref().zip(ctx.tried.last()).filter(|(r, _)| {
            e.esource() == &ErrorSource::Upstream && r.tenant.origins.has_more(&ctx.tried)
        });
        match next {
            Some((route, &current)) if idempotent && fresh => {
                route.tenant.origins.failed(current, e.etype().as_str());
                e.set_retry(true);
            }
            _ if !idempotent => e.set_retry(false),
            _ => e.retry.decide_reuse(client_reused),
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(route) = ctx.route.as_ref() else {
            return Error::e_explain(ErrorType::InternalError, "upstream without route");
        };
        // under the chosen origin's own base path
        let t = &route.tenant;
        let origin = ctx
            .tried
            .last()
            .and_then(|&i| t.origins.list.get(i))
            .map(|u| &u.url)
            .unwrap_or(&t.origin);
        let path = format!("{}{}", origin.base_path, t.below_base(&route.origin_path));
        let uri = path
            .parse::<http::Uri>()
            .map_err(|e| Error::because(ErrorType::InternalError, "origin path", e))?;
        upstream.set_uri(uri);
        upstream.insert_header(header::HOST, origin.authority())?;
        // what the origin must not see (or could vary on): see cache_policy::forwarded_header
        let t = &route.tenant;
        let auth_header = t
            .auth
            .as_ref()
            .map(|a| a.header_name().to_ascii_lowercase());
        let dropped: Vec<header::HeaderName> = upstream
            .headers
            .keys()
            .filter(|k| {
                !crate::cache_policy::forwarded_header(k.as_str(), &t.forward)
                    || auth_header.as_deref() == Some(k.as_str())
            })
            .cloned()
            .collect();
        for k in dropped {
            upstream.remove_header(&k);
        }
        ctx.credentialed = upstream.headers.contains_key(header::COOKIE)
            || upstream.headers.contains_key(header::AUTHORIZATION);
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let cs = cache_status::for_proxied(&session.cache, resp.status.as_u16());
        resp.insert_header("cache-status", cs)?;
        resp.insert_header(REQUEST_ID, &ctx.request_id)?;
        add_cors(resp, ctx)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(route), Some(started)) = (ctx.route.as_ref(), ctx.upstream_started) {
            let (tenant, class) = (route.tenant.id.as_str(), route.class.as_str());
            // a failing origin answered: the next one may not be, and nothing went out yet
            let origins = &route.tenant.origins;
            if upstream.status.is_server_error() && origins.has_more(&ctx.tried) {
                if let Some(&current) = ctx.tried.last() {
                    origins.failed(current, "5xx");
                }
                METRICS
                    .origin_fetches
                    .with_label_values(&[tenant, class, "status_5xx"])
                    .inc();
                ctx.upstream_recorded = true;
                let mut e = Error::explain(
                    ErrorType::HTTPStatus(upstream.status.as_u16()),
                    "origin answered with a server error",
                );
                e.set_retry(true);
                e.esource = ErrorSource::Upstream;
                return Err(e);
            }
            let m = &METRICS;
            m.origin_fetches
                .with_label_values(&[tenant, class, origin_outcome(upstream.status.as_u16())])
                .inc();
            m.origin_seconds
                .with_label_values(&[tenant, class])
                .observe(started.elapsed().as_secs_f64());
            ctx.upstream_recorded = true;
            if route.tenant.normalize_cmaf
                && upstream.status == http::StatusCode::OK
                && crate::cmaf_timing::is_fmp4(
                    &route.origin_path,
                    upstream
                        .headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok()),
                )
            {
                ctx.normalizer = Some(Default::default());
            }
            if route.lead && upstream.status == http::StatusCode::OK {
                // the body grows by a few packets: its length is known only at the end
                upstream.remove_header(&header::CONTENT_LENGTH);
                ctx.leader = Some(Default::default());
            }
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(n) = ctx.normalizer.as_mut() {
            // runs before the cache stores the body: hits are served normalized for free
            *body = n.push(body.take(), end_of_stream);
        } else if let Some(l) = ctx.leader.as_mut() {
            *body = l.push(body.take(), end_of_stream);
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (code, detail, reason) = match e.etype() {
            ErrorType::HTTPStatus(code) => (*code, "upstream-status", "origin error"),
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                (504, "origin-timeout", "origin timed out")
            }
            _ => match e.esource() {
                ErrorSource::Upstream => (502, "origin-error", "origin unreachable or failed"),
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        (0, "", "") // the viewer is gone
                    }
                    _ => (400, "bad-request", "bad request"),
                },
                _ => (500, "internal", "internal error"),
            },
        };
        let (tenant, url) = match ctx.route.as_ref() {
            Some(r) => (r.tenant.id.as_str(), r.tenant.origin_url(&r.origin_path)),
            None => ("-", String::new()),
        };
        if let (Some(r), Some(_), false) = (
            ctx.route.as_ref(),
            ctx.upstream_started,
            ctx.upstream_recorded,
        ) {
            if e.esource() == &ErrorSource::Upstream {
                let outcome = if code == 504 { "timeout" } else { "error" };
                METRICS
                    .origin_fetches
                    .with_label_values(&[r.tenant.id.as_str(), r.class.as_str(), outcome])
                    .inc();
            }
        }
        if code >= 500 {
            tracing::warn!(rid = %ctx.request_id, tenant, url = %url, error = %e, status = code, "proxying failed");
        }
        if code > 0 && session.response_written().is_none() {
            let text = format!("{reason}: {}", e.etype().as_str());
            if let Err(we) = respond_text(session, ctx, code, detail, text).await {
                tracing::debug!(error = %we, "could not send error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let (tenant, class) = match ctx.route.as_ref() {
            Some(r) => (r.tenant.id.as_str(), r.class.as_str()),
            None => ("-", "-"),
        };
        let m = &METRICS;
        m.requests
            .with_label_values(&[tenant, class, status_label(status)])
            .inc();
        m.request_seconds
            .with_label_values(&[tenant, class])
            .observe(ctx.started.elapsed().as_secs_f64());
        if let Some(r) = ctx.route.as_ref() {
            if let (Some(token), Some((b, slot)), true) = (
                &r.session,
                &r.ad_slot,
                e.is_none() && (200..300).contains(&status),
            ) {
                // an ad segment at a tracked position was served: its beacons are due
                let catalog = ctx
                    .tenancy
                    .as_ref()
                    .and_then(|t| t.personalizer.catalogs.get(&r.tenant.id).cloned());
                let served = crate::tracking::Served {
                    token,
                    break_id: b,
                    slot: *slot,
                    path: &r.content_path,
                };
                self.beacons.on_ad_segment(&r.tenant, catalog, served);
            }
        }
        if ctx.route.is_some() {
            let result = match &ctx.cache_status {
                Some(cs) => cache_result(cs),
                None => cache_status::result_of(&session.cache),
            };
            m.cache.with_label_values(&[tenant, class, result]).inc();
        }
        if !tracing::enabled!(target: "manifold::access", tracing::Level::INFO) {
            return;
        }
        let cache = match &ctx.cache_status {
            Some(cs) => cs.clone(),
            None => cache_status::for_proxied(&session.cache, status),
        };
        let req = session.req_header();
        // viewer tokens stay out of the logs
        let path = match ctx.route.as_ref().and_then(|r| r.tenant.auth.as_ref()) {
            Some(a) => a.strip_param(&req.uri.to_string()),
            None => req.uri.to_string(),
        };
        tracing::info!(
            target: "manifold::access",
            rid = %ctx.request_id,
            tenant,
            method = %req.method,
            path = %path,
            status,
            class,
            cache = %cache,
            plugin = ctx.plugin.as_deref().unwrap_or("-"),
            ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
            error = e.map(|e| e.to_string()),
        );
    }
}

/// Status as a label: the code (a bounded set), `0` when no response was written.
fn status_label(status: u16) -> &'static str {
    const CODES: [(u16, &str); 16] = [
        (200, "200"),
        (206, "206"),
        (302, "302"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (410, "410"),
        (416, "416"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
        (0, "0"),
    ];
    CODES.iter().find(|(c, _)| *c == status).map_or(
        match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        },
        |(_, l)| *l,
    )
}
