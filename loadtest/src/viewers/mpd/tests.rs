use super::*;

const LIVE_NUMBER: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z" publishTime="2026-01-01T00:01:00Z" minimumUpdatePeriod="PT2S" timeShiftBufferDepth="PT20S">
  <Period id="0" start="PT0S">
<AdaptationSet id="1" contentType="video" mimeType="video/mp4">
  <SegmentTemplate timescale="10240" duration="20480" startNumber="0" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s"/>
  <Representation id="v2" bandwidth="300"/>
  <Representation id="v0" bandwidth="100"/>
  <Representation id="v1" bandwidth="200"/>
</AdaptationSet>
<AdaptationSet id="2" contentType="audio" mimeType="audio/mp4">
  <SegmentTemplate timescale="48000" duration="96000" startNumber="0" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s"/>
  <Representation id="a0" bandwidth="64"/>
</AdaptationSet>
  </Period>
</MPD>"#;

/// Content, an ad period with per-representation templates and an absolute BaseURL, and
/// content again with re-based numbering; timeline addressing in the last period.
const STITCHED: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z" publishTime="2026-01-01T00:01:10Z" minimumUpdatePeriod="PT2S" timeShiftBufferDepth="PT60S">
  <Location>/t/~tok/live/dash/manifest.mpd</Location>
  <Period id="0" start="PT0S">
<AdaptationSet id="1" contentType="video">
  <SegmentTemplate timescale="10240" duration="20480" startNumber="0" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s"/>
  <Representation id="v0" bandwidth="100"/>
</AdaptationSet>
  </Period>
  <Period id="b~ad0" start="PT30S" duration="PT15S">
<BaseURL>/t/~tok/ads/ad15/dash/</BaseURL>
<EventStream schemeIdUri="urn:scte:scte35:2014:xml+bin" timescale="90000"/>
<AdaptationSet id="1" contentType="video">
  <Representation id="v0" bandwidth="100">
    <SegmentTemplate timescale="10240" duration="20480" startNumber="0" initialization="v0/init.mp4" media="v0/$Number$.m4s?mf_b=b&amp;mf_s=0"/>
  </Representation>
</AdaptationSet>
  </Period>
  <Period id="0~b" start="PT45S">
<AdaptationSet id="1" contentType="video">
  <SegmentTemplate timescale="10240" presentationTimeOffset="460800" startNumber="23" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/t$Time$.m4s">
    <SegmentTimeline><S t="460800" d="20480" r="11"/></SegmentTimeline>
  </SegmentTemplate>
  <Representation id="v0" bandwidth="100"/>
</AdaptationSet>
  </Period>
</MPD>"#;

fn url() -> Url {
    Url::parse("http://127.0.0.1:8080/t/live/dash/manifest.mpd").unwrap()
}

#[test]
fn templates_fill_with_widths() {
    assert_eq!(
        fill("$RepresentationID$/$Number$.m4s", "v1", 7, 0, 0),
        "v1/7.m4s"
    );
    assert_eq!(
        fill("s_$Number%05d$_$Time$.m4s", "", 42, 900, 0),
        "s_00042_900.m4s"
    );
    assert_eq!(
        fill("$Bandwidth$/$$x$Unknown$", "", 0, 0, 5),
        "5/$x$Unknown$"
    );
    assert_eq!(fill("no-dollar", "r", 1, 1, 1), "no-dollar");
}

#[test]
fn number_template_availability_follows_the_clock() {
    let mpd = dash_mpd_core::parse(LIVE_NUMBER).unwrap();
    // 61 s after the availability start: segments 0..30 have ended, tsb keeps ~the last 10
    let clock = Clock {
        now: 61.0,
        tsb: Some(20.0),
    };
    let p = plan(&mpd, &url(), clock, 4, |_| From::LiveEdge(3)).unwrap();
    assert_eq!(p.len(), 2);
    let v = &p[0];
    assert_eq!((v.media, v.rep_id.as_str()), (Media::Video, "v1")); // 4 mod 3 → 2nd by bandwidth
    let numbers: Vec<u64> = v.segments.iter().map(|s| s.number).collect();
    assert_eq!(numbers, vec![27, 28, 29]);
    assert_eq!(
        v.media_url(&v.segments[0]).unwrap().as_str(),
        "http://127.0.0.1:8080/t/live/dash/v1/27.m4s"
    );
    assert_eq!(
        v.init_url().unwrap().unwrap().path(),
        "/t/live/dash/v1/init.mp4"
    );
    assert_eq!(p[1].media, Media::Audio);
    assert_eq!(p[1].segments.len(), 3);
    // after segment 28: only 29; later, 30 too
    let p = plan(&mpd, &url(), clock, 0, |_| From::After(56.0)).unwrap();
    assert_eq!(
        p[0].segments.iter().map(|s| s.number).collect::<Vec<_>>(),
        vec![29]
    );
    let later = Clock {
        now: 62.5,
        tsb: Some(20.0),
    };
    let p = plan(&mpd, &url(), later, 0, |_| From::After(56.0)).unwrap();
    assert_eq!(
        p[0].segments.iter().map(|s| s.number).collect::<Vec<_>>(),
        vec![29, 30]
    );
    // the whole buffer: segments that ended within the last 20 s
    let p = plan(&mpd, &url(), clock, 0, |_| From::After(-1.0)).unwrap();
    assert_eq!(p[0].segments.first().unwrap().number, 20);
    // the MPD's own live edge (publishTime = 60 s)
    assert_eq!(live_edge(&mpd, clock), Some(60.0));
}

