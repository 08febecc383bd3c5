//! Server-side ad insertion for DASH: the pods a session records (cut on the content's
//! segment grid), and the MPD stitched from its records ([`crate::stitch_dash`]).

use crate::apply::{InvalidPlan, MediaPlan};

use crate::creatives::{Creatives, Packaging};

use crate::guided_dash::{Announced, DashOut};
use crate::ledger::{decided, DASH_HOST_RECORD, DASH_RECORD};
use crate::ledger::{BreakRecord, DecidedAd, Insertion, SessionState, Slot};
use crate::pods::lay_out;
use crate::policy::{JoinPolicy, Policies};
use crate::types::Ad;
use crate::types::DashMpd;

/// This session's DASH records (see [`crate::ssai::is_dash_record`]).
const START: &str = "~dash-start";
const PREROLL: &str = "~dash-preroll";
const VOD_INSERT: &str = "~dash-vod-";

fn key(break_id: &str) -> String {
    format!("{DASH_RECORD}{break_id}")
}

/// How a record shows in period ids: `1000`, `~preroll`, `~vod-0`.
fn shown(key: &str) -> Option<String> {
    key.strip_prefix(DASH_RECORD)
        .map(str::to_string)
        .or_else(|| key.strip_prefix(DASH_HOST_RECORD).map(|r| format!("~{r}")))
}
use crate::pipeline::{Context, Format};
use crate::stitch_dash::{self, DashCreative, DashOptions, DashPod, Grid};
use dash_mpd_core::MPD;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The MPD being personalized.
pub struct DashMedia<'a> {
    pub mpd: &'a MPD,
    pub view: &'a DashMpd,
}

impl DashMedia<'_> {
    /// Seconds since availability start at publish time (live), the MPD's "now".
    fn now(&self) -> Option<f64> {
        let ast = self.mpd.availabilityStartTime?;
        let at = self.mpd.publishTime.unwrap_or_else(chrono::Utc::now);
        Some((at - ast).num_milliseconds() as f64 / 1000.0)
    }

    /// Where players start a live stream: now less the suggested delay.
    fn live_edge(&self) -> f64 {
        let delay = self
            .mpd
            .suggestedPresentationDelay
            .or(self.mpd.maxSegmentDuration.map(|d| d.saturating_mul(3)))
            .map_or(6.0, |d| d.as_secs_f64());
        self.now().map_or(0.0, |n| (n - delay).max(0.0))
    }

    /// Periods ending before this (MPD time) are out of every player's reach.
    fn window_start(&self) -> Option<f64> {
        let tsb = self.mpd.timeShiftBufferDepth?.as_secs_f64();
        self.view
            .dynamic
            .then(|| self.now().map(|n| n - tsb))
            .flatten()
    }

    fn first_start(&self) -> f64 {
        self.mpd
            .periods
            .first()
            .and_then(|p| p.start)
            .map_or(0.0, |d| d.as_secs_f64())
    }
}

fn record(start: f64, duration: f64, slots: Vec<Slot>, ads: Vec<DecidedAd>) -> BreakRecord {
    BreakRecord {
        start_seq: 0,
        start_time: Some(start),
        start_ms: None,
        duration,
        joined_mid: false,
        content: slots.is_empty(),
        slots,
        ads,
    }
}

/// Slate after the laid-out slots until they cover `length` (the last one is cut by the
/// period boundary): DASH periods must not leave a gap.
async fn pad_with_slate(
    slots: &mut Vec<Slot>,
    length: f64,
    slate: &str,
    creatives: &dyn Creatives,
) -> Result<(), InvalidPlan> {
    let media = creatives
        .reference(slate, Packaging::Dash)
        .await
        .map_err(|e| InvalidPlan(format!("slate: {e}")))?;
    let n = media.segments.len();
    if n == 0 {
        return Ok(());
    }
    let mut offset: f64 = slots.iter().map(|s| s.duration).sum();
    let mut index = match slots.last() {
        Some(s) if s.creative == slate => (s.index as usize + 1) % n,
        _ => 0,
    };
    while offset < length - 0.05 && slots.len() < 10_000 {
        let d = media.segments[index].1;
        slots.push(Slot {
            creative: slate.to_string(),
            index: index as u32,
            duration: d,
            offset,
            disc: index == 0,
            ad: None,
            events: Vec::new(),
        });
        offset += d;
        index = (index + 1) % n;
    }
    Ok(())
}

