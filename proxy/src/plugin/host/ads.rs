//! Capability `ads`: the host's ad decision for a break of the call's input (or a bounded
//! pre-roll), at most [`MAX_DECISIONS`] new ones per call, decided once per session (first
//! writer wins) and waited for without holding a core or spending the deadline.

use super::{denied, HostState};
use crate::plugin::bindings::{Ad, AdBreak, AdDecider, SessionCtx, Viewer};
use crate::plugin::capabilities::{MAX_DECISIONS, MAX_PREROLL_SECS, PREROLL_BREAK};
use crate::session::DecidedAd;
use std::sync::Arc;

/// What the call may decide and has decided.
pub struct Ads {
    /// The tenant's ad decision, when granted.
    decider: Option<Arc<dyn AdDecider>>,
    session: Option<SessionCtx>,
    /// The breaks of the call's input: these (and a pre-roll) only may be decided.
    breaks: Vec<crate::types::AdBreak>,
    /// New decisions made so far.
    decisions: usize,
}

impl Ads {
    pub fn new(
        granted: bool,
        decider: Option<Arc<dyn AdDecider>>,
        session: Option<SessionCtx>,
        breaks: Vec<crate::types::AdBreak>,
    ) -> Ads {
        Ads {
            decider: decider.filter(|_| granted),
            session,
            breaks,
            decisions: 0,
        }
    }

    /// The break to decide: the input's own copy (a plugin cannot stretch a break to get more
    /// ads), or a bounded pre-roll; any other id traps.
    fn decidable(&self, brk: AdBreak) -> wasmtime::Result<crate::types::AdBreak> {
        let brk: crate::types::AdBreak = crate::plugin::wire::Cv::cv(brk);
        if let Some(b) = self.breaks.iter().find(|b| b.id == brk.id) {
            return Ok(b.clone());
        }
        if brk.id == PREROLL_BREAK {
            return Ok(crate::types::AdBreak {
                duration: brk.duration.clamp(0.0, MAX_PREROLL_SECS),
                ..brk
            });
        }
        let id: String = brk.id.chars().take(64).collect();
        wasmtime::bail!(
            "decide-ads: break {id:?} is not in the input (only its breaks and `{PREROLL_BREAK}`)"
        )
    }

    fn count_decision(&mut self) -> wasmtime::Result<()> {
        self.decisions += 1;
        if self.decisions > MAX_DECISIONS {
            wasmtime::bail!("decide-ads: more than {MAX_DECISIONS} new decisions in one call");
        }
        Ok(())
    }
}

impl HostState {
    /// `decide-ads`.
    pub(super) async fn decide_for(&mut self, brk: AdBreak) -> wasmtime::Result<Vec<Ad>> {
        let Some(ads) = self.ads.decider.clone() else {
            return Err(denied("ads"));
        };
        let brk = self.ads.decidable(brk)?;
        let tenant = self.tenant.clone();
        let Some(s) = self.ads.session.clone() else {
            let anon = Viewer::anonymous(&tenant);
            self.ads.count_decision()?;
            let decided = self.on_host(ads.decide(&tenant, None, &brk, &anon)).await;
            return Ok(to_wit(&decided));
        };
        if let Some(cached) = s.cached.lock().get(&brk.id) {
            return Ok(to_wit(cached));
        }
        self.ads.count_decision()?;
        let standing = self
            .on_host(async {
                let decided = ads.decide(&tenant, Some(&s.id), &brk, &s.viewer).await;
                // first writer wins: a concurrent request (another rendition, another node)
                // may have decided this break already, and then everyone plays that decision
                match s.store.record_decision(&s.id, &brk.id, &decided).await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(tenant = %tenant, error = %e, "session store: decision not cached");
                        decided
                    }
                }
            })
            .await;
        s.cached.lock().insert(brk.id.clone(), standing.clone());
        Ok(to_wit(&standing))
    }
}

fn to_wit(ads: &[DecidedAd]) -> Vec<Ad> {
    ads.iter()
        .map(|a| Ad {
            id: a.id.clone(),
            creative: a.creative.clone(),
            duration: a.duration,
        })
        .collect()
}

impl crate::plugin::bindings::scoped::manifold::plugin::ads::Host for HostState {
    async fn decide(&mut self, brk: AdBreak) -> wasmtime::Result<Vec<Ad>> {
        self.decide_for(brk).await
    }
}

/// Links the `ads` interface of the scoped world.
pub fn link(linker: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    crate::plugin::bindings::scoped::manifold::plugin::ads::add_to_linker::<
        _,
        wasmtime::component::HasSelf<_>,
    >(linker, |s| s)
}
