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

/// Seconds each source period spans: from its start to the next one's (or the presentation's
/// end).
fn source_spans(mpd: &MPD) -> Vec<(f64, f64)> {
    let mut starts = Vec::with_capacity(mpd.periods.len());
    let mut prev_end = 0.0;
    for p in &mpd.periods {
        let s = p.start.map(|d| d.as_secs_f64()).unwrap_or(prev_end);
        prev_end = s + p.duration.map_or(0.0, |d| d.as_secs_f64());
        starts.push(s);
    }
    let total = mpd
        .mediaPresentationDuration
        .map_or(f64::INFINITY, |d| d.as_secs_f64());
    (0..starts.len())
        .map(|i| {
            let own_end = mpd.periods[i].duration.map(|d| starts[i] + d.as_secs_f64());
            let end = starts.get(i + 1).copied().or(own_end).unwrap_or(total);
            // out-of-order starts or a presentation shorter than a period's start: an empty
            // span, never an inverted one
            (starts[i], end.max(starts[i]))
        })
        .collect()
}

/// Where the content's segments start, seconds of MPD time: cuts are snapped to it so no
/// period boundary splits a segment.
#[derive(Debug, Default)]
pub struct Grid {
    /// Per source period: its span and its boundaries.
    periods: Vec<(f64, f64, Boundaries)>,
}

#[derive(Debug)]
enum Boundaries {
    /// A numbered template: every `step` seconds from the period start.
    Regular(f64),
    /// A timeline: the listed boundaries; beyond them, at the first and last step.
    Listed(Vec<f64>),
    /// Nothing to go by: cuts anywhere.
    Free,
}

impl Grid {
    pub fn of(mpd: &MPD) -> Grid {
        let mut g = Grid::default();
        for ((ps, pe), p) in source_spans(mpd).into_iter().zip(&mpd.periods) {
            // the first video set (else the first set) defines the grid
            let t = p
                .adaptations
                .iter()
                .find(|a| kind(a) == "video")
                .or(p.adaptations.first())
                .and_then(|a| effective_template(p, a, a.representations.first()));
            let b = match t {
                Some(t) => {
                    let ts = t.timescale.unwrap_or(1).max(1) as f64;
                    let pto = t.presentationTimeOffset.unwrap_or(0) as f64;
                    match (&t.SegmentTimeline, t.duration) {
                        (Some(tl), _) => {
                            let mut v = Vec::new();
                            for (st, d) in expand(tl, None) {
                                v.push(ps + (st as f64 - pto) / ts);
                                v.push(ps + ((st + d) as f64 - pto) / ts);
                            }
                            v.dedup_by(|a, b| (*a - *b).abs() < 1e-6);
                            if v.len() >= 2 {
                                Boundaries::Listed(v)
                            } else {
                                Boundaries::Free
                            }
                        }
                        (None, Some(d)) if d > 0.0 => Boundaries::Regular(d / ts),
                        _ => Boundaries::Free,
                    }
                }
                None => Boundaries::Free,
            };
            g.periods.push((ps, pe, b));
        }
        g
    }

    /// Where the last period's listed segments end (a timeline; `None` for templates).
    pub fn listed_end(&self) -> Option<f64> {
        match self.periods.last() {
            Some((_, _, Boundaries::Listed(v))) => v.last().copied(),
            _ => None,
        }
    }

    /// The boundary nearest `t` (`down`: the last one at or before it).
    fn at(&self, t: f64, down: bool) -> f64 {
        let pick = |k: f64| if down { (k + 1e-6).floor() } else { k.round() };
        let Some((ps, pe, b)) = self
            .periods
            .iter()
            .rev()
            .find(|(ps, _, _)| *ps <= t + 1e-6)
            .or(self.periods.first())
        else {
            return t;
        };
        let snapped = match b {
            Boundaries::Regular(step) => ps + pick((t - ps) / step) * step,
            Boundaries::Listed(v) => {
                let (first, last) = (v[0], v[v.len() - 1]);
                if t < first {
                    let step = v[1] - v[0];
                    let k = (first - t) / step;
                    first - if down { (k - 1e-6).ceil() } else { k.round() } * step
                } else if t > last {
                    let step = last - v[v.len() - 2];
                    last + pick((t - last) / step) * step
                } else {
                    let i = v.partition_point(|g| *g <= t + 1e-6);
                    let before = v[i.saturating_sub(1)];
                    match v.get(i) {
                        Some(a) if !down && a - t < t - before => *a,
                        _ => before,
                    }
                }
            }
            Boundaries::Free => t,
        };
        // not `clamp`: it panics on an inverted or NaN range, which origin MPDs can make
        snapped.max(*ps).min(pe.max(*ps))
    }

