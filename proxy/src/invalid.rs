//! What a config section's check found wrong: the field, as its path in the file
//! (`tenants[0].cache.live_manifest_ttl`), and why. The leaf policy types (`cors`, `limits`,
//! `origins`) and the schema (`config`) return it; `config` adds the file and the line.

/// A field a section's check refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}
