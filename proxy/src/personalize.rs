//! Steps 4–6 for one viewer: the session, the viewer context, the tenant's plugin on the parsed
//! origin manifest, then applying and serializing its plan (with the session's ad breaks for
//! media playlists). A plugin failure follows the tenant's policy: serve the origin manifest
//! unchanged (open) or 503 (closed).

use crate::apply;
use crate::auth::{Access, Grant};
use crate::config::FailPolicy;
use crate::creatives::{Creatives, RenditionWant};
use crate::manifest_cache::{Manifest, ManifestCache};
use crate::master::Master;
use crate::parse::Parsed;
use crate::pipeline::{self, Context, Failed, Format};
use crate::plugin::bindings::{SessionCtx, Viewer};
use crate::plugin::registry::{PluginSettings, Registry};
use crate::plugin::{FailureKind, Input, PluginFailure};
use crate::prefetch::{Job, Prefetcher};
use crate::route::Route;
use crate::session::{Insertion, SessionKeys, SessionLedger, SessionState, SessionStore};
use crate::session_urls::{add_hints, route_base_urls};
use crate::ssai::Media;
use crate::ssai_dash::DashMedia;
use crate::types::Edit;
use crate::viewer::viewer_context;
use bytes::Bytes;
use pingora_http::RequestHeader;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// What to answer a manifest request with.
pub enum Outcome {
    /// No plugin for this tenant or manifest: the origin manifest as it is.
    PassThrough,
    /// The personalized manifest.
    Personalized {
        body: Bytes,
        version: u64,
        micros: u64,
    },
    /// The origin manifest does not parse: passed on unchanged, with the reason.
    Unparsable,
    /// A media playlist or MPD requested without a session: go to the session's URL.
    Redirect(String),
    /// A session token this proxy did not sign.
    Forbidden,
    /// The request cannot start a session as it asks (a bad `?insertion=`).
    BadRequest(String),
    /// No new session now: this client (or the tenant) started too many lately.
    TooManySessions(crate::session_limit::Refused),
    /// The plugin failed and the tenant fails open: the origin manifest, with the reason.
    FailedOpen(PluginFailure),
    /// The plugin failed on a media playlist or MPD and the tenant fails open: the session's
    /// breaks so far replayed from its ledger, new ones left as content (recorded so), so the
    /// viewer's manifest stays consistent with what it was served before.
    FailedReplayed { body: Bytes, failure: PluginFailure },
    /// The plugin failed and the tenant fails closed: 503.
    FailedClosed(PluginFailure),
}

pub struct Personalizer {
    pub registry: Arc<Registry>,
    pub manifests: Arc<ManifestCache>,
    pub keys: SessionKeys,
    pub store: Arc<dyn SessionStore>,
    pub prefetcher: Arc<Prefetcher>,
    /// What each session was served lately (the console's session inspector).
    pub recent: Arc<crate::recent::Recent>,
}

fn store_failure(e: impl std::fmt::Display) -> PluginFailure {
    PluginFailure::new(FailureKind::SessionStore, e.to_string())
}

fn invalid(e: apply::InvalidPlan) -> PluginFailure {
    PluginFailure::new(FailureKind::InvalidPlan, e.0)
}

impl crate::plugin::Subject for Manifest {
    fn input(&self) -> Option<Input<'_>> {
        let wire = self
            .wire
            .get_or_init(|| crate::plugin::Wire::of(&self.parsed));
        wire.as_ref().map(crate::plugin::Wire::input)
    }
}

/// The viewer's session as this request found or started it.
struct Session {
    id: String,
    /// `<route prefix>/~<token>`: where the viewer's URLs live.
    prefix: String,
    /// `scheme://host` and the prefix: the absolute root of the session's guided URLs.
    root: String,
    created: bool,
    state: SessionState,
    /// The session's ad decisions, shared with the plugin's host calls (which add to them).
    decided: Arc<parking_lot::Mutex<BTreeMap<String, Vec<crate::session::DecidedAd>>>>,
}

