//! Per-session consistency: what a viewer saw on one reload must agree with what it saw before.
//!
//! HLS, per media playlist a viewer follows ([`HlsChecker`]):
//! - `sequence_backwards`: `EXT-X-MEDIA-SEQUENCE` went down;
//! - `segment_changed`: the segment at sequence number k has another URI than on an earlier
//!   reload (published segments never change);
//! - `discontinuity_changed`: the discontinuity number of segment k (`EXT-X-DISCONTINUITY-SEQUENCE`
//!   plus the tags before it in the window) changed;
//! - `ad_changed`: the segment at a program date-time inside a break (an ad URI, containing
//!   `/ads/`) became another ad or content, or content there became an ad: the same break must
//!   get the same ads on every reload;
//! - `timeline_changed`: the same for content segments (another segment at the same date-time).
//!
//! DASH, per session ([`DashChecker`]):
//! - `publish_time_backwards`: `MPD@publishTime` went down;
//! - `period_start_changed`: a Period id seen before has another start;
//! - `period_changed` / `ad_changed`: its duration, BaseURLs, adaptation sets, representations
//!   or segment templates changed (`ad_changed` when it is an ad period);
//! - `segment_changed`: a SegmentTimeline entry at time t changed its duration.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// A broken invariant, with what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: &'static str,
    pub detail: String,
}

fn violation(kind: &'static str, detail: String) -> Violation {
    Violation { kind, detail }
}

/// 64-bit hash of anything hashable (std SipHash: stable within a run).
pub fn hash_of<T: Hash + ?Sized>(v: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// Whether a URI points at an ad creative.
pub fn is_ad_uri(uri: &str) -> bool {
    uri.contains("/ads/") || uri.starts_with("ads/")
}

/// A media playlist segment, as the checks and the player need it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentFacts {
    /// The URI as written in the playlist.
    pub uri: String,
    pub uri_hash: u64,
    pub duration: f64,
    pub discontinuity: bool,
    /// `EXT-X-PROGRAM-DATE-TIME`, milliseconds since the Unix epoch.
    pub pdt_ms: Option<i64>,
    /// The `EXT-X-MAP` URI in effect for this segment.
    pub map: Option<String>,
    pub is_ad: bool,
    /// Carries ad-break signalling (`EXT-X-CUE-OUT`/`-CONT`, a SCTE-35 `EXT-X-DATERANGE`).
    pub cue: bool,
}

impl SegmentFacts {
    /// A plain segment (for tests and simple playlists).
    pub fn new(uri: &str, duration: f64) -> SegmentFacts {
        SegmentFacts {
            uri: uri.to_string(),
            uri_hash: hash_of(uri),
            duration,
            discontinuity: false,
            pdt_ms: None,
            map: None,
            is_ad: is_ad_uri(uri),
            cue: false,
        }
    }
}

/// A media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaFacts {
    pub target_duration: f64,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub end_list: bool,
    pub segments: Vec<SegmentFacts>,
}

impl MediaFacts {
    /// Whether this playlist shows an ad break (markers or ad segments).
    pub fn shows_break(&self) -> bool {
        self.segments.iter().any(|s| s.is_ad || s.cue)
    }
}

/// Checks successive reloads of one media playlist of one session.
#[derive(Debug, Default)]
pub struct HlsChecker {
    last_sequence: Option<u64>,
    /// sequence number → (URI hash, discontinuity number), for the current window.
    by_sequence: BTreeMap<u64, (u64, u64)>,
    /// program date-time → (URI hash, is ad), for the current window.
    by_time: BTreeMap<i64, (u64, bool)>,
}