    pub fn snap(&self, t: f64) -> f64 {
        self.at(t, false)
    }

    pub fn snap_down(&self, t: f64) -> f64 {
        self.at(t, true)
    }
}

/// The content types of a period's adaptation sets (`video`, `audio`, `text`...).
pub fn kinds(p: &Period) -> Vec<&str> {
    let mut k: Vec<&str> = p.adaptations.iter().map(kind).collect();
    k.sort_unstable();
    k.dedup();
    k
}

/// Segment durations of a creative's first period, shared by all its representations (an
/// error if they do not line up: every rendition of a viewer's stream gets the same timing).
pub fn creative_timing(mpd: &MPD) -> Result<Vec<f64>, String> {
    let p = mpd
        .periods
        .first()
        .ok_or("the creative's MPD has no period")?;
    let length = p
        .duration
        .or(mpd.mediaPresentationDuration)
        .map(|d| d.as_secs_f64());
    let mut reference: Option<Vec<f64>> = None;
    for a in &p.adaptations {
        for r in &a.representations {
            let t = effective_template(p, a, Some(r)).ok_or("no SegmentTemplate")?;
            let ts = t.timescale.unwrap_or(1).max(1) as f64;
            let durations: Vec<f64> = match (&t.SegmentTimeline, t.duration) {
                (Some(tl), _) => expand(tl, None)
                    .into_iter()
                    .map(|(_, d)| d as f64 / ts)
                    .collect(),
                (None, Some(d)) if d > 0.0 => {
                    let len = length.ok_or("a numbered template needs the creative's duration")?;
                    let step = d / ts;
                    let n = ((len / step) - 1e-3).ceil().clamp(0.0, 10_000.0) as usize;
                    (0..n).map(|k| step.min(len - k as f64 * step)).collect()
                }
                _ => return Err("a SegmentTemplate without timing".into()),
            };
            match &reference {
                None => reference = Some(durations),
                Some(r) => {
                    let lines_up = r.len() == durations.len()
                        && r.iter().zip(&durations).all(|(a, b)| (a - b).abs() < 0.1);
                    if !lines_up {
                        return Err("its representations do not line up".into());
                    }
                }
            }
        }
    }
    match reference {
        Some(r) if !r.is_empty() => Ok(r),
        _ => Err("the creative has no segments".into()),
    }
}

/// `(t, d)` of every segment of a timeline; an open-ended repeat stops at `until`.
fn expand(tl: &SegmentTimeline, until: Option<u64>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut t = 0u64;
    for (i, s) in tl.segments.iter().enumerate() {
        if let Some(st) = s.t {
            t = st;
        }
        if s.d == 0 {
            continue;
        }
        let repeats = match s.r {
            Some(r) if r >= 0 => r as u64,
            Some(_) => {
                // to the next S's start, or the end we were given
                let end = tl.segments.get(i + 1).and_then(|n| n.t).or(until);
                end.map_or(0, |e| e.saturating_sub(t) / s.d)
                    .saturating_sub(1)
            }
            None => 0,
        };
        for _ in 0..=repeats.min(100_000) {
            out.push((t, s.d));
            t += s.d;
        }
    }
    out
}

fn compress(segs: &[(u64, u64)]) -> SegmentTimeline {
    let mut out: Vec<S> = Vec::new();
    let mut next = None;
    for &(t, d) in segs {
        let contiguous = next == Some(t);
        match out.last_mut() {
            Some(last) if contiguous && last.d == d => {
                last.r = Some(last.r.unwrap_or(0) + 1);
            }
            _ => out.push(S {
                t: (!contiguous).then_some(t),
                d,
                ..Default::default()
            }),
        }
        next = Some(t + d);
    }
    SegmentTimeline { segments: out }
}