impl Personalizer {
    /// Whether a tenant's manifests go through a plugin (a deployed one).
    pub fn personalizes(&self, tenant: &str) -> bool {
        self.registry
            .slot(tenant)
            .is_some_and(|s| s.active().is_some())
    }

    /// Personalizes `manifest` for the viewer making `req`, if the tenant runs a plugin:
    /// session gate → viewer context → plugin → pipeline → bounded output.
    pub async fn run(
        &self,
        route: &Route,
        manifest: &Arc<Manifest>,
        req: &RequestHeader,
        client_ip: Option<IpAddr>,
        access: Option<&Access>,
        origin: &str,
    ) -> Outcome {
        let tenant = &route.tenant.id;
        let Some(slot) = self.registry.slot(tenant) else {
            return Outcome::PassThrough;
        };
        let Some(deployed) = slot.active() else {
            return Outcome::PassThrough;
        };
        if manifest.status != http::StatusCode::OK {
            // nothing a plugin could edit: the origin's answer goes out as it is
            return Outcome::PassThrough;
        }
        if matches!(manifest.parsed, Parsed::None) {
            // malformed at the origin (logged when fetched): passed on as it is, whatever
            // the tenant's failure policy, since no plugin failed
            return Outcome::Unparsable;
        }
        let started = Instant::now();
        let s = &slot.settings;
        let (version, digest) = (deployed.version, &deployed.plugin.digest);
        let grant = match access {
            Some(Access::Token(g)) => Some(g),
            _ => None,
        };
        let mut session = match self
            .session(route, manifest, req, client_ip, grant, origin)
            .await
        {
            Ok(session) => session,
            Err(Ok(outcome)) => return outcome,
            Err(Err(f)) => return self.fail(s.fail, tenant, version, digest, f),
        };
        let viewer = Arc::new(viewer_for(route, req, client_ip, grant, &session, s));
        let decisions = session.decided.clone();
        let session_ctx = SessionCtx {
            id: session.id.clone(),
            store: self.store.clone(),
            cached: decisions.clone(),
            viewer: (*viewer).clone(),
            insertion: session.state.insertion,
        };
        let called = self
            .registry
            .engine
            .call_isolated(
                &deployed.plugin,
                manifest.clone(),
                viewer.clone(),
                s.config.clone(),
                s.env.clone(),
                Some(session_ctx),
            )
            .await;
        // with the decisions the plugin just made (and their trackers)
        session.state.decisions = decisions.lock().clone();
        let mut replayed = None;
        let result = self
            .render(route, manifest, called, session, s.fail, &mut replayed)
            .await;
        let sid = viewer.session_id.as_deref().unwrap_or_default();
        self.prefetch(s, &manifest.parsed, sid, &viewer, &decisions.lock());
        // a plan must not make the manifest unbounded (limits in apply.rs)
        let result = result.and_then(|body| {
            apply::check_output(body.len(), route.tenant.max_manifest_size)
                .map(|()| body)
                .map_err(invalid)
        });
        let result = result.map(Bytes::from);
        if let (Ok(body), Some(sid)) = (&result, viewer.session_id.as_deref()) {
            let how = if replayed.is_some() {
                "replayed"
            } else {
                "personalized"
            };
            let bodies = (&manifest.body, body);
            self.recent
                .record(sid, tenant, &route.content_path, bodies, how);
        }
        match (result, replayed) {
            (Ok(body), Some(failure)) => {
                let what =
                    "personalization failed: the session's breaks replayed, no new decisions";
                log_failure(tenant, version, digest, &failure, what);
                Outcome::FailedReplayed { body, failure }
            }
            (Ok(body), None) => Outcome::Personalized {
                body,
                version,
                micros: started.elapsed().as_micros() as u64,
            },
            (Err(failure), _) => self.fail(s.fail, tenant, version, digest, failure),
        }
    }

