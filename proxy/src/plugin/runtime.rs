//! The wasmtime runtime for manifest plugins: one `Engine` (pooling allocator, copy-on-write
//! memory images, epoch interruption), an `InstancePre` per plugin, and a fresh instance in a
//! fresh `Store` for every call, with a deadline and a memory cap.

use super::bindings::{
    AdDecider, Capabilities, DashMpd, Edit, HlsMaster, HlsMedia, HostState, Limiter, PluginPre,
    SessionCtx, Viewer,
};
use super::kv::KvStore;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where precompiled artifacts are kept (`<sha256>-<engine hash>.cwasm`).
    pub artifacts_dir: PathBuf,
    /// Plugin instances alive at once (the pooling allocator's size).
    pub max_instances: u32,
    /// Largest linear memory any instance may have (tenant limits are at most this).
    pub max_memory: usize,
    /// Compiled plugins kept in memory.
    pub loaded_capacity: u64,
}

/// Edits a plugin may return in one call.
pub const MAX_EDITS: usize = 10_000;

/// Why a plugin call did not produce an edit plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The guest trapped (panic, unreachable, stack overflow, denied capability...).
    Trap,
    /// It ran past its deadline.
    Deadline,
    /// It tried to grow its memory past the tenant's limit.
    Memory,
    /// It returned an edit plan the host refused.
    InvalidPlan,
    /// It returned an error of its own.
    PluginError,
    /// No instance slot was free within the deadline.
    Busy,
    /// The session store did not answer (not the plugin's fault; same policy).
    SessionStore,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Deadline => "deadline",
            FailureKind::Memory => "memory",
            FailureKind::InvalidPlan => "invalid-plan",
            FailureKind::PluginError => "plugin-error",
            FailureKind::Busy => "busy",
            FailureKind::SessionStore => "session-store",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct PluginFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl PluginFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        PluginFailure {
            kind,
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error("component does not fit the manifold:plugin@0.2.0 world: {0}")]
    World(String),
    #[error("plugin artifact store: {0}")]
    Io(String),
}

/// A compiled plugin, ready to instantiate.
pub struct LoadedPlugin {
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    pre: PluginPre<HostState>,
    pub wasm_bytes: usize,
    /// How it got into memory: compiled now, or read from the artifact store.
    pub from_artifact: bool,
    pub load_time: Duration,
}

/// What one call may use.
#[derive(Clone)]
pub struct CallEnv {
    pub tenant: Arc<str>,
    pub caps: Capabilities,
    pub kv: Option<Arc<KvStore>>,
    pub ads: Option<Arc<dyn AdDecider>>,
    pub deadline: Duration,
    pub memory: usize,
}

