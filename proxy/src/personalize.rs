//! Steps 4–6 for one viewer: the session, the viewer context, the tenant's plugin on the parsed
//! origin manifest, then applying and serializing its plan (with the session's ad breaks for
//! media playlists). A plugin failure follows the tenant's policy: serve the origin manifest
//! unchanged (open) or 503 (closed).

use crate::ads::AdCatalog;
use crate::apply::{self, Creatives, RenditionWant};
use crate::auth::{Access, Grant};
use crate::config::FailPolicy;
use crate::manifest_cache::{Manifest, ManifestCache};
use crate::parse::Parsed;
use crate::plugin::bindings::{DeviceClass, SessionCtx, Viewer};
use crate::plugin::registry::Registry;
use crate::plugin::{FailureKind, Input, PluginFailure};
use crate::prefetch::{Job, Prefetcher};
use crate::route::{Route, VariantHint, GROUP_PARAM, HINT_PARAM};
use crate::session::BreakRecord;
use crate::session::{SessionKeys, SessionState, SessionStore};
use crate::ssai::{self, Media, Policies};
use crate::ssai_dash::{self, DashMedia};
use bytes::Bytes;
use pingora_http::RequestHeader;
use std::collections::{BTreeMap, HashMap};
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
    pub catalogs: HashMap<String, Arc<AdCatalog>>,
    pub manifests: Arc<ManifestCache>,
    pub keys: SessionKeys,
    pub store: Arc<dyn SessionStore>,
    pub policies: HashMap<String, Policies>,
    pub prefetcher: Arc<Prefetcher>,
    /// How fast each tenant's viewers may start sessions.
    pub session_limits: HashMap<String, Arc<crate::session_limit::SessionLimits>>,
}

/// Limits on what the viewer context carries from the request.
const MAX_PAIRS: usize = 64;
const MAX_VALUE: usize = 1024;

fn device_of(user_agent: Option<&str>, param: Option<&str>) -> DeviceClass {
    match param {
        Some("mobile") => return DeviceClass::Mobile,
        Some("tablet") => return DeviceClass::Tablet,
        Some("tv") => return DeviceClass::Tv,
        Some("desktop") => return DeviceClass::Desktop,
        _ => {}
    }
    let Some(ua) = user_agent else {
        return DeviceClass::Unknown;
    };
    let has = |needles: &[&str]| needles.iter().any(|n| ua.contains(n));
    if has(&[
        "SmartTV", "SMART-TV", "AppleTV", "Roku", "CrKey", "AFT", "Tizen", "Web0S", "BRAVIA",
        "HbbTV",
    ]) {
        DeviceClass::Tv
    } else if has(&["iPad", "Tablet"]) || (ua.contains("Android") && !ua.contains("Mobile")) {
        DeviceClass::Tablet
    } else if has(&["iPhone", "Mobile", "Android"]) {
        DeviceClass::Mobile
    } else if has(&["Mozilla", "Windows", "Macintosh", "Linux"]) {
        DeviceClass::Desktop
    } else {
        DeviceClass::Unknown
    }
}

/// CMCD keys (CTA-5004, v1 and v2) from its headers and the `CMCD` query parameter. Lists are
/// RFC 8941 dictionaries: items split on commas outside strings and inner lists (v2's
/// `(1000 2000)`), strings unquoted, a bare key is `true`.
fn cmcd_pairs(req: &RequestHeader, query_value: Option<&str>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let header_values = ["cmcd-request", "cmcd-object", "cmcd-status", "cmcd-session"]
        .into_iter()
        .filter_map(|h| req.headers.get(h).and_then(|v| v.to_str().ok()));
    for list in header_values.chain(query_value) {
        for item in sf_items(list) {
            if out.len() >= MAX_PAIRS {
                return out;
            }
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (k, v) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), sf_value(v.trim())),
                None => (item, "true".to_string()),
            };
            if k.is_empty() {
                continue;
            }
            out.push((clip(k), clip(&v)));
        }
    }
    out
}

/// The top-level items of a structured-field dictionary.
fn sf_items(list: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut start, mut depth, mut quoted, mut escaped) = (0, 0u32, false, false);
    for (i, c) in list.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            ',' if !quoted && depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    items
}

