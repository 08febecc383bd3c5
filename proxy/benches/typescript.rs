//! TypeScript plugins beside Rust ones (issue 14; docs/benchmarks.md has the numbers): a
//! fresh instance + call of `scte35_breaks` in each language on the 300-segment live playlist
//! with one break, on the same without its segments, and on a master (no edits); and the
//! memory a loaded plugin of each adds.
//!
//! `scripts/build-plugins.sh`, then `cargo bench -p manifold --bench typescript`
//! (`TS_BASELINE=old.wasm` adds an earlier build of the TypeScript plugin, as `ts-baseline/`).

use criterion::{criterion_group, criterion_main, Criterion};
use manifold::parse::{parse, Parsed};
use manifold::plugin::Wire;
use manifold::route::Class;
use manifold_origin::Origin;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

mod common;
use common::{engine, env, rss_kib, viewer, wasm};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let media = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/media"));
    let (o, now) = Origin::live_window(media, 300, 200, 3000, 30).unwrap();
    let body = o.resource("/live/hls/v1.m3u8", now).unwrap().unwrap().body;
    let Parsed::HlsMedia { view, .. } = parse(Class::HlsPlaylist, &body).1 else {
        panic!("a media playlist")
    };
    assert_eq!((view.view.segments.len(), view.view.breaks.len()), (300, 1));
    let w300 = Wire::hls_media(&view.view, None);
    // the same playlist without its segments: what lifting 300 segment records costs
    let mut bare = view.view.clone();
    bare.segments.clear();
    let w0 = Wire::hls_media(&bare, None);
    let master_body = o
        .resource("/live/hls/master.m3u8", now)
        .unwrap()
        .unwrap()
        .body;
    let Parsed::HlsMaster { view: master, .. } = parse(Class::HlsPlaylist, &master_body).1 else {
        panic!("a master playlist")
    };
    let wm = Wire::hls_master(&master);
    let mut plugins = vec![
        ("rust", wasm("scte35_breaks")),
        ("ts", wasm("scte35_breaks_ts")),
    ];
    // an earlier build of the TypeScript plugin, measured in the same run (an A/B)
    if let Ok(path) = std::env::var("TS_BASELINE") {
        plugins.push(("ts-baseline", std::fs::read(path).unwrap()));
    }
    for (lang, bytes) in plugins {
        let p = e.load(&bytes).unwrap();
        // the same plan in both languages
        let plan = rt
            .block_on(e.call(
                &p,
                w300.input(),
                &viewer(),
                "pod=ad10,ad10,ad10",
                &env(),
                None,
            ))
            .unwrap();
        assert_eq!(plan.len(), 1, "{lang}: {plan:?}");
        c.bench_function(
            &format!("{lang}/instantiate+call scte35-breaks, 300 segments 1 break"),
            |b| {
                b.to_async(&rt).iter(|| async {
                    e.call(
                        &p,
                        w300.input(),
                        &viewer(),
                        "pod=ad10,ad10,ad10",
                        &env(),
                        None,
                    )
                    .await
                    .unwrap()
                })
            },
        );
        c.bench_function(
            &format!("{lang}/instantiate+call scte35-breaks, the same without its segments"),
            |b| {
                b.to_async(&rt).iter(|| async {
                    e.call(
                        &p,
                        w0.input(),
                        &viewer(),
                        "pod=ad10,ad10,ad10",
                        &env(),
                        None,
                    )
                    .await
                    .unwrap()
                })
            },
        );
        c.bench_function(
            &format!("{lang}/instantiate+call scte35-breaks, master (no edits)"),
            |b| {
                b.to_async(&rt).iter(|| async {
                    e.call(&p, wm.input(), &viewer(), "", &env(), None)
                        .await
                        .unwrap()
                })
            },
        );
    }
    report_memory(dir.path());
}

/// Resident memory a loaded plugin adds in each language: RSS growth while four plugins load
/// into a fresh engine from their compiled artifacts, then after one call each (the code pages
/// a call faults in, and the pool slot's pages).
fn report_memory(artifacts: &std::path::Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (lang, names) in [
        (
            "rust",
            ["scte35_breaks", "variant_filter", "preroll", "misbehave"],
        ),
        (
            "ts",
            [
                "scte35_breaks_ts",
                "variant_filter_ts",
                "preroll_ts",
                "probe_ts",
            ],
        ),
    ] {
        let bytes: Vec<Vec<u8>> = names.iter().map(|n| wasm(n)).collect();
        // Compile every artifact first, in an engine that is then dropped: what is measured is
        // loading a deployed plugin, not the compiler's working memory (which, counted in, made
        // an earlier figure 32 MiB).
        {
            let warm = engine(artifacts);
            for b in &bytes {
                warm.load(b).unwrap();
            }
        }
        let e = engine(artifacts);
        let before = rss_kib();
        let loaded: Vec<_> = bytes.iter().map(|b| e.load(b).unwrap()).collect();
        let after_load = rss_kib();
        let master = manifold::plugin::bindings::HlsMaster {
            variants: vec![],
            renditions: vec![],
        };
        for p in &loaded {
            let _ = rt.block_on(e.call(
                p,
                manifold::plugin::Input::HlsMaster(&master),
                &viewer(),
                "",
                &env(),
                None,
            ));
        }
        let after_call = rss_kib();
        let n = loaded.len() as u64;
        println!(
            "{lang}: memory per loaded plugin {} KiB resident, {} KiB after a call each (RSS {before} -> {after_load} -> {after_call} KiB over {n}); components {:?} KiB; measured at unix {}",
            after_load.saturating_sub(before) / n,
            after_call.saturating_sub(before) / n,
            bytes.iter().map(|b| b.len() / 1024).collect::<Vec<_>>(),
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
        );
    }
}

criterion_group! {
    name = typescript_benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(typescript_benches);
