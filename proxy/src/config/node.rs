//! The sections about this node: `[server]`, `[cache]`, `[plugins]`, `[sessions]`, `[admin]`.

use super::*;

/// The plugin runtime, shared by all tenants.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Uploaded plugins (`<sha256>.wasm`) and precompiled artifacts live here.
    #[serde(default = "default_plugin_dir")]
    pub dir: PathBuf,
    /// Plugin instances running at once (the pooling allocator's size).
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// Ceiling for any tenant's plugin memory.
    #[serde(default = "default_plugin_max_memory")]
    pub max_memory: ByteSize,
    /// Largest plugin the admin API accepts.
    #[serde(default = "default_max_upload")]
    pub max_upload_size: ByteSize,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: default_plugin_dir(),
            max_instances: default_max_instances(),
            max_memory: default_plugin_max_memory(),
            max_upload_size: default_max_upload(),
        }
    }
}

fn default_plugin_dir() -> PathBuf {
    crate::state_dir::default_root().join("plugins")
}
fn default_max_instances() -> u32 {
    256
}
fn default_plugin_max_memory() -> ByteSize {
    ByteSize::mib(64)
}
fn default_max_upload() -> ByteSize {
    ByteSize::mib(16)
}

/// Viewer sessions (for tenants that personalize).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// HMAC key signing session ids (`env:NAME` reads it from the environment). Without one a
    /// random key is made at start-up: sessions then do not survive a restart or span nodes.
    #[serde(default)]
    pub key: Option<String>,
    /// `memory`, or `redis://host:port[/db]` to share sessions between proxy nodes.
    #[serde(default = "default_store")]
    pub store: String,
    /// A session is forgotten this long after its last request.
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Sessions kept by the memory store.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u64,
    /// Memory the memory store may use for sessions (each weighed by what it holds).
    #[serde(default = "default_session_memory")]
    pub max_memory: ByteSize,
}

fn default_session_memory() -> ByteSize {
    ByteSize::mib(256)
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            key: None,
            store: default_store(),
            ttl: default_session_ttl(),
            max_sessions: default_max_sessions(),
            max_memory: default_session_memory(),
        }
    }
}

impl SessionsConfig {
    pub fn resolved_key(&self) -> Result<Option<Vec<u8>>, String> {
        match self.key.as_deref() {
            None => Ok(None),
            Some(k) => {
                let k = match k.strip_prefix("env:") {
                    Some(var) => std::env::var(var)
                        .map_err(|_| format!("environment variable {var} is not set"))?,
                    None => k.to_string(),
                };
                if k.len() < 16 {
                    return Err("must be at least 16 bytes".into());
                }
                Ok(Some(k.into_bytes()))
            }
        }
    }
}

fn default_store() -> String {
    "memory".into()
}
fn default_session_ttl() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn default_max_sessions() -> u64 {
    1_000_000
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: String,
    /// Bearer token; required unless the listener is on loopback. `env:NAME` reads it from the
    /// environment variable NAME.
    #[serde(default)]
    pub token: Option<String>,
}

impl AdminConfig {
    /// The token, resolved from the environment if it says `env:NAME`.
    pub fn resolved_token(&self) -> Result<Option<String>, String> {
        resolve_secret(self.token.as_deref())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses the proxy listens on (plain HTTP).
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// Worker threads of the proxy service.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// How long shutdown waits for in-flight requests.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Where a new process (`manifold serve --upgrade`) takes the listeners over from this one
    /// on SIGQUIT (zero-downtime binary upgrade).
    #[serde(default = "default_upgrade_sock")]
    pub upgrade_sock: PathBuf,
}

fn default_upgrade_sock() -> PathBuf {
    crate::state_dir::default_root().join("upgrade.sock")
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            threads: default_threads(),
            shutdown_grace: default_grace(),
            upgrade_sock: default_upgrade_sock(),
        }
    }
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:8080".into()]
}
fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}
fn default_grace() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Memory for cached segments (bodies plus headers), shared by all tenants.
    #[serde(default = "default_cache_size")]
    pub size: ByteSize,
    /// Responses larger than this are proxied but not cached.
    #[serde(default = "default_max_object")]
    pub max_object_size: ByteSize,
    /// How long concurrent misses for one object wait for the request fetching it.
    #[serde(default = "default_lock_timeout", with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// Manifests kept in the manifest cache (entries, all tenants).
    #[serde(default = "default_manifest_entries")]
    pub manifest_entries: u64,
    /// Memory for cached manifests (all tenants; each tenant has its share, see
    /// `[tenants.cache] manifest_memory`), their last good copies kept within the same bound.
    #[serde(default = "default_manifest_memory")]
    pub manifest_memory: ByteSize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            size: default_cache_size(),
            max_object_size: default_max_object(),
            lock_timeout: default_lock_timeout(),
            manifest_entries: default_manifest_entries(),
            manifest_memory: default_manifest_memory(),
        }
    }
}

