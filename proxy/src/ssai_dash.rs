//! Server-side ad insertion for DASH: the pods a session records (cut on the content's
//! segment grid), and the MPD stitched from its records ([`crate::stitch_dash`]).

use crate::apply::{lay_out, Creatives, InvalidPlan, MediaPlan, Packaging};
use crate::plugin::bindings::DashMpd;
use crate::session::{BreakRecord, DecidedAd, SessionState, Slot};
use crate::ssai::{decided, is_break_id, JoinPolicy, Policies, PREROLL, START, VOD_INSERT};
use crate::stitch_dash::{self, DashCreative, DashOptions, DashPod, Grid};
use dash_mpd_core::MPD;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The MPD being personalized.
pub struct DashMedia<'a> {
    pub mpd: &'a MPD,
    pub view: &'a DashMpd,
}

impl DashMedia<'_> {
    /// Seconds since availability start at publish time (live), the MPD's "now".
    fn now(&self) -> Option<f64> {
        let ast = self.mpd.availabilityStartTime?;
        let at = self.mpd.publishTime.unwrap_or_else(chrono::Utc::now);
        Some((at - ast).num_milliseconds() as f64 / 1000.0)
    }

    /// Where players start a live stream: now less the suggested delay.
    fn live_edge(&self) -> f64 {
        let delay = self
            .mpd
            .suggestedPresentationDelay
            .or(self.mpd.maxSegmentDuration.map(|d| d * 3))
            .map_or(6.0, |d| d.as_secs_f64());
        self.now().map_or(0.0, |n| (n - delay).max(0.0))
    }

    /// Periods ending before this (MPD time) are out of every player's reach.
    fn window_start(&self) -> Option<f64> {
        let tsb = self.mpd.timeShiftBufferDepth?.as_secs_f64();
        self.view
            .dynamic
            .then(|| self.now().map(|n| n - tsb))
            .flatten()
    }

    fn first_start(&self) -> f64 {
        self.mpd
            .periods
            .first()
            .and_then(|p| p.start)
            .map_or(0.0, |d| d.as_secs_f64())
    }
}

fn record(start: f64, duration: f64, slots: Vec<Slot>, ads: Vec<DecidedAd>) -> BreakRecord {
    BreakRecord {
        start_seq: 0,
        start_time: Some(start),
        duration,
        joined_mid: false,
        content: slots.is_empty(),
        slots,
        ads,
    }
}

/// Slate after the laid-out slots until they cover `length` (the last one is cut by the
/// period boundary): DASH periods must not leave a gap.
async fn pad_with_slate(
    slots: &mut Vec<Slot>,
    length: f64,
    slate: &str,
    creatives: &dyn Creatives,
) -> Result<(), InvalidPlan> {
    let media = creatives
        .reference(slate, Packaging::Dash)
        .await
        .map_err(|e| InvalidPlan(format!("slate: {e}")))?;
    let n = media.segments.len();
    if n == 0 {
        return Ok(());
    }
    let mut offset: f64 = slots.iter().map(|s| s.duration).sum();
    let mut index = match slots.last() {
        Some(s) if s.creative == slate => (s.index as usize + 1) % n,
        _ => 0,
    };
    while offset < length - 0.05 && slots.len() < 10_000 {
        let d = media.segments[index].1;
        slots.push(Slot {
            creative: slate.to_string(),
            index: index as u32,
            duration: d,
            offset,
            disc: index == 0,
            ad: None,
            events: Vec::new(),
        });
        offset += d;
        index = (index + 1) % n;
    }
    Ok(())
}

