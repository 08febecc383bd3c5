//! A DASH viewer: the MPD reloaded every `minimumUpdatePeriod`, segments resolved per
//! representation and fetched from the live edge on.

use super::*;

/// Per media type: the newest segment fetched and the inits fetched.
#[derive(Default)]
struct DashCursor {
    after: Option<f64>,
    inits: Inits,
}

pub(super) async fn dash_viewer(sh: &Shared, id: u64, entry: Url, mut rng: Rng) {
    let m = &sh.metrics;
    let mut stop = sh.stop.clone();
    let mut checker = DashChecker::default();
    let mut video_index = id as usize;
    let mut video = DashCursor::default();
    let mut audio = DashCursor::default();
    let mut url = entry;
    let mut period = Duration::from_secs(2);
    let mut first = true;
    loop {
        if *stop.borrow() {
            return;
        }
        let t0 = Instant::now();
        let kind = Kind::Mpd;
        let Some(f) = sh.fetch(kind, &url).await else {
            let wait = if first { RETRY } else { period / 2 };
            if sleep_or_stop(&mut stop, t0 + wait).await {
                return;
            }
            continue;
        };
        let doc = match sh.mpds.get(&f.body, parse_mpd) {
            Ok((d, _)) => d,
            Err(e) => {
                sh.parse_error(kind, &f.url, &e);
                if sleep_or_stop(&mut stop, t0 + period / 2).await {
                    return;
                }
                continue;
            }
        };
        let mpd = &doc.mpd;
        // reload from the MPD's Location (the session), else from where redirects led
        url = match mpd.locations.first().map(|l| f.url.join(l.url.trim())) {
            Some(Ok(u)) => u,
            _ => f.url.clone(),
        };
        let dynamic = mpd.mpdtype.as_deref() == Some("dynamic");
        period = mpd
            .minimumUpdatePeriod
            .filter(|d| !d.is_zero())
            .or(mpd.maxSegmentDuration)
            .unwrap_or(Duration::from_secs(2))
            .clamp(Duration::from_millis(500), Duration::from_secs(60));
        let v = checker.observe(&doc.facts);
        m.add(&m.counters.reloads_checked, 1);
        if !v.is_empty() {
            sh.violations(&f.url, v);
        }
        if doc.facts.shows_break {
            m.add(&m.counters.manifests_with_breaks, 1);
        }
        let clock = Clock::of(mpd, now_ms());
        if dynamic {
            if let Some(edge) = mpd::live_edge(mpd, clock) {
                m.staleness(Duration::from_secs_f64(
                    (clock.now - edge).clamp(0.0, 86_400.0),
                ));
            }
        }
        if !first && rng.chance(sh.opts.abr_switch) {
            video_index += 1 + rng.below(7) as usize;
            m.add(&m.counters.abr_switches, 1);
        }
        let n = sh.opts.live_edge_segments;
        let from = |c: &DashCursor| c.after.map(From::After).unwrap_or(From::LiveEdge(n));
        let (vf, af) = (from(&video), from(&audio));
        let plan = match mpd::plan(mpd, &f.url, clock, video_index, |media| match media {
            Media::Video => vf,
            Media::Audio => af,
        }) {
            Ok(p) => p,
            Err(e) => {
                sh.parse_error(kind, &f.url, &e.to_string());
                if sleep_or_stop(&mut stop, t0 + period).await {
                    return;
                }
                continue;
            }
        };
        // a joining viewer takes the last few segments over all periods
        let (vt, at): (Vec<_>, Vec<_>) = plan.into_iter().partition(|t| t.media == Media::Video);
        let vt = live_edge_only(vt, vf, n);
        let at = live_edge_only(at, af, n);
        tokio::join!(
            download_dash(sh, &vt, &mut video, &stop),
            download_dash(sh, &at, &mut audio, &stop)
        );
        first = false;
        if !dynamic {
            return;
        }
        if sleep_or_stop(&mut stop, t0 + period).await {
            return;
        }
    }
}

/// With [`From::LiveEdge`], keeps only the last `n` segments over all periods.
pub(super) fn live_edge_only(
    mut tracks: Vec<mpd::TrackPlan>,
    from: From,
    n: usize,
) -> Vec<mpd::TrackPlan> {
    if let From::LiveEdge(_) = from {
        let mut keep = n;
        for t in tracks.iter_mut().rev() {
            let k = t.segments.len().min(keep);
            t.segments.drain(..t.segments.len() - k);
            keep -= k;
        }
    }
    tracks
}

async fn download_dash(
    sh: &Shared,
    tracks: &[mpd::TrackPlan],
    cursor: &mut DashCursor,
    stop: &watch::Receiver<bool>,
) {
    for t in tracks {
        for s in &t.segments {
            if *stop.borrow() {
                return;
            }
            if cursor.after.is_some_and(|a| s.start <= a + 1e-3) {
                continue;
            }
            match t.init_url() {
                Ok(Some(u)) if cursor.inits.first_time(&u) => {
                    sh.fetch(Kind::Init, &u).await;
                }
                Ok(_) => {}
                Err(e) => {
                    sh.parse_error(Kind::Mpd, &t.base, &e.to_string());
                    return;
                }
            }
            match t.media_url(s) {
                Ok(u) => {
                    if sh.fetch(Kind::Segment, &u).await.is_some() && is_ad_uri(u.path()) {
                        sh.metrics
                            .counters
                            .ad_segments
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    sh.parse_error(Kind::Mpd, &t.base, &e.to_string());
                    return;
                }
            }
            cursor.after = Some(s.start);
        }
    }
}
