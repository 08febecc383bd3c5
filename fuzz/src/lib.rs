//! What the fuzz targets share: a catalog of fake creatives, the edit plans a plugin could
//! return, and one runtime to drive the async SSAI steps. The targets run the same path the
//! proxy does for a personalized manifest (parse → plugin plan checked by `apply` → propose →
//! record → render → serialize), with plans that exercise every edit kind.

use manifold_ssai::synthetic::Synthetic;
use manifold_ssai::types::{Ad, AdBreak, Edit, Fill, Insert, Tag, UriRewrite};
use std::sync::OnceLock;

/// An ad creative's MPD as the origin simulator serves it (10 s, CMAF, 3 renditions).
const CREATIVE_MPD: &str = include_str!("../seeds/dash/sim-40-ads-ad10-dash-manifest.mpd");

/// Synthetic creatives (`ad10` lasts 10 s in 2 s segments), DASH ones shaped like the
/// simulator's creative.
pub fn catalog() -> &'static Synthetic {
    static C: OnceLock<Synthetic> = OnceLock::new();
    C.get_or_init(|| {
        let mut mpd = dash_mpd_core::parse(CREATIVE_MPD).expect("the creative MPD parses");
        Synthetic {
            period: Some(mpd.periods.remove(0)),
            ..Synthetic::default()
        }
    })
}

/// One runtime per fuzzing thread (building one per input would dominate the time).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime");
    }
    RT.with(|rt| rt.block_on(f))
}

fn pod(secs: f64) -> Vec<Ad> {
    vec![
        Ad {
            id: "a".into(),
            creative: "ad10".into(),
            duration: secs,
        },
        Ad {
            id: "b".into(),
            creative: "ad5".into(),
            duration: 5.0,
        },
    ]
}

/// Plans for a media playlist or MPD, chosen by `pick`: every break filled plus a pre-roll
/// (and VOD mid-rolls), or tags and URI rewrites, or an empty plan (the session path alone).
pub fn media_edits(pick: u8, breaks: &[AdBreak], segments: usize, vod: bool) -> Vec<Edit> {
    let mut e = Vec::new();
    match pick % 3 {
        0 => {
            e.extend(breaks.iter().map(|b| {
                Edit::FillBreak(Fill {
                    break_id: b.id.clone(),
                    pod: pod(10.0),
                })
            }));
            e.push(Edit::Preroll(pod(4.0)));
            if vod {
                for at in [0.0, 6.0, 1e9] {
                    e.push(Edit::InsertPod(Insert { at, pod: pod(10.0) }));
                }
            }
        }
        1 => {
            for i in [0, segments / 2, segments.saturating_sub(1)] {
                if i < segments {
                    e.push(Edit::AddTag(Tag {
                        before_segment: i as u32,
                        line: "#EXT-X-FUZZ:A=1".into(),
                    }));
                    e.push(Edit::RewriteUri(UriRewrite {
                        index: i as u32,
                        uri: format!("https://cdn.example/{i}.ts"),
                    }));
                }
            }
            if let Some(b) = breaks.first() {
                e.push(Edit::FillBreak(Fill {
                    break_id: b.id.clone(),
                    pod: pod(30.0),
                }));
            }
        }
        _ => {}
    }
    e
}

/// The input's last byte picks the plan, so libFuzzer can steer it; manifests as seeds work
/// unchanged (their last byte is a newline or `>`).
pub fn pick(data: &[u8]) -> u8 {
    data.last().copied().unwrap_or(0)
}

/// Tenant stitching policies, chosen by `pick` (so every combination gets fuzzed).
pub fn policies(pick: u8) -> manifold_ssai::ssai::Policies {
    use manifold_ssai::pods::Overlong;
    use manifold_ssai::ssai::JoinPolicy;
    use manifold_ssai::stitch::Markers;
    manifold_ssai::ssai::Policies {
        markers: if pick & 4 == 0 {
            Markers::Pass
        } else {
            Markers::Strip
        },
        join: if pick & 8 == 0 {
            JoinPolicy::Ads
        } else {
            JoinPolicy::Content
        },
        overlong: if pick & 16 == 0 {
            Overlong::Drop
        } else {
            Overlong::Cut
        },
        tracking: pick & 32 != 0,
    }
}
