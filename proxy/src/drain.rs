//! Graceful shutdown (SIGTERM, and the old process of a binary upgrade after SIGQUIT):
//! listeners stop accepting, requests in flight finish, then the process exits — as soon as
//! the last one is done, or when `server.shutdown_grace` is up, whichever comes first.
//! pingora itself would always wait the whole grace period, then cancel what is left.
//!
//! From the moment a shutdown or upgrade signal arrives, responses carry `Connection: close`:
//! viewers on kept-alive connections move to fresh ones (the new process's, in an upgrade)
//! before pingora closes idle connections, which a client sending just then would see fail.

use async_trait::async_trait;
use pingora_core::server::ExecutionPhase;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static DRAINING: AtomicBool = AtomicBool::new(false);

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
/// request before an idle process counts as drained.
const SETTLE: Duration = Duration::from_millis(300);

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
        tokio::time::sleep(SETTLE).await;
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
