//! The live timeline: which segments exist at a wall-clock instant, where the content loop
//! restarts, and where the scheduled ad breaks are. Segment `n` covers
//! `[epoch + n·d, epoch + (n+1)·d)` and is published once it has ended.

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone)]
pub struct Schedule {
    /// Target/segment duration `d`, seconds.
    pub segment_secs: u32,
    /// Segments in a live playlist window.
    pub window: u64,
    /// Start of segment 0 (`availabilityStartTime`).
    pub epoch: SystemTime,
    /// Content segments per loop of the sample media.
    pub loop_len: u64,
    /// First break starts at this segment...
    pub ad_first: u64,
    /// ...then one every `ad_every` segments (0: no breaks)...
    pub ad_every: u64,
    /// ...each lasting `ad_len` segments, announced `announce` segments before it starts.
    pub ad_len: u64,
    pub announce: u64,
}

/// One scheduled ad break (an SCTE-35 avail), `len` segments from segment `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Break {
    pub id: u64,
    pub start: u64,
    pub len: u64,
}

/// Where a segment sits relative to ad breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cue {
    /// First segment of the break (splice out).
    Out(Break),
    /// Later segment inside the break, `n` segments after its start.
    Cont(Break, u64),
    /// First content segment after the break (splice in).
    In(Break),
}

impl Schedule {
    pub fn segment_duration(&self) -> Duration {
        Duration::from_secs(self.segment_secs as u64)
    }

    /// The window of published segments at `now`: `first..end` (empty before the first ends).
    pub fn live_window(&self, now: SystemTime) -> std::ops::Range<u64> {
        let elapsed = now.duration_since(self.epoch).unwrap_or_default();
        let end = elapsed.as_secs() / self.segment_secs as u64;
        end.saturating_sub(self.window)..end
    }

    /// Wall-clock start of segment `n` (its `EXT-X-PROGRAM-DATE-TIME`).
    pub fn segment_start(&self, n: u64) -> SystemTime {
        self.epoch + Duration::from_secs(n * self.segment_secs as u64)
    }

    /// Whether segment `n` starts a new lap of the content loop (a timestamp discontinuity in TS).
    pub fn loop_restarts_at(&self, n: u64) -> bool {
        n > 0 && n % self.loop_len == 0
    }

    /// Discontinuities in segments before `first` (`EXT-X-DISCONTINUITY-SEQUENCE`).
    pub fn discontinuities_before(&self, first: u64) -> u64 {
        if first == 0 {
            0
        } else {
            (first - 1) / self.loop_len
        }
    }

    pub fn break_by_id(&self, id: u64) -> Option<Break> {
        (self.ad_every > 0).then(|| Break {
            id,
            start: self.ad_first + id * self.ad_every,
            len: self.ad_len,
        })
    }

    /// The cue tag segment `n` carries, if any.
    pub fn cue_at(&self, n: u64) -> Option<Cue> {
        if self.ad_every == 0 || n < self.ad_first {
            return None;
        }
        let since = n - self.ad_first;
        let (k, off) = (since / self.ad_every, since % self.ad_every);
        if off == 0 {
            Some(Cue::Out(self.break_by_id(k)?))
        } else if off < self.ad_len {
            Some(Cue::Cont(self.break_by_id(k)?, off))
        } else if off == self.ad_len {
            Some(Cue::In(self.break_by_id(k)?))
        } else {
            None
        }
    }

    /// The break segment `n` announces (`announce` segments before its start), if any.
    pub fn announced_at(&self, n: u64) -> Option<Break> {
        if self.announce == 0 {
            return None;
        }
        let start = n + self.announce;
        match self.cue_at(start) {
            Some(Cue::Out(b)) => Some(b),
            _ => None,
        }
    }

    /// Breaks that overlap segments `from..to` or start by `to` (one segment ahead, or as far
    /// ahead as breaks are announced).
    pub fn breaks_overlapping(&self, from: u64, to: u64) -> Vec<Break> {
        let to = to + self.announce;
        if self.ad_every == 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut k = from.saturating_sub(self.ad_first + self.ad_len) / self.ad_every;
        while let Some(b) = self.break_by_id(k) {
            if b.start > to {
                break;
            }
            if b.start + b.len > from {
                out.push(b);
            }
            k += 1;
        }
        out
    }
}

impl Break {
    pub fn duration_secs(&self, s: &Schedule) -> u64 {
        self.len * s.segment_secs as u64
    }
    pub fn start_secs(&self, s: &Schedule) -> u64 {
        self.start * s.segment_secs as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule {
            segment_secs: 2,
            window: 5,
            epoch: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            loop_len: 12,
            ad_first: 15,
            ad_every: 45,
            ad_len: 15,
            announce: 0,
        }
    }

    #[test]
    fn window_slides_with_the_clock() {
        let s = schedule();
        assert_eq!(s.live_window(s.epoch), 0..0);
        assert_eq!(s.live_window(s.epoch + Duration::from_secs(3)), 0..1);
        assert_eq!(s.live_window(s.epoch + Duration::from_secs(100)), 45..50);
        assert_eq!(s.live_window(s.epoch - Duration::from_secs(5)), 0..0);
    }

    #[test]
    fn discontinuity_sequence_counts_loop_points_that_left() {
        let s = schedule();
        assert_eq!(s.discontinuities_before(0), 0);
        assert_eq!(s.discontinuities_before(12), 0); // segment 12 still carries its tag
        assert_eq!(s.discontinuities_before(13), 1);
        assert_eq!(s.discontinuities_before(25), 2);
        assert!(s.loop_restarts_at(24) && !s.loop_restarts_at(0) && !s.loop_restarts_at(25));
    }

    #[test]
    fn cues_follow_the_break_schedule() {
        let s = schedule();
        let b0 = Break {
            id: 0,
            start: 15,
            len: 15,
        };
        assert_eq!(s.cue_at(14), None);
        assert_eq!(s.cue_at(15), Some(Cue::Out(b0)));
        assert_eq!(s.cue_at(16), Some(Cue::Cont(b0, 1)));
        assert_eq!(s.cue_at(29), Some(Cue::Cont(b0, 14)));
        assert_eq!(s.cue_at(30), Some(Cue::In(b0)));
        assert_eq!(s.cue_at(31), None);
        assert_eq!(
            s.cue_at(60),
            Some(Cue::Out(Break {
                id: 1,
                start: 60,
                len: 15
            }))
        );
        assert_eq!(s.breaks_overlapping(0, 14), vec![]);
        assert_eq!(s.breaks_overlapping(0, 15), vec![b0]);
        assert_eq!(s.breaks_overlapping(29, 40), vec![b0]);
        assert_eq!(s.breaks_overlapping(30, 40), vec![]);
        assert_eq!(s.breaks_overlapping(20, 70).len(), 2);
    }
}
