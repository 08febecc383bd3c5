//! The host side of a call: its store data, and the host imports of `wit/plugin.wit`, one
//! module per capability, each owning its state and checking its own grant: [`log`], [`kv`],
//! [`ads`] (`decide-ads`), [`clock`] (`now-ms`); and [`low_latency`], the input's live
//! edge, and [`segments`], its segments read on demand (no capability: they describe the
//! input); and the small [`wasi`] subset a language
//! runtime needs (clocks with `clock`, random, an empty environment). Shared by all: the instance's memory
//! [`limiter`] and the tenant's core share the call holds ([`cpu`]).

pub mod ads;
pub mod clock;
pub mod cpu;
pub mod kv;
pub mod limiter;
pub mod log;
pub mod low_latency;
pub mod segments;
pub mod stderr;
pub mod wasi;

pub use cpu::CpuSlot;
pub use limiter::Limiter;

use super::bindings::manifold::plugin::host::{Host, Level};
use super::bindings::{Ad, AdBreak, AdDecider, SessionCtx};
use super::capabilities::Capabilities;
use super::kv::KvStore;
use std::sync::Arc;
use std::time::Duration;

/// Per-request store data.
pub struct HostState {
    pub limiter: Limiter,
    pub tenant: Arc<str>,
    /// The tenant's core share this call holds (see `CallEnv::cpu`).
    pub cpu: Option<CpuSlot>,
    /// Time spent in host calls that wait on the network (not counted against the deadline).
    pub host_wait: Duration,
    /// The input's LL-HLS live edge (`low-latency.live-edge`).
    pub edge: low_latency::Edge,
    /// The input's segments, for a component that reads them on demand (`segments`).
    pub segments: segments::Segments,
    log: log::Log,
    /// What the plugin wrote to WASI stderr.
    pub stderr: stderr::Stderr,
    kv: kv::Kv,
    ads: ads::Ads,
    clock: clock::Clock,
}

impl HostState {
    /// A call's store data: each capability as granted in `caps`.
    pub fn new(
        limiter: Limiter,
        tenant: Arc<str>,
        caps: Capabilities,
        kv: Option<Arc<KvStore>>,
        decider: Option<Arc<dyn AdDecider>>,
        session: Option<SessionCtx>,
        breaks: Vec<crate::types::AdBreak>,
    ) -> HostState {
        HostState {
            limiter,
            stderr: stderr::Stderr::new(Arc::clone(&tenant), caps.log),
            tenant,
            cpu: None,
            host_wait: Duration::ZERO,
            edge: None,
            segments: None,
            log: log::Log::new(caps.log),
            kv: kv::Kv::new(caps.kv, kv),
            ads: ads::Ads::new(caps.ads, decider, session, breaks),
            clock: clock::Clock::new(caps.clock),
        }
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
}

/// Links every host import: the `plugin` world's one `host` interface, and each capability's
/// interface of the `scoped-plugin` world (which a deploy only allows if granted), and the
/// session worlds' `low-latency`, and `segments` (0.2.3).
pub fn link(linker: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    super::bindings::Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)?;
    log::link(linker)?;
    kv::link(linker)?;
    ads::link(linker)?;
    clock::link(linker)?;
    low_latency::link(linker)?;
    segments::link(linker)
}

fn denied(what: &str) -> wasmtime::Error {
    wasmtime::format_err!("capability `{what}` not granted to this tenant")
}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.log.write(&self.tenant, level, message)
    }

    fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.kv.get(&key)
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        self.kv.set(key, value)
    }

    async fn decide_ads(&mut self, brk: AdBreak) -> wasmtime::Result<Vec<Ad>> {
        self.decide_for(brk).await
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.clock.now_ms()
    }
}

impl super::bindings::manifold::plugin::types::Host for HostState {}