/// The manifest a plugin is asked about.
pub enum Input<'a> {
    HlsMaster(&'a HlsMaster),
    HlsMedia(&'a HlsMedia),
    DashMpd(&'a DashMpd),
}

pub struct PluginEngine {
    engine: Engine,
    linker: Linker<HostState>,
    artifacts: PathBuf,
    compat: String,
    loaded: moka::sync::Cache<String, Arc<LoadedPlugin>>,
    permits: Semaphore,
    max_memory: usize,
    ticker_stop: Arc<AtomicBool>,
}

/// The epoch advances every tick; deadlines are checked (and the guest yields) at each tick.
const TICK: Duration = Duration::from_millis(1);

impl PluginEngine {
    pub fn new(opts: &EngineOptions) -> Result<PluginEngine, LoadError> {
        let n = opts.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // Reset memories by scanning which pages a call dirtied (PAGEMAP_SCAN, Linux 6.7+) and
        // memset-ing just those, instead of madvise: no page faults on the next call and no
        // TLB shootdowns (madvise + page faults were ~20% of a fresh instance's cost).
        pool.pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(128 << 10)
            .decommit_batch_size(8)
            .total_component_instances(n)
            .total_core_instances(n * 16)
            .total_memories(n * 2)
            .total_tables(n * 8)
            .total_stacks(n)
            .max_memory_size(opts.max_memory)
            .max_core_instances_per_component(16)
            .max_memories_per_component(2)
            .max_tables_per_component(8);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            // small reservations: many slots, explicit bounds checks beyond them
            .memory_reservation(opts.max_memory as u64)
            .memory_guard_size(64 * 1024)
            .memory_reservation_for_growth(0)
            .memory_init_cow(true)
            .max_wasm_stack(512 * 1024)
            .async_stack_size(2 * 1024 * 1024);
        let engine = Engine::new(&config).map_err(|e| LoadError::Invalid(e.to_string()))?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        super::bindings::Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| LoadError::Invalid(e.to_string()))?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = format!("{:016x}", hasher.finish());

        std::fs::create_dir_all(&opts.artifacts_dir).map_err(|e| {
            LoadError::Io(format!("creating {}: {e}", opts.artifacts_dir.display()))
        })?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| LoadError::Io(format!("epoch thread: {e}")))?;
        }

        Ok(PluginEngine {
            engine,
            linker,
            artifacts: opts.artifacts_dir.clone(),
            compat,
            loaded: moka::sync::Cache::new(opts.loaded_capacity.max(1)),
            permits: Semaphore::new(n as usize),
            max_memory: opts.max_memory,
            ticker_stop,
        })
    }

    pub fn max_memory(&self) -> usize {
        self.max_memory
    }

    /// `sha256:<hex>` of component bytes.
    pub fn digest(wasm: &[u8]) -> String {
        let d = Sha256::digest(wasm);
        format!("sha256:{}", hex::encode(d))
    }

    fn artifact_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.artifacts.join(format!("{hex}-{}.cwasm", self.compat))
    }

    /// The loaded plugin for these bytes: from memory, else from the artifact store, else
    /// compiled (and stored). Fails if the bytes are not a component of the plugin world.
    pub fn load(&self, wasm: &[u8]) -> Result<Arc<LoadedPlugin>, LoadError> {
        let digest = Self::digest(wasm);
        if let Some(p) = self.loaded.get(&digest) {
            return Ok(p);
        }
        let started = Instant::now();
        let path = self.artifact_path(&digest);
        let (component, from_artifact) = match self.read_artifact(&path) {
            Some(c) => (c, true),
            None => {
                if !wasmparser_is_component(wasm) {
                    return Err(LoadError::Invalid(
                        "a core module or other bytes, not a component (build for wasm32-wasip2)"
                            .into(),
                    ));
                }
                let c = Component::new(&self.engine, wasm)
                    .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
                self.write_artifact(&path, &c)?;
                (c, false)
            }
        };
        // Everything a plugin imports beyond the host interface (the WASI a wasm32-wasip2
        // toolchain links in: stdio, environment, exit...) traps when called: no capability
        // exists unless the host grants it.
        let mut linker = self.linker.clone();
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| LoadError::World(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::World(format!("{e:#}")))?;
        let pre = PluginPre::new(pre).map_err(|e| LoadError::World(format!("{e:#}")))?;
        let plugin = Arc::new(LoadedPlugin {
            digest: digest.clone(),
            pre,
            wasm_bytes: wasm.len(),
            from_artifact,
            load_time: started.elapsed(),
        });
        self.loaded.insert(digest, plugin.clone());
        Ok(plugin)
    }

    /// Drops a plugin from memory (the next `load` reads its artifact from disk).
    pub fn forget(&self, digest: &str) {
        self.loaded.invalidate(digest);
    }

    /// A precompiled artifact this process wrote earlier, if it is there and usable.
    fn read_artifact(&self, path: &Path) -> Option<Component> {
        match Engine::detect_precompiled_file(path) {
            Ok(Some(wasmtime::Precompiled::Component)) => {}
            _ => return None,
        }
        // SAFETY: artifacts are only ever written by `write_artifact` from bytes this engine
        // compiled, into a directory owned by the proxy; tenant bytes are never deserialized.
        match unsafe { Component::deserialize_file(&self.engine, path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable plugin artifact");
                None
            }
        }
    }

    fn write_artifact(&self, path: &Path, component: &Component) -> Result<(), LoadError> {
        let bytes = component
            .serialize()
            .map_err(|e| LoadError::Io(format!("serializing: {e}")))?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| LoadError::Io(format!("writing {}: {e}", path.display())))
    }

    /// Compiled plugins held in memory.
    pub fn loaded_count(&self) -> u64 {
        self.loaded.run_pending_tasks();
        self.loaded.entry_count()
    }

    /// Runs one entry point in a fresh instance. Never panics and never outlives
    /// `env.deadline` by more than an epoch tick.
    pub async fn call(
        &self,
        plugin: &LoadedPlugin,
        input: Input<'_>,
        viewer: &Viewer,
        config: &str,
        env: &CallEnv,
        session: Option<SessionCtx>,
    ) -> Result<Vec<Edit>, PluginFailure> {
        let started = Instant::now();
        let result = self
            .call_inner(plugin, input, viewer, config, env, session)
            .await;
        let m = &crate::metrics::METRICS;
        let tenant = &*env.tenant;
        m.plugin_seconds
            .with_label_values(&[tenant])
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => m.plugin_calls.with_label_values(&[tenant, "ok"]).inc(),
            Err(f) => {
                m.plugin_calls.with_label_values(&[tenant, "failed"]).inc();
                m.plugin_failures
                    .with_label_values(&[tenant, f.kind.as_str()])
                    .inc();
            }
        }
        result
    }

    async fn call_inner(
        &self,
        plugin: &LoadedPlugin,
        input: Input<'_>,
        viewer: &Viewer,
        config: &str,
        env: &CallEnv,
        session: Option<SessionCtx>,
    ) -> Result<Vec<Edit>, PluginFailure> {
        let deadline = Instant::now() + env.deadline;
        let _permit = match self.permits.try_acquire() {
            Ok(p) => p,
            // all instance slots busy: wait, within the deadline
            Err(_) => tokio::time::timeout(env.deadline, self.permits.acquire())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| PluginFailure::new(FailureKind::Busy, "no free plugin instance"))?,
        };
        let mut store = Store::new(
            &self.engine,
            HostState {
                limiter: Limiter {
                    memory_max: env.memory.min(self.max_memory),
                    memory_exceeded: false,
                },
                tenant: env.tenant.clone(),
                caps: env.caps,
                kv: env.kv.clone(),
                ads: env.ads.clone(),
                session,
                log_lines: 0,
                host_wait: Duration::ZERO,
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            // time waiting on the host (the ad decision, bounded by its own budget) is not
            // the plugin's
            Ok(if Instant::now() >= deadline + ctx.data().host_wait {
                UpdateDeadline::Interrupt
            } else {
                // let other requests run on this thread between ticks
                UpdateDeadline::Yield(1)
            })
        });
        let result = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            match input {
                Input::HlsMaster(m) => {
                    instance
                        .call_hls_master(&mut store, m, viewer, config)
                        .await
                }
                Input::HlsMedia(m) => instance.call_hls_media(&mut store, m, viewer, config).await,
                Input::DashMpd(m) => instance.call_dash_mpd(&mut store, m, viewer, config).await,
            }
        }
        .await;
        match result {
            Ok(Ok(edits)) if edits.len() > MAX_EDITS => Err(PluginFailure::new(
                FailureKind::InvalidPlan,
                format!("{} edits (at most {MAX_EDITS})", edits.len()),
            )),
            Ok(Ok(edits)) => Ok(edits),
            Ok(Err(msg)) => Err(PluginFailure::new(
                FailureKind::PluginError,
                msg.chars().take(500).collect::<String>(),
            )),
            Err(e) => {
                let l = &store.data().limiter;
                Err(classify(&e, l.memory_exceeded.then_some(l.memory_max)))
            }
        }
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn classify(e: &wasmtime::Error, memory_limit: Option<usize>) -> PluginFailure {
    if let Some(limit) = memory_limit {
        return PluginFailure::new(
            FailureKind::Memory,
            format!("memory limit of {limit} bytes reached"),
        );
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginFailure::new(FailureKind::Deadline, "deadline exceeded"),
        Some(t) => PluginFailure::new(FailureKind::Trap, t.to_string()),
        // host errors (a denied capability, ...): the innermost message says what happened
        None => {
            let root = e.root_cause().to_string();
            PluginFailure::new(
                FailureKind::Trap,
                root.chars().take(300).collect::<String>(),
            )
        }
    }
}

