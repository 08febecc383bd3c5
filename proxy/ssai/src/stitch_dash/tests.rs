use super::timeline::Boundaries;
use super::*;

fn slot(creative: &str, index: u32, offset: f64, d: f64, ad: Option<u32>) -> Slot {
    Slot {
        creative: creative.into(),
        index,
        duration: d,
        offset,
        disc: index == 0,
        ad,
        events: Vec::new(),
    }
}

const LIVE: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z" publishTime="2026-01-01T00:01:00Z" timeShiftBufferDepth="PT20S" minBufferTime="PT2S">
  <Period id="0" start="PT0S">
<EventStream schemeIdUri="urn:scte:scte35:2014:xml+bin" timescale="90000">
  <Event presentationTime="2700000" duration="1800000" id="1000"/>
</EventStream>
<AdaptationSet id="1" contentType="video" mimeType="video/mp4">
  <SegmentTemplate timescale="10240" duration="20480" startNumber="0" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s"/>
  <Representation id="v0" bandwidth="42844" width="192" height="108"/>
  <Representation id="v1" bandwidth="73632" width="320" height="180"/>
</AdaptationSet>
<AdaptationSet id="2" contentType="audio" mimeType="audio/mp4">
  <SegmentTemplate timescale="48000" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/t$Time$.m4s">
    <SegmentTimeline><S t="960512" d="96256"/><S d="95232"/><S d="96256" r="22"/></SegmentTimeline>
  </SegmentTemplate>
  <Representation id="a0" bandwidth="35315"/>
</AdaptationSet>
  </Period>
</MPD>"#;

const CREATIVE: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT10S" minBufferTime="PT2S">
  <Period id="0" start="PT0S">
<AdaptationSet id="1" contentType="video" mimeType="video/mp4">
  <SegmentTemplate timescale="10240" duration="20480" startNumber="0" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s"/>
  <Representation id="v0" bandwidth="11524" width="192" height="108"/>
  <Representation id="v2" bandwidth="23496" width="480" height="270"/>
</AdaptationSet>
<AdaptationSet id="2" contentType="audio" mimeType="audio/mp4">
  <SegmentTemplate timescale="48000" duration="96000" startNumber="0" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s"/>
  <Representation id="a0" bandwidth="36126"/>
</AdaptationSet>
  </Period>
</MPD>"#;

fn creatives() -> BTreeMap<String, Arc<DashCreative>> {
    let mpd = dash_mpd_core::parse(CREATIVE).unwrap();
    ["ad10", "slate"]
        .into_iter()
        .map(|n| {
            (
                n.to_string(),
                Arc::new(DashCreative {
                    base: format!("/t/~s/ads/{n}/dash/"),
                    period: mpd.periods[0].clone(),
                }),
            )
        })
        .collect()
}

fn start(p: &Period) -> f64 {
    p.start.unwrap().as_secs_f64()
}

#[test]
fn a_break_splits_the_period_on_the_grid() {
    let mpd = dash_mpd_core::parse(LIVE).unwrap();
    let grid = Grid::of(&mpd);
    assert_eq!(grid.snap(30.2), 30.0);
    assert_eq!(grid.snap(1000.9), 1000.0);
    assert_eq!(grid.snap_down(31.9), 30.0);
    let slots: Vec<Slot> = (0..5)
        .map(|i| slot("ad10", i, i as f64 * 2.0, 2.0, Some(0)))
        .chain((0..10).map(|i| slot("slate", i, 10.0 + i as f64, 1.0, None)))
        .collect();
    let pods = [DashPod {
        id: "1000",
        key: "1000",
        start: 30.0,
        end: 50.0,
        slots: &slots,
    }];
    let out = render(
        mpd.clone(),
        &pods,
        &creatives(),
        None,
        DashOptions {
            tracking: true,
            ..Default::default()
        },
    )
    .unwrap();
    let ids: Vec<&str> = out
        .periods
        .iter()
        .map(|p| p.id.as_deref().unwrap())
        .collect();
    assert_eq!(ids, ["0", "1000~ad0", "1000~ad1", "0~1000"]);
    let starts: Vec<f64> = out.periods.iter().map(start).collect();
    assert_eq!(starts, [0.0, 30.0, 40.0, 50.0]);
    // ad periods: the content's set and representation ids, the creative's media
    let ad = &out.periods[1];
    assert_eq!(ad.BaseURL[0].base, "/t/~s/ads/ad10/dash/");
    assert_eq!(ad.duration.unwrap().as_secs_f64(), 10.0);
    let v = &ad.adaptations[0];
    assert_eq!(v.id.as_deref(), Some("1"));
    let reps: Vec<&str> = v
        .representations
        .iter()
        .map(|r| r.id.as_deref().unwrap())
        .collect();
    assert_eq!(reps, ["v0", "v1"]);
    let t = v.representations[1].SegmentTemplate.as_ref().unwrap();
    assert_eq!(
        t.media.as_deref(),
        Some("v2/$Number$.m4s?mf_b=1000&mf_s=0&mf_n=0"),
        "v1 gets the closest creative rendition"
    );
    assert_eq!(t.initialization.as_deref(), Some("v2/init.mp4"));
    // the marker goes with the first ad period
    assert_eq!(ad.event_streams.len(), 1);
    assert_eq!(ad.event_streams[0].presentationTimeOffset, Some(2_700_000));
    assert!(out.periods[0].event_streams.is_empty());
    // slate run from its first segment
    let s = out.periods[2].adaptations[1].representations[0]
        .SegmentTemplate
        .as_ref()
        .unwrap();
    assert_eq!(
        s.media.as_deref(),
        Some("a0/$Number$.m4s?mf_b=1000&mf_s=5&mf_n=0")
    );
    // content after: numbers and media time continue at 50 s
    let after = &out.periods[3];
    let vt = after.adaptations[0].SegmentTemplate.as_ref().unwrap();
    assert_eq!(vt.startNumber, Some(25));
    assert_eq!(vt.presentationTimeOffset, Some(50 * 10240));
    let at = after.adaptations[1].SegmentTemplate.as_ref().unwrap();
    assert_eq!(at.presentationTimeOffset, Some(50 * 48000));
    let first = at.SegmentTimeline.as_ref().unwrap().segments[0].t.unwrap();
    assert!(
        (first as i64 - 50 * 48000).abs() < 48000,
        "audio resumes at the segment nearest 50 s: {first}"
    );
    // the content before the break ends at its start
    let bt = out.periods[0].adaptations[1]
        .SegmentTemplate
        .as_ref()
        .unwrap();
    let last = expand(bt.SegmentTimeline.as_ref().unwrap(), None)
        .last()
        .copied()
        .unwrap();
    assert!(((last.0 + last.1) as f64 / 48000.0 - 30.0).abs() < 0.1);
}

