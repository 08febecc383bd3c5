use super::*;
use crate::pods::Overlong;
use crate::stitch::Markers;
use crate::synthetic::Synthetic;
use crate::types::Ad;
use m3u8_rs::MediaPlaylist;

/// `adN` is N seconds in 2 s segments (last one shorter), the slate 1 s segments; URIs
/// name the rendition so alignment can be checked.
pub const FAKE: Synthetic = Synthetic {
    segment: 2.0,
    fallback: None,
    by_rendition: true,
    period: None,
};

/// An in-memory session, applied the way the proxy does (first writer wins).
#[derive(Default, Clone)]
pub struct Sess {
    pub state: SessionState,
    /// The clock a guided session's synthesized date-times start from.
    pub now_ms: i64,
}

/// The session prefix the tests' guided URLs live under.
pub const PREFIX: &str = "/t/~tok";

impl Sess {
    /// A reload with every break filled with `pod`, for the default rendition.
    pub async fn fill(
        &mut self,
        text: &str,
        pod: &'static [&'static str],
        policies: &Policies,
    ) -> (String, MediaPlaylist) {
        self.reload(text, fill_all(pod), RenditionWant::default(), policies)
            .await
    }

    pub async fn reload(
        &mut self,
        text: &str,
        plan_for: impl Fn(&HlsMediaView) -> MediaPlan,
        want: RenditionWant,
        policies: &Policies,
    ) -> (String, MediaPlaylist) {
        let m = parse(text);
        let v = crate::view::hls_media_with_text(&m, text.as_bytes());
        let plan = plan_for(&v);
        let media = Media {
            playlist: &m,
            view: &v,
            body: text.as_bytes(),
        };
        let cx = Context {
            creatives: &FAKE,
            policies,
            want,
            prefix: PREFIX,
            now_ms: self.now_ms,
        };
        for (id, rec) in propose(&media, &plan, &self.state, &cx).await.unwrap() {
            self.state.breaks.entry(id).or_insert(rec);
        }
        for (id, f) in observe(&media, &self.state) {
            self.state.facts.entry(id).or_default().merge(f);
        }
        let out = render(&media, &plan, &self.state, &cx).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let parsed = parse(&text);
        (text, parsed)
    }
}

pub fn parse(text: &str) -> MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => m,
        other => panic!("not a media playlist ({other:?}):\n{text}"),
    }
}

/// Fill every break with `pod`.
pub fn fill_all(pod: &'static [&'static str]) -> impl Fn(&HlsMediaView) -> MediaPlan {
    move |v| MediaPlan {
        fills: v
            .spans
            .iter()
            .map(|s| (s.id.clone(), crate::synthetic::pod(pod)))
            .collect(),
        tags: vec![Vec::new(); v.view.segments.len()],
        uris: vec![None; v.view.segments.len()],
        ..Default::default()
    }
}

