//! The operator console: a web page under `/ui/` on the admin listener, and the admin calls
//! only it needs (what the edge is, a session's ledger and manifests, a plugin check before
//! a deploy). The page's files are compiled into the binary (`proxy/ui/`); they hold no data,
//! so they are served without a token: the page asks for one, keeps it in the tab's session
//! storage, and every call it makes goes through the admin API's bearer check.
//!
//! | request | |
//! |---|---|
//! | `GET /ui/...` | the page (strict Content-Security-Policy), its script, style and players |
//! | `GET /edge` | the viewer listeners and each tenant's origin, route, plugin settings |
//! | `GET /tenants/{id}/sessions/{sid or token}` | a session: mode, breaks, ads, beacons, the last manifests served |
//! | `POST /tenants/{id}/plugin/check` | body: a component; what a deploy would check, nothing deployed |

use crate::admin::{forbidden, AdminState, Caller};
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The page's files: (path under `/ui/`, content type, bytes).
static FILES: &[(&str, &str, &[u8])] = &[
    (
        "",
        "text/html; charset=utf-8",
        include_bytes!("../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../ui/app.css"),
    ),
    // the players of the preview, as tests/browser pins them (a test checks they match)
    (
        "hls.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/vendor/hls.min.js"),
    ),
    (
        "shaka.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/vendor/shaka-player.compiled.js"),
    ),
];

/// The routes that need a token (merged behind the admin API's bearer check).
pub fn authed() -> Router<AdminState> {
    Router::new()
        .route("/edge", get(edge))
        .route("/tenants/{id}/sessions/{key}", get(session))
        .route("/tenants/{id}/plugin/check", post(check))
}

/// The page's files: no data in them, so no token (the page asks for it).
pub fn assets() -> Router<AdminState> {
    Router::new()
        .route(
            "/ui",
            get(|| async { axum::response::Redirect::permanent("/ui/") }),
        )
        .route(
            "/ui/",
            get(|s: State<AdminState>| asset(s, Path(String::new()))),
        )
        .route("/ui/{file}", get(asset))
}

async fn asset(State(s): State<AdminState>, Path(file): Path<String>) -> Response {
    let Some((_, kind, body)) = FILES.iter().find(|(f, _, _)| *f == file) else {
        return (StatusCode::NOT_FOUND, "no such console file\n").into_response();
    };
    let mut r = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        *body,
    )
        .into_response();
    if file.is_empty() {
        let csp = content_security_policy(&s.live.load().config);
        if let Ok(v) = HeaderValue::from_str(&csp) {
            r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
        }
        r.headers_mut()
            .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    r
}

