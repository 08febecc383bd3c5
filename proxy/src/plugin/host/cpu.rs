//! A call's slot of its tenant's core share, given back while a capability waits on the
//! network so the tenant's other calls run meanwhile.

use std::sync::Arc;

/// A call's slot of its tenant's core share: one permit of `pool` while `held`.
pub struct CpuSlot {
    pool: Arc<tokio::sync::Semaphore>,
    held: bool,
}

impl CpuSlot {
    /// A slot whose permit the caller took (and forgot) already.
    pub fn held(pool: Arc<tokio::sync::Semaphore>) -> CpuSlot {
        CpuSlot { pool, held: true }
    }

    pub(super) fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            self.pool.add_permits(1);
        }
    }

    pub(super) async fn reacquire(&mut self) {
        if !self.held {
            if let Ok(p) = self.pool.acquire().await {
                p.forget();
                self.held = true;
            }
        }
    }
}

impl Drop for CpuSlot {
    fn drop(&mut self) {
        self.release();
    }
}