/// A live window: segments `first..first+len` of 2 s; a 10 s break at `brk`; a content
/// discontinuity every `loop_len` segments.
pub fn window(first: u64, len: u64, brk: &[u64], loop_len: u64) -> String {
    let mut t = format!(
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
        if first == 0 { 0 } else { (first - 1) / loop_len }
    );
    for n in first..first + len {
        if n > 0 && n % loop_len == 0 {
            t += "#EXT-X-DISCONTINUITY\n";
        }
        for &b in brk {
            if n == b {
                t += "#EXT-X-CUE-OUT:DURATION=10\n";
            } else if n > b && n < b + 5 {
                t += &format!(
                    "#EXT-X-CUE-OUT-CONT:ElapsedTime={},Duration=10\n",
                    (n - b) * 2
                );
            } else if n == b + 5 {
                t += "#EXT-X-CUE-IN\n";
            }
        }
        t += &format!(
            "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:2.000,\nc/{n}.ts\n",
            (chrono::DateTime::from_timestamp(1_767_225_600 + 2 * n as i64, 0).unwrap())
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
    }
    t
}

fn uris(m: &MediaPlaylist) -> Vec<String> {
    m.segments.iter().map(|s| s.uri.clone()).collect()
}

#[tokio::test]
async fn dash_records_of_the_same_session_do_not_touch_hls() {
    let p = Policies::default();
    let text = window(10, 8, &[12], 1000);
    let mut plain = Sess::default();
    let (_, want) = plain.fill(&text, &["ad4", "ad6"], &p).await;
    // the same viewer played the MPD first: its DASH ledger is in the session
    let mut both = Sess::default();
    let dash = BreakRecord {
        start_seq: 0,
        start_time: Some(24.0),
        start_ms: None,
        duration: 10.0,
        joined_mid: false,
        content: false,
        slots: want_slots(),
        ads: Vec::new(),
    };
    both.state
        .breaks
        .insert("dash:splice-1000".into(), dash.clone());
    both.state
        .breaks
        .insert(format!("{DASH_HOST_RECORD}start"), dash);
    let (_, got) = both.fill(&text, &["ad4", "ad6"], &p).await;
    assert_eq!(uris(&got), uris(&want));
    assert_eq!(got.media_sequence, want.media_sequence);
    assert_eq!(got.discontinuity_sequence, want.discontinuity_sequence);
}

fn want_slots() -> Vec<crate::ledger::Slot> {
    (0..5)
        .map(|i| crate::ledger::Slot {
            creative: "ad10".into(),
            index: i,
            duration: 2.0,
            offset: i as f64 * 2.0,
            disc: i == 0,
            ad: Some(0),
            events: Vec::new(),
        })
        .collect()
}

#[tokio::test]
async fn a_break_is_replaced_with_ads_and_slate_and_numbered_from_the_session() {
    let mut s = Sess::default();
    let p = Policies::default();
    let (_, out) = s
        .fill(&window(10, 8, &[12], 1000), &["ad4", "ad6"], &p)
        .await;
    assert_eq!(
        uris(&out),
        vec![
            "c/10.ts",
            "c/11.ts",
            // a creative's first TS segment: its audio leads (ts_lead)
            "/ads/ad4/v/0.ts?mf_lead=1",
            "/ads/ad4/v/1.ts",
            "/ads/ad6/v/0.ts?mf_lead=1",
            "/ads/ad6/v/1.ts",
            "/ads/ad6/v/2.ts",
            "c/17.ts"
        ]
    );
    let disc: Vec<bool> = out.segments.iter().map(|x| x.discontinuity).collect();
    assert_eq!(
        disc,
        vec![false, false, true, false, true, false, false, true]
    );
    assert_eq!(out.media_sequence, 10);
    let pdt = |i: usize| {
        out.segments[i]
            .program_date_time
            .unwrap()
            .timestamp_millis()
    };
    assert_eq!(pdt(2) - pdt(1), 2000);
    assert_eq!(pdt(7) - pdt(2), 10_000, "content resumes on time");
    // 10 s later the window slid by 5: 5 content segments left, 3 of them replaced by 5 ads
    let (_, later) = s
        .fill(&window(15, 8, &[12], 1000), &["ad4", "ad6"], &p)
        .await;
    let left = out
        .segments
        .iter()
        .position(|x| later.segments[0].uri == x.uri)
        .unwrap() as u64;
    assert_eq!(later.media_sequence, out.media_sequence + left);
}

#[tokio::test]
async fn renditions_share_timing_and_discontinuities() {
    let p = Policies::default();
    let mut s = Sess::default();
    let text = window(10, 10, &[12], 14);
    let (_, video) = s
        .reload(
            &text,
            fill_all(&["ad6"]),
            RenditionWant {
                bandwidth: Some(100),
                ..Default::default()
            },
            &p,
        )
        .await;
    let (_, audio) = s
        .reload(
            &text,
            fill_all(&["ad6"]),
            RenditionWant {
                audio_only: true,
                ..Default::default()
            },
            &p,
        )
        .await;
    assert_eq!(video.media_sequence, audio.media_sequence);
    assert_eq!(video.discontinuity_sequence, audio.discontinuity_sequence);
    let shape = |m: &MediaPlaylist| {
        m.segments
            .iter()
            .map(|x| (x.duration, x.discontinuity))
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&video), shape(&audio));
    assert!(video.segments[2].uri.contains("/v100/") && audio.segments[2].uri.contains("/a/"));
}

#[tokio::test]
async fn joining_mid_break_follows_the_policy() {
    let ads = Policies::default();
    let mut s = Sess::default();
    // the viewer arrives when the break at 12 has run 6 s of 10
    let (_, out) = s
        .fill(&window(10, 8, &[12], 1000), &["ad4", "ad6"], &ads)
        .await;
    assert!(uris(&out).iter().any(|u| u.contains("/ads/")));
    let content = Policies {
        join: JoinPolicy::Content,
        ..Default::default()
    };
    let mut s = Sess::default();
    let (_, out) = s
        .fill(&window(10, 8, &[12], 1000), &["ad4", "ad6"], &content)
        .await;
    assert!(
        uris(&out).iter().all(|u| u.starts_with("c/")),
        "{:?}",
        uris(&out)
    );
    // a break that starts after the viewer joined is filled either way
    let (_, later) = s
        .fill(&window(25, 8, &[12, 27], 1000), &["ad4", "ad6"], &content)
        .await;
    assert!(uris(&later).iter().any(|u| u.contains("/ads/")));
}

