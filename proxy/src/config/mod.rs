//! The TOML configuration: listeners, cache sizes, tenants. Loading either yields a complete,
//! validated [`Config`] or a [`ConfigError`] naming the file, the field and what is wrong.

pub mod health;
pub mod lines;
pub mod tls;

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

/// How a tenant's ad breaks are stitched.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsaiConfig {
    /// Origin ad markers (CUE-OUT/-IN, SCTE-35 date ranges): `pass` or `strip`.
    #[serde(default)]
    pub markers: crate::stitch::Markers,
    /// A viewer who joins during a break gets the rest of the pod (`ads`) or the `content`.
    #[serde(default)]
    pub join_mid_break: crate::ssai::JoinPolicy,
    /// An ad longer than what is left of its break is `drop`ped or `cut` at a segment boundary.
    #[serde(default)]
    pub overlong_ads: crate::apply::Overlong,
}

/// The tenant's VAST ad server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdServerConfig {
    /// URL template; macros: `[SESSION_ID]`, `[BREAK_ID]`, `[DURATION]`, `[COUNTRY]`,
    /// `[DEVICE]`, `[CACHEBUSTER]`, `[PARAM:name]` (a player query parameter).
    pub url: String,
    /// Per request (each wrapper hop).
    #[serde(default = "default_vast_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// For one break's whole decision (all wrapper hops).
    #[serde(default = "default_vast_budget", with = "humantime_serde")]
    pub budget: Duration,
    /// Announced breaks: requests are spread over this window before the break starts.
    #[serde(default = "default_prefetch", with = "humantime_serde")]
    pub prefetch_window: Duration,
}

fn default_vast_timeout() -> Duration {
    Duration::from_millis(500)
}
fn default_vast_budget() -> Duration {
    Duration::from_millis(1500)
}
fn default_prefetch() -> Duration {
    Duration::from_secs(10)
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

/// A tenant's manifest plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPluginConfig {
    /// The component file (relative to this config file), or `sha256:<hex>` of an upload.
    /// Without it the tenant runs no plugin until one is deployed through the admin API.
    #[serde(default)]
    pub file: Option<String>,
    /// Handed to the plugin on every call.
    #[serde(default)]
    pub config: String,
    /// Time limit per call (instantiation included).
    #[serde(default = "default_plugin_deadline", with = "humantime_serde")]
    pub deadline: Duration,
    /// Linear memory limit per call.
    #[serde(default = "default_plugin_memory")]
    pub memory: ByteSize,
    /// On a plugin failure: `open` serves the origin manifest unchanged, `closed` answers 503.
    #[serde(default)]
    pub fail: FailPolicy,
    /// Host imports granted: `log`, `kv`, `ads`, `clock`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Size of the tenant's key-value store (capability `kv`).
    #[serde(default = "default_kv_size")]
    pub kv_size: ByteSize,
    /// Request headers passed to the plugin in the viewer context (lowercase names).
    #[serde(default)]
    pub pass_headers: Vec<String>,
    /// Header carrying the viewer's country (e.g. `cf-ipcountry`).
    #[serde(default)]
    pub country_header: Option<String>,
    /// Plugin instances this tenant may run at once (its share of `plugins.max_instances`).
    /// Tenants without one split what the others leave equally. Shares add up to at most
    /// the pool, so a tenant that saturates its share never makes another one busy.
    #[serde(default)]
    pub max_instances: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailPolicy {
    #[default]
    Open,
    Closed,
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

fn default_plugin_deadline() -> Duration {
    Duration::from_millis(10)
}
fn default_plugin_memory() -> ByteSize {
    ByteSize::mib(16)
}
fn default_kv_size() -> ByteSize {
    ByteSize::kib(64)
}

/// An ad creative in a tenant's catalog: manifests on the tenant's origin (paths as the
/// viewer sees them under the tenant).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreativeConfig {
    pub name: String,
    /// Seconds.
    pub duration: f64,
    /// HLS master of the MPEG-TS packaging.
    #[serde(default)]
    pub hls: Option<String>,
    /// HLS master of the fMP4/CMAF packaging.
    #[serde(default)]
    pub hls_fmp4: Option<String>,
    /// DASH MPD of the creative (CMAF), for DASH ad periods.
    #[serde(default)]
    pub dash: Option<String>,
    /// Pads breaks; never chosen as an ad.
    #[serde(default)]
    pub slate: bool,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Names the tenant in URLs (`/{id}/...`), logs and cache keys: `[a-z0-9_-]`, 1–64 chars.
    pub id: String,
    /// Host names routed to this tenant (whole path forwarded to the origin).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Also route `/{id}/...` to this tenant (the prefix is stripped).
    #[serde(default = "yes")]
    pub path_prefix: bool,
    /// Origin base URL; request paths are appended to its path.
    pub origin: String,
    /// Backup origins serving the same streams, in order: requests go to the first healthy
    /// one, and a request the current one fails goes on to the next.
    #[serde(default)]
    pub failover: Vec<String>,
    /// Health checks and DNS refresh of the origins.
    #[serde(default)]
    pub health_check: health::HealthConfig,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Limit on waiting for the origin's response (each read).
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Origin manifests larger than this are refused with 502.
    #[serde(default = "default_max_manifest")]
    pub max_manifest_size: ByteSize,
    #[serde(default)]
    pub cache: TenantCachePolicy,
    #[serde(default)]
    pub plugin: Option<TenantPluginConfig>,
    /// The tenant's ad catalog (ads and slate).
    #[serde(default)]
    pub creatives: Vec<CreativeConfig>,
    #[serde(default)]
    pub ssai: SsaiConfig,
    /// Ads decided by a VAST ad server instead of the catalog alone.
    #[serde(default)]
    pub ad_server: Option<AdServerConfig>,
    /// Edge auth: viewer tokens (JWT) required on every request; off when absent.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// CORS for this tenant instead of the top-level `[cors]`.
    #[serde(default)]
    pub cors: Option<crate::cors::CorsConfig>,
    /// What of a viewer's request reaches the origin.
    #[serde(default)]
    pub forward: ForwardConfig,
    /// How fast viewers may start sessions.
    #[serde(default)]
    pub sessions: TenantSessionsConfig,
    /// Admin API token scoped to this tenant: it deploys, rolls back and deactivates this
    /// tenant's plugin and lists this tenant only (`env:NAME` reads it from the environment).
    #[serde(default)]
    pub admin_token: Option<String>,
}

/// `[tenants.sessions]`: session starts per client address and for the whole tenant, per
/// minute, with a burst above that (`0` per minute: unlimited). A refused start gets 429.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantSessionsConfig {
    #[serde(default = "default_client_sessions")]
    pub per_client_per_minute: u32,
    #[serde(default = "default_client_burst")]
    pub client_burst: u32,
    #[serde(default)]
    pub per_tenant_per_minute: u32,
    #[serde(default = "default_tenant_burst")]
    pub tenant_burst: u32,
}

