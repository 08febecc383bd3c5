//! Stitching ad pods into a DASH MPD as periods (ISO/IEC 23009-1, SCTE 214).
//!
//! The content timeline is cut at each recorded pod: content before it keeps its period,
//! the pod plays as one period per run of creative segments, and the content after it
//! continues in a new period whose `presentationTimeOffset` (and `startNumber`) pick up
//! exactly where the pod ends. A pod that replaces content (a signalled break) keeps the
//! timeline; an inserted pod (pre-roll, VOD mid-roll) shifts everything after it.
//!
//! Every period's id, start and offsets derive from the session's records only, so a
//! published period never changes on reload; every break is cut on the content's segment
//! grid, so no period boundary leaves a gap.

use crate::dash::{content_type as kind, effective_template};
use crate::ledger::Slot;
use crate::stitch::Markers;
use dash_mpd_core::{BaseURL, EventStream, Period, SegmentTemplate, SegmentTimeline, MPD, S};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

mod pod;
mod timeline;
pub use pod::{period_at, pod_mpd};
pub use timeline::{creative_timing, kinds, Grid};
use timeline::{expand, list_segments, rebase, source_spans};

/// An ad creative packaged for DASH, as the viewer reaches it.
#[derive(Debug)]
pub struct DashCreative {
    /// Where the creative's relative segment URLs resolve: through the proxy, in the session.
    pub base: String,
    /// Its (first) period.
    pub period: Period,
}

/// A pod placed on the content timeline (seconds of MPD time, on the content's grid).
#[derive(Debug, Clone)]
pub struct DashPod<'a> {
    /// How its periods are named (`{id}~ad{k}`, and `{period}~{id}` after it).
    pub id: &'a str,
    /// Its record in the session (ad segment URLs name it, for beacons).
    pub key: &'a str,
    pub start: f64,
    /// The content it replaces ends here; an inserted pod has `end == start`.
    pub end: f64,
    pub slots: &'a [Slot],
}

impl DashPod<'_> {
    fn is_insert(&self) -> bool {
        self.end <= self.start
    }

    fn length(&self) -> f64 {
        if self.is_insert() {
            self.slots.iter().map(|s| s.duration).sum()
        } else {
            self.end - self.start
        }
    }
}

/// How the stitched MPD is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct DashOptions {
    pub markers: Markers,
    /// Ad segment URLs carry the break and slot so their requests fire beacons.
    pub tracking: bool,
    /// A live MPD whose content lists its segments (SegmentTimeline): MPD time up to which
    /// they are listed. Ad periods replacing content then list theirs too, and only up to
    /// here, so they become available at the pace of the content they replace. (With a
    /// duration template, players derive availability from the clock instead, and they
    /// lag listed segments by up to `maxSegmentDuration`: a player reaching the end of a
    /// clock-driven ad period while the next content period is already listed skips the
    /// ad's last segments: Shaka did, a hole of one slate segment per break.)
    pub listed_until: Option<f64>,
}

/// The source period `p` (spanning from `ps`), re-cut to show content `from..to` as
/// period `id` starting at `out_start`.
fn content_period(
    p: &Period,
    ps: f64,
    id: String,
    out_start: f64,
    from: f64,
    to: f64,
    markers: Markers,
) -> Option<Period> {
    let mut out = p.clone();
    out.id = Some(id);
    out.start = Some(secs(out_start));
    out.duration = None;
    let skip = from - ps;
    let keep = to.is_finite().then_some(to - from);
    let mut any = false;
    if let Some(t) = out.SegmentTemplate.as_mut() {
        any |= rebase(t, skip, keep);
    }
    for a in &mut out.adaptations {
        if let Some(t) = a.SegmentTemplate.as_mut() {
            any |= rebase(t, skip, keep);
        }
        for r in &mut a.representations {
            if let Some(t) = r.SegmentTemplate.as_mut() {
                any |= rebase(t, skip, keep);
            }
        }
    }
    if !any {
        return None;
    }
    out.event_streams = events_in(p, ps, from, to, markers);
    Some(out)
}

