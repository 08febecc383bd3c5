use super::*;
use crate::creatives::RenditionWant;
use crate::ledger::{Insertion, START};
use crate::policy::Policies;
use crate::ssai::tests::{parse as parse_m3u8, window, Sess, PREFIX};
use crate::types::Ad;
use crate::view::HlsMediaView;

fn guided() -> Sess {
    let mut s = Sess::default();
    s.state.insertion = Insertion::Guided;
    s.now_ms = 1_800_000_000_000;
    s
}

fn dateranges(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("#EXT-X-DATERANGE") && l.contains("hls.interstitial"))
        .collect()
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = [format!(",{name}="), format!(":{name}=")]
        .iter()
        .find_map(|k| line.find(k.as_str()))?
        + name.len()
        + 2;
    let rest = &line[at..];
    let end = if let Some(q) = rest.strip_prefix('"') {
        return q.split('"').next();
    } else {
        rest.find(',').unwrap_or(rest.len())
    };
    Some(&rest[..end])
}

fn uris(text: &str) -> Vec<String> {
    parse_m3u8(text)
        .segments
        .iter()
        .map(|s| s.uri.clone())
        .collect()
}

const POD: &[&str] = &["ad4", "ad6"];

#[test]
fn guided_paths_round_trip_and_refuse_what_they_do_not_name() {
    let id = "splice-7 \"x\"/y";
    let list = asset_list_path(Packaging::Fmp4, id).unwrap();
    assert_eq!(
        parse_path(&list),
        Asked::AssetList {
            pack: Packaging::Fmp4,
            id: id.into()
        }
    );
    let r = rendition_path(Packaging::Ts, id, 2, 3).unwrap();
    assert_eq!(
        parse_path(&r),
        Asked::AssetRendition {
            pack: Packaging::Ts,
            id: id.into(),
            ad: 2,
            rendition: 3
        }
    );
    let m = asset_path(Packaging::Ts, id, 1).unwrap();
    assert!(matches!(parse_path(&m), Asked::AssetMaster { ad: 1, .. }));
    assert_eq!(
        parse_path(&pod_mpd_path(id).unwrap()),
        Asked::PodMpd { id: id.into() }
    );
    assert!(parse("/live/master.m3u8").is_none(), "not a guided path");
    for bad in [
        "/~guided/ts/zz/assets.json",
        "/~guided/mp3/6162/assets.json",
        "/~guided/ts/6162/x/master.m3u8",
        "/~guided/dash/6162/assets.json",
        "/~guided/ts/6162/1/v.m3u8",
        "/~guided/ts//assets.json",
    ] {
        assert!(matches!(parse(bad), Some(Err(_))), "{bad}");
    }
    assert!(asset_list_path(Packaging::Ts, &"x".repeat(300)).is_none());
}

fn parse_path(p: &str) -> Asked {
    parse(p).unwrap().unwrap()
}

#[tokio::test]
async fn a_guided_live_break_is_announced_identically_on_every_reload_over_the_content() {
    let mut s = guided();
    let p = Policies::default();
    let (first, _) = s.fill(&window(100, 6, &[102], 1000), POD, &p).await;
    assert_eq!(
        uris(&first),
        (100..106).map(|n| format!("c/{n}.ts")).collect::<Vec<_>>(),
        "the content stays in place:\n{first}"
    );
    let dr = dateranges(&first);
    assert_eq!(dr.len(), 1, "{first}");
    // before the break's first segment (players anchor it there)
    let after = first.split(dr[0]).nth(1).unwrap();
    assert_eq!(
        after.lines().find(|l| !l.is_empty() && !l.starts_with('#')),
        Some("c/102.ts"),
        "{first}"
    );
    let id = s
        .state
        .breaks
        .keys()
        .find(|k| crate::ledger::is_break_id(k))
        .unwrap()
        .clone();
    assert_eq!(attr(dr[0], "ID"), Some(&*format!("mf-{id}")));
    // the break starts at segment 102: 2026-01-01T00:00:00Z + 204 s
    assert_eq!(attr(dr[0], "START-DATE"), Some("2026-01-01T00:03:24.000Z"));
    assert_eq!(attr(dr[0], "PLANNED-DURATION"), Some("10.000"));
    let list = format!("{PREFIX}{}", asset_list_path(Packaging::Ts, &id).unwrap());
    assert_eq!(attr(dr[0], "X-ASSET-LIST"), Some(&*list));
    assert_eq!(
        attr(dr[0], "X-RESUME-OFFSET"),
        None,
        "live: after what played"
    );
    // the playout limited to the range (see `Interstitial::line`)
    assert_eq!(attr(dr[0], "X-PLAYOUT-LIMIT"), Some("10.000"));
    for first in 101..103 {
        let (again, _) = s.fill(&window(first, 5, &[102], 1000), POD, &p).await;
        assert_eq!(dateranges(&again), dr, "reload from {first}:\n{again}");
    }
    // the end seen: the planned duration becomes the duration, nothing else changes
    let (ended, _) = s.fill(&window(104, 8, &[102], 1000), POD, &p).await;
    let d = dateranges(&ended);
    assert_eq!(attr(d[0], "DURATION"), Some("10.000"), "{ended}");
    assert_eq!(attr(d[0], "START-DATE"), attr(dr[0], "START-DATE"));
    assert_eq!(
        attr(d[0], "X-PLAYOUT-LIMIT"),
        attr(dr[0], "X-PLAYOUT-LIMIT"),
        "ended on time"
    );
    // gone once its content has left the window
    let (after, _) = s.fill(&window(108, 8, &[102], 1000), POD, &p).await;
    assert!(dateranges(&after).is_empty(), "{after}");
}

