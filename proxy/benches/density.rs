//! Density (issue 15): 1,000 tenants' distinct plugins loaded in one engine. What resident
//! memory they take, where it goes, and how long a plugin that was dropped from memory takes
//! to come back (load from its precompiled artifact + first call).
//!
//! `cargo bench -p manifold --bench density` (`DENSITY_PLUGINS=N` for another count).
//!
//! The plugins are `scte35_breaks` with a custom section naming the tenant: 1,000 distinct
//! components, digests and artifacts. Their artifacts are made from one compile (compiling
//! 1,000 identical-code components would take ~30 minutes here and give the same bytes), so
//! what is measured is loading and holding them, which is what a node does at start-up and
//! when a tenant comes back.

use criterion::{criterion_group, criterion_main, Criterion};
use manifold::parse::{parse, Parsed};
use manifold::plugin::{PluginEngine, Wire};
use manifold::route::Class;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
use common::{engine_holding, env, rss_kib, viewer, wasm};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The component with a custom section (id 0) appended, which the component model allows
/// anywhere: other bytes, the same code.
fn distinct(base: &[u8], tenant: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let name = b"manifold-tenant";
    let payload = format!("tenant-{tenant:05}");
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(payload.as_bytes());
    let mut out = base.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// Gives every component the artifact compiled for the first (same code, its own file).
fn artifacts_for(dir: &Path, first: &str, components: &[Vec<u8>]) {
    let hex = first.trim_start_matches("sha256:");
    let made: PathBuf = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|f| Some(f.ok()?.path()))
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(hex))
        .expect("the first artifact");
    let suffix = made.file_name().unwrap().to_string_lossy()[hex.len()..].to_string();
    for c in components.iter().skip(1) {
        let d = PluginEngine::digest(c);
        let to = dir.join(format!("{}{suffix}", d.trim_start_matches("sha256:")));
        std::fs::copy(&made, to).unwrap();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn density(c: &mut Criterion) {
    let n: usize = std::env::var("DENSITY_PLUGINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = engine_holding(dir.path(), n as u64 + 16);
    let base = wasm("scte35_breaks");
    let components: Vec<Vec<u8>> = (0..n).map(|i| distinct(&base, i)).collect();
    let master = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../samples/manifests/hls-master.m3u8"
    ))
    .unwrap();
    let Parsed::HlsMaster { view, .. } = parse(Class::HlsPlaylist, &master).1 else {
        panic!("master")
    };
    let wire = Wire::hls_master(&view);
    let call = |p: &manifold::plugin::LoadedPlugin| {
        rt.block_on(e.call(p, wire.input(), &viewer(), "", &env(), None))
            .unwrap()
    };

    // one compile, then the engine's own code and first-call paths paged in
    let t = Instant::now();
    let first = e.load(&components[0]).unwrap();
    let compile = t.elapsed();
    call(&first);
    artifacts_for(dir.path(), &first.digest, &components);
    let artifact_kib = std::fs::metadata(
        std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap()
    .len()
        / 1024;
    e.forget(&first.digest);
    drop(first);

    // every tenant's plugin loaded from its artifact
    let before = rss_kib();
    let mut loads = Vec::with_capacity(n);
    let mut loaded = Vec::with_capacity(n);
    for c in &components {
        let t = Instant::now();
        let p = e.load(c).unwrap();
        loads.push(t.elapsed());
        assert!(p.from_artifact || loaded.is_empty());
        loaded.push(p);
    }
    let after_load = rss_kib();
    // and each called once (instances come from the shared pool: not per plugin)
    for p in &loaded {
        call(p);
    }
    let after_calls = rss_kib();
    loads.sort();

    // a tenant that comes back after its plugin left memory: load from artifact + call
    let mut cold = Vec::new();
    for p in loaded.iter().step_by((n / 200).max(1)) {
        e.forget(&p.digest);
    }
    for (i, c) in components.iter().enumerate().step_by((n / 200).max(1)) {
        let t = Instant::now();
        let p = e.load(c).unwrap();
        call(&p);
        cold.push(t.elapsed());
        loaded[i] = p;
    }
    cold.sort();
    let per = |kib: u64| kib as f64 / n as f64;
    println!(
        "density: {n} distinct plugins (scte35_breaks + a tenant section), artifact {artifact_kib} KiB, one compile {:.0} ms\n\
         \x20 RSS before {} MiB, after loading all {} MiB (+{:.0} KiB per plugin), after one call each {} MiB (+{:.0} KiB per plugin)\n\
         \x20 load from artifact p50 {:?} p99 {:?}; cold start (load + first call) of {} plugins p50 {:?} p99 {:?} max {:?}",
        compile.as_secs_f64() * 1e3,
        before / 1024,
        after_load / 1024,
        per(after_load.saturating_sub(before)),
        after_calls / 1024,
        per(after_calls.saturating_sub(before)),
        percentile(&loads, 0.5),
        percentile(&loads, 0.99),
        cold.len(),
        percentile(&cold, 0.5),
        percentile(&cold, 0.99),
        cold.last().unwrap(),
    );

    // criterion's figure for the same cold start, round-robin over the tenants
    let digests: Vec<String> = components.iter().map(|c| PluginEngine::digest(c)).collect();
    let mut next = 0usize;
    c.bench_function(
        &format!("plugin/cold start among {n} loaded: load from artifact + first call"),
        |b| {
            b.iter(|| {
                let i = next % n;
                next += 1;
                e.forget(&digests[i]);
                let p = e.load(&components[i]).unwrap();
                call(&p);
            })
        },
    );
    drop(loaded);
}

criterion_group! {
    name = density_benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = density
}
criterion_main!(density_benches);
