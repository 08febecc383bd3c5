//! The one driver of ad insertion, for every format: **plan** (check the plugin's edits
//! against the view) → **propose** (lay out the breaks the session sees for the first time) →
//! **record** (in the session's ledger; first writer wins) → **observe** (facts the live
//! window reveals about recorded breaks) → **render** (this rendition, for this session).
//!
//! A format is one implementation of [`Format`]: the HLS master ([`crate::master::Master`]),
//! the HLS media playlist ([`crate::ssai::Media`]) and the DASH MPD
//! ([`crate::ssai_dash::DashMedia`]). The proxy, `manifold plugin check`, the benches and the
//! invariant tests all call [`run`]; only the [`Ledger`] differs (the session store, or
//! [`Scratch`]).

use crate::apply::InvalidPlan;

use crate::creatives::{Creatives, RenditionWant};
use crate::ledger::{BreakFacts, BreakRecord, SessionState};
use crate::policy::Policies;
use crate::types::Edit;
use async_trait::async_trait;

/// What rendering needs besides the manifest and the session: where creatives come from,
/// the tenant's policies, which rendition this request is, and where the session's URLs
/// live (a guided session's asset lists).
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub creatives: &'a dyn Creatives,
    pub policies: &'a Policies,
    pub want: RenditionWant,
    /// Where the session's guided URLs (asset lists, pod MPDs) live: its prefix
    /// (`/{tenant}/~{token}`), absolute in the proxy (players resolve some against the page).
    pub prefix: &'a str,
    /// Unix ms now: anchors synthesized program date-times of a guided session.
    pub now_ms: i64,
}

/// One manifest format's steps. `propose` and `observe` default to nothing: a format
/// without breaks (the HLS master) only plans and renders.
#[async_trait]
pub trait Format: Sync {
    /// The checked plan.
    type Plan: Send + Sync;
    /// The rendered manifest, before the proxy's finishing (session URLs, serialization).
    type Out: Send;
    /// Whether the format records breaks in the ledger (so a failed attempt may have).
    const RECORDS: bool = true;

    fn plan(&self, edits: &[Edit]) -> Result<Self::Plan, InvalidPlan>;

    async fn propose(
        &self,
        _plan: &Self::Plan,
        _state: &SessionState,
        _cx: &Context<'_>,
    ) -> Result<Vec<(String, BreakRecord)>, InvalidPlan> {
        Ok(Vec::new())
    }

    fn observe(&self, _state: &SessionState) -> Vec<(String, BreakFacts)> {
        Vec::new()
    }

    async fn render(
        &self,
        plan: Self::Plan,
        state: &SessionState,
        cx: &Context<'_>,
    ) -> Result<Self::Out, InvalidPlan>;
}

/// Where a session's breaks and facts are kept.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Records proposed breaks, first writer wins: returns the record that stands for each
    /// proposal, in order (another rendition or node may have recorded one meanwhile).
    async fn record(&self, proposals: &[(String, BreakRecord)])
        -> Result<Vec<BreakRecord>, String>;
    /// Adds facts learned about a recorded break.
    async fn learn(&self, id: &str, facts: &BreakFacts) -> Result<(), String>;
}

/// A ledger of one request's own: nobody else writes, so every proposal stands (`plugin
/// check`, benches, tests).
pub struct Scratch;

#[async_trait]
impl Ledger for Scratch {
    async fn record(
        &self,
        proposals: &[(String, BreakRecord)],
    ) -> Result<Vec<BreakRecord>, String> {
        Ok(proposals.iter().map(|(_, r)| r.clone()).collect())
    }
    async fn learn(&self, _id: &str, _facts: &BreakFacts) -> Result<(), String> {
        Ok(())
    }
}

/// A session kept in memory across runs (benches, tests): first writer wins, as in the
/// proxy's stores.
#[derive(Default)]
pub struct InMemory(std::sync::Mutex<SessionState>);

impl InMemory {
    pub fn new(state: SessionState) -> InMemory {
        InMemory(std::sync::Mutex::new(state))
    }
    /// The session as a read returns it now.
    pub fn state(&self) -> SessionState {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
    pub fn into_state(self) -> SessionState {
        self.0.into_inner().unwrap_or_default()
    }
}

#[async_trait]
impl Ledger for InMemory {
    async fn record(
        &self,
        proposals: &[(String, BreakRecord)],
    ) -> Result<Vec<BreakRecord>, String> {
        let mut s = self.0.lock().map_err(|_| "poisoned".to_string())?;
        let standing = proposals.iter().map(|(id, rec)| {
            s.breaks
                .entry(id.clone())
                .or_insert_with(|| rec.clone())
                .clone()
        });
        Ok(standing.collect())
    }
    async fn learn(&self, id: &str, facts: &BreakFacts) -> Result<(), String> {
        let mut s = self.0.lock().map_err(|_| "poisoned".to_string())?;
        s.facts
            .entry(id.to_string())
            .or_default()
            .merge(facts.clone());
        Ok(())
    }
}

/// Why a run produced no manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum Failed {
    /// The plan (or what it asked for) cannot be applied: a plugin failure.
    Plan(InvalidPlan),
    /// The ledger could not be read or written.
    Ledger(String),
}

impl From<InvalidPlan> for Failed {
    fn from(e: InvalidPlan) -> Failed {
        Failed::Plan(e)
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Plan(e) => write!(f, "{}", e.0),
            Failed::Ledger(e) => write!(f, "session ledger: {e}"),
        }
    }
}

/// Runs the plugin's `edits` through `format` for the session in `state`.
pub async fn run<F: Format>(
    format: &F,
    edits: &[Edit],
    state: SessionState,
    ledger: &dyn Ledger,
    cx: &Context<'_>,
) -> Result<F::Out, Failed> {
    let plan = format.plan(edits)?;
    run_plan(format, plan, state, ledger, cx).await
}

/// [`run`] from a plan already checked (the invariant tests make theirs directly).
pub async fn run_plan<F: Format>(
    format: &F,
    plan: F::Plan,
    mut state: SessionState,
    ledger: &dyn Ledger,
    cx: &Context<'_>,
) -> Result<F::Out, Failed> {
    let proposals = format.propose(&plan, &state, cx).await?;
    if !proposals.is_empty() {
        // one round trip for all of them (a viewer joining sees several breaks at once)
        let standing = ledger.record(&proposals).await.map_err(Failed::Ledger)?;
        for ((id, _), rec) in proposals.into_iter().zip(standing) {
            state.breaks.insert(id, rec);
        }
    }
    for (id, facts) in format.observe(&state) {
        ledger.learn(&id, &facts).await.map_err(Failed::Ledger)?;
        state.facts.entry(id).or_default().merge(facts);
    }
    Ok(format.render(plan, &state, cx).await?)
}
