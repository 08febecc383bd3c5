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
pub(crate) mod tests;
