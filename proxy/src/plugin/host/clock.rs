//! Capability `clock`: wall-clock time.

use super::denied;
use std::time::SystemTime;

pub struct Clock {
    granted: bool,
}

impl Clock {
    pub fn new(granted: bool) -> Clock {
        Clock { granted }
    }

    pub fn granted(&self) -> bool {
        self.granted
    }

    /// Unix milliseconds.
    pub fn now_ms(&self) -> wasmtime::Result<u64> {
        if !self.granted {
            return Err(denied("clock"));
        }
        Ok(SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0))
    }
}

impl crate::plugin::bindings::scoped::manifold::plugin::clock::Host for super::HostState {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.clock.now_ms()
    }
}

/// Links the `clock` interface of the scoped world.
pub fn link(linker: &mut wasmtime::component::Linker<super::HostState>) -> wasmtime::Result<()> {
    crate::plugin::bindings::scoped::manifold::plugin::clock::add_to_linker::<
        _,
        wasmtime::component::HasSelf<_>,
    >(linker, |s| s)
}