impl Default for TenantSessionsConfig {
    fn default() -> Self {
        TenantSessionsConfig {
            per_client_per_minute: default_client_sessions(),
            client_burst: default_client_burst(),
            per_tenant_per_minute: 0,
            tenant_burst: default_tenant_burst(),
        }
    }
}

fn default_client_sessions() -> u32 {
    300
}
fn default_client_burst() -> u32 {
    600
}
fn default_tenant_burst() -> u32 {
    10_000
}

impl TenantConfig {
    /// The scoped admin token, resolved from the environment if it says `env:NAME`.
    pub fn resolved_admin_token(&self) -> Result<Option<String>, String> {
        resolve_secret(self.admin_token.as_deref())
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

/// `[tenants.forward]`: what of a viewer's request the proxy passes to the origin. What is not
/// forwarded cannot change the origin's answer, so it never splits or poisons the cache.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Pass CMCD (the `CMCD` query parameter and `CMCD-*` headers) to the origin, for its
    /// logs. It never enters a cache key either way.
    #[serde(default)]
    pub cmcd: bool,
    /// Pass the viewer's `Cookie` and `Authorization` to the origin. A response to such a
    /// request is then shared only if the origin says so (`public`, `s-maxage`,
    /// `must-revalidate`; RFC 9111 section 3.5).
    #[serde(default)]
    pub credentials: bool,
}

/// A tenant's edge auth (`[tenants.auth]`): see [`crate::auth`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `HS256`, `RS256` or `ES256` (tokens signed otherwise are refused).
    pub alg: String,
    /// HS256: the shared secret, at least 32 bytes (`env:NAME` reads it from the environment).
    #[serde(default)]
    pub secret: Option<String>,
    /// RS256/ES256: the PEM public key (SPKI), relative to this config file. ES256 takes P-256.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accepted `aud` values: when set, a token must name one of them.
    #[serde(default)]
    pub audience: Vec<String>,
    /// Accepted `iss` values: when set, a token must name one of them.
    #[serde(default)]
    pub issuer: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf` (and session expiry).
    #[serde(default = "default_auth_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Query parameter carrying the token (never forwarded to the origin or the plugin).
    #[serde(default = "default_auth_query")]
    pub query_param: String,
    /// Header carrying the token (`Bearer ` prefix optional); looked at before the query.
    #[serde(default = "default_auth_header")]
    pub header: String,
    /// Claims passed to the plugin's viewer context, as `jwt.<claim>` headers.
    #[serde(default)]
    pub claims: Vec<String>,
}

fn default_auth_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_auth_query() -> String {
    "token".into()
}
fn default_auth_header() -> String {
    "authorization".into()
}

fn yes() -> bool {
    true
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_manifest() -> ByteSize {
    ByteSize::mib(4)
}

/// What a tenant's live HLS playlists show while every origin is down.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum OnOutage {
    #[default]
    Stale,
    Slate,
}

/// Per-tenant overrides of how long things stay cached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantCachePolicy {
    /// Segment TTL when the origin sends no `max-age`/`s-maxage` (or when ignoring it).
    #[serde(default = "default_segment_ttl", with = "humantime_serde")]
    pub segment_ttl: Duration,
    /// Ignore origin `Cache-Control` (including `no-store`/`private`) and use the TTLs here.
    #[serde(default)]
    pub ignore_origin_cache_control: bool,
    /// Cache time of 404/410 answers, so a crowd asking for a missing object is coalesced too.
    #[serde(default = "default_negative_ttl", with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// How long an expired segment may still be served while the origin is failing.
    #[serde(default = "default_stale_if_error", with = "humantime_serde")]
    pub stale_if_error: Duration,
    /// Fixed TTL for live media playlists / dynamic MPDs instead of half a target duration.
    #[serde(default, with = "humantime_serde")]
    pub live_manifest_ttl: Option<Duration>,
    /// TTL of HLS master playlists.
    #[serde(default = "default_master_ttl", with = "humantime_serde")]
    pub master_ttl: Duration,
    /// TTL of VOD playlists and static MPDs.
    #[serde(default = "default_vod_ttl", with = "humantime_serde")]
    pub vod_manifest_ttl: Duration,
    /// Leave the query string out of segment cache keys (e.g. per-viewer CDN tokens).
    #[serde(default)]
    pub ignore_query: bool,
    /// Query parameters that vary per viewer but not the response (session or analytics
    /// ids): forwarded to the origin, left out of every cache key. `CMCD` always is.
    #[serde(default)]
    pub volatile_params: Vec<String>,
    /// While the origin fails, a live manifest is served from its last good copy for this
    /// long past its freshness (then 502/504); default: the manifest's own live window (what
    /// its segments span, or the MPD's time-shift buffer). Masters and VOD: `stale_if_error`.
    #[serde(default, with = "humantime_serde")]
    pub stale_live_window: Option<Duration>,
    /// Instead of a window: this many target durations (or MPD refresh periods).
    #[serde(default)]
    pub stale_manifest_targets: Option<u32>,
    /// Every origin down: `stale` serves live manifests' last good copies (for the stale
    /// window); `slate` goes on advancing live HLS playlists with the tenant's slate (its
    /// catalog's `slate = true` creative), for up to an hour, and returns to content with
    /// the right discontinuities when the origin is back.
    #[serde(default)]
    pub on_outage: OnOutage,
    /// CMAF fragments: `normalize` their timing on the way into the cache (the first sample
    /// presented at its decode time, so splices and periods meet without holes), `pass` them
    /// as the origin sent them, or `auto`: normalize for tenants that stitch ads.
    #[serde(default)]
    pub cmaf_timing: crate::cmaf_timing::CmafTiming,
    /// This tenant's share of `cache.manifest_memory`; tenants without one split what the
    /// others leave equally. A tenant's manifests never evict another tenant's.
    #[serde(default)]
    pub manifest_memory: Option<ByteSize>,
}

impl Default for TenantCachePolicy {
    fn default() -> Self {
        TenantCachePolicy {
            segment_ttl: default_segment_ttl(),
            ignore_origin_cache_control: false,
            negative_ttl: default_negative_ttl(),
            stale_if_error: default_stale_if_error(),
            live_manifest_ttl: None,
            master_ttl: default_master_ttl(),
            vod_manifest_ttl: default_vod_ttl(),
            ignore_query: false,
            volatile_params: Vec::new(),
            stale_live_window: None,
            stale_manifest_targets: None,
            on_outage: OnOutage::Stale,
            manifest_memory: None,
            cmaf_timing: Default::default(),
        }
    }
}

fn default_segment_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_negative_ttl() -> Duration {
    Duration::from_secs(1)
}
fn default_stale_if_error() -> Duration {
    Duration::from_secs(60)
}
fn default_master_ttl() -> Duration {
    Duration::from_secs(30)
}
fn default_vod_ttl() -> Duration {
    Duration::from_secs(300)
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
            .map_err(|(f, m)| ConfigError::new(path, f, m).on_line_of(text))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let s = &self.server;
        if s.listen.is_empty() {
            return Err(("server.listen".into(), "needs at least one address".into()));
        }
        for (i, l) in s.listen.iter().enumerate() {
            l.parse::<SocketAddr>().map_err(|e| {
                (
                    format!("server.listen[{i}]"),
                    format!("{l:?} is not an IP:port address: {e}"),
                )
            })?;
        }
        if s.threads == 0 || s.threads > 1024 {
            return Err(("server.threads".into(), "must be between 1 and 1024".into()));
        }
        self.limits.validate()?;
        self.cors.validate("cors")?;
        let c = &self.cache;
        if c.size.as_u64() < 1024 * 1024 {
            return Err(("cache.size".into(), "must be at least 1 MiB".into()));
        }
        if c.max_object_size.as_u64() == 0 || c.max_object_size > c.size {
            return Err((
                "cache.max_object_size".into(),
                "must be positive and no larger than cache.size".into(),
            ));
        }
        if c.lock_timeout.is_zero() {
            return Err(("cache.lock_timeout".into(), "must be positive".into()));
        }
        if c.manifest_entries == 0 {
            return Err(("cache.manifest_entries".into(), "must be positive".into()));
        }
        let shares: u64 = self
            .tenants
            .iter()
            .filter_map(|t| t.cache.manifest_memory.map(|b| b.as_u64()))
            .sum();
        let others = self
            .tenants
            .iter()
            .filter(|t| t.cache.manifest_memory.is_none())
            .count() as u64;
        if shares + (1 << 20) * others > c.manifest_memory.as_u64() {
            return Err((
                "cache.manifest_memory".into(),
                format!(
                    "{} does not hold the tenants' shares ({shares} bytes set, plus at least 1 MiB for each of the {others} others)",
                    c.manifest_memory
                ),
            ));
        }
        if self.tenants.is_empty() {
            return Err(("tenants".into(), "needs at least one tenant".into()));
        }
        let mut ids = HashSet::new();
        let mut hosts = HashSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            let f = |name: &str| format!("tenants[{i}].{name}");
            match t.resolved_admin_token() {
                Err(m) => return Err((f("admin_token"), m)),
                Ok(Some(tok)) if tok.len() < 16 => {
                    return Err((f("admin_token"), "must be at least 16 characters".into()))
                }
                _ => {}
            }
            let id_ok = !t.id.is_empty()
                && t.id.len() <= 64
                && t.id.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !id_ok {
                return Err((
                    f("id"),
                    format!("{:?} must be 1-64 chars of a-z 0-9 - _", t.id),
                ));
            }
            if !ids.insert(t.id.as_str()) {
                return Err((f("id"), format!("{:?} is used by another tenant", t.id)));
            }
            for (j, h) in t.hosts.iter().enumerate() {
                let h = h.to_ascii_lowercase();
                if h.is_empty() || h.contains('/') || h.contains(' ') {
                    return Err((
                        format!("tenants[{i}].hosts[{j}]"),
                        format!("{h:?} is not a host name"),
                    ));
                }
                if !hosts.insert(h.clone()) {
                    return Err((
                        format!("tenants[{i}].hosts[{j}]"),
                        format!("{h:?} is routed to another tenant already"),
                    ));
                }
            }
            if !t.path_prefix && t.hosts.is_empty() {
                return Err((
                    f("hosts"),
                    "tenant is unreachable: give it hosts or set path_prefix = true".into(),
                ));
            }
            OriginUrl::parse(&t.origin).map_err(|m| (f("origin"), m))?;
            for (j, o) in t.failover.iter().enumerate() {
                OriginUrl::parse(o).map_err(|m| (format!("tenants[{i}].failover[{j}]"), m))?;
            }
            if t.failover.len() > 8 {
                return Err((f("failover"), "at most 8 backup origins".into()));
            }
            t.health_check.validate(&f("health_check"))?;
            for (name, d) in [
                ("connect_timeout", t.connect_timeout),
                ("read_timeout", t.read_timeout),
            ] {
                if d.is_zero() {
                    return Err((f(name), "must be positive".into()));
                }
            }
            if t.max_manifest_size.as_u64() == 0 {
                return Err((f("max_manifest_size"), "must be positive".into()));
            }
            if let Some(c) = &t.cors {
                c.validate(&format!("tenants[{i}].cors"))?;
            }
            if let Some(p) = t.cache.volatile_params.iter().find(|p| {
                p.is_empty() || p.contains(['&', '=', '?', '#', ' ']) || p.starts_with("mf_")
            }) {
                return Err((
                    f("cache.volatile_params"),
                    format!("{p:?} is not a query parameter name (mf_* are the proxy's own)"),
                ));
            }
            if t.cache.live_manifest_ttl.is_some_and(|d| d.is_zero()) {
                return Err((f("cache.live_manifest_ttl"), "must be positive".into()));
            }
            if let Some(p) = &t.plugin {
                if let Some(file) = &p.file {
                    if file.trim().is_empty() {
                        return Err((
                            f("plugin.file"),
                            "must name a .wasm file or sha256:<hex>".into(),
                        ));
                    }
                    if let Some(hex) = file.strip_prefix("sha256:") {
                        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return Err((
                                f("plugin.file"),
                                format!("{file:?} is not sha256:<64 hex digits>"),
                            ));
                        }
                    }
                }
                if p.deadline.is_zero() || p.deadline > Duration::from_secs(10) {
                    return Err((f("plugin.deadline"), "must be between 1ms and 10s".into()));
                }
                if p.max_instances == Some(0) {
                    return Err((f("plugin.max_instances"), "must be at least 1".into()));
                }
                if p.memory.as_u64() < 1024 * 1024 || p.memory > self.plugins.max_memory {
                    return Err((
                        f("plugin.memory"),
                        format!(
                            "must be between 1 MiB and plugins.max_memory ({})",
                            self.plugins.max_memory
                        ),
                    ));
                }
                crate::plugin::capabilities::Capabilities::parse(&p.capabilities)
                    .map_err(|m| (f("plugin.capabilities"), m))?;
                if let Some(h) = p
                    .pass_headers
                    .iter()
                    .find(|h| h.to_ascii_lowercase().starts_with(CLAIM_PREFIX))
                {
                    return Err((
                        f("plugin.pass_headers"),
                        format!("{h:?}: jwt.* names are the viewer token's claims (auth.claims)"),
                    ));
                }
                if p.config.len() > 64 * 1024 {
                    return Err((f("plugin.config"), "is longer than 64 KiB".into()));
                }
            }
            let mut names = HashSet::new();
            for (j, c) in t.creatives.iter().enumerate() {
                let cf = |n: &str| format!("tenants[{i}].creatives[{j}].{n}");
                if c.name.is_empty() || !names.insert(c.name.as_str()) {
                    return Err((cf("name"), format!("{:?} is empty or used twice", c.name)));
                }
                if !(c.duration > 0.0 && c.duration <= 3600.0) {
                    return Err((cf("duration"), "must be between 0 and 3600 seconds".into()));
                }
                if c.hls.is_none() && c.hls_fmp4.is_none() {
                    return Err((cf("hls"), "a creative needs hls and/or hls_fmp4".into()));
                }
                for p in [&c.hls, &c.hls_fmp4].into_iter().flatten() {
                    if !p.starts_with('/') || p.split('/').any(|s| s == "..") {
                        return Err((
                            cf("hls"),
                            format!("{p:?} must be an absolute path on the origin"),
                        ));
                    }
                }
            }
            if t.cache.on_outage == OnOutage::Slate && !t.creatives.iter().any(|c| c.slate) {
                return Err((
                    f("cache.on_outage"),
                    "\"slate\" needs a creative with slate = true in the tenant's catalog".into(),
                ));
            }
            if t.creatives.iter().filter(|c| c.slate).count() > 1 {
                return Err((
                    f("creatives"),
                    "at most one creative can be the slate".into(),
                ));
            }
        }
        self.sessions
            .resolved_key()
            .map_err(|m| ("sessions.key".to_string(), m))?;
        let st = &self.sessions.store;
        if st != "memory" && !st.starts_with("redis://") && !st.starts_with("rediss://") {
            return Err((
                "sessions.store".into(),
                format!("{st:?} is not \"memory\" or a redis:// URL"),
            ));
        }
        for (i, t) in self.tenants.iter().enumerate() {
            if let Some(a) = &t.ad_server {
                if t.creatives.is_empty() {
                    return Err((
                        format!("tenants[{i}].creatives"),
                        "ad_server needs the tenant's creatives: VAST media files are mapped to them"
                            .into(),
                    ));
                }
                let url = a.url.replace(['[', ']'], "");
                if !(url.starts_with("http://") || url.starts_with("https://"))
                    || Url::parse(&url).is_err()
                {
                    return Err((
                        format!("tenants[{i}].ad_server.url"),
                        format!("{:?} is not an http(s) URL template", a.url),
                    ));
                }
                if a.budget > crate::plugin::capabilities::MAX_HOST_WAIT {
                    return Err((
                        format!("tenants[{i}].ad_server.budget"),
                        format!(
                            "at most {:?} (what a plugin call may wait on the host)",
                            crate::plugin::capabilities::MAX_HOST_WAIT
                        ),
                    ));
                }
                if a.timeout.is_zero() || a.budget < a.timeout {
                    return Err((
                        format!("tenants[{i}].ad_server.budget"),
                        "timeout must be positive and budget at least the timeout".into(),
                    ));
                }
            }
        }
        if self.plugins.max_instances == 0 || self.plugins.max_instances > 10_000 {
            return Err((
                "plugins.max_instances".into(),
                "must be between 1 and 10000".into(),
            ));
        }
        let explicit: u64 = self
            .tenants
            .iter()
            .filter_map(|t| t.plugin.as_ref()?.max_instances)
            .map(u64::from)
            .sum();
        let implicit = self
            .tenants
            .iter()
            .filter(|t| t.plugin.as_ref().and_then(|p| p.max_instances).is_none())
            .count() as u64;
        if explicit + implicit > u64::from(self.plugins.max_instances) {
            return Err((
                "tenants.plugin.max_instances".into(),
                format!(
                    "the tenants' shares of plugin instances ({explicit} set, plus at least 1 for each of the {implicit} others) add up to more than plugins.max_instances ({})",
                    self.plugins.max_instances
                ),
            ));
        }
        if let Some(a) = &self.admin {
            let addr: SocketAddr = a.listen.parse().map_err(|e| {
                (
                    "admin.listen".into(),
                    format!("{:?} is not an IP:port address: {e}", a.listen),
                )
            })?;
            let token = a
                .resolved_token()
                .map_err(|m| ("admin.token".to_string(), m))?;
            match token {
                None if !addr.ip().is_loopback() => {
                    return Err((
                        "admin.token".into(),
                        "required: the admin API listens beyond loopback".into(),
                    ))
                }
                Some(t) if t.len() < 16 => {
                    return Err((
                        "admin.token".into(),
                        "must be at least 16 characters".into(),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A validated origin base URL.
#[derive(Debug, Clone)]
pub struct OriginUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash (`""` for the root).
    pub base_path: String,
}

impl OriginUrl {
    pub fn parse(s: &str) -> Result<OriginUrl, String> {
        let url = Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(format!("scheme {other:?} is not http or https")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{s:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{s:?} must not have a query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{s:?} must not carry credentials"));
        }
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{s:?} has no port"))?;
        Ok(OriginUrl {
            tls,
            host,
            port,
            base_path: url.path().trim_end_matches('/').to_string(),
        })
    }

    /// `host:port` (IPv6 bracketed) for connecting and for the `Host` header.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    const MIN: &str = r#"
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
            e.to_string().starts_with("test.toml:4: tenants[0].origin: "),
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
