//! Property tests for LL-HLS: over reloads of the simulator's low-latency channel at part-like
//! intervals, with random break schedules, a stitched session's playlists keep the HLS
//! invariants, its parts only ever append, every part is listed before its segment (none
//! before an ad segment), and its video and audio stay cut the same.

mod common;

use common::{check_reload, schedule};
use m3u8_rs::MediaPlaylist;
use manifold_origin::{ll::Answer, Origin};
use manifold_ssai::apply::MediaPlan;
use manifold_ssai::asked::Class;
use manifold_ssai::creatives::RenditionWant;
use manifold_ssai::ledger::SessionState;
use manifold_ssai::low_latency::Progress;
use manifold_ssai::parse::{parse, Parsed};
use manifold_ssai::pipeline::{self, Context, InMemory};
use manifold_ssai::ssai::Media;
use manifold_ssai::synthetic::{self, pod_for, Synthetic};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const CATALOG: Synthetic = Synthetic {
    segment: 2.0,
    fallback: None,
    by_rendition: true,
    period: None,
};

const PODS: [&[&str]; 4] = [&["ad10"], &["ad4", "ad6"], &["ad6", "ad6", "ad4"], &[]];

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

/// One reload of one rendition for the session: the output text.
async fn reload(
    origin: &Origin,
    at: std::time::SystemTime,
    rendition: &str,
    want: RenditionWant,
    state: &mut SessionState,
) -> String {
    let Answer::Ready(r) = origin.low_latency(rendition, None, at).unwrap() else {
        panic!("{rendition} not ready");
    };
    let (_, parsed) = parse(Class::HlsPlaylist, &r.body);
    let Parsed::HlsMedia { playlist, view } = parsed else {
        panic!("not media")
    };
    let plan = plan_for(&view);
    let media = Media {
        playlist: &playlist,
        view: &view,
        body: &r.body,
    };
    let policies = Default::default();
    let cx = Context {
        creatives: &CATALOG,
        policies: &policies,
        want,
        prefix: "/t/~s",
        now_ms: 0,
    };
    let ledger = InMemory::new(std::mem::take(state));
    let out = pipeline::run_plan(&media, plan, ledger.state(), &ledger, &cx)
        .await
        .unwrap();
    *state = ledger.into_state();
    String::from_utf8(out).unwrap()
}

fn media(text: &str) -> MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => m,
        other => panic!("output does not parse: {other:?}\n{text}"),
    }
}

/// Part URIs by media sequence number.
type Parts = BTreeMap<u64, Vec<String>>;

/// Each output segment's parts (by media sequence number), checking that each part is listed
/// right before its own segment: `{r}/{n}.{k}.m4s` before `{r}/{n}.m4s`, in order, none
/// before an ad.
fn parts_by_msn(text: &str, label: &str) -> Result<Parts, TestCaseError> {
    let mut msn = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let mut out = BTreeMap::new();
    let mut pending: Vec<String> = Vec::new();
    let part_uri = |l: &str| {
        l.split("URI=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_string)
    };
    for l in text.lines() {
        if l.starts_with("#EXT-X-PART:") {
            pending.push(part_uri(l).unwrap_or_default());
        } else if !l.starts_with('#') && !l.is_empty() {
            if !pending.is_empty() {
                let stem = l.trim_end_matches(".m4s");
                prop_assert!(
                    !l.contains("/ads/"),
                    "{}: parts before ad segment {}",
                    label,
                    l
                );
                for (k, p) in pending.iter().enumerate() {
                    prop_assert_eq!(
                        p.clone(),
                        format!("{stem}.{k}.m4s"),
                        "{}: part out of place before {}",
                        label,
                        l
                    );
                }
                out.insert(msn, std::mem::take(&mut pending));
            }
            msn += 1;
        }
    }
    if !pending.is_empty() {
        out.insert(msn, pending);
    }
    Ok(out)
}

async fn run(
    window: u64,
    ad_first: u64,
    ad_every: u64,
    ad_len: u64,
    steps: &[u64],
) -> Result<(), TestCaseError> {
    let media_dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/media"));
    // windows of at least 4 segments: parts are listed for the last 3
    let (origin, mut at) =
        Origin::live_window(media_dir, window.max(4), ad_first, ad_every, ad_len).unwrap();
    let renditions = [
        (
            "v1.m3u8",
            RenditionWant {
                bandwidth: Some(108_947),
                ..Default::default()
            },
        ),
        (
            "a0.m3u8",
            RenditionWant {
                audio_only: true,
                ..Default::default()
            },
        ),
    ];
    let mut state = SessionState::default();
    let mut prev: [Option<(MediaPlaylist, Parts)>; 2] = [None, None];
    let (mut ads, mut parted) = (0, 0);
    for step in steps {
        at += Duration::from_millis(*step);
        let mut progress = Vec::new();
        for (i, (path, want)) in renditions.iter().enumerate() {
            let text = reload(&origin, at, path, *want, &mut state).await;
            let cur = media(&text);
            let parts = parts_by_msn(&text, path)?;
            if let Some((p, p_parts)) = &prev[i] {
                check_reload(p, &cur, path)?;
                // parts only append: what was listed for a segment is a prefix of what is now
                for (n, now) in &parts {
                    if let Some(before) = p_parts.get(n) {
                        prop_assert!(
                            now.starts_with(before),
                            "{}: parts of {} changed: {:?} then {:?}",
                            path,
                            n,
                            before,
                            now
                        );
                    }
                }
            }
            ads += cur
                .segments
                .iter()
                .filter(|s| s.uri.contains("/ads/"))
                .count();
            parted += parts.len();
            let p = Progress::of(text.as_bytes()).expect("can block");
            progress.push((p.end, cur.media_sequence));
            prev[i] = Some((cur, parts));
        }
        prop_assert_eq!(progress[0], progress[1], "video and audio stand apart");
    }
    prop_assert!(ads > 0 || ad_every == 0, "no ads were ever stitched");
    prop_assert!(parted > 0, "no parts were ever listed");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// 600 reloads 100–700 ms apart (players reload about once a part).
    #[test]
    fn stitched_ll_hls_keeps_its_invariants_part_by_part(
        (window, first, every, len) in schedule(),
        steps in proptest::collection::vec(100u64..700, 600),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(run(window, first, every, len, &steps))?;
    }
}
