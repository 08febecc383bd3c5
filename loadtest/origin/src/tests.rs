use super::*;

fn origin(segment_secs: u32) -> Origin {
    let media = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/media"));
    let opts = OriginOptions {
        segment_secs,
        ad_first_secs: 12 * segment_secs as u64,
        ad_every_secs: 30 * segment_secs as u64,
        ad_len_secs: 5 * segment_secs as u64,
        ..OriginOptions::new(media)
    };
    Origin::new(&opts).unwrap()
}

fn text(o: &Origin, path: &str, at_secs: u64) -> String {
    let now = o.schedule().epoch + Duration::from_secs(at_secs);
    let r = o.resource(path, now).unwrap().expect(path);
    String::from_utf8(r.body.to_vec()).unwrap()
}

fn media_playlist(body: &str) -> m3u8_rs::MediaPlaylist {
    match m3u8_rs::parse_playlist_res(body.as_bytes()).unwrap() {
        m3u8_rs::Playlist::MediaPlaylist(m) => m,
        _ => panic!("not a media playlist"),
    }
}

#[test]
fn live_hls_window_slides_with_discontinuities_and_cues() {
    for d in [2u64, 6] {
        let o = origin(d as u32);
        // segments 20..30 are published at t = 30 d; the loop restarts at segment 24 (2 s) / 8 (6 s)
        let at = 30 * d;
        let m = media_playlist(&text(&o, "/live/hls/v1.m3u8", at));
        assert_eq!(m.target_duration, d);
        assert_eq!(m.media_sequence, 20);
        assert_eq!(m.segments.len(), 10);
        assert!(!m.end_list);
        let loop_len = 24 / d;
        for (i, s) in m.segments.iter().enumerate() {
            let n = 20 + i as u64;
            assert_eq!(s.uri, format!("v1/{n}.ts"));
            assert_eq!(s.discontinuity, n % loop_len == 0, "segment {n} ({d} s)");
            assert!(s.program_date_time.is_some());
            assert!((s.duration - d as f32).abs() < 1e-3);
        }
        assert_eq!(m.discontinuity_sequence, (20 - 1) / loop_len);
        // a minute later the window moved by exactly the published segments
        let later = media_playlist(&text(&o, "/live/hls/v1.m3u8", at + 60));
        assert_eq!(later.media_sequence, 20 + 60 / d);
    }
    // the break at segment 12 lasts 5 segments: OUT, 4 x CONT, IN
    let o = origin(2);
    let body = text(&o, "/live/hls/v0.m3u8", 40);
    let out = body.find("#EXT-X-CUE-OUT:DURATION=10").expect("cue out");
    let seg12 = body.find("v0/12.ts").unwrap();
    assert!(out < seg12);
    assert_eq!(body.matches("#EXT-X-CUE-OUT-CONT").count(), 4);
    assert!(body.contains("#EXT-X-CUE-IN"));
    assert!(body.contains("SCTE35-OUT=0xFC"));
    assert!(body.contains("SCTE35-IN=0xFC"));
}

#[test]
fn masters_list_the_ladder() {
    let o = origin(2);
    for path in [
        "/live/hls/master.m3u8",
        "/live/cmaf/master.m3u8",
        "/vod/hls/master.m3u8",
    ] {
        match m3u8_rs::parse_playlist_res(text(&o, path, 100).as_bytes()).unwrap() {
            m3u8_rs::Playlist::MasterPlaylist(m) => {
                assert_eq!(m.variants.len(), 3, "{path}");
                let mut bw: Vec<u64> = m.variants.iter().map(|v| v.bandwidth).collect();
                bw.dedup();
                assert_eq!(bw.len(), 3);
                assert!(m
                    .variants
                    .iter()
                    .all(|v| v.resolution.is_some() && v.codecs.is_some()));
            }
            _ => panic!("{path} is not a master"),
        }
    }
    let cmaf = text(&o, "/live/cmaf/master.m3u8", 100);
    assert!(cmaf.contains("TYPE=AUDIO") && cmaf.contains("AUDIO=\"aud\""));
}

#[test]
fn vod_and_creatives_end() {
    let o = origin(2);
    let m = media_playlist(&text(&o, "/vod/hls/v0.m3u8", 0));
    assert!(m.end_list);
    assert_eq!(m.segments.len(), 60);
    let ad = media_playlist(&text(&o, "/ads/ad15/hls/v2.m3u8", 0));
    let total: f32 = ad.segments.iter().map(|s| s.duration).sum();
    assert!((total - 15.0).abs() < 0.01, "{total}");
    let slate = media_playlist(&text(&o, "/ads/slate/cmaf/a0.m3u8", 0));
    assert_eq!(slate.target_duration, 1);
}

