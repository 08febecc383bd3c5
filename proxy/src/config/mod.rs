//! The TOML configuration: listeners, cache sizes, tenants. Loading either yields a complete,
//! validated [`Config`] or a [`ConfigError`] naming the file, the field and what is wrong.

pub mod health;
pub mod lines;
mod node;
mod tenant;
mod tenant_rules;
pub mod tls;

pub use crate::invalid::Invalid;
pub use node::*;
pub use tenant::*;

use bytesize::ByteSize;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

#[derive(Debug, thiserror::Error)]
#[error("{}{}: {field}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: PathBuf,
    /// The line the field is on, when the error was found with the file's text at hand.
    pub line: Option<usize>,
    /// Dotted path of the offending field (`tenants[1].origin`), or `-` for the whole file.
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error, placed on its line of `text` (the file's contents).
    pub fn on_line_of(mut self, text: &str) -> ConfigError {
        self.line = self.line.or_else(|| lines::line_of(text, &self.field));
        self
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// The admin API (plugin deployment); off when absent.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// Request size limits (`[limits]`): see [`crate::limits`].
    #[serde(default)]
    pub limits: crate::limits::Limits,
    /// CORS for every tenant without its own `[tenants.cors]` (and for unrouted requests).
    #[serde(default)]
    pub cors: crate::cors::CorsConfig,
    /// HTTPS listeners and their certificates; off when absent.
    #[serde(default)]
    pub tls: Option<tls::TlsConfig>,
    pub tenants: Vec<TenantConfig>,
}

impl Config {
    /// Each tenant's share of the manifest cache: its bytes, and entries in proportion.
    pub fn manifest_quotas(&self) -> HashMap<String, Quota> {
        let total = self.cache.manifest_memory.as_u64();
        let explicit = |t: &TenantConfig| t.cache.manifest_memory.map(|b| b.as_u64());
        let set: u64 = self.tenants.iter().filter_map(explicit).sum();
        let others = self
            .tenants
            .iter()
            .filter(|t| explicit(t).is_none())
            .count() as u64;
        let each = (total.saturating_sub(set) / others.max(1)).max(1 << 20);
        self.tenants
            .iter()
            .map(|t| {
                let bytes = explicit(t).unwrap_or(each);
                let share = bytes as f64 / total.max(1) as f64;
                let entries = ((self.cache.manifest_entries as f64 * share) as u64).max(16);
                (t.id.clone(), Quota { bytes, entries })
            })
            .collect()
    }

    /// Each tenant's share of the plugin instance pool (see `TenantPluginConfig::max_instances`).
    pub fn plugin_shares(&self) -> HashMap<String, usize> {
        let max = self.plugins.max_instances as usize;
        let explicit = |t: &TenantConfig| t.plugin.as_ref().and_then(|p| p.max_instances);
        let set: usize = self
            .tenants
            .iter()
            .filter_map(explicit)
            .map(|n| n as usize)
            .sum();
        let others = self
            .tenants
            .iter()
            .filter(|t| explicit(t).is_none())
            .count();
        let each = (max.saturating_sub(set) / others.max(1)).max(1);
        self.tenants
            .iter()
            .map(|t| (t.id.clone(), explicit(t).map_or(each, |n| n as usize)))
            .collect()
    }
}

/// A secret given inline or as `env:NAME`.
fn resolve_secret(v: Option<&str>) -> Result<Option<String>, String> {
    match v {
        Some(t) => match t.strip_prefix("env:") {
            Some(var) => std::env::var(var)
                .map(Some)
                .map_err(|_| format!("environment variable {var} is not set")),
            None => Ok(Some(t.to_string())),
        },
        None => Ok(None),
    }
}

/// What one tenant's manifests may hold: bytes (weighed by the manifest cache) and entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub bytes: u64,
    pub entries: u64,
}