    /// The session gate: the viewer's session from a signed token in the URL, or a new one
    /// (admitted by the tenant's session limits). A new session of a media playlist or MPD
    /// is a redirect to its session URL; `Err(Err(_))` is a store failure.
    async fn session(
        &self,
        route: &Route,
        manifest: &Manifest,
        req: &RequestHeader,
        client_ip: Option<IpAddr>,
        grant: Option<&Grant>,
        origin: &str,
    ) -> Result<Session, Result<Outcome, PluginFailure>> {
        let tenant = &route.tenant.id;
        let mut insertion = Insertion::Stitched;
        let (id, token, created) = match &route.session {
            Some(t) => match self.keys.verify(tenant, t) {
                Some(id) => (id, t.clone(), false),
                None => return Err(Ok(Outcome::Forbidden)),
            },
            None => {
                insertion = insertion_of(route).map_err(|e| Ok(Outcome::BadRequest(e)))?;
                if let Err(r) = route.tenant.session_limits.admit(client_ip) {
                    crate::metrics::METRICS
                        .sessions_refused
                        .with_label_values(&[tenant.as_str(), r.as_str()])
                        .inc();
                    return Err(Ok(Outcome::TooManySessions(r)));
                }
                // edge auth: a session a viewer token starts ends when the token does
                let (id, t) = match grant {
                    Some(g) => self.keys.create_until(tenant, g.expires),
                    None => self.keys.create(tenant),
                };
                (id, t, true)
            }
        };
        let prefix = route.session_prefix(&token);
        let mut state = if created {
            let claims = grant.map_or(&[][..], |g| &g.claims[..]);
            self.store
                .create(&id, claims, insertion)
                .await
                .map_err(|e| Err(store_failure(e)))?;
            if !matches!(manifest.parsed, Parsed::HlsMaster { .. }) {
                // media playlists and MPDs are reloaded: the viewer must come back with the
                // session (and its query, but not this request's CMCD)
                return Err(Ok(Outcome::Redirect(session_url(route, &prefix, req))));
            }
            SessionState {
                insertion,
                ..Default::default()
            }
        } else {
            self.store
                .get(&id)
                .await
                .map_err(|e| Err(store_failure(e)))?
        };
        let decided = Arc::new(parking_lot::Mutex::new(std::mem::take(
            &mut state.decisions,
        )));
        Ok(Session {
            id,
            root: format!("{origin}{prefix}"),
            prefix,
            created,
            state,
            decided,
        })
    }

    /// The plugin's plan run through the manifest's format, finished for the session.
    async fn render(
        &self,
        route: &Route,
        manifest: &Manifest,
        called: Result<Vec<Edit>, PluginFailure>,
        session: Session,
        fail: FailPolicy,
        replayed: &mut Option<PluginFailure>,
    ) -> Result<Vec<u8>, PluginFailure> {
        let prefix = session.prefix.clone();
        let root = session.root.clone();
        let created = session.created;
        let none = NoCreatives;
        let resolver;
        let creatives: &dyn Creatives = match &route.tenant.catalog {
            Some(c) => {
                resolver = c.resolver(&route.tenant, &self.manifests, &prefix);
                &resolver
            }
            None => &none,
        };
        let cx = Context {
            creatives,
            policies: &route.tenant.policies,
            want: RenditionWant::for_hint(route.hint),
            prefix: &root,
            now_ms: unix_ms(),
        };
        let run = Run {
            called,
            session,
            fail,
            cx,
        };
        match &manifest.parsed {
            Parsed::HlsMaster { playlist, .. } => {
                let out = self.serve(&Master { playlist }, run, replayed).await?;
                Ok(finish_master(
                    out,
                    route,
                    &prefix,
                    created,
                    manifest.body.len(),
                ))
            }
            Parsed::HlsMedia { playlist, view } => {
                let media = Media {
                    playlist,
                    view,
                    body: &manifest.body,
                };
                self.serve(&media, run, replayed).await
            }
            Parsed::Dash { mpd, view, .. } => {
                let out = self.serve(&DashMedia { mpd, view }, run, replayed).await?;
                finish_dash(out, route, &prefix)
            }
            Parsed::None => Err(PluginFailure::new(
                FailureKind::Trap,
                "no manifest view to personalize",
            )),
        }
    }

