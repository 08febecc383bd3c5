//! Stand-in creatives, for running the stitcher where there is no ad server: `plugin check`,
//! the benches, the fuzz targets and the property tests. `adN` lasts N seconds; URIs name the
//! creative (and the rendition, if asked), so what was stitched where can be checked.

use crate::creatives::{AdMedia, Creatives, Packaging, RenditionWant};
use crate::stitch_dash::DashCreative;
use crate::types::Ad;
use async_trait::async_trait;
use std::sync::Arc;

/// The slate: 10 s in 1 s segments.
pub const SLATE: &str = "slate";

/// The longest creative (as in a tenant's catalog).
pub const MAX_SECS: f64 = 3600.0;

pub struct Synthetic {
    /// An ad's segments last this long (its last one is shorter).
    pub segment: f64,
    /// How long a creative whose name has no length lasts; `None`: there is no such creative.
    pub fallback: Option<f64>,
    /// URIs name the rendition (`/ads/{creative}/{rendition}/{n}.ts`), so alignment can be checked.
    pub by_rendition: bool,
    /// DASH: the period ad periods are (their adaptation sets and segment templates).
    pub period: Option<dash_mpd_core::Period>,
}

impl Default for Synthetic {
    /// 2 s segments, creatives of any name (10 s), HLS only.
    fn default() -> Self {
        Synthetic {
            segment: 2.0,
            fallback: Some(10.0),
            by_rendition: false,
            period: None,
        }
    }
}

impl Synthetic {
    /// DASH ads shaped like the content's `period`: its adaptation sets and representations,
    /// with 2 s numbered segments of their own.
    pub fn shaped_like(mut period: dash_mpd_core::Period) -> Synthetic {
        period.SegmentTemplate = None;
        for a in &mut period.adaptations {
            a.SegmentTemplate = Some(dash_mpd_core::SegmentTemplate {
                timescale: Some(1000),
                duration: Some(2000.0),
                startNumber: Some(0),
                media: Some("$RepresentationID$/$Number$.m4s".into()),
                initialization: Some("$RepresentationID$/init.mp4".into()),
                ..Default::default()
            });
            for r in &mut a.representations {
                r.SegmentTemplate = None;
            }
        }
        Synthetic {
            period: Some(period),
            ..Synthetic::default()
        }
    }

    /// A creative's length and segment length.
    fn timing(&self, creative: &str) -> Result<(f64, f64), String> {
        if creative == SLATE {
            return Ok((10.0, 1.0));
        }
        let named = creative
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .parse::<f64>()
            .ok()
            // as long as a catalog creative may be (a plugin names it: no unbounded segment list)
            .filter(|s| *s > 0.0 && *s <= MAX_SECS);
        named
            .or(self.fallback)
            .map(|secs| (secs, self.segment.max(0.1)))
            .ok_or_else(|| format!("no creative {creative}"))
    }
}

#[async_trait]
impl Creatives for Synthetic {
    async fn media(
        &self,
        creative: &str,
        p: Packaging,
        w: RenditionWant,
    ) -> Result<Arc<AdMedia>, String> {
        let (secs, seg) = self.timing(creative)?;
        let dir = match (self.by_rendition, w.audio_only, w.bandwidth) {
            (false, ..) => format!("/ads/{creative}"),
            (true, true, _) => format!("/ads/{creative}/a"),
            (true, false, Some(b)) => format!("/ads/{creative}/v{b}"),
            (true, false, None) => format!("/ads/{creative}/v"),
        };
        let fmp4 = p == Packaging::Fmp4;
        let ext = if fmp4 { "m4s" } else { "ts" };
        let mut segments = Vec::new();
        let mut left = secs;
        while left > 0.001 {
            let d = left.min(seg);
            segments.push((format!("{dir}/{}.{ext}", segments.len()), d));
            left -= d;
        }
        Ok(Arc::new(AdMedia {
            segments,
            map: fmp4.then(|| format!("{dir}/init.mp4")),
        }))
    }

    fn slate(&self) -> Option<&str> {
        Some(SLATE)
    }

    async fn dash(&self, creative: &str) -> Result<Arc<DashCreative>, String> {
        let mut period = self.period.clone().ok_or("not a DASH check")?;
        period.event_streams.clear();
        Ok(Arc::new(DashCreative {
            base: format!("/ads/{creative}/dash/"),
            period,
        }))
    }
}

/// A pod of ads named after their creatives, for stand-in plans (the host fills in durations).
pub fn pod(creatives: &[&str]) -> Vec<Ad> {
    creatives
        .iter()
        .map(|c| Ad {
            id: c.to_string(),
            creative: c.to_string(),
            duration: 1.0,
        })
        .collect()
}

/// One of `pods` for the break `id`: the same one for every reload and rendition (none if
/// there are no pods).
pub fn pod_for<'a>(id: &str, pods: &[&'a [&'a str]]) -> &'a [&'a str] {
    let h = id
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    match pods.len() as u64 {
        0 => &[],
        n => pods[(h % n) as usize],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lengths_come_from_names_within_a_catalog_creatives_bounds() {
        let strict = Synthetic {
            fallback: None,
            ..Synthetic::default()
        };
        let m = strict
            .media("ad5", Packaging::Ts, RenditionWant::default())
            .await
            .unwrap();
        let secs: Vec<f64> = m.segments.iter().map(|(_, d)| *d).collect();
        assert_eq!(secs, [2.0, 2.0, 1.0]);
        // a plugin's name cannot make a creative of a million segments
        assert!(strict
            .media("ad99999999", Packaging::Ts, RenditionWant::default())
            .await
            .is_err());
        let m = Synthetic::default()
            .media("ad99999999", Packaging::Fmp4, RenditionWant::default())
            .await
            .unwrap();
        assert_eq!(m.segments.len(), 5, "the 10 s fallback");
        assert_eq!(m.map.as_deref(), Some("/ads/ad99999999/init.mp4"));
    }

    #[test]
    fn a_pod_is_chosen_by_id_and_none_from_no_pods() {
        let pods: [&[&str]; 2] = [&["a"], &["b", "c"]];
        assert_eq!(pod_for("x", &pods), pod_for("x", &pods));
        assert!(pod_for("x", &[]).is_empty());
    }
}
