//! Getting a plugin ready to instantiate: from memory, from the private artifact store
//! (checked before it is deserialized), or compiled (one compile at a time) and stored; and
//! the trial instantiation a deploy runs under the tenant's limits.

use super::bindings::scoped::ScopedPluginPre;
use super::bindings::scoped_session::ScopedSessionPluginPre;
use super::bindings::session::SessionPluginPre;
use super::bindings::PluginPre;
use super::capabilities::Capabilities;
use super::host::HostState;
use super::loaded::{LoadError, LoadedPlugin, Pre};
use super::runtime::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, LinkerInstance, ResourceType};
use wasmtime::Engine;

impl PluginEngine {
    /// `sha256:<hex>` of component bytes.
    pub fn digest(wasm: &[u8]) -> String {
        let d = Sha256::digest(wasm);
        format!("sha256:{}", hex::encode(d))
    }

    fn artifact_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.artifacts.join(format!("{hex}-{}.cwasm", self.compat))
    }

    /// The loaded plugin for these bytes: from memory, else from the artifact store, else
    /// compiled (and stored). Fails if the bytes are not a component of the plugin world, or
    /// with `Busy` if it needs compiling while another compile runs.
    pub fn load(&self, wasm: &[u8]) -> Result<Arc<LoadedPlugin>, LoadError> {
        self.load_with(wasm, false)
    }

    /// As [`load`](Self::load), waiting for a running compile instead of refusing.
    pub fn load_waiting(&self, wasm: &[u8]) -> Result<Arc<LoadedPlugin>, LoadError> {
        self.load_with(wasm, true)
    }

    fn load_with(&self, wasm: &[u8], wait: bool) -> Result<Arc<LoadedPlugin>, LoadError> {
        let digest = Self::digest(wasm);
        if let Some(p) = self.loaded.get(&digest) {
            return Ok(p);
        }
        let started = Instant::now();
        let path = self.artifact_path(&digest);
        let (component, from_artifact) = match self.read_artifact(&path) {
            Some(c) => (c, true),
            None => {
                if !wasmparser_is_component(wasm) {
                    return Err(LoadError::Invalid(
                        "a core module or other bytes, not a component (build for wasm32-wasip2)"
                            .into(),
                    ));
                }
                let _compiling = match wait {
                    true => self.compiling.lock(),
                    false => self.compiling.try_lock().ok_or_else(|| {
                        LoadError::Busy("another plugin is being compiled".into())
                    })?,
                };
                let c = Component::new(&self.engine, wasm)
                    .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
                self.write_artifact(&path, &c)?;
                (c, false)
            }
        };
        // Everything a plugin imports beyond the host interface and the small WASI subset of
        // `host::wasi` (the rest of the WASI a toolchain links in: stdio, files, exit...) traps
        // when called: no capability exists unless the host grants it.
        let mut linker = self.linker.clone();
        super::host::wasi::link_subset(&mut linker, &self.engine, &component)
            .map_err(|e| LoadError::World(format!("{e:#}")))?;
        trap_unknown_imports(&mut linker, &self.engine, &component)
            .map_err(|e| LoadError::World(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::World(format!("{e:#}")))?;
        let world = |e: wasmtime::Error| LoadError::World(format!("{e:#}"));
        let imports = scoped_imports(&self.engine, &component);
        // the 0.2.1 worlds take the session too: their exports type-check only for them
        let pre = match imports {
            None => match SessionPluginPre::new(pre.clone()) {
                Ok(p) => Pre::Session(p),
                Err(_) => Pre::Plugin(PluginPre::new(pre).map_err(world)?),
            },
            Some(_) => match ScopedSessionPluginPre::new(pre.clone()) {
                Ok(p) => Pre::ScopedSession(p),
                Err(_) => Pre::Scoped(ScopedPluginPre::new(pre).map_err(world)?),
            },
        };
        let plugin = Arc::new(LoadedPlugin {
            digest: digest.clone(),
            pre,
            imports: imports.unwrap_or_default(),
            segments_on_demand: imports_segments(&self.engine, &component),
            wasm_bytes: wasm.len(),
            from_artifact,
            load_time: started.elapsed(),
        });
        self.loaded.insert(digest, plugin.clone());
        Ok(plugin)
    }

    /// Drops a plugin from memory (the next `load` reads its artifact from disk).
    pub fn forget(&self, digest: &str) {
        self.loaded.invalidate(digest);
    }

    /// A precompiled artifact this process wrote earlier, if it is there and usable.
    fn read_artifact(&self, path: &Path) -> Option<Component> {
        match Engine::detect_precompiled_file(path) {
            Ok(Some(wasmtime::Precompiled::Component)) => {}
            _ => return None,
        }
        if let Err(e) = crate::state_dir::trusted_file(path) {
            tracing::warn!(error = %e, "ignoring plugin artifact");
            return None;
        }
        // SAFETY: artifacts are only ever written by `write_artifact` from bytes this engine
        // compiled, into a directory only the proxy's user may write (checked at start-up,
        // and the file itself just now); tenant bytes are never deserialized.
        match unsafe { Component::deserialize_file(&self.engine, path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable plugin artifact");
                None
            }
        }
    }

    fn write_artifact(&self, path: &Path, component: &Component) -> Result<(), LoadError> {
        let bytes = component
            .serialize()
            .map_err(|e| LoadError::Io(format!("serializing: {e}")))?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| LoadError::Io(format!("writing {}: {e}", path.display())))
    }

    /// Compiled plugins held in memory.
    pub fn loaded_count(&self) -> u64 {
        self.loaded.run_pending_tasks();
        self.loaded.entry_count()
    }

    /// Instantiates a plugin once under a tenant's limits, calling nothing: one that cannot
    /// be instantiated (pool limits, initial memory past the tenant's cap, a start function
    /// that traps or spins) is refused when it is deployed, not on every request after.
    pub fn trial(&self, plugin: &LoadedPlugin, env: &CallEnv) -> Result<(), LoadError> {
        let missing = plugin.ungranted(env.caps);
        if !missing.is_empty() {
            return Err(LoadError::Ungranted(missing.join(", ")));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| LoadError::Io(format!("trial runtime: {e}")))?;
        // a thread of its own: callers may be on a runtime's blocking pool
        let trial = async {
            let deadline = Instant::now() + env.deadline.max(TRIAL_DEADLINE);
            let _permit = acquire(&self.permits, deadline, "no free plugin instance")
                .await
                .map_err(|_| LoadError::Busy("every plugin instance is in use".into()))?;
            let mut store = self.store(env, None, Vec::new(), deadline);
            let instantiated = match &plugin.pre {
                Pre::Plugin(p) => p.instantiate_async(&mut store).await.map(|_| ()),
                Pre::Scoped(p) => p.instantiate_async(&mut store).await.map(|_| ()),
                Pre::Session(p) => p.instantiate_async(&mut store).await.map(|_| ()),
                Pre::ScopedSession(p) => p.instantiate_async(&mut store).await.map(|_| ()),
            };
            match instantiated {
                Ok(()) => Ok(()),
                Err(e) => {
                    let l = &store.data().limiter;
                    let why = classify(&e, l.memory_exceeded.then_some(l.memory_max));
                    Err(LoadError::Trial(why.to_string()))
                }
            }
        };
        std::thread::scope(|sc| {
            sc.spawn(|| rt.block_on(trial))
                .join()
                .unwrap_or_else(|_| Err(LoadError::Trial("trial run panicked".into())))
        })
    }
}

