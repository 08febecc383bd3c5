//! Plugin host benchmarks (docs/benchmarks.md has the numbers and how they were taken).
//!
//! Needs the sample plugins: `scripts/build-plugins.sh`, then
//! `cargo bench -p manifold --bench plugins`.

use async_trait::async_trait;
use criterion::{criterion_group, criterion_main, Criterion};
use manifold::creatives::{AdMedia, Creatives, Packaging, RenditionWant};
use manifold::ledger::{BreakFacts, BreakRecord, SessionState};
use manifold::parse::{parse, Parsed};
use manifold::pipeline::{self, Context, Format, Ledger};
use manifold::plugin::{Input, PluginEngine, Wire};
use manifold::route::Class;
use manifold::ssai::{Media, Policies};
use manifold::ssai_dash::DashMedia;
use manifold::stitch_dash::DashCreative;
use manifold::types::Edit;
use manifold_origin::Origin;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

mod common;
use common::{engine, env, rss_kib, viewer, wasm};

// as in the manifold binary
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A live media playlist of `window` 2 s segments with breaks, as the origin simulator
/// serves it.
fn live_playlist(window: u64, ad_first: u64, ad_every: u64, ad_len: u64) -> Vec<u8> {
    let (o, now) = origin(window, ad_first, ad_every, ad_len);
    o.resource("/live/hls/v1.m3u8", now)
        .unwrap()
        .unwrap()
        .body
        .to_vec()
}

/// The same channel as LL-HLS (0.5 s parts), 1.2 s into a segment: parts listed for the
/// last three segments and the one being made.
fn ll_playlist(window: u64, ad_first: u64, ad_every: u64, ad_len: u64) -> Vec<u8> {
    let (o, now) = origin(window, ad_first, ad_every, ad_len);
    match o
        .low_latency("v1.m3u8", None, now + Duration::from_millis(1200))
        .unwrap()
    {
        manifold_origin::ll::Answer::Ready(r) => r.body.to_vec(),
        _ => panic!("LL playlist not ready"),
    }
}

/// Ritcher's benchmark shape (issue 15, like for like): 60 segments of 6.006 s from media
/// sequence 1000, no date-times, absolute segment URLs, 3 breaks of 30 s signalled only by
/// `CUE-OUT:30`, `CUE-OUT-CONT:<elapsed>/30` and `CUE-IN`, evenly spread.
fn cue_out_playlist() -> Vec<u8> {
    let mut t = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:1000\n",
    );
    // 5 segments per break (30 s), 45 of content in 4 runs around the 3 breaks
    let (per_break, content_runs) = (5, [12, 11, 11, 11]);
    let mut n = 0;
    let mut seg = |t: &mut String| {
        t.push_str(&format!(
            "#EXTINF:6.006,\nhttps://cdn.example.com/stream/segment_{n}.ts\n"
        ));
        n += 1;
    };
    for (i, run) in content_runs.iter().enumerate() {
        if i > 0 {
            // CUE-IN: the content is back on the first segment after the break
            t.push_str("#EXT-X-CUE-IN\n");
        }
        for _ in 0..*run {
            seg(&mut t);
        }
        if i + 1 < content_runs.len() {
            t.push_str("#EXT-X-CUE-OUT:30\n");
            seg(&mut t);
            for k in 1..per_break {
                t.push_str(&format!("#EXT-X-CUE-OUT-CONT:{}/30\n", k * 6));
                seg(&mut t);
            }
        }
    }
    assert_eq!(n, 60);
    t.into_bytes()
}

/// Creatives already resolved (what the catalog's cache holds after the first request):
/// HLS media of the ad and the slate, and the DASH creative.
struct Resolved(Arc<AdMedia>, Arc<AdMedia>, Arc<DashCreative>);

#[async_trait]
impl Creatives for Resolved {
    async fn media(
        &self,
        c: &str,
        _p: Packaging,
        _w: RenditionWant,
    ) -> Result<Arc<AdMedia>, String> {
        Ok(if c == "slate" {
            self.1.clone()
        } else {
            self.0.clone()
        })
    }
    fn slate(&self) -> Option<&str> {
        Some("slate")
    }
    async fn dash(&self, _c: &str) -> Result<Arc<DashCreative>, String> {
        Ok(self.2.clone())
    }
}