/// The ads of `pod` whose DASH packaging has every kind of media the content period at `at`
/// has (an ad without audio would leave the player without an audio track); the rest are
/// skipped, and their time goes to slate.
async fn playable(pod: &[Ad], mpd: &MPD, at: f64, creatives: &dyn Creatives) -> Vec<Ad> {
    let period = mpd
        .periods
        .iter()
        .rev()
        .find(|p| p.start.is_none_or(|s| s.as_secs_f64() <= at + 1e-3))
        .or(mpd.periods.first());
    let Some(period) = period else {
        return pod.to_vec();
    };
    let need = stitch_dash::kinds(period);
    let mut out = Vec::with_capacity(pod.len());
    for ad in pod {
        match creatives.dash(&ad.creative).await {
            Ok(c) => {
                let has = stitch_dash::kinds(&c.period);
                if need.iter().all(|k| has.contains(k)) {
                    out.push(ad.clone());
                } else {
                    tracing::warn!(ad = %ad.id, creative = %ad.creative, "ad skipped: its DASH packaging lacks a media type of the content");
                }
            }
            Err(e) => {
                tracing::warn!(ad = %ad.id, creative = %ad.creative, error = %e, "ad skipped")
            }
        }
    }
    out
}

async fn lay(
    pod: &[Ad],
    length: Option<f64>,
    creatives: &dyn Creatives,
    policies: &Policies,
) -> Result<Vec<Slot>, InvalidPlan> {
    // DASH has no target duration to respect
    lay_out(
        pod,
        length,
        f64::INFINITY,
        Packaging::Dash,
        creatives,
        policies.overlong,
    )
    .await
}

/// Records to propose for what this MPD shows and the session has not recorded yet.
pub async fn propose(
    media: &DashMedia<'_>,
    plan: &MediaPlan,
    state: &SessionState,
    creatives: &dyn Creatives,
    policies: &Policies,
) -> Result<Vec<(String, BreakRecord)>, InvalidPlan> {
    let grid = Grid::of(media.mpd);
    let live = media.view.dynamic;
    let mut out = Vec::new();
    let anchor = match state.breaks.get(START).and_then(|r| r.start_time) {
        Some(a) => a,
        None => {
            let anchor = if live {
                grid.snap_down(media.live_edge())
            } else {
                media.first_start()
            };
            out.push((
                START.to_string(),
                record(anchor, 0.0, Vec::new(), Vec::new()),
            ));
            if let Some(pod) = &plan.preroll {
                let slots = lay(pod, None, creatives, policies).await?;
                out.push((
                    PREROLL.to_string(),
                    record(anchor, 0.0, slots, decided(pod, None)),
                ));
            }
            anchor
        }
    };
    if !live {
        for (k, (at, pod)) in plan.inserts.iter().enumerate() {
            let id = format!("{VOD_INSERT}{k}");
            if !state.breaks.contains_key(&id) {
                let slots = lay(pod, None, creatives, policies).await?;
                let start = grid.snap(media.first_start() + at);
                out.push((id, record(start, 0.0, slots, decided(pod, None))));
            }
        }
    }
    for b in &media.view.breaks {
        let k = key(&b.id);
        if state.breaks.contains_key(&k) || out.iter().any(|(id, _)| id == &k) {
            continue;
        }
        let start = grid.snap(b.start);
        let mut end = grid.snap(b.start + b.duration);
        if end <= start + 1e-3 {
            continue;
        }
        let joined_mid = live && start < anchor - 1e-3;
        let fill = plan
            .fills
            .iter()
            .find(|(id, _)| id == &b.id)
            .map(|(_, p)| p);
        let content = joined_mid && policies.join == JoinPolicy::Content;
        let (slots, ads) = match fill.filter(|_| !content) {
            Some(pod) => {
                let pod = playable(pod, media.mpd, b.start, creatives).await;
                let pod = &pod;
                let mut slots = lay(pod, Some(end - start), creatives, policies).await?;
                let total: f64 = slots.iter().map(|s| s.duration).sum();
                match creatives.slate() {
                    Some(slate) => {
                        pad_with_slate(&mut slots, end - start, slate, creatives).await?
                    }
                    // no slate: the content comes back where the ads end (on the grid)
                    None if total < end - start - 0.05 => {
                        end = grid.snap_down(start + total).max(start);
                        let cut = end - start;
                        slots.retain(|s| s.offset < cut - 0.05);
                    }
                    None => {}
                }
                (slots, decided(pod, state.decisions.get(&b.id)))
            }
            None => (Vec::new(), Vec::new()),
        };
        let mut rec = record(start, end - start, slots, ads);
        rec.joined_mid = joined_mid;
        out.push((k, rec));
    }
    Ok(out)
}

