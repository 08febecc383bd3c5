//! Manifold: an edge proxy that caches HLS/DASH manifests and segments in front of a streaming
//! origin, and personalizes manifests per viewer.
//!
//! A manifest request, step by step, and the module of each step:
//!
//! | step | module |
//! |---|---|
//! | the pingora handler: phases, answers, logging | [`proxy`] |
//! | preflight and CORS headers | [`cors`] |
//! | request limits (URL, headers, query) | [`limits`] |
//! | which tenant, what is asked (class), the origin path and cache key | [`route`] |
//! | edge auth (signed URLs, JWT) | [`auth`] |
//! | the origin manifest: cached, coalesced, per-tenant shelves | [`manifest_cache`] |
//! | fetching it (timeouts, size limit) from the chosen origin | [`origin`], [`origins`] |
//! | riding out an origin outage (stale, slate) | [`outage`] |
//! | parsing it once per fetch, and the plugin's view of it | [`parse`], [`view`], [`scte35`] |
//! | per viewer: session, viewer context, plugin call, fail-open replay | [`personalize`] (+ [`session`], [`session_limit`]) |
//! | the sandboxed plugin (runtime, its own threads, registry) | [`plugin`] |
//! | checking and applying its edit plan; creatives and pods | [`apply`], [`ads`], [`vast`], [`prefetch`] |
//! | stitching ads for the session: HLS, DASH | [`ssai`] + [`stitch`], [`ssai_dash`] + [`stitch_dash`] |
//! | beacons when ad segments are served | [`tracking`] |
//!
//! A segment request goes [`route`] → pingora-cache over [`storage`] (with [`cache_policy`],
//! [`cache_status`]) → the origin through [`origins`]; on the way into the cache CMAF timing
//! is normalized ([`cmaf_timing`]) and creatives' first TS segments get their audio lead
//! ([`ts_lead`]).
//!
//! Around the data path: [`config`] (the TOML schema and its validation), [`server`]
//! (assembling pingora), [`reload`] (SIGHUP swaps), [`readiness`], [`admin`] (deploys,
//! metrics), [`metrics`], [`tls`], [`drain`] (graceful shutdown), [`egress`] (where ad
//! decisions may connect), [`state_dir`], [`check`] (`manifold plugin check`), [`demo`].

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
