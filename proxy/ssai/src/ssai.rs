//! Server-side ad insertion for one session and one media playlist request: which breaks the
//! session records for the first time (and how their pods are laid out), what the window
//! teaches about recorded breaks, and the stitched playlist for this rendition.

use crate::apply::{InvalidPlan, MediaPlan};

use crate::creatives::{AdMedia, Creatives, Packaging, RenditionWant};

use crate::ledger::decided;
pub use crate::ledger::{
    is_break_id, is_dash_record, DASH_HOST_RECORD, DASH_RECORD, PREROLL, START, VOD_INSERT,
};
use crate::ledger::{BreakFacts, BreakRecord, DecidedAd, SessionState};
use crate::pipeline::{Context, Format};
use crate::pods::lay_out;
pub use crate::policy::{JoinPolicy, Policies};
use crate::stitch::{ContentEdits, Placed, SlotUri, Stitch};
use crate::view::{BreakSpan, HlsMediaView};
use m3u8_rs::MediaPlaylist;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The media playlist being personalized.
pub struct Media<'a> {
    pub playlist: &'a MediaPlaylist,
    pub view: &'a HlsMediaView,
    pub body: &'a [u8],
}

impl Media<'_> {
    fn packaging(&self) -> Packaging {
        if self.playlist.segments.iter().any(|s| s.map.is_some()) {
            Packaging::Fmp4
        } else {
            Packaging::Ts
        }
    }

    fn seq(&self, i: usize) -> u64 {
        self.playlist.media_sequence + i as u64
    }

    /// The content segment a break span starts at (before the window, if joined mid-break).
    fn start_of(&self, span: &BreakSpan) -> u64 {
        let d = self.playlist.segments[span.first].duration.max(0.001) as f64;
        self.seq(span.first)
            .saturating_sub((span.elapsed / d).round() as u64)
    }

    /// The id the session recorded a span's break under: its own, or that of the recorded
    /// break starting at the same segment (signalled differently, e.g. a `DATERANGE` that
    /// has since left the window and a `CUE-OUT-CONT`).
    fn recorded_id<'r>(
        &self,
        span: &'r BreakSpan,
        records: &'r BTreeMap<String, BreakRecord>,
    ) -> Option<&'r str> {
        if let Some((id, _)) = records.get_key_value(&span.id) {
            return Some(id);
        }
        let start = self.start_of(span);
        records
            .iter()
            .find(|(id, r)| is_break_id(id) && r.start_seq == start)
            .map(|(id, _)| id.as_str())
    }

    fn target(&self) -> f64 {
        self.playlist.target_duration as f64
    }

    /// The content segment at or after `at` seconds (VOD), or one past the last.
    fn seq_at(&self, at: f64) -> u64 {
        let mut t = 0.0;
        for (i, s) in self.playlist.segments.iter().enumerate() {
            if t >= at - 0.001 {
                return self.seq(i);
            }
            t += s.duration as f64;
        }
        self.seq(self.playlist.segments.len())
    }
}

fn insert_record(start: u64, slots: Vec<crate::ledger::Slot>, ads: Vec<DecidedAd>) -> BreakRecord {
    BreakRecord {
        start_seq: start,
        start_time: None,
        duration: slots.iter().map(|s| s.duration).sum(),
        joined_mid: false,
        content: slots.is_empty(),
        slots,
        ads,
    }
}

