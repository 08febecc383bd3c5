//! Which DASH segments a player can fetch now: periods (with starts derived as the spec says),
//! one representation per media type, the BaseURL chain (MPD → Period → AdaptationSet →
//! Representation) and the SegmentTemplate in effect (Period → AdaptationSet → Representation),
//! addressed by `$Number$` with a `duration` (availability from the wall clock,
//! `availabilityStartTime`, the period start and `timeShiftBufferDepth`) or by a
//! SegmentTimeline with `$Time$` or `$Number$`. Multi-period MPDs with ad periods
//! (`Period@duration`, per-Representation templates) resolve the same way; segments never run
//! past their period's end.
//!
//! Times are seconds since `availabilityStartTime` (0 for a static MPD without one).

use super::consistency::{hash_of, is_ad_uri, MpdFacts, PeriodFacts};
use dash_mpd_core::{AdaptationSet, Period, Representation, SegmentTemplate, MPD};
use std::hash::{Hash, Hasher};
use url::Url;

/// Most segments listed for one track of one period (guards against absurd MPDs).
const MAX_SEGMENTS: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum MpdError {
    #[error("period {0}: {1}")]
    Period(usize, String),
    #[error("bad URL: {0}")]
    Url(#[from] url::ParseError),
    #[error("{0}")]
    Other(String),
}

/// The media types a viewer plays: one adaptation set each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Media {
    Video,
    Audio,
}

/// One segment of a track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegRef {
    pub number: u64,
    /// Media time, timescale units.
    pub time: u64,
    /// Presentation start and end, seconds since `availabilityStartTime`.
    pub start: f64,
    pub end: f64,
}

/// The representation chosen for one media type in one period, and its segments.
#[derive(Debug, Clone)]
pub struct TrackPlan {
    pub media: Media,
    pub period_id: String,
    pub base: Url,
    pub rep_id: String,
    pub bandwidth: u64,
    pub media_template: String,
    pub init_template: Option<String>,
    pub segments: Vec<SegRef>,
}

impl TrackPlan {
    pub fn media_url(&self, s: &SegRef) -> Result<Url, MpdError> {
        Ok(self.base.join(&fill(
            &self.media_template,
            &self.rep_id,
            s.number,
            s.time,
            self.bandwidth,
        ))?)
    }

    pub fn init_url(&self) -> Result<Option<Url>, MpdError> {
        match &self.init_template {
            Some(t) => Ok(Some(self.base.join(&fill(
                t,
                &self.rep_id,
                0,
                0,
                self.bandwidth,
            ))?)),
            None => Ok(None),
        }
    }
}

/// Where a viewer's tracks start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum From {
    /// The last n segments available (a player joining a live stream).
    LiveEdge(usize),
    /// Segments starting after this presentation time.
    After(f64),
}

/// Fills `$RepresentationID$`, `$Number$`, `$Time$`, `$Bandwidth$` (with `%0Nd` widths) and `$$`.
pub fn fill(template: &str, rep: &str, number: u64, time: u64, bandwidth: u64) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('$') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let tag = &after[..j];
        let (name, width) = match tag.split_once('%') {
            Some((n, f)) => (
                n,
                f.strip_prefix('0')
                    .and_then(|w| w.strip_suffix('d'))
                    .and_then(|w| w.parse::<usize>().ok()),
            ),
            None => (tag, None),
        };
        let num = |v: u64| match width {
            Some(w) => format!("{v:0w$}"),
            None => v.to_string(),
        };
        match name {
            "" => out.push('$'),
            "RepresentationID" => out.push_str(rep),
            "Number" => out.push_str(&num(number)),
            "Time" => out.push_str(&num(time)),
            "Bandwidth" => out.push_str(&num(bandwidth)),
            _ => {
                out.push('$');
                out.push_str(tag);
                out.push('$');
            }
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

/// The template in effect: Representation over AdaptationSet over Period, attribute by attribute.
pub fn template(p: &Period, a: &AdaptationSet, r: &Representation) -> Option<SegmentTemplate> {
    manifold_ssai::dash::effective_template(p, a, Some(r))
}

/// The media type of an adaptation set, from `contentType`, `mimeType` or codecs.
pub fn media_of(a: &AdaptationSet) -> Option<Media> {
    let ct = a
        .contentType
        .as_deref()
        .or_else(|| a.mimeType.as_deref().and_then(|m| m.split('/').next()))
        .or_else(|| {
            a.representations
                .first()
                .and_then(|r| r.mimeType.as_deref())
                .and_then(|m| m.split('/').next())
        });
    match ct {
        Some("video") => Some(Media::Video),
        Some("audio") => Some(Media::Audio),
        _ => None,
    }
}

/// Period starts and ends (seconds): `@start`, else the previous period's end; the end is the
/// next period's start, else `@start + @duration`, else the presentation's duration.
pub fn period_bounds(mpd: &MPD) -> Vec<(f64, Option<f64>)> {
    let total = mpd.mediaPresentationDuration.map(|d| d.as_secs_f64());
    let mut starts: Vec<f64> = Vec::with_capacity(mpd.periods.len());
    let mut prev_end: Option<f64> = Some(0.0);
    for p in &mpd.periods {
        let start = p.start.map(|d| d.as_secs_f64()).or(prev_end).unwrap_or(0.0);
        prev_end = p.duration.map(|d| start + d.as_secs_f64());
        starts.push(start);
    }
    mpd.periods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let start = starts[i];
            let end = starts
                .get(i + 1)
                .copied()
                .or_else(|| p.duration.map(|d| start + d.as_secs_f64()))
                .or(total);
            (start, end)
        })
        .collect()
}

