//! Which plugin each tenant runs, with its version history. Activation is an atomic pointer
//! swap: a request holds the version it started with until it finishes, so deploying or
//! rolling back never fails a request.

use super::bindings::{AdDecider, Capabilities};
use super::kv::KvStore;
use super::runtime::{CallEnv, LoadError, LoadedPlugin, PluginEngine};
use crate::config::{FailPolicy, TenantPluginConfig};
use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How a tenant's plugin is run (from its config; defaults for tenants without one).
#[derive(Clone)]
pub struct PluginSettings {
    pub config: Arc<str>,
    pub env: CallEnv,
    pub fail: FailPolicy,
    pub pass_headers: Vec<String>,
    pub country_header: Option<String>,
    /// Decisions of announced breaks are prefetched over this window (with an ad server).
    pub prefetch: Option<Duration>,
}

impl PluginSettings {
    pub fn new(
        tenant: &str,
        cfg: Option<&TenantPluginConfig>,
        ads: Option<Arc<dyn AdDecider>>,
        share: usize,
        cpu: usize,
    ) -> Result<PluginSettings, String> {
        let default_cfg;
        let cfg = match cfg {
            Some(c) => c,
            None => {
                default_cfg = TenantPluginConfig {
                    file: None,
                    config: String::new(),
                    deadline: Duration::from_millis(10),
                    memory: bytesize::ByteSize::mib(16),
                    fail: FailPolicy::Open,
                    capabilities: Vec::new(),
                    kv_size: bytesize::ByteSize::kib(64),
                    pass_headers: Vec::new(),
                    country_header: None,
                    max_instances: None,
                };
                &default_cfg
            }
        };
        let caps = Capabilities::parse(&cfg.capabilities)?;
        Ok(PluginSettings {
            config: cfg.config.as_str().into(),
            env: CallEnv {
                tenant: tenant.into(),
                caps,
                kv: caps
                    .kv
                    .then(|| Arc::new(KvStore::new(cfg.kv_size.as_u64() as usize))),
                ads,
                deadline: cfg.deadline,
                memory: cfg.memory.as_u64() as usize,
                share: Arc::new(tokio::sync::Semaphore::new(share.max(1))),
                cpu: Arc::new(tokio::sync::Semaphore::new(cpu.max(1))),
                demoted: Default::default(),
            },
            fail: cfg.fail,
            pass_headers: cfg
                .pass_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            country_header: cfg.country_header.as_ref().map(|h| h.to_ascii_lowercase()),
            prefetch: None,
        })
    }
}

/// One deployed version of a tenant's plugin.
pub struct Deployed {
    pub plugin: Arc<LoadedPlugin>,
    pub version: u64,
    pub source: String,
    pub activated: SystemTime,
}

#[derive(Debug, Serialize)]
pub struct VersionInfo {
    pub version: u64,
    pub digest: String,
    pub source: String,
    pub activated_unix: u64,
}

impl Deployed {
    fn info(&self) -> VersionInfo {
        VersionInfo {
            version: self.version,
            digest: self.plugin.digest.clone(),
            source: self.source.clone(),
            activated_unix: self
                .activated
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }
}

/// A tenant's deployments. Shared by the registries of successive configs: a deploy or a
/// rollback made while a reload is being built is what the new config serves.
pub struct Deployments {
    active: ArcSwapOption<Deployed>,
    history: Mutex<Vec<Arc<Deployed>>>,
    next_version: std::sync::atomic::AtomicU64,
    /// Digest of the config's plugin file when it was last deployed (a reload redeploys it
    /// only if it changed, so admin uploads and rollbacks survive reloads).
    config_digest: Mutex<Option<String>>,
}

impl Default for Deployments {
    fn default() -> Self {
        Deployments {
            active: ArcSwapOption::empty(),
            history: Mutex::new(Vec::new()),
            next_version: std::sync::atomic::AtomicU64::new(1),
            config_digest: Mutex::new(None),
        }
    }
}

/// A tenant's plugin slot.
pub struct Slot {
    deployments: Arc<Deployments>,
    pub settings: PluginSettings,
}

impl Slot {
    /// The version requests should run now.
    pub fn active(&self) -> Option<Arc<Deployed>> {
        self.deployments.active.load_full()
    }
}

/// A config file's plugin, compiled and trial-run while a config was built, activated when
/// that config is (so a refused config activates nothing).
struct Pending {
    tenant: String,
    plugin: Arc<LoadedPlugin>,
    file_digest: String,
    source: String,
}

#[derive(Debug, Serialize)]
pub struct TenantPlugins {
    pub tenant: String,
    pub active: Option<VersionInfo>,
    pub history: Vec<VersionInfo>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown tenant {0:?}")]
    UnknownTenant(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("no earlier version to roll back to")]
    NoHistory,
    #[error("{0}")]
    Io(String),
}

pub struct Registry {
    pub engine: Arc<PluginEngine>,
    dir: PathBuf,
    slots: HashMap<String, Slot>,
    pending: Mutex<Vec<Pending>>,
}

fn file_digest(wasm: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(wasm))
}