/// The period's event streams, re-based to a period showing content `from..to`, with only
/// the events that start there (ad markers dropped when stripping).
fn events_in(p: &Period, ps: f64, from: f64, to: f64, markers: Markers) -> Vec<EventStream> {
    p.event_streams
        .iter()
        .filter(|es| !(markers == Markers::Strip && es.schemeIdUri.starts_with("urn:scte:scte35")))
        .filter_map(|es| {
            let ets = es.timescale.unwrap_or(1).max(1) as f64;
            let pto = es.presentationTimeOffset.unwrap_or(0);
            let new_pto = pto + ((from - ps) * ets).round() as u64;
            let mut es = es.clone();
            es.event.retain(|ev| {
                let pt = ev.presentationTime.unwrap_or(0);
                let at = ps + (pt as f64 - pto as f64) / ets;
                pt >= new_pto && at >= from - 1e-3 && at < to - 1e-3
            });
            es.presentationTimeOffset = (new_pto > 0).then_some(new_pto);
            (!es.event.is_empty()).then_some(es)
        })
        .collect()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// A run of a pod's slots that plays as one period: consecutive segments of one creative.
#[derive(Debug)]
struct Run {
    first_slot: usize,
    creative: String,
    first_index: u32,
    offset: f64,
}

fn runs(slots: &[Slot]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (k, s) in slots.iter().enumerate() {
        let continues = k > 0 && {
            let p = &slots[k - 1];
            p.creative == s.creative && p.ad == s.ad && p.index + 1 == s.index
        };
        if !continues {
            out.push(Run {
                first_slot: k,
                creative: s.creative.clone(),
                first_index: s.index,
                offset: s.offset,
            });
        }
    }
    out
}

/// The ad period for one run: the content period's adaptation sets and representations
/// (same ids, so players switch nothing but the media), each with the creative's closest
/// rendition as its own template.
/// `listed`: list the period's segments in a timeline, those ending by this many seconds into
/// the period only (`None`: keep the creative's addressing). `Ok(None)`: nothing listed yet.
#[allow(clippy::too_many_arguments)]
fn ad_period(
    shape: &Period,
    creative: &DashCreative,
    run: &Run,
    pod: &str,
    id: String,
    start: f64,
    length: f64,
    tracking: bool,
    listed: Option<f64>,
) -> Result<Option<Period>, String> {
    let c = &creative.period;
    let mut adaptations = Vec::with_capacity(shape.adaptations.len());
    for ca in &shape.adaptations {
        let k = kind(ca);
        let Some(aa) = c.adaptations.iter().find(|a| kind(a) == k) else {
            return Err(format!(
                "creative {:?} has no {k} adaptation set",
                run.creative
            ));
        };
        let mut out = aa.clone();
        out.id = ca.id.clone();
        out.lang = ca.lang.clone().or(out.lang);
        out.SegmentTemplate = None;
        out.representations = Vec::with_capacity(ca.representations.len());
        for cr in &ca.representations {
            let want = cr.bandwidth.unwrap_or(0);
            let pick = aa
                .representations
                .iter()
                .find(|r| r.id.is_some() && r.id == cr.id)
                .or_else(|| {
                    let h = cr.height?;
                    aa.representations.iter().find(|r| r.height == Some(h))
                })
                .or_else(|| {
                    aa.representations
                        .iter()
                        .filter(|r| r.bandwidth.unwrap_or(0) <= want + want / 10)
                        .max_by_key(|r| r.bandwidth.unwrap_or(0))
                })
                .or_else(|| aa.representations.iter().min_by_key(|r| r.bandwidth))
                .ok_or_else(|| format!("creative {:?} has no {k} representation", run.creative))?;
            let mut t = effective_template(c, aa, Some(pick))
                .ok_or_else(|| format!("creative {:?} has no SegmentTemplate", run.creative))?;
            let rid = pick.id.clone().unwrap_or_default();
            for field in [&mut t.media, &mut t.initialization] {
                if let Some(v) = field.as_mut() {
                    *v = v.replace("$RepresentationID$", &rid);
                }
            }
            let ts = t.timescale.unwrap_or(1).max(1) as f64;
            let skip = match (&t.SegmentTimeline, t.duration) {
                (Some(tl), _) => expand(tl, None)
                    .get(run.first_index as usize)
                    .map_or(0.0, |(st, _)| {
                        (*st as f64 - t.presentationTimeOffset.unwrap_or(0) as f64) / ts
                    }),
                (None, Some(d)) => run.first_index as f64 * d / ts,
                _ => 0.0,
            };
            rebase(&mut t, skip, None);
            if let Some(until) = listed {
                if !list_segments(&mut t, length, until) {
                    return Ok(None);
                }
            }
            if tracking {
                if let (Some(m), Some(n)) = (t.media.as_mut(), t.startNumber) {
                    if m.contains("$Number$") {
                        let sep = if m.contains('?') { '&' } else { '?' };
                        *m = format!("{m}{sep}mf_b={pod}&mf_s={}&mf_n={n}", run.first_slot);
                    }
                }
            }
            let mut r = pick.clone();
            r.id = cr.id.clone();
            r.SegmentTemplate = Some(t);
            r.BaseURL.clear();
            out.representations.push(r);
        }
        adaptations.push(out);
    }
    Ok(Some(Period {
        id: Some(id),
        start: Some(secs(start)),
        duration: Some(secs(length)),
        BaseURL: vec![BaseURL {
            base: creative.base.clone(),
            ..Default::default()
        }],
        adaptations,
        ..Default::default()
    }))
}

/// The origin MPD (owned: it is re-cut in place) with the session's pods stitched in. `creatives` holds every creative the
/// pods' slots name; `window_start` (MPD time) drops periods that ended before it.
pub fn render(
    mut mpd: MPD,
    pods: &[DashPod],
    creatives: &BTreeMap<String, Arc<DashCreative>>,
    window_start: Option<f64>,
    opts: DashOptions,
) -> Result<MPD, String> {
    // Long: the periods are cut in order (content, pods, content), all steps sharing one cursor.
    let mut pods: Vec<&DashPod> = pods.iter().collect();
    // inserts before replacements at the same point; then by id, for a stable order
    pods.sort_by(|a, b| {
        a.start
            .total_cmp(&b.start)
            .then(b.is_insert().cmp(&a.is_insert()))
            .then(a.id.cmp(b.id))
    });
    let spans = source_spans(&mpd);
    let source = std::mem::take(&mut mpd.periods);
    let mut periods = Vec::new();
    let mut shift = 0.0;
    let mut pod_iter = pods.into_iter().peekable();
    for (p, &(ps, pe)) in source.iter().zip(&spans) {
        let pid = p.id.clone().unwrap_or_else(|| format!("{ps}"));
        let mut pos = ps;
        let mut cur_id = pid.clone();
        while let Some(pod) = pod_iter.next_if(|d| d.start < pe - 1e-3) {
            if pod.start < pos - 1e-3 {
                // overlaps content already replaced: not placed
                tracing::debug!(pod = pod.id, "pod overlaps an earlier one: skipped");
                continue;
            }
            if pod.start > pos + 1e-3 {
                periods.extend(content_period(
                    p,
                    ps,
                    cur_id.clone(),
                    pos + shift,
                    pos,
                    pod.start,
                    opts.markers,
                ));
            }
            let out_start = pod.start + shift;
            let length = pod.length();
            let all = runs(pod.slots);
            for (k, run) in all.iter().enumerate() {
                let creative = creatives
                    .get(&run.creative)
                    .ok_or_else(|| format!("creative {:?} not resolved", run.creative))?;
                let run_end = all.get(k + 1).map_or(length, |n| n.offset);
                let run_len = (run_end.min(length) - run.offset).max(0.0);
                if run_len <= 1e-3 {
                    continue;
                }
                // replaced content: the ads are listed as far as the content they replace
                let listed = match opts.listed_until {
                    Some(e) if !pod.is_insert() => Some(e - (pod.start + run.offset)),
                    _ => None,
                };
                let Some(mut period) = ad_period(
                    p,
                    creative,
                    run,
                    pod.key,
                    format!("{}~ad{k}", pod.id),
                    out_start + run.offset,
                    run_len,
                    opts.tracking,
                    listed,
                )?
                else {
                    break; // nothing of this run is out yet, so nothing after it either
                };
                if k == 0 && !pod.is_insert() {
                    // the break's signal, with its first ad
                    period.event_streams = events_in(p, ps, pod.start, pod.end, opts.markers);
                }
                periods.push(period);
            }
            if pod.is_insert() {
                shift += length;
                pos = pod.start;
            } else {
                pos = pod.end;
            }
            cur_id = format!("{pid}~{}", pod.id);
        }
        if pos < pe - 1e-3 {
            periods.extend(content_period(
                p,
                ps,
                cur_id,
                pos + shift,
                pos,
                pe,
                opts.markers,
            ));
        }
    }
    // periods that ended before the window: gone for every player
    if let Some(w) = window_start {
        let ends: Vec<f64> = periods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                periods
                    .get(i + 1)
                    .and_then(|n| n.start)
                    .or_else(|| p.duration.map(|d| p.start.unwrap_or_default() + d))
                    .map_or(f64::INFINITY, |e| e.as_secs_f64())
            })
            .collect();
        let keep_from = ends
            .iter()
            .position(|e| *e > w)
            .unwrap_or(periods.len().saturating_sub(1));
        periods.drain(..keep_from);
    }
    let mut out = mpd;
    if let Some(d) = out.mediaPresentationDuration {
        out.mediaPresentationDuration = Some(secs(d.as_secs_f64() + shift));
    }
    out.periods = periods;
    Ok(out)
}

#[cfg(test)]
mod tests;