    /// [`pipeline::run`] with the tenant's failure policy: when it fails open on a plugin
    /// failure or an invalid plan, the session's breaks are replayed without the plugin's
    /// edits (read again: what the failed attempt recorded counts).
    async fn serve<F: Format>(
        &self,
        format: &F,
        run: Run<'_>,
        replayed: &mut Option<PluginFailure>,
    ) -> Result<F::Out, PluginFailure> {
        let Run {
            called,
            session,
            fail,
            cx,
        } = run;
        let ledger = SessionLedger {
            store: &*self.store,
            sid: &session.id,
        };
        let (failure, state) = match called {
            Ok(edits) => match pipeline::run(format, &edits, session.state, &ledger, &cx).await {
                Err(Failed::Plan(e)) if fail == FailPolicy::Open => {
                    let state = if F::RECORDS {
                        let mut st = self.store.get(&session.id).await;
                        if let Ok(st) = &mut st {
                            st.decisions = session.decided.lock().clone();
                        }
                        st
                    } else {
                        Ok(SessionState::default())
                    };
                    match state {
                        Ok(st) => (invalid(e), st),
                        Err(_) => return Err(invalid(e)),
                    }
                }
                r => return r.map_err(failure_of),
            },
            Err(f) if fail == FailPolicy::Open => (f, session.state),
            Err(f) => return Err(f),
        };
        let r = pipeline::run(format, &[], state, &ledger, &cx).await;
        match r {
            Ok(out) => {
                *replayed = Some(failure);
                Ok(out)
            }
            Err(_) => Err(failure),
        }
    }

    /// Schedules the session's ad decisions for breaks the manifest announces ahead.
    fn prefetch(
        &self,
        s: &PluginSettings,
        parsed: &Parsed,
        sid: &str,
        viewer: &Viewer,
        decided: &BTreeMap<String, Vec<crate::session::DecidedAd>>,
    ) {
        let (Some(window), Some(decider), true) = (s.prefetch, s.env.ads.clone(), s.env.caps.ads)
        else {
            return;
        };
        let announced = match parsed {
            Parsed::HlsMedia { view, .. } => &view.announced[..],
            Parsed::Dash { announced, .. } => &announced[..],
            _ => return,
        };
        if announced.is_empty() {
            return;
        }
        let job = Job {
            tenant: s.env.tenant.to_string(),
            session: sid.to_string(),
            viewer: viewer.clone(),
            window,
            decider,
            store: self.store.clone(),
        };
        self.prefetcher
            .schedule(&job, announced, |id| decided.contains_key(id));
    }

    fn fail(
        &self,
        policy: FailPolicy,
        tenant: &str,
        version: u64,
        digest: &str,
        failure: PluginFailure,
    ) -> Outcome {
        log_failure(tenant, version, digest, &failure, "personalization failed");
        match policy {
            FailPolicy::Open => Outcome::FailedOpen(failure),
            FailPolicy::Closed => Outcome::FailedClosed(failure),
        }
    }
}

/// The viewer context; with edge auth, the token's claims instead of the token.
fn viewer_for(
    route: &Route,
    req: &RequestHeader,
    client_ip: Option<IpAddr>,
    grant: Option<&Grant>,
    session: &Session,
    s: &PluginSettings,
) -> Viewer {
    let mut viewer = viewer_context(
        &route.tenant.id,
        Some(&session.id),
        req,
        client_ip,
        &s.pass_headers,
        s.country_header.as_deref(),
    );
    if let Some(auth) = &route.tenant.auth {
        viewer.query.retain(|(k, _)| k != auth.query_param());
        let claims = match grant {
            Some(g) if session.state.claims.is_empty() => &g.claims,
            _ => &session.state.claims,
        };
        viewer.headers.extend(Grant::viewer_headers(claims));
    }
    viewer
}