#[test]
fn timelines_give_their_own_grid() {
    let mut mpd = dash_mpd_core::parse(LIVE).unwrap();
    mpd.periods[0].adaptations.remove(0);
    let grid = Grid::of(&mpd);
    // audio segments of 2.0053 and 1.984 s from 20.0107 s
    let first = 960512.0 / 48000.0;
    let second = (960512.0 + 96256.0) / 48000.0;
    assert!((grid.snap(22.3) - second).abs() < 1e-9);
    assert!((grid.snap_down(22.3) - second).abs() < 1e-9);
    assert!((grid.snap_down(21.9) - first).abs() < 1e-9);
    // before and after the listed segments: at the first and last step
    let step = 96256.0 / 48000.0;
    assert!((grid.snap(first - 3.9) - (first - 2.0 * step)).abs() < 1e-6);
    assert!((grid.snap_down(first - 0.1) - (first - step)).abs() < 1e-6);
    let Boundaries::Listed(v) = &grid.periods[0].2 else {
        panic!("a timeline")
    };
    let last = v[v.len() - 1];
    assert!((grid.snap(last + 4.1) - (last + 2.0 * step)).abs() < 1e-6);
}

#[test]
fn the_same_records_give_the_same_periods_as_the_window_slides() {
    let mpd = dash_mpd_core::parse(LIVE).unwrap();
    let slots: Vec<Slot> = (0..10)
        .map(|i| slot("slate", i, i as f64, 1.0, None))
        .collect();
    let pods = [DashPod {
        id: "1000",
        key: "1000",
        start: 30.0,
        end: 40.0,
        slots: &slots,
    }];
    let early = render(
        mpd.clone(),
        &pods,
        &creatives(),
        Some(20.0),
        DashOptions::default(),
    )
    .unwrap();
    let late = render(
        mpd.clone(),
        &pods,
        &creatives(),
        Some(45.0),
        DashOptions::default(),
    )
    .unwrap();
    let key = |p: &Period| (p.id.clone(), p.start);
    assert_eq!(early.periods.len(), 3);
    assert_eq!(
        late.periods.len(),
        1,
        "periods that ended before the window are dropped"
    );
    assert_eq!(key(&late.periods[0]), key(&early.periods[2]));
}

#[test]
fn inserted_pods_shift_the_content_after_them() {
    let mut mpd = dash_mpd_core::parse(LIVE).unwrap();
    mpd.mpdtype = Some("static".into());
    mpd.mediaPresentationDuration = Some(secs(60.0));
    let slots: Vec<Slot> = (0..5)
        .map(|i| slot("ad10", i, i as f64 * 2.0, 2.0, Some(0)))
        .collect();
    let pods = [
        DashPod {
            id: "~preroll",
            key: "~preroll",
            start: 0.0,
            end: 0.0,
            slots: &slots,
        },
        DashPod {
            id: "~vod-0",
            key: "~vod-0",
            start: 20.0,
            end: 20.0,
            slots: &slots,
        },
    ];
    let out = render(
        mpd.clone(),
        &pods,
        &creatives(),
        None,
        DashOptions::default(),
    )
    .unwrap();
    let got: Vec<(String, f64)> = out
        .periods
        .iter()
        .map(|p| (p.id.clone().unwrap(), start(p)))
        .collect();
    let want = [
        ("~preroll~ad0", 0.0),
        ("0~~preroll", 10.0),
        ("~vod-0~ad0", 30.0),
        ("0~~vod-0", 40.0),
    ];
    assert_eq!(got, want.map(|(a, b)| (a.to_string(), b)));
    assert_eq!(out.mediaPresentationDuration.unwrap().as_secs_f64(), 80.0);
    let t = out.periods[3].adaptations[0]
        .SegmentTemplate
        .as_ref()
        .unwrap();
    assert_eq!(
        (t.startNumber, t.presentationTimeOffset),
        (Some(10), Some(20 * 10240))
    );
}

#[test]
fn a_creative_without_the_content_kind_is_an_error() {
    let mpd = dash_mpd_core::parse(LIVE).unwrap();
    let mut c = creatives();
    let mut video_only = c["ad10"].period.clone();
    video_only.adaptations.truncate(1);
    c.insert(
        "ad10".into(),
        Arc::new(DashCreative {
            base: "/x/".into(),
            period: video_only,
        }),
    );
    let slots = [slot("ad10", 0, 0.0, 2.0, Some(0))];
    let pods = [DashPod {
        id: "b",
        key: "b",
        start: 30.0,
        end: 32.0,
        slots: &slots,
    }];
    let e = render(mpd.clone(), &pods, &c, None, DashOptions::default()).unwrap_err();
    assert!(e.contains("no audio"), "{e}");
}