#[test]
fn live_dash_parses_with_events_and_both_addressing_modes() {
    let o = origin(2);
    for path in ["/live/dash/manifest.mpd", "/live/dash/timeline.mpd"] {
        let mpd = dash_mpd_core::parse(&text(&o, path, 40)).unwrap();
        assert_eq!(mpd.mpdtype.as_deref(), Some("dynamic"), "{path}");
        let p = &mpd.periods[0];
        assert_eq!(p.adaptations.len(), 2);
        assert_eq!(p.adaptations[0].representations.len(), 3);
        assert_eq!(
            p.event_streams.len(),
            1,
            "{path}: the break at 24 s is announced"
        );
        assert_eq!(p.event_streams[0].event.len(), 1);
    }
    let bin = text(&o, "/live/dash/manifest.mpd", 40);
    assert!(bin.contains("urn:scte:scte35:2014:xml+bin") && bin.contains("<scte35:Binary>"));
    let xml = text(&o, "/live/dash/timeline.mpd", 40);
    assert!(xml.contains("urn:scte:scte35:2013:xml") && xml.contains("SpliceInsert"));
    let vod = dash_mpd_core::parse(&text(&o, "/vod/dash/manifest.mpd", 0)).unwrap();
    assert_eq!(vod.mpdtype.as_deref(), Some("static"));
}

#[test]
fn timeline_segments_resolve_to_retimed_media() {
    let o = origin(2);
    let a0 = o.lib.content.cmaf("a0").unwrap();
    let n = 30; // second lap
    let by_time = format!("/live/dash/a0/t{}.m4s", a0.looped_start(n));
    let by_number = format!("/live/dash/a0/{n}.m4s");
    let t = o.resource(&by_time, SystemTime::now()).unwrap().unwrap();
    let k = o.resource(&by_number, SystemTime::now()).unwrap().unwrap();
    assert_eq!(t.body, k.body);
    assert_eq!(
        mp4::read_fragment(&t.body).unwrap().tfdt,
        a0.looped_start(n)
    );
    assert!(o
        .resource("/live/dash/a0/t12345.m4s", SystemTime::now())
        .unwrap()
        .is_none());
    assert!(o
        .resource("/live/hls/v9/1.ts", SystemTime::now())
        .unwrap()
        .is_none());
    assert!(o
        .resource("/ads/ad10/hls/v0/99.ts", SystemTime::now())
        .unwrap()
        .is_none());
}

#[test]
fn options_are_validated() {
    let media = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/media"));
    let bad = OriginOptions {
        ad_len_secs: 5,
        ..OriginOptions::new(media.clone())
    };
    assert!(Origin::new(&bad).is_err());
    let missing = OriginOptions {
        segment_secs: 4,
        ..OriginOptions::new(media)
    };
    assert!(Origin::new(&missing).is_err());
}

fn ll(o: &Origin, rest: &str, query: Option<&str>, at_ms: u64) -> ll::Answer {
    let now = o.schedule().epoch + Duration::from_millis(at_ms);
    o.low_latency(rest, query, now).unwrap()
}

fn ll_text(o: &Origin, rest: &str, query: Option<&str>, at_ms: u64) -> String {
    match ll(o, rest, query, at_ms) {
        ll::Answer::Ready(r) => String::from_utf8(r.body.to_vec()).unwrap(),
        _ => panic!("{rest} not ready at {at_ms} ms"),
    }
}

#[test]
fn low_latency_playlists_list_parts_hints_and_reports() {
    let o = origin(2);
    // 40.7 s in: segments ..20 complete, parts 0 of segment 20 out
    let t = ll_text(&o, "v1.m3u8", None, 40_700);
    assert!(
        t.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK="),
        "{t}"
    );
    assert!(t.contains("#EXT-X-PART-INF:PART-TARGET=0.5"), "{t}");
    assert!(
        t.contains("#EXT-X-PART:DURATION=0.50000,URI=\"v1/20.0.m4s\",INDEPENDENT=YES"),
        "{t}"
    );
    assert!(
        t.contains("URI=\"v1/19.1.m4s\"\n"),
        "later parts are not independent: {t}"
    );
    assert!(
        !t.contains("v1/16.0.m4s"),
        "old segments lose their parts: {t}"
    );
    assert!(
        t.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"v1/20.1.m4s\""),
        "{t}"
    );
    assert!(
        t.contains("#EXT-X-RENDITION-REPORT:URI=\"a0.m3u8\",LAST-MSN=20,LAST-PART=0"),
        "{t}"
    );
    let m = media_playlist(&t);
    assert_eq!(m.media_sequence, 10);
    assert_eq!(m.segments.len(), 10);
    assert_eq!(m.segments.last().unwrap().uri, "v1/19.m4s");
    // the break at segment 42 is signalled with its first part
    let t = ll_text(&o, "v1.m3u8", None, 84_600);
    let cue = t.find("#EXT-X-CUE-OUT").expect("cue out");
    assert!(cue > t.find("v1/41.m4s").unwrap() && cue < t.find("v1/42.0.m4s").unwrap());
}