fn join_bases(mpd_url: &Url, levels: [&[dash_mpd_core::BaseURL]; 4]) -> Result<Url, MpdError> {
    let mut u = mpd_url.clone();
    for level in levels {
        if let Some(b) = level.first() {
            let b = b.base.trim();
            if !b.is_empty() {
                u = u.join(b)?;
            }
        }
    }
    Ok(u)
}

/// Clock and window for [`plan`].
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Now, seconds since `availabilityStartTime` (`f64::INFINITY` for a static MPD).
    pub now: f64,
    /// `timeShiftBufferDepth`, if any.
    pub tsb: Option<f64>,
}

impl Clock {
    /// The MPD's clock at wall-clock `now_unix_ms`.
    pub fn of(mpd: &MPD, now_unix_ms: i64) -> Clock {
        let dynamic = mpd.mpdtype.as_deref() == Some("dynamic");
        let now = match mpd.availabilityStartTime {
            Some(ast) if dynamic => (now_unix_ms - ast.timestamp_millis()) as f64 / 1000.0,
            _ => f64::INFINITY,
        };
        Clock {
            now,
            tsb: if dynamic {
                mpd.timeShiftBufferDepth.map(|d| d.as_secs_f64())
            } else {
                None
            },
        }
    }
}

/// For each period, the chosen video representation (`video_index` into the set's
/// representations sorted by bandwidth, modulo their number) and the first audio
/// representation, with the segments available at `clock.now` from `from[media]`.
pub fn plan(
    mpd: &MPD,
    mpd_url: &Url,
    clock: Clock,
    video_index: usize,
    from: impl Fn(Media) -> From,
) -> Result<Vec<TrackPlan>, MpdError> {
    let bounds = period_bounds(mpd);
    let mut out = Vec::new();
    for (i, p) in mpd.periods.iter().enumerate() {
        let (start, end) = bounds[i];
        for media in [Media::Video, Media::Audio] {
            let Some(a) = p.adaptations.iter().find(|a| media_of(a) == Some(media)) else {
                continue;
            };
            if a.representations.is_empty() {
                continue;
            }
            let r = match media {
                Media::Video => {
                    let mut reps: Vec<&Representation> = a.representations.iter().collect();
                    reps.sort_by_key(|r| r.bandwidth.unwrap_or(0));
                    reps[video_index % reps.len()]
                }
                Media::Audio => &a.representations[0],
            };
            let t = template(p, a, r).ok_or_else(|| {
                MpdError::Period(
                    i,
                    "no SegmentTemplate (SegmentBase/SegmentList are not supported)".into(),
                )
            })?;
            let media_template = t
                .media
                .clone()
                .ok_or_else(|| MpdError::Period(i, "SegmentTemplate without @media".into()))?;
            let segments =
                segments(&t, start, end, clock, from(media)).map_err(|e| MpdError::Period(i, e))?;
            out.push(TrackPlan {
                media,
                period_id: p.id.clone().unwrap_or_else(|| i.to_string()),
                base: join_bases(mpd_url, [&mpd.base_url, &p.BaseURL, &a.BaseURL, &r.BaseURL])?,
                rep_id: r.id.clone().unwrap_or_default(),
                bandwidth: r.bandwidth.unwrap_or(0),
                media_template,
                init_template: t.initialization.clone(),
                segments,
            });
        }
    }
    Ok(out)
}

