//! Property tests: over long sequences of reloads of the origin simulator's live DASH channel
//! with random break schedules, a session's stitched MPD keeps its periods: published periods
//! never change, and the periods tile the timeline without gaps or overlaps.

mod common;

use async_trait::async_trait;
use common::schedule;
use dash_mpd_core::{Period, MPD};
use manifold_origin::Origin;
use manifold_ssai::apply::MediaPlan;
use manifold_ssai::asked::Class;
use manifold_ssai::creatives::{AdMedia, Creatives, Packaging, RenditionWant};
use manifold_ssai::ledger::SessionState;
use manifold_ssai::parse::{parse, Parsed};
use manifold_ssai::pipeline::{self, Context, InMemory};
use manifold_ssai::ssai::Policies;
use manifold_ssai::ssai_dash::DashMedia;
use manifold_ssai::stitch_dash::{creative_timing, DashCreative};
use manifold_ssai::synthetic::{self, pod_for};
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The sample creatives, read from the origin simulator.
struct Catalog<'a>(&'a Origin);

impl Catalog<'_> {
    fn mpd(&self, creative: &str) -> Result<MPD, String> {
        let path = format!("/ads/{creative}/dash/manifest.mpd");
        let r = self
            .0
            .resource(&path, SystemTime::now())
            .map_err(|e| e.to_string())?
            .ok_or("no such creative")?;
        dash_mpd_core::parse(std::str::from_utf8(&r.body).unwrap()).map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Creatives for Catalog<'_> {
    async fn media(
        &self,
        creative: &str,
        _p: Packaging,
        _w: RenditionWant,
    ) -> Result<Arc<AdMedia>, String> {
        let timing = creative_timing(&self.mpd(creative)?)?;
        Ok(Arc::new(AdMedia {
            segments: timing.into_iter().map(|d| (String::new(), d)).collect(),
            map: None,
        }))
    }

    fn slate(&self) -> Option<&str> {
        Some("slate")
    }

    async fn dash(&self, creative: &str) -> Result<Arc<DashCreative>, String> {
        let period = self.mpd(creative)?.periods.remove(0);
        Ok(Arc::new(DashCreative {
            base: format!("/ads/{creative}/dash/"),
            period,
        }))
    }
}

const PODS: [&[&str]; 5] = [
    &["ad10"],
    &["ad15", "ad10"],
    &["ad30"],
    &["ad10", "ad10", "ad10"],
    &[],
];

fn plan_for(view: &manifold_ssai::types::DashMpd) -> MediaPlan {
    MediaPlan {
        fills: view
            .breaks
            .iter()
            .filter_map(|b| {
                let pod = pod_for(&b.id, &PODS);
                (!pod.is_empty()).then(|| (b.id.clone(), synthetic::pod(pod)))
            })
            .collect(),
        ..Default::default()
    }
}

