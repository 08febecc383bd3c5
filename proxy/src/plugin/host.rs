//! The host side of a call: its store data (memory limiter, granted capabilities, the
//! tenant's core share) and the host imports of `wit/plugin.wit` (`log`, `kv-get`/`kv-set`,
//! `decide-ads`, `now-ms`), each checked against what the tenant granted.

use super::bindings::manifold::plugin::host::{Host, Level};
use super::bindings::{Ad, AdBreak, AdDecider, SessionCtx, Viewer};
use super::capabilities::{Capabilities, MAX_DECISIONS, MAX_PREROLL_SECS, PREROLL_BREAK};
use super::kv::KvStore;
use crate::session::DecidedAd;
use std::sync::Arc;
use std::time::SystemTime;

/// Memory, table and instance caps for one plugin instance. The memory cap is on the sum of
/// its memories (a component may have several). Records whether the cap was hit so a trap
/// can be reported as what it was.
pub struct Limiter {
    pub memory_max: usize,
    pub memory_exceeded: bool,
    /// Bytes of linear memory the instance has, over all its memories.
    pub memory_used: usize,
}

impl Limiter {
    pub fn new(memory_max: usize) -> Limiter {
        Limiter {
            memory_max,
            memory_exceeded: false,
            memory_used: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // instantiation asks too (current 0): initial memories count
        let total = (self.memory_used.saturating_sub(current)).saturating_add(desired);
        if total > self.memory_max {
            self.memory_exceeded = true;
            wasmtime::bail!("plugin memory limit of {} bytes reached", self.memory_max);
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        32
    }
    fn tables(&self) -> usize {
        32
    }
    fn memories(&self) -> usize {
        8
    }
}

/// Per-request store data.
pub struct HostState {
    pub limiter: Limiter,
    pub tenant: Arc<str>,
    pub caps: Capabilities,
    pub kv: Option<Arc<KvStore>>,
    pub ads: Option<Arc<dyn AdDecider>>,
    pub session: Option<SessionCtx>,
    /// The breaks of the call's input: `decide-ads` decides these (and a pre-roll) only.
    pub breaks: Vec<crate::types::AdBreak>,
    /// New ad decisions made during the call (at most [`MAX_DECISIONS`]).
    pub decisions: usize,
    /// The tenant's core share this call holds (see `CallEnv::cpu`).
    pub cpu: Option<CpuSlot>,
    /// Log lines the plugin emitted (bounded), for `manifold plugin check`.
    pub log_lines: usize,
    /// Time spent in host calls that wait on the network (not counted against the deadline).
    pub host_wait: std::time::Duration,
}

fn denied(what: &str) -> wasmtime::Error {
    wasmtime::format_err!("capability `{what}` not granted to this tenant")
}

const MAX_LOG_LINES: usize = 100;
const MAX_LOG_LINE: usize = 2048;

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

    fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            self.pool.add_permits(1);
        }
    }

    async fn reacquire(&mut self) {
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

impl HostState {
    /// The break to decide: the input's own copy (a plugin cannot stretch a break to get more
    /// ads), or a bounded pre-roll; any other id traps.
    fn decidable(&self, brk: AdBreak) -> wasmtime::Result<crate::types::AdBreak> {
        let brk: crate::types::AdBreak = super::wire::Cv::cv(brk);
        if let Some(b) = self.breaks.iter().find(|b| b.id == brk.id) {
            return Ok(b.clone());
        }
        if brk.id == PREROLL_BREAK {
            return Ok(crate::types::AdBreak {
                duration: brk.duration.clamp(0.0, MAX_PREROLL_SECS),
                ..brk
            });
        }
        let id: String = brk.id.chars().take(64).collect();
        wasmtime::bail!(
            "decide-ads: break {id:?} is not in the input (only its breaks and `{PREROLL_BREAK}`)"
        )
    }

    /// Waits on the network for the plugin: holding no core (other calls of the tenant run
    /// meanwhile), and not counted against its deadline (up to `MAX_HOST_WAIT`).
    async fn on_host<T>(&mut self, wait: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        if let Some(c) = self.cpu.as_mut() {
            c.release();
        }
        let out = wait.await;
        if let Some(c) = self.cpu.as_mut() {
            c.reacquire().await;
        }
        self.host_wait += started.elapsed();
        out
    }

    fn count_decision(&mut self) -> wasmtime::Result<()> {
        self.decisions += 1;
        if self.decisions > MAX_DECISIONS {
            wasmtime::bail!("decide-ads: more than {MAX_DECISIONS} new decisions in one call");
        }
        Ok(())
    }
}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if !self.caps.log {
            return Err(denied("log"));
        }
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            return Ok(()); // a chatty plugin cannot flood the proxy's log
        }
        let msg: String = message.chars().take(MAX_LOG_LINE).collect();
        let tenant = &*self.tenant;
        match level {
            Level::Debug => tracing::debug!(target: "manifold::plugin", tenant, "{msg}"),
            Level::Info => tracing::info!(target: "manifold::plugin", tenant, "{msg}"),
            Level::Warn => tracing::warn!(target: "manifold::plugin", tenant, "{msg}"),
            Level::Error => tracing::error!(target: "manifold::plugin", tenant, "{msg}"),
        }
        Ok(())
    }

    fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        match (&self.kv, self.caps.kv) {
            (Some(kv), true) => Ok(kv.get(&key)),
            _ => Err(denied("kv")),
        }
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        match (&self.kv, self.caps.kv) {
            (Some(kv), true) => Ok(kv.set(key, value)),
            _ => Err(denied("kv")),
        }
    }

    async fn decide_ads(&mut self, brk: AdBreak) -> wasmtime::Result<Vec<Ad>> {
        let Some(ads) = self.ads.clone().filter(|_| self.caps.ads) else {
            return Err(denied("ads"));
        };
        let brk = self.decidable(brk)?;
        let tenant = self.tenant.clone();
        let Some(s) = self.session.clone() else {
            let anon = Viewer::anonymous(&tenant);
            self.count_decision()?;
            let decided = self.on_host(ads.decide(&tenant, None, &brk, &anon)).await;
            return Ok(to_wit(&decided));
        };
        if let Some(cached) = s.cached.lock().get(&brk.id) {
            return Ok(to_wit(cached));
        }
        self.count_decision()?;
        let standing = self
            .on_host(async {
                let decided = ads.decide(&tenant, Some(&s.id), &brk, &s.viewer).await;
                // first writer wins: a concurrent request (another rendition, another node)
                // may have decided this break already, and then everyone plays that decision
                match s.store.record_decision(&s.id, &brk.id, &decided).await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(tenant = %tenant, error = %e, "session store: decision not cached");
                        decided
                    }
                }
            })
            .await;
        s.cached.lock().insert(brk.id.clone(), standing.clone());
        Ok(to_wit(&standing))
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        if !self.caps.clock {
            return Err(denied("clock"));
        }
        Ok(SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0))
    }
}

impl super::bindings::manifold::plugin::types::Host for HostState {}

fn to_wit(ads: &[DecidedAd]) -> Vec<Ad> {
    ads.iter()
        .map(|a| Ad {
            id: a.id.clone(),
            creative: a.creative.clone(),
            duration: a.duration,
        })
        .collect()
}