fn origin(window: u64, ad_first: u64, ad_every: u64, ad_len: u64) -> (Origin, SystemTime) {
    let media = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/media"));
    Origin::live_window(media, window, ad_first, ad_every, ad_len).unwrap()
}

fn resolved() -> Resolved {
    let seg = |name: &str, n: usize, d: f64| {
        Arc::new(AdMedia {
            segments: (0..n)
                .map(|i| (format!("/t/ads/{name}/hls/v1/{i}.ts"), d))
                .collect(),
            map: None,
        })
    };
    let (o, now) = origin(10, 0, 0, 0);
    let mpd = o
        .resource("/ads/ad10/dash/manifest.mpd", now)
        .unwrap()
        .unwrap()
        .body;
    let mpd = dash_mpd_core::parse(std::str::from_utf8(&mpd).unwrap()).unwrap();
    let dash = Arc::new(DashCreative {
        base: "/t/~session/ads/ad10/dash/".into(),
        period: mpd.periods[0].clone(),
    });
    Resolved(seg("ad10", 5, 2.0), seg("slate", 10, 1.0), dash)
}

/// The per-request part for a live MPD: plugin call, plan check, the session's pods (recorded
/// on the first call) stitched as periods, serialized.
async fn personalize_dash(
    engine: &PluginEngine,
    plugin: &manifold::plugin::LoadedPlugin,
    mpd: &dash_mpd_core::MPD,
    view: &manifold::types::DashMpd,
    wire: &Wire,
    creatives: &Resolved,
) -> usize {
    let edits = engine
        .call(plugin, wire.input(), &viewer(), "pod=ad10", &env(), None)
        .await
        .unwrap();
    let out = run_session(&DashMedia { mpd, view }, &edits, creatives).await;
    out.to_string().len()
}

/// parse → view → plugin (fresh instance) → apply → serialize.
async fn pipeline(
    engine: &PluginEngine,
    plugin: &manifold::plugin::LoadedPlugin,
    body: &[u8],
    config: &str,
    creatives: &Resolved,
) -> usize {
    let (_, parsed) = parse(Class::HlsPlaylist, body);
    let Parsed::HlsMedia { playlist, view } = parsed else {
        panic!("not media")
    };
    // the plugin's copy of the view: made on the first call, cached with the manifest
    let wire = Wire::hls_media(&view.view, view.edge.as_ref());
    let media = Media {
        playlist: &playlist,
        view: &view,
        body,
    };
    personalize(engine, plugin, &media, &wire, config, creatives).await
}

/// The per-request part: the parse and view are cached with the origin manifest; the session
/// already recorded the break (as on every reload after the first), so this is plugin call,
/// plan check, session bookkeeping and stitching.
async fn personalize(
    engine: &PluginEngine,
    plugin: &manifold::plugin::LoadedPlugin,
    media: &Media<'_>,
    wire: &Wire,
    config: &str,
    creatives: &Resolved,
) -> usize {
    let edits = engine
        .call(plugin, wire.input(), &viewer(), config, &env(), None)
        .await
        .unwrap();
    let out = run_session(media, &edits, creatives).await;
    out.len()
}

/// The pipeline for the benchmark's one session: the first call records its breaks, later
/// ones reuse them (as every reload after the first does).
async fn run_session<F: Format>(format: &F, edits: &[Edit], creatives: &Resolved) -> F::Out {
    let policies = Policies::default();
    let cx = Context {
        creatives,
        policies: &policies,
        want: RenditionWant::default(),
        prefix: "/t/~s",
        now_ms: 0,
    };
    let state = SESSION.with(|s| s.borrow().clone());
    pipeline::run(format, edits, state, &BenchSession, &cx)
        .await
        .unwrap()
}

/// The benchmark's session ledger: the first iteration records the breaks, later ones read
/// them back (facts are learned again each time, as before a session store round trip).
struct BenchSession;

