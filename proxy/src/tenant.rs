//! One tenant, whole: its origins and how their manifests are fetched and cached, edge auth,
//! CORS, egress, its ad catalog, stitching policies and session limits. Built together from
//! its config section on every reload and swapped with the tenancy; a [`crate::route::Route`]
//! carries it, so the data path never looks a tenant's parts up by name.

use crate::catalog::AdCatalog;
use crate::config::{Config, ConfigError, OriginUrl, TenantCachePolicy};
use crate::policy::Policies;
use crate::session_limit::{Rate, SessionLimits};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A tenant ready to serve: origin resolved, limits in native units.
pub struct Tenant {
    pub id: String,
    /// The primary origin (request paths are built under its base path).
    pub origin: OriginUrl,
    /// The origins in priority order, their addresses and health.
    pub origins: Arc<crate::origins::Origins>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_manifest_size: usize,
    pub cache: TenantCachePolicy,
    /// Edge auth: the viewer-token verifier when the tenant requires one.
    pub auth: Option<Arc<crate::auth::TenantAuth>>,
    /// Prefix of this tenant's manifest cache keys: its id and a fingerprint of how its
    /// manifests are fetched and cached, so a reload that changes those misses the old entries.
    pub manifest_key: String,
    /// Ad-decision and beacon clients: public destinations plus this tenant's ad server.
    pub egress: Arc<crate::egress::Egress>,
    /// The tenant's CORS policy (its own `[tenants.cors]` or the top-level `[cors]`).
    pub cors: Arc<crate::cors::CorsPolicy>,
    /// What of a viewer's request reaches the origin.
    pub forward: crate::config::ForwardConfig,
    /// CMAF fragments are normalized on their way into the cache ([`crate::cmaf_timing`]).
    pub normalize_cmaf: bool,
    /// Live HLS playlists go on with slate while every origin is down ([`crate::outage`]).
    pub slate_outage: bool,
    /// Its creatives (none: it stitches no ads of its own).
    pub catalog: Option<Arc<AdCatalog>>,
    /// How its breaks are stitched.
    pub policies: Policies,
    /// How its sessions get their ads (or who chooses).
    pub insertion: crate::config::InsertionConfig,
    /// How fast its viewers may start sessions.
    pub session_limits: Arc<SessionLimits>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("id", &self.id)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Tenant {
    /// Tenant `i` of `config`, its origin hosts resolved (a failure names the tenant's field).
    pub fn new(config: &Config, i: usize, file: &Path) -> Result<Tenant, ConfigError> {
        let t = &config.tenants[i];
        let err = |message: String| ConfigError {
            file: file.to_path_buf(),
            line: None,
            field: format!("tenants[{i}].origin"),
            message,
        };
        let origin = OriginUrl::parse(&t.origin).map_err(err)?;
        let mut urls = vec![origin.clone()];
        for (j, f) in t.failover.iter().enumerate() {
            urls.push(OriginUrl::parse(f).map_err(|message| ConfigError {
                file: file.to_path_buf(),
                line: None,
                field: format!("tenants[{i}].failover[{j}]"),
                message,
            })?);
        }
        let origins = crate::origins::Origins::new(&t.id, urls, &t.health_check).map_err(err)?;
        Ok(Tenant {
            id: t.id.clone(),
            origin,
            origins: Arc::new(origins),
            connect_timeout: t.connect_timeout,
            read_timeout: t.read_timeout,
            max_manifest_size: t.max_manifest_size.as_u64().min(usize::MAX as u64) as usize,
            cache: t.cache.clone(),
            auth: match &t.auth {
                Some(a) => Some(Arc::new(
                    crate::auth::TenantAuth::new(a, file.parent().unwrap_or(Path::new(".")))
                        .map_err(|(f, message)| ConfigError {
                            file: file.to_path_buf(),
                            line: None,
                            field: format!("tenants[{i}].auth.{f}"),
                            message,
                        })?,
                )),
                None => None,
            },
            manifest_key: manifest_key(t),
            egress: match &t.ad_server {
                Some(a) => {
                    crate::egress::Egress::new(Some(&a.url), a.timeout).map_err(|message| {
                        ConfigError {
                            file: file.to_path_buf(),
                            line: None,
                            field: format!("tenants[{i}].ad_server.url"),
                            message,
                        }
                    })?
                }
                None => crate::egress::Egress::public_only(),
            },
            cors: Arc::new(crate::cors::CorsPolicy::new(
                t.cors.as_ref().unwrap_or(&config.cors),
            )),
            forward: t.forward.clone(),
            catalog: (!t.creatives.is_empty())
                .then(|| Arc::new(AdCatalog::new(&t.id, t.creatives.clone()))),
            policies: Policies {
                markers: t.ssai.markers,
                join: t.ssai.join_mid_break,
                overlong: t.ssai.overlong_ads,
                tracking: true,
                guided: t.ssai.guided.policy(),
            },
            insertion: t.ssai.insertion,
            session_limits: Arc::new(session_limits(&t.sessions)),
            slate_outage: t.cache.on_outage == crate::config::OnOutage::Slate,
            normalize_cmaf: match t.cache.cmaf_timing {
                crate::cmaf_timing::CmafTiming::Normalize => true,
                crate::cmaf_timing::CmafTiming::Pass => false,
                // tenants that stitch: their splices must meet without holes
                crate::cmaf_timing::CmafTiming::Auto => {
                    t.plugin.is_some() || !t.creatives.is_empty()
                }
            },
        })
    }

    #[cfg(test)]
    pub fn for_tests(id: &str) -> Tenant {
        Tenant {
            id: id.into(),
            origin: OriginUrl::parse("http://127.0.0.1:1").unwrap(),
            origins: Arc::new(
                crate::origins::Origins::new(
                    id,
                    vec![OriginUrl::parse("http://127.0.0.1:1").unwrap()],
                    &Default::default(),
                )
                .unwrap(),
            ),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            max_manifest_size: 1 << 20,
            cache: TenantCachePolicy::default(),
            auth: None,
            manifest_key: id.into(),
            egress: crate::egress::Egress::public_only(),
            cors: Arc::new(crate::cors::CorsPolicy::new(&Default::default())),
            forward: Default::default(),
            normalize_cmaf: false,
            slate_outage: false,
            catalog: None,
            policies: Policies::default(),
            insertion: Default::default(),
            session_limits: Arc::new(session_limits(&Default::default())),
        }
    }

    /// The origin URL for an origin path (`/base/x.m3u8?q`), at the primary origin.
    pub fn origin_url(&self, origin_path: &str) -> String {
        let scheme = if self.origin.tls { "https" } else { "http" };
        format!("{scheme}://{}{origin_path}", self.origin.authority())
    }

    /// An origin path (built under the primary's base path) without that base path: what
    /// goes under any origin's own base path.
    pub fn below_base<'a>(&self, origin_path: &'a str) -> &'a str {
        origin_path
            .strip_prefix(self.origin.base_path.as_str())
            .unwrap_or(origin_path)
    }
}

/// `{id}|{fingerprint}`: the fingerprint hashes what shapes a cached origin manifest.
fn manifest_key(t: &crate::config::TenantConfig) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!(
        "{:?}",
        (
            &t.origin,
            &t.failover,
            &t.cache,
            t.max_manifest_size,
            t.read_timeout
        )
    )
    .hash(&mut h);
    format!("{}|{:016x}", t.id, h.finish())
}

/// A tenant's session-start rates, per client and in all.
fn session_limits(s: &crate::config::TenantSessionsConfig) -> SessionLimits {
    SessionLimits::new(
        Rate {
            per_minute: s.per_client_per_minute,
            burst: s.client_burst,
        },
        Rate {
            per_minute: s.per_tenant_per_minute,
            burst: s.tenant_burst,
        },
    )
}