/// Versions kept per tenant for rollback.
const HISTORY: usize = 10;

impl Registry {
    pub fn new(engine: Arc<PluginEngine>, dir: &Path) -> Result<Registry, RegistryError> {
        crate::state_dir::ensure_private(dir).map_err(RegistryError::Io)?;
        Ok(Registry {
            engine,
            dir: dir.to_path_buf(),
            slots: HashMap::new(),
            pending: Mutex::new(Vec::new()),
        })
    }

    pub fn add_tenant(&mut self, tenant: &str, settings: PluginSettings) {
        self.slots.insert(
            tenant.to_string(),
            Slot {
                deployments: Arc::default(),
                settings,
            },
        );
    }

    /// Takes over a tenant's deployment state from the registry a reload replaces.
    /// The tenant keeps its deployments from the registry being replaced (shared, not copied).
    pub fn adopt(&mut self, tenant: &str, old: &Registry) {
        if let (Some(new), Some(prev)) = (self.slots.get_mut(tenant), old.slots.get(tenant)) {
            new.deployments = prev.deployments.clone();
        }
    }

    pub fn config_file_unchanged(&self, tenant: &str, wasm: &[u8]) -> bool {
        let digest = file_digest(wasm);
        self.slots
            .get(tenant)
            .is_some_and(|s| s.deployments.config_digest.lock().as_deref() == Some(digest.as_str()))
    }

    /// Compiles and trial-runs a config file's plugin; [`activate_pending`](Self::activate_pending)
    /// deploys it. Compiles wait for each other (a reload is not an upload to refuse).
    pub fn prepare_config_file(
        &self,
        tenant: &str,
        wasm: Vec<u8>,
        source: &str,
    ) -> Result<(), RegistryError> {
        let slot = self.slot_or_err(tenant)?;
        let plugin = self.engine.load_waiting(&wasm)?;
        self.engine.trial(&plugin, &slot.settings.env)?;
        self.store_upload(&plugin, &wasm)?;
        self.pending.lock().push(Pending {
            tenant: tenant.to_string(),
            plugin,
            file_digest: file_digest(&wasm),
            source: source.to_string(),
        });
        Ok(())
    }

    /// Deploys what [`prepare_config_file`](Self::prepare_config_file) compiled: the config
    /// these plugins came with is being activated.
    pub fn activate_pending(&self) {
        let pending = std::mem::take(&mut *self.pending.lock());
        for p in pending {
            let Some(slot) = self.slots.get(&p.tenant) else {
                continue;
            };
            let world = p.plugin.world();
            let v = self.activate(slot, p.plugin, &p.source);
            *slot.deployments.config_digest.lock() = Some(p.file_digest);
            tracing::info!(tenant = %p.tenant, digest = %v.digest, version = v.version, world, "plugin loaded");
        }
    }

    pub fn slot(&self, tenant: &str) -> Option<&Slot> {
        self.slots.get(tenant)
    }

    fn slot_or_err(&self, tenant: &str) -> Result<&Slot, RegistryError> {
        self.slots
            .get(tenant)
            .ok_or_else(|| RegistryError::UnknownTenant(tenant.to_string()))
    }

