//! Bad input never panics: origin manifests mangled at random (lines dropped, duplicated,
//! swapped, truncated, garbage SCTE-35 and attribute values) go through parse, the views and
//! the whole SSAI path (propose, observe, render) for HLS and DASH. Whatever the origin sends,
//! the result is a manifest or an error, never a crash.

use manifold_origin::{Origin, OriginOptions};
use manifold_ssai::apply;
use manifold_ssai::asked::Class;
use manifold_ssai::creatives::RenditionWant;
use manifold_ssai::ledger::{Insertion, SessionState};
use manifold_ssai::parse::{parse, Parsed};
use manifold_ssai::pipeline::{self, Context, InMemory};
use manifold_ssai::ssai::{self, Media, Policies};
use manifold_ssai::ssai_dash::DashMedia;
use manifold_ssai::synthetic::Synthetic;
use manifold_ssai::types::{Ad, Edit, Fill};
use proptest::prelude::*;
use std::path::PathBuf;
use std::time::Duration;

fn samples() -> (Vec<String>, Vec<String>, dash_mpd_core::Period) {
    let media = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/media"));
    let opts = OriginOptions {
        window: 8,
        elapsed_secs: Some(40),
        ad_first_secs: 26,
        ad_every_secs: 20,
        ad_len_secs: 10,
        ad_announce_secs: 6,
        ..OriginOptions::new(media)
    };
    let o = Origin::new(&opts).unwrap();
    let now = o.schedule().epoch + Duration::from_secs(40);
    let text =
        |p: &str| String::from_utf8(o.resource(p, now).unwrap().unwrap().body.to_vec()).unwrap();
    let hls = [
        "/live/hls/v0.m3u8",
        "/live/cmaf/a0.m3u8",
        "/vod/hls/v1.m3u8",
    ]
    .map(text)
    .to_vec();
    let dash = [
        "/live/dash/manifest.mpd",
        "/live/dash/timeline.mpd",
        "/vod/dash/manifest.mpd",
    ]
    .map(text)
    .to_vec();
    let creative = dash_mpd_core::parse(&text("/ads/ad10/dash/manifest.mpd"))
        .unwrap()
        .periods
        .remove(0);
    (hls, dash, creative)
}

#[derive(Debug, Clone)]
enum Mangle {
    Drop(usize),
    Dup(usize),
    Swap(usize, usize),
    Garbage(usize, String),
    Truncate(usize),
    /// Replace the n-th number in the text.
    Number(usize, String),
}

fn mangle() -> impl Strategy<Value = Mangle> {
    let junk = prop_oneof![
        Just("#EXT-X-CUE-OUT:DURATION=-5".to_string()),
        Just("#EXT-X-CUE-OUT-CONT:ElapsedTime=99,Duration=3".to_string()),
        Just(
            "#EXT-X-DATERANGE:ID=\"x\",START-DATE=\"2026-01-01T00:00:00Z\",SCTE35-OUT=0xFC30FFFF"
                .to_string()
        ),
        Just("#EXT-X-DATERANGE:ID=\"y\",START-DATE=\"bad\",PLANNED-DURATION=NaN".to_string()),
        Just("#EXT-X-DISCONTINUITY".to_string()),
        Just("#EXTINF:1e308,".to_string()),
        Just(
            "<Event presentationTime=\"18446744073709551615\" duration=\"1\" id=\"z\"/>"
                .to_string()
        ),
        Just("<S t=\"0\" d=\"0\" r=\"-1\"/>".to_string()),
        "[ -~]{0,40}",
    ];
    prop_oneof![
        (0usize..200).prop_map(Mangle::Drop),
        (0usize..200).prop_map(Mangle::Dup),
        (0usize..200, 0usize..200).prop_map(|(a, b)| Mangle::Swap(a, b)),
        (0usize..200, junk).prop_map(|(i, g)| Mangle::Garbage(i, g)),
        (0usize..20_000).prop_map(Mangle::Truncate),
        (
            0usize..400,
            prop_oneof![
                Just("0".to_string()),
                Just("-1".to_string()),
                Just("99999999999999999999".to_string()),
                Just("1.5".to_string())
            ]
        )
            .prop_map(|(i, n)| Mangle::Number(i, n)),
    ]
}

