//! Why a plugin call did not produce an edit plan: the kinds metrics and logs name.

/// Why a plugin call did not produce an edit plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The guest trapped (panic, unreachable, stack overflow, denied capability...).
    Trap,
    /// It ran past its deadline.
    Deadline,
    /// It tried to grow its memory past the tenant's limit.
    Memory,
    /// It returned an edit plan the host refused.
    InvalidPlan,
    /// It returned an error of its own.
    PluginError,
    /// No instance slot was free within the deadline.
    Busy,
    /// The session store did not answer (not the plugin's fault; same policy).
    SessionStore,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Deadline => "deadline",
            FailureKind::Memory => "memory",
            FailureKind::InvalidPlan => "invalid-plan",
            FailureKind::PluginError => "plugin-error",
            FailureKind::Busy => "busy",
            FailureKind::SessionStore => "session-store",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct PluginFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl PluginFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        PluginFailure {
            kind,
            message: message.into(),
        }
    }
}
