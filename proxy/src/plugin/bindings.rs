//! Host side of the WIT world (`wit/plugin.wit`): generated bindings and the host imports,
//! each checked against the tenant's granted capabilities.

use crate::session::{DecidedAd, SessionStore};
use std::collections::BTreeMap;
use std::sync::Arc;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: {
        "manifold:plugin/host.decide-ads": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    additional_derives: [PartialEq],
});

/// The `scoped-plugin` world: one import per capability, the same types as `plugin`.
pub mod scoped {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "scoped-plugin",
        imports: {
            "manifold:plugin/ads.decide": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: { "manifold:plugin/types": super::manifold::plugin::types },
    });
}

/// The `session-plugin` world (0.2.1): `plugin` with the session as input, and (0.2.2) the
/// `low-latency` interface.
pub mod session {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "session-plugin",
        // its imports are `plugin`'s own (`with`), so is their async-ness
        imports: { default: trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "manifold:plugin/types": super::manifold::plugin::types,
            "manifold:plugin/host": super::manifold::plugin::host,
        },
    });
}

/// The `lean-session-plugin` world (0.2.3): `session-plugin` plus the `segments` interface.
/// Its exports are `session-plugin`'s, so its components run through [`session`]'s bindings;
/// this generates only the `segments` import.
pub mod lean {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "lean-session-plugin",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "manifold:plugin/types": super::manifold::plugin::types,
            "manifold:plugin/host": super::manifold::plugin::host,
            "manifold:plugin/low-latency": super::session::manifold::plugin::low_latency,
        },
    });
}

/// The `scoped-session-plugin` world (0.2.1): `scoped-plugin` with the session as input.
pub mod scoped_session {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "scoped-session-plugin",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "manifold:plugin/types": super::manifold::plugin::types,
            "manifold:plugin/log": super::scoped::manifold::plugin::log,
            "manifold:plugin/kv": super::scoped::manifold::plugin::kv,
            "manifold:plugin/ads": super::scoped::manifold::plugin::ads,
            "manifold:plugin/clock": super::scoped::manifold::plugin::clock,
            "manifold:plugin/low-latency": super::session::manifold::plugin::low_latency,
        },
    });
}

pub use self::manifold::plugin::host::Level;
pub use self::manifold::plugin::types::*;

pub use super::capabilities::Capabilities;

impl Viewer {
    /// A viewer the host knows nothing about: no session, no request.
    pub fn anonymous(tenant: &str) -> Viewer {
        Viewer {
            tenant: tenant.to_string(),
            session_id: None,
            query: vec![],
            headers: vec![],
            user_agent: None,
            device: DeviceClass::Unknown,
            client_ip: None,
            country: None,
            cmcd: vec![],
        }
    }
}

/// Decides which ads play in a break: the tenant's catalog, or its VAST ad server.
#[async_trait::async_trait]
pub trait AdDecider: Send + Sync {
    /// `session` is the viewer's session id when there is one (ad servers key on it).
    async fn decide(
        &self,
        tenant: &str,
        session: Option<&str>,
        brk: &crate::types::AdBreak,
        viewer: &Viewer,
    ) -> Vec<DecidedAd>;
}

/// The session a call runs for: decisions are cached there per break, so every rendition and
/// every reload (on any node) of a viewer gets the same ads.
#[derive(Clone)]
pub struct SessionCtx {
    pub id: String,
    pub store: Arc<dyn SessionStore>,
    /// Decisions the session has: from its state, and those made during the call (shared,
    /// so the caller stitches with the trackers of decisions made just now).
    pub cached: Arc<parking_lot::Mutex<BTreeMap<String, Vec<DecidedAd>>>>,
    pub viewer: Viewer,
    /// How the session gets its ads (a 0.2.1 plugin is told).
    pub insertion: crate::ledger::Insertion,
}
