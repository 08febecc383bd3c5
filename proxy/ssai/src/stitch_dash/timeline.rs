//! The content's segment timing in an MPD: where its segments fall (the grid breaks are cut
//! on), a creative's segment durations, and templates re-based or listed for a re-cut period.

use super::*;

/// Seconds each source period spans: from its start to the next one's (or the presentation's
/// end).
pub(super) fn source_spans(mpd: &MPD) -> Vec<(f64, f64)> {
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
    pub(super) periods: Vec<(f64, f64, Boundaries)>,
}

#[derive(Debug)]
pub(super) enum Boundaries {
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
pub(super) fn expand(tl: &SegmentTimeline, until: Option<u64>) -> Vec<(u64, u64)> {
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

pub(super) fn compress(segs: &[(u64, u64)]) -> SegmentTimeline {
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
pub(super) fn rebase(t: &mut SegmentTemplate, skip: f64, keep: Option<f64>) -> bool {
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

/// Rewrites a (re-based) template to list its segments of the first `length` seconds in a
/// timeline, the last one cut at `length`, and only those that end by `until` seconds.
/// Returns false when none does yet.
pub(super) fn list_segments(t: &mut SegmentTemplate, length: f64, until: f64) -> bool {
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