impl HlsChecker {
    pub fn observe(&mut self, m: &MediaFacts) -> Vec<Violation> {
        let mut out = Vec::new();
        let msn = m.media_sequence;
        if let Some(last) = self.last_sequence {
            if msn < last {
                out.push(violation(
                    "sequence_backwards",
                    format!("EXT-X-MEDIA-SEQUENCE {last} then {msn}"),
                ));
            }
        }
        self.last_sequence = Some(self.last_sequence.map_or(msn, |l| l.max(msn)));
        let mut disc = m.discontinuity_sequence;
        for (i, s) in m.segments.iter().enumerate() {
            let seq = msn + i as u64;
            if s.discontinuity {
                disc += 1;
            }
            match self.by_sequence.get(&seq) {
                Some(&(h, d)) => {
                    if h != s.uri_hash {
                        out.push(violation(
                            "segment_changed",
                            format!("sequence {seq} is now {} (another URI before)", s.uri),
                        ));
                    }
                    if d != disc {
                        out.push(violation(
                            "discontinuity_changed",
                            format!("sequence {seq} ({}): discontinuity {d} then {disc}", s.uri),
                        ));
                    }
                }
                None => {
                    self.by_sequence.insert(seq, (s.uri_hash, disc));
                }
            }
            if let Some(t) = s.pdt_ms {
                match self.by_time.get(&t) {
                    Some(&(h, was_ad)) if h != s.uri_hash => {
                        let kind = if was_ad || s.is_ad {
                            "ad_changed"
                        } else {
                            "timeline_changed"
                        };
                        out.push(violation(
                            kind,
                            format!(
                                "at {} the {} is now {} ({})",
                                fmt_ms(t),
                                if was_ad { "ad" } else { "content" },
                                s.uri,
                                if s.is_ad { "ad" } else { "content" }
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.by_time.insert(t, (s.uri_hash, s.is_ad));
                    }
                }
            }
        }
        // forget what left the window
        let first = self.last_sequence.unwrap_or(msn);
        self.by_sequence = self.by_sequence.split_off(&first);
        if let Some(t0) = m.segments.first().and_then(|s| s.pdt_ms) {
            self.by_time = self.by_time.split_off(&t0);
        }
        out
    }
}

fn fmt_ms(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        Err(_) => format!("{ms} ms"),
    }
}

/// A period of an MPD, as the checks need it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodFacts {
    pub id: String,
    pub start_ms: i64,
    pub duration_ms: Option<i64>,
    /// Hash of everything that must not change once published: BaseURLs, adaptation sets,
    /// representations and templates (not the SegmentTimeline, which grows).
    pub fingerprint: u64,
    pub is_ad: bool,
    /// SegmentTimeline entries: (track key, t, d).
    pub timeline: Vec<(u64, u64, u64)>,
}

/// An MPD.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MpdFacts {
    pub publish_time_ms: Option<i64>,
    pub periods: Vec<PeriodFacts>,
    /// Shows an ad break (an SCTE-35 event stream or an ad period).
    pub shows_break: bool,
}

#[derive(Debug, Clone, Copy)]
struct SeenPeriod {
    start_ms: i64,
    duration_ms: Option<i64>,
    fingerprint: u64,
}

/// Checks successive reloads of one session's MPD.
#[derive(Debug, Default)]
pub struct DashChecker {
    publish_ms: Option<i64>,
    periods: HashMap<String, SeenPeriod>,
    /// (period id hash, track key) → t → d
    timelines: HashMap<(u64, u64), BTreeMap<u64, u64>>,
}