/// Viewer-context entries made from a viewer token's claims start with this (`jwt.sub`).
pub const CLAIM_PREFIX: &str = "jwt.";

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "-", format!("cannot read: {e}")))?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` only names it in errors. Errors name the
    /// line of the field, or of the syntax error.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let at = |span: Option<std::ops::Range<usize>>| {
            span.map(|r| text[..r.start.min(text.len())].matches('\n').count() + 1)
        };
        let de = toml::de::Deserializer::parse(text).map_err(|e| ConfigError {
            line: at(e.span()),
            ..ConfigError::new(path, "-", e.message().trim())
        })?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { "-".into() } else { field };
            let line = at(e.inner().span());
            let e = ConfigError::new(path, field, e.inner().message().trim());
            ConfigError { line, ..e }.on_line_of(text)
        })?;
        config
            .validate()
            .map_err(|e| ConfigError::new(path, e.field, e.message).on_line_of(text))?;
        Ok(config)
    }

    /// Each section checked in turn, in this order; the first problem found is the error.
    fn validate(&self) -> Result<(), Invalid> {
        self.server.validate()?;
        self.limits.validate()?;
        self.cors.validate("cors")?;
        self.cache.validate(&self.tenants)?;
        if self.tenants.is_empty() {
            return Err(Invalid::new("tenants", "needs at least one tenant"));
        }
        let mut seen = tenant_rules::Seen::default();
        for (i, t) in self.tenants.iter().enumerate() {
            t.validate(i, &mut seen, &self.plugins)?;
        }
        self.sessions.validate()?;
        for (i, t) in self.tenants.iter().enumerate() {
            t.validate_ad_server(i)?;
        }
        self.plugins.validate(&self.tenants)?;
        if let Some(a) = &self.admin {
            a.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    /// The smallest valid config: one tenant.
    pub(crate) const MIN: &str = r#"
[[tenants]]
id = "acme"
origin = "http://127.0.0.1:9000/base/"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.server.listen, vec!["127.0.0.1:8080"]);
        assert_eq!(c.cache.size, ByteSize::mib(512));
        let t = &c.tenants[0];
        assert!(t.path_prefix);
        assert_eq!(t.cache.segment_ttl, Duration::from_secs(3600));
        let o = OriginUrl::parse(&t.origin).unwrap();
        assert_eq!(
            (o.host.as_str(), o.port, o.base_path.as_str()),
            ("127.0.0.1", 9000, "/base")
        );
    }

    #[test]
    fn errors_name_file_and_field() {
        let e = parse(&MIN.replace("http://127.0.0.1:9000/base/", "ftp://x")).unwrap_err();
        assert_eq!(e.field, "tenants[0].origin");
        assert!(
            e.to_string()
                .starts_with("test.toml:4: tenants[0].origin: "),
            "{e}"
        );

        let e = parse(&format!("{MIN}connect_timeout = \"soon\"\n")).unwrap_err();
        assert_eq!(e.field, "tenants[0].connect_timeout", "{e}");

        let e = parse(&format!("{MIN}colour = \"red\"\n")).unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");

        let e = parse(&format!("[server]\nlisten = [\"nowhere\"]\n{MIN}")).unwrap_err();
        assert_eq!(e.field, "server.listen[0]");

        let e = parse(&format!("{MIN}{MIN}")).unwrap_err();
        assert_eq!(e.field, "tenants[1].id");
        assert!(e.message.contains("another tenant"));

        let e = parse("tenants = []").unwrap_err();
        assert_eq!(e.field, "tenants");

        let e = parse("[[tenants]\nid=").unwrap_err();
        assert_eq!(e.field, "-");

        let e = parse(&format!("[cache]\nsize = \"lots\"\n{MIN}")).unwrap_err();
        assert_eq!(e.field, "cache.size");
    }

    #[test]
    fn plugin_and_admin_settings_are_checked() {
        let with = |extra: &str| parse(&format!("{MIN}{extra}"));
        let ok = with("[tenants.plugin]\nfile = \"p.wasm\"\ncapabilities = [\"log\"]\n").unwrap();
        let p = ok.tenants[0].plugin.as_ref().unwrap();
        assert_eq!(p.deadline, Duration::from_millis(10));
        assert_eq!(p.fail, FailPolicy::Open);
        let e =
            with("[tenants.plugin]\nfile = \"p.wasm\"\ncapabilities = [\"net\"]\n").unwrap_err();
        assert_eq!(e.field, "tenants[0].plugin.capabilities");
        let e = with("[tenants.plugin]\nfile = \"p.wasm\"\nmemory = \"1GiB\"\n").unwrap_err();
        assert_eq!(e.field, "tenants[0].plugin.memory");
        let e = with("[tenants.plugin]\nfile = \"sha256:abc\"\n").unwrap_err();
        assert_eq!(e.field, "tenants[0].plugin.file");
        let e = with("[tenants.plugin]\nfile = \"p.wasm\"\nfail = \"sometimes\"\n").unwrap_err();
        assert_eq!(e.field, "tenants[0].plugin.fail");
        let e = parse(&format!("[admin]\nlisten = \"0.0.0.0:9090\"\n{MIN}")).unwrap_err();
        assert_eq!(e.field, "admin.token");
        assert!(parse(&format!("[admin]\nlisten = \"127.0.0.1:9090\"\n{MIN}")).is_ok());
        let e = with("[[tenants.creatives]]\nname = \"ad\"\nduration = 10.0\n").unwrap_err();
        assert_eq!(e.field, "tenants[0].creatives[0].hls");
    }

    #[test]
    fn errors_name_the_line() {
        // a value the schema refuses, a value validation refuses, a syntax error
        let e = parse(&format!("{MIN}connect_timeout = 5\n")).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.line),
            ("tenants[0].connect_timeout", Some(5)),
            "{e}"
        );
        let e = parse(&format!(
            "{MIN}\n[tenants.plugin]\nfile = \"p.wasm\"\nmemory = \"1 KiB\"\n"
        ))
        .unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.line),
            ("tenants[0].plugin.memory", Some(8)),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("test.toml:8: tenants[0].plugin.memory: "),
            "{e}"
        );
        let e = parse("[server\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn claim_names_are_not_passed_on_as_headers() {
        let e = parse(&format!(
            "{MIN}[tenants.plugin]\nfile = \"p.wasm\"\npass_headers = [\"JWT.sub\"]\n"
        ))
        .unwrap_err();
        assert_eq!(e.field, "tenants[0].plugin.pass_headers");
    }

    #[test]
    fn ad_server_is_checked() {
        let creative =
            "[[tenants.creatives]]\nname = \"ad\"\nduration = 10.0\nhls = \"/ad.m3u8\"\n";
        let server =
            "[tenants.ad_server]\nurl = \"http://ads.example/vast?d=[DURATION]&s=[SESSION_ID]\"\n";
        let ok = parse(&format!("{MIN}{server}{creative}")).unwrap();
        let a = ok.tenants[0].ad_server.as_ref().unwrap();
        assert_eq!(a.timeout, Duration::from_millis(500));
        assert_eq!(a.budget, Duration::from_millis(1500));
        let e = parse(&format!("{MIN}{server}")).unwrap_err();
        assert_eq!(e.field, "tenants[0].creatives");
        assert!(e.message.contains("ad_server"), "{e}");
        let e = parse(&format!("{MIN}{server}timeout = \"2s\"\n{creative}")).unwrap_err();
        assert_eq!(e.field, "tenants[0].ad_server.budget");
        let e = parse(&format!(
            "{MIN}[tenants.ad_server]\nurl = \"ftp://x/[DURATION]\"\n{creative}"
        ))
        .unwrap_err();
        assert_eq!(e.field, "tenants[0].ad_server.url");
    }

    #[test]
    fn unreachable_tenant_is_refused() {
        let e = parse(&format!("{MIN}path_prefix = false\n")).unwrap_err();
        assert_eq!(e.field, "tenants[0].hosts");
    }

    #[test]
    fn origin_authority_brackets_ipv6_and_omits_default_port() {
        assert_eq!(
            OriginUrl::parse("http://[::1]:81").unwrap().authority(),
            "[::1]:81"
        );
        assert_eq!(
            OriginUrl::parse("https://cdn.example").unwrap().authority(),
            "cdn.example"
        );
        assert!(OriginUrl::parse("http://u:p@h").is_err());
    }

    #[test]
    fn plugin_shares_split_the_pool_and_never_add_up_past_it() {
        let t = |id: &str, share: &str| {
            format!("[[tenants]]\nid = \"{id}\"\norigin = \"http://127.0.0.1:1\"\n[tenants.plugin]\n{share}\n")
        };
        let c = parse(&format!(
            "[plugins]\nmax_instances = 32\n{}{}{}",
            t("a", "max_instances = 8"),
            t("b", ""),
            t("c", "")
        ))
        .unwrap();
        let shares = c.plugin_shares();
        assert_eq!((shares["a"], shares["b"], shares["c"]), (8, 12, 12));
        let e = parse(&format!(
            "[plugins]\nmax_instances = 8\n{}{}",
            t("a", "max_instances = 8"),
            t("b", "")
        ))
        .unwrap_err();
        assert_eq!(e.field, "tenants.plugin.max_instances");
        let e = parse(&format!(
            "[plugins]\nmax_instances = 8\n{}",
            t("a", "max_instances = 0")
        ))
        .unwrap_err();
        assert_eq!(e.field, "tenants[0].plugin.max_instances");
    }
}
