//! Step 4 of the data path: the tenant's WebAssembly plugin decides, in a sandbox.

pub mod bindings;
pub mod capabilities;
pub mod executor;
pub mod failure;
pub mod host;
pub mod kv;
pub mod loaded;
pub mod loading;
pub mod registry;
pub mod runtime;
pub mod wire;

pub use capabilities::Capabilities;
pub use runtime::{
    CallEnv, EngineOptions, FailureKind, Input, LoadedPlugin, PluginEngine, PluginFailure, Subject,
};
pub use wire::{Cv, Wire};
