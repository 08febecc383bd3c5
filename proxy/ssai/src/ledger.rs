//! The session ledger model: what one viewer's session decided and learned about each break,
//! so every rendition and every reload (on any node) of that viewer is stitched the same. The
//! stores that keep it (memory, Redis) live in the proxy.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One laid-out segment of an ad break, the same for every rendition of the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// Catalog creative and which of its segments.
    pub creative: String,
    pub index: u32,
    pub duration: f64,
    /// Seconds from the break's start.
    pub offset: f64,
    /// A discontinuity opens this slot (first of a creative).
    pub disc: bool,
    /// The ad (pod position) this slot plays, for tracking; `None` for slate.
    pub ad: Option<u32>,
    /// Beacon events due when this slot is fetched (`impression`, `start`, `firstQuartile`...).
    pub events: Vec<String>,
}

/// What a session decided for a break.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakRecord {
    /// Media sequence of the break's first content segment.
    pub start_seq: u64,
    /// DASH: where the pod starts on the MPD timeline, seconds (on the content's grid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<f64>,
    /// Guided HLS: the break's `START-DATE` (Unix ms), fixed when first recorded so every
    /// reload, rendition and node announces it at the same instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<i64>,
    pub duration: f64,
    /// The session first saw it after it had started (the viewer joined mid-break).
    pub joined_mid: bool,
    /// Not filled: the content plays (no decision, or the join policy said so).
    pub content: bool,
    pub slots: Vec<Slot>,
    /// The decided ads: id, creative, duration, and tracking URLs by event.
    pub ads: Vec<DecidedAd>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecidedAd {
    pub id: String,
    pub creative: String,
    pub duration: f64,
    #[serde(default)]
    pub tracking: BTreeMap<String, Vec<String>>,
}

/// Facts learned about a break as the live window slides over it (they only ever grow).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BreakFacts {
    /// Media sequence of the first content segment after the break, once seen.
    pub end_seq: Option<u64>,
    /// Whether that segment carries its own discontinuity at the origin.
    pub end_tagged: bool,
    /// Content segments inside the break that carry a discontinuity at the origin.
    pub content_discs: BTreeSet<u64>,
    /// Guided HLS: how long the break's content lasted, once its end was seen (an early
    /// CUE-IN makes it shorter than planned: `X-PLAYOUT-LIMIT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secs: Option<f64>,
}

impl BreakFacts {
    /// Adds newly learned facts: the first end seen stands, discontinuities accumulate.
    pub fn merge(&mut self, f: BreakFacts) {
        if self.end_seq.is_none() {
            self.end_seq = f.end_seq;
            self.end_tagged = f.end_tagged;
            self.secs = f.secs;
        }
        self.content_discs.extend(f.content_discs);
    }
}

/// A session's state as one read returns it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionState {
    pub exists: bool,
    pub breaks: BTreeMap<String, BreakRecord>,
    pub facts: BTreeMap<String, BreakFacts>,
    /// Ad decisions cached per break (from `decide-ads`), before the break is recorded.
    pub decisions: BTreeMap<String, Vec<DecidedAd>>,
    /// Edge auth: the claims the tenant passes on from the viewer token that started the
    /// session (name, value), for the plugin's viewer context on every reload.
    pub claims: Vec<(String, String)>,
    /// How this session gets its ads, fixed when it started.
    pub insertion: Insertion,
}

/// How a session gets its ads: stitched into its manifests, or announced for the player to
/// fetch itself (server-guided: HLS Interstitials, DASH alternative MPDs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Insertion {
    #[default]
    Stitched,
    Guided,
}

impl Insertion {
    pub fn as_str(self) -> &'static str {
        match self {
            Insertion::Stitched => "stitched",
            Insertion::Guided => "guided",
        }
    }
    pub fn parse(s: &str) -> Option<Insertion> {
        match s {
            "stitched" => Some(Insertion::Stitched),
            "guided" => Some(Insertion::Guided),
            _ => None,
        }
    }
}

/// Record ids the host uses besides break ids.
pub const START: &str = "~start";
pub const PREROLL: &str = "~preroll";
pub const VOD_INSERT: &str = "~vod-";

/// Whether a record id names a signalled break (not a host-made insert or marker).
pub fn is_break_id(id: &str) -> bool {
    !id.starts_with('~') && !is_dash_record(id)
}

/// DASH records of a session live under their own names (`dash:<break>`, `~dash-...`): a
/// session that plays both an MPD and HLS playlists keeps two separate ledgers, since their
/// timelines (start times vs media sequence numbers) do not mix.
pub const DASH_RECORD: &str = "dash:";
pub const DASH_HOST_RECORD: &str = "~dash-";

pub fn is_dash_record(id: &str) -> bool {
    id.starts_with(DASH_RECORD) || id.starts_with(DASH_HOST_RECORD)
}

/// The decided ads of a pod, with the trackers of the session's decisions for them.
pub fn decided(pod: &[crate::types::Ad], decisions: Option<&Vec<DecidedAd>>) -> Vec<DecidedAd> {
    pod.iter()
        .map(|a| DecidedAd {
            id: a.id.clone(),
            creative: a.creative.clone(),
            duration: a.duration,
            tracking: decisions
                .and_then(|d| d.iter().find(|x| x.id == a.id))
                .map(|x| x.tracking.clone())
                .unwrap_or_default(),
        })
        .collect()
}
