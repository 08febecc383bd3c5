//! Capability `kv`: the tenant's bounded key-value store ([`crate::plugin::kv`]).

use super::denied;
use crate::plugin::kv::KvStore;
use std::sync::Arc;

/// The tenant's store, when granted.
pub struct Kv(Option<Arc<KvStore>>);

impl Kv {
    pub fn new(granted: bool, store: Option<Arc<KvStore>>) -> Kv {
        Kv(store.filter(|_| granted))
    }

    pub fn get(&self, key: &str) -> wasmtime::Result<Option<Vec<u8>>> {
        let kv = self.0.as_ref().ok_or_else(|| denied("kv"))?;
        Ok(kv.get(key))
    }

    pub fn set(&self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        let kv = self.0.as_ref().ok_or_else(|| denied("kv"))?;
        Ok(kv.set(key, value))
    }
}

impl crate::plugin::bindings::scoped::manifold::plugin::kv::Host for super::HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.kv.get(&key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        self.kv.set(key, value)
    }
}

/// Links the `kv` interface of the scoped world.
pub fn link(linker: &mut wasmtime::component::Linker<super::HostState>) -> wasmtime::Result<()> {
    crate::plugin::bindings::scoped::manifold::plugin::kv::add_to_linker::<
        _,
        wasmtime::component::HasSelf<_>,
    >(linker, |s| s)
}