#[tokio::test]
async fn markers_can_be_stripped() {
    let strip = Policies {
        markers: Markers::Strip,
        ..Default::default()
    };
    let mut s = Sess::default();
    let (text, _) = s.fill(&window(10, 8, &[12], 1000), &["ad10"], &strip).await;
    assert!(!text.contains("CUE"), "{text}");
    let mut s = Sess::default();
    let (text, _) = s
        .fill(&window(10, 8, &[12], 1000), &["ad10"], &Policies::default())
        .await;
    assert!(text.contains("#EXT-X-CUE-OUT"), "{text}");
}

#[tokio::test]
async fn overlong_ads_are_cut_or_dropped() {
    let mut s = Sess::default();
    let cut = Policies {
        overlong: Overlong::Cut,
        ..Default::default()
    };
    let (_, out) = s.fill(&window(10, 10, &[11], 1000), &["ad14"], &cut).await;
    let ad: Vec<String> = uris(&out)
        .into_iter()
        .filter(|u| u.contains("/ad14/"))
        .collect();
    assert_eq!(ad.len(), 5, "cut at the break's end: {ad:?}");
    let mut s = Sess::default();
    let (_, out) = s
        .fill(
            &window(10, 10, &[11], 1000),
            &["ad14"],
            &Policies::default(),
        )
        .await;
    assert!(uris(&out).iter().all(|u| !u.contains("/ad14/")));
    assert!(
        uris(&out).iter().any(|u| u.contains("/slate/")),
        "dropped: slate instead"
    );
}

#[tokio::test]
async fn live_preroll_plays_where_the_viewer_starts() {
    let mut s = Sess::default();
    let with_preroll = |v: &HlsMediaView| MediaPlan {
        preroll: Some(vec![Ad {
            id: "p".into(),
            creative: "ad4".into(),
            duration: 4.0,
        }]),
        tags: vec![Vec::new(); v.view.segments.len()],
        uris: vec![None; v.view.segments.len()],
        ..Default::default()
    };
    let (text, out) = s
        .reload(
            &window(10, 8, &[], 1000),
            with_preroll,
            RenditionWant::default(),
            &Policies::default(),
        )
        .await;
    let u = uris(&out);
    let at = u.iter().position(|x| x.contains("/ads/ad4/")).unwrap();
    assert_eq!(
        u[at + 2],
        "c/15.ts",
        "before the 3rd segment from the live edge: {u:?}"
    );
    assert!(text.contains("#EXT-X-START:TIME-OFFSET=-10.000"), "{text}");
    // later reloads keep it where it was: no second pre-roll
    let (_, later) = s
        .reload(
            &window(12, 8, &[], 1000),
            with_preroll,
            RenditionWant::default(),
            &Policies::default(),
        )
        .await;
    assert_eq!(
        uris(&later).iter().filter(|x| x.contains("/ads/")).count(),
        2
    );
    assert_eq!(later.media_sequence, out.media_sequence + 2);
}

#[tokio::test]
async fn vod_gets_pre_mid_and_post_rolls() {
    let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:2.0,\na.ts\n#EXTINF:2.0,\nb.ts\n#EXTINF:2.0,\nc.ts\n#EXT-X-ENDLIST\n";
    let ad = |c: &str| {
        vec![Ad {
            id: c.into(),
            creative: c.into(),
            duration: 2.0,
        }]
    };
    let plan = move |v: &HlsMediaView| MediaPlan {
        preroll: Some(ad("ad2")),
        inserts: vec![(3.0, ad("ad4")), (100.0, ad("ad2"))],
        tags: vec![Vec::new(); v.view.segments.len()],
        uris: vec![None; v.view.segments.len()],
        ..Default::default()
    };
    let mut s = Sess::default();
    let (_, out) = s
        .reload(text, plan, RenditionWant::default(), &Policies::default())
        .await;
    assert_eq!(
        uris(&out),
        vec![
            "/ads/ad2/v/0.ts?mf_lead=1",
            "a.ts",
            "b.ts",
            "/ads/ad4/v/0.ts?mf_lead=1",
            "/ads/ad4/v/1.ts",
            "c.ts",
            "/ads/ad2/v/0.ts?mf_lead=1"
        ]
    );
    assert!(out.end_list);
    let disc: Vec<bool> = out.segments.iter().map(|x| x.discontinuity).collect();
    assert_eq!(disc, vec![true, true, false, true, false, true, true]);
}
