//! A tenant's sections (`[[tenants]]` and what is under it): origin and routing, cache
//! policy, plugin, edge auth, ad server, creatives.

use super::*;

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
    pub overlong_ads: crate::pods::Overlong,
    /// How sessions get their ads: `stitched`, `guided` (server-guided: HLS Interstitials,
    /// DASH alternative MPDs), or `player-select` (the viewer's `?insertion=` on the request
    /// that starts the session; stitched without it).
    #[serde(default)]
    pub insertion: InsertionConfig,
    /// How guided sessions announce their breaks.
    #[serde(default)]
    pub guided: GuidedConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InsertionConfig {
    #[default]
    Stitched,
    Guided,
    PlayerSelect,
}

/// `X-RESTRICT` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Restriction {
    Skip,
    Jump,
}

/// `X-SNAP` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Snap {
    Out,
    In,
}

/// `[tenants.ssai.guided]`: the interstitial attributes and DASH events of guided sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuidedConfig {
    /// `X-RESUME-OFFSET`: `auto` (live: after what played; VOD: after the break; inserted
    /// pods: where they were inserted), `break` or `zero`.
    #[serde(default)]
    pub resume: crate::policy::Resume,
    /// `X-RESTRICT`: `["skip", "jump"]`.
    #[serde(default)]
    pub restrict: Vec<Restriction>,
    /// `X-SNAP`: `["out", "in"]`. Default `["out"]`: breaks start on a segment boundary,
    /// and a player that maps the start date onto MPEG-TS timestamps a little off it
    /// (hls.js) would otherwise stop short of the break and wait.
    #[serde(default = "snap_out")]
    pub snap: Vec<Snap>,
    /// `X-PLAYOUT-LIMIT` on every pod (default; an early CUE-IN sets it anyway). Off, hls.js
    /// appends pods in place and stalls seconds at live breaks.
    #[serde(default = "yes")]
    pub playout_limit: bool,
    /// `CUE="ONCE"` (default): a pod plays once per viewer, even if the player's timeline
    /// moves it a little after it played (hls.js would otherwise play it again).
    #[serde(default = "yes")]
    pub once: bool,
    /// Stitch the ads too, for players that ignore interstitials.
    #[serde(default)]
    pub both_signals: bool,
    /// DASH: `insert` (live) or `replace` alternative-MPD events.
    #[serde(default)]
    pub dash: crate::policy::DashGuided,
    /// DASH: callback events carrying the beacons too.
    #[serde(default)]
    pub dash_callbacks: bool,
    /// Asset lists carry tracking URLs (SVTA2053-2), for players that report themselves.
    #[serde(default)]
    pub client_tracking: bool,
}

fn snap_out() -> Vec<Snap> {
    vec![Snap::Out]
}

impl Default for GuidedConfig {
    fn default() -> Self {
        GuidedConfig {
            resume: Default::default(),
            restrict: Vec::new(),
            snap: snap_out(),
            playout_limit: true,
            once: true,
            both_signals: false,
            dash: Default::default(),
            dash_callbacks: false,
            client_tracking: false,
        }
    }
}

impl GuidedConfig {
    pub fn policy(&self) -> crate::policy::Guided {
        crate::policy::Guided {
            resume: self.resume,
            restrict_skip: self.restrict.contains(&Restriction::Skip),
            restrict_jump: self.restrict.contains(&Restriction::Jump),
            snap_out: self.snap.contains(&Snap::Out),
            snap_in: self.snap.contains(&Snap::In),
            playout_limit: self.playout_limit,
            once: self.once,
            both: self.both_signals,
            dash: self.dash,
            callbacks: self.dash_callbacks,
            client_tracking: self.client_tracking,
        }
    }
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
