//! Who watches when: the join schedule of each scenario, churn, bounds, and the seeded random
//! numbers that make a run reproducible.
//!
//! | scenario | viewers join | then |
//! |---|---|---|
//! | `steady` | evenly over `--ramp` (default 10 s) | all watch for `--duration` |
//! | `flash-crowd` | all within `--ramp` (default 5 s), as at kickoff | all watch for `--duration` |
//! | `churn` | as `steady` | every minute a fraction `--churn` of the viewers leave and as many new ones join (new sessions) |
//! | `ad-storm` | as `steady` | as `steady`; the run must see an ad break, which every viewer at the live edge is in at once |
//!
//! For `ad-storm`, start the origin so that a break begins after the ramp, e.g. with 6 s
//! segments a 30 s break every 2 minutes: `manifold-origin --segment-duration 6 --ad-first 60
//! --ad-every 120 --ad-duration 30` (the channel is one window, 60 s, old at start-up, so the
//! first break starts about a minute after the origin does).

use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const MAX_VIEWERS: u64 = 100_000;
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
pub const MAX_RAMP: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioKind {
    Steady,
    FlashCrowd,
    Churn,
    AdStorm,
}

impl ScenarioKind {
    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::Steady => "steady",
            ScenarioKind::FlashCrowd => "flash-crowd",
            ScenarioKind::Churn => "churn",
            ScenarioKind::AdStorm => "ad-storm",
        }
    }

    pub fn default_ramp(self) -> Duration {
        match self {
            ScenarioKind::FlashCrowd => Duration::from_secs(5),
            _ => Duration::from_secs(10),
        }
    }
}

/// A scenario with its numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub kind: ScenarioKind,
    pub viewers: u64,
    pub ramp: Duration,
    /// How long all viewers watch after the ramp.
    pub hold: Duration,
    /// Fraction of the viewers replaced per minute (`churn` only).
    pub churn_per_min: f64,
}

impl Scenario {
    /// Refuses runs out of bounds.
    pub fn validate(&self) -> Result<(), String> {
        if self.viewers == 0 || self.viewers > MAX_VIEWERS {
            return Err(format!(
                "--viewers must be between 1 and {MAX_VIEWERS}, not {}",
                self.viewers
            ));
        }
        if self.hold.is_zero() || self.hold > MAX_DURATION {
            return Err(format!(
                "--duration must be between 1 s and {} s",
                MAX_DURATION.as_secs()
            ));
        }
        if self.ramp > MAX_RAMP {
            return Err(format!("--ramp must be at most {} s", MAX_RAMP.as_secs()));
        }
        if !(0.0..=1.0).contains(&self.churn_per_min) {
            return Err(format!(
                "--churn is a fraction per minute between 0 and 1, not {}",
                self.churn_per_min
            ));
        }
        Ok(())
    }

    /// Ramp plus hold.
    pub fn total(&self) -> Duration {
        self.ramp + self.hold
    }

    /// When viewer `i` (0-based) joins: evenly spread over the ramp.
    pub fn join_at(&self, i: u64) -> Duration {
        if self.viewers <= 1 {
            return Duration::ZERO;
        }
        self.ramp.mul_f64(i as f64 / self.viewers as f64)
    }

    /// How many viewers have joined by `elapsed` (the first joins at once).
    pub fn joined_by(&self, elapsed: Duration) -> u64 {
        if elapsed >= self.ramp || self.ramp.is_zero() {
            return self.viewers;
        }
        let f = elapsed.as_secs_f64() / self.ramp.as_secs_f64();
        ((f * self.viewers as f64).floor() as u64 + 1).min(self.viewers)
    }

    /// How many viewers have left (and been replaced) by `elapsed`: churn starts after the ramp.
    pub fn left_by(&self, elapsed: Duration) -> u64 {
        if self.kind != ScenarioKind::Churn || elapsed <= self.ramp {
            return 0;
        }
        let minutes = (elapsed - self.ramp).as_secs_f64() / 60.0;
        (self.viewers as f64 * self.churn_per_min * minutes).floor() as u64
    }
}

/// SplitMix64: small, fast, seedable, good enough to spread viewers and decisions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A generator for viewer `id` of a run seeded with `seed`.
    pub fn for_viewer(seed: u64, id: u64) -> Rng {
        let mut r = Rng(seed ^ id.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(kind: ScenarioKind) -> Scenario {
        Scenario {
            kind,
            viewers: 1000,
            ramp: Duration::from_secs(10),
            hold: Duration::from_secs(120),
            churn_per_min: 0.1,
        }
    }

    #[test]
    fn joins_spread_over_the_ramp() {
        let s = scenario(ScenarioKind::Steady);
        assert_eq!(s.joined_by(Duration::ZERO), 1);
        assert_eq!(s.joined_by(Duration::from_secs(5)), 501);
        assert_eq!(s.joined_by(Duration::from_millis(9999)), 1000);
        assert_eq!(s.joined_by(Duration::from_secs(10)), 1000);
        assert_eq!(s.join_at(500), Duration::from_secs(5));
        let instant = Scenario {
            ramp: Duration::ZERO,
            ..s.clone()
        };
        assert_eq!(instant.joined_by(Duration::ZERO), 1000);
        assert_eq!(s.total(), Duration::from_secs(130));
    }

    #[test]
    fn churn_replaces_a_fraction_per_minute_after_the_ramp() {
        let s = scenario(ScenarioKind::Churn);
        assert_eq!(s.left_by(Duration::from_secs(10)), 0);
        assert_eq!(s.left_by(Duration::from_secs(40)), 50);
        assert_eq!(s.left_by(Duration::from_secs(70)), 100);
        assert_eq!(
            scenario(ScenarioKind::Steady).left_by(Duration::from_secs(70)),
            0
        );
    }

    #[test]
    fn bounds_are_enforced() {
        let ok = scenario(ScenarioKind::FlashCrowd);
        assert!(ok.validate().is_ok());
        for bad in [
            Scenario {
                viewers: 0,
                ..ok.clone()
            },
            Scenario {
                viewers: MAX_VIEWERS + 1,
                ..ok.clone()
            },
            Scenario {
                hold: Duration::from_secs(3601),
                ..ok.clone()
            },
            Scenario {
                ramp: Duration::from_secs(601),
                ..ok.clone()
            },
            Scenario {
                churn_per_min: 1.5,
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_rng_is_reproducible_and_spread() {
        let a: Vec<u64> = (0..5).map(|i| Rng::for_viewer(7, i).below(3)).collect();
        let b: Vec<u64> = (0..5).map(|i| Rng::for_viewer(7, i).below(3)).collect();
        assert_eq!(a, b);
        let mut r = Rng::new(1);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[r.below(4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
        let hits = (0..10_000).filter(|_| r.chance(0.1)).count();
        assert!((800..1200).contains(&hits), "{hits}");
        assert!(!r.chance(0.0));
    }
}