#[test]
fn low_latency_reloads_block_until_the_part_is_out() {
    let o = origin(2);
    let due = |q: &str, at_ms: u64| match ll(&o, "v0.m3u8", Some(q), at_ms) {
        ll::Answer::At(t) => t.duration_since(o.schedule().epoch).unwrap().as_millis() as u64,
        ll::Answer::Ready(_) => 0,
        _ => panic!("{q}"),
    };
    assert_eq!(due("_HLS_msn=20&_HLS_part=2", 40_700), 41_500);
    assert_eq!(due("_HLS_msn=20&_HLS_part=3", 40_700), 42_000);
    assert_eq!(
        due("_HLS_msn=20&_HLS_part=4", 40_700),
        42_500,
        "part 4 is part 0 of 21"
    );
    assert_eq!(due("_HLS_msn=20", 40_700), 42_000);
    assert_eq!(due("_HLS_msn=20&_HLS_part=0", 40_700), 0, "already out");
    assert!(matches!(
        ll(&o, "v0.m3u8", Some("_HLS_msn=30"), 40_700),
        ll::Answer::Bad(_)
    ));
    assert!(matches!(
        ll(&o, "v0.m3u8", Some("_HLS_part=1"), 40_700),
        ll::Answer::Bad(_)
    ));
    let t = ll_text(&o, "v0.m3u8", Some("_HLS_msn=20&_HLS_part=2"), 41_500);
    assert!(
        t.contains("v0/20.2.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"v0/20.3.m4s\""),
        "{t}"
    );
    // a hinted part is streamed as it is made; one further ahead is not out
    assert!(matches!(
        ll(&o, "v0/20.3.m4s", None, 41_500),
        ll::Answer::Streamed(..)
    ));
    assert!(matches!(
        ll(&o, "v0/21.2.m4s", None, 41_500),
        ll::Answer::Missing
    ));
}

#[test]
fn low_latency_parts_are_the_segment_and_time_continuously() {
    let o = origin(2);
    let body = |rest: &str| match ll(&o, rest, None, 60_000) {
        ll::Answer::Ready(r) => r.body,
        _ => panic!("{rest}"),
    };
    for r in ["v2", "a0"] {
        let seg = body(&format!("{r}/25.m4s"));
        let mut joined = Vec::new();
        let mut last = None;
        for k in 0..4 {
            let p = body(&format!("{r}/25.{k}.m4s"));
            let tfdt = mp4::read_fragment(&p).unwrap().tfdt;
            assert!(
                last.is_none_or(|l| tfdt > l),
                "{r} part {k} goes back in time"
            );
            last = Some(tfdt);
            joined.extend_from_slice(&p);
        }
        assert_eq!(
            seg.as_ref(),
            joined.as_slice(),
            "{r}: the segment is its parts"
        );
        let first = mp4::read_fragment(&body(&format!("{r}/25.0.m4s")))
            .unwrap()
            .tfdt;
        let cmaf = o.lib.content.cmaf(r).unwrap();
        assert_eq!(first, cmaf.looped_start(25));
    }
}

#[test]
fn low_latency_delta_updates_skip_old_segments_but_keep_date_ranges() {
    let o = origin(2);
    // 60.2 s: segments 20..30 complete, the first 4 older than 6 target durations
    let t = ll_text(&o, "v0.m3u8", Some("_HLS_skip=YES"), 60_200);
    assert!(t.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n"), "{t}");
    assert!(!t.contains("v0/23.m4s") && t.contains("v0/24.m4s"), "{t}");
    let full = ll_text(&o, "v0.m3u8", None, 60_200);
    assert!(!full.contains("EXT-X-SKIP") && full.contains("v0/20.m4s"));
}