#[async_trait]
impl Ledger for BenchSession {
    async fn record(&self, p: &[(String, BreakRecord)]) -> Result<Vec<BreakRecord>, String> {
        SESSION.with(|s| {
            let mut s = s.borrow_mut();
            let standing = p.iter().map(|(id, r)| {
                s.breaks
                    .entry(id.clone())
                    .or_insert_with(|| r.clone())
                    .clone()
            });
            Ok(standing.collect())
        })
    }
    async fn learn(&self, _id: &str, _f: &BreakFacts) -> Result<(), String> {
        Ok(())
    }
}

struct HeldMaster(Wire);
impl manifold::plugin::Subject for HeldMaster {
    fn input(&self) -> Option<Input<'_>> {
        Some(self.0.input())
    }
}

thread_local! {
    /// The benchmark's one session (first call records the break, later ones reuse it).
    static SESSION: std::cell::RefCell<SessionState> = std::cell::RefCell::new(SessionState::default());
}

fn benches(c: &mut Criterion) {
    // Long on purpose: one criterion group per measured path, each set up beside its measurement.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = std::sync::Arc::new(engine(dir.path()));
    let noop = e.load(&wasm("misbehave")).unwrap();
    let breaks = e.load(&wasm("scte35_breaks")).unwrap();
    let master = parse(
        Class::HlsPlaylist,
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../samples/manifests/hls-master.m3u8"
        ))
        .unwrap(),
    )
    .1;
    let Parsed::HlsMaster {
        view: master_view, ..
    } = master
    else {
        panic!()
    };

    let master_wire = Wire::hls_master(&master_view);
    c.bench_function("plugin/instantiate+noop call", |b| {
        b.to_async(&rt).iter(|| async {
            e.call(
                &noop,
                master_wire.input(),
                &viewer(),
                "mode=noop",
                &env(),
                None,
            )
            .await
            .unwrap()
        })
    });

    // the proxy's path: the same call handed to the plugin runtime and awaited from this one
    let held = std::sync::Arc::new(HeldMaster(master_wire.clone()));
    let config: std::sync::Arc<str> = "mode=noop".into();
    let who = std::sync::Arc::new(viewer());
    c.bench_function("plugin/instantiate+noop call, on the plugin runtime", |b| {
        b.to_async(&rt).iter(|| async {
            e.call_isolated(
                &noop,
                held.clone(),
                who.clone(),
                config.clone(),
                env(),
                None,
            )
            .await
            .unwrap()
        })
    });

    let creatives = resolved();
    let p300 = live_playlist(300, 200, 3000, 30);
    let p60 = live_playlist(60, 20, 40, 10);
    let (_, parsed300) = parse(Class::HlsPlaylist, &p300);
    let Parsed::HlsMedia {
        playlist: pl300,
        view: v300,
    } = parsed300
    else {
        panic!()
    };
    assert_eq!(v300.view.segments.len(), 300);
    assert_eq!(v300.view.breaks.len(), 1);
    let (_, parsed60) = parse(Class::HlsPlaylist, &p60);
    let Parsed::HlsMedia {
        playlist: pl60,
        view: v60,
    } = parsed60
    else {
        panic!()
    };
    assert_eq!(v60.view.breaks.len(), 3, "{:?}", v60.view.breaks);
    let (w300, w60) = (
        Wire::hls_media(&v300.view, None),
        Wire::hls_media(&v60.view, None),
    );
    let m300 = Media {
        playlist: &pl300,
        view: &v300,
        body: &p300,
    };
    let m60 = Media {
        playlist: &pl60,
        view: &v60,
        body: &p60,
    };

    c.bench_function(
        "pipeline/300 segments, 1 break: parse+plugin+apply+serialize",
        |b| {
            b.to_async(&rt)
                .iter(|| pipeline(&e, &breaks, &p300, "pod=ad10,ad10,ad10", &creatives))
        },
    );
    c.bench_function(
        "pipeline/300 segments, 1 break: plugin+apply+serialize (parse cached)",
        |b| {
            b.to_async(&rt)
                .iter(|| personalize(&e, &breaks, &m300, &w300, "pod=ad10,ad10,ad10", &creatives))
        },
    );
    SESSION.with(|s| *s.borrow_mut() = SessionState::default());
    c.bench_function(
        "pipeline/60 segments, 3 breaks: parse+plugin+apply+serialize",
        |b| {
            b.to_async(&rt)
                .iter(|| pipeline(&e, &breaks, &p60, "pod=ad10", &creatives))
        },
    );
    c.bench_function(
        "pipeline/60 segments, 3 breaks: plugin+apply+serialize (parse cached)",
        |b| {
            b.to_async(&rt)
                .iter(|| personalize(&e, &breaks, &m60, &w60, "pod=ad10", &creatives))
        },
    );
    // the same manifest and plan for a server-guided session: content kept, the three
    // breaks announced as interstitials (the stitched run above is the baseline)
    SESSION.with(|s| {
        *s.borrow_mut() = SessionState {
            insertion: manifold::ledger::Insertion::Guided,
            ..SessionState::default()
        }
    });
    let guided = rt.block_on(async {
        let edits = e
            .call(&breaks, w60.input(), &viewer(), "pod=ad10", &env(), None)
            .await
            .unwrap();
        run_session(&m60, &edits, &creatives).await
    });
    let announced = String::from_utf8_lossy(&guided)
        .matches("com.apple.hls.interstitial")
        .count();
    assert_eq!(announced, 3, "guided: three interstitials");
    c.bench_function(
        "pipeline/60 segments, 3 breaks, guided: plugin+apply+serialize (parse cached)",
        |b| {
            b.to_async(&rt)
                .iter(|| personalize(&e, &breaks, &m60, &w60, "pod=ad10", &creatives))
        },
    );
    // Ritcher's own input shape: the comparison with its full pipeline, like for like
    SESSION.with(|s| *s.borrow_mut() = SessionState::default());
    let pcue = cue_out_playlist();
    let (_, parsed_cue) = parse(Class::HlsPlaylist, &pcue);
    let Parsed::HlsMedia {
        playlist: plcue,
        view: vcue,
    } = parsed_cue
    else {
        panic!()
    };
    assert_eq!(vcue.view.breaks.len(), 3, "{:?}", vcue.view.breaks);
    let wcue = Wire::hls_media(&vcue.view, None);
    let mcue = Media {
        playlist: &plcue,
        view: &vcue,
        body: &pcue,
    };
    let stitched = rt.block_on(async {
        let edits = e
            .call(&breaks, wcue.input(), &viewer(), "pod=ad10", &env(), None)
            .await
            .unwrap();
        run_session(&mcue, &edits, &creatives).await
    });
    // each 30 s break: the 10 s ad's 5 segments, then slate
    let ad_segments = String::from_utf8_lossy(&stitched)
        .matches("/ads/ad10/")
        .count();
    assert_eq!(ad_segments, 15, "three breaks stitched");
    c.bench_function(
        "pipeline/Ritcher's shape, 60 x 6.006 s, 3 CUE-OUT breaks: parse+plugin+apply+serialize",
        |b| {
            b.to_async(&rt)
                .iter(|| pipeline(&e, &breaks, &pcue, "pod=ad10", &creatives))
        },
    );
    c.bench_function(
        "pipeline/Ritcher's shape, 60 x 6.006 s, 3 CUE-OUT breaks: plugin+apply+serialize (parse cached)",
        |b| {
            b.to_async(&rt)
                .iter(|| personalize(&e, &breaks, &mcue, &wcue, "pod=ad10", &creatives))
        },
    );
    // the same channel as LL-HLS: the parts of the last segments and of the one being made
    // (what each blocking reload of a session personalizes)
    SESSION.with(|s| *s.borrow_mut() = SessionState::default());
    let pll = ll_playlist(60, 20, 40, 10);
    let (_, parsed_ll) = parse(Class::HlsPlaylist, &pll);
    let Parsed::HlsMedia {
        playlist: plll,
        view: vll,
    } = parsed_ll
    else {
        panic!()
    };
    assert_eq!(vll.view.breaks.len(), 3, "{:?}", vll.view.breaks);
    let wll = Wire::hls_media(&vll.view, vll.edge.as_ref());
    let mll = Media {
        playlist: &plll,
        view: &vll,
        body: &pll,
    };
    c.bench_function(
        "pipeline/60 segments, 3 breaks, LL-HLS parts: plugin+apply+serialize (parse cached)",
        |b| {
            b.to_async(&rt)
                .iter(|| personalize(&e, &breaks, &mll, &wll, "pod=ad10", &creatives))
        },
    );
    // live DASH ($Number$), a 10 s break in the window: one ad period
    SESSION.with(|s| *s.borrow_mut() = SessionState::default());
    let (o, now) = origin(10, 10, 60, 10);
    let mpd_text = o
        .resource("/live/dash/manifest.mpd", now)
        .unwrap()
        .unwrap()
        .body;
    let (_, parsed) = parse(Class::DashManifest, &mpd_text);
    let Parsed::Dash { mpd, view, .. } = parsed else {
        panic!()
    };
    assert_eq!(view.breaks.len(), 1, "{:?}", view.breaks);
    let wire = Wire::dash_mpd(&view);
    c.bench_function(
        "pipeline/live MPD, 1 break: plugin+periods+serialize (parse cached)",
        |b| {
            b.to_async(&rt)
                .iter(|| personalize_dash(&e, &breaks, &mpd, &view, &wire, &creatives))
        },
    );
    c.bench_function("pipeline/live MPD, 1 break: including parse", |b| {
        b.to_async(&rt).iter(|| async {
            let (_, parsed) = parse(Class::DashManifest, &mpd_text);
            let Parsed::Dash { mpd, view, .. } = parsed else {
                panic!()
            };
            let wire = Wire::dash_mpd(&view);
            personalize_dash(&e, &breaks, &mpd, &view, &wire, &creatives).await
        })
    });
    // once per origin fetch, on its first plugin call: the core's view in the bindings' types
    c.bench_function(
        "parse/300 segments: the view converted for the plugin",
        |b| b.iter(|| Wire::hls_media(&v300.view, None)),
    );
    c.bench_function("parse/300 segments (m3u8-rs + view)", |b| {
        b.iter(|| parse(Class::HlsPlaylist, &p300))
    });

    // cold load: a fresh engine-side load of a plugin compiled earlier (artifact on disk)
    let filter = wasm("variant_filter");
    let digest = e.load(&filter).unwrap().digest.clone();
    c.bench_function("plugin/cold load from precompiled artifact", |b| {
        b.iter(|| {
            e.forget(&digest);
            let p = e.load(&filter).unwrap();
            assert!(p.from_artifact);
            p
        })
    });
    report_memory(dir.path());
}

