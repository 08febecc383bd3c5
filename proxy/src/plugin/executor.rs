//! Where plugin code executes: a runtime of its own, so the proxy's worker threads never run
//! wasm. Pingora's workers are single-threaded runtimes that poll their sockets once every 61
//! task polls; a call spinning to its deadline yields at every 1 ms epoch tick, so on a worker
//! it held every request on that thread for up to 61 ms per I/O step (the noisy-neighbour
//! benchmark in docs/benchmarks.md). Here it holds one plugin thread, within its tenant's core
//! share, and the proxy's threads keep serving.
//!
//! A tenant whose plugin recently ran long (one call executing past [`LONG_CALL`]) is demoted
//! ([`Demotion`]): for [`DEMOTION`] its calls execute on a second runtime whose threads run at a
//! lower OS priority (`NICE`). When the cores are contended, the proxy's own work and
//! tenants with quick plugins go first and the spinner gets what is left; when they are not,
//! it still gets whole cores. (An unprivileged process cannot raise a thread's priority
//! again, hence two runtimes rather than one thread changing priority.)

use super::failure::{FailureKind, PluginFailure};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

/// The demoted threads' nice value, the lowest: CFS weighs a nice-0 thread 1024 and a nice-19
/// one 15, so a spinning tenant gets ~1.5 % of a contended core, not all of it (at nice 10,
/// ~10 %, the healthy tenant's p99 still moved by 21 % in the noisy-neighbour benchmark).
const NICE: libc::c_int = 19;

/// Executing this long in one call (guest code only, counted in epoch ticks) demotes the
/// tenant. Quick plugins take microseconds to a millisecond; a spinner passes this at once.
pub const LONG_CALL: Duration = Duration::from_millis(20);

/// How long a demotion lasts after the last long call.
pub const DEMOTION: Duration = Duration::from_secs(30);

/// A tenant's demotion: until when its calls execute at low priority.
#[derive(Debug, Default)]
pub struct Demotion {
    until_ms: AtomicU64,
}

impl Demotion {
    pub fn active(&self) -> bool {
        now_ms() < self.until_ms.load(Ordering::Relaxed)
    }

    /// Called at every epoch tick of a long call: cheap, and the demotion lasts until
    /// [`DEMOTION`] after the last one.
    pub fn mark(&self) {
        let until = now_ms() + DEMOTION.as_millis() as u64;
        self.until_ms.fetch_max(until, Ordering::Relaxed);
    }
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

static NORMAL: OnceLock<Result<Runtime, String>> = OnceLock::new();
static DEMOTED: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// A plugin runtime, started on first use: one thread per core (tenants' core shares
/// already bound how many calls execute at once). Never dropped: it lives as long as the
/// process, like the engine's epoch thread.
fn runtime(demoted: bool) -> Result<&'static Runtime, PluginFailure> {
    let (cell, name) = match demoted {
        false => (&NORMAL, "plugin"),
        true => (&DEMOTED, "plugin-demoted"),
    };
    cell.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut b = Builder::new_multi_thread();
        // time and I/O: host calls (ad decisions, session writes) use the network
        b.worker_threads(cores).thread_name(name).enable_all();
        if demoted {
            b.on_thread_start(lower_priority);
        }
        b.build().map_err(|e| format!("{name} runtime: {e}"))
    })
    .as_ref()
    .map_err(|e| PluginFailure::new(FailureKind::Trap, e.clone()))
}

fn lower_priority() {
    // on Linux, PRIO_PROCESS with who = 0 is the calling thread, not the whole process; the
    // value is absolute, so it is set relative to what the thread inherited
    // SAFETY: plain syscalls on the calling thread, no memory is passed
    let r = unsafe {
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, now.saturating_add(NICE).min(19))
    };
    if r != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "plugin threads keep the proxy's priority"
        );
    }
}

/// Aborts the call when the request that awaits it goes away (a viewer hanging up): its
/// instance is dropped at the guest's next epoch tick instead of running to its deadline.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `call` on a plugin runtime (the low-priority one for a demoted tenant) and waits for
/// it from whatever runtime the caller is on.
pub async fn run<F>(call: F, demoted: bool) -> Result<F::Output, PluginFailure>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut task = AbortOnDrop(runtime(demoted)?.spawn(call));
    (&mut task.0).await.map_err(|e| {
        // a panic in the host's own code of a call: that request fails, nothing else does
        tracing::error!(error = %e, "plugin task failed");
        PluginFailure::new(FailureKind::Trap, "the plugin call failed in the host")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn calls_run_off_the_callers_thread() {
        let caller = std::thread::current().id();
        let ran = run(async { std::thread::current().id() }, false)
            .await
            .unwrap();
        assert_ne!(ran, caller);
        assert!(std::thread::current().name() != Some("plugin"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn demoted_calls_yield_to_the_proxy_and_quick_ones() {
        // SAFETY: reads the calling thread's nice value
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let proxy = nice();
        assert_eq!(run(async move { nice() }, false).await.unwrap(), proxy);
        let demoted = run(async move { nice() }, true).await.unwrap();
        assert_eq!(demoted, (proxy + NICE).min(19));
    }

    #[test]
    fn a_demotion_lasts_from_the_last_long_call() {
        let d = Demotion::default();
        assert!(!d.active());
        d.mark();
        assert!(d.active());
        // as if marked DEMOTION + 1 s ago
        d.until_ms
            .store(now_ms().saturating_sub(1000), Ordering::Relaxed);
        assert!(!d.active());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dropping_the_wait_aborts_the_call() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let waiting = tokio::spawn(run(
            async move {
                // holds `tx` until it is aborted
                let _tx = tx;
                std::future::pending::<()>().await
            },
            false,
        ));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waiting.abort();
        // the aborted call drops its future, and with it the sender
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), rx).await;
        assert!(matches!(closed, Ok(Err(_))), "the call was not aborted");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_call_is_a_failure_not_a_crash() {
        let r: Result<(), _> = run(async { panic!("boom") }, false).await;
        assert_eq!(r.err().map(|f| f.kind), Some(FailureKind::Trap));
    }
}