/// Scripts and styles from the page's own files only (no inline code, no eval); requests
/// to the admin API and to the proxy's viewer listeners (the preview), on any host name the
/// operator reaches them by; media from the players' buffers.
fn content_security_policy(config: &crate::config::Config) -> String {
    let mut viewers = String::new();
    for (scheme, addrs) in viewer_listeners(config) {
        for a in addrs {
            if let Some(port) = a.rsplit(':').next().filter(|p| p.parse::<u16>().is_ok()) {
                viewers += &format!(" {scheme}://*:{port}");
            }
        }
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{viewers}; media-src 'self' blob:{viewers}; worker-src blob:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

fn viewer_listeners(config: &crate::config::Config) -> [(&'static str, Vec<String>); 2] {
    [
        ("http", config.server.listen.clone()),
        (
            "https",
            config
                .tls
                .as_ref()
                .map(|t| t.listen.clone())
                .unwrap_or_default(),
        ),
    ]
}

/// What the edge is: where viewers reach it, and each tenant the caller may see.
async fn edge(State(s): State<AdminState>, Extension(who): Extension<Caller>) -> Response {
    let t = s.live.load();
    let listeners: Vec<Value> = viewer_listeners(&t.config)
        .into_iter()
        .flat_map(|(scheme, addrs)| {
            addrs
                .into_iter()
                .map(move |a| json!({"scheme": scheme, "listen": a}))
        })
        .collect();
    let plugins = t.registry.list();
    let tenants: Vec<Value> = t
        .config
        .tenants
        .iter()
        .filter(|c| who.may_manage(&c.id))
        .map(|c| {
            let deployed = plugins.iter().find(|p| p.tenant == c.id);
            json!({
                "id": c.id,
                "origin": c.origin,
                "failover": c.failover,
                "hosts": c.hosts,
                "path_prefix": c.path_prefix,
                "insertion": match c.ssai.insertion {
                    crate::config::InsertionConfig::Stitched => "stitched",
                    crate::config::InsertionConfig::Guided => "guided",
                    crate::config::InsertionConfig::PlayerSelect => "player-select",
                },
                "ad_server": c.ad_server.is_some(),
                "creatives": c.creatives.len(),
                "plugin": c.plugin.as_ref().map(|p| json!({
                    "capabilities": p.capabilities,
                    "fail": match p.fail {
                        crate::config::FailPolicy::Open => "open",
                        crate::config::FailPolicy::Closed => "closed",
                    },
                    "deadline_ms": p.deadline.as_millis() as u64,
                    "memory": p.memory.as_u64(),
                    "country_header": p.country_header,
                })),
                "active": deployed.and_then(|d| d.active.as_ref()),
                "history": deployed.map(|d| &d.history),
            })
        })
        .collect();
    Json(json!({
        "listeners": listeners,
        "tenants": tenants,
        "operator": who == Caller::Operator,
    }))
    .into_response()
}

/// One session, by id (the operator only: ids are not bound to a tenant) or by the token in
/// the viewer's URLs (signed for this tenant).
async fn session(
    State(s): State<AdminState>,
    Extension(who): Extension<Caller>,
    Path((tenant, key)): Path<(String, String)>,
) -> Response {
    if !who.may_manage(&tenant) {
        return forbidden("inspect another tenant's sessions");
    }
    let t = s.live.load_full();
    if !t.config.tenants.iter().any(|c| c.id == tenant) {
        return (
            StatusCode::NOT_FOUND,
            format!("unknown tenant {tenant:?}\n"),
        )
            .into_response();
    }
    let p = &t.personalizer;
    let key = key.trim().trim_start_matches('~');
    let sid = match p.keys.verify(&tenant, key) {
        Some(sid) => sid,
        None if who == Caller::Operator
            && key.len() == 24
            && key.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            key.to_ascii_lowercase()
        }
        None => {
            return (
                StatusCode::NOT_FOUND,
                "not a session token of this tenant (or a session id: operator only)\n",
            )
                .into_response()
        }
    };
    let (state, fired) = match tokio::try_join!(p.store.get(&sid), p.store.beacons(&sid)) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(tenant, error = %e, "session inspector: store unavailable");
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response();
        }
    };
    let manifests = p.recent.get(&sid);
    if !state.exists && manifests.is_empty() {
        return (StatusCode::NOT_FOUND, "no such session (or it expired)\n").into_response();
    }
    let fired_set: BTreeSet<&str> = fired.iter().map(String::as_str).collect();
    // the session's start is recorded like a break (where it joined); shown as such
    let joined_at = state.breaks.get(crate::ledger::START).map(|r| r.start_seq);
    let breaks: Vec<Value> = state
        .breaks
        .iter()
        .filter(|(id, _)| id.as_str() != crate::ledger::START)
        .map(|(id, rec)| {
            // every beacon its slots are due to fire, and whether it was
            let due: BTreeSet<String> = rec
                .slots
                .iter()
                .filter_map(|sl| sl.ad.map(|a| (a, &sl.events)))
                .flat_map(|(a, events)| events.iter().map(move |e| format!("{id}:{a}:{e}")))
                .collect();
            let (done, pending): (Vec<_>, Vec<_>) = due
                .into_iter()
                .partition(|k| fired_set.contains(k.as_str()));
            json!({
                "id": id,
                "record": rec,
                "facts": state.facts.get(id),
                "beacons": {"fired": done, "pending": pending},
            })
        })
        .collect();
    Json(json!({
        "session": sid,
        "tenant": tenant,
        "exists": state.exists,
        "insertion": state.insertion.as_str(),
        "joined_at_seq": joined_at,
        "claims": state.claims,
        "breaks": breaks,
        "decisions": state.decisions,
        "beacons_fired": fired,
        "manifests": manifests,
    }))
    .into_response()
}

/// What a deploy would say of a component, with nothing deployed.
async fn check(
    State(s): State<AdminState>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if !who.may_manage(&id) {
        return forbidden("check another tenant's plugin");
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
    let len = body.len();
    let result = tokio::task::spawn_blocking(move || registry.check(&tenant, &body)).await;
    match result {
        Ok(Ok(p)) => Json(json!({
            "ok": true,
            "digest": p.digest,
            "world": p.world(),
            "imports": p.imports.missing_from(Default::default()),
            "bytes": len,
            "compile_ms": p.load_time.as_millis() as u64,
        }))
        .into_response(),
        Ok(Err(e)) => (
            crate::admin::status_of(&e),
            Json(json!({"ok": false, "error": e.to_string()})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("check task failed: {e}\n"),
        )
            .into_response(),
    }
}
