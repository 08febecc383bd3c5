//! The admin API, on its own listener: deploy a tenant's plugin (validated against the world
//! before it is accepted), list tenants and their plugin versions, roll back, deactivate.
//! Bearer-token authenticated (compared in constant time): the operator's token (`[admin]
//! token`) may do everything; a tenant's token (`[[tenants]] admin_token`) only manages that
//! tenant's plugin and sees that tenant in `GET /tenants` (403 elsewhere). Once any token is
//! configured, every request needs one, on loopback too.
//!
//! | request | |
//! |---|---|
//! | `GET /healthz` | `ok`: the process is alive (no token needed) |
//! | `GET /readyz` | 200 `ready` or 503 with what is not: plugins loaded, origins reachable (no token needed) |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /tenants` | tenants, active plugin versions and history (JSON) |
//! | `PUT /tenants/{id}/plugin` | body: the component; 201 with the new version, 400 if it is not a plugin |
//! | `POST /tenants/{id}/plugin/rollback` | re-activate the previous version (409 if none) |
//! | `DELETE /tenants/{id}/plugin` | stop running a plugin for the tenant |
//!
//! The console's page and the calls only it makes are in [`crate::console`].

use crate::plugin::registry::RegistryError;
use crate::plugin::runtime::LoadError;
use crate::reload::Live;
use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct AdminState {
    /// The current config's tenants and plugins (swapped on reload).
    pub live: Live,
    pub token: Option<Arc<str>>,
}

/// The admin listener, with `SO_REUSEPORT` so a new process taking over in a binary upgrade
/// can bind it while the old one still serves.
pub fn bind(addr: &str) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("address does not resolve"))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

pub fn router(state: AdminState, max_upload: usize) -> Router {
    let authed = Router::new()
        .route("/tenants", get(list))
        .route("/tenants/{id}/plugin", put(deploy).delete(deactivate))
        .route("/tenants/{id}/plugin/rollback", post(rollback))
        .route("/metrics", get(metrics))
        .merge(crate::console::authed())
        .layer(DefaultBodyLimit::max(max_upload))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(crate::console::assets())
        .merge(authed)
        .with_state(state)
}

/// Who is calling: the operator, or one tenant's deployer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Tenant(String),
}

impl Caller {
    pub(crate) fn may_manage(&self, tenant: &str) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Tenant(t) => t == tenant,
        }
    }
}

pub(crate) fn forbidden(what: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        format!("this token may not {what}\n"),
    )
        .into_response()
}

/// Which caller a bearer token is: every configured token is compared (in constant time),
/// so the answer takes as long whichever matched.
fn caller(given: &str, operator: Option<&str>, tenants: &[(String, String)]) -> Option<Caller> {
    let eq = |t: &str| -> bool { given.as_bytes().ct_eq(t.as_bytes()).into() };
    let mut found = None;
    if operator.is_some_and(eq) {
        found = Some(Caller::Operator);
    }
    for (tenant, token) in tenants {
        if eq(token) && found.is_none() {
            found = Some(Caller::Tenant(tenant.clone()));
        }
    }
    found
}

async fn auth(
    State(s): State<AdminState>,
    headers: HeaderMap,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let tenancy = s.live.load_full();
    let who = if s.token.is_none() && tenancy.admin_tokens.is_empty() {
        // no token configured at all: the listener is on loopback (config checks it)
        Some(Caller::Operator)
    } else {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        caller(given, s.token.as_deref(), &tenancy.admin_tokens)
    };
    let Some(who) = who else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response();
    };
    req.extensions_mut().insert(who);
    next.run(req).await
}

fn error(e: RegistryError) -> Response {
    if let RegistryError::Load(LoadError::Busy(_)) = &e {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "5")],
            format!("{e}\n"),
        )
            .into_response();
    }
    (status_of(&e), format!("{e}\n")).into_response()
}

/// The status a registry refusal answers with (deploys, checks, rollbacks).
pub(crate) fn status_of(e: &RegistryError) -> StatusCode {
    match e {
        RegistryError::UnknownTenant(_) => StatusCode::NOT_FOUND,
        RegistryError::Load(LoadError::Busy(_)) => StatusCode::SERVICE_UNAVAILABLE,
        RegistryError::Load(LoadError::Io(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        RegistryError::Load(_) => StatusCode::BAD_REQUEST,
        RegistryError::NoHistory => StatusCode::CONFLICT,
        RegistryError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let t = s.live.load_full();
    let (ok, text) = t.readiness.check(&t.registry).await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, text).into_response()
}

async fn metrics(State(s): State<AdminState>, Extension(who): Extension<Caller>) -> Response {
    if who != Caller::Operator {
        return forbidden("read every tenant's metrics");
    }
    let m = &crate::metrics::METRICS;
    m.plugins_loaded.set(
        s.live
            .load()
            .registry
            .engine
            .loaded_count()
            .min(i64::MAX as u64) as i64,
    );
    m.sessions_active.reset();
    for (tenant, n) in s.live.load().personalizer.recent.active_by_tenant() {
        m.sessions_active.with_label_values(&[&*tenant]).set(n);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
        .into_response()
}

async fn list(State(s): State<AdminState>, Extension(who): Extension<Caller>) -> Response {
    let mut all = s.live.load().registry.list();
    all.retain(|t| who.may_manage(&t.tenant));
    Json(all).into_response()
}

async fn deploy(
    State(s): State<AdminState>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if !who.may_manage(&id) {
        return forbidden("deploy another tenant's plugin");
    }
    if body.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "empty body: send the plugin component\n",
        )
            .into_response();
    }
    let registry = s.live.load().registry.clone();
    let tenant = id.clone();
    // compiling takes a while: keep it off the async workers
    let result =
        tokio::task::spawn_blocking(move || registry.deploy(&tenant, &body, "admin upload")).await;
    match result {
        Ok(Ok(v)) => {
            tracing::info!(tenant = %id, digest = %v.digest, version = v.version, "plugin deployed");
            (StatusCode::CREATED, Json(v)).into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(tenant = %id, error = %e, "plugin upload refused");
            error(e)
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("deploy task failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn rollback(
    State(s): State<AdminState>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    if !who.may_manage(&id) {
        return forbidden("roll back another tenant's plugin");
    }
    match s.live.load().registry.rollback(&id) {
        Ok(v) => {
            tracing::info!(tenant = %id, digest = %v.digest, version = v.version, "plugin rolled back");
            Json(v).into_response()
        }
        Err(e) => error(e),
    }
}

async fn deactivate(
    State(s): State<AdminState>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    if !who.may_manage(&id) {
        return forbidden("deactivate another tenant's plugin");
    }
    match s.live.load().registry.deactivate(&id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

/// Runs the admin API inside the pingora server.
pub struct AdminService {
    listener: std::sync::Mutex<Option<std::net::TcpListener>>,
    router: Router,
}

impl AdminService {
    /// The listener is bound by the caller, so a bad address fails start-up, not later.
    pub fn new(listener: std::net::TcpListener, router: Router) -> Self {
        AdminService {
            listener: std::sync::Mutex::new(Some(listener)),
            router,
        }
    }
}

#[async_trait]
impl BackgroundService for AdminService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(std_listener) = self.listener.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        let listener = match std_listener
            .set_nonblocking(true)
            .and_then(|_| tokio::net::TcpListener::from_std(std_listener))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "admin listener unusable");
                return;
            }
        };
        let serve = axum::serve(listener, self.router.clone()).with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "admin API stopped");
        }
    }
}
