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
