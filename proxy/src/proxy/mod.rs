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

/// Each CMAF track's presentation shift, learned from its fragments that start on a sync
/// sample, for its LL-HLS parts that do not (see `cmaf_timing`): by tenant and rendition
/// directory, a few bytes each, bounded.
static SHIFTS: once_cell::sync::Lazy<moka::sync::Cache<String, i64>> =
    once_cell::sync::Lazy::new(|| {
        moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_idle(Duration::from_secs(3600))
            .build()
    });

fn track_key(route: &Route) -> String {
    let path = route.origin_path.split('?').next().unwrap_or_default();
    let dir = path.rsplit_once('/').map_or(path, |(d, _)| d);
    format!("{}|{dir}", route.tenant.id)
}

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

mod answers;
mod blocking;
mod log;
use answers::*;

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
        if let (Some(asked), Some(token)) = (
            crate::guided::parse(&route.content_path),
            route.session.clone(),
        ) {
            ctx.route = Some(route);
            let span = tracing::info_span!("request", rid = %ctx.request_id);
            self.serve_guided(session, ctx, asked, &token)
                .instrument(span)
                .await?;
            return Ok(true);
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
                let shift = SHIFTS.get(&track_key(route));
                ctx.normalizer = Some(crate::cmaf_timing::Normalizer::with_shift(shift));
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
            if let (true, Some(shift), Some(route)) = (end_of_stream, n.shift, ctx.route.as_ref()) {
                SHIFTS.insert(track_key(route), shift);
            }
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
        self.log(session, e, ctx);
    }
}
