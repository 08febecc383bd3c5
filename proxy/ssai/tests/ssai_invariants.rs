//! Property tests: over long sequences of reloads of the origin simulator's live channel with
//! random break schedules, every rendition of a session keeps the HLS invariants.

mod common;

use common::{check_reload, schedule};
use m3u8_rs::MediaPlaylist;
use manifold_origin::Origin;
use manifold_ssai::apply::MediaPlan;
use manifold_ssai::asked::Class;
use manifold_ssai::creatives::RenditionWant;
use manifold_ssai::ledger::SessionState;
use manifold_ssai::parse::{parse, Parsed};
use manifold_ssai::pipeline::{self, Context, InMemory};
use manifold_ssai::ssai::{Media, Policies};
use manifold_ssai::synthetic::{self, pod_for, Synthetic};
use proptest::prelude::*;
use std::path::PathBuf;
use std::time::Duration;

/// Creatives like the sample ones: `adN` lasts N s in 2 s segments (the last one shorter),
/// the slate is 1 s segments; every rendition has the same timing.
const CATALOG: Synthetic = Synthetic {
    segment: 2.0,
    fallback: None,
    by_rendition: true,
    period: None,
};

const PODS: [&[&str]; 5] = [
    &["ad10"],
    &["ad4", "ad6"],
    &["ad14"],
    &["ad6", "ad6", "ad4"],
    &[],
];

/// The plugin: every break filled with a pod chosen by its id (empty: not filled).
fn plan_for(view: &manifold_ssai::view::HlsMediaView) -> MediaPlan {
    let n = view.view.segments.len();
    MediaPlan {
        fills: view
            .spans
            .iter()
            .filter_map(|s| {
                let pod = pod_for(&s.id, &PODS);
                (!pod.is_empty()).then(|| (s.id.clone(), synthetic::pod(pod)))
            })
            .collect(),
        tags: vec![Vec::new(); n],
        uris: vec![None; n],
        ..Default::default()
    }
}

struct Rendition {
    path: &'static str,
    want: RenditionWant,
}

/// One reload of one rendition, the way the proxy does it for a session.
async fn reload(
    origin: &Origin,
    at: std::time::SystemTime,
    r: &Rendition,
    state: &mut SessionState,
    render: Render,
) -> MediaPlaylist {
    let fetched = origin.resource(r.path, at).unwrap().unwrap().body;
    let (_, parsed) = parse(Class::HlsPlaylist, &fetched);
    // without the origin's text the stitcher renders through m3u8-rs
    let body = match render {
        Render::Text => fetched,
        Render::M3u8 => Default::default(),
    };
    let Parsed::HlsMedia { playlist, view } = parsed else {
        panic!("not media")
    };
    let plan = plan_for(&view);
    let media = Media {
        playlist: &playlist,
        view: &view,
        body: &body,
    };
    let policies = Policies::default();
    let cx = Context {
        creatives: &CATALOG,
        policies: &policies,
        want: r.want,
        prefix: "/t/~s",
        now_ms: 0,
    };
    // the session's ledger: first writer wins, as in the proxy's stores
    let ledger = InMemory::new(std::mem::take(state));
    let out = pipeline::run_plan(&media, plan, ledger.state(), &ledger, &cx)
        .await
        .unwrap();
    *state = ledger.into_state();
    match m3u8_rs::parse_playlist_res(&out) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => m,
        other => panic!(
            "output does not parse: {other:?}\n{}",
            String::from_utf8_lossy(&out)
        ),
    }
}

/// How the stitcher writes the playlist: splicing the origin's text, or through m3u8-rs.
#[derive(Clone, Copy)]
enum Render {
    Text,
    M3u8,
}

/// A player joining at any window has an init segment for every segment: the first one and
/// each after a discontinuity name theirs.
fn inits_in_force(m: &MediaPlaylist, path: &str) -> Result<(), TestCaseError> {
    let first = m.segments.first();
    prop_assert!(
        first.is_none_or(|s| s.map.is_some()),
        "{}: no EXT-X-MAP before the first segment {}",
        path,
        first.map(|s| s.uri.clone()).unwrap_or_default()
    );
    for s in m.segments.iter().filter(|s| s.discontinuity) {
        prop_assert!(
            s.map.is_some(),
            "{}: no EXT-X-MAP after a discontinuity at {}",
            path,
            s.uri.clone()
        );
    }
    Ok(())
}

/// Timing and discontinuities, to 0.1 s: demuxed audio segments are a few ms longer.
fn shape(m: &MediaPlaylist) -> Vec<(u32, bool)> {
    m.segments
        .iter()
        .map(|s| ((s.duration * 10.0).round() as u32, s.discontinuity))
        .collect()
}

async fn run(
    window: u64,
    ad_first: u64,
    ad_every: u64,
    ad_len: u64,
    steps: &[u64],
    renditions: &[Rendition],
) -> Result<(), TestCaseError> {
    let media = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/media"));
    let (origin, mut at) = Origin::live_window(media, window, ad_first, ad_every, ad_len).unwrap();
    let mut state = SessionState::default();
    let mut prev: Vec<Option<MediaPlaylist>> = renditions.iter().map(|_| None).collect();
    let mut filled = 0;
    for step in steps {
        at += Duration::from_millis(*step);
        let mut outs = Vec::new();
        for (i, r) in renditions.iter().enumerate() {
            let cur = reload(&origin, at, r, &mut state, Render::Text).await;
            if let Some(p) = &prev[i] {
                check_reload(p, &cur, r.path)?;
            }
            if r.path.contains("cmaf") {
                let alt = reload(&origin, at, r, &mut state, Render::M3u8).await;
                inits_in_force(&cur, r.path)?;
                inits_in_force(&alt, r.path)?;
            }
            filled += cur
                .segments
                .iter()
                .filter(|s| s.uri.contains("/ads/"))
                .count();
            outs.push(cur.clone());
            prev[i] = Some(cur);
        }
        // every rendition of the session: same numbering, timing and discontinuities
        for o in &outs[1..] {
            prop_assert_eq!(o.media_sequence, outs[0].media_sequence);
            prop_assert_eq!(o.discontinuity_sequence, outs[0].discontinuity_sequence);
            prop_assert_eq!(shape(o), shape(&outs[0]));
        }
    }
    prop_assert!(filled > 0 || ad_every == 0, "no ads were ever stitched");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// TS variants (with loop discontinuities, sometimes inside breaks), 1000 reloads at
    /// player-like intervals (1–3 s).
    #[test]
    fn ts_variants_keep_hls_invariants_over_1000_reloads(
        (window, first, every, len) in schedule(),
        steps in proptest::collection::vec(1000u64..3000, 1000),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(run(window, first, every, len, &steps, &[
            Rendition { path: "/live/hls/v0.m3u8", want: RenditionWant { bandwidth: Some(94_000), ..Default::default() } },
            Rendition { path: "/live/hls/v2.m3u8", want: RenditionWant { bandwidth: Some(173_712), ..Default::default() } },
        ]))?;
    }

    /// CMAF: video and its demuxed audio stay aligned, init segments re-emitted.
    #[test]
    fn cmaf_video_and_audio_stay_aligned(
        (window, first, every, len) in schedule(),
        steps in proptest::collection::vec(1000u64..3000, 400),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(run(window, first, every, len, &steps, &[
            Rendition { path: "/live/cmaf/v1.m3u8", want: RenditionWant { bandwidth: Some(108_947), ..Default::default() } },
            Rendition { path: "/live/cmaf/a0.m3u8", want: RenditionWant { audio_only: true, ..Default::default() } },
        ]))?;
    }
}
