//! Capability `log`: lines under the tenant's name, bounded in number and length.

use super::denied;
use crate::plugin::bindings::Level;

pub(super) const MAX_LOG_LINES: usize = 100;
pub(super) const MAX_LOG_LINE: usize = 2048;

/// The call's log: whether it is granted, and the lines written so far.
pub struct Log {
    granted: bool,
    /// Lines the plugin emitted (bounded), for `manifold plugin check`.
    lines: usize,
}

impl Log {
    pub fn new(granted: bool) -> Log {
        Log { granted, lines: 0 }
    }

    pub fn write(&mut self, tenant: &str, level: Level, message: String) -> wasmtime::Result<()> {
        if !self.granted {
            return Err(denied("log"));
        }
        self.lines += 1;
        if self.lines > MAX_LOG_LINES {
            return Ok(()); // a chatty plugin cannot flood the proxy's log
        }
        let msg: String = message.chars().take(MAX_LOG_LINE).collect();
        match level {
            Level::Debug => tracing::debug!(target: "manifold::plugin", tenant, "{msg}"),
            Level::Info => tracing::info!(target: "manifold::plugin", tenant, "{msg}"),
            Level::Warn => tracing::warn!(target: "manifold::plugin", tenant, "{msg}"),
            Level::Error => tracing::error!(target: "manifold::plugin", tenant, "{msg}"),
        }
        Ok(())
    }
}

impl crate::plugin::bindings::scoped::manifold::plugin::log::Host for super::HostState {
    fn log(
        &mut self,
        level: crate::plugin::bindings::scoped::manifold::plugin::log::Level,
        message: String,
    ) -> wasmtime::Result<()> {
        use crate::plugin::bindings::scoped::manifold::plugin::log::Level as L;
        let level = match level {
            L::Debug => Level::Debug,
            L::Info => Level::Info,
            L::Warn => Level::Warn,
            L::Error => Level::Error,
        };
        self.log.write(&self.tenant, level, message)
    }
}

/// Links the `log` interface of the scoped world.
pub fn link(linker: &mut wasmtime::component::Linker<super::HostState>) -> wasmtime::Result<()> {
    crate::plugin::bindings::scoped::manifold::plugin::log::add_to_linker::<
        _,
        wasmtime::component::HasSelf<_>,
    >(linker, |s| s)
}
