//! The Manifold plugin SDK: write a manifest plugin in plain Rust.
//!
//! The host parses the origin manifest and calls your plugin with a typed view of it and the
//! viewer's context; you return edits (drop a variant, fill an ad break, ...). The host checks
//! and applies them, so whatever you return, the viewer gets a valid manifest.
//!
//! ```ignore
//! use manifold_plugin_sdk::*;
//!
//! struct OnlyLowRes;
//!
//! impl Plugin for OnlyLowRes {
//!     fn hls_master(m: HlsMaster, _v: Viewer, _config: String) -> Result<Vec<Edit>, String> {
//!         Ok(m.variants.iter()
//!             .filter(|v| v.resolution.is_some_and(|r| r.height > 360))
//!             .map(|v| Edit::DropVariant(v.index))
//!             .collect())
//!     }
//! }
//!
//! plugin!(OnlyLowRes);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`, check with
//! `manifold plugin check target/wasm32-wasip2/release/your_plugin.wasm`.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "session-plugin",
        pub_export_macro: true,
        default_bindings_module: "manifold_plugin_sdk::bindings",
    });
}

pub use bindings::manifold::plugin::host;
pub use bindings::manifold::plugin::low_latency::{Edge as LiveEdge, Part};
pub use bindings::manifold::plugin::types::*;

/// The LL-HLS live edge of the media playlist being personalized: its part target, the parts
/// listed (each with the index of its segment) and the preload hint. `None` for a playlist
/// without parts, and in the master and DASH calls. Read it only when you need it: it is
/// copied into the plugin on each call.
pub fn live_edge() -> Option<LiveEdge> {
    bindings::manifold::plugin::low_latency::live_edge()
}
#[doc(hidden)]
pub use bindings::Guest;

/// A manifest plugin. Every method defaults to "no edits": implement the ones you need.
pub trait Plugin {
    /// An HLS master playlist.
    fn hls_master(master: HlsMaster, viewer: Viewer, config: String) -> Result<Vec<Edit>, String> {
        let _ = (master, viewer, config);
        Ok(Vec::new())
    }

    /// An HLS media playlist.
    fn hls_media(media: HlsMedia, viewer: Viewer, config: String) -> Result<Vec<Edit>, String> {
        let _ = (media, viewer, config);
        Ok(Vec::new())
    }

    /// A DASH MPD.
    fn dash_mpd(mpd: DashMpd, viewer: Viewer, config: String) -> Result<Vec<Edit>, String> {
        let _ = (mpd, viewer, config);
        Ok(Vec::new())
    }

    /// An HLS master playlist, with the viewer's session (how it gets its ads). Defaults
    /// to [`Plugin::hls_master`]: implement this one to decide by the session.
    fn hls_master_in_session(
        master: HlsMaster,
        viewer: Viewer,
        session: Session,
        config: String,
    ) -> Result<Vec<Edit>, String> {
        let _ = session;
        Self::hls_master(master, viewer, config)
    }

    /// An HLS media playlist, with the viewer's session. Defaults to [`Plugin::hls_media`].
    fn hls_media_in_session(
        media: HlsMedia,
        viewer: Viewer,
        session: Session,
        config: String,
    ) -> Result<Vec<Edit>, String> {
        let _ = session;
        Self::hls_media(media, viewer, config)
    }

    /// A DASH MPD, with the viewer's session. Defaults to [`Plugin::dash_mpd`].
    fn dash_mpd_in_session(
        mpd: DashMpd,
        viewer: Viewer,
        session: Session,
        config: String,
    ) -> Result<Vec<Edit>, String> {
        let _ = session;
        Self::dash_mpd(mpd, viewer, config)
    }
}

/// Exports a [`Plugin`] implementation as the component's entry points (the
/// `session-plugin` world of `manifold:plugin@0.2.2`).
#[macro_export]
macro_rules! plugin {
    ($ty:ty) => {
        struct __ManifoldExport;
        impl $crate::Guest for __ManifoldExport {
            fn hls_master(
                m: $crate::HlsMaster,
                v: $crate::Viewer,
                s: $crate::Session,
                c: ::std::string::String,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::Edit>, ::std::string::String> {
                <$ty as $crate::Plugin>::hls_master_in_session(m, v, s, c)
            }
            fn hls_media(
                m: $crate::HlsMedia,
                v: $crate::Viewer,
                s: $crate::Session,
                c: ::std::string::String,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::Edit>, ::std::string::String> {
                <$ty as $crate::Plugin>::hls_media_in_session(m, v, s, c)
            }
            fn dash_mpd(
                m: $crate::DashMpd,
                v: $crate::Viewer,
                s: $crate::Session,
                c: ::std::string::String,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::Edit>, ::std::string::String> {
                <$ty as $crate::Plugin>::dash_mpd_in_session(m, v, s, c)
            }
        }
        $crate::bindings::export!(__ManifoldExport with_types_in $crate::bindings);
    };
}

/// The tenant's plugin config string, read as `key=value` pairs separated by `;` or newlines.
pub mod config {
    /// The value of `key`, trimmed.
    pub fn get<'a>(config: &'a str, key: &str) -> Option<&'a str> {
        config
            .split([';', '\n'])
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim())
    }

    /// A comma-separated list value of `key` (empty when absent).
    pub fn list<'a>(config: &'a str, key: &str) -> Vec<&'a str> {
        get(config, key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A numeric value of `key`.
    pub fn number(config: &str, key: &str) -> Option<f64> {
        get(config, key)?.parse().ok()
    }
}

impl Viewer {
    /// A query (player) parameter.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A passed-on request header (lowercase name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A CMCD key the player sent.
    pub fn cmcd(&self, key: &str) -> Option<&str> {
        self.cmcd
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Ad {
    /// An ad playing catalog creative `creative` for `duration` seconds.
    pub fn new(creative: &str, duration: f64) -> Ad {
        Ad {
            id: creative.to_string(),
            creative: creative.to_string(),
            duration,
        }
    }
}

/// Logging through the host (needs the tenant's `log` capability).
pub mod log {
    use super::host::{log, Level};

    pub fn debug(msg: &str) {
        log(Level::Debug, msg)
    }
    pub fn info(msg: &str) {
        log(Level::Info, msg)
    }
    pub fn warn(msg: &str) {
        log(Level::Warn, msg)
    }
    pub fn error(msg: &str) {
        log(Level::Error, msg)
    }
}
