//! The viewer simulator behind `manifold-loadtest`: N concurrent HLS or DASH viewers of a live
//! stream through the proxy (loopback only), with latency histograms, errors by kind,
//! staleness, per-session consistency checks, the origin simulator's counters, proxy CPU/RSS,
//! and a summary as a table, JSON and SVG plots.
//!
//! | module | concern |
//! |---|---|
//! | [`scenario`] | join/leave schedules, bounds, seeded randomness |
//! | [`player`] | one viewer: HLS and DASH player behaviour |
//! | [`mpd`] | which DASH segments are available now (templates, timelines, periods) |
//! | [`http`] | the shared keep-alive client with a connection cap |
//! | [`metrics`] | histograms, counters and the per-second series |
//! | [`consistency`] | per-session invariants across reloads |
//! | [`procstat`] | CPU and RSS of a process from `/proc` |
//! | [`report`] | summary, table, JSON, plots |
//! | [`run`] | a whole run |

pub mod consistency;
pub mod http;
pub mod metrics;
pub mod mpd;
pub mod player;
pub mod procstat;
pub mod report;
pub mod run;
pub mod scenario;