/// What [`Personalizer::serve`] runs: the plugin's answer, for this session, under this
/// policy and context.
struct Run<'a> {
    called: Result<Vec<Edit>, PluginFailure>,
    session: Session,
    fail: FailPolicy,
    cx: Context<'a>,
}

fn log_failure(tenant: &str, version: u64, digest: &str, f: &PluginFailure, what: &str) {
    tracing::warn!(
        tenant = %tenant,
        plugin = %digest,
        version,
        kind = f.kind.as_str(),
        error = %f.message,
        "{what}"
    );
}

fn failure_of(f: Failed) -> PluginFailure {
    match f {
        Failed::Plan(e) => invalid(e),
        Failed::Ledger(e) => PluginFailure::new(FailureKind::SessionStore, e),
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How a new session gets its ads: the tenant's mode, or with `player-select` the viewer's
/// `?insertion=` (stitched without one).
fn insertion_of(route: &Route) -> Result<Insertion, String> {
    use crate::config::InsertionConfig as C;
    match (route.tenant.insertion, route.insertion.as_deref()) {
        (C::Stitched, _) => Ok(Insertion::Stitched),
        (C::Guided, _) => Ok(Insertion::Guided),
        (C::PlayerSelect, None) => Ok(Insertion::Stitched),
        (C::PlayerSelect, Some(v)) => Insertion::parse(v).ok_or_else(|| {
            format!(
                "insertion={v:?}: this tenant lets the player choose \"guided\" or \"stitched\""
            )
        }),
    }
}

/// Where a new session of a media playlist or MPD sends the viewer: its session URL, with
/// the request's query but not its CMCD.
fn session_url(route: &Route, prefix: &str, req: &RequestHeader) -> String {
    let kept: Vec<&str> = req
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| {
            let k = p.split('=').next().unwrap_or_default();
            !p.is_empty() && !k.eq_ignore_ascii_case(crate::route::CMCD_PARAM)
        })
        .collect();
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    format!("{prefix}{}{query}", route.content_path)
}

/// A personalized master, serialized with hinted URIs under the session. Fail open still
/// keeps the viewer in the session it just got: the origin's master has no session paths,
/// so every playlist reload would start a new session (and a new ledger).
fn finish_master(
    mut out: m3u8_rs::MasterPlaylist,
    route: &Route,
    prefix: &str,
    created: bool,
    size_hint: usize,
) -> Vec<u8> {
    // slate mode lines up an outage's slate in the renditions of one master
    let group = route
        .tenant
        .slate_outage
        .then(|| crate::route::group_of(&route.content_path));
    let dir = route.content_path.rsplit_once('/').map_or("", |(d, _)| d);
    let base = created.then(|| format!("{prefix}{dir}/"));
    add_hints(&mut out, base.as_deref(), group.as_deref());
    let mut buf = Vec::with_capacity(size_hint + 512);
    let _ = out.write_to(&mut buf);
    buf
}

/// The session's MPD: refreshes and every URL come back through the proxy in the session.
fn finish_dash(
    mut out: crate::guided_dash::DashOut,
    route: &Route,
    prefix: &str,
) -> Result<Vec<u8>, PluginFailure> {
    out.mpd.locations = vec![dash_mpd_core::Location {
        url: format!("{prefix}{}", route.content_path),
    }];
    route_base_urls(&mut out.mpd, route, prefix);
    let xml = out.to_string();
    if xml.is_empty() {
        return Err(invalid(apply::InvalidPlan("MPD did not serialize".into())));
    }
    Ok(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{xml}\n").into_bytes())
}

/// For tenants without an ad catalog: every creative is unknown.
struct NoCreatives;

#[async_trait::async_trait]
impl Creatives for NoCreatives {
    async fn media(
        &self,
        creative: &str,
        _p: crate::creatives::Packaging,
        _w: RenditionWant,
    ) -> Result<Arc<crate::creatives::AdMedia>, String> {
        Err(format!(
            "no creative {creative:?}: the tenant has no ad catalog"
        ))
    }
    fn slate(&self) -> Option<&str> {
        None
    }
}
