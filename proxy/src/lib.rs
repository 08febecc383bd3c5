//! Manifold: an edge proxy that caches HLS/DASH manifests and segments in front of a streaming
//! origin, and personalizes manifests per viewer.
//!
//! The ad-insertion core (parsing, views, plan checks, pod layout, the session ledger model,
//! HLS and DASH rendering, and the one pipeline that drives them) is its own crate,
//! `manifold-ssai` (`proxy/ssai/`), free of pingora, wasmtime and tokio's runtime; it is
//! re-exported here under the names the data path uses.
//!
//! A manifest request, step by step, and the module of each step:
//!
//! | step | module |
//! |---|---|
//! | the pingora handler: phases, answers, logging | [`proxy`] |
//! | preflight and CORS headers | [`cors`] |
//! | request limits (URL, headers, query) | [`limits`] |
//! | **route**: which tenant, what is asked (class), the origin path and cache key | [`route`] |
//! | · the tenant it routes to, whole: origins, cache policy, auth, CORS, catalog, policies, limits | [`tenant`] |
//! | **authorize**: edge auth (signed URLs, JWT) | [`auth`] |
//! | **fetch**: the origin manifest, cached, coalesced, per-tenant shelves | [`manifest_cache`] |
//! | fetching it (timeouts, size limit) from the chosen origin | [`origin`], [`origins`] |
//! | riding out an origin outage (stale, slate) | [`outage`] |
//! | parsing it once per fetch, and the plugin's view of it (core) | [`parse`], [`view`], [`scte35`] |
//! | **personalize**: the sequence of the steps below | [`personalize`] |
//! | · session gate: verify, create (rate-limited) or redirect | [`personalize`], [`session`], [`session_limit`] |
//! | · the viewer context: params, headers, device, country, CMCD | [`viewer`] |
//! | · the plugin, sandboxed on its own threads; its view converted once | [`plugin`] ([`plugin::wire`]) |
//! | · the pipeline: plan → propose → record → observe → render (core) | [`pipeline`] over [`master`], [`ssai`], [`ssai_dash`] |
//! | · plan checks, creatives, pods (core); the tenant's ads | [`apply`], [`creatives`], [`pods`]; [`catalog`], [`ads`], [`vast`], [`prefetch`] |
//! | · URIs into the session (hints, BaseURLs) | [`session_urls`] |
//! | · a guided session: breaks announced, not stitched (core) | [`guided`] |
//! | **respond**, then beacons when ad segments are served | [`proxy`], [`tracking`] |
//!
//! A guided session's player fetches its pods itself: asset lists, ad playlists and pod MPDs
//! under the session ([`assets`]), read back from the session's records.
//!
//! A segment request goes [`route`] → pingora-cache over [`storage`] (with [`cache_policy`],
//! [`cache_status`]) → the origin through [`origins`]; on the way into the cache CMAF timing
//! is normalized ([`cmaf_timing`]) and creatives' first TS segments get their audio lead
//! ([`ts_lead`]).
//!
//! Around the data path: [`config`] (the TOML schema and its validation, importing nothing
//! of the data path), [`load`] (a config file and the certificates and keys it names), [`server`]
//! (assembling pingora), [`reload`] (SIGHUP swaps), [`readiness`], [`admin`] (deploys,
//! metrics), [`console`] (the operator's web page on the admin listener, and what only it
//! asks: sessions, plugin checks; with [`recent`], what each session was served), [`metrics`], [`tls`], [`drain`] (graceful shutdown), [`egress`] (where ad
//! decisions may connect), [`state_dir`], [`check`] (`manifold plugin check`), [`demo`].

// The ad-insertion core (crate `manifold-ssai`), under the names the data path uses.
pub use manifold_ssai::{
    apply, cmaf_timing, creatives, guided, guided_dash, ledger, master, parse, pipeline, pods,
    policy, scte35, ssai, ssai_dash, stitch, stitch_dash, synthetic, ts_lead, types, view,
};

pub mod admin;
pub mod ads;
pub mod assets;
pub mod auth;
pub mod cache_policy;
pub mod cache_status;
pub mod catalog;
pub mod check;
pub mod config;
pub mod console;
pub mod cors;
pub mod demo;
pub mod drain;
pub mod egress;
pub mod invalid;
pub mod limits;
pub mod load;
pub mod manifest_cache;
pub mod metrics;
pub mod origin;
pub mod origins;
pub mod outage;
pub mod personalize;
pub mod plugin;
pub mod prefetch;
pub mod proxy;
pub mod readiness;
pub mod recent;
pub mod reload;
pub mod route;
pub mod scaffold;
pub mod server;
pub mod session;
pub mod session_limit;
pub mod session_urls;
pub mod state_dir;
pub mod storage;
pub mod tenant;
pub mod tls;
pub mod tracking;
pub mod vast;
pub mod viewer;