/// A value as the plugin gets it: strings unquoted and unescaped, anything else as written.
fn sf_value(v: &str) -> String {
    match v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            out
        }
        None => v.to_string(),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_VALUE).collect()
}

pub fn viewer_context(
    tenant: &str,
    session: Option<&str>,
    req: &RequestHeader,
    client_ip: Option<IpAddr>,
    pass_headers: &[String],
    country_header: Option<&str>,
) -> Viewer {
    let mut query = Vec::new();
    let mut cmcd_query = None;
    let mut device_param = None;
    if let Some(q) = req.uri.query() {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            if k.starts_with("mf_") {
                continue;
            }
            if k == "CMCD" {
                cmcd_query = Some(v.into_owned());
                continue;
            }
            if k == "device" {
                device_param = Some(v.to_string());
            }
            if query.len() < MAX_PAIRS {
                query.push((clip(&k), clip(&v)));
            }
        }
    }
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let user_agent = header("user-agent").map(clip);
    Viewer {
        tenant: tenant.to_string(),
        session_id: session.map(str::to_string),
        device: device_of(user_agent.as_deref(), device_param.as_deref()),
        query,
        headers: pass_headers
            .iter()
            .filter_map(|h| header(h).map(|v| (h.clone(), clip(v))))
            .collect(),
        user_agent,
        client_ip: client_ip.map(|ip| ip.to_string()),
        country: country_header
            .and_then(header)
            .map(|c| clip(c).to_ascii_uppercase()),
        cmcd: cmcd_pairs(req, cmcd_query.as_deref()),
    }
}

fn store_failure(e: impl std::fmt::Display) -> PluginFailure {
    PluginFailure::new(FailureKind::SessionStore, e.to_string())
}

fn invalid(e: apply::InvalidPlan) -> PluginFailure {
    PluginFailure::new(FailureKind::InvalidPlan, e.0)
}

impl crate::plugin::Subject for Manifest {
    fn input(&self) -> Option<Input<'_>> {
        match &self.parsed {
            Parsed::HlsMaster { view, .. } => Some(Input::HlsMaster(view)),
            Parsed::HlsMedia { view, .. } => Some(Input::HlsMedia(&view.view)),
            Parsed::Dash { view, .. } => Some(Input::DashMpd(view)),
            Parsed::None => None,
        }
    }
}

