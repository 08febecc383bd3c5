//! Config reload on SIGHUP, without dropping a connection. Everything that depends on the
//! tenants is one [`Tenancy`], swapped atomically: a request reads it once, so it finishes on
//! the config it started with. What outlives a reload ([`Lasting`]) is built once: listeners,
//! the segment cache, the plugin engine (compiled plugins stay compiled), the session store
//! and keys. An invalid new config is refused with a log line and the old one keeps serving;
//! changes to sections that need a restart are reported and not applied.

use crate::config::{Config, ConfigError};
use crate::manifest_cache::ManifestCache;
use crate::origin::OriginClient;
use crate::personalize::Personalizer;
use crate::plugin::bindings::AdDecider;
use crate::plugin::registry::{PluginSettings, Registry};
use crate::plugin::PluginEngine;
use crate::prefetch::Prefetcher;
use crate::readiness::Readiness;
use crate::route::Routes;
use crate::session::{SessionKeys, SessionStore};

use crate::vast::VastDecider;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a config's tenants make: routing, manifest cache, plugins and personalization.
pub struct Tenancy {
    pub config: Arc<Config>,
    pub routes: Arc<Routes>,
    pub manifests: Arc<ManifestCache>,
    pub registry: Arc<Registry>,
    pub personalizer: Arc<Personalizer>,
    pub readiness: Arc<Readiness>,
    /// CORS for requests no tenant claims (unknown tenant, bad path).
    pub cors: Arc<crate::cors::CorsPolicy>,
    /// The HTTPS certificates, chosen by SNI at each handshake.
    pub certificates: Option<Arc<crate::tls::CertStore>>,
    /// Live playlists going on with slate while their origin is down (kept over reloads).
    pub outages: Arc<crate::outage::Outages>,
    /// Admin tokens scoped to one tenant: (tenant, token).
    pub admin_tokens: Vec<(String, String)>,
}

/// The current tenancy, read once per request.
pub type Live = Arc<ArcSwap<Tenancy>>;

/// What a reload keeps.
#[derive(Clone)]
pub struct Lasting {
    pub engine: Arc<PluginEngine>,
    pub uploads: PathBuf,
    pub keys: SessionKeys,
    pub store: Arc<dyn SessionStore>,
    pub prefetcher: Arc<Prefetcher>,
    pub recent: Arc<crate::recent::Recent>,
}

fn field_err(file: &Path, field: String, message: String) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line: None,
        field,
        message,
    }
}

