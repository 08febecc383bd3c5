//! A tenant's stitching policies, shared by every format: markers, what a viewer who joins
//! mid-break gets, overlong pods, tracking URIs.

use crate::pods::Overlong;
use crate::stitch::Markers;
use serde::Deserialize;

/// A viewer who joins while a break runs gets the rest of the pod, or the content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinPolicy {
    #[default]
    Ads,
    Content,
}

/// Tenant policies for stitching.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policies {
    pub markers: Markers,
    pub join: JoinPolicy,
    pub overlong: Overlong,
    /// Ad segment URIs carry the break and slot, so their requests fire beacons.
    pub tracking: bool,
    /// How guided sessions announce their breaks.
    pub guided: Guided,
}

/// Where primary playback resumes after an interstitial (`X-RESUME-OFFSET`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resume {
    /// Live breaks: after what played (no attribute: the viewer keeps its distance to the
    /// live edge); VOD breaks: after the content the ads replace; inserted pods (pre-rolls,
    /// VOD mid-rolls): where they were inserted.
    #[default]
    Auto,
    /// After the break's content, always.
    Break,
    /// Where the break started: the content is not replaced, only interrupted.
    Zero,
}

/// How a DASH break is announced to guided players (`urn:mpeg:dash:event:alternativeMPD:*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DashGuided {
    /// `insert:2025`: the pod plays, then the content resumes where the viewer is now (live).
    #[default]
    Insert,
    /// `replace:2025`: the pod replaces the break's content.
    Replace,
}

/// A tenant's policy for server-guided sessions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guided {
    pub resume: Resume,
    /// `X-RESTRICT`: the viewer may not skip (`SKIP`) or seek past (`JUMP`) the ads.
    pub restrict_skip: bool,
    pub restrict_jump: bool,
    /// `X-SNAP`: the break's start (`OUT`) and end (`IN`) snap to segment boundaries.
    pub snap_out: bool,
    pub snap_in: bool,
    /// `X-PLAYOUT-LIMIT` on every pod: the range it replaces, or its own length (an early
    /// end limits a break's anyway). Off, hls.js appends pods in place and stalls at live
    /// breaks (see `guided::Interstitial::line`).
    pub playout_limit: bool,
    /// `CUE="ONCE"`: a viewer who seeks back does not see the pod again, and a player whose
    /// timeline moves the pod a few ms after playing it (hls.js re-mapping the start date onto
    /// the loaded fragment) does not play it twice.
    pub once: bool,
    /// Both signals for mixed audiences: the ads are stitched as well, for players that
    /// ignore interstitials (those that play them resume after the stitched ads).
    pub both: bool,
    pub dash: DashGuided,
    /// DASH: `urn:mpeg:dash:event:callback:2015` events carry the beacons too, for players
    /// that report tracking themselves.
    pub callbacks: bool,
    /// Asset lists carry the SVTA2053-2 creative signaling (tracking URLs by event), for
    /// players that report tracking themselves (server-side beacons fire regardless).
    pub client_tracking: bool,
}

impl Default for Guided {
    /// As the config defaults: snap the start out, limit the playout, play once.
    fn default() -> Self {
        Guided {
            resume: Resume::Auto,
            restrict_skip: false,
            restrict_jump: false,
            snap_out: true,
            snap_in: false,
            playout_limit: true,
            once: true,
            both: false,
            dash: DashGuided::Insert,
            callbacks: false,
            client_tracking: false,
        }
    }
}
