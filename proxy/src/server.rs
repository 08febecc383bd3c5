//! Assembling the pingora server from a validated config.

use crate::admin::{self, AdminService, AdminState};
use crate::ads::AdCatalog;
use crate::config::{Config, ConfigError, SessionsConfig};
use crate::manifest_cache::ManifestCache;
use crate::origin::OriginClient;
use crate::personalize::Personalizer;
use crate::plugin::bindings::AdDecider;
use crate::plugin::registry::{PluginSettings, Registry};
use crate::plugin::{EngineOptions, PluginEngine};
use crate::proxy::EdgeProxy;
use crate::route::Routes;
use crate::session::{MemoryStore, RedisStore, SessionKeys, SessionStore};
use crate::ssai::Policies;
use crate::storage::SegmentStorage;
use crate::tracking::Beacons;
use crate::vast::VastDecider;
use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The plugin registry for a config: every tenant gets a slot, configured plugins are loaded
/// (from the artifact store when they were compiled before) and activated.
pub fn plugin_registry(
    config: &Config,
    routes: &Routes,
    file: &Path,
) -> Result<(Registry, HashMap<String, Arc<AdCatalog>>), ConfigError> {
    let err = |field: String, message: String| ConfigError {
        file: file.to_path_buf(),
        field,
        message,
    };
    let p = &config.plugins;
    let engine = PluginEngine::new(&EngineOptions {
        artifacts_dir: p.dir.join("artifacts"),
        max_instances: p.max_instances,
        max_memory: p.max_memory.as_u64() as usize,
        loaded_capacity: 1024,
    })
    .map_err(|e| err("plugins".into(), e.to_string()))?;
    let mut registry = Registry::new(Arc::new(engine), &p.dir.join("uploads"))
        .map_err(|e| err("plugins.dir".into(), e.to_string()))?;
    let mut catalogs = HashMap::new();
    for (i, t) in config.tenants.iter().enumerate() {
        let tenant = routes
            .tenant(&t.id)
            .ok_or_else(|| err(format!("tenants[{i}]"), "not routed".into()))?;
        let catalog = (!t.creatives.is_empty())
            .then(|| Arc::new(AdCatalog::new(tenant.clone(), t.creatives.clone())));
        if let Some(c) = &catalog {
            catalogs.insert(t.id.clone(), c.clone());
        }
        // a VAST ad server decides when there is one; the catalog maps its media files
        let decider: Option<Arc<dyn AdDecider>> = match (&t.ad_server, catalog) {
            (Some(a), Some(c)) => Some(Arc::new(VastDecider::new(a.clone(), c).map_err(|e| {
                err(
                    format!("tenants[{i}].ad_server"),
                    format!("cannot create the ad server's HTTP client: {e}"),
                )
            })?)),
            (Some(_), None) => {
                return Err(err(
                    format!("tenants[{i}].creatives"),
                    "ad_server needs the tenant's creatives".into(),
                ))
            }
            (None, c) => c.map(|c| c as Arc<dyn AdDecider>),
        };
        let mut settings = PluginSettings::new(&t.id, t.plugin.as_ref(), decider)
            .map_err(|m| err(format!("tenants[{i}].plugin"), m))?;
        settings.prefetch = t
            .ad_server
            .as_ref()
            .map(|a| a.prefetch_window)
            .filter(|w| !w.is_zero());
        registry.add_tenant(&t.id, settings);
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
        let v = registry
            .deploy(&t.id, &wasm, source)
            .map_err(|e| err(field.clone(), e.to_string()))?;
        tracing::info!(tenant = %t.id, digest = %v.digest, "plugin loaded");
    }
    Ok((registry, catalogs))
}

/// The session store the config names. Redis is connected lazily, by its connection manager
/// on the runtime serving requests (the proxy's runtimes do not exist yet at this point): a
/// Redis that does not answer at start-up is reported, not fatal, since the proxy serves its
/// other tenants meanwhile and plugin tenants get their fail policy until Redis answers.
fn session_store(c: &SessionsConfig) -> Result<Arc<dyn SessionStore>, String> {
    if c.store == "memory" {
        return Ok(Arc::new(MemoryStore::new(c.ttl, c.max_sessions)));
    }
    let store = RedisStore::new(&c.store, c.ttl).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let probe = rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(2), store.ping()).await
    });
    let problem = match probe {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer within 2 s".to_string()),
    };
    if let Some(problem) = problem {
        tracing::warn!(
            store = %c.store,
            error = %problem,
            "session store unreachable at start-up: plugin tenants get their fail policy until it answers"
        );
    }
    Ok(Arc::new(store))
}