/// The segments of one template in a period `[start, end)` available at `clock`.
fn segments(
    t: &SegmentTemplate,
    start: f64,
    end: Option<f64>,
    clock: Clock,
    from: From,
) -> Result<Vec<SegRef>, String> {
    // Long: the DASH addressing modes (timeline, number, list) side by side, as ISO/IEC 23009-1 has them.
    let ts = t.timescale.unwrap_or(1).max(1) as f64;
    let pto = t.presentationTimeOffset.unwrap_or(0);
    let first_number = t.startNumber.unwrap_or(1);
    let ato = t
        .availabilityTimeOffset
        .filter(|v| v.is_finite())
        .unwrap_or(0.0);
    let now = clock.now + ato;
    // available: ended by now, not yet out of the time-shift buffer, starting before the end
    let window_start = clock.tsb.map(|d| clock.now - d);
    let available = |s: &SegRef| {
        s.end <= now + 1e-6
            && window_start.is_none_or(|w| s.end > w)
            && end.is_none_or(|e| s.start < e - 1e-6)
    };
    let wanted = |s: &SegRef| match from {
        From::After(t) => s.start > t + 1e-3,
        From::LiveEdge(_) => true,
    };
    let mut out = Vec::new();
    if let Some(tl) = &t.SegmentTimeline {
        let mut time = 0u64;
        let mut number = first_number;
        let mut listed = 0u64;
        for (k, s) in tl.segments.iter().enumerate() {
            if let Some(st) = s.t {
                time = st;
            }
            if s.d == 0 {
                return Err("SegmentTimeline S@d is 0".into());
            }
            let count = match s.r {
                Some(r) if r >= 0 => r as u64 + 1,
                Some(_) => {
                    // open-ended: up to the next S@t, else the period end, else now
                    let until = match tl.segments.get(k + 1).and_then(|n| n.t) {
                        Some(next) => next,
                        None => {
                            let limit = end.unwrap_or(clock.now).min(clock.now + ato) - start;
                            if !limit.is_finite() {
                                return Err("S@r=-1 in a period without an end".into());
                            }
                            pto + (limit.max(0.0) * ts) as u64
                        }
                    };
                    until.saturating_sub(time).div_ceil(s.d)
                }
                None => 1,
            };
            for _ in 0..count {
                listed += 1;
                if listed > MAX_SEGMENTS {
                    return Err(format!("more than {MAX_SEGMENTS} segments"));
                }
                let seg = SegRef {
                    number,
                    time,
                    start: start + (time as f64 - pto as f64) / ts,
                    end: start + ((time + s.d) as f64 - pto as f64) / ts,
                };
                if available(&seg) && wanted(&seg) {
                    out.push(seg);
                }
                time += s.d;
                number += 1;
            }
        }
    } else if let Some(d) = t.duration.filter(|d| *d > 0.0) {
        let seg = d / ts;
        let horizon = match end {
            Some(e) => e.min(now),
            None => now,
        };
        if !horizon.is_finite() {
            return Err("a $Number$ template in a period without an end".into());
        }
        // k: segments of the period, [start + k·seg, start + (k+1)·seg)
        let last = ((now - start) / seg + 1e-9).floor() as i64 - 1; // last ended by now
        let last = match end {
            Some(e) => last.min(((e - start) / seg - 1e-9).ceil() as i64 - 1),
            None => last,
        };
        if last < 0 {
            return Ok(out);
        }
        let mut lo = window_start
            .map(|w| ((w - start) / seg).floor() as i64)
            .unwrap_or(0)
            .max(0);
        match from {
            From::After(t) => lo = lo.max(((t - start) / seg).floor() as i64),
            From::LiveEdge(n) => lo = lo.max(last + 1 - n as i64),
        }
        if last - lo > MAX_SEGMENTS as i64 {
            return Err(format!("more than {MAX_SEGMENTS} segments"));
        }
        for k in lo.max(0)..=last {
            let k = k as u64;
            let time = pto + (k as f64 * d).round() as u64;
            let s = SegRef {
                number: first_number + k,
                time,
                start: start + k as f64 * seg,
                end: start + (k + 1) as f64 * seg,
            };
            if available(&s) && wanted(&s) {
                out.push(s);
            }
        }
    } else {
        return Err("SegmentTemplate has neither a SegmentTimeline nor a duration".into());
    }
    if let From::LiveEdge(n) = from {
        let skip = out.len().saturating_sub(n);
        out.drain(..skip);
    }
    Ok(out)
}