/// Defines every import the host does not give as a function that traps when called (its
/// resources as empty host resources). The contract's own interfaces are left alone: an
/// older version (`low-latency@0.2.2`) is satisfied by the host's newer one through semver,
/// and wasmtime's `define_unknown_imports_as_traps` would define it afresh under its exact
/// name, as traps, shadowing that match. An import of the contract the host does not have
/// at all fails `instantiate_pre`, with its name.
fn trap_unknown_imports(
    linker: &mut Linker<HostState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    fn stub(
        at: &mut LinkerInstance<'_, HostState>,
        name: &str,
        item: &ComponentItem,
        engine: &Engine,
        path: &str,
    ) -> wasmtime::Result<()> {
        // a definition already there (the WASI subset) makes these fail: it stays
        match item {
            ComponentItem::ComponentFunc(_) => {
                let what = path.to_string();
                let _ = at.func_new(name, move |_, _, _, _| {
                    wasmtime::bail!("unknown import: `{what}` has not been defined")
                });
            }
            ComponentItem::Resource(_) => {
                let _ = at.resource(name, ResourceType::host::<()>(), |_, _| Ok(()));
            }
            ComponentItem::ComponentInstance(i) => {
                let mut inner = at.instance(name)?;
                for (export, e) in i.exports(engine) {
                    stub(
                        &mut inner,
                        export,
                        &e.ty,
                        engine,
                        &format!("{path}#{export}"),
                    )?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    for (name, e) in component.component_type().imports(engine) {
        if !name.starts_with("manifold:plugin/") {
            stub(&mut linker.root(), name, &e.ty, engine, name)?;
        }
    }
    Ok(())
}

/// Whether it imports `segments` (0.2.3), and so reads the input's segments on demand.
fn imports_segments(engine: &Engine, component: &Component) -> bool {
    component.component_type().imports(engine).any(|(name, _)| {
        name.strip_prefix("manifold:plugin/segments")
            .is_some_and(|v| v.is_empty() || v.starts_with('@'))
    })
}

/// The capabilities a `scoped-plugin` component imports; `None` for a component of the
/// `plugin` world (it imports the one `host` interface, or nothing of the host at all and
/// then is both: the `plugin` world runs it).
fn scoped_imports(engine: &Engine, component: &Component) -> Option<Capabilities> {
    let mut caps = Capabilities::default();
    let mut scoped = false;
    for (name, _) in component.component_type().imports(engine) {
        let Some(rest) = name.strip_prefix("manifold:plugin/") else {
            continue;
        };
        let interface = rest.split('@').next().unwrap_or(rest);
        if interface == "host" {
            return None;
        }
        // `types` and anything else of the package grant nothing
        scoped |= caps.grant(interface);
    }
    scoped.then_some(caps)
}