impl DashChecker {
    pub fn observe(&mut self, m: &MpdFacts) -> Vec<Violation> {
        let mut out = Vec::new();
        if let (Some(last), Some(now)) = (self.publish_ms, m.publish_time_ms) {
            if now < last {
                out.push(violation(
                    "publish_time_backwards",
                    format!("publishTime {} then {}", fmt_ms(last), fmt_ms(now)),
                ));
            }
        }
        if m.publish_time_ms.is_some() {
            self.publish_ms = self.publish_ms.max(m.publish_time_ms);
        }
        let mut present: Vec<(u64, u64)> = Vec::new();
        for p in &m.periods {
            match self.periods.get_mut(&p.id) {
                Some(seen) => {
                    if seen.start_ms != p.start_ms {
                        out.push(violation(
                            "period_start_changed",
                            format!(
                                "period {:?} started at {} ms, now at {} ms",
                                p.id, seen.start_ms, p.start_ms
                            ),
                        ));
                    }
                    let duration_changed = matches!(
                        (seen.duration_ms, p.duration_ms),
                        (Some(a), Some(b)) if a != b
                    );
                    if duration_changed || seen.fingerprint != p.fingerprint {
                        out.push(violation(
                            if p.is_ad {
                                "ad_changed"
                            } else {
                                "period_changed"
                            },
                            format!(
                                "period {:?}: {} changed",
                                p.id,
                                if duration_changed {
                                    "duration"
                                } else {
                                    "BaseURL, sets, representations or templates"
                                }
                            ),
                        ));
                    }
                    if seen.duration_ms.is_none() {
                        seen.duration_ms = p.duration_ms;
                    }
                }
                None => {
                    self.periods.insert(
                        p.id.clone(),
                        SeenPeriod {
                            start_ms: p.start_ms,
                            duration_ms: p.duration_ms,
                            fingerprint: p.fingerprint,
                        },
                    );
                }
            }
            let pid = hash_of(&p.id);
            let mut firsts: HashMap<u64, u64> = HashMap::new();
            for &(track, t, d) in &p.timeline {
                let first = firsts.entry(track).or_insert(t);
                *first = (*first).min(t);
                let seen = self.timelines.entry((pid, track)).or_default();
                match seen.get(&t) {
                    Some(&was) if was != d => out.push(violation(
                        "segment_changed",
                        format!(
                            "period {:?}: the segment at t={t} lasted {was}, now {d}",
                            p.id
                        ),
                    )),
                    Some(_) => {}
                    None => {
                        seen.insert(t, d);
                    }
                }
            }
            for (track, first) in firsts {
                if let Some(seen) = self.timelines.get_mut(&(pid, track)) {
                    *seen = seen.split_off(&first);
                }
                present.push((pid, track));
            }
        }
        // forget periods that left
        let ids: std::collections::HashSet<&str> =
            m.periods.iter().map(|p| p.id.as_str()).collect();
        if self.periods.len() > ids.len() + 64 {
            self.periods.retain(|id, _| ids.contains(id.as_str()));
        }
        self.timelines.retain(|k, _| present.contains(k));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(uri: &str, pdt: i64) -> SegmentFacts {
        SegmentFacts {
            pdt_ms: Some(pdt),
            ..SegmentFacts::new(uri, 2.0)
        }
    }

    fn playlist(msn: u64, dsn: u64, segs: Vec<SegmentFacts>) -> MediaFacts {
        MediaFacts {
            target_duration: 2.0,
            media_sequence: msn,
            discontinuity_sequence: dsn,
            end_list: false,
            segments: segs,
        }
    }

    /// Content 10.., with a break of ads over [14, 17) (sequence numbers = content numbers).
    fn window(msn: u64, len: u64, ad: &str) -> MediaFacts {
        let mut segs = Vec::new();
        for n in msn..msn + len {
            let mut s = if (14..17).contains(&n) {
                seg(
                    &format!("/t/~tok/ads/{ad}/hls/v0/{}.ts", n - 14),
                    n as i64 * 2000,
                )
            } else {
                seg(&format!("v0/{n}.ts"), n as i64 * 2000)
            };
            s.discontinuity = n == 14 || n == 17;
            segs.push(s);
        }
        // discontinuities before the window: those at 14 and 17 that left it
        let dsn = [14, 17].iter().filter(|&&d| d < msn).count() as u64;
        playlist(msn, dsn, segs)
    }

    #[test]
    fn a_sliding_stitched_window_is_consistent() {
        let mut c = HlsChecker::default();
        for msn in 8..30 {
            assert_eq!(c.observe(&window(msn, 6, "ad30")), vec![], "msn {msn}");
            // the same playlist again (a cached reload)
            assert_eq!(c.observe(&window(msn, 6, "ad30")), vec![]);
        }
        assert!(c.by_sequence.len() <= 6 && c.by_time.len() <= 6);
    }

    #[test]
    fn sequence_going_back_is_reported() {
        let mut c = HlsChecker::default();
        assert!(c.observe(&window(10, 6, "ad30")).is_empty());
        let v = c.observe(&window(9, 6, "ad30"));
        assert_eq!(v[0].kind, "sequence_backwards");
    }

    #[test]
    fn other_ads_for_the_same_break_are_reported() {
        let mut c = HlsChecker::default();
        assert!(c.observe(&window(12, 6, "ad30")).is_empty());
        let v = c.observe(&window(13, 6, "ad15"));
        let kinds: Vec<_> = v.iter().map(|v| v.kind).collect();
        assert!(kinds.contains(&"ad_changed"), "{v:?}");
        assert!(kinds.contains(&"segment_changed"), "{v:?}");
        assert!(v.iter().any(|v| v.detail.contains("ad15")));
    }

    #[test]
    fn a_published_segment_that_changes_is_reported() {
        let mut c = HlsChecker::default();
        let a = playlist(5, 0, vec![seg("v0/5.ts", 10_000), seg("v0/6.ts", 12_000)]);
        assert!(c.observe(&a).is_empty());
        // same sequence numbers, another segment at 6 and the timeline moved
        let b = playlist(5, 0, vec![seg("v0/5.ts", 10_000), seg("v0/6b.ts", 12_000)]);
        let v = c.observe(&b);
        let kinds: Vec<_> = v.iter().map(|v| v.kind).collect();
        assert_eq!(kinds, vec!["segment_changed", "timeline_changed"]);
        // content replaced by an ad after the fact
        let mut c = HlsChecker::default();
        assert!(c.observe(&a).is_empty());
        let b = playlist(
            5,
            0,
            vec![
                seg("v0/5.ts", 10_000),
                seg("/x/ads/ad10/hls/v0/0.ts", 12_000),
            ],
        );
        let v = c.observe(&b);
        assert!(v.iter().any(|v| v.kind == "ad_changed"), "{v:?}");
    }

    #[test]
    fn discontinuity_numbering_must_hold() {
        let mut c = HlsChecker::default();
        assert!(c.observe(&window(12, 6, "ad30")).is_empty());
        // the discontinuity at 14 leaves the window but the sequence is not bumped
        let mut w = window(15, 6, "ad30");
        w.discontinuity_sequence = 0;
        let v = c.observe(&w);
        assert!(v.iter().all(|v| v.kind == "discontinuity_changed") && !v.is_empty());
    }

    fn period(
        id: &str,
        start: i64,
        dur: Option<i64>,
        fp: u64,
        tl: Vec<(u64, u64, u64)>,
    ) -> PeriodFacts {
        PeriodFacts {
            id: id.into(),
            start_ms: start,
            duration_ms: dur,
            fingerprint: fp,
            is_ad: id.contains("ad"),
            timeline: tl,
        }
    }

    #[test]
    fn dash_periods_stay_published() {
        let mut c = DashChecker::default();
        let m1 = MpdFacts {
            publish_time_ms: Some(1000),
            periods: vec![period("0", 0, None, 1, vec![(1, 0, 2), (1, 2, 2)])],
            shows_break: false,
        };
        assert!(c.observe(&m1).is_empty());
        let m2 = MpdFacts {
            publish_time_ms: Some(3000),
            periods: vec![
                period("0", 0, None, 1, vec![(1, 2, 2), (1, 4, 2)]),
                period("b~ad0", 6000, Some(10_000), 2, vec![]),
            ],
            shows_break: true,
        };
        assert!(c.observe(&m2).is_empty());
        let m3 = MpdFacts {
            publish_time_ms: Some(2000),
            periods: vec![
                period("0", 0, None, 1, vec![(1, 4, 3)]),
                period("b~ad0", 6500, Some(10_000), 3, vec![]),
            ],
            shows_break: true,
        };
        let v = c.observe(&m3);
        let kinds: Vec<_> = v.iter().map(|v| v.kind).collect();
        assert_eq!(
            kinds,
            vec![
                "publish_time_backwards",
                "segment_changed",
                "period_start_changed",
                "ad_changed"
            ]
        );
        // a period gaining a duration is fine; changing it is not
        let mut c = DashChecker::default();
        assert!(c
            .observe(&MpdFacts {
                periods: vec![period("0", 0, None, 1, vec![])],
                ..MpdFacts::default()
            })
            .is_empty());
        assert!(c
            .observe(&MpdFacts {
                periods: vec![period("0", 0, Some(30_000), 1, vec![])],
                ..MpdFacts::default()
            })
            .is_empty());
        let v = c.observe(&MpdFacts {
            periods: vec![period("0", 0, Some(20_000), 1, vec![])],
            ..MpdFacts::default()
        });
        assert_eq!(v[0].kind, "period_changed");
    }
}