    /// The component bytes a config `file` names: a path (relative to `base`, the config
    /// file's directory), or `sha256:<hex>` of an upload in the plugin dir.
    pub fn read_source(&self, file: &str, base: &Path) -> Result<Vec<u8>, RegistryError> {
        let path = match file.strip_prefix("sha256:") {
            Some(hex) => self.dir.join(format!("{hex}.wasm")),
            None => base.join(file),
        };
        std::fs::read(&path)
            .map_err(|e| RegistryError::Io(format!("reading {}: {e}", path.display())))
    }

    /// Validates, stores (by digest) and activates a plugin for a tenant.
    /// Compiles (refused while another compile runs: the caller may retry), trial-runs and
    /// activates an upload.
    pub fn deploy(
        &self,
        tenant: &str,
        wasm: &[u8],
        source: &str,
    ) -> Result<VersionInfo, RegistryError> {
        let plugin = self.check(tenant, wasm)?;
        let slot = self.slot_or_err(tenant)?;
        self.store_upload(&plugin, wasm)?;
        Ok(self.activate(slot, plugin, source))
    }

    /// What [`deploy`](Self::deploy) checks, without deploying: it compiles, imports only
    /// what the tenant grants, and a trial call with the tenant's settings succeeds.
    pub fn check(&self, tenant: &str, wasm: &[u8]) -> Result<Arc<LoadedPlugin>, RegistryError> {
        let slot = self.slot_or_err(tenant)?;
        let plugin = self.engine.load(wasm)?;
        self.engine.trial(&plugin, &slot.settings.env)?;
        Ok(plugin)
    }