/// Re-bases a template to start `skip` seconds into what it addressed, keeping (with a
/// timeline) the segments whose middle falls before `keep` seconds after that.
/// Returns false when no segment is left.
fn rebase(t: &mut SegmentTemplate, skip: f64, keep: Option<f64>) -> bool {
    let ts = t.timescale.unwrap_or(1).max(1);
    let pto = t.presentationTimeOffset.unwrap_or(0);
    if let Some(tl) = t.SegmentTimeline.take() {
        let start = pto + (skip * ts as f64).round() as u64;
        let end = keep.map(|k| start + (k * ts as f64).round() as u64);
        let all = expand(&tl, end);
        let kept: Vec<(u64, u64)> = all
            .iter()
            .copied()
            .filter(|(st, d)| st + d / 2 >= start && end.is_none_or(|e| st + d / 2 < e))
            .collect();
        let dropped_before = all.iter().filter(|(st, d)| st + d / 2 < start).count() as u64;
        if t.media.as_deref().is_some_and(|m| m.contains("$Number")) {
            t.startNumber = Some(t.startNumber.unwrap_or(1) + dropped_before);
        }
        t.presentationTimeOffset = Some(start);
        let empty = kept.is_empty();
        t.SegmentTimeline = Some(compress(&kept));
        !empty
    } else if let Some(d) = t.duration.filter(|d| *d > 0.0) {
        let k = (skip * ts as f64 / d).round() as u64;
        t.startNumber = Some(t.startNumber.unwrap_or(1) + k);
        t.presentationTimeOffset = Some(pto + (k as f64 * d).round() as u64);
        true
    } else {
        true
    }
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

/// Rewrites a (re-based) template to list its segments of the first `length` seconds in a
/// timeline, the last one cut at `length`, and only those that end by `until` seconds.
/// Returns false when none does yet.
fn list_segments(t: &mut SegmentTemplate, length: f64, until: f64) -> bool {
    let ts = t.timescale.unwrap_or(1).max(1);
    let pto = t.presentationTimeOffset.unwrap_or(0);
    let end = pto + (length * ts as f64).round() as u64;
    let all: Vec<(u64, u64)> = match (&t.SegmentTimeline, t.duration) {
        (Some(tl), _) => expand(tl, Some(end)),
        (None, Some(d)) if d >= 1.0 => {
            let d = d.round() as u64;
            (0..=(end.saturating_sub(pto) / d).min(100_000))
                .map(|k| (pto + k * d, d))
                .collect()
        }
        _ => return true,
    };
    let limit = pto + ((until.max(0.0) * ts as f64) + 0.5).floor() as u64;
    let listed: Vec<(u64, u64)> = all
        .into_iter()
        .filter(|(st, _)| *st >= pto && *st < end)
        .map(|(st, d)| (st, d.min(end - st)))
        .filter(|(st, d)| st + d <= limit)
        .collect();
    if listed.is_empty() {
        return false;
    }
    t.duration = None;
    t.SegmentTimeline = Some(compress(&listed));
    true
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
mod tests {
    use super::*;

    fn slot(creative: &str, index: u32, offset: f64, d: f64, ad: Option<u32>) -> Slot {
        Slot {
            creative: creative.into(),
            index,
            duration: d,
            offset,
            disc: index == 0,
            ad,
            events: Vec::new(),
        }
    }

    const LIVE: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z" publishTime="2026-01-01T00:01:00Z" timeShiftBufferDepth="PT20S" minBufferTime="PT2S">
  <Period id="0" start="PT0S">
    <EventStream schemeIdUri="urn:scte:scte35:2014:xml+bin" timescale="90000">
      <Event presentationTime="2700000" duration="1800000" id="1000"/>
    </EventStream>
    <AdaptationSet id="1" contentType="video" mimeType="video/mp4">
      <SegmentTemplate timescale="10240" duration="20480" startNumber="0" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s"/>
      <Representation id="v0" bandwidth="42844" width="192" height="108"/>
      <Representation id="v1" bandwidth="73632" width="320" height="180"/>
    </AdaptationSet>
    <AdaptationSet id="2" contentType="audio" mimeType="audio/mp4">
      <SegmentTemplate timescale="48000" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/t$Time$.m4s">
        <SegmentTimeline><S t="960512" d="96256"/><S d="95232"/><S d="96256" r="22"/></SegmentTimeline>
      </SegmentTemplate>
      <Representation id="a0" bandwidth="35315"/>
    </AdaptationSet>
  </Period>
</MPD>"#;

    const CREATIVE: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT10S" minBufferTime="PT2S">
  <Period id="0" start="PT0S">
    <AdaptationSet id="1" contentType="video" mimeType="video/mp4">
      <SegmentTemplate timescale="10240" duration="20480" startNumber="0" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s"/>
      <Representation id="v0" bandwidth="11524" width="192" height="108"/>
      <Representation id="v2" bandwidth="23496" width="480" height="270"/>
    </AdaptationSet>
    <AdaptationSet id="2" contentType="audio" mimeType="audio/mp4">
      <SegmentTemplate timescale="48000" duration="96000" startNumber="0" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s"/>
      <Representation id="a0" bandwidth="36126"/>
    </AdaptationSet>
  </Period>
</MPD>"#;

    fn creatives() -> BTreeMap<String, Arc<DashCreative>> {
        let mpd = dash_mpd_core::parse(CREATIVE).unwrap();
        ["ad10", "slate"]
            .into_iter()
            .map(|n| {
                (
                    n.to_string(),
                    Arc::new(DashCreative {
                        base: format!("/t/~s/ads/{n}/dash/"),
                        period: mpd.periods[0].clone(),
                    }),
                )
            })
            .collect()
    }

    fn start(p: &Period) -> f64 {
        p.start.unwrap().as_secs_f64()
    }

    #[test]
    fn a_break_splits_the_period_on_the_grid() {
        let mpd = dash_mpd_core::parse(LIVE).unwrap();
        let grid = Grid::of(&mpd);
        assert_eq!(grid.snap(30.2), 30.0);
        assert_eq!(grid.snap(1000.9), 1000.0);
        assert_eq!(grid.snap_down(31.9), 30.0);
        let slots: Vec<Slot> = (0..5)
            .map(|i| slot("ad10", i, i as f64 * 2.0, 2.0, Some(0)))
            .chain((0..10).map(|i| slot("slate", i, 10.0 + i as f64, 1.0, None)))
            .collect();
        let pods = [DashPod {
            id: "1000",
            key: "1000",
            start: 30.0,
            end: 50.0,
            slots: &slots,
        }];
        let out = render(
            mpd.clone(),
            &pods,
            &creatives(),
            None,
            DashOptions {
                tracking: true,
                ..Default::default()
            },
        )
        .unwrap();
        let ids: Vec<&str> = out
            .periods
            .iter()
            .map(|p| p.id.as_deref().unwrap())
            .collect();
        assert_eq!(ids, ["0", "1000~ad0", "1000~ad1", "0~1000"]);
        let starts: Vec<f64> = out.periods.iter().map(start).collect();
        assert_eq!(starts, [0.0, 30.0, 40.0, 50.0]);
        // ad periods: the content's set and representation ids, the creative's media
        let ad = &out.periods[1];
        assert_eq!(ad.BaseURL[0].base, "/t/~s/ads/ad10/dash/");
        assert_eq!(ad.duration.unwrap().as_secs_f64(), 10.0);
        let v = &ad.adaptations[0];
        assert_eq!(v.id.as_deref(), Some("1"));
        let reps: Vec<&str> = v
            .representations
            .iter()
            .map(|r| r.id.as_deref().unwrap())
            .collect();
        assert_eq!(reps, ["v0", "v1"]);
        let t = v.representations[1].SegmentTemplate.as_ref().unwrap();
        assert_eq!(
            t.media.as_deref(),
            Some("v2/$Number$.m4s?mf_b=1000&mf_s=0&mf_n=0"),
            "v1 gets the closest creative rendition"
        );
        assert_eq!(t.initialization.as_deref(), Some("v2/init.mp4"));
        // the marker goes with the first ad period
        assert_eq!(ad.event_streams.len(), 1);
        assert_eq!(ad.event_streams[0].presentationTimeOffset, Some(2_700_000));
        assert!(out.periods[0].event_streams.is_empty());
        // slate run from its first segment
        let s = out.periods[2].adaptations[1].representations[0]
            .SegmentTemplate
            .as_ref()
            .unwrap();
        assert_eq!(
            s.media.as_deref(),
            Some("a0/$Number$.m4s?mf_b=1000&mf_s=5&mf_n=0")
        );
        // content after: numbers and media time continue at 50 s
        let after = &out.periods[3];
        let vt = after.adaptations[0].SegmentTemplate.as_ref().unwrap();
        assert_eq!(vt.startNumber, Some(25));
        assert_eq!(vt.presentationTimeOffset, Some(50 * 10240));
        let at = after.adaptations[1].SegmentTemplate.as_ref().unwrap();
        assert_eq!(at.presentationTimeOffset, Some(50 * 48000));
        let first = at.SegmentTimeline.as_ref().unwrap().segments[0].t.unwrap();
        assert!(
            (first as i64 - 50 * 48000).abs() < 48000,
            "audio resumes at the segment nearest 50 s: {first}"
        );
        // the content before the break ends at its start
        let bt = out.periods[0].adaptations[1]
            .SegmentTemplate
            .as_ref()
            .unwrap();
        let last = expand(bt.SegmentTimeline.as_ref().unwrap(), None)
            .last()
            .copied()
            .unwrap();
        assert!(((last.0 + last.1) as f64 / 48000.0 - 30.0).abs() < 0.1);
    }

    #[test]
    fn timelines_give_their_own_grid() {
        let mut mpd = dash_mpd_core::parse(LIVE).unwrap();
        mpd.periods[0].adaptations.remove(0);
        let grid = Grid::of(&mpd);
        // audio segments of 2.0053 and 1.984 s from 20.0107 s
        let first = 960512.0 / 48000.0;
        let second = (960512.0 + 96256.0) / 48000.0;
        assert!((grid.snap(22.3) - second).abs() < 1e-9);
        assert!((grid.snap_down(22.3) - second).abs() < 1e-9);
        assert!((grid.snap_down(21.9) - first).abs() < 1e-9);
        // before and after the listed segments: at the first and last step
        let step = 96256.0 / 48000.0;
        assert!((grid.snap(first - 3.9) - (first - 2.0 * step)).abs() < 1e-6);
        assert!((grid.snap_down(first - 0.1) - (first - step)).abs() < 1e-6);
        let Boundaries::Listed(v) = &grid.periods[0].2 else {
            panic!("a timeline")
        };
        let last = v[v.len() - 1];
        assert!((grid.snap(last + 4.1) - (last + 2.0 * step)).abs() < 1e-6);
    }

    #[test]
    fn the_same_records_give_the_same_periods_as_the_window_slides() {
        let mpd = dash_mpd_core::parse(LIVE).unwrap();
        let slots: Vec<Slot> = (0..10)
            .map(|i| slot("slate", i, i as f64, 1.0, None))
            .collect();
        let pods = [DashPod {
            id: "1000",
            key: "1000",
            start: 30.0,
            end: 40.0,
            slots: &slots,
        }];
        let early = render(
            mpd.clone(),
            &pods,
            &creatives(),
            Some(20.0),
            DashOptions::default(),
        )
        .unwrap();
        let late = render(
            mpd.clone(),
            &pods,
            &creatives(),
            Some(45.0),
            DashOptions::default(),
        )
        .unwrap();
        let key = |p: &Period| (p.id.clone(), p.start);
        assert_eq!(early.periods.len(), 3);
        assert_eq!(
            late.periods.len(),
            1,
            "periods that ended before the window are dropped"
        );
        assert_eq!(key(&late.periods[0]), key(&early.periods[2]));
    }

    #[test]
    fn inserted_pods_shift_the_content_after_them() {
        let mut mpd = dash_mpd_core::parse(LIVE).unwrap();
        mpd.mpdtype = Some("static".into());
        mpd.mediaPresentationDuration = Some(secs(60.0));
        let slots: Vec<Slot> = (0..5)
            .map(|i| slot("ad10", i, i as f64 * 2.0, 2.0, Some(0)))
            .collect();
        let pods = [
            DashPod {
                id: "~preroll",
                key: "~preroll",
                start: 0.0,
                end: 0.0,
                slots: &slots,
            },
            DashPod {
                id: "~vod-0",
                key: "~vod-0",
                start: 20.0,
                end: 20.0,
                slots: &slots,
            },
        ];
        let out = render(
            mpd.clone(),
            &pods,
            &creatives(),
            None,
            DashOptions::default(),
        )
        .unwrap();
        let got: Vec<(String, f64)> = out
            .periods
            .iter()
            .map(|p| (p.id.clone().unwrap(), start(p)))
            .collect();
        let want = [
            ("~preroll~ad0", 0.0),
            ("0~~preroll", 10.0),
            ("~vod-0~ad0", 30.0),
            ("0~~vod-0", 40.0),
        ];
        assert_eq!(got, want.map(|(a, b)| (a.to_string(), b)));
        assert_eq!(out.mediaPresentationDuration.unwrap().as_secs_f64(), 80.0);
        let t = out.periods[3].adaptations[0]
            .SegmentTemplate
            .as_ref()
            .unwrap();
        assert_eq!(
            (t.startNumber, t.presentationTimeOffset),
            (Some(10), Some(20 * 10240))
        );
    }

    #[test]
    fn a_creative_without_the_content_kind_is_an_error() {
        let mpd = dash_mpd_core::parse(LIVE).unwrap();
        let mut c = creatives();
        let mut video_only = c["ad10"].period.clone();
        video_only.adaptations.truncate(1);
        c.insert(
            "ad10".into(),
            Arc::new(DashCreative {
                base: "/x/".into(),
                period: video_only,
            }),
        );
        let slots = [slot("ad10", 0, 0.0, 2.0, Some(0))];
        let pods = [DashPod {
            id: "b",
            key: "b",
            start: 30.0,
            end: 32.0,
            slots: &slots,
        }];
        let e = render(mpd.clone(), &pods, &c, None, DashOptions::default()).unwrap_err();
        assert!(e.contains("no audio"), "{e}");
    }
}