/// The MPD for the session's records: stitched, or (a guided session) the content with each
/// pod announced as an alternative-MPD event, or both.
pub async fn render(
    media: &DashMedia<'_>,
    mpd: MPD,
    state: &SessionState,
    cx: &Context<'_>,
) -> Result<DashOut, InvalidPlan> {
    let (records, creatives, policies) = (&state.breaks, cx.creatives, cx.policies);
    let guided = state.insertion == Insertion::Guided;
    // a guided session's pods are announced, and stitched too only with both signals
    let stitch = !guided || policies.guided.both;
    let mut pods = Vec::new();
    let mut resolved: BTreeMap<String, Arc<DashCreative>> = BTreeMap::new();
    let mut shown_ids = Vec::new();
    let mut kept = Vec::new();
    for (id, rec) in records {
        let Some(name) = shown(id) else { continue };
        if rec.content || rec.slots.is_empty() || id == START {
            continue;
        }
        let Some(start) = rec.start_time else {
            continue;
        };
        for s in rec.slots.iter().filter(|_| stitch) {
            if !resolved.contains_key(&s.creative) {
                let c = creatives
                    .dash(&s.creative)
                    .await
                    .map_err(|e| InvalidPlan(format!("break {name}: {e}")))?;
                resolved.insert(s.creative.clone(), c);
            }
        }
        let insert = !id.starts_with(DASH_RECORD);
        shown_ids.push(name);
        kept.push((id, rec, start, insert));
    }
    for ((key, rec, start, insert), name) in kept.into_iter().zip(&shown_ids) {
        pods.push(DashPod {
            id: name,
            key,
            start,
            end: if insert { start } else { start + rec.duration },
            slots: &rec.slots,
        });
    }
    let opts = DashOptions {
        markers: policies.markers,
        tracking: policies.tracking,
        listed_until: media
            .view
            .dynamic
            .then(|| Grid::of(media.mpd).listed_end())
            .flatten(),
    };
    let announced: Vec<(&str, f64, bool)> = match guided {
        true => pods
            .iter()
            .map(|p| (p.key, p.start, p.end <= p.start))
            .collect(),
        false => Vec::new(),
    };
    if !stitch {
        pods.clear();
    }
    let out = stitch_dash::render(mpd, &pods, &resolved, media.window_start(), opts)
        .map_err(InvalidPlan)?;
    let mut events = Vec::new();
    for (key, start, insert) in announced {
        let rec = &records[key];
        let has_ads = rec.slots.iter().any(|s| s.ad.is_some());
        let Some(path) = crate::guided::pod_mpd_path(key).filter(|_| has_ads) else {
            continue;
        };
        let a = Announced {
            key,
            rec,
            facts: state.facts.get(key),
            insert,
            period: stitch_dash::period_at(&out, start),
            uri: format!("{}{path}", cx.prefix),
        };
        events.extend(a.events(&policies.guided));
    }
    Ok(DashOut { mpd: out, events })
}