async fn reload(origin: &Origin, path: &str, at: SystemTime, state: &mut SessionState) -> MPD {
    let body = origin.resource(path, at).unwrap().unwrap().body;
    let (_, parsed) = parse(Class::DashManifest, &body);
    let Parsed::Dash { mpd, view, .. } = parsed else {
        panic!("not an MPD")
    };
    let plan = plan_for(&view);
    let media = DashMedia {
        mpd: &mpd,
        view: &view,
    };
    let policies = Policies::default();
    let catalog = Catalog(origin);
    let cx = Context {
        creatives: &catalog,
        policies: &policies,
        want: RenditionWant::default(),
        prefix: "/t/~s",
        now_ms: 0,
    };
    let ledger = InMemory::new(std::mem::take(state));
    let plan = ((*mpd).clone(), plan);
    let out = pipeline::run_plan(&media, plan, ledger.state(), &ledger, &cx)
        .await
        .unwrap();
    *state = ledger.into_state();
    // what a player gets: the serialized MPD, parsed again
    dash_mpd_core::parse(&out.to_string()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn secs(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64())
}

/// Per template: presentationTimeOffset and startNumber.
type Offsets = Vec<(Option<u64>, Option<u64>)>;

/// What must not change once a period is published: its start and its templates' offsets.
fn published(p: &Period) -> (f64, Offsets) {
    let offsets = p
        .adaptations
        .iter()
        .flat_map(|a| {
            a.SegmentTemplate
                .iter()
                .chain(
                    a.representations
                        .iter()
                        .filter_map(|r| r.SegmentTemplate.as_ref()),
                )
                .map(|t| (t.presentationTimeOffset, t.startNumber))
        })
        .collect();
    (secs(p.start), offsets)
}

fn check(prev: &MPD, cur: &MPD, label: &str) -> Result<(), TestCaseError> {
    for p in &cur.periods {
        let id = p.id.clone().unwrap_or_default();
        if let Some(before) = prev.periods.iter().find(|q| q.id == p.id) {
            prop_assert_eq!(
                published(before),
                published(p),
                "{}: period {} changed",
                label,
                id
            );
        }
    }
    // a period that left never comes back, and ids are unique
    let ids: Vec<_> = cur.periods.iter().map(|p| p.id.clone()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    prop_assert_eq!(unique.len(), ids.len(), "{}: duplicate period ids", label);
    if let Some(first) = cur.periods.first() {
        if let Some(i) = prev.periods.iter().position(|q| q.id == first.id) {
            let later: Vec<_> = prev.periods[i..].iter().map(|p| p.id.clone()).collect();
            prop_assert_eq!(
                &ids[..later.len().min(ids.len())],
                &later[..later.len().min(ids.len())],
                "{}: periods reordered",
                label
            );
        }
    }
    for w in cur.periods.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        prop_assert!(
            secs(a.start) < secs(b.start),
            "{}: periods out of order",
            label
        );
        if let Some(d) = a.duration {
            // an ad period ends where the next begins: no gap, no overlap
            prop_assert!(
                (secs(a.start) + d.as_secs_f64() - secs(b.start)).abs() < 1e-3,
                "{}: {:?} ends at {} but {:?} starts at {}",
                label,
                a.id,
                secs(a.start) + d.as_secs_f64(),
                b.id,
                secs(b.start)
            );
        }
        // content after an ad resumes at the media time of its start (live keeps the timeline)
        let is_ad = |p: &Period| p.id.as_deref().is_some_and(|i| i.contains("~ad"));
        if is_ad(a) && !is_ad(b) {
            for set in &b.adaptations {
                let t = set.SegmentTemplate.as_ref().unwrap();
                let ts = t.timescale.unwrap_or(1) as f64;
                let pto = t.presentationTimeOffset.unwrap_or(0) as f64 / ts;
                prop_assert!(
                    (pto - secs(b.start)).abs() < 1e-3,
                    "{}: {:?} offset {} at start {}",
                    label,
                    b.id,
                    pto,
                    secs(b.start)
                );
            }
        }
    }
    Ok(())
}

async fn run(
    window: u64,
    first: u64,
    every: u64,
    len: u64,
    steps: &[u64],
    path: &str,
) -> Result<(), TestCaseError> {
    let media = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/media"));
    let (origin, mut at) = Origin::live_window(media, window, first, every, len).unwrap();
    let mut state = SessionState::default();
    let mut prev: Option<MPD> = None;
    let mut ad_periods = 0;
    for step in steps {
        at += Duration::from_millis(*step);
        let cur = reload(&origin, path, at, &mut state).await;
        if let Some(p) = &prev {
            check(p, &cur, path)?;
        }
        ad_periods += cur
            .periods
            .iter()
            .filter(|p| p.id.as_deref().is_some_and(|i| i.contains("~ad")))
            .count();
        prev = Some(cur);
    }
    prop_assert!(
        ad_periods > 0 || every == 0,
        "no ad period was ever stitched"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn numbered_dash_periods_stay_consistent_over_500_reloads(
        (window, first, every, len) in schedule(),
        steps in proptest::collection::vec(1000u64..3000, 500),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(run(window, first, every, len, &steps, "/live/dash/manifest.mpd"))?;
    }

    #[test]
    fn timeline_dash_periods_stay_consistent_over_500_reloads(
        (window, first, every, len) in schedule(),
        steps in proptest::collection::vec(1000u64..3000, 500),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(run(window, first, every, len, &steps, "/live/dash/timeline.mpd"))?;
    }
}