impl Personalizer {
    /// Personalizes `manifest` for the viewer making `req`, if the tenant runs a plugin.
    pub async fn run(
        &self,
        route: &Route,
        manifest: &Arc<Manifest>,
        req: &RequestHeader,
        client_ip: Option<IpAddr>,
        access: Option<&Access>,
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
        let grant = match access {
            Some(Access::Token(g)) => Some(g),
            _ => None,
        };
        // the viewer's session: from a signed token in the URL, or a new one
        let (sid, token, created) = match &route.session {
            Some(t) => match self.keys.verify(tenant, t) {
                Some(id) => (id, t.clone(), false),
                None => return Outcome::Forbidden,
            },
            None => {
                if let Some(limits) = self.session_limits.get(tenant) {
                    if let Err(r) = limits.admit(client_ip) {
                        crate::metrics::METRICS
                            .sessions_refused
                            .with_label_values(&[tenant.as_str(), r.as_str()])
                            .inc();
                        return Outcome::TooManySessions(r);
                    }
                }
                // edge auth: a session a viewer token starts ends when the token does
                let (id, t) = match grant {
                    Some(g) => self.keys.create_until(tenant, g.expires),
                    None => self.keys.create(tenant),
                };
                (id, t, true)
            }
        };
        let session_prefix = route.session_prefix(&token);
        if created {
            let claims = grant.map_or(&[][..], |g| &g.claims[..]);
            if let Err(e) = self.store.create(&sid, claims).await {
                return self.fail(
                    s.fail,
                    tenant,
                    deployed.version,
                    &deployed.plugin.digest,
                    store_failure(e),
                );
            }
            if !matches!(manifest.parsed, Parsed::HlsMaster { .. }) {
                // media playlists and MPDs are reloaded: the viewer must come back with the
                // session (and its query, but not this request's CMCD)
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
                return Outcome::Redirect(format!("{session_prefix}{}{query}", route.content_path));
            }
        }
        let mut state = if created {
            SessionState::default()
        } else {
            match self.store.get(&sid).await {
                Ok(st) => st,
                Err(e) => {
                    return self.fail(
                        s.fail,
                        tenant,
                        deployed.version,
                        &deployed.plugin.digest,
                        store_failure(e),
                    )
                }
            }
        };
        let mut viewer = viewer_context(
            tenant,
            Some(&sid),
            req,
            client_ip,
            &s.pass_headers,
            s.country_header.as_deref(),
        );
        if let Some(auth) = &route.tenant.auth {
            // the plugin gets the token's claims, not the token
            viewer.query.retain(|(k, _)| k != auth.query_param());
            let claims = match grant {
                Some(g) if state.claims.is_empty() => &g.claims,
                _ => &state.claims,
            };
            viewer.headers.extend(Grant::viewer_headers(claims));
        }
        let viewer = Arc::new(viewer);
        let decisions = Arc::new(parking_lot::Mutex::new(std::mem::take(
            &mut state.decisions,
        )));
        let session_ctx = SessionCtx {
            id: sid.clone(),
            store: self.store.clone(),
            cached: decisions.clone(),
            viewer: (*viewer).clone(),
        };
        let engine = &self.registry.engine;
        let plugin = &deployed.plugin;
        // the plugin failure a replayed manifest stands in for
        let mut replayed = None;
        let result = match &manifest.parsed {
            Parsed::HlsMaster { playlist, .. } => {
                // slate mode lines up an outage's slate in the renditions of one master
                let group = route
                    .tenant
                    .slate_outage
                    .then(|| crate::route::group_of(&route.content_path));
                let render = |edits: &[crate::plugin::bindings::Edit]| {
                    apply::hls_master(playlist, edits)
                        .map(|mut out| {
                            let dir = route.content_path.rsplit_once('/').map_or("", |(d, _)| d);
                            let base = created.then(|| format!("{session_prefix}{dir}/"));
                            add_hints(&mut out, base.as_deref(), group.as_deref());
                            let mut buf = Vec::with_capacity(manifest.body.len() + 512);
                            let _ = out.write_to(&mut buf);
                            buf
                        })
                        .map_err(invalid)
                };
                match engine
                    .call_isolated(
                        plugin,
                        manifest.clone(),
                        viewer.clone(),
                        s.config.clone(),
                        s.env.clone(),
                        Some(session_ctx),
                    )
                    .await
                {
                    // fail open still keeps the viewer in the session it just got: the origin's
                    // master has no session paths, so every playlist reload would start a new
                    // session (and a new ledger) and the viewer's playlists would not line up
                    Ok(edits) => match render(&edits) {
                        Err(f) if s.fail == FailPolicy::Open => {
                            replay(render(&[]), f, &mut replayed)
                        }
                        r => r,
                    },
                    Err(f) if s.fail == FailPolicy::Open => replay(render(&[]), f, &mut replayed),
                    Err(f) => Err(f),
                }
            }
            Parsed::HlsMedia { playlist, view } => {
                match engine
                    .call_isolated(
                        plugin,
                        manifest.clone(),
                        viewer.clone(),
                        s.config.clone(),
                        s.env.clone(),
                        Some(session_ctx),
                    )
                    .await
                {
                    Ok(edits) => {
                        // with the decisions the plugin just made (and their trackers)
                        state.decisions = decisions.lock().clone();
                        let media = Media {
                            playlist,
                            view,
                            body: &manifest.body,
                        };
                        let r = self
                            .media(route, &media, &edits, &sid, &session_prefix, state)
                            .await;
                        match r {
                            // an invalid plan is a plugin failure like any: the session's
                            // breaks replayed (read again: what the attempt recorded counts)
                            Err(f)
                                if f.kind == FailureKind::InvalidPlan
                                    && s.fail == FailPolicy::Open =>
                            {
                                match self.store.get(&sid).await {
                                    Ok(mut st) => {
                                        st.decisions = decisions.lock().clone();
                                        let r = self
                                            .media(route, &media, &[], &sid, &session_prefix, st)
                                            .await;
                                        replay(r, f, &mut replayed)
                                    }
                                    Err(_) => Err(f),
                                }
                            }
                            r => r,
                        }
                    }
                    Err(f) if s.fail == FailPolicy::Open => {
                        state.decisions = decisions.lock().clone();
                        let media = Media {
                            playlist,
                            view,
                            body: &manifest.body,
                        };
                        let r = self
                            .media(route, &media, &[], &sid, &session_prefix, state)
                            .await;
                        replay(r, f, &mut replayed)
                    }
                    Err(f) => Err(f),
                }
            }
            Parsed::Dash { mpd, view, .. } => {
                match engine
                    .call_isolated(
                        plugin,
                        manifest.clone(),
                        viewer.clone(),
                        s.config.clone(),
                        s.env.clone(),
                        Some(session_ctx),
                    )
                    .await
                {
                    Ok(edits) => {
                        state.decisions = decisions.lock().clone();
                        let media = DashMedia { mpd, view };
                        let r = self
                            .dash(route, &media, &edits, &sid, &session_prefix, state)
                            .await;
                        match r {
                            Err(f)
                                if f.kind == FailureKind::InvalidPlan
                                    && s.fail == FailPolicy::Open =>
                            {
                                match self.store.get(&sid).await {
                                    Ok(mut st) => {
                                        st.decisions = decisions.lock().clone();
                                        let r = self
                                            .dash(route, &media, &[], &sid, &session_prefix, st)
                                            .await;
                                        replay(r, f, &mut replayed)
                                    }
                                    Err(_) => Err(f),
                                }
                            }
                            r => r,
                        }
                    }
                    Err(f) if s.fail == FailPolicy::Open => {
                        state.decisions = decisions.lock().clone();
                        let media = DashMedia { mpd, view };
                        let r = self
                            .dash(route, &media, &[], &sid, &session_prefix, state)
                            .await;
                        replay(r, f, &mut replayed)
                    }
                    Err(f) => Err(f),
                }
            }
            Parsed::None => return Outcome::PassThrough,
        };
        self.prefetch(s, &manifest.parsed, &sid, &viewer, &decisions.lock());
        // a plan must not make the manifest unbounded (limits in apply.rs)
        let result = result.and_then(|body| {
            apply::check_output(body.len(), route.tenant.max_manifest_size)
                .map(|()| body)
                .map_err(invalid)
        });
        match result {
            Ok(body) if replayed.is_some() => {
                let failure = replayed.take().expect("checked");
                tracing::warn!(
                    tenant = %tenant,
                    plugin = %plugin.digest,
                    version = deployed.version,
                    kind = failure.kind.as_str(),
                    error = %failure.message,
                    "personalization failed: the session's breaks replayed, no new decisions"
                );
                Outcome::FailedReplayed {
                    body: Bytes::from(body),
                    failure,
                }
            }
            Ok(body) => Outcome::Personalized {
                body: Bytes::from(body),
                version: deployed.version,
                micros: started.elapsed().as_micros() as u64,
            },
            Err(failure) => self.fail(s.fail, tenant, deployed.version, &plugin.digest, failure),
        }
    }

