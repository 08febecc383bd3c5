//! Graceful shutdown (SIGTERM, and the old process of a binary upgrade after SIGQUIT):
//! listeners stop accepting, requests in flight finish, then the process exits — as soon as
//! the last one is done, or when `server.shutdown_grace` is up, whichever comes first.
//! pingora itself would always wait the whole grace period, then cancel what is left.
//!
//! From the moment a shutdown or upgrade signal arrives, responses carry `Connection: close`:
//! viewers on kept-alive connections move to fresh ones (the new process's, in an upgrade)
//! before pingora closes idle connections, which a client sending just then would see fail.
//!
//! Once the listeners stop, pingora drops every connection still waiting for its request head,
//! including one accepted a moment earlier whose request is still on its way: that viewer
//! would see its request fail. [`Settled`] gives such connections [`SETTLE`] to send it first.

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ExecutionPhase;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static DRAINING: AtomicBool = AtomicBool::new(false);
/// The listeners have stopped and connections still without a request have been closed.
static SETTLED: AtomicBool = AtomicBool::new(false);

/// A shutdown or upgrade has begun: stop keeping connections alive.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

/// Held by every request from its first byte to its log line.
pub struct InFlight(());

impl InFlight {
    pub fn start() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Requests being served now.
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Relaxed)
}

/// Marks the process draining on a shutdown/upgrade signal; exits it once shutdown has begun
/// and no request is in flight.
pub struct DrainService {
    phases: std::sync::Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

impl DrainService {
    /// `phases`: the server's [`watch_execution_phase`](pingora_core::server::Server::watch_execution_phase).
    pub fn new(phases: broadcast::Receiver<ExecutionPhase>) -> DrainService {
        DrainService {
            phases: std::sync::Mutex::new(Some(phases)),
        }
    }
}

async fn mark_draining(mut phases: broadcast::Receiver<ExecutionPhase>) {
    loop {
        match phases.recv().await {
            Ok(
                ExecutionPhase::GracefulUpgradeTransferringFds
                | ExecutionPhase::GracefulUpgradeCloseTimeout
                | ExecutionPhase::GracefulTerminate
                | ExecutionPhase::ShutdownStarted,
            ) => {
                DRAINING.store(true, Ordering::Relaxed);
                tracing::info!("shutdown or upgrade signalled: closing kept-alive connections after their next response");
                return;
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Connections accepted just before the listeners closed get this long to send their
/// request before they are closed and an idle process counts as drained.
const SETTLE: Duration = Duration::from_millis(300);

/// A listening app whose connections accepted before shutdown get [`SETTLE`] to send their
/// request before the app's cleanup closes those still waiting.
pub struct Settled<A>(pub Arc<A>);

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Settled<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.0.process_new(session, shutdown).await
    }

    /// Called once the accept loops have ended.
    async fn cleanup(&self) {
        tokio::time::sleep(SETTLE).await;
        self.0.cleanup().await;
        SETTLED.store(true, Ordering::Release);
    }
}

#[async_trait]
impl BackgroundService for DrainService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let phases = self.phases.lock().ok().and_then(|mut p| p.take());
        if let Some(p) = phases {
            tokio::spawn(mark_draining(p));
        }
        if shutdown.changed().await.is_err() {
            return;
        }
        DRAINING.store(true, Ordering::Relaxed);
        let began = in_flight();
        tracing::info!(
            in_flight = began,
            "shutting down: draining requests in flight"
        );
        // the proxy service's connections accepted before the signal have sent their request
        // (or been closed): from here on, in-flight counts everything left to finish
        let settling = std::time::Instant::now();
        while !SETTLED.load(Ordering::Acquire) && settling.elapsed() < 4 * SETTLE {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // two idle looks in a row: a request between them would have shown up
        let mut idle = 0;
        loop {
            if in_flight() == 0 {
                idle += 1;
                if idle == 2 {
                    break;
                }
            } else {
                idle = 0;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!("drained: every request finished, exiting");
        std::process::exit(0);
    }
}
