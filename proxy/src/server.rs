//! Assembling the pingora server from a validated config.

use crate::admin::{self, AdminService, AdminState};
use crate::config::{Config, ConfigError, SessionsConfig};
use crate::plugin::{EngineOptions, PluginEngine};
use crate::prefetch::Prefetcher;
use crate::proxy::EdgeProxy;
use crate::reload::{self, Lasting, Live, ReloadService};
use crate::session::{MemoryStore, RedisStore, SessionKeys, SessionStore};
use crate::storage::SegmentStorage;
use crate::tracking::Beacons;
use arc_swap::ArcSwap;
use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use std::path::Path;
use std::sync::Arc;

/// The session store the config names. Redis is connected lazily, by its connection manager
/// on the runtime serving requests (the proxy's runtimes do not exist yet at this point): a
/// Redis that does not answer at start-up is reported, not fatal, since the proxy serves its
/// other tenants meanwhile and plugin tenants get their fail policy until Redis answers.
fn session_store(c: &SessionsConfig) -> Result<Arc<dyn SessionStore>, String> {
    if c.store == "memory" {
        return Ok(Arc::new(MemoryStore::new(
            c.ttl,
            c.max_sessions,
            c.max_memory.as_u64(),
        )));
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

/// The key session tokens are signed with: the configured one, or a random one for this
/// process (sessions then neither survive a restart nor span nodes).
fn session_keys(sessions: &SessionsConfig) -> Result<SessionKeys, String> {
    match sessions.resolved_key()? {
        Some(k) => Ok(SessionKeys::new(&k)),
        None => {
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).map_err(|e| format!("no randomness for a key: {e}"))?;
            tracing::warn!(
                "sessions.key not set: sessions will not survive a restart or span nodes"
            );
            Ok(SessionKeys::new(&k))
        }
    }
}

/// Builds everything the config describes; any failure names the config field.
/// `upgrade`: take the listeners over from a running process (which gets SIGQUIT).
pub fn build(config: &Config, file: &Path, upgrade: bool) -> Result<Server, ConfigError> {
    // Long: assembly in dependency order, each part taking the ones built before it.
    let err = |field: &str, message: String| ConfigError {
        file: file.to_path_buf(),
        line: None,
        field: field.into(),
        message,
    };
    let p = &config.plugins;
    let engine = PluginEngine::new(&EngineOptions {
        artifacts_dir: p.dir.join("artifacts"),
        max_instances: p.max_instances,
        max_memory: p.max_memory.as_u64() as usize,
        loaded_capacity: 1024,
    })
    .map_err(|e| err("plugins", e.to_string()))?;
    let keys = session_keys(&config.sessions).map_err(|m| err("sessions.key", m))?;
    let store = session_store(&config.sessions).map_err(|m| err("sessions.store", m))?;
    let lasting = Lasting {
        engine: Arc::new(engine),
        uploads: p.dir.join("uploads"),
        keys: keys.clone(),
        store: store.clone(),
        prefetcher: Arc::new(Prefetcher::default()),
        // the session inspector's manifests, kept only when there is a console to show them
        recent: Arc::new(crate::recent::Recent::new(
            if config.admin.is_some() { 32 << 20 } else { 0 },
            std::time::Duration::from_secs(600),
        )),
    };
    let tenancy = reload::build(config.clone(), file, &lasting, None)?;
    let live: Live = Arc::new(ArcSwap::from_pointee(tenancy));
    let beacons = Arc::new(Beacons::new(store, keys));
    let max_object = config.cache.max_object_size.as_u64().min(usize::MAX as u64) as usize;
    // pingora-cache takes 'static storage and lock: they live as long as the process
    let storage: &'static SegmentStorage = Box::leak(Box::new(SegmentStorage::new(
        config.cache.size.as_u64(),
        max_object,
    )));
    let cache_lock: &'static CacheKeyLockImpl =
        Box::leak(CacheLock::new_boxed(config.cache.lock_timeout));

    // the listener hand-over socket: in a directory only the proxy's user may write
    if let Some(dir) = config.server.upgrade_sock.parent() {
        crate::state_dir::ensure_private(dir).map_err(|m| err("server.upgrade_sock", m))?;
    }
    let conf = ServerConf {
        threads: config.server.threads,
        // a runtime per thread (like nginx workers) measured ~2% faster on cache hits than work stealing
        work_stealing: false,
        // in-flight requests get the grace period; DrainService exits as soon as they are done
        grace_period_seconds: Some(config.server.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: config.server.upgrade_sock.display().to_string(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    if let Some(a) = &config.admin {
        let listener = admin::bind(&a.listen).map_err(|e| {
            err(
                "admin.listen",
                format!("cannot listen on {}: {e}", a.listen),
            )
        })?;
        let token = a.resolved_token().map_err(|m| err("admin.token", m))?;
        let state = AdminState {
            live: live.clone(),
            token: token.map(Arc::from),
        };
        let router = admin::router(state, config.plugins.max_upload_size.as_u64() as usize);
        server.add_service(pingora_core::services::background::background_service(
            "admin",
            AdminService::new(listener, router),
        ));
    }
    add_upkeep(&mut server, &live, file, lasting);

    let tls_settings = match &config.tls {
        Some(t) => t
            .listen
            .iter()
            .map(|addr| Ok((addr.clone(), t.settings(current_certs(&live))?)))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|m| err("tls", m))?,
        None => Vec::new(),
    };
    let proxy = EdgeProxy {
        live,
        beacons,
        storage,
        cache_lock,
        lock_timeout: config.cache.lock_timeout,
        max_object_size: max_object,
    };
    let mut app = pingora_proxy::HttpProxy::new(proxy, server.configuration.clone());
    app.handle_init_modules();
    let mut service = pingora_core::services::listening::Service::new(
        "manifold".to_string(),
        crate::drain::Settled(Arc::new(app)),
    );
    for addr in &config.server.listen {
        // No L4 read buffer: pingora's default is 64 KiB per connection (for TLS records),
        // zeroed at accept. Plain HTTP/1.1 request heads are read straight into pingora's own
        // head buffer, so the read buffer was only an extra copy and 64 KiB of memory per
        // kept-alive viewer (3 GiB for 50k viewers; a burst of new connections spent its time
        // faulting in and zeroing those pages).
        let endpoint =
            ListenerConfig::tcp(addr.as_str()).l4_buffer(L4BufferSettings::default().read(0));
        service.add_listener(endpoint);
    }
    for (addr, settings) in tls_settings {
        // HTTPS keeps pingora's L4 read buffer: TLS records are read through it
        service.add_listener(ListenerConfig::tcp(addr.as_str()).tls(settings));
    }
    server.add_service(service);
    Ok(server)
}

/// The services beside the proxy: draining on shutdown, origin health, reloads on SIGHUP.
fn add_upkeep(server: &mut Server, live: &Live, file: &Path, lasting: Lasting) {
    server.add_service(pingora_core::services::background::background_service(
        "drain",
        crate::drain::DrainService::new(server.watch_execution_phase()),
    ));
    server.add_service(pingora_core::services::background::background_service(
        "origins",
        crate::origins::UpkeepService {
            origins: {
                let live = live.clone();
                Box::new(move || {
                    live.load()
                        .routes
                        .tenants()
                        .map(|t| t.origins.clone())
                        .collect()
                })
            },
        },
    ));
    server.add_service(pingora_core::services::background::background_service(
        "reload",
        ReloadService {
            file: file.to_path_buf(),
            live: live.clone(),
            lasting,
        },
    ));
}

/// The certificates of the tenancy current at each handshake.
fn current_certs(live: &crate::reload::Live) -> crate::tls::CurrentCerts {
    let live = live.clone();
    Arc::new(move || live.load().certificates.clone())
}
