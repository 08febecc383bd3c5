//! Server-side ad insertion for one session and one media playlist request: which breaks the
//! session records for the first time (and how their pods are laid out), what the window
//! teaches about recorded breaks, and the stitched playlist for this rendition.

use crate::apply::{InvalidPlan, MediaPlan};

use crate::creatives::{AdMedia, Creatives, Packaging, RenditionWant};

use crate::guided::{self, Interstitial};
use crate::ledger::decided;
pub use crate::ledger::{
    is_break_id, is_dash_record, DASH_HOST_RECORD, DASH_RECORD, PREROLL, START, VOD_INSERT,
};
use crate::ledger::{BreakFacts, BreakRecord, DecidedAd, Insertion, SessionState};
use crate::pipeline::{Context, Format};
use crate::pods::lay_out;
pub use crate::policy::{JoinPolicy, Policies};
use crate::stitch::{Announce, ContentEdits, Placed, SlotUri, Stitch};
use crate::view::{BreakSpan, HlsMediaView};
use m3u8_rs::MediaPlaylist;
use std::collections::{BTreeMap, BTreeSet};
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

    /// Window segment `i`'s program date-time, Unix ms: the origin's (carried over the
    /// durations from the nearest tagged segment), else synthesized from `anchor` (the
    /// session's start: its first segment and when it was seen). Live windows count the
    /// segments between the anchor and the window at the window's median duration, so every
    /// reload puts a segment at the same instant while durations are steady.
    pub fn pdt_ms(&self, i: usize, anchor: Option<(u64, i64)>) -> Option<i64> {
        let segs = &self.playlist.segments;
        let ms = |a: usize, b: usize| -> i64 {
            (segs[a.min(segs.len())..b.min(segs.len())]
                .iter()
                .map(|s| s.duration as f64)
                .sum::<f64>()
                * 1000.0)
                .round() as i64
        };
        let tagged = |j: usize| segs[j].program_date_time.map(|t| t.timestamp_millis());
        if let Some(j) = (0..segs.len().min(i + 1))
            .rev()
            .find(|j| tagged(*j).is_some())
        {
            return Some(tagged(j)? + ms(j, i));
        }
        if let Some(j) = (i..segs.len()).find(|j| tagged(*j).is_some()) {
            return Some(tagged(j)? - ms(i, j));
        }
        let (seq, at) = anchor?;
        let before = self.seq(0) as i64 - seq as i64;
        let mut d: Vec<f64> = segs.iter().map(|s| s.duration as f64).collect();
        d.sort_by(f64::total_cmp);
        let nominal = d.get(d.len() / 2).copied().unwrap_or(0.0);
        Some(at + (before as f64 * nominal * 1000.0).round() as i64 + ms(0, i))
    }

    /// Whether the origin dates its segments.
    fn dated(&self) -> bool {
        self.playlist
            .segments
            .iter()
            .any(|s| s.program_date_time.is_some())
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
        start_ms: None,
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
    cx: &Context<'_>,
) -> Result<Vec<(String, BreakRecord)>, InvalidPlan> {
    let (creatives, policies) = (cx.creatives, cx.policies);
    let mut out = propose_records(media, plan, state, creatives, policies).await?;
    if state.insertion == Insertion::Guided {
        date_records(media, state, &mut out, cx.now_ms);
    }
    Ok(out)
}

/// A guided session's new records get their `START-DATE`, fixed from now on; its start
/// record, the instant synthesized date-times count from.
fn date_records(
    media: &Media<'_>,
    state: &SessionState,
    out: &mut [(String, BreakRecord)],
    now_ms: i64,
) {
    if let Some((_, start)) = out.iter_mut().find(|(id, _)| id == START) {
        start.start_ms = Some(now_ms);
    }
    let anchor = state
        .breaks
        .get(START)
        .or_else(|| out.iter().find(|(id, _)| id == START).map(|(_, r)| r))
        .and_then(|r| Some((r.start_seq, r.start_ms?)));
    let n = media.playlist.segments.len();
    for (id, rec) in out.iter_mut() {
        if id == START {
            continue;
        }
        let span = media.view.spans.iter().find(|s| &s.id == id);
        rec.start_ms = match span {
            Some(span) => media
                .pdt_ms(span.first, anchor)
                .map(|t| t - (span.elapsed * 1000.0).round() as i64),
            None => {
                let i = rec.start_seq.saturating_sub(media.playlist.media_sequence) as usize;
                media.pdt_ms(i.min(n), anchor)
            }
        };
    }
}

async fn propose_records(
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
                start_ms: None,
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

/// What this window shows about recorded breaks that the session does not know yet (a
/// guided session also learns how long a break's content lasted).
pub fn observe(media: &Media<'_>, state: &SessionState) -> Vec<(String, BreakFacts)> {
    let (records, known) = (&state.breaks, &state.facts);
    let guided = state.insertion == Insertion::Guided;
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
            if guided {
                let seen: f64 = segs[span.first..span.end]
                    .iter()
                    .map(|s| s.duration as f64)
                    .sum();
                f.secs = Some(span.elapsed + seen);
            }
        }
        if f.end_seq.is_some() || !f.content_discs.is_empty() {
            out.push((id.to_string(), f));
        }
    }
    out
}