    /// Schedules the session's ad decisions for breaks the manifest announces ahead.
    fn prefetch(
        &self,
        s: &crate::plugin::registry::PluginSettings,
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
        tracing::warn!(
            tenant = %tenant,
            plugin = %digest,
            version,
            kind = failure.kind.as_str(),
            error = %failure.message,
            "personalization failed"
        );
        match policy {
            FailPolicy::Open => Outcome::FailedOpen(failure),
            FailPolicy::Closed => Outcome::FailedClosed(failure),
        }
    }

    /// Records what the session sees for the first time, then stitches this rendition.
    async fn media(
        &self,
        route: &Route,
        media: &Media<'_>,
        edits: &[crate::plugin::bindings::Edit],
        sid: &str,
        session_prefix: &str,
        state: SessionState,
    ) -> Result<Vec<u8>, PluginFailure> {
        let tenant = &route.tenant.id;
        let plan = apply::media_plan(media.view, edits).map_err(invalid)?;
        let policies = self.policies.get(tenant).copied().unwrap_or_default();
        let none = NoCreatives;
        let resolver;
        let creatives: &dyn Creatives = match self.catalogs.get(tenant) {
            Some(c) => {
                resolver = c.resolver(&self.manifests, session_prefix);
                &resolver
            }
            None => &none,
        };
        let want = RenditionWant::for_hint(route.hint);
        let proposals = ssai::propose(media, &plan, &state, creatives, &policies)
            .await
            .map_err(invalid)?;
        let records = self.record(sid, state.breaks, proposals).await?;
        let mut facts = state.facts;
        for (id, f) in ssai::observe(media, &records, &facts) {
            self.store
                .add_facts(sid, &id, &f)
                .await
                .map_err(store_failure)?;
            let e = facts.entry(id).or_default();
            if e.end_seq.is_none() {
                e.end_seq = f.end_seq;
                e.end_tagged = f.end_tagged;
            }
            e.content_discs.extend(f.content_discs);
        }
        ssai::render(media, &plan, &records, &facts, creatives, want, &policies)
            .await
            .map_err(invalid)
    }

