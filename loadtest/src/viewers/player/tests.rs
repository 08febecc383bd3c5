use super::dash::live_edge_only;
use super::*;

#[test]
fn parses_masters_and_media_playlists() {
    let master = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en\",DEFAULT=YES,URI=\"/t/~s/live/cmaf/a0.m3u8?mf_v=a\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=300,AUDIO=\"aud\"\nhi.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=100,AUDIO=\"aud\"\nlo.m3u8\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=50,URI=\"if.m3u8\"\n";
    let HlsDoc::Master(m) = parse_hls(master.as_bytes()).unwrap() else {
        panic!("not a master")
    };
    assert_eq!(m.variants.len(), 2);
    assert_eq!(m.variants[0].0, "lo.m3u8");
    assert_eq!(
        m.audio_for(Some("aud")),
        Some("/t/~s/live/cmaf/a0.m3u8?mf_v=a")
    );
    assert_eq!(m.audio_for(None), None);
    let media = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:12\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n\
#EXT-X-MAP:URI=\"v1/init.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-11-26T12:11:18.240Z\n#EXTINF:2.0,\nv1/12.m4s\n\
#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"/t/~s/ads/ad30/cmaf/v1/init.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-11-26T12:11:20.240Z\n\
#EXT-X-CUE-OUT:DURATION=30\n#EXTINF:2.0,\n/t/~s/ads/ad30/cmaf/v1/0.m4s?mf_b=splice-1&mf_s=0\n";
    let HlsDoc::Media(p) = parse_hls(media.as_bytes()).unwrap() else {
        panic!("not media")
    };
    assert_eq!((p.media_sequence, p.discontinuity_sequence), (12, 1));
    assert_eq!(p.segments.len(), 2);
    assert_eq!(p.segments[0].map.as_deref(), Some("v1/init.mp4"));
    assert!(!p.segments[0].is_ad && p.segments[1].is_ad);
    assert!(p.segments[1].discontinuity && p.segments[1].cue);
    assert_eq!(
        p.segments[1].map.as_deref(),
        Some("/t/~s/ads/ad30/cmaf/v1/init.mp4")
    );
    assert_eq!(p.segments[0].pdt_ms.unwrap() % 1000, 240);
    assert!(p.shows_break());
    assert!(parse_hls(b"<html>").is_err());
}

#[test]
fn entry_urls_carry_the_viewer_query() {
    let t = Url::parse("http://127.0.0.1:8080/t/live/hls/master.m3u8?a=1").unwrap();
    assert_eq!(entry_url(&t, None, 3), t);
    assert_eq!(
        entry_url(&t, Some("uid={viewer}&device=tv"), 3).as_str(),
        "http://127.0.0.1:8080/t/live/hls/master.m3u8?a=1&uid=3&device=tv"
    );
    let t = Url::parse("http://127.0.0.1:8080/m.mpd").unwrap();
    assert_eq!(
        entry_url(&t, Some("v={viewer}"), 9).as_str(),
        "http://127.0.0.1:8080/m.mpd?v=9"
    );
}

#[test]
fn parse_cache_shares_identical_bodies() {
    let c: ParseCache<String> = ParseCache::new(2);
    let calls = std::cell::Cell::new(0);
    let parse = |b: &[u8]| {
        calls.set(calls.get() + 1);
        Ok(String::from_utf8_lossy(b).into_owned())
    };
    let (a, ha) = c.get(b"one", parse).unwrap();
    let (b, hb) = c.get(b"one", parse).unwrap();
    assert!(Arc::ptr_eq(&a, &b) && ha == hb);
    assert_eq!(calls.get(), 1);
    c.get(b"two", parse).unwrap();
    c.get(b"three", parse).unwrap(); // full: cleared, then inserted
    assert_eq!(calls.get(), 3);
    assert!(c.get(b"bad", |_| Err::<String, _>("no".into())).is_err());
}

#[test]
fn joining_takes_the_last_segments_over_periods() {
    let seg = |start: f64| mpd::SegRef {
        number: 0,
        time: 0,
        start,
        end: start + 2.0,
    };
    let track = |id: &str, starts: &[f64]| mpd::TrackPlan {
        media: Media::Video,
        period_id: id.into(),
        base: Url::parse("http://127.0.0.1/").unwrap(),
        rep_id: "v".into(),
        bandwidth: 0,
        media_template: "$Number$".into(),
        init_template: None,
        segments: starts.iter().map(|&s| seg(s)).collect(),
    };
    let t = live_edge_only(
        vec![track("0", &[20.0, 22.0, 24.0]), track("ad", &[26.0, 28.0])],
        From::LiveEdge(3),
        3,
    );
    assert_eq!(t[0].segments.len(), 1);
    assert_eq!(t[1].segments.len(), 2);
    let t = live_edge_only(vec![track("0", &[20.0, 22.0])], From::After(1.0), 3);
    assert_eq!(t[0].segments.len(), 2);
}