/// Two renditions racing to record one break under different signals: the first id wins.
fn shadowed(records: &BTreeMap<String, BreakRecord>, id: &str, rec: &BreakRecord) -> bool {
    is_break_id(id)
        && records
            .range::<str, _>((std::ops::Bound::Unbounded, std::ops::Bound::Excluded(id)))
            .any(|(other, r)| is_break_id(other) && r.start_seq == rec.start_seq)
}

static NO_DISCS: BTreeSet<u64> = BTreeSet::new();

/// The session's filled breaks and inserts, with this rendition's URIs for their slots.
async fn place<'r>(
    media: &Media<'_>,
    state: &'r SessionState,
    creatives: &dyn Creatives,
    want: RenditionWant,
) -> Result<Vec<Placed<'r>>, InvalidPlan> {
    let packaging = media.packaging();
    let mut placed = Vec::new();
    let mut resolved: BTreeMap<String, Arc<AdMedia>> = BTreeMap::new();
    for (id, rec) in &state.breaks {
        if rec.content || rec.slots.is_empty() || id == START || is_dash_record(id) {
            continue;
        }
        let insert = !is_break_id(id);
        if shadowed(&state.breaks, id, rec) {
            continue;
        }
        let f = state.facts.get(id);
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
                f.and_then(|f| f.end_seq)
            },
            end_tagged: f.is_some_and(|f| f.end_tagged),
            content_discs: f.map_or(&NO_DISCS, |f| &f.content_discs),
            slots: &rec.slots,
            uris,
        });
    }
    Ok(placed)
}

/// Where a guided session's synthesized date-times count from: its start record.
fn anchor(state: &SessionState) -> Option<(u64, i64)> {
    state
        .breaks
        .get(START)
        .and_then(|r| Some((r.start_seq, r.start_ms?)))
}

/// A guided session's interstitials: one `EXT-X-DATERANGE` per recorded pod whose content
/// (or the content it precedes) is still in or after the window.
fn interstitials(media: &Media<'_>, state: &SessionState, cx: &Context<'_>) -> Vec<Announce> {
    let pack = media.packaging();
    let live = media.view.view.live;
    let seq0 = media.playlist.media_sequence;
    let after = seq0 + media.playlist.segments.len() as u64;
    let mut out = Vec::new();
    for (id, rec) in &state.breaks {
        let has_ads = rec.slots.iter().any(|s| s.ad.is_some());
        if id == START || is_dash_record(id) || rec.content || !has_ads {
            continue;
        }
        let (Some(start_ms), false) = (rec.start_ms, shadowed(&state.breaks, id, rec)) else {
            continue;
        };
        let facts = state.facts.get(id);
        let kind = guided::kind_of(id, !live && rec.start_seq >= after);
        let end = match kind {
            guided::Kind::Break => facts.and_then(|f| f.end_seq).unwrap_or(u64::MAX),
            _ => rec.start_seq + 1,
        };
        let Some(path) = guided::asset_list_path(pack, id).filter(|_| end > seq0) else {
            continue;
        };
        let i = Interstitial {
            id,
            kind,
            rec,
            facts,
            start_ms,
            asset_list: format!("{}{path}", cx.prefix),
            live,
        };
        out.push(Announce {
            at: Some(rec.start_seq),
            line: i.line(&cx.policies.guided),
        });
    }
    out
}

/// The playlist for one rendition, from the session's records and facts: stitched, or (a
/// guided session) the content with the breaks announced as interstitials, or both signals.
pub async fn render(
    media: &Media<'_>,
    plan: &MediaPlan,
    state: &SessionState,
    cx: &Context<'_>,
) -> Result<Vec<u8>, InvalidPlan> {
    let policies = cx.policies;
    let guided = state.insertion == Insertion::Guided;
    let placed = if guided && !policies.guided.both {
        Vec::new()
    } else {
        place(media, state, cx.creatives, cx.want).await?
    };
    let (announce, first_pdt) = if guided {
        let pdt = (!media.dated())
            .then(|| media.pdt_ms(0, anchor(state)))
            .flatten();
        (interstitials(media, state, cx), pdt)
    } else {
        (Vec::new(), None)
    };
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
        announce: &announce,
        first_pdt,
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
        propose(self, plan, state, cx).await
    }

    fn observe(&self, state: &SessionState) -> Vec<(String, BreakFacts)> {
        observe(self, state)
    }

    async fn render(
        &self,
        plan: MediaPlan,
        state: &SessionState,
        cx: &Context<'_>,
    ) -> Result<Vec<u8>, InvalidPlan> {
        render(self, &plan, state, cx).await
    }
}

#[cfg(test)]
pub(crate) mod tests;
