//! Host side of the WIT world (`wit/plugin.wit`): generated bindings and the host imports,
//! each checked against the tenant's granted capabilities.

use super::kv::KvStore;
use std::sync::Arc;
use std::time::SystemTime;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: {
        "manifold:plugin/host.decide-ads": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    additional_derives: [PartialEq],
});

pub use self::manifold::plugin::host::Level;
pub use self::manifold::plugin::types::*;

/// What a tenant's plugin may use; everything else is denied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub log: bool,
    pub kv: bool,
    pub ads: bool,
    pub clock: bool,
}

impl Capabilities {
    pub fn parse(names: &[String]) -> Result<Capabilities, String> {
        let mut c = Capabilities::default();
        for n in names {
            match n.as_str() {
                "log" => c.log = true,
                "kv" => c.kv = true,
                "ads" => c.ads = true,
                "clock" => c.clock = true,
                other => {
                    return Err(format!(
                        "unknown capability {other:?} (log, kv, ads, clock)"
                    ))
                }
            }
        }
        Ok(c)
    }
}

/// Decides which ads play in a break (the tenant's catalog now, ad servers later).
pub trait AdDecider: Send + Sync {
    fn decide(&self, tenant: &str, brk: &AdBreak) -> Vec<Ad>;
}

/// Memory, table and instance caps for one plugin instance. Records whether the memory cap
/// was hit so a trap can be reported as what it was.
pub struct Limiter {
    pub memory_max: usize,
    pub memory_exceeded: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_max {
            self.memory_exceeded = true;
            wasmtime::bail!("plugin memory limit of {} bytes reached", self.memory_max);
        }
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
    /// Log lines the plugin emitted (bounded), for `manifold plugin check`.
    pub log_lines: usize,
}

fn denied(what: &str) -> wasmtime::Error {
    wasmtime::format_err!("capability `{what}` not granted to this tenant")
}

const MAX_LOG_LINES: usize = 100;
const MAX_LOG_LINE: usize = 2048;

impl self::manifold::plugin::host::Host for HostState {
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
        match (&self.ads, self.caps.ads) {
            (Some(ads), true) => Ok(ads.decide(&self.tenant, &brk)),
            _ => Err(denied("ads")),
        }
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

impl self::manifold::plugin::types::Host for HostState {}
