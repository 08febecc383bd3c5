//! What the benchmarks share: the sample plugins, an engine, a viewer, call bounds, RSS.
#![allow(dead_code)] // each bench uses its own subset

use manifold::plugin::bindings::{DeviceClass, Viewer};
use manifold::plugin::{CallEnv, Capabilities, EngineOptions, PluginEngine};
use std::path::Path;
use std::time::Duration;

/// A sample plugin built by `scripts/build-plugins.sh`.
pub fn wasm(name: &str) -> Vec<u8> {
    let p = format!(
        "{}/../target/wasm32-wasip2/release/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}: run scripts/build-plugins.sh"))
}

pub fn engine(dir: &Path) -> PluginEngine {
    engine_holding(dir, 64)
}

/// An engine that keeps up to `loaded` compiled plugins in memory.
pub fn engine_holding(dir: &Path, loaded: u64) -> PluginEngine {
    PluginEngine::new(&EngineOptions {
        artifacts_dir: dir.to_path_buf(),
        max_instances: 64,
        max_memory: 64 << 20,
        loaded_capacity: loaded,
    })
    .unwrap()
}

pub fn viewer() -> Viewer {
    Viewer {
        tenant: "bench".into(),
        session_id: Some("s".into()),
        query: vec![("device".into(), "tv".into())],
        headers: vec![],
        user_agent: Some("Mozilla/5.0 (SMART-TV; Tizen 6.0)".into()),
        device: DeviceClass::Tv,
        client_ip: Some("127.0.0.1".into()),
        country: None,
        cmcd: vec![],
    }
}

pub fn env() -> CallEnv {
    CallEnv {
        tenant: "bench".into(),
        caps: Capabilities::default(),
        kv: None,
        ads: None,
        deadline: Duration::from_millis(100),
        memory: 16 << 20,
        share: std::sync::Arc::new(tokio::sync::Semaphore::new(8)),
        cpu: std::sync::Arc::new(tokio::sync::Semaphore::new(8)),
        demoted: Default::default(),
    }
}

/// Resident memory of this process, KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4)
        .unwrap_or(0)
}
