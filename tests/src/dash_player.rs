//! Just enough of a DASH player to check a stitched MPD the way a player reads it: every
//! period's segment URLs for one representation per adaptation set, resolved through the
//! BaseURL chain and the SegmentTemplate (numbered or timeline), within what is available.
//! ffmpeg cannot play multi-period MPDs, so the tests fetch each period's segments with this
//! and decode them period by period.

use anyhow::{anyhow, bail, Result};
use dash_mpd_core::{AdaptationSet, Period, Representation, SegmentTemplate, MPD};
use url::Url;

/// One track of one period: its init segment and media segments in order.
#[derive(Debug, Clone)]
pub struct Track {
    pub kind: String,
    pub init: Option<String>,
    /// URL, media start time (s), duration (s).
    pub segments: Vec<(String, f64, f64)>,
    /// Media time (s) at the period's start.
    pub offset: f64,
}

#[derive(Debug, Clone)]
pub struct PeriodPlan {
    pub id: String,
    pub start: f64,
    /// Where the next period starts (or the period's own duration ends), if known.
    pub end: Option<f64>,
    pub tracks: Vec<Track>,
}

fn kind(a: &AdaptationSet) -> String {
    manifold_ssai::dash::content_type(a).to_string()
}

fn template(p: &Period, a: &AdaptationSet, r: &Representation) -> Option<SegmentTemplate> {
    manifold_ssai::dash::effective_template(p, a, Some(r))
}

fn fill(t: &str, rep: &str, number: u64, time: u64, bandwidth: u64) -> String {
    t.replace("$RepresentationID$", rep)
        .replace("$Number$", &number.to_string())
        .replace("$Time$", &time.to_string())
        .replace("$Bandwidth$", &bandwidth.to_string())
}

fn join(base: &Url, bases: &[&Vec<dash_mpd_core::BaseURL>]) -> Result<Url> {
    let mut u = base.clone();
    for b in bases {
        if let Some(first) = b.first() {
            u = u.join(&first.base)?;
        }
    }
    Ok(u)
}

/// The periods of `mpd` (fetched from `mpd_url`) as a player would play them, with the
/// representation `pick` chooses per adaptation set. For a live MPD only segments available
/// at its publish time (within the time-shift buffer) are listed.
pub fn plan(
    mpd: &MPD,
    mpd_url: &Url,
    pick: impl Fn(&AdaptationSet) -> Option<&Representation>,
) -> Result<Vec<PeriodPlan>> {
    // Long: like the load test's `mpd::segments`, the addressing modes side by side.
    let dynamic = mpd.mpdtype.as_deref() == Some("dynamic");
    let now = match (mpd.availabilityStartTime, mpd.publishTime) {
        (Some(a), Some(p)) if dynamic => Some((p - a).num_milliseconds() as f64 / 1000.0),
        _ => None,
    };
    let tsb = mpd.timeShiftBufferDepth.map(|d| d.as_secs_f64());
    let total = mpd.mediaPresentationDuration.map(|d| d.as_secs_f64());
    let mut out = Vec::new();
    for (i, p) in mpd.periods.iter().enumerate() {
        let start = p
            .start
            .map(|d| d.as_secs_f64())
            .ok_or_else(|| anyhow!("period {i} has no start"))?;
        let end = mpd
            .periods
            .get(i + 1)
            .and_then(|n| n.start)
            .map(|d| d.as_secs_f64())
            .or_else(|| p.duration.map(|d| start + d.as_secs_f64()))
            .or(total);
        let mut tracks = Vec::new();
        for a in &p.adaptations {
            let Some(r) = pick(a) else { continue };
            let t = template(p, a, r).ok_or_else(|| anyhow!("period {i}: no template"))?;
            let base = join(
                mpd_url,
                &[&mpd.base_url, &p.BaseURL, &a.BaseURL, &r.BaseURL],
            )?;
            let rid = r.id.clone().unwrap_or_default();
            let bw = r.bandwidth.unwrap_or(0);
            let ts = t.timescale.unwrap_or(1).max(1) as f64;
            let pto = t.presentationTimeOffset.unwrap_or(0);
            let media = t
                .media
                .clone()
                .ok_or_else(|| anyhow!("no media template"))?;
            let first_number = t.startNumber.unwrap_or(1);
            // (number, media time, duration) in timescale units
            let mut segs: Vec<(u64, u64, u64)> = Vec::new();
            if let Some(tl) = &t.SegmentTimeline {
                let mut time = 0u64;
                let mut n = first_number;
                for s in &tl.segments {
                    if let Some(st) = s.t {
                        time = st;
                    }
                    let repeat = match s.r {
                        Some(r) if r >= 0 => r as u64,
                        Some(_) => bail!("open-ended S@r is not supported by this test player"),
                        None => 0,
                    };
                    for _ in 0..=repeat {
                        segs.push((n, time, s.d));
                        time += s.d;
                        n += 1;
                    }
                }
            } else if let Some(d) = t.duration {
                let d = d as u64;
                let seg = d as f64 / ts;
                // the segments of the period that are available now
                let from = match (now, tsb) {
                    (Some(now), Some(tsb)) => (now - tsb - start).max(0.0),
                    _ => 0.0,
                };
                let to = match (end, now) {
                    (Some(e), Some(now)) => (e.min(now) - start).max(0.0),
                    (Some(e), None) => e - start,
                    (None, Some(now)) => now - start,
                    (None, None) => bail!("a numbered template without an end"),
                };
                let mut k = (from / seg).floor() as u64;
                while (k as f64) * seg < to - 1e-6 {
                    if now.is_none() || start + (k + 1) as f64 * seg <= now.unwrap() + 1e-6 {
                        segs.push((first_number + k, pto + k * d, d));
                    }
                    k += 1;
                }
            } else {
                bail!("period {i}: a template without timing");
            }
            // a player plays a period's segments up to the period's end
            if let Some(e) = end {
                let limit = pto + ((e - start) * ts).round() as u64;
                segs.retain(|(_, time, _)| *time < limit);
                // the last one plays up to the end only
                if let Some(last) = segs.last_mut() {
                    last.2 = last.2.min(limit - last.1);
                }
            }
            let segments = segs
                .into_iter()
                .map(|(n, time, d)| {
                    let u = base.join(&fill(&media, &rid, n, time, bw))?;
                    Ok((u.to_string(), time as f64 / ts, d as f64 / ts))
                })
                .collect::<Result<Vec<_>>>()?;
            let init = t
                .initialization
                .as_ref()
                .map(|i| base.join(&fill(i, &rid, 0, 0, bw)).map(|u| u.to_string()))
                .transpose()?;
            tracks.push(Track {
                kind: kind(a),
                init,
                segments,
                offset: pto as f64 / ts,
            });
        }
        out.push(PeriodPlan {
            id: p.id.clone().unwrap_or_default(),
            start,
            end,
            tracks,
        });
    }
    Ok(out)
}