fn default_cache_size() -> ByteSize {
    ByteSize::mib(512)
}
fn default_max_object() -> ByteSize {
    ByteSize::mib(32)
}
fn default_lock_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_manifest_entries() -> u64 {
    10_000
}
fn default_manifest_memory() -> ByteSize {
    ByteSize::mib(256)
}

impl ServerConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let s = self;
        if s.listen.is_empty() {
            return Err(Invalid::new("server.listen", "needs at least one address"));
        }
        for (i, l) in s.listen.iter().enumerate() {
            l.parse::<SocketAddr>().map_err(|e| {
                Invalid::new(
                    format!("server.listen[{i}]"),
                    format!("{l:?} is not an IP:port address: {e}"),
                )
            })?;
        }
        if s.threads == 0 || s.threads > 1024 {
            return Err(Invalid::new("server.threads", "must be between 1 and 1024"));
        }
        Ok(())
    }
}

impl CacheConfig {
    /// With the tenants: their manifest shares must fit in `manifest_memory`.
    pub(super) fn validate(&self, tenants: &[TenantConfig]) -> Result<(), Invalid> {
        let c = self;
        if c.size.as_u64() < 1024 * 1024 {
            return Err(Invalid::new("cache.size", "must be at least 1 MiB"));
        }
        if c.max_object_size.as_u64() == 0 || c.max_object_size > c.size {
            return Err(Invalid::new(
                "cache.max_object_size",
                "must be positive and no larger than cache.size",
            ));
        }
        if c.lock_timeout.is_zero() {
            return Err(Invalid::new("cache.lock_timeout", "must be positive"));
        }
        if c.manifest_entries == 0 {
            return Err(Invalid::new("cache.manifest_entries", "must be positive"));
        }
        let shares: u64 = tenants
            .iter()
            .filter_map(|t| t.cache.manifest_memory.map(|b| b.as_u64()))
            .sum();
        let others = tenants
            .iter()
            .filter(|t| t.cache.manifest_memory.is_none())
            .count() as u64;
        if shares + (1 << 20) * others > c.manifest_memory.as_u64() {
            return Err(Invalid::new("cache.manifest_memory", format!(
                "{} does not hold the tenants' shares ({shares} bytes set, plus at least 1 MiB for each of the {others} others)",
                c.manifest_memory
            )));
        }
        Ok(())
    }
}

impl SessionsConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        self.resolved_key()
            .map_err(|m| Invalid::new("sessions.key", m))?;
        let st = &self.store;
        if st != "memory" && !st.starts_with("redis://") && !st.starts_with("rediss://") {
            return Err(Invalid::new(
                "sessions.store",
                format!("{st:?} is not \"memory\" or a redis:// URL"),
            ));
        }
        Ok(())
    }
}

impl PluginsConfig {
    /// With the tenants: their instance shares must fit in the pool.
    pub(super) fn validate(&self, tenants: &[TenantConfig]) -> Result<(), Invalid> {
        if self.max_instances == 0 || self.max_instances > 10_000 {
            return Err(Invalid::new(
                "plugins.max_instances",
                "must be between 1 and 10000",
            ));
        }
        let explicit: u64 = tenants
            .iter()
            .filter_map(|t| t.plugin.as_ref()?.max_instances)
            .map(u64::from)
            .sum();
        let implicit = tenants
            .iter()
            .filter(|t| t.plugin.as_ref().and_then(|p| p.max_instances).is_none())
            .count() as u64;
        if explicit + implicit > u64::from(self.max_instances) {
            return Err(Invalid::new("tenants.plugin.max_instances", format!(
                "the tenants' shares of plugin instances ({explicit} set, plus at least 1 for each of the {implicit} others) add up to more than plugins.max_instances ({})",
                self.max_instances
            )));
        }
        Ok(())
    }
}

impl AdminConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let addr: SocketAddr = self.listen.parse().map_err(|e| {
            Invalid::new(
                "admin.listen",
                format!("{:?} is not an IP:port address: {e}", self.listen),
            )
        })?;
        let token = self
            .resolved_token()
            .map_err(|m| Invalid::new("admin.token", m))?;
        match token {
            None if !addr.ip().is_loopback() => {
                return Err(Invalid::new(
                    "admin.token",
                    "required: the admin API listens beyond loopback",
                ))
            }
            Some(t) if t.len() < 16 => {
                return Err(Invalid::new(
                    "admin.token",
                    "must be at least 16 characters",
                ))
            }
            _ => {}
        }
        Ok(())
    }
}
