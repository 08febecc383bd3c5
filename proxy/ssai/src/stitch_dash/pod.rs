//! A guided session's DASH pod as its own MPD: the alternative presentation its break's
//! event points at. Its periods are the ones stitching would cut (same ad segments, same
//! tracking parameters), one per ad, on a static timeline from 0.

use super::*;

/// The period of `mpd` that time `t` (MPD time) falls in: its id and start.
pub fn period_at(mpd: &MPD, t: f64) -> (Option<String>, f64) {
    let spans = source_spans(mpd);
    let i = spans.iter().rposition(|(s, _)| *s <= t + 1e-3).unwrap_or(0);
    (
        mpd.periods.get(i).and_then(|p| p.id.clone()),
        spans.get(i).map_or(0.0, |(s, _)| *s),
    )
}

/// The pod recorded under `key` as a static MPD: one period per run of ad slots (slate
/// padding left out: the content resumes instead).
pub fn pod_mpd(
    key: &str,
    slots: &[Slot],
    creatives: &BTreeMap<String, Arc<DashCreative>>,
    tracking: bool,
) -> Result<MPD, String> {
    let all = runs(slots);
    let end_of_pod = slots.last().map_or(0.0, |s| s.offset + s.duration);
    let mut periods = Vec::new();
    let mut t = 0.0;
    for (k, run) in all.iter().enumerate() {
        if slots[run.first_slot].ad.is_none() {
            continue;
        }
        let creative = creatives
            .get(&run.creative)
            .ok_or_else(|| format!("creative {:?} not resolved", run.creative))?;
        let run_end = all.get(k + 1).map_or(end_of_pod, |n| n.offset);
        let len = (run_end - run.offset).max(0.0);
        if len <= 1e-3 {
            continue;
        }
        let period = ad_period(
            &creative.period,
            creative,
            run,
            key,
            format!("ad{k}"),
            t,
            len,
            tracking,
            None,
        )?;
        periods.extend(period);
        t += len;
    }
    if periods.is_empty() {
        return Err(format!("break {key:?} has no ads"));
    }
    Ok(MPD {
        xmlns: Some("urn:mpeg:dash:schema:mpd:2011".into()),
        profiles: Some("urn:mpeg:dash:profile:isoff-live:2011".into()),
        mpdtype: Some("static".into()),
        mediaPresentationDuration: Some(secs(t)),
        minBufferTime: Some(secs(2.0)),
        periods,
        ..Default::default()
    })
}
