//! `segments` (0.2.3): the HLS media playlist's segments, for a component that reads them on
//! demand (and so is called with an empty `segments` list). It describes the input, so it is
//! not a capability. What a call asks for is lowered into the guest's own memory, so its size
//! is bounded by the tenant's memory limit.

use crate::plugin::bindings::lean::manifold::plugin::segments::Host;
use crate::plugin::bindings::Segment;
use std::sync::Arc;

impl Host for super::HostState {
    fn count(&mut self) -> wasmtime::Result<u32> {
        Ok(self.segments.as_ref().map_or(0, |s| s.len() as u32))
    }

    fn range(&mut self, first: u32, count: u32) -> wasmtime::Result<Vec<Segment>> {
        let Some(all) = self.segments.as_ref() else {
            return Ok(Vec::new());
        };
        let start = (first as usize).min(all.len());
        let end = start.saturating_add(count as usize).min(all.len());
        Ok(all[start..end].to_vec())
    }
}

/// Links the `segments` interface (for every component: only those importing it use it).
pub fn link(linker: &mut wasmtime::component::Linker<super::HostState>) -> wasmtime::Result<()> {
    crate::plugin::bindings::lean::manifold::plugin::segments::add_to_linker::<
        _,
        wasmtime::component::HasSelf<_>,
    >(linker, |s| s)
}

/// The segments a call carries for an on-demand component.
pub type Segments = Option<Arc<[Segment]>>;
