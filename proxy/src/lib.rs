//! Manifold: an edge proxy that caches HLS/DASH manifests and segments in front of a streaming
//! origin, and personalizes manifests per viewer.
//!
//! Data path, one module per step: [`route`] → [`manifest_cache`] / [`origin`] (manifests) or
//! pingora-cache over [`storage`] (segments) → [`parse`] → respond ([`proxy`]).

pub mod admin;
pub mod ads;
pub mod apply;
pub mod auth;
pub mod cache_policy;
pub mod cache_status;
pub mod check;
pub mod cmaf_timing;
pub mod config;
pub mod cors;
pub mod demo;
pub mod drain;
pub mod egress;
pub mod limits;
pub mod manifest_cache;
pub mod metrics;
pub mod origin;
pub mod origins;
pub mod outage;
pub mod parse;
pub mod personalize;
pub mod plugin;
pub mod prefetch;
pub mod proxy;
pub mod readiness;
pub mod reload;
pub mod route;
pub mod scte35;
pub mod server;
pub mod session;
pub mod session_limit;
pub mod ssai;
pub mod ssai_dash;
pub mod state_dir;
pub mod stitch;
pub mod stitch_dash;
pub mod storage;
pub mod tls;
pub mod tracking;
pub mod ts_lead;
pub mod vast;
pub mod view;
