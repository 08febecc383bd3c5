//! The viewer simulator for Manifold's load tests (`viewers`). The origin simulator it is
//! usually pointed at is the `manifold-origin` crate, which the proxy's demo uses too without
//! pulling in this crate's plotting and histograms.

pub mod viewers;
