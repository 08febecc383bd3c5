//! Laying a pod out over a break: which ads fit (and what an overlong one does), slate to the
//! end, and the beacon events each slot fires.

use crate::apply::{invalid, InvalidPlan};
use crate::creatives::{Creatives, Packaging};
use crate::ledger::Slot;
use crate::types::Ad;

/// What to do with an ad that runs past the end of its break.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlong {
    /// Play it up to the last segment that ends within the break.
    Cut,
    /// Skip it (slate instead).
    #[default]
    Drop,
}

/// Beacon events of an ad that lasts `total` seconds, due at the slot covering `[from, to)`.
fn events_at(first: bool, last: bool, from: f64, to: f64, total: f64) -> Vec<String> {
    let mut ev = Vec::new();
    if first {
        ev.push("impression".to_string());
        ev.push("start".to_string());
    }
    for (name, q) in [
        ("firstQuartile", 0.25),
        ("midpoint", 0.5),
        ("thirdQuartile", 0.75),
    ] {
        let at = total * q;
        if at > from && at <= to {
            ev.push(name.to_string());
        }
    }
    if last {
        ev.push("complete".to_string());
    }
    ev
}

/// Slots of one pod, at most (a break of an hour in 0.36 s segments).
const MAX_SLOTS: usize = 10_000;

/// Lays `pod` out as slots: over a break of `duration` seconds (ads that fit, per `overlong`,
/// then slate to the end), or, with no duration, end to end (inserted pods). Each ad's
/// segments come from its reference rendition; ads whose renditions do not line up, or whose
/// segments exceed the target duration, are skipped.
pub async fn lay_out(
    pod: &[Ad],
    duration: Option<f64>,
    target: f64,
    packaging: Packaging,
    creatives: &dyn Creatives,
    overlong: Overlong,
) -> Result<Vec<Slot>, InvalidPlan> {
    if duration.is_some_and(|d| !(d.is_finite() && d <= crate::view::MAX_BREAK_SECS)) {
        return invalid(format!("a break of {duration:?} s"));
    }
    let mut out = Vec::new();
    let mut offset = 0.0;
    let limit = duration.unwrap_or(f64::INFINITY);
    for (ad_index, ad) in pod.iter().enumerate() {
        let media = match creatives.reference(&ad.creative, packaging).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(ad = %ad.id, creative = %ad.creative, error = %e, "ad skipped");
                continue;
            }
        };
        if media.segments.iter().any(|(_, d)| d.round() > target) {
            tracing::warn!(ad = %ad.id, "ad skipped: its segments exceed the target duration");
            continue;
        }
        let total: f64 = media.segments.iter().map(|(_, d)| d).sum();
        let take = if offset + total <= limit + 0.25 {
            media.segments.len()
        } else if overlong == Overlong::Cut {
            let mut end = offset;
            media
                .segments
                .iter()
                .take_while(|(_, d)| {
                    end += d;
                    end <= limit + 0.25
                })
                .count()
        } else {
            0
        };
        let mut t = 0.0;
        for (i, (_, d)) in media.segments.iter().take(take).enumerate() {
            out.push(Slot {
                creative: ad.creative.clone(),
                index: i as u32,
                duration: *d,
                offset,
                disc: i == 0,
                ad: Some(ad_index as u32),
                events: events_at(i == 0, i + 1 == media.segments.len(), t, t + d, total),
            });
            offset += d;
            t += d;
        }
    }
    if let (Some(d), Some(slate)) = (duration, creatives.slate()) {
        if offset < d - 0.25 {
            let media = creatives
                .reference(slate, packaging)
                .await
                .map_err(|e| InvalidPlan(format!("slate: {e}")))?;
            let mut first = true;
            'fill: while offset < d - 0.25 {
                let before = offset;
                for (i, (_, sd)) in media.segments.iter().enumerate() {
                    if offset + sd > d + 0.25 || out.len() >= MAX_SLOTS {
                        break 'fill;
                    }
                    out.push(Slot {
                        creative: slate.to_string(),
                        index: i as u32,
                        duration: *sd,
                        offset,
                        disc: first && i == 0,
                        ad: None,
                        events: Vec::new(),
                    });
                    first = false;
                    offset += sd;
                }
                if offset == before {
                    break;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartile_events_land_on_the_segments_that_reach_them() {
        assert_eq!(
            events_at(true, false, 0.0, 2.0, 10.0),
            vec!["impression", "start"]
        );
        assert_eq!(
            events_at(false, false, 2.0, 4.0, 10.0),
            vec!["firstQuartile"]
        );
        assert_eq!(events_at(false, false, 4.0, 6.0, 10.0), vec!["midpoint"]);
        assert_eq!(events_at(false, true, 8.0, 10.0, 10.0), vec!["complete"]);
    }
}