/// The plugin registry for a config: every tenant gets a slot; a tenant that existed before
/// keeps its deployment history (admin uploads, rollbacks), and its config's plugin file is
/// (re)deployed only when the file changed since it was last loaded.
fn plugin_registry(
    config: &Config,
    routes: &Routes,
    file: &Path,
    lasting: &Lasting,
    previous: Option<&Registry>,
) -> Result<Registry, ConfigError> {
    let err = |field: String, message: String| field_err(file, field, message);
    let mut registry = Registry::new(lasting.engine.clone(), &lasting.uploads)
        .map_err(|e| err("plugins.dir".into(), e.to_string()))?;
    let shares = config.plugin_shares();
    // each tenant's share of the cores, in proportion to its share of the instances
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = config.plugins.max_instances.max(1) as usize;
    let cpu_of = |share: usize| (cores * share).div_ceil(pool).clamp(1, cores);
    for (i, t) in config.tenants.iter().enumerate() {
        let tenant = routes
            .tenant(&t.id)
            .ok_or_else(|| err(format!("tenants[{i}]"), "not routed".into()))?;
        let catalog = tenant.catalog.clone();
        // a VAST ad server decides when there is one; the catalog maps its media files
        let decider: Option<Arc<dyn AdDecider>> = match (&t.ad_server, catalog) {
            (Some(a), Some(c)) => Some(Arc::new(VastDecider::with_egress(
                a.clone(),
                c,
                tenant.egress.clone(),
            ))),
            (Some(_), None) => {
                return Err(err(
                    format!("tenants[{i}].creatives"),
                    "ad_server needs the tenant's creatives".into(),
                ))
            }
            (None, c) => c.map(|c| c as Arc<dyn AdDecider>),
        };
        let share = shares.get(&t.id).copied().unwrap_or(1);
        let mut settings =
            PluginSettings::new(&t.id, t.plugin.as_ref(), decider, share, cpu_of(share))
                .map_err(|m| err(format!("tenants[{i}].plugin"), m))?;
        settings.prefetch = t
            .ad_server
            .as_ref()
            .map(|a| a.prefetch_window)
            .filter(|w| !w.is_zero());
        registry.add_tenant(&t.id, settings);
        if let Some(old) = previous {
            registry.adopt(&t.id, old);
            // the plugin running now stays only if this config grants what it imports
            if let Some(slot) = registry.slot(&t.id) {
                if let Some(d) = slot.active() {
                    let missing = d.plugin.ungranted(slot.settings.env.caps);
                    if !missing.is_empty() {
                        return Err(err(
                            format!("tenants[{i}].plugin.capabilities"),
                            format!(
                                "the deployed plugin imports {}, which this config does not grant",
                                missing.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
    }
    for (i, t) in config.tenants.iter().enumerate() {
        let Some(source) = t.plugin.as_ref().and_then(|p| p.file.as_ref()) else {
            continue;
        };
        let field = format!("tenants[{i}].plugin.file");
        let base = file.parent().unwrap_or(Path::new("."));
        let wasm = registry
            .read_source(source, base)
            .map_err(|e| err(field.clone(), e.to_string()))?;
        if registry.config_file_unchanged(&t.id, &wasm) {
            continue;
        }
        registry
            .prepare_config_file(&t.id, wasm, source)
            .map_err(|e| err(field.clone(), e.to_string()))?;
    }
    Ok(registry)
}

/// Builds what a config's tenants make. `previous` is the tenancy being replaced, if any.
pub fn build(
    config: Config,
    file: &Path,
    lasting: &Lasting,
    previous: Option<&Tenancy>,
) -> Result<Tenancy, ConfigError> {
    let routes = Arc::new(Routes::new(&config, file)?);
    let origin = OriginClient::new(routes.tenants().map(|t| t.as_ref())).map_err(|e| {
        field_err(
            file,
            "tenants".into(),
            format!("cannot create origin HTTP client: {e}"),
        )
    })?;
    let quotas = config.manifest_quotas();
    let manifests = Arc::new(match previous {
        Some(p) => p.manifests.carry_over(&quotas, origin),
        None => ManifestCache::new(&quotas, origin),
    });
    let registry = plugin_registry(
        &config,
        &routes,
        file,
        lasting,
        previous.map(|p| p.registry.as_ref()),
    )?;
    let registry = Arc::new(registry);
    let personalizer = Arc::new(Personalizer {
        registry: registry.clone(),
        manifests: manifests.clone(),
        keys: lasting.keys.clone(),
        store: lasting.store.clone(),
        prefetcher: lasting.prefetcher.clone(),
        recent: lasting.recent.clone(),
    });
    let readiness = Arc::new(Readiness::new(
        routes
            .tenants()
            .map(|t| (t.id.clone(), t.origins.clone()))
            .collect(),
        config
            .tenants
            .iter()
            .filter(|t| t.plugin.as_ref().is_some_and(|p| p.file.is_some()))
            .map(|t| t.id.clone())
            .collect(),
    ));
    let cors = Arc::new(crate::cors::CorsPolicy::new(&config.cors));
    let certificates = match &config.tls {
        Some(t) => Some(Arc::new(
            t.load(file.parent().unwrap_or(Path::new(".")))
                .map_err(|(f, m)| field_err(file, f, m))?,
        )),
        None => None,
    };
    let outages = previous.map_or_else(Default::default, |p| p.outages.clone());
    let mut admin_tokens = Vec::new();
    for (i, t) in config.tenants.iter().enumerate() {
        let token = t
            .resolved_admin_token()
            .map_err(|m| field_err(file, format!("tenants[{i}].admin_token"), m))?;
        if let Some(token) = token {
            admin_tokens.push((t.id.clone(), token));
        }
    }
    // nothing below can fail: the config's plugin files become active with it
    registry.activate_pending();
    Ok(Tenancy {
        admin_tokens,
        cors,
        certificates,
        outages,
        config: Arc::new(config),
        routes,
        manifests,
        registry,
        personalizer,
        readiness,
    })
}

/// Sections a reload cannot apply (they shape listeners, memory and the plugin engine).
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    if !same(&old.server, &new.server) {
        out.push("server");
    }
    // listeners need a restart; certificates are swapped with the config
    let tls_listeners = |c: &Config| {
        c.tls
            .as_ref()
            .map(|t| (t.listen.clone(), t.http2, t.min_version.clone()))
    };
    if tls_listeners(old) != tls_listeners(new) {
        out.push("tls (listeners)");
    }
    if !same(&old.cache.size, &new.cache.size)
        || !same(&old.cache.max_object_size, &new.cache.max_object_size)
        || !same(&old.cache.lock_timeout, &new.cache.lock_timeout)
    {
        out.push("cache");
    }
    if !same(&old.plugins, &new.plugins) {
        out.push("plugins");
    }
    if !same(&old.admin, &new.admin) {
        out.push("admin");
    }
    if !same(&old.sessions, &new.sessions) {
        out.push("sessions");
    }
    out
}

/// Re-reads the config file and swaps the tenancy; on any error the old one stays.
pub async fn reload(file: &Path, live: &Live, lasting: &Lasting) -> Result<usize, String> {
    let file = file.to_path_buf();
    let (live2, lasting2) = (live.clone(), lasting.clone());
    // reading files and compiling plugins block: off the async workers
    let built = tokio::task::spawn_blocking(move || {
        let config = crate::load::load(&file).map_err(|e| e.to_string())?;
        let current = live2.load_full();
        let restart = needs_restart(&current.config, &config);
        let tenancy = build(config, &file, &lasting2, Some(&current)).map_err(|e| e.to_string())?;
        Ok::<_, String>((tenancy, restart))
    })
    .await
    .map_err(|e| format!("reload task failed: {e}"))??;
    let (tenancy, restart) = built;
    if !restart.is_empty() {
        tracing::warn!(
            sections = ?restart,
            "config reload: these sections changed and need a restart (or a binary upgrade) to apply; kept as they were"
        );
    }
    let tenants = tenancy.config.tenants.len();
    live.store(Arc::new(tenancy));
    Ok(tenants)
}

/// Reloads the config on SIGHUP.
pub struct ReloadService {
    pub file: PathBuf,
    pub live: Live,
    pub lasting: Lasting,
}

#[async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGHUP: config reload disabled");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    match reload(&self.file, &self.live, &self.lasting).await {
                        Ok(n) => tracing::info!(file = %self.file.display(), tenants = n, "config reloaded"),
                        Err(e) => tracing::error!(file = %self.file.display(), error = %e, "config reload refused: still serving the previous config"),
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