/// A 10 s break whose CUE-IN comes after 6 s.
fn early(first: u64, len: u64) -> String {
    window(first, len, &[102], 1000)
        .replace("#EXT-X-CUE-IN\n", "")
        .replace(
            "#EXT-X-CUE-OUT-CONT:ElapsedTime=6,Duration=10\n",
            "#EXT-X-CUE-IN\n",
        )
        .lines()
        .filter(|l| !l.contains("ElapsedTime=8"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[tokio::test]
async fn an_early_cue_in_limits_the_playout_of_the_same_interstitial() {
    let mut s = guided();
    let p = Policies::default();
    let (open, _) = s.fill(&early(100, 4), POD, &p).await;
    let (ended, _) = s.fill(&early(101, 6), POD, &p).await;
    let (a, b) = (dateranges(&open), dateranges(&ended));
    assert_eq!(attr(a[0], "ID"), attr(b[0], "ID"));
    assert_eq!(attr(a[0], "PLANNED-DURATION"), Some("10.000"));
    assert_eq!(attr(b[0], "DURATION"), Some("6.000"), "{ended}");
    assert_eq!(attr(b[0], "X-PLAYOUT-LIMIT"), Some("6.000"));
}

#[tokio::test]
async fn guided_policy_sets_the_interstitial_attributes() {
    let mut s = guided();
    let p = Policies {
        guided: Guided {
            resume: Resume::Break,
            restrict_skip: true,
            restrict_jump: true,
            snap_out: true,
            snap_in: true,
            playout_limit: true,
            once: true,
            ..Guided::default()
        },
        ..Policies::default()
    };
    let (text, _) = s.fill(&window(100, 8, &[102], 1000), POD, &p).await;
    let d = dateranges(&text);
    assert_eq!(attr(d[0], "X-RESUME-OFFSET"), Some("10.000"));
    assert_eq!(attr(d[0], "X-PLAYOUT-LIMIT"), Some("10.000"));
    assert_eq!(attr(d[0], "X-RESTRICT"), Some("SKIP,JUMP"));
    assert_eq!(attr(d[0], "X-SNAP"), Some("OUT,IN"));
    assert_eq!(attr(d[0], "CUE"), Some("ONCE"));
}

#[tokio::test]
async fn guided_vod_gets_dated_pre_mid_and_post_roll_interstitials() {
    let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:2.0,\na.ts\n#EXTINF:2.0,\nb.ts\n#EXTINF:2.0,\nc.ts\n#EXT-X-ENDLIST\n";
    let ad = |c: &str| {
        vec![Ad {
            id: c.into(),
            creative: c.into(),
            duration: 2.0,
        }]
    };
    let plan = move |v: &HlsMediaView| crate::apply::MediaPlan {
        preroll: Some(ad("ad2")),
        inserts: vec![(3.0, ad("ad4")), (100.0, ad("ad2"))],
        tags: vec![Vec::new(); v.view.segments.len()],
        uris: vec![None; v.view.segments.len()],
        ..Default::default()
    };
    let mut s = guided();
    let (out, m) = s
        .reload(text, plan, RenditionWant::default(), &Policies::default())
        .await;
    assert_eq!(uris(&out), ["a.ts", "b.ts", "c.ts"], "{out}");
    assert!(m.end_list);
    // undated at the origin: dated from the session's start
    let t0 = m.segments[0].program_date_time.unwrap().timestamp_millis();
    assert_eq!(t0, s.now_ms);
    assert_eq!(s.state.breaks[START].start_ms, Some(s.now_ms));
    let d = dateranges(&out);
    assert_eq!(d.len(), 3, "{out}");
    let by_id = |id: &str| {
        *d.iter()
            .find(|l| attr(l, "ID") == Some(&*format!("mf-{id}")))
            .unwrap()
    };
    let pre = by_id("~preroll");
    assert_eq!(attr(pre, "CUE"), Some("PRE,ONCE"));
    assert_eq!(attr(pre, "DURATION"), Some("2.000"));
    assert_eq!(attr(pre, "X-RESUME-OFFSET"), Some("0.000"));
    assert_eq!(attr(pre, "START-DATE"), Some("2027-01-15T08:00:00.000Z"));
    let mid = by_id("~vod-0");
    assert_eq!(attr(mid, "START-DATE"), Some("2027-01-15T08:00:04.000Z"));
    assert_eq!(attr(mid, "CUE"), Some("ONCE"));
    assert_eq!(attr(mid, "DURATION"), Some("4.000"));
    let post = by_id("~vod-1");
    assert_eq!(attr(post, "CUE"), Some("POST,ONCE"));
    assert_eq!(attr(post, "START-DATE"), Some("2027-01-15T08:00:06.000Z"));
    // the same on a reload, whenever it comes
    s.now_ms += 60_000;
    let (again, _) = s
        .reload(text, plan, RenditionWant::default(), &Policies::default())
        .await;
    assert_eq!(dateranges(&again), d);
}

#[tokio::test]
async fn an_undated_live_stream_is_dated_the_same_on_every_reload() {
    let undated = |first| -> String {
        window(first, 6, &[103], 1000)
            .lines()
            .filter(|l| !l.starts_with("#EXT-X-PROGRAM-DATE-TIME"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let mut s = guided();
    let p = Policies::default();
    let (a, ma) = s.fill(&undated(100), POD, &p).await;
    s.now_ms += 5_000; // later reloads do not move the dates
    let (b, mb) = s.fill(&undated(101), POD, &p).await;
    let ta = ma.segments[0].program_date_time.unwrap().timestamp_millis();
    let tb = mb.segments[0].program_date_time.unwrap().timestamp_millis();
    assert_eq!(tb - ta, 2000, "{a}\n{b}");
    assert_eq!(dateranges(&a), dateranges(&b));
    // the break starts three segments after the session's first
    let start = s
        .state
        .breaks
        .values()
        .find_map(|r| (r.start_seq == 103).then_some(r.start_ms));
    assert_eq!(start.flatten(), Some(ta + 6000));
}

#[tokio::test]
async fn both_signals_stitch_the_ads_and_announce_them() {
    let mut s = guided();
    let mut p = Policies::default();
    p.guided.both = true;
    let (text, _) = s.fill(&window(100, 8, &[102], 1000), POD, &p).await;
    assert_eq!(dateranges(&text).len(), 1, "{text}");
    assert!(
        uris(&text).iter().any(|u| u.starts_with("/ads/ad4/")),
        "stitched too:\n{text}"
    );
}

#[tokio::test]
async fn stitched_sessions_record_and_render_as_before() {
    let mut s = Sess::default();
    let p = Policies::default();
    let (text, _) = s.fill(&window(100, 8, &[102], 1000), POD, &p).await;
    assert!(dateranges(&text).is_empty(), "{text}");
    assert!(s.state.breaks.values().all(|r| r.start_ms.is_none()));
    let (_, _) = s.fill(&window(104, 8, &[102], 1000), POD, &p).await;
    assert!(s.state.facts.values().all(|f| f.secs.is_none()));
}

#[tokio::test]
async fn a_break_s_assets_are_its_ads_in_play_order_with_their_offsets() {
    let mut s = guided();
    let p = Policies::default();
    let _ = s
        .fill(&window(100, 8, &[102], 1000), &["ad2", "ad4", "ad4"], &p)
        .await;
    let rec = s
        .state
        .breaks
        .iter()
        .find(|(k, _)| crate::ledger::is_break_id(k))
        .unwrap()
        .1;
    let all = assets(rec);
    let offsets: Vec<(u32, f64, f64)> = all.iter().map(|a| (a.ad, a.offset, a.duration)).collect();
    assert_eq!(offsets, [(0, 0.0, 2.0), (1, 2.0, 4.0), (2, 6.0, 4.0)]);
    // slate padding is not an asset: the interstitial replaces only the ads' length
    let (text, _) = s.fill(&window(100, 8, &[104], 1000), &["ad2"], &p).await;
    let short = dateranges(&text)
        .into_iter()
        .find(|l| l.contains("cue-104"))
        .unwrap();
    assert_eq!(attr(short, "PLANNED-DURATION"), Some("2.000"), "{text}");
    let rec = s
        .state
        .breaks
        .values()
        .find(|r| r.start_seq == 104)
        .unwrap();
    assert!(
        rec.slots.iter().any(|x| x.ad.is_none()),
        "padded with slate"
    );
    assert_eq!(assets(rec).len(), 1);
}

#[tokio::test]
async fn an_empty_window_in_a_guided_session_renders_without_dates_or_announcements() {
    let mut s = guided();
    let empty = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:5\n";
    let (text, m) = s.fill(empty, POD, &Policies::default()).await;
    assert!(m.segments.is_empty(), "{text}");
    assert!(dateranges(&text).is_empty());
    // and the session goes on when segments come
    let (text, _) = s
        .fill(&window(100, 6, &[102], 1000), POD, &Policies::default())
        .await;
    assert_eq!(dateranges(&text).len(), 1, "{text}");
}
