//! What a tenant grants its plugin (`capabilities = [...]`), and the bounds of every call: the
//! leaf both the config schema and the runtime read, so neither imports the other.

use std::time::Duration;

/// What a tenant's plugin may use; everything else is denied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub log: bool,
    pub kv: bool,
    pub ads: bool,
    pub clock: bool,
}

impl Capabilities {
    pub fn parse(names: &[String]) -> Result<Capabilities, String> {
        let mut c = Capabilities::default();
        for n in names {
            if !c.grant(n) {
                return Err(format!("unknown capability {n:?} (log, kv, ads, clock)"));
            }
        }
        Ok(c)
    }

    /// Turns on the capability called `name`; false if there is none of that name.
    pub fn grant(&mut self, name: &str) -> bool {
        match name {
            "log" => self.log = true,
            "kv" => self.kv = true,
            "ads" => self.ads = true,
            "clock" => self.clock = true,
            _ => return false,
        }
        true
    }

    /// The names of those on here that `granted` lacks.
    pub fn missing_from(self, granted: Capabilities) -> Vec<&'static str> {
        [
            ("log", self.log && !granted.log),
            ("kv", self.kv && !granted.kv),
            ("ads", self.ads && !granted.ads),
            ("clock", self.clock && !granted.clock),
        ]
        .into_iter()
        .filter_map(|(name, missing)| missing.then_some(name))
        .collect()
    }
}

/// Edits a plugin may return in one call.
pub const MAX_EDITS: usize = 10_000;
/// Ads, over all pods, one plan may name.
pub const MAX_PLAN_ADS: usize = 10_000;
/// Time a call may spend waiting on the host (ad decisions, session writes) on top of its
/// own deadline. Past `deadline + MAX_HOST_WAIT` the call is cut, in or out of a host call.
pub const MAX_HOST_WAIT: Duration = Duration::from_secs(5);
/// New ad decisions one call may make (each can be a VAST chain and a session write).
pub const MAX_DECISIONS: usize = 8;
/// The break id a plugin may decide beside its input's breaks.
pub const PREROLL_BREAK: &str = "preroll";
/// Longest pre-roll a plugin may have decided.
pub const MAX_PREROLL_SECS: f64 = 120.0;