/// The end of the newest segment the MPD offered as of its `publishTime` (or `at` without
/// one), over all periods and video/audio sets: how far live the MPD is.
pub fn live_edge(mpd: &MPD, at: Clock) -> Option<f64> {
    let clock = match (mpd.publishTime, mpd.availabilityStartTime) {
        (Some(p), Some(a)) => Clock {
            now: (p.timestamp_millis() - a.timestamp_millis()) as f64 / 1000.0,
            tsb: at.tsb,
        },
        _ => at,
    };
    let bounds = period_bounds(mpd);
    let mut edge: Option<f64> = None;
    for (i, p) in mpd.periods.iter().enumerate() {
        let (start, end) = bounds[i];
        for a in &p.adaptations {
            let Some(r) = a.representations.first() else {
                continue;
            };
            let Some(t) = template(p, a, r) else { continue };
            if let Ok(segs) = segments(&t, start, end, clock, From::LiveEdge(1)) {
                if let Some(s) = segs.last() {
                    let e = end.map_or(s.end, |e| s.end.min(e));
                    edge = Some(edge.map_or(e, |x: f64| x.max(e)));
                }
            }
        }
    }
    edge
}

fn hash_template(h: &mut impl Hasher, t: Option<&SegmentTemplate>) {
    if let Some(t) = t {
        t.media.hash(h);
        t.initialization.hash(h);
        t.startNumber.hash(h);
        t.timescale.hash(h);
        t.presentationTimeOffset.hash(h);
        t.duration.map(f64::to_bits).hash(h);
        t.SegmentTimeline.is_some().hash(h);
    }
}

fn bases(b: &[dash_mpd_core::BaseURL]) -> impl Iterator<Item = &str> {
    b.iter().map(|b| b.base.as_str())
}

/// What the consistency checks compare between reloads.
pub fn facts(mpd: &MPD) -> MpdFacts {
    let bounds = period_bounds(mpd);
    let ms = |s: f64| (s * 1000.0).round() as i64;
    let mut shows_break = false;
    let periods = mpd
        .periods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            let mut is_ad = bases(&p.BaseURL).any(is_ad_uri);
            bases(&p.BaseURL).for_each(|b| b.hash(&mut h));
            hash_template(&mut h, p.SegmentTemplate.as_ref());
            let mut timeline = Vec::new();
            let mut push_timeline = |key: u64, t: Option<&SegmentTemplate>| {
                if let Some(tl) = t.and_then(|t| t.SegmentTimeline.as_ref()) {
                    let mut time = 0;
                    for s in &tl.segments {
                        if let Some(st) = s.t {
                            time = st;
                        }
                        let n = match s.r {
                            Some(r) if r >= 0 => (r as u64 + 1).min(MAX_SEGMENTS),
                            _ => 1,
                        };
                        for _ in 0..n {
                            timeline.push((key, time, s.d));
                            time += s.d;
                        }
                    }
                }
            };
            push_timeline(hash_of("period"), p.SegmentTemplate.as_ref());
            for (ai, a) in p.adaptations.iter().enumerate() {
                a.id.hash(&mut h);
                a.contentType.hash(&mut h);
                bases(&a.BaseURL).for_each(|b| b.hash(&mut h));
                is_ad |= bases(&a.BaseURL).any(is_ad_uri);
                hash_template(&mut h, a.SegmentTemplate.as_ref());
                push_timeline(hash_of(&("set", ai)), a.SegmentTemplate.as_ref());
                for r in &a.representations {
                    r.id.hash(&mut h);
                    r.bandwidth.hash(&mut h);
                    bases(&r.BaseURL).for_each(|b| b.hash(&mut h));
                    is_ad |= bases(&r.BaseURL).any(is_ad_uri);
                    hash_template(&mut h, r.SegmentTemplate.as_ref());
                    is_ad |= r
                        .SegmentTemplate
                        .as_ref()
                        .and_then(|t| t.media.as_deref())
                        .is_some_and(is_ad_uri);
                    push_timeline(
                        hash_of(&("rep", ai, r.id.as_deref())),
                        r.SegmentTemplate.as_ref(),
                    );
                }
            }
            shows_break |= is_ad
                || p.event_streams
                    .iter()
                    .any(|e| e.schemeIdUri.contains("scte35"));
            let (start, _) = bounds[i];
            PeriodFacts {
                id: p.id.clone().unwrap_or_else(|| i.to_string()),
                start_ms: ms(start),
                // only an explicit @duration: the next period's start may come later
                duration_ms: p.duration.map(|d| d.as_millis() as i64),
                fingerprint: h.finish(),
                is_ad,
                timeline,
            }
        })
        .collect();
    MpdFacts {
        publish_time_ms: mpd.publishTime.map(|t| t.timestamp_millis()),
        periods,
        shows_break,
    }
}

#[cfg(test)]
mod tests;
