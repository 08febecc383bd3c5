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
            match n.as_str() {
                "log" => c.log = true,
                "kv" => c.kv = true,
                "ads" => c.ads = true,
                "clock" => c.clock = true,
                other => {
                    return Err(format!(
                        "unknown capability {other:?} (log, kv, ads, clock)"
                    ))
                }
            }
        }
        Ok(c)
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
