//! `low-latency` (0.2.2): the live edge of the LL-HLS media playlist a call is about. It
//! describes the input, so it is not a capability; it is lifted into the guest only when asked
//! for, from the copy cached with the manifest.

use crate::plugin::bindings::session::manifold::plugin::low_latency::{Edge as LiveEdge, Host};
use std::sync::Arc;

impl Host for super::HostState {
    fn live_edge(&mut self) -> wasmtime::Result<Option<LiveEdge>> {
        Ok(self.edge.as_deref().cloned())
    }
}

/// Links the `low-latency` interface of the session worlds.
pub fn link(linker: &mut wasmtime::component::Linker<super::HostState>) -> wasmtime::Result<()> {
    crate::plugin::bindings::session::manifold::plugin::low_latency::add_to_linker::<
        _,
        wasmtime::component::HasSelf<_>,
    >(linker, |s| s)
}

/// The edge a call carries: shared with the cached manifest, not copied per call.
pub type Edge = Option<Arc<LiveEdge>>;