    /// Keeps the component by digest, so a config can name it as `sha256:<hex>`.
    fn store_upload(&self, plugin: &LoadedPlugin, wasm: &[u8]) -> Result<(), RegistryError> {
        let stored = self.dir.join(format!(
            "{}.wasm",
            plugin.digest.trim_start_matches("sha256:")
        ));
        if !stored.exists() {
            let tmp = stored.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, wasm)
                .and_then(|_| std::fs::rename(&tmp, &stored))
                .map_err(|e| RegistryError::Io(format!("storing {}: {e}", stored.display())))?;
        }
        Ok(())
    }

    fn activate(&self, slot: &Slot, plugin: Arc<LoadedPlugin>, source: &str) -> VersionInfo {
        let d = &slot.deployments;
        let mut history = d.history.lock();
        let version = d
            .next_version
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let deployed = Arc::new(Deployed {
            plugin,
            version,
            source: source.to_string(),
            activated: SystemTime::now(),
        });
        history.push(deployed.clone());
        if history.len() > HISTORY {
            history.remove(0);
        }
        d.active.store(Some(deployed.clone()));
        deployed.info()
    }

    pub fn rollback(&self, tenant: &str) -> Result<VersionInfo, RegistryError> {
        let slot = self.slot_or_err(tenant)?;
        let mut history = slot.deployments.history.lock();
        if history.len() < 2 {
            return Err(RegistryError::NoHistory);
        }
        let previous = history[history.len() - 2].clone();
        // deployed under other capabilities, perhaps: it must fit the ones granted now
        let missing = previous.plugin.ungranted(slot.settings.env.caps);
        if !missing.is_empty() {
            return Err(LoadError::Ungranted(missing.join(", ")).into());
        }
        history.pop();
        slot.deployments.active.store(Some(previous.clone()));
        Ok(previous.info())
    }

    /// Stops running a plugin for the tenant (manifests pass through).
    pub fn deactivate(&self, tenant: &str) -> Result<(), RegistryError> {
        self.slot_or_err(tenant)?.deployments.active.store(None);
        Ok(())
    }

    pub fn list(&self) -> Vec<TenantPlugins> {
        let mut out: Vec<TenantPlugins> = self
            .slots
            .iter()
            .map(|(t, s)| TenantPlugins {
                tenant: t.clone(),
                active: s.active().map(|d| d.info()),
                history: s
                    .deployments
                    .history
                    .lock()
                    .iter()
                    .map(|d| d.info())
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::runtime::tests::{engine, plugin_wasm};

    #[test]
    fn deploy_rollback_and_deactivate() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(engine(&dir.path().join("artifacts")));
        let mut reg = Registry::new(engine, &dir.path().join("plugins")).unwrap();
        reg.add_tenant("t", PluginSettings::new("t", None, None, 4, 2).unwrap());
        assert!(reg.slot("t").unwrap().active().is_none());
        let v1 = reg
            .deploy("t", &plugin_wasm("variant_filter"), "test")
            .unwrap();
        let v2 = reg.deploy("t", &plugin_wasm("misbehave"), "test").unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        assert_eq!(
            reg.slot("t").unwrap().active().unwrap().plugin.digest,
            v2.digest
        );
        // stored by digest, so config can name it as sha256:<hex>
        assert_eq!(
            reg.read_source(&v2.digest, Path::new("/")).unwrap(),
            plugin_wasm("misbehave")
        );
        let back = reg.rollback("t").unwrap();
        assert_eq!(back.digest, v1.digest);
        assert!(matches!(reg.rollback("t"), Err(RegistryError::NoHistory)));
        assert!(matches!(
            reg.deploy("nobody", b"", "x"),
            Err(RegistryError::UnknownTenant(_))
        ));
        assert!(matches!(
            reg.deploy("t", b"\0asm\x01\0\0\0", "x"),
            Err(RegistryError::Load(_))
        ));
        assert_eq!(
            reg.slot("t").unwrap().active().unwrap().plugin.digest,
            v1.digest,
            "a bad upload changes nothing"
        );
        reg.deactivate("t").unwrap();
        assert!(reg.slot("t").unwrap().active().is_none());
        assert_eq!(reg.list()[0].history.len(), 1);
    }

    #[test]
    fn a_rollback_made_while_a_reload_builds_is_what_the_new_config_serves() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(engine(&dir.path().join("artifacts")));
        let plugins = dir.path().join("plugins");
        let mut old = Registry::new(engine.clone(), &plugins).unwrap();
        old.add_tenant("t", PluginSettings::new("t", None, None, 4, 2).unwrap());
        let v1 = old
            .deploy("t", &plugin_wasm("variant_filter"), "a")
            .unwrap();
        old.deploy("t", &plugin_wasm("misbehave"), "b").unwrap();
        // a reload builds the next registry (and compiles a changed config file) ...
        let mut new = Registry::new(engine, &plugins).unwrap();
        new.add_tenant("t", PluginSettings::new("t", None, None, 4, 2).unwrap());
        new.adopt("t", &old);
        new.prepare_config_file("t", plugin_wasm("scte35_breaks"), "file")
            .unwrap();
        // ... while the admin API, still on the old one, rolls back
        let back = old.rollback("t").unwrap();
        assert_eq!(back.digest, v1.digest);
        assert_eq!(new.slot("t").unwrap().active().unwrap().version, 1);
        // the config's file becomes active only with its config, on top of the rollback
        new.activate_pending();
        let active = new.slot("t").unwrap().active().unwrap();
        assert_eq!(active.source, "file");
        assert_eq!(new.list()[0].history.len(), 2, "{:?}", new.list());
        assert!(new.config_file_unchanged("t", &plugin_wasm("scte35_breaks")));
    }

    #[test]
    fn a_plugin_that_cannot_start_under_the_tenants_memory_is_not_deployed() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(engine(&dir.path().join("artifacts")));
        let mut reg = Registry::new(engine, &dir.path().join("plugins")).unwrap();
        let mut settings = PluginSettings::new("t", None, None, 4, 2).unwrap();
        settings.env.memory = 64 << 10;
        reg.add_tenant("t", settings);
        let e = reg.deploy("t", &plugin_wasm("misbehave"), "x").unwrap_err();
        assert!(matches!(e, RegistryError::Load(LoadError::Trial(_))), "{e}");
        assert!(reg.slot("t").unwrap().active().is_none());
    }
}