/// Records to propose for what this window shows and the session has not recorded yet.
pub async fn propose(
    media: &Media<'_>,
    plan: &MediaPlan,
    state: &SessionState,
    creatives: &dyn Creatives,
    policies: &Policies,
) -> Result<Vec<(String, BreakRecord)>, InvalidPlan> {
    let live = media.view.view.live;
    let n = media.playlist.segments.len();
    let mut out = Vec::new();
    let packaging = media.packaging();
    let target = media.target();
    // where this session started watching: the live edge players start at
    let anchor = match state.breaks.get(START) {
        Some(r) => r.start_seq,
        None => {
            let anchor = if live {
                media.seq(n.saturating_sub(3))
            } else {
                media.seq(0)
            };
            out.push((
                START.to_string(),
                insert_record(anchor, Vec::new(), Vec::new()),
            ));
            if let Some(pod) = &plan.preroll {
                let slots =
                    lay_out(pod, None, target, packaging, creatives, policies.overlong).await?;
                let at = if live { anchor } else { media.seq(0) };
                out.push((
                    PREROLL.to_string(),
                    insert_record(at, slots, decided(pod, None)),
                ));
            }
            anchor
        }
    };
    if !live {
        for (k, (at, pod)) in plan.inserts.iter().enumerate() {
            let id = format!("{VOD_INSERT}{k}");
            if !state.breaks.contains_key(&id) {
                let slots =
                    lay_out(pod, None, target, packaging, creatives, policies.overlong).await?;
                out.push((
                    id,
                    insert_record(media.seq_at(*at), slots, decided(pod, None)),
                ));
            }
        }
    }
    for span in &media.view.spans {
        if media.recorded_id(span, &state.breaks).is_some()
            || out.iter().any(|(id, _)| id == &span.id)
        {
            continue;
        }
        let start_seq = media.start_of(span);
        let joined_mid = start_seq < anchor;
        let fill = plan
            .fills
            .iter()
            .find(|(id, _)| id == &span.id)
            .map(|(_, p)| p);
        let content = fill.is_none() || (joined_mid && policies.join == JoinPolicy::Content);
        let (slots, ads) = match (content, fill) {
            (false, Some(pod)) => (
                lay_out(
                    pod,
                    Some(span.duration),
                    target,
                    packaging,
                    creatives,
                    policies.overlong,
                )
                .await?,
                decided(pod, state.decisions.get(&span.id)),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        out.push((
            span.id.clone(),
            BreakRecord {
                start_seq,
                start_time: None,
                duration: span.duration,
                joined_mid,
                content: content || slots.is_empty(),
                slots,
                ads,
            },
        ));
    }
    Ok(out)
}

/// What this window shows about recorded breaks that the session does not know yet.
pub fn observe(
    media: &Media<'_>,
    records: &BTreeMap<String, BreakRecord>,
    known: &BTreeMap<String, BreakFacts>,
) -> Vec<(String, BreakFacts)> {
    let segs = &media.playlist.segments;
    let mut out = Vec::new();
    for span in &media.view.spans {
        let Some(id) = media.recorded_id(span, records) else {
            continue;
        };
        let old = known.get(id);
        let mut f = BreakFacts::default();
        for (i, seg) in segs.iter().enumerate().take(span.end).skip(span.first) {
            if seg.discontinuity && !old.is_some_and(|o| o.content_discs.contains(&media.seq(i))) {
                f.content_discs.insert(media.seq(i));
            }
        }
        if span.end < segs.len() && old.is_none_or(|o| o.end_seq.is_none()) {
            f.end_seq = Some(media.seq(span.end));
            f.end_tagged = segs[span.end].discontinuity;
        }
        if f.end_seq.is_some() || !f.content_discs.is_empty() {
            out.push((id.to_string(), f));
        }
    }
    out
}

/// The stitched playlist for one rendition, from the session's records and facts.
pub async fn render(
    media: &Media<'_>,
    plan: &MediaPlan,
    records: &BTreeMap<String, BreakRecord>,
    facts: &BTreeMap<String, BreakFacts>,
    creatives: &dyn Creatives,
    want: RenditionWant,
    policies: &Policies,
) -> Result<Vec<u8>, InvalidPlan> {
    let packaging = media.packaging();
    let empty = BreakFacts::default();
    let mut placed = Vec::new();
    let mut resolved: BTreeMap<String, Arc<AdMedia>> = BTreeMap::new();
    for (id, rec) in records {
        if rec.content || rec.slots.is_empty() || id == START || is_dash_record(id) {
            continue;
        }
        let insert = !is_break_id(id);
        // two renditions racing to record one break under different signals: the first id wins
        let duplicate = records
            .range::<String, _>(..id.clone())
            .any(|(other, r)| is_break_id(other) && r.start_seq == rec.start_seq);
        if !insert && duplicate {
            continue;
        }
        let f = facts.get(id).unwrap_or(&empty);
        let mut uris = Vec::with_capacity(rec.slots.len());
        for slot in &rec.slots {
            let m = match resolved.get(&slot.creative) {
                Some(m) => m.clone(),
                None => {
                    let m = creatives
                        .media(&slot.creative, packaging, want)
                        .await
                        .map_err(|e| InvalidPlan(format!("break {id}: {e}")))?;
                    resolved.insert(slot.creative.clone(), m.clone());
                    m
                }
            };
            let (uri, _) = m.segments.get(slot.index as usize).ok_or_else(|| {
                InvalidPlan(format!(
                    "creative {:?} has no segment {} in this rendition",
                    slot.creative, slot.index
                ))
            })?;
            uris.push(SlotUri {
                uri: uri.clone(),
                map: m.map.clone(),
            });
        }
        placed.push(Placed {
            id,
            start: rec.start_seq,
            end: if insert {
                Some(rec.start_seq)
            } else {
                f.end_seq
            },
            end_tagged: f.end_tagged,
            content_discs: &f.content_discs,
            slots: &rec.slots,
            uris,
        });
    }
    // a live pre-roll: players start where it starts, while it is in the window
    let segs = &media.playlist.segments;
    let start_offset = placed
        .iter()
        .find(|p| p.id == PREROLL && media.view.view.live)
        .and_then(|p| {
            let i = p.start.checked_sub(media.playlist.media_sequence)? as usize;
            (i < segs.len()).then(|| {
                p.slots.iter().map(|s| s.duration).sum::<f64>()
                    + segs[i..].iter().map(|s| s.duration as f64).sum::<f64>()
            })
        });
    let stitch = Stitch {
        playlist: media.playlist,
        view: media.view,
        body: media.body,
        placed: &placed,
        markers: policies.markers,
        edits: ContentEdits {
            tags: &plan.tags,
            uris: &plan.uris,
        },
        tracking: policies.tracking,
        start_offset,
    };
    Ok(stitch.render())
}

/// The HLS media playlist as a [`Format`]: breaks recorded per session, facts observed as
/// the live window slides, the playlist stitched for the requested rendition.
#[async_trait::async_trait]
impl Format for Media<'_> {
    type Plan = MediaPlan;
    type Out = Vec<u8>;

    fn plan(&self, edits: &[crate::types::Edit]) -> Result<MediaPlan, InvalidPlan> {
        crate::apply::media_plan(self.view, edits)
    }

    async fn propose(
        &self,
        plan: &MediaPlan,
        state: &SessionState,
        cx: &Context<'_>,
    ) -> Result<Vec<(String, BreakRecord)>, InvalidPlan> {
        propose(self, plan, state, cx.creatives, cx.policies).await
    }

    fn observe(
        &self,
        records: &BTreeMap<String, BreakRecord>,
        facts: &BTreeMap<String, BreakFacts>,
    ) -> Vec<(String, BreakFacts)> {
        observe(self, records, facts)
    }

    async fn render(
        &self,
        plan: MediaPlan,
        state: &SessionState,
        cx: &Context<'_>,
    ) -> Result<Vec<u8>, InvalidPlan> {
        let (creatives, policies) = (cx.creatives, cx.policies);
        render(
            self,
            &plan,
            &state.breaks,
            &state.facts,
            creatives,
            cx.want,
            policies,
        )
        .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pods::Overlong;
    use crate::stitch::Markers;
    use crate::types::Ad;
    use async_trait::async_trait;
    use m3u8_rs::MediaPlaylist;

    /// Creatives with fixed timings: `adN` is N seconds in 2 s segments (last one shorter),
    /// the slate 1 s segments; URIs name the rendition so alignment can be checked.
    pub struct FakeCreatives;

    #[async_trait]
    impl Creatives for FakeCreatives {
        async fn media(
            &self,
            creative: &str,
            p: Packaging,
            w: RenditionWant,
        ) -> Result<Arc<AdMedia>, String> {
            let (secs, seg) = match creative {
                "slate" => (10.0, 1.0),
                "long" => (10.0, 5.0),
                c => (
                    c.trim_start_matches("ad")
                        .parse::<f64>()
                        .map_err(|_| format!("no creative {c}"))?,
                    2.0,
                ),
            };
            let r = match (w.audio_only, w.bandwidth) {
                (true, _) => "a".to_string(),
                (false, Some(b)) => format!("v{b}"),
                _ => "v".to_string(),
            };
            let mut segments = Vec::new();
            let mut left: f64 = secs;
            while left > 0.001 {
                let d = left.min(seg);
                segments.push((format!("/ads/{creative}/{r}/{}.ts", segments.len()), d));
                left -= d;
            }
            Ok(Arc::new(AdMedia {
                segments,
                map: (p == Packaging::Fmp4).then(|| format!("/ads/{creative}/{r}/init.mp4")),
            }))
        }
        fn slate(&self) -> Option<&str> {
            Some("slate")
        }
    }

    /// An in-memory session, applied the way the proxy does (first writer wins).
    #[derive(Default, Clone)]
    pub struct Sess {
        pub state: SessionState,
    }

    impl Sess {
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
            for (id, rec) in propose(&media, &plan, &self.state, &FakeCreatives, policies)
                .await
                .unwrap()
            {
                self.state.breaks.entry(id).or_insert(rec);
            }
            for (id, f) in observe(&media, &self.state.breaks, &self.state.facts) {
                let e = self.state.facts.entry(id).or_default();
                if e.end_seq.is_none() {
                    e.end_seq = f.end_seq;
                    e.end_tagged = f.end_tagged;
                }
                e.content_discs.extend(f.content_discs);
            }
            let out = render(
                &media,
                &plan,
                &self.state.breaks,
                &self.state.facts,
                &FakeCreatives,
                want,
                policies,
            )
            .await
            .unwrap();
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
                .map(|s| {
                    let ads = pod
                        .iter()
                        .map(|c| Ad {
                            id: c.to_string(),
                            creative: c.to_string(),
                            duration: 1.0,
                        })
                        .collect();
                    (s.id.clone(), ads)
                })
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
        let (_, want) = plain
            .reload(
                &text,
                fill_all(&["ad4", "ad6"]),
                RenditionWant::default(),
                &p,
            )
            .await;
        // the same viewer played the MPD first: its DASH ledger is in the session
        let mut both = Sess::default();
        let dash = BreakRecord {
            start_seq: 0,
            start_time: Some(24.0),
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
        let (_, got) = both
            .reload(
                &text,
                fill_all(&["ad4", "ad6"]),
                RenditionWant::default(),
                &p,
            )
            .await;
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
            .reload(
                &window(10, 8, &[12], 1000),
                fill_all(&["ad4", "ad6"]),
                RenditionWant::default(),
                &p,
            )
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
            .reload(
                &window(15, 8, &[12], 1000),
                fill_all(&["ad4", "ad6"]),
                RenditionWant::default(),
                &p,
            )
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
            .reload(
                &window(10, 8, &[12], 1000),
                fill_all(&["ad4", "ad6"]),
                RenditionWant::default(),
                &ads,
            )
            .await;
        assert!(uris(&out).iter().any(|u| u.contains("/ads/")));
        let content = Policies {
            join: JoinPolicy::Content,
            ..Default::default()
        };
        let mut s = Sess::default();
        let (_, out) = s
            .reload(
                &window(10, 8, &[12], 1000),
                fill_all(&["ad4", "ad6"]),
                RenditionWant::default(),
                &content,
            )
            .await;
        assert!(
            uris(&out).iter().all(|u| u.starts_with("c/")),
            "{:?}",
            uris(&out)
        );
        // a break that starts after the viewer joined is filled either way
        let (_, later) = s
            .reload(
                &window(25, 8, &[12, 27], 1000),
                fill_all(&["ad4", "ad6"]),
                RenditionWant::default(),
                &content,
            )
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
        let (text, _) = s
            .reload(
                &window(10, 8, &[12], 1000),
                fill_all(&["ad10"]),
                RenditionWant::default(),
                &strip,
            )
            .await;
        assert!(!text.contains("CUE"), "{text}");
        let mut s = Sess::default();
        let (text, _) = s
            .reload(
                &window(10, 8, &[12], 1000),
                fill_all(&["ad10"]),
                RenditionWant::default(),
                &Policies::default(),
            )
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
        let (_, out) = s
            .reload(
                &window(10, 10, &[11], 1000),
                fill_all(&["ad14"]),
                RenditionWant::default(),
                &cut,
            )
            .await;
        let ad: Vec<String> = uris(&out)
            .into_iter()
            .filter(|u| u.contains("/ad14/"))
            .collect();
        assert_eq!(ad.len(), 5, "cut at the break's end: {ad:?}");
        let mut s = Sess::default();
        let (_, out) = s
            .reload(
                &window(10, 10, &[11], 1000),
                fill_all(&["ad14"]),
                RenditionWant::default(),
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
}
