//! The wasmtime runtime for manifest plugins: one `Engine` (pooling allocator, copy-on-write
//! memory images, epoch interruption), an `InstancePre` per plugin, and a fresh instance in a
//! fresh `Store` for every call, with a deadline and a memory cap.

use super::bindings::{
    AdDecider, Capabilities, DashMpd, Edit, HlsMaster, HlsMedia, SessionCtx, Viewer,
};
use super::executor::{Demotion, LONG_CALL};
use super::host::{CpuSlot, HostState, Limiter};

/// [`LONG_CALL`] in epoch ticks.
const LONG_CALL_TICKS: u32 = (LONG_CALL.as_millis() / TICK.as_millis()) as u32;
use super::kv::KvStore;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wasmtime::component::Linker;
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

pub use super::capabilities::{MAX_EDITS, MAX_HOST_WAIT, MAX_PLAN_ADS};
pub use super::failure::{FailureKind, PluginFailure};

/// Bytes the host may lift out of a guest in one go: the returned plan, or the arguments of
/// one host call. The canonical ABI lets many strings alias one guest buffer, so the guest's
/// memory limit does not bound what the host allocates; this does (wasmtime's default is
/// 128 MiB per call, and calls run by the hundred). A plan within its limits always fits.
pub fn lift_budget() -> usize {
    MAX_EDITS * std::mem::size_of::<Edit>()
        + MAX_PLAN_ADS * std::mem::size_of::<super::bindings::Ad>()
        + crate::apply::MAX_PLAN_BYTES
}

pub use super::loading::{LoadError, LoadedPlugin};

/// What one call may use.
#[derive(Clone)]
pub struct CallEnv {
    pub tenant: Arc<str>,
    pub caps: Capabilities,
    pub kv: Option<Arc<KvStore>>,
    pub ads: Option<Arc<dyn AdDecider>>,
    pub deadline: Duration,
    pub memory: usize,
    /// The tenant's share of the instance pool: taken before a global slot, so a tenant
    /// that saturates its share is busy and no other tenant is.
    pub share: Arc<Semaphore>,
    /// The tenant's share of the cores: how many of its calls execute at once (the others
    /// wait, within their deadline). A spinning plugin burns its own share, not the cores
    /// every other tenant's calls and the proxy's requests run on. Released while the call
    /// waits on the host.
    pub cpu: Arc<Semaphore>,
    /// Set while the tenant's plugin recently ran long: its calls then execute at low
    /// priority ([`super::executor`]).
    pub demoted: Arc<Demotion>,
}

/// The manifest a plugin is asked about.
pub enum Input<'a> {
    HlsMaster(&'a HlsMaster),
    HlsMedia(&'a HlsMedia),
    DashMpd(&'a DashMpd),
}

/// What owns an input the plugin runtime can borrow: a cached manifest, shared by every
/// request personalizing it, so nothing is copied to hand it to another thread.
pub trait Subject: Send + Sync + 'static {
    fn input(&self) -> Option<Input<'_>>;
}

impl Input<'_> {
    /// The breaks the input names: the only ones the plugin may have decided.
    fn breaks(&self) -> Vec<crate::types::AdBreak> {
        use super::wire::Cv;
        match self {
            Input::HlsMaster(_) => Vec::new(),
            Input::HlsMedia(m) => (&m.breaks).cv(),
            Input::DashMpd(m) => (&m.breaks).cv(),
        }
    }
}

pub struct PluginEngine {
    pub(super) engine: Engine,
    pub(super) linker: Linker<HostState>,
    pub(super) artifacts: PathBuf,
    pub(super) compat: String,
    pub(super) loaded: moka::sync::Cache<String, Arc<LoadedPlugin>>,
    pub(super) permits: Semaphore,
    /// Held while compiling: one compile at a time (each already uses every core).
    pub(super) compiling: parking_lot::Mutex<()>,
    pub(super) max_memory: usize,
    pub(super) ticker_stop: Arc<AtomicBool>,
}

