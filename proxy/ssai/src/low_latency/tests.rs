use super::*;

const LL: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5,CAN-SKIP-UNTIL=12.0\n\
#EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-MAP:URI=\"v0/init.mp4\"\n\
#EXTINF:2.0,\nv0/10.m4s\n\
#EXT-X-PART:DURATION=0.5,URI=\"v0/11.0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.5,URI=\"v0/11.1.m4s\"\n\
#EXT-X-PART:DURATION=0.5,URI=\"v0/11.2.m4s\"\n#EXT-X-PART:DURATION=0.5,URI=\"v0/11.3.m4s\"\n\
#EXTINF:2.0,\nv0/11.m4s\n\
#EXT-X-CUE-OUT:DURATION=10\n#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:24.000Z\n\
#EXT-X-PART:DURATION=0.5,URI=\"v0/12.0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.5,URI=\"v0/12.1.m4s\"\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"v0/12.2.m4s\"\n\
#EXT-X-RENDITION-REPORT:URI=\"v1.m3u8\",LAST-MSN=12,LAST-PART=1\n";

#[test]
fn progress_counts_segments_and_parts() {
    let p = Progress::of(LL.as_bytes()).unwrap();
    assert_eq!(
        p,
        Progress {
            end: 12,
            parts: 2,
            last_parts: 4
        }
    );
    let plain = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n";
    assert_eq!(Progress::of(plain.as_bytes()), None, "cannot block");
    let skipped = LL.replace("#EXT-X-MAP", "#EXT-X-SKIP:SKIPPED-SEGMENTS=5\n#EXT-X-MAP");
    assert_eq!(Progress::of(skipped.as_bytes()).unwrap().end, 17);
}

#[test]
fn blocking_reloads_are_answered_once_what_they_ask_is_out() {
    let p = Progress::of(LL.as_bytes()).unwrap();
    let b = |msn, part| Blocking { msn, part };
    assert!(p.answers(b(12, Some(1))));
    assert!(!p.answers(b(12, Some(2))));
    assert!(p.answers(b(11, None)) && !p.answers(b(12, None)));
    assert!(p.answers(b(11, Some(3))));
    // part 4 of 11 (it has 4) is part 0 of 12: out
    assert!(p.answers(b(11, Some(4))));
    let at_start = Progress {
        end: 12,
        parts: 0,
        last_parts: 4,
    };
    assert!(!at_start.answers(b(11, Some(4))), "12.0 is not out yet");
    assert!(at_start.answers(b(11, Some(3))));
    assert!(!p.answers(b(13, Some(0))));
    assert_eq!(p.next(), b(12, Some(2)));
    // the segment after an ad edge (11 lists no parts) is served with its first part; after
    // content, a reload by segment waits for the segment whole
    let after_ads = Progress {
        end: 12,
        parts: 1,
        last_parts: 0,
    };
    assert!(after_ads.serves(b(12, None)) && !after_ads.answers(b(12, None)));
    assert!(!p.serves(b(12, None)));
    assert!(!at_start.serves(b(12, None)), "nothing of 12 is out yet");
    assert_eq!(b(12, Some(2)).query(), "_HLS_msn=12&_HLS_part=2");
}

#[test]
fn the_segment_being_made_is_a_segment_of_its_parts() {
    let body = LL.as_bytes();
    let last_uri = LL.find("v0/11.m4s\n").unwrap() + "v0/11.m4s\n".len();
    let (seg, end) = in_progress(body, last_uri..body.len()).unwrap();
    assert_eq!(seg.uri, "v0/12.0.m4s");
    assert!((seg.duration - 1.0).abs() < 1e-6);
    assert!(seg.unknown_tags.iter().any(|t| t.tag == "X-CUE-OUT"));
    assert!(seg.program_date_time.is_some());
    assert!(LL[end..].starts_with("#EXT-X-PRELOAD-HINT"));
    // no parts after the last URI: nothing in progress
    let hint_only = LL.find("#EXT-X-PRELOAD-HINT").unwrap();
    assert!(in_progress(body, hint_only..body.len()).is_none());
}