/// Records to propose for what this MPD shows and the session has not recorded yet.
pub async fn propose(
    media: &DashMedia<'_>,
    plan: &MediaPlan,
    state: &SessionState,
    creatives: &dyn Creatives,
    policies: &Policies,
) -> Result<Vec<(String, BreakRecord)>, InvalidPlan> {
    let grid = Grid::of(media.mpd);
    let live = media.view.dynamic;
    let mut out = Vec::new();
    let lay = |pod, length| {
        lay_out(
            pod,
            length,
            f64::INFINITY,
            Packaging::Dash,
            creatives,
            policies.overlong,
        )
    };
    let anchor = match state.breaks.get(START).and_then(|r| r.start_time) {
        Some(a) => a,
        None => {
            let anchor = if live {
                grid.snap_down(media.live_edge())
            } else {
                media.first_start()
            };
            out.push((
                START.to_string(),
                record(anchor, 0.0, Vec::new(), Vec::new()),
            ));
            if let Some(pod) = &plan.preroll {
                let slots = lay(pod, None).await?;
                out.push((
                    PREROLL.to_string(),
                    record(anchor, 0.0, slots, decided(pod, None)),
                ));
            }
            anchor
        }
    };
    if !live {
        for (k, (at, pod)) in plan.inserts.iter().enumerate() {
            let id = format!("{VOD_INSERT}{k}");
            if !state.breaks.contains_key(&id) {
                let slots = lay(pod, None).await?;
                let start = grid.snap(media.first_start() + at);
                out.push((id, record(start, 0.0, slots, decided(pod, None))));
            }
        }
    }
    for b in &media.view.breaks {
        if state.breaks.contains_key(&b.id) || out.iter().any(|(id, _)| id == &b.id) {
            continue;
        }
        let start = grid.snap(b.start);
        let mut end = grid.snap(b.start + b.duration);
        if end <= start + 1e-3 {
            continue;
        }
        let joined_mid = live && start < anchor - 1e-3;
        let fill = plan
            .fills
            .iter()
            .find(|(id, _)| id == &b.id)
            .map(|(_, p)| p);
        let content = joined_mid && policies.join == JoinPolicy::Content;
        let (slots, ads) = match fill.filter(|_| !content) {
            Some(pod) => {
                let mut slots = lay(pod, Some(end - start)).await?;
                let total: f64 = slots.iter().map(|s| s.duration).sum();
                match creatives.slate() {
                    Some(slate) => {
                        pad_with_slate(&mut slots, end - start, slate, creatives).await?
                    }
                    // no slate: the content comes back where the ads end (on the grid)
                    None if total < end - start - 0.05 => {
                        end = grid.snap_down(start + total).max(start);
                        let cut = end - start;
                        slots.retain(|s| s.offset < cut - 0.05);
                    }
                    None => {}
                }
                (slots, decided(pod, state.decisions.get(&b.id)))
            }
            None => (Vec::new(), Vec::new()),
        };
        let mut rec = record(start, end - start, slots, ads);
        rec.joined_mid = joined_mid;
        out.push((b.id.clone(), rec));
    }
    Ok(out)
}

/// The MPD stitched from the session's records.
pub async fn render(
    media: &DashMedia<'_>,
    mpd: &MPD,
    records: &BTreeMap<String, BreakRecord>,
    creatives: &dyn Creatives,
    policies: &Policies,
) -> Result<MPD, InvalidPlan> {
    let mut pods = Vec::new();
    let mut resolved: BTreeMap<String, Arc<DashCreative>> = BTreeMap::new();
    for (id, rec) in records {
        if rec.content || rec.slots.is_empty() || id == START {
            continue;
        }
        let Some(start) = rec.start_time else {
            continue;
        };
        for s in &rec.slots {
            if !resolved.contains_key(&s.creative) {
                let c = creatives
                    .dash(&s.creative)
                    .await
                    .map_err(|e| InvalidPlan(format!("break {id}: {e}")))?;
                resolved.insert(s.creative.clone(), c);
            }
        }
        pods.push(DashPod {
            id,
            start,
            end: if is_break_id(id) {
                start + rec.duration
            } else {
                start
            },
            slots: &rec.slots,
        });
    }
    let opts = DashOptions {
        markers: policies.markers,
        tracking: policies.tracking,
    };
    stitch_dash::render(mpd, &pods, &resolved, media.window_start(), opts).map_err(InvalidPlan)
}
