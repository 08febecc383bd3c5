//! Ad decisions ahead of announced breaks. A live break starts for every viewer at once; if
//! each viewer's first playlist inside it asked the ad server, the server would see the whole
//! audience in one refresh interval. A break announced ahead instead gets each session's
//! decision at a point spread over the prefetch window (by a hash of the session, so nodes
//! agree), and the decision is waiting in the session store when the break starts.

use crate::plugin::bindings::{AdDecider, Viewer};
use crate::session::SessionStore;
use crate::view::Announcement;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Decisions are not prefetched closer than this to the break (it is decided when it starts).
const MARGIN: Duration = Duration::from_secs(1);

pub struct Prefetcher {
    /// (session, break) already scheduled by this node.
    scheduled: moka::sync::Cache<(String, String), ()>,
}

impl Default for Prefetcher {
    fn default() -> Self {
        Prefetcher {
            scheduled: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
        }
    }
}

/// Where in `0..1` a session's request falls: stable for the session and break.
fn spread(session: &str, brk: &str) -> f64 {
    // FNV-1a: cheap, stable across nodes and versions
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in session.bytes().chain([0]).chain(brk.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// How long after `now` to ask: a point of the window before the break (minus a margin).
pub fn delay(
    session: &str,
    a: &Announcement,
    window: Duration,
    now: SystemTime,
) -> Option<Duration> {
    let now_ms = now.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64;
    let until = Duration::from_millis(u64::try_from(a.at_ms - now_ms).ok()?);
    let room = until.checked_sub(MARGIN)?.min(window);
    Some(room.mul_f64(spread(session, &a.brk.id)))
}

pub struct Job {
    pub tenant: String,
    pub session: String,
    pub viewer: Viewer,
    pub window: Duration,
    pub decider: Arc<dyn AdDecider>,
    pub store: Arc<dyn SessionStore>,
}

impl Prefetcher {
    /// Schedules the decisions of `announced` breaks the session has not decided yet.
    pub fn schedule(&self, job: &Job, announced: &[Announcement], decided: impl Fn(&str) -> bool) {
        let now = SystemTime::now();
        for a in announced {
            if decided(&a.brk.id) {
                continue;
            }
            let key = (job.session.clone(), a.brk.id.clone());
            if self.scheduled.contains_key(&key) {
                continue;
            }
            let Some(wait) = delay(&job.session, a, job.window, now) else {
                continue; // too close: decided when the break starts
            };
            self.scheduled.insert(key, ());
            let (tenant, sid, viewer) =
                (job.tenant.clone(), job.session.clone(), job.viewer.clone());
            let (decider, store, brk) = (job.decider.clone(), job.store.clone(), a.brk.clone());
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                // another node, or the break itself, may have decided meanwhile
                if let Ok(st) = store.get(&sid).await {
                    if st.decisions.contains_key(&brk.id) {
                        return;
                    }
                }
                let ads = decider.decide(&tenant, Some(&sid), &brk, &viewer).await;
                match store.record_decision(&sid, &brk.id, &ads).await {
                    Ok(_) => {
                        tracing::debug!(tenant = %tenant, brk = %brk.id, ads = ads.len(), "ad decision prefetched")
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %tenant, error = %e, "prefetched decision not stored")
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::AdBreak;

    fn announcement(id: &str, in_secs: i64, now: SystemTime) -> Announcement {
        let now_ms = now.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        Announcement {
            brk: AdBreak {
                id: id.into(),
                start: 0.0,
                duration: 30.0,
                first_segment: None,
                scte35: None,
            },
            at_ms: now_ms + in_secs * 1000,
        }
    }

    #[test]
    fn sessions_spread_over_the_window_before_the_break() {
        let now = SystemTime::now();
        let a = announcement("splice-7", 20, now);
        let window = Duration::from_secs(10);
        let delays: Vec<f64> = (0..1000)
            .map(|i| {
                delay(&format!("session-{i}"), &a, window, now)
                    .unwrap()
                    .as_secs_f64()
            })
            .collect();
        assert!(delays.iter().all(|d| (0.0..10.0).contains(d)));
        // roughly uniform: every second of the window gets about a tenth
        for s in 0..10 {
            let n = delays
                .iter()
                .filter(|d| **d >= s as f64 && **d < (s + 1) as f64)
                .count();
            assert!((60..140).contains(&n), "second {s}: {n} of 1000");
        }
        // stable: the same session asks at the same point, on any node
        assert_eq!(
            delay("session-1", &a, window, now),
            delay("session-1", &a, window, now)
        );
        // a break sooner than the window: spread over what is left, minus the margin
        let soon = announcement("splice-8", 4, now);
        assert!(delays_max(&soon, window, now) <= 3.0);
        assert_eq!(delay("s", &announcement("x", 0, now), window, now), None);
    }

    fn delays_max(a: &Announcement, window: Duration, now: SystemTime) -> f64 {
        (0..100)
            .filter_map(|i| delay(&format!("s{i}"), a, window, now))
            .map(|d| d.as_secs_f64())
            .fold(0.0, f64::max)
    }
}