    /// Stores proposed records; first writer wins: another rendition or node may have
    /// recorded a break meanwhile, and then everyone plays that one.
    async fn record(
        &self,
        sid: &str,
        mut records: BTreeMap<String, BreakRecord>,
        proposals: Vec<(String, BreakRecord)>,
    ) -> Result<BTreeMap<String, BreakRecord>, PluginFailure> {
        // one round trip for all of them (a viewer joining sees several breaks at once)
        let standing = self
            .store
            .record_breaks(sid, &proposals)
            .await
            .map_err(store_failure)?;
        for ((id, _), rec) in proposals.into_iter().zip(standing) {
            records.insert(id, rec);
        }
        Ok(records)
    }

    /// The session's pods stitched into the MPD as periods; refreshes and every URL come
    /// back through the proxy in this session.
    async fn dash(
        &self,
        route: &Route,
        media: &DashMedia<'_>,
        edits: &[crate::plugin::bindings::Edit],
        sid: &str,
        session_prefix: &str,
        state: SessionState,
    ) -> Result<Vec<u8>, PluginFailure> {
        let tenant = &route.tenant.id;
        let (mpd, plan) = apply::dash(media.mpd, media.view, edits).map_err(invalid)?;
        let policies = self.policies.get(tenant).copied().unwrap_or_default();
        let none = NoCreatives;
        let resolver;
        let creatives: &dyn Creatives = match self.catalogs.get(tenant) {
            Some(c) => {
                resolver = c.resolver(&self.manifests, session_prefix);
                &resolver
            }
            None => &none,
        };
        let proposals = ssai_dash::propose(media, &plan, &state, creatives, &policies)
            .await
            .map_err(invalid)?;
        let records = self.record(sid, state.breaks, proposals).await?;
        let mut out = ssai_dash::render(media, mpd, &records, creatives, &policies)
            .await
            .map_err(invalid)?;
        out.locations = vec![dash_mpd_core::Location {
            url: format!("{session_prefix}{}", route.content_path),
        }];
        route_base_urls(&mut out, route, session_prefix);
        let xml = out.to_string();
        if xml.is_empty() {
            return Err(invalid(apply::InvalidPlan("MPD did not serialize".into())));
        }
        Ok(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{xml}\n").into_bytes())
    }
}

/// A failed plugin call's stand-in: the ledger replayed without the plugin's edits, or, if
/// even that fails (e.g. the session store is down), the plugin's failure.
fn replay(
    r: Result<Vec<u8>, PluginFailure>,
    failure: PluginFailure,
    replayed: &mut Option<PluginFailure>,
) -> Result<Vec<u8>, PluginFailure> {
    match r {
        Ok(body) => {
            *replayed = Some(failure);
            Ok(body)
        }
        Err(_) => Err(failure),
    }
}

/// Absolute BaseURLs at the tenant's origin become session paths through the proxy
/// (relative ones already resolve against the MPD's session URL).
fn route_base_urls(mpd: &mut dash_mpd_core::MPD, route: &Route, session_prefix: &str) {
    let o = &route.tenant.origin;
    let scheme = if o.tls { "https" } else { "http" };
    let default_port = if o.tls { 443 } else { 80 };
    let mut roots = vec![format!("{scheme}://{}:{}{}", o.host, o.port, o.base_path)];
    if o.port == default_port {
        roots.push(format!("{scheme}://{}{}", o.host, o.base_path));
    }
    let fix = |b: &mut dash_mpd_core::BaseURL| {
        if let Some(rest) = roots.iter().find_map(|r| b.base.strip_prefix(r.as_str())) {
            if rest.is_empty() || rest.starts_with('/') {
                b.base = format!(
                    "{session_prefix}{}",
                    if rest.is_empty() { "/" } else { rest }
                );
            }
        }
    };
    mpd.base_url.iter_mut().for_each(fix);
    for p in &mut mpd.periods {
        p.BaseURL.iter_mut().for_each(fix);
        for a in &mut p.adaptations {
            a.BaseURL.iter_mut().for_each(fix);
            for r in &mut a.representations {
                r.BaseURL.iter_mut().for_each(fix);
            }
        }
    }
}

/// Tags variant and rendition URIs of a personalized master with what they are, so their
/// media playlist requests get ads in the matching rendition; with `base`, relative URIs
/// become absolute paths under the viewer's new session.
pub(crate) fn add_hints(m: &mut m3u8_rs::MasterPlaylist, base: Option<&str>, group: Option<&str>) {
    let tag = |uri: &mut String, hint: VariantHint, base: Option<&str>| {
        if uri.contains("://") || uri.is_empty() {
            return;
        }
        if let Some(base) = base {
            if !uri.starts_with('/') {
                *uri = format!("{base}{uri}");
            }
        }
        let sep = if uri.contains('?') { '&' } else { '?' };
        uri.push(sep);
        uri.push_str(HINT_PARAM);
        uri.push('=');
        uri.push_str(&hint.to_param());
        if let Some(g) = group {
            uri.push('&');
            uri.push_str(GROUP_PARAM);
            uri.push('=');
            uri.push_str(g);
        }
    };
    for v in &mut m.variants {
        let hint = VariantHint::Video {
            bandwidth: v.bandwidth,
            height: v.resolution.map(|r| r.height.min(u32::MAX as u64) as u32),
        };
        tag(&mut v.uri, hint, base);
    }
    for a in &mut m.alternatives {
        let hint = if a.media_type == m3u8_rs::AlternativeMediaType::Audio {
            VariantHint::Audio
        } else {
            VariantHint::Video {
                bandwidth: 0,
                height: None,
            }
        };
        if let Some(uri) = a.uri.as_mut() {
            tag(uri, hint, base);
        }
    }
}

/// The session's ads as the client-side tracking JSON: breaks, ads, positions and beacons.
pub fn tracking_json(state: &SessionState) -> serde_json::Value {
    let breaks: Vec<serde_json::Value> = state
        .breaks
        .iter()
        .filter(|(_, r)| !r.content && !r.slots.is_empty())
        .map(|(id, r)| {
            let ads: Vec<serde_json::Value> = r
                .ads
                .iter()
                .enumerate()
                .filter_map(|(i, ad)| {
                    let slots: Vec<&crate::session::Slot> =
                        r.slots.iter().filter(|s| s.ad == Some(i as u32)).collect();
                    let first = slots.first()?;
                    Some(serde_json::json!({
                        "id": ad.id,
                        "creative": ad.creative,
                        "offset": first.offset,
                        "duration": slots.iter().map(|s| s.duration).sum::<f64>(),
                        "tracking": ad.tracking,
                    }))
                })
                .collect();
            serde_json::json!({
                "id": id,
                "media_sequence": r.start_seq,
                "duration": r.duration,
                "ads": ads,
            })
        })
        .collect();
    serde_json::json!({ "breaks": breaks })
}

/// For tenants without an ad catalog: every creative is unknown.
struct NoCreatives;

#[async_trait::async_trait]
impl Creatives for NoCreatives {
    async fn media(
        &self,
        creative: &str,
        _p: apply::Packaging,
        _w: RenditionWant,
    ) -> Result<Arc<apply::AdMedia>, String> {
        Err(format!(
            "no creative {creative:?}: the tenant has no ad catalog"
        ))
    }
    fn slate(&self) -> Option<&str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_classes() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
        let ipad = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)";
        let android_tablet =
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 Safari/537.36";
        let android_phone =
            "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 Mobile Safari/537.36";
        let tv = "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36";
        let desktop = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120";
        assert_eq!(device_of(Some(iphone), None), DeviceClass::Mobile);
        assert_eq!(device_of(Some(ipad), None), DeviceClass::Tablet);
        assert_eq!(device_of(Some(android_tablet), None), DeviceClass::Tablet);
        assert_eq!(device_of(Some(android_phone), None), DeviceClass::Mobile);
        assert_eq!(device_of(Some(tv), None), DeviceClass::Tv);
        assert_eq!(device_of(Some(desktop), None), DeviceClass::Desktop);
        assert_eq!(device_of(None, None), DeviceClass::Unknown);
        assert_eq!(
            device_of(Some(desktop), Some("mobile")),
            DeviceClass::Mobile
        );
    }

    #[test]
    fn cmcd_from_headers_and_query() {
        let mut req = RequestHeader::build("GET", b"/x.m3u8", None).unwrap();
        req.insert_header("cmcd-request", "bl=21300,mtp=25400")
            .unwrap();
        req.insert_header("cmcd-session", "sid=\"6e2fb550\",sf=h")
            .unwrap();
        let pairs = cmcd_pairs(&req, Some("br=3200,bs"));
        assert!(pairs.contains(&("bl".into(), "21300".into())));
        assert!(pairs.contains(&("sid".into(), "6e2fb550".into())));
        assert!(pairs.contains(&("br".into(), "3200".into())));
        assert!(pairs.contains(&("bs".into(), "true".into())));
        // v2: strings holding commas and quotes, inner lists, custom keys
        let v2 = r#"v=2,cid="a,b \"c\"",br=(1000 2500),com.example-Key=7,sta=p"#;
        let pairs = cmcd_pairs(&RequestHeader::build("GET", b"/", None).unwrap(), Some(v2));
        assert_eq!(
            pairs,
            vec![
                ("v".into(), "2".into()),
                ("cid".into(), "a,b \"c\"".into()),
                ("br".into(), "(1000 2500)".into()),
                ("com.example-Key".into(), "7".into()),
                ("sta".into(), "p".into()),
            ]
        );
    }

    #[test]
    fn hints_and_session_paths_go_on_relative_uris_only() {
        let text = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"a0.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=1000,RESOLUTION=320x180,AUDIO=\"a\"\nv0.m3u8?token=1\n\
#EXT-X-STREAM-INF:BANDWIDTH=2000\nhttps://cdn.example/v1.m3u8\n";
        let parse = || match m3u8_rs::parse_playlist_res(text.as_bytes()).unwrap() {
            m3u8_rs::Playlist::MasterPlaylist(m) => m,
            _ => panic!(),
        };
        let mut m = parse();
        add_hints(&mut m, None, None);
        assert_eq!(m.variants[0].uri, "v0.m3u8?token=1&mf_v=v1000x180");
        assert_eq!(m.variants[1].uri, "https://cdn.example/v1.m3u8");
        assert_eq!(m.alternatives[0].uri.as_deref(), Some("a0.m3u8?mf_v=a"));
        let mut m = parse();
        add_hints(&mut m, Some("/t/~tok/live/hls/"), None);
        assert_eq!(
            m.variants[0].uri,
            "/t/~tok/live/hls/v0.m3u8?token=1&mf_v=v1000x180"
        );
        assert_eq!(
            m.alternatives[0].uri.as_deref(),
            Some("/t/~tok/live/hls/a0.m3u8?mf_v=a")
        );
    }

    #[test]
    fn tracking_json_lists_filled_breaks() {
        use crate::session::{BreakRecord, DecidedAd, Slot};
        let mut st = SessionState::default();
        let slot = |ad: Option<u32>, offset: f64| Slot {
            creative: "ad10".into(),
            index: 0,
            duration: 2.0,
            offset,
            disc: offset == 0.0,
            ad,
            events: vec![],
        };
        st.breaks.insert(
            "splice-1".into(),
            BreakRecord {
                start_seq: 40,
                start_time: None,
                duration: 10.0,
                joined_mid: false,
                content: false,
                slots: vec![slot(Some(0), 0.0), slot(Some(0), 2.0), slot(None, 4.0)],
                ads: vec![DecidedAd {
                    id: "a1".into(),
                    creative: "ad10".into(),
                    duration: 4.0,
                    tracking: [("start".to_string(), vec!["http://x/start".to_string()])].into(),
                }],
            },
        );
        let j = tracking_json(&st);
        assert_eq!(j["breaks"][0]["ads"][0]["duration"], 4.0);
        assert_eq!(
            j["breaks"][0]["ads"][0]["tracking"]["start"][0],
            "http://x/start"
        );
        assert_eq!(j["breaks"][0]["media_sequence"], 40);
    }
}
