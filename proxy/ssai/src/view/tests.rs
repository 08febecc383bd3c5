use super::*;

fn media(text: &str) -> MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()).unwrap() {
        m3u8_rs::Playlist::MediaPlaylist(m) => m,
        _ => panic!("not media"),
    }
}

fn seg(n: u64, tags: &str) -> String {
    format!("{tags}#EXTINF:2.000000,\nv0/{n}.ts\n")
}

#[test]
fn cue_out_cont_in_make_one_break() {
    let mut text = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n");
    text += &seg(10, "");
    text += &seg(11, "#EXT-X-CUE-OUT:DURATION=6\n");
    text += &seg(12, "#EXT-X-CUE-OUT-CONT:ElapsedTime=2,Duration=6\n");
    text += &seg(13, "#EXT-X-CUE-OUT-CONT:ElapsedTime=4,Duration=6\n");
    text += &seg(14, "#EXT-X-CUE-IN\n");
    let v = hls_media(&media(&text));
    assert_eq!(v.spans.len(), 1);
    let s = &v.spans[0];
    assert_eq!(
        (s.first, s.end, s.duration, s.id.as_str()),
        (1, 4, 6.0, "cue-11")
    );
    assert_eq!(v.view.breaks[0].start, 2.0);
    assert!(v.view.live);
    assert_eq!(v.view.segments[4].sequence, 14);
}

#[test]
fn break_without_cue_in_ends_by_duration_or_window() {
    let mut text = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n");
    text += &seg(0, "#EXT-X-CUE-OUT:4\n");
    text += &seg(1, "");
    text += &seg(2, "");
    text += &seg(3, "#EXT-X-CUE-OUT:DURATION=30\n");
    text += &seg(4, "");
    let v = hls_media(&media(&text));
    assert_eq!(v.spans.len(), 2);
    assert_eq!((v.spans[0].first, v.spans[0].end), (0, 2));
    assert_eq!(
        (v.spans[1].first, v.spans[1].end),
        (3, 5),
        "still running at the live edge"
    );
}

#[test]
fn joining_mid_break_recovers_the_break_id() {
    let mut text = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:20\n");
    text += &seg(20, "#EXT-X-CUE-OUT-CONT:ElapsedTime=6,Duration=10\n");
    text += &seg(21, "#EXT-X-CUE-OUT-CONT:ElapsedTime=8,Duration=10\n");
    text += &seg(22, "#EXT-X-CUE-IN\n");
    let v = hls_media(&media(&text));
    assert_eq!(v.spans[0].id, "cue-17");
    assert_eq!(v.spans[0].elapsed, 6.0);
    assert_eq!(v.view.breaks[0].start, -6.0);
    assert_eq!((v.spans[0].first, v.spans[0].end), (0, 2));
}

#[test]
fn future_daterange_announces_a_break() {
    // a DATERANGE whose START-DATE is 10 s after its segment: announced, not started
    let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n#EXTINF:2.0,\na.ts\n\
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:02.000Z\n\
#EXT-X-DATERANGE:ID=\"splice-7\",START-DATE=\"2026-01-01T00:00:12.000Z\",PLANNED-DURATION=30.0\n\
#EXTINF:2.0,\nb.ts\n";
    let v = hls_media(&media(text));
    assert!(v.view.breaks.is_empty() && v.spans.is_empty());
    let a = &v.announced[0];
    assert_eq!(
        (a.brk.id.as_str(), a.brk.start, a.brk.duration),
        ("splice-7", 12.0, 30.0)
    );
    assert_eq!(a.at_ms, 1_767_225_612_000);
}

#[test]
fn daterange_scte35_names_the_break() {
    let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n\
#EXT-X-DATERANGE:ID=\"splice-1000\",START-DATE=\"2026-01-01T00:00:00.000Z\",PLANNED-DURATION=30.0,SCTE35-OUT=0xFC302500000000000000FFF01405000003E87FEFFE001B7740FE002932E00000000000000C64BCB6\n\
#EXT-X-CUE-OUT:DURATION=30\n#EXTINF:2.0,\na.ts\n#EXTINF:2.0,\nb.ts\n";
    let v = hls_media(&media(text));
    let b = &v.view.breaks[0];
    assert_eq!(b.id, "splice-1000");
    assert_eq!(b.duration, 30.0);
    assert_eq!(b.scte35.unwrap().splice_event_id, Some(1000));
    assert_eq!(
        v.view.segments[0].program_date_time,
        Some(1_767_225_600_000)
    );
}

#[test]
fn text_layout_finds_each_segment() {
    let text = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n#EXTINF:2.0,\na.m4s\n\
#EXT-X-CUE-OUT:10\n#EXTINF:2.0,\nb.m4s\n\n#EXT-X-ENDLIST\n";
    let l = text_layout(text.as_bytes(), 2).unwrap();
    let part = |r: &std::ops::Range<usize>| &text[r.clone()];
    assert!(part(&l.header).ends_with("MEDIA-SEQUENCE:7\n"));
    assert!(
        part(&l.segments[0]).starts_with("#EXT-X-MAP") && part(&l.segments[0]).ends_with("a.m4s\n")
    );
    assert_eq!(
        part(&l.segments[1]),
        "#EXT-X-CUE-OUT:10\n#EXTINF:2.0,\nb.m4s\n"
    );
    assert_eq!(part(&l.footer), "\n#EXT-X-ENDLIST\n");
    assert_eq!(text_layout(text.as_bytes(), 3), None);
}

#[test]
fn text_layout_needs_the_header_line() {
    // fuzz (hls): m3u8-rs takes `#EXTM3U<junk>` as the header, the layout did not, so
    // the header became segment 0's text and edits were spliced before `#EXTM3U`
    let text = b"#EXTM3U\x08\n#EXT-X-TARGETDURATION:6\xff\n#EXTINF\n4";
    assert_eq!(text_layout(text, 1), None);
}

#[test]
fn master_view() {
    let text = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,URI=\"a0.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=1000,RESOLUTION=320x180,CODECS=\"avc1.4d400c,mp4a.40.2\",AUDIO=\"aud\"\nv0.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=2000,RESOLUTION=640x360\nv1.m3u8\n";
    let m = match m3u8_rs::parse_playlist_res(text.as_bytes()).unwrap() {
        m3u8_rs::Playlist::MasterPlaylist(m) => m,
        _ => panic!(),
    };
    let v = hls_master(&m);
    assert_eq!(v.variants.len(), 2);
    assert_eq!(v.variants[1].resolution.unwrap().height, 360);
    assert_eq!(v.variants[0].audio_group.as_deref(), Some("aud"));
    assert_eq!(v.renditions[0].kind, "AUDIO");
    assert!(v.renditions[0].is_default);
}
