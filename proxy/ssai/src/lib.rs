//! The ad-insertion core of Manifold: everything between "an origin manifest arrived" and "this
//! viewer's manifest goes out" that needs neither the proxy (pingora), the sandbox (wasmtime)
//! nor an async runtime. The proxy, `manifold plugin check`, the fuzz targets, the benches and
//! the invariant tests all run the same code from here.
//!
//! | step | module |
//! |---|---|
//! | what a request asks for (class, rendition hint) | [`asked`] |
//! | the plugin's view of a manifest and its edit plan, as plain types | [`types`] |
//! | parsing once per fetch; the view and where breaks are | [`parse`], [`view`], [`scte35`] |
//! | the one driver: plan → propose → record → observe → render, over a [`pipeline::Format`] | [`pipeline`] |
//! | LL-HLS: where parts stand, blocking reloads, the segment being made | [`low_latency`] |
//! | the three formats | [`master::Master`], [`ssai::Media`], [`ssai_dash::DashMedia`] |
//! | checking a plan against the view | [`apply`] |
//! | where creatives come from (packaging, rendition); laying pods out, beacon positions | [`creatives`], [`pods`] |
//! | what a session decided and learned per break; record ids | [`ledger`] |
//! | a tenant's stitching policies | [`policy`] |
//! | stitching for a session: HLS, DASH | [`ssai`] + [`stitch`], [`ssai_dash`] + [`stitch_dash`] |
//! | server-guided sessions: interstitials, asset lists; DASH alternative-MPD events | [`guided`], [`guided_dash`] |
//! | DASH helpers shared with the load test and the test player | [`dash`] |
//! | stand-in creatives where there is no ad server (`plugin check`, benches, fuzzing, tests) | [`synthetic`] |
//! | segment fix-ups on the way into the cache: CMAF timing, TS audio lead | [`cmaf_timing`], [`ts_lead`] |

pub mod apply;
pub mod asked;
pub mod cmaf_timing;
pub mod creatives;
pub mod dash;
pub mod guided;
pub mod guided_dash;
pub mod ledger;
pub mod low_latency;
pub mod master;
pub mod parse;
pub mod pipeline;
pub mod pods;
pub mod policy;
pub mod scte35;
pub mod ssai;
pub mod ssai_dash;
pub mod stitch;
pub mod stitch_dash;
pub mod synthetic;
pub mod ts_lead;
pub mod types;
pub mod view;