/// Component binaries carry layer 1 in the preamble; core modules layer 0.
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plugin::bindings::DeviceClass;

    /// A sample plugin built by `scripts/build-plugins.sh` (the test command runs it first).
    pub fn plugin_wasm(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../target/wasm32-wasip2/release/{name}.wasm",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{path}: {e}: build the plugins first (scripts/build-plugins.sh)")
        })
    }

    pub fn engine(dir: &Path) -> PluginEngine {
        PluginEngine::new(&EngineOptions {
            artifacts_dir: dir.to_path_buf(),
            max_instances: 8,
            max_memory: 64 << 20,
            loaded_capacity: 16,
        })
        .unwrap()
    }

    pub fn viewer() -> Viewer {
        Viewer {
            tenant: "t".into(),
            session_id: None,
            query: vec![],
            headers: vec![],
            user_agent: None,
            device: DeviceClass::Unknown,
            client_ip: None,
            country: None,
            cmcd: vec![],
        }
    }

    pub fn media() -> HlsMedia {
        HlsMedia {
            target_duration: 2,
            media_sequence: 0,
            discontinuity_sequence: 0,
            live: true,
            segments: vec![],
            breaks: vec![],
        }
    }

    fn env(deadline_ms: u64) -> CallEnv {
        CallEnv {
            tenant: "t".into(),
            caps: Capabilities::default(),
            kv: None,
            ads: None,
            deadline: Duration::from_millis(deadline_ms),
            memory: 16 << 20,
        }
    }

    async fn run(
        e: &PluginEngine,
        p: &LoadedPlugin,
        mode: &str,
        env: &CallEnv,
    ) -> Result<Vec<Edit>, PluginFailure> {
        e.call(
            p,
            Input::HlsMedia(&media()),
            &viewer(),
            &format!("mode={mode}"),
            env,
            None,
        )
        .await
    }

    #[tokio::test]
    async fn misbehaving_plugins_fail_with_the_right_kind() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let p = e.load(&plugin_wasm("misbehave")).unwrap();
        assert!(run(&e, &p, "noop", &env(100)).await.unwrap().is_empty());
        let kind = |r: Result<Vec<Edit>, PluginFailure>| r.unwrap_err().kind;
        let started = Instant::now();
        assert_eq!(
            kind(run(&e, &p, "loop", &env(20)).await),
            FailureKind::Deadline
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "deadline enforced"
        );
        assert_eq!(
            kind(run(&e, &p, "memory", &env(1000)).await),
            FailureKind::Memory
        );
        assert_eq!(
            kind(run(&e, &p, "trap", &env(100)).await),
            FailureKind::Trap
        );
        assert_eq!(
            kind(run(&e, &p, "stack", &env(1000)).await),
            FailureKind::Trap
        );
        let huge = run(&e, &p, "huge", &env(2000)).await.unwrap_err();
        assert!(
            matches!(huge.kind, FailureKind::Memory | FailureKind::InvalidPlan),
            "{huge}"
        );
        assert_eq!(
            kind(run(&e, &p, "nonsense", &env(100)).await),
            FailureKind::PluginError
        );
        // a denied capability traps
        assert_eq!(kind(run(&e, &p, "log", &env(100)).await), FailureKind::Trap);
        // and the engine still serves normal calls afterwards
        assert!(run(&e, &p, "noop", &env(100)).await.is_ok());
    }

    #[tokio::test]
    async fn granted_kv_persists_between_fresh_instances() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let p = e.load(&plugin_wasm("misbehave")).unwrap();
        let mut env = env(200);
        env.caps.kv = true;
        env.kv = Some(Arc::new(KvStore::new(1024)));
        for n in 1..=3 {
            let edits = run(&e, &p, "kv", &env).await.unwrap();
            assert!(matches!(&edits[0], Edit::AddTag(t) if t.line == format!("#EXT-X-CALLS:{n}")));
        }
    }

    #[test]
    fn artifacts_make_a_second_engine_skip_compilation() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = plugin_wasm("variant_filter");
        let first = engine(dir.path()).load(&wasm).unwrap();
        assert!(!first.from_artifact);
        let second = engine(dir.path()).load(&wasm).unwrap();
        assert!(second.from_artifact);
        assert_eq!(first.digest, second.digest);
    }

    #[test]
    fn refuses_what_is_not_a_plugin_component() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        assert!(matches!(e.load(b"not wasm"), Err(LoadError::Invalid(_))));
        // a core module
        assert!(matches!(
            e.load(b"\0asm\x01\0\0\0"),
            Err(LoadError::Invalid(_))
        ));
        // an empty component exports nothing of the world
        assert!(matches!(
            e.load(b"\0asm\x0d\0\x01\0"),
            Err(LoadError::World(_))
        ));
    }
}
