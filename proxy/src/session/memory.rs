//! The embedded session store: moka with a TTL, weighed by bytes.

use super::*;

#[derive(Default)]
struct MemSession {
    /// Shared, so the beacon path ([`SessionStore::get_break`]) takes one without a copy.
    breaks: BTreeMap<String, Arc<BreakRecord>>,
    facts: BTreeMap<String, BreakFacts>,
    decisions: BTreeMap<String, Vec<DecidedAd>>,
    beacons: BTreeSet<String>,
    claims: Vec<(String, String)>,
    insertion: Insertion,
    /// What it holds, about (what the store weighs it by).
    bytes: usize,
}

pub const MAX_SESSION_BEACONS: usize = 4096;

impl MemSession {
    /// Keeps the newest breaks (by first segment) within [`MAX_SESSION_BREAKS`].
    fn prune(&mut self) {
        while self.breaks.len() > MAX_SESSION_BREAKS {
            let oldest = self
                .breaks
                .iter()
                .min_by_key(|(_, r)| r.start_seq)
                .map(|(id, _)| id.clone());
            let Some(id) = oldest else { break };
            self.breaks.remove(&id);
            self.facts.remove(&id);
            self.decisions.remove(&id);
        }
        while self.decisions.len() > MAX_SESSION_DECISIONS {
            let Some(id) = self
                .decisions
                .keys()
                .find(|k| !self.breaks.contains_key(*k))
                .cloned()
            else {
                break;
            };
            self.decisions.remove(&id);
        }
    }

    fn measure(&mut self) {
        let breaks: usize = self
            .breaks
            .iter()
            .map(|(id, r)| id.len() + 96 + r.slots.len() * 160 + r.ads.len() * 256)
            .sum();
        let decisions: usize = self
            .decisions
            .iter()
            .map(|(id, ads)| {
                id.len()
                    + 64
                    + ads
                        .iter()
                        .map(|a| {
                            a.id.len()
                                + a.creative.len()
                                + 64
                                + a.tracking
                                    .iter()
                                    .map(|(k, v)| {
                                        k.len() + v.iter().map(|u| u.len() + 24).sum::<usize>()
                                    })
                                    .sum::<usize>()
                        })
                        .sum::<usize>()
            })
            .sum();
        let facts = self.facts.len() * 96
            + self
                .facts
                .values()
                .map(|f| f.content_discs.len() * 16)
                .sum::<usize>();
        let beacons: usize = self.beacons.iter().map(|b| b.len() + 48).sum();
        let claims: usize = self
            .claims
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum();
        self.bytes = 512 + breaks + decisions + facts + beacons + claims;
    }
}

/// The embedded store: sessions expire `ttl` after their last use, and are weighed by what
/// they hold within `max_memory` (at least `max_memory / max_sessions` each, so the count
/// bound holds too).
pub struct MemoryStore {
    sessions: moka::sync::Cache<String, Arc<Mutex<MemSession>>>,
}

impl MemoryStore {
    pub fn new(ttl: Duration, max_sessions: u64, max_memory: u64) -> Self {
        let floor = (max_memory / max_sessions.max(1)).max(1);
        MemoryStore {
            sessions: moka::sync::Cache::builder()
                .max_capacity(max_memory)
                .weigher(move |_k, s: &Arc<Mutex<MemSession>>| {
                    (s.lock().bytes as u64).max(floor).min(u32::MAX as u64) as u32
                })
                .time_to_idle(ttl)
                .build(),
        }
    }

    fn session(&self, sid: &str) -> Arc<Mutex<MemSession>> {
        self.sessions.get_with(sid.to_string(), || {
            let mut s = MemSession::default();
            s.measure();
            Arc::new(Mutex::new(s))
        })
    }

    /// Changes a session, then weighs it again (moka weighs on insert).
    fn update<R>(&self, sid: &str, f: impl FnOnce(&mut MemSession) -> R) -> R {
        let s = self.session(sid);
        let r = {
            let mut g = s.lock();
            let r = f(&mut g);
            g.prune();
            g.measure();
            r
        };
        self.sessions.insert(sid.to_string(), s);
        r
    }

    /// Sessions held and their weighed bytes (for tests and metrics).
    pub fn usage(&self) -> (u64, u64) {
        self.sessions.run_pending_tasks();
        (self.sessions.entry_count(), self.sessions.weighted_size())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(
        &self,
        sid: &str,
        claims: &[(String, String)],
        insertion: Insertion,
    ) -> Result<(), StoreError> {
        if claims.is_empty() && insertion == Insertion::Stitched {
            self.session(sid);
            return Ok(());
        }
        self.update(sid, |s| {
            if s.claims.is_empty() {
                s.claims = claims.to_vec();
            }
            s.insertion = insertion;
        });
        Ok(())
    }

    async fn get(&self, sid: &str) -> Result<SessionState, StoreError> {
        let Some(s) = self.sessions.get(sid) else {
            return Ok(SessionState::default());
        };
        let s = s.lock();
        Ok(SessionState {
            exists: true,
            breaks: s
                .breaks
                .iter()
                .map(|(id, r)| (id.clone(), BreakRecord::clone(r)))
                .collect(),
            facts: s.facts.clone(),
            decisions: s.decisions.clone(),
            claims: s.claims.clone(),
            insertion: s.insertion,
        })
    }

    async fn get_break(
        &self,
        sid: &str,
        break_id: &str,
    ) -> Result<Option<Arc<BreakRecord>>, StoreError> {
        Ok(self
            .sessions
            .get(sid)
            .and_then(|s| s.lock().breaks.get(break_id).cloned()))
    }

    async fn record_break(
        &self,
        sid: &str,
        id: &str,
        rec: &BreakRecord,
    ) -> Result<BreakRecord, StoreError> {
        Ok(self.update(sid, |s| {
            let stands = s
                .breaks
                .entry(id.to_string())
                .or_insert_with(|| Arc::new(rec.clone()));
            BreakRecord::clone(stands)
        }))
    }

    async fn add_facts(&self, sid: &str, id: &str, facts: &BreakFacts) -> Result<(), StoreError> {
        self.update(sid, |s| {
            s.facts
                .entry(id.to_string())
                .or_default()
                .merge(facts.clone())
        });
        Ok(())
    }

    async fn record_decision(
        &self,
        sid: &str,
        id: &str,
        ads: &[DecidedAd],
    ) -> Result<Vec<DecidedAd>, StoreError> {
        Ok(self.update(sid, |s| {
            s.decisions
                .entry(id.to_string())
                .or_insert_with(|| ads.to_vec())
                .clone()
        }))
    }

    async fn mark_beacon(&self, sid: &str, key: &str) -> Result<bool, StoreError> {
        Ok(self.update(sid, |s| {
            s.beacons.len() < MAX_SESSION_BEACONS && s.beacons.insert(key.to_string())
        }))
    }

    async fn beacons(&self, sid: &str) -> Result<Vec<String>, StoreError> {
        // a lookup, not a use: an unknown session is not created
        Ok(self
            .sessions
            .get(sid)
            .map(|s| s.lock().beacons.iter().cloned().collect())
            .unwrap_or_default())
    }
}
