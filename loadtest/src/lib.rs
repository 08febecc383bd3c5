//! Load-testing tools for Manifold: a live HLS/DASH origin simulator built from real sample
//! media (`origin`), and the viewer simulator (`viewers`).

pub mod origin;
pub mod viewers;
