//! The wasmtime runtime for manifest plugins: one `Engine` (pooling allocator, copy-on-write
//! memory images, epoch interruption), an `InstancePre` per plugin, and a fresh instance in a
//! fresh `Store` for every call, with a deadline and a memory cap.

use super::bindings::session::manifold::plugin::low_latency::Edge as LiveEdge;
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

use super::loaded::Pre;
pub use super::loaded::{LoadError, LoadedPlugin};

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
    /// With its LL-HLS live edge, when it has one (what `low-latency.live-edge` answers).
    /// And, from a cached manifest, where its on-demand form is kept ([`super::wire::OnDemand`]).
    HlsMedia(
        &'a HlsMedia,
        Option<&'a Arc<LiveEdge>>,
        Option<&'a std::sync::OnceLock<super::wire::OnDemand>>,
    ),
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
            Input::HlsMedia(m, ..) => (&m.breaks).cv(),
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
        // `perf` names plugin functions from /tmp/perf-<pid>.map (profiling plugins; off by
        // default: the map grows with every compile)
        if std::env::var_os("MANIFOLD_PERF_MAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| LoadError::Invalid(e.to_string()))?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        super::host::link(&mut linker).map_err(|e| LoadError::Invalid(e.to_string()))?;

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
        let result: Result<Vec<crate::types::Edit>, PluginFailure> = async {
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
            let insertion = match session.as_ref().map_or(Default::default(), |s| s.insertion) {
                crate::ledger::Insertion::Stitched => super::bindings::Insertion::Stitched,
                crate::ledger::Insertion::Guided => super::bindings::Insertion::Guided,
            };
            let session_in = super::bindings::Session { insertion };
            let mut store = self.store(env, session, input.breaks(), deadline);
            // held in the store: the host gives it back while the call waits on the network
            store.data_mut().cpu = Some(CpuSlot::held(env.cpu.clone()));
            if let Input::HlsMedia(_, edge, _) = &input {
                store.data_mut().edge = edge.cloned();
            }
            // a component reading the segments on demand gets the playlist without them
            let owned;
            let input = match input {
                Input::HlsMedia(m, edge, kept) if plugin.segments_on_demand => {
                    let on_demand = match kept {
                        Some(kept) => kept.get_or_init(|| super::wire::OnDemand::of(m)),
                        None => {
                            owned = super::wire::OnDemand::of(m);
                            &owned
                        }
                    };
                    store.data_mut().segments = Some(on_demand.segments.clone());
                    Input::HlsMedia(&on_demand.lean, edge, None)
                }
                other => other,
            };
            let call = async {
                // the worlds export the same functions over the same types; the 0.2.1 ones
                // take the session too
                macro_rules! call {
                    ($instance:expr $(, $session:expr)?) => {{
                        let instance = $instance;
                        match input {
                            Input::HlsMaster(m) => {
                                instance
                                    .call_hls_master(&mut store, m, viewer, $($session,)? config)
                                    .await
                            }
                            Input::HlsMedia(m, ..) => {
                                instance
                                    .call_hls_media(&mut store, m, viewer, $($session,)? config)
                                    .await
                            }
                            Input::DashMpd(m) => {
                                instance
                                    .call_dash_mpd(&mut store, m, viewer, $($session,)? config)
                                    .await
                            }
                        }
                    }};
                }
                match &plugin.pre {
                    Pre::Plugin(p) => call!(p.instantiate_async(&mut store).await?),
                    Pre::Scoped(p) => call!(p.instantiate_async(&mut store).await?),
                    Pre::Session(p) => call!(p.instantiate_async(&mut store).await?, session_in),
                    Pre::ScopedSession(p) => {
                        call!(p.instantiate_async(&mut store).await?, session_in)
                    }
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
            store.data_mut().stderr.finish();
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
                    let mut failure = classify(&e, l.memory_exceeded.then_some(l.memory_max));
                    // what it wrote last says why (a Rust panic's message)
                    if let Some(tail) = store.data().stderr.tail() {
                        let tail: String = tail.chars().take(500).collect();
                        failure.message = format!("{} (stderr: {tail})", failure.message);
                    }
                    Err(failure)
                }
            }
        }
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
            HostState::new(
                Limiter::new(env.memory.min(self.max_memory)),
                env.tenant.clone(),
                env.caps,
                env.kv.clone(),
                env.ads.clone(),
                session,
                breaks,
            ),
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
pub(crate) mod tests;
#[cfg(test)]
mod world_tests;