/// Resident memory a loaded plugin adds (compiled code and metadata): RSS growth while loading
/// the four sample plugins into a fresh engine from their artifacts, after a warm-up load so
/// the engine's own code is already paged in.
fn report_memory(artifacts: &Path) {
    let e = engine(artifacts);
    let names = ["misbehave", "scte35_breaks", "variant_filter", "preroll"];
    let bytes: Vec<Vec<u8>> = names.iter().map(|n| wasm(n)).collect();
    let warm = e.load(&bytes[0]).unwrap();
    e.forget(&warm.digest);
    drop(warm);
    let before = rss_kib();
    let loaded: Vec<_> = bytes.iter().map(|b| e.load(b).unwrap()).collect();
    let after = rss_kib();
    let artifacts_kib: Vec<u64> = std::fs::read_dir(artifacts)
        .unwrap()
        .filter_map(|f| f.ok()?.metadata().ok())
        .map(|m| m.len() / 1024)
        .collect();
    println!(
        "memory per loaded plugin: {} KiB resident (mean over {} sample plugins: RSS {} -> {} KiB); precompiled artifacts {:?} KiB; measured at unix {}",
        after.saturating_sub(before) / loaded.len() as u64,
        loaded.len(),
        before,
        after,
        artifacts_kib,
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
    );
}

criterion_group! {
    name = plugin_benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(plugin_benches);
