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
}