#[test]
fn stitched_periods_resolve_like_a_player() {
    let mpd = dash_mpd_core::parse(STITCHED).unwrap();
    let bounds = period_bounds(&mpd);
    assert_eq!(
        bounds,
        vec![(0.0, Some(30.0)), (30.0, Some(45.0)), (45.0, None)]
    );
    let clock = Clock {
        now: 70.0,
        tsb: Some(60.0),
    };
    let p = plan(&mpd, &url(), clock, 0, |_| From::After(25.0)).unwrap();
    assert_eq!(p.len(), 3);
    // content: segment 13 [26, 28) and 14 [28, 30)
    assert_eq!(
        p[0].segments.iter().map(|s| s.number).collect::<Vec<_>>(),
        vec![13, 14]
    );
    // the ad: 8 segments of 2 s cover 15 s, the last cut by the period end
    let ad = &p[1];
    assert_eq!(ad.segments.len(), 8);
    assert_eq!(ad.segments.last().unwrap().start, 44.0);
    assert_eq!(
        ad.media_url(&ad.segments[0]).unwrap().as_str(),
        "http://127.0.0.1:8080/t/~tok/ads/ad15/dash/v0/0.m4s?mf_b=b&mf_s=0"
    );
    assert_eq!(
        ad.init_url().unwrap().unwrap().path(),
        "/t/~tok/ads/ad15/dash/v0/init.mp4"
    );
    // content again: timeline from 45 s, 12 listed, those ended by 70 s: 45..69
    let c = &p[2];
    assert_eq!(c.segments.len(), 12);
    assert_eq!(c.segments[0].start, 45.0);
    assert_eq!(c.segments[0].number, 23);
    assert_eq!(
        c.media_url(&c.segments[0]).unwrap().path(),
        "/t/live/dash/v0/t460800.m4s"
    );
    let f = facts(&mpd);
    assert!(f.shows_break);
    assert_eq!(f.periods.len(), 3);
    assert!(f.periods[1].is_ad && !f.periods[0].is_ad);
    assert_eq!(f.periods[1].start_ms, 30_000);
    assert_eq!(f.periods[1].duration_ms, Some(15_000));
    assert_eq!(f.periods[2].timeline.len(), 12);
    assert_eq!(f.publish_time_ms.unwrap() % 1000, 0);
    // publishTime is 70 s: the timeline's last segment ends at 69 s
    assert_eq!(live_edge(&mpd, clock), Some(69.0));
}

#[test]
fn open_ended_repeat_runs_to_now() {
    let xml = r#"<MPD type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z">
      <Period id="p" start="PT10S"><AdaptationSet contentType="audio">
        <SegmentTemplate timescale="1000" media="a/$Time$.m4a"><SegmentTimeline><S t="0" d="2000" r="-1"/></SegmentTimeline></SegmentTemplate>
        <Representation id="a"/></AdaptationSet></Period></MPD>"#;
    let mpd = dash_mpd_core::parse(xml).unwrap();
    let p = plan(
        &mpd,
        &url(),
        Clock {
            now: 19.0,
            tsb: None,
        },
        0,
        |_| From::After(-1.0),
    )
    .unwrap();
    // [10,12) [12,14) [14,16) [16,18) have ended by 19 s; [18,20) has not
    assert_eq!(p[0].segments.len(), 4);
    assert_eq!(p[0].segments[3].time, 6000);
}

#[test]
fn unsupported_addressing_is_an_error() {
    let xml = r#"<MPD type="static" mediaPresentationDuration="PT10S"><Period id="p"><AdaptationSet contentType="video"><Representation id="v"/></AdaptationSet></Period></MPD>"#;
    let mpd = dash_mpd_core::parse(xml).unwrap();
    assert!(plan(&mpd, &url(), Clock::of(&mpd, 0), 0, |_| From::LiveEdge(3)).is_err());
}
