//! A plugin ready to instantiate, and why one could not be made ready. How it gets ready is
//! [`super::loading`]; calling it is [`super::runtime`].

use super::bindings::scoped::ScopedPluginPre;
use super::bindings::scoped_session::ScopedSessionPluginPre;
use super::bindings::session::SessionPluginPre;
use super::bindings::PluginPre;
use super::capabilities::Capabilities;
use super::host::HostState;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error("component does not fit a manifold:plugin@0.2 world: {0}")]
    World(String),
    #[error("plugin artifact store: {0}")]
    Io(String),
    #[error("refused by a trial instantiation under the tenant's limits: {0}")]
    Trial(String),
    #[error("busy: {0}; retry shortly")]
    Busy(String),
    #[error("the component imports capabilities this tenant does not grant: {0} (grant them in `[tenants.plugin] capabilities`)")]
    Ungranted(String),
}

/// Which world a component was built for.
pub(super) enum Pre {
    /// `plugin`: the one `host` interface, every import linked; an ungranted call traps.
    Plugin(PluginPre<HostState>),
    /// `scoped-plugin`: one interface per capability; a deploy refuses ungranted ones.
    Scoped(ScopedPluginPre<HostState>),
    /// `session-plugin` (0.2.1): `plugin`, called with the viewer's session too.
    Session(SessionPluginPre<HostState>),
    /// `scoped-session-plugin` (0.2.1): `scoped-plugin`, called with the session too.
    ScopedSession(ScopedSessionPluginPre<HostState>),
}

impl Pre {
    /// The world's name, for logs and `plugin check`.
    pub fn world(&self) -> &'static str {
        match self {
            Pre::Plugin(_) => "plugin",
            Pre::Scoped(_) => "scoped-plugin",
            Pre::Session(_) => "session-plugin",
            Pre::ScopedSession(_) => "scoped-session-plugin",
        }
    }
}

/// A compiled plugin, ready to instantiate.
pub struct LoadedPlugin {
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    pub(super) pre: Pre,
    /// The capabilities a `scoped-plugin` component imports (none for a `plugin` one).
    pub imports: Capabilities,
    /// It imports `segments` (0.2.3): called with an HLS media playlist's segments left out
    /// of its input, which it reads on demand.
    pub segments_on_demand: bool,
    pub wasm_bytes: usize,
    /// How it got into memory: compiled now, or read from the artifact store.
    pub from_artifact: bool,
    pub load_time: Duration,
}

impl LoadedPlugin {
    /// The world it was built for (`plugin`, `session-plugin`, ...).
    pub fn world(&self) -> &'static str {
        match (&self.pre, self.segments_on_demand) {
            (Pre::Session(_), true) => "lean-session-plugin",
            (pre, _) => pre.world(),
        }
    }

    /// The capabilities it imports that `granted` lacks, by name (empty: it may run).
    pub fn ungranted(&self, granted: Capabilities) -> Vec<&'static str> {
        self.imports.missing_from(granted)
    }
}