fn apply_mangles(text: &str, ms: &[Mangle]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in ms {
        let n = lines.len().max(1);
        match m {
            Mangle::Drop(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Mangle::Dup(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mangle::Swap(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Mangle::Garbage(i, g) => lines.insert(i % n, g.clone()),
            Mangle::Truncate(at) => {
                let mut t = lines.join("\n");
                let cut = (at % t.len().max(1)).min(t.len());
                let cut = (0..=cut)
                    .rev()
                    .find(|c| t.is_char_boundary(*c))
                    .unwrap_or(0);
                t.truncate(cut);
                lines = t.lines().map(str::to_string).collect();
            }
            Mangle::Number(k, v) => {
                let t = lines.join("\n");
                let mut count = 0;
                let mut out = String::with_capacity(t.len());
                let mut chars = t.chars().peekable();
                while let Some(c) = chars.next() {
                    if c.is_ascii_digit() {
                        let mut num = c.to_string();
                        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                            num.push(*d);
                            chars.next();
                        }
                        out.push_str(if count == *k { v } else { &num });
                        count += 1;
                    } else {
                        out.push(c);
                    }
                }
                lines = out.lines().map(str::to_string).collect();
            }
            _ => {}
        }
    }
    lines.join("\n") + "\n"
}

/// What a plugin would ask: every break filled, a pre-roll, a VOD mid-roll.
fn edits(breaks: &[manifold_ssai::types::AdBreak], vod: bool) -> Vec<Edit> {
    let pod = || {
        vec![Ad {
            id: "a".into(),
            creative: "ad10".into(),
            duration: 10.0,
        }]
    };
    let mut e: Vec<Edit> = breaks
        .iter()
        .map(|b| {
            Edit::FillBreak(Fill {
                break_id: b.id.clone(),
                pod: pod(),
            })
        })
        .collect();
    e.push(Edit::Preroll(pod()));
    if vod {
        e.push(Edit::InsertPod(manifold_ssai::types::Insert {
            at: 6.0,
            pod: pod(),
        }));
    }
    e
}

async fn run(text: &str, class: Class, creative: &dash_mpd_core::Period) {
    let (_, parsed) = parse(class, text.as_bytes());
    let catalog = Synthetic {
        period: Some(creative.clone()),
        ..Synthetic::default()
    };
    let policies = Policies::default();
    let cx = Context {
        creatives: &catalog,
        policies: &policies,
        want: RenditionWant::default(),
        prefix: "/t/~s",
        now_ms: 0,
    };
    // stitched and server-guided sessions, each twice: the second pass sees the first
    // one's records, as a reload does
    for insertion in [Insertion::Stitched, Insertion::Guided] {
        let ledger = InMemory::new(SessionState {
            insertion,
            ..SessionState::default()
        });
        for _ in 0..2 {
            pass(&parsed, text, &ledger, &cx).await;
        }
    }
}

/// One request of a session: its manifest, run through the pipeline, must serve.
async fn pass(parsed: &Parsed, text: &str, ledger: &InMemory, cx: &Context<'_>) {
    match parsed {
        Parsed::HlsMedia { playlist, view } => {
            let media = Media {
                playlist,
                view,
                body: text.as_bytes(),
            };
            let edits = edits(&view.view.breaks, !view.view.live);
            if let Ok(out) = pipeline::run(&media, &edits, ledger.state(), ledger, cx).await {
                // what the host serves parses again
                assert!(
                    m3u8_rs::parse_playlist_res(&out).is_ok(),
                    "{}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
        Parsed::Dash { mpd, view, .. } => {
            let media = DashMedia { mpd, view };
            let edits = edits(&view.breaks, !view.dynamic);
            if let Ok(out) = pipeline::run(&media, &edits, ledger.state(), ledger, cx).await {
                let _ = out.to_string();
            }
        }
        _ => {}
    }
}

/// Inputs the fuzz targets (`fuzz/`, `scripts/fuzz.sh`) crashed on, through the same steps:
/// parse, a plan with custom tags and URI rewrites (the `hls` target's plan 1), stitch.
#[test]
fn fuzz_regressions_hls_tags_and_rewrites() {
    let inputs: [&[u8]; 1] = [
        // `#EXTM3U<junk>`: the header was spliced as segment 0's text, so the added tag came
        // before `#EXTM3U` and the output did not parse
        b"#EXTM3U\x08\n#EXT-X-TARGETDURATION:6\xff\n#EXTINF\n4",
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_, _, creative) = samples();
    for input in inputs {
        let (_, parsed) = parse(Class::HlsPlaylist, input);
        let Parsed::HlsMedia { playlist, view } = &parsed else {
            panic!("the input parses as a media playlist");
        };
        let edits = vec![
            Edit::AddTag(manifold_ssai::types::Tag {
                before_segment: 0,
                line: "#EXT-X-FUZZ:A=1".into(),
            }),
            Edit::RewriteUri(manifold_ssai::types::UriRewrite {
                index: 0,
                uri: "https://cdn.example/0.ts".into(),
            }),
        ];
        let plan = apply::media_plan(view, &edits).unwrap();
        let media = Media {
            playlist,
            view,
            body: input,
        };
        let catalog = Synthetic {
            period: Some(creative.clone()),
            ..Synthetic::default()
        };
        let policies = Policies::default();
        let cx = Context {
            creatives: &catalog,
            policies: &policies,
            want: RenditionWant::default(),
            prefix: "/t/~s",
            now_ms: 0,
        };
        let out = rt
            .block_on(ssai::render(&media, &plan, &Default::default(), &cx))
            .unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("#EXTM3U"), "{text}");
        assert!(text.contains("#EXT-X-FUZZ:A=1\n"), "{text}");
        assert!(text.contains("https://cdn.example/0.ts"), "{text}");
        assert!(m3u8_rs::parse_playlist_res(&out).is_ok(), "{text}");
    }
}

/// MPDs the `dash` fuzz target crashed on (`proxy/ssai/tests/fuzz-regressions/`), through the
/// whole DASH path.
#[test]
fn fuzz_regressions_dash() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_, _, creative) = samples();
    // a period starting after the presentation's (unparsable) duration: its span was
    // inverted and `f64::clamp` panicked snapping a break to the grid
    let text = include_str!("fuzz-regressions/dash-inverted-period-span.mpd");
    let (_, parsed) = parse(Class::DashManifest, text.as_bytes());
    assert!(matches!(parsed, Parsed::Dash { .. }), "the input parses");
    rt.block_on(run(text, Class::DashManifest, &creative));
}

/// An `xs:duration` whose hours overflow u64 in dash-mpd-core's parser (a panic with overflow
/// checks, as in debug builds): refused as unparsable before the parser sees it.
#[test]
fn fuzz_regressions_dash_duration_overflow() {
    let text = include_str!("fuzz-regressions/dash-duration-overflow.mpd");
    let (kind, parsed) = parse(Class::DashManifest, text.as_bytes());
    assert!(
        matches!(&kind, manifold_ssai::parse::ManifestKind::Unparsed(m) if m.contains("out of range")),
        "{kind:?}"
    );
    assert!(matches!(parsed, Parsed::None));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("BAD_INPUT_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256), ..ProptestConfig::default() })]

    #[test]
    fn mangled_origin_manifests_never_panic(
        which in 0usize..6,
        ms in proptest::collection::vec(mangle(), 1..6),
    ) {
        let (hls, dash, creative) = samples();
        let (text, class) = if which < 3 { (&hls[which], Class::HlsPlaylist) } else { (&dash[which - 3], Class::DashManifest) };
        let mangled = apply_mangles(text, &ms);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(&mangled, class, &creative));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (_, _, creative) = samples();
        for class in [Class::HlsPlaylist, Class::DashManifest] {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            rt.block_on(run(&text, class, &creative));
        }
    }
}
