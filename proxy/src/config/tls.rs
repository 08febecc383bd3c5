//! The `[tls]` section: HTTPS listeners and their certificates (loaded and checked by
//! `crate::tls`, which serves them).

use serde::Deserialize;
use std::path::PathBuf;

/// The `[tls]` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// HTTPS listeners (`IP:port`).
    pub listen: Vec<String>,
    /// Offer HTTP/2 by ALPN (players multiplex playlists and segments over one connection).
    #[serde(default = "yes")]
    pub http2: bool,
    /// Oldest protocol accepted: `"1.2"` or `"1.3"`.
    #[serde(default = "default_min_version")]
    pub min_version: String,
    /// The first one is the default (clients without SNI, names nothing else matches).
    pub certificates: Vec<CertConfig>,
}

/// One certificate: PEM files, or one the proxy makes itself (for the demo and tests).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertConfig {
    /// PEM certificate chain, leaf first (relative to the config file).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key (relative to the config file).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// SNI names it answers for; default: its DNS names (subjectAltName, else the CN).
    /// `*.example.com` matches one label.
    #[serde(default)]
    pub names: Vec<String>,
    /// Instead of files: a self-signed certificate for these names, made at start-up.
    #[serde(default)]
    pub self_signed: Vec<String>,
}

fn yes() -> bool {
    true
}
fn default_min_version() -> String {
    "1.2".into()
}