#[test]
fn personalized_edges_rewrite_parts_reports_and_skips() {
    let out = without_parts(LL.as_bytes());
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("#EXT-X-PART:") && !out.contains("PRELOAD-HINT"));
    assert!(out.contains("#EXT-X-PART-INF"));
    let at = Progress {
        end: 20,
        parts: 0,
        last_parts: 0,
    };
    let r = String::from_utf8(reports_at(LL.as_bytes(), at)).unwrap();
    assert!(
        r.contains("#EXT-X-RENDITION-REPORT:URI=\"v1.m3u8\",LAST-MSN=19\n"),
        "{r}"
    );
    let s = String::from_utf8(without_skip(LL.as_bytes())).unwrap();
    assert!(s.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5\n"));
}

#[test]
fn the_live_edge_lists_parts_by_segment_and_the_hint() {
    let (_, parsed) = crate::parse::parse(crate::asked::Class::HlsPlaylist, LL.as_bytes());
    let crate::parse::Parsed::HlsMedia { view, .. } = parsed else {
        panic!("not a media playlist");
    };
    let e = view.edge.expect("an LL-HLS playlist has a live edge");
    assert_eq!(e.part_target, 0.5);
    assert!(e.in_progress, "segment 12 is listed only as parts");
    assert_eq!(view.view.segments.len(), 3);
    let by: Vec<(u32, &str)> = e.parts.iter().map(|p| (p.segment, &*p.uri)).collect();
    assert_eq!(
        by,
        [
            (1, "v0/11.0.m4s"),
            (1, "v0/11.1.m4s"),
            (1, "v0/11.2.m4s"),
            (1, "v0/11.3.m4s"),
            (2, "v0/12.0.m4s"),
            (2, "v0/12.1.m4s")
        ]
    );
    assert!(e.parts[0].independent && !e.parts[1].independent && !e.parts[0].gap);
    assert_eq!(e.preload_hint.as_deref(), Some("v0/12.2.m4s"));

    // a complete last segment, a GAP part, and no hint
    let done = LL
        .replace("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"v0/12.2.m4s\"\n", "")
        .replace(
            "v0/12.1.m4s\"\n",
            "v0/12.1.m4s\",GAP=YES\n#EXTINF:1.0,\nv0/12.m4s\n",
        );
    let (_, parsed) = crate::parse::parse(crate::asked::Class::HlsPlaylist, done.as_bytes());
    let crate::parse::Parsed::HlsMedia { view, .. } = parsed else {
        panic!("not a media playlist");
    };
    let e = view.edge.unwrap();
    assert!(!e.in_progress && e.preload_hint.is_none());
    assert!(e.parts[5].gap && e.parts[5].segment == 2);

    let plain = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n";
    let (_, parsed) = crate::parse::parse(crate::asked::Class::HlsPlaylist, plain.as_bytes());
    let crate::parse::Parsed::HlsMedia { view, .. } = parsed else {
        panic!("not a media playlist");
    };
    assert_eq!(view.edge, None, "no PART-INF: not LL-HLS");
}

#[test]
fn the_live_edge_keeps_the_newest_parts_when_an_origin_lists_too_many() {
    let mut text = String::from(
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MEDIA-SEQUENCE:0\n",
    );
    for s in 0..100 {
        for k in 0..4 {
            text += &format!("#EXT-X-PART:DURATION=0.5,URI=\"{s}.{k}.m4s\"\n");
        }
        text += &format!("#EXTINF:2.0,\n{s}.m4s\n");
    }
    let (_, parsed) = crate::parse::parse(crate::asked::Class::HlsPlaylist, text.as_bytes());
    let crate::parse::Parsed::HlsMedia { view, .. } = parsed else {
        panic!("not a media playlist");
    };
    let e = view.edge.unwrap();
    assert_eq!(e.parts.len(), MAX_EDGE_PARTS);
    assert_eq!(e.parts.last().unwrap().uri, "99.3.m4s");
    assert_eq!(e.parts[0].uri, "36.0.m4s");
    assert_eq!(e.parts[0].segment, 36);
}