/// Builds everything the config describes; any failure names the config field.
pub fn build(config: &Config, file: &Path) -> Result<Server, ConfigError> {
    let err = |field: &str, message: String| ConfigError {
        file: file.to_path_buf(),
        field: field.into(),
        message,
    };
    let routes = Arc::new(Routes::new(config, file)?);
    let origin = OriginClient::new(routes.tenants().map(|t| t.as_ref()))
        .map_err(|e| err("tenants", format!("cannot create origin HTTP client: {e}")))?;
    let manifests = Arc::new(ManifestCache::new(config.cache.manifest_entries, origin));
    let (registry, catalogs) = plugin_registry(config, &routes, file)?;
    let registry = Arc::new(registry);
    let keys = match config
        .sessions
        .resolved_key()
        .map_err(|m| err("sessions.key", m))?
    {
        Some(k) => SessionKeys::new(&k),
        None => {
            let mut k = [0u8; 32];
            getrandom::fill(&mut k)
                .map_err(|e| err("sessions.key", format!("no randomness for a key: {e}")))?;
            tracing::warn!(
                "sessions.key not set: sessions will not survive a restart or span nodes"
            );
            SessionKeys::new(&k)
        }
    };
    let store = session_store(&config.sessions).map_err(|m| err("sessions.store", m))?;
    let policies = config
        .tenants
        .iter()
        .map(|t| {
            let p = Policies {
                markers: t.ssai.markers,
                join: t.ssai.join_mid_break,
                overlong: t.ssai.overlong_ads,
                tracking: true,
            };
            (t.id.clone(), p)
        })
        .collect();
    let personalizer = Arc::new(Personalizer {
        registry: registry.clone(),
        catalogs,
        manifests: manifests.clone(),
        keys: keys.clone(),
        store: store.clone(),
        policies,
        prefetcher: Default::default(),
    });
    let beacons = Arc::new(Beacons::new(store, keys));
    let max_object = config.cache.max_object_size.as_u64().min(usize::MAX as u64) as usize;
    // pingora-cache takes 'static storage and lock: they live as long as the process
    let storage: &'static SegmentStorage = Box::leak(Box::new(SegmentStorage::new(
        config.cache.size.as_u64(),
        max_object,
    )));
    let cache_lock: &'static CacheKeyLockImpl =
        Box::leak(CacheLock::new_boxed(config.cache.lock_timeout));

    let conf = ServerConf {
        threads: config.server.threads,
        // a runtime per thread (like nginx workers) measured ~2% faster on cache hits than work stealing
        work_stealing: false,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(config.server.shutdown_grace.as_secs()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    if let Some(a) = &config.admin {
        let listener = std::net::TcpListener::bind(&a.listen).map_err(|e| {
            err(
                "admin.listen",
                format!("cannot listen on {}: {e}", a.listen),
            )
        })?;
        let token = a.resolved_token().map_err(|m| err("admin.token", m))?;
        let readiness = admin::Readiness::new(
            routes
                .tenants()
                .map(|t| (t.id.clone(), t.origin_addr))
                .collect(),
            config
                .tenants
                .iter()
                .filter(|t| t.plugin.as_ref().is_some_and(|p| p.file.is_some()))
                .map(|t| t.id.clone())
                .collect(),
        );
        let state = AdminState {
            registry: registry.clone(),
            token: token.map(Arc::from),
            readiness: Arc::new(readiness),
        };
        let router = admin::router(state, config.plugins.max_upload_size.as_u64() as usize);
        server.add_service(pingora_core::services::background::background_service(
            "admin",
            AdminService::new(listener, router),
        ));
    }

    let proxy = EdgeProxy {
        routes,
        manifests,
        personalizer,
        beacons,
        storage,
        cache_lock,
        lock_timeout: config.cache.lock_timeout,
        max_object_size: max_object,
    };
    let mut service =
        pingora_proxy::http_proxy_service_with_name(&server.configuration, proxy, "manifold");
    for addr in &config.server.listen {
        service.add_tcp(addr);
    }
    server.add_service(service);
    Ok(server)
}