/// Time a trial instantiation may take at least (a tenant's deadline may be shorter than a
/// cold instantiation).
pub(super) const TRIAL_DEADLINE: Duration = Duration::from_secs(1);

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

        crate::state_dir::ensure_private(&opts.artifacts_dir).map_err(LoadError::Io)?;

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
            compiling: parking_lot::Mutex::new(()),
            max_memory: opts.max_memory,
            ticker_stop,
        })
    }

    pub fn max_memory(&self) -> usize {
        self.max_memory
    }

    /// Runs one entry point in a fresh instance. Never panics and never outlives
    /// `env.deadline` plus what it waited on the host (at most [`MAX_HOST_WAIT`]) by more
    /// than an epoch tick.
    pub async fn call(
        &self,
        plugin: &LoadedPlugin,
        input: Input<'_>,
        viewer: &Viewer,
        config: &str,
        env: &CallEnv,
        session: Option<SessionCtx>,
    ) -> Result<Vec<crate::types::Edit>, PluginFailure> {
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

    /// [`call`](Self::call) on the plugin runtime ([`super::executor`]): the proxy's path, so
    /// its worker threads never execute wasm.
    pub async fn call_isolated(
        self: &Arc<Self>,
        plugin: &Arc<LoadedPlugin>,
        subject: Arc<impl Subject>,
        viewer: Arc<Viewer>,
        config: Arc<str>,
        env: CallEnv,
        session: Option<SessionCtx>,
    ) -> Result<Vec<crate::types::Edit>, PluginFailure> {
        let (engine, plugin) = (self.clone(), plugin.clone());
        let demoted = env.demoted.active();
        if demoted {
            crate::metrics::METRICS
                .plugin_demoted_calls
                .with_label_values(&[&*env.tenant])
                .inc();
        }
        let call = async move {
            let input = subject.input().ok_or_else(|| {
                PluginFailure::new(
                    FailureKind::Trap,
                    "no manifest view to call the plugin with",
                )
            })?;
            engine
                .call(&plugin, input, &viewer, &config, &env, session)
                .await
        };
        super::executor::run(call, demoted).await?
    }

    /// A fresh store for one call: the tenant's limits, the lift budget, the deadline.
    pub(super) fn store(
        &self,
        env: &CallEnv,
        session: Option<SessionCtx>,
        breaks: Vec<crate::types::AdBreak>,
        deadline: Instant,
    ) -> Store<HostState> {
        let mut store = Store::new(
            &self.engine,
            HostState {
                limiter: Limiter::new(env.memory.min(self.max_memory)),
                tenant: env.tenant.clone(),
                caps: env.caps,
                kv: env.kv.clone(),
                ads: env.ads.clone(),
                session,
                breaks,
                cpu: None,
                decisions: 0,
                log_lines: 0,
                host_wait: Duration::ZERO,
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(lift_budget());
        store.set_epoch_deadline(1);
        let (mut ticks, demoted) = (0u32, env.demoted.clone());
        store.epoch_deadline_callback(move |ctx| {
            // called only while guest code executes, once per tick it executed through (a
            // guest the OS kept off the cores for 30 ms sees one tick on resuming, not 30):
            // the count is the call's CPU time in ticks, not its wall time, so a quick plugin
            // on a busy machine is not taken for a spinner
            ticks += 1;
            if ticks > LONG_CALL_TICKS {
                demoted.mark();
            }
            // time waiting on the host (the ad decision, bounded by its own budget) is not
            // the plugin's, up to MAX_HOST_WAIT
            let credit = ctx.data().host_wait.min(MAX_HOST_WAIT);
            Ok(if Instant::now() >= deadline + credit {
                UpdateDeadline::Interrupt
            } else {
                // let other requests run on this thread between ticks
                UpdateDeadline::Yield(1)
            })
        });
        store
    }

    async fn call_inner(
        &self,
        plugin: &LoadedPlugin,
        input: Input<'_>,
        viewer: &Viewer,
        config: &str,
        env: &CallEnv,
        session: Option<SessionCtx>,
    ) -> Result<Vec<crate::types::Edit>, PluginFailure> {
        let started = Instant::now();
        let deadline = started + env.deadline;
        // the tenant's share first, then a pool slot: both waited for within the deadline
        let _share = acquire(
            &env.share,
            deadline,
            "the tenant's share of plugin instances is in use",
        )
        .await?;
        let _permit = acquire(&self.permits, deadline, "no free plugin instance").await?;
        let cpu = acquire(
            &env.cpu,
            deadline,
            "the tenant's share of the cores is in use",
        )
        .await?;
        cpu.forget();
        let mut store = self.store(env, session, input.breaks(), deadline);
        // held in the store: the host gives it back while the call waits on the network
        store.data_mut().cpu = Some(CpuSlot::held(env.cpu.clone()));
        let call = async {
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
        };
        // epochs do not interrupt a guest blocked in a host call: the hard ceiling does
        let ceiling = deadline + MAX_HOST_WAIT + TICK;
        let result = match tokio::time::timeout_at(ceiling.into(), call).await {
            Ok(r) => r,
            Err(_) => {
                return Err(PluginFailure::new(
                    FailureKind::Deadline,
                    format!(
                        "deadline exceeded: {:?} with host waits (at most {:?})",
                        started.elapsed(),
                        env.deadline + MAX_HOST_WAIT
                    ),
                ))
            }
        };
        match result {
            Ok(Ok(edits)) if edits.len() > MAX_EDITS => Err(PluginFailure::new(
                FailureKind::InvalidPlan,
                format!("{} edits (at most {MAX_EDITS})", edits.len()),
            )),
            Ok(Ok(edits)) => Ok(super::wire::Cv::cv(edits)),
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

pub(super) fn classify(e: &wasmtime::Error, memory_limit: Option<usize>) -> PluginFailure {
    if let Some(limit) = memory_limit {
        return PluginFailure::new(
            FailureKind::Memory,
            format!("memory limit of {limit} bytes reached"),
        );
    }
    if lift_refused(e) {
        return PluginFailure::new(
            FailureKind::InvalidPlan,
            format!(
                "the plugin handed the host more than {} bytes at once (the plan limits)",
                lift_budget()
            ),
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

/// wasmtime refused to lift more than [`lift_budget`] (its error type is private: matched by
/// text, and a test holds it to that).
fn lift_refused(e: &wasmtime::Error) -> bool {
    e.chain().any(|c| {
        c.to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

/// A permit of `pool`, waited for until `deadline`.
pub(super) async fn acquire<'a>(
    pool: &'a Semaphore,
    deadline: Instant,
    busy: &str,
) -> Result<tokio::sync::SemaphorePermit<'a>, PluginFailure> {
    if let Ok(p) = pool.try_acquire() {
        return Ok(p);
    }
    tokio::time::timeout_at(deadline.into(), pool.acquire())
        .await
        .ok()
        .and_then(Result::ok)
        // a slot freed just as the deadline passed is no use: the call would fail at once
        .filter(|_| Instant::now() < deadline)
        .ok_or_else(|| PluginFailure::new(FailureKind::Busy, busy))
}

/// Component binaries carry layer 1 in the preamble; core modules layer 0.
pub(super) fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

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
        Viewer::anonymous("t")
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
            share: Arc::new(Semaphore::new(8)),
            cpu: Arc::new(Semaphore::new(8)),
            demoted: Arc::default(),
        }
    }

    async fn run(
        e: &PluginEngine,
        p: &LoadedPlugin,
        mode: &str,
        env: &CallEnv,
    ) -> Result<Vec<crate::types::Edit>, PluginFailure> {
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
        let kind = |r: Result<Vec<crate::types::Edit>, PluginFailure>| r.unwrap_err().kind;
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
    async fn an_aliased_plan_is_refused_before_the_host_lifts_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let p = e.load(&plugin_wasm("misbehave")).unwrap();
        // 25 tags aliasing one 4 MiB buffer: 100 MB if lifted whole, 4 MiB of guest memory
        let f = run(&e, &p, "alias", &env(2000)).await.unwrap_err();
        assert_eq!(f.kind, FailureKind::InvalidPlan, "{f}");
        assert!(f.message.contains("bytes at once"), "{f}");
        // a plan at its limits still fits the lift budget
        assert!(lift_budget() < 8 << 20, "{}", lift_budget());
        assert!(run(&e, &p, "noop", &env(100)).await.is_ok());
    }

    /// Counts decisions; `hang` never answers.
    struct Decider {
        calls: std::sync::atomic::AtomicUsize,
        hang: bool,
    }

    #[async_trait::async_trait]
    impl AdDecider for Decider {
        async fn decide(
            &self,
            _t: &str,
            _s: Option<&str>,
            brk: &crate::types::AdBreak,
            _v: &Viewer,
        ) -> Vec<crate::session::DecidedAd> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.hang {
                std::future::pending::<()>().await;
            }
            vec![crate::session::DecidedAd {
                id: format!("{}-0", brk.id),
                creative: "ad10".into(),
                duration: brk.duration.min(10.0),
                tracking: Default::default(),
            }]
        }
    }

    /// Decides after a round trip on a socket, as the VAST decider does.
    struct NetDecider(std::net::SocketAddr);

    #[async_trait::async_trait]
    impl AdDecider for NetDecider {
        async fn decide(
            &self,
            _t: &str,
            _s: Option<&str>,
            brk: &crate::types::AdBreak,
            _v: &Viewer,
        ) -> Vec<crate::session::DecidedAd> {
            let connected = tokio::net::TcpStream::connect(self.0).await;
            assert!(connected.is_ok(), "{connected:?}");
            vec![crate::session::DecidedAd {
                id: format!("{}-0", brk.id),
                creative: "ad10".into(),
                duration: brk.duration.min(10.0),
                tracking: Default::default(),
            }]
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn host_calls_on_the_plugin_runtime_can_use_the_network() {
        let dir = tempfile::tempdir().unwrap();
        let e = Arc::new(engine(dir.path()));
        let p = e.load(&plugin_wasm("misbehave")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut env = env(2000);
        env.caps.ads = true;
        env.ads = Some(Arc::new(NetDecider(listener.local_addr().unwrap())));
        let f = e
            .call_isolated(
                &p,
                Arc::new(Held(media_with_break())),
                Arc::new(viewer()),
                "mode=decide;ids=input".into(),
                env,
                None,
            )
            .await
            .unwrap_err();
        // every decision made it (the cap ended the call), none failed in the host
        assert!(f.message.contains("new decisions"), "{f}");
    }

    fn media_with_break() -> HlsMedia {
        let mut m = media();
        m.breaks = vec![super::super::bindings::AdBreak {
            id: "b1".into(),
            start: 0.0,
            duration: 30.0,
            first_segment: None,
            scte35: None,
        }];
        m
    }

    #[tokio::test]
    async fn decide_ads_decides_only_the_inputs_breaks_a_few_times_within_a_ceiling() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let p = e.load(&plugin_wasm("misbehave")).unwrap();
        let decider = Arc::new(Decider {
            calls: Default::default(),
            hang: false,
        });
        let mut env = env(2000);
        env.caps.ads = true;
        env.ads = Some(decider.clone());
        let call = |config: &'static str, env: CallEnv| {
            let (e, p) = (&e, &p);
            async move {
                let m = media_with_break();
                e.call(p, Input::HlsMedia(&m), &viewer(), config, &env, None)
                    .await
            }
        };
        // made-up break ids: the first one traps, nothing is decided
        let f = call("mode=decide", env.clone()).await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Trap, "{f}");
        assert!(f.message.contains("not in the input"), "{f}");
        assert_eq!(decider.calls.load(Ordering::Relaxed), 0);
        // the input's own break, over and over: capped
        let f = call("mode=decide;ids=input", env.clone())
            .await
            .unwrap_err();
        assert!(f.message.contains("new decisions"), "{f}");
        assert_eq!(
            decider.calls.load(Ordering::Relaxed),
            super::super::capabilities::MAX_DECISIONS
        );
        // a decision that never answers: the call ends at its ceiling, host wait included
        let hang = Arc::new(Decider {
            calls: Default::default(),
            hang: true,
        });
        let mut env = env.clone();
        env.deadline = Duration::from_millis(50);
        env.ads = Some(hang);
        // (epochs cannot interrupt a host call: only the ceiling ends this one)
        let f = call("mode=decide;ids=input", env).await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Deadline, "{f}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tenant_that_saturates_its_share_is_busy_and_no_other_tenant_is() {
        let dir = tempfile::tempdir().unwrap();
        let e = Arc::new(engine(dir.path())); // 8 instances
        let p = e.load(&plugin_wasm("misbehave")).unwrap();
        let mut attacker = env(400);
        attacker.tenant = "attacker".into();
        attacker.share = Arc::new(Semaphore::new(2));
        let mut victim = env(400);
        victim.tenant = "victim".into();
        victim.share = Arc::new(Semaphore::new(6));
        let spinners: Vec<_> = (0..12)
            .map(|_| {
                let (e, p, env) = (e.clone(), p.clone(), attacker.clone());
                tokio::spawn(async move { run(&e, &p, "loop", &env).await.unwrap_err().kind })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..6 {
            assert!(run(&e, &p, "noop", &victim).await.is_ok());
        }
        let mut kinds = Vec::new();
        for s in spinners {
            kinds.push(s.await.unwrap());
        }
        assert!(kinds.contains(&FailureKind::Busy), "{kinds:?}");
        assert!(kinds.contains(&FailureKind::Deadline), "{kinds:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tenants_calls_execute_within_its_share_of_the_cores() {
        let dir = tempfile::tempdir().unwrap();
        let e = Arc::new(engine(dir.path()));
        let p = e.load(&plugin_wasm("misbehave")).unwrap();
        let mut spinner = env(600);
        spinner.cpu = Arc::new(Semaphore::new(1));
        let calls: Vec<_> = [600, 200]
            .into_iter()
            .map(|ms| {
                let (e, p) = (e.clone(), p.clone());
                let mut env = spinner.clone();
                env.deadline = Duration::from_millis(ms);
                tokio::spawn(async move {
                    if ms == 200 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    run(&e, &p, "loop", &env).await.unwrap_err().kind
                })
            })
            .collect();
        let mut kinds = Vec::new();
        for c in calls {
            kinds.push(c.await.unwrap());
        }
        kinds.sort_by_key(|k| k.as_str());
        // one spun to its deadline on the tenant's one core; the other never got to run
        assert_eq!(kinds, [FailureKind::Busy, FailureKind::Deadline]);
        assert_eq!(spinner.cpu.available_permits(), 1, "the slot is given back");
    }

    struct Held(HlsMedia);
    impl Subject for Held {
        fn input(&self) -> Option<Input<'_>> {
            Some(Input::HlsMedia(&self.0))
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_long_call_demotes_its_tenant_and_quick_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let e = Arc::new(engine(dir.path()));
        let p = e.load(&plugin_wasm("misbehave")).unwrap();
        let isolated = |mode: &str, env: &CallEnv| {
            e.call_isolated(
                &p,
                Arc::new(Held(media())),
                Arc::new(viewer()),
                format!("mode={mode}").into(),
                env.clone(),
                None,
            )
        };
        let (quick, spinner) = (env(100), env(100));
        for _ in 0..20 {
            assert!(isolated("noop", &quick).await.unwrap().is_empty());
        }
        assert!(!quick.demoted.active());
        let f = isolated("loop", &spinner).await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Deadline);
        assert!(spinner.demoted.active());
        assert!(!quick.demoted.active());
        // a demoted tenant's calls still run, on the low-priority threads, and are counted
        let demoted = || {
            crate::metrics::METRICS
                .plugin_demoted_calls
                .with_label_values(&["t"])
                .get()
        };
        let before = demoted();
        assert!(isolated("noop", &spinner).await.unwrap().is_empty());
        assert_eq!(demoted(), before + 1);
    }

    #[test]
    fn the_memory_cap_is_on_all_of_an_instances_memories() {
        use wasmtime::ResourceLimiter;
        let mut l = Limiter::new(10 << 20);
        assert!(l.memory_growing(0, 6 << 20, None).unwrap());
        // a second memory: together past the cap
        assert!(l.memory_growing(0, 6 << 20, None).is_err());
        assert!(l.memory_exceeded);
        let mut l = Limiter::new(10 << 20);
        assert!(l.memory_growing(0, 4 << 20, None).unwrap());
        assert!(l.memory_growing(0, 4 << 20, None).unwrap());
        // growing one of them counts the growth only
        assert!(l.memory_growing(4 << 20, 6 << 20, None).unwrap());
        assert!(l.memory_growing(6 << 20, 7 << 20, None).is_err());
    }

    /// A plugin of the WIT world with two memories of `pages` 64 KiB pages each (its
    /// functions trap; only instantiation matters): the main module's, and a second core
    /// module's (`split`) or the same module's (not `split`). No Rust toolchain emits one, an
    /// attacker's hand-made binary would.
    fn two_memories(pages: u32, split: bool) -> Vec<u8> {
        let wit = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit");
        let mut resolve = wit_parser::Resolve::default();
        let (pkg, _) = resolve.push_dir(wit).unwrap();
        let world = resolve.select_world(&[pkg], Some("plugin")).unwrap();
        let dummy =
            wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
        let text = wasmprinter::print_bytes(&dummy).unwrap();
        let one = "(memory (;0;) 0)";
        assert!(text.contains(one), "no memory where expected:\n{text}");
        let memories = match split {
            true => format!("(memory {pages})"),
            false => format!("(memory {pages}) (memory {pages})"),
        };
        let mut module = wat::parse_str(text.replacen(one, &memories, 1)).unwrap();
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
        )
        .unwrap();
        let component = wit_component::ComponentEncoder::default()
            .module(&module)
            .unwrap()
            .encode()
            .unwrap();
        if !split {
            return component;
        }
        // appended last, so no index the component already uses moves
        let text = wasmprinter::print_bytes(&component).unwrap();
        let body = text.trim_end().strip_suffix(')').unwrap();
        let extra =
            format!("(core module $extra (memory {pages})) (core instance (instantiate $extra)))");
        wat::parse_str(format!("{body}{extra}")).unwrap()
    }

    #[test]
    fn two_memories_share_one_cap() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let env = env(100); // 16 MiB
                            // in two core modules, 2 x 5 MiB: within the cap
        let small = e.load(&two_memories(80, true)).unwrap();
        assert!(e.trial(&small, &env).is_ok());
        // 2 x 10 MiB: each within the cap, together past it
        let big = e.load(&two_memories(160, true)).unwrap();
        let err = e.trial(&big, &env).unwrap_err();
        assert!(
            matches!(err, LoadError::Trial(ref m) if m.contains("memory")),
            "{err}"
        );
        // two memories in one module are refused as they are loaded
        let err = e.load(&two_memories(1, false)).err().unwrap();
        assert!(
            matches!(err, LoadError::Invalid(ref m) if m.contains("memories count")),
            "{err}"
        );
    }

    #[test]
    fn a_plugin_that_cannot_start_under_the_tenants_limits_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let p = e.load(&plugin_wasm("misbehave")).unwrap();
        let mut env = env(100);
        assert!(e.trial(&p, &env).is_ok());
        // its initial memory alone is past this cap
        env.memory = 64 << 10;
        let err = e.trial(&p, &env).unwrap_err();
        assert!(
            matches!(err, LoadError::Trial(ref m) if m.contains("memory")),
            "{err}"
        );
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
            assert!(
                matches!(&edits[0], crate::types::Edit::AddTag(t) if t.line == format!("#EXT-X-CALLS:{n}"))
            );
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