/// The DASH MPD as a [`Format`]: the plan drops representations and names pods, the
/// session's pods become periods.
#[async_trait::async_trait]
impl Format for DashMedia<'_> {
    /// The MPD with the plan's representations dropped, and the plan.
    type Plan = (MPD, MediaPlan);
    type Out = DashOut;

    fn plan(&self, edits: &[crate::types::Edit]) -> Result<(MPD, MediaPlan), InvalidPlan> {
        crate::apply::dash(self.mpd, self.view, edits)
    }

    async fn propose(
        &self,
        plan: &(MPD, MediaPlan),
        state: &SessionState,
        cx: &Context<'_>,
    ) -> Result<Vec<(String, BreakRecord)>, InvalidPlan> {
        propose(self, &plan.1, state, cx.creatives, cx.policies).await
    }

    async fn render(
        &self,
        plan: (MPD, MediaPlan),
        state: &SessionState,
        cx: &Context<'_>,
    ) -> Result<DashOut, InvalidPlan> {
        render(self, plan.0, state, cx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::creatives::AdMedia;
    use async_trait::async_trait;

    const LIVE: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z" publishTime="2026-01-01T00:00:40Z" timeShiftBufferDepth="PT20S" minBufferTime="PT2S" maxSegmentDuration="PT2S">
  <Period id="0" start="PT0S">
    <EventStream schemeIdUri="urn:scte:scte35:2014:xml+bin" timescale="90000">
      <Event presentationTime="2700000" duration="900000" id="1000"/>
    </EventStream>
    <AdaptationSet id="1" contentType="video" mimeType="video/mp4">
      <SegmentTemplate timescale="1000" duration="2000" startNumber="0" media="$RepresentationID$/$Number$.m4s"/>
      <Representation id="v0" bandwidth="40000"/>
    </AdaptationSet>
    <AdaptationSet id="2" contentType="audio" mimeType="audio/mp4">
      <SegmentTemplate timescale="1000" duration="2000" startNumber="0" media="$RepresentationID$/$Number$.m4s"/>
      <Representation id="a0" bandwidth="30000"/>
    </AdaptationSet>
  </Period>
</MPD>"#;

    /// `silent` has video only; `ad4` and the slate have both, in 2 s and 1 s segments.
    struct Catalog(MPD);

    #[async_trait]
    impl Creatives for Catalog {
        async fn media(
            &self,
            creative: &str,
            _p: Packaging,
            _w: crate::creatives::RenditionWant,
        ) -> Result<Arc<AdMedia>, String> {
            let (n, d) = if creative == "slate" {
                (10, 1.0)
            } else {
                (2, 2.0)
            };
            Ok(Arc::new(AdMedia {
                segments: (0..n).map(|_| (String::new(), d)).collect(),
                map: None,
            }))
        }
        fn slate(&self) -> Option<&str> {
            Some("slate")
        }
        async fn dash(&self, creative: &str) -> Result<Arc<DashCreative>, String> {
            let mut period = self.0.periods[0].clone();
            period.event_streams.clear();
            if creative == "silent" {
                period.adaptations.truncate(1);
            }
            Ok(Arc::new(DashCreative {
                base: format!("/ads/{creative}/"),
                period,
            }))
        }
    }

    fn ad(c: &str) -> Ad {
        Ad {
            id: c.into(),
            creative: c.into(),
            duration: 4.0,
        }
    }

    #[tokio::test]
    async fn ads_missing_a_media_type_are_skipped_and_the_break_is_covered() {
        let mpd = dash_mpd_core::parse(LIVE).unwrap();
        let view = crate::view::dash(&mpd);
        let media = DashMedia {
            mpd: &mpd,
            view: &view,
        };
        let plan = MediaPlan {
            fills: vec![("1000".into(), vec![ad("silent"), ad("ad4")])],
            ..Default::default()
        };
        let catalog = Catalog(mpd.clone());
        let state = SessionState::default();
        let out = propose(&media, &plan, &state, &catalog, &Policies::default())
            .await
            .unwrap();
        let (_, rec) = out.iter().find(|(id, _)| id == "dash:1000").unwrap();
        assert_eq!(rec.start_time, Some(30.0));
        assert_eq!(rec.duration, 10.0);
        let creatives: Vec<&str> = rec.slots.iter().map(|s| s.creative.as_str()).collect();
        assert_eq!(
            creatives,
            ["ad4", "ad4", "slate", "slate", "slate", "slate", "slate", "slate"]
        );
        assert_eq!(rec.ads.len(), 1, "only the playable ad is recorded");
        let covered: f64 = rec.slots.iter().map(|s| s.duration).sum();
        assert!(
            covered >= 10.0,
            "no gap before the content returns: {covered}"
        );
        // and it renders: content, the ad, the slate, content
        let mut records: BTreeMap<String, BreakRecord> = out.into_iter().collect();
        records.retain(|id, _| id == "dash:1000");
        let policies = Policies::default();
        let cx = Context {
            creatives: &catalog,
            policies: &policies,
            want: Default::default(),
            prefix: "/t/~s",
            now_ms: 0,
        };
        let state = SessionState {
            breaks: records,
            ..Default::default()
        };
        let out = render(&media, mpd.clone(), &state, &cx).await.unwrap();
        assert!(out.events.is_empty(), "stitched: nothing announced");
        let ids: Vec<_> = out
            .mpd
            .periods
            .iter()
            .filter_map(|p| p.id.as_deref())
            .collect();
        assert_eq!(ids, ["0", "1000~ad0", "1000~ad1", "0~1000"]);
    }
}
