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
    pub config: String,
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
                };
                &default_cfg
            }
        };
        let caps = Capabilities::parse(&cfg.capabilities)?;
        Ok(PluginSettings {
            config: cfg.config.clone(),
            env: CallEnv {
                tenant: tenant.into(),
                caps,
                kv: caps
                    .kv
                    .then(|| Arc::new(KvStore::new(cfg.kv_size.as_u64() as usize))),
                ads,
                deadline: cfg.deadline,
                memory: cfg.memory.as_u64() as usize,
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

/// A tenant's plugin slot.
pub struct Slot {
    active: ArcSwapOption<Deployed>,
    history: Mutex<Vec<Arc<Deployed>>>,
    next_version: std::sync::atomic::AtomicU64,
    /// Digest of the config's plugin file when it was last deployed (a reload redeploys it
    /// only if it changed, so admin uploads and rollbacks survive reloads).
    config_digest: Mutex<Option<String>>,
    pub settings: PluginSettings,
}

impl Slot {
    /// The version requests should run now.
    pub fn active(&self) -> Option<Arc<Deployed>> {
        self.active.load_full()
    }
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
}

fn file_digest(wasm: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(wasm))
}

/// Versions kept per tenant for rollback.
const HISTORY: usize = 10;

impl Registry {
    pub fn new(engine: Arc<PluginEngine>, dir: &Path) -> Result<Registry, RegistryError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| RegistryError::Io(format!("creating {}: {e}", dir.display())))?;
        Ok(Registry {
            engine,
            dir: dir.to_path_buf(),
            slots: HashMap::new(),
        })
    }

    pub fn add_tenant(&mut self, tenant: &str, settings: PluginSettings) {
        self.slots.insert(
            tenant.to_string(),
            Slot {
                active: ArcSwapOption::empty(),
                history: Mutex::new(Vec::new()),
                next_version: std::sync::atomic::AtomicU64::new(1),
                config_digest: Mutex::new(None),
                settings,
            },
        );
    }

    /// Takes over a tenant's deployment state from the registry a reload replaces.
    pub fn adopt(&mut self, tenant: &str, old: &Registry) {
        let (Some(new), Some(prev)) = (self.slots.get(tenant), old.slots.get(tenant)) else {
            return;
        };
        new.active.store(prev.active.load_full());
        *new.history.lock() = prev.history.lock().clone();
        new.next_version.store(
            prev.next_version.load(std::sync::atomic::Ordering::Relaxed),
            std::sync::atomic::Ordering::Relaxed,
        );
        *new.config_digest.lock() = prev.config_digest.lock().clone();
    }

    /// Whether the config's plugin file is the one deployed from the config last time.
    pub fn config_file_unchanged(&self, tenant: &str, wasm: &[u8]) -> bool {
        let digest = file_digest(wasm);
        self.slots
            .get(tenant)
            .is_some_and(|s| s.config_digest.lock().as_deref() == Some(digest.as_str()))
    }

    /// Deploys the config's plugin file and remembers which file that was.
    pub fn deploy_config_file(
        &self,
        tenant: &str,
        wasm: &[u8],
        source: &str,
    ) -> Result<VersionInfo, RegistryError> {
        let v = self.deploy(tenant, wasm, source)?;
        if let Some(s) = self.slots.get(tenant) {
            *s.config_digest.lock() = Some(file_digest(wasm));
        }
        Ok(v)
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
    pub fn deploy(
        &self,
        tenant: &str,
        wasm: &[u8],
        source: &str,
    ) -> Result<VersionInfo, RegistryError> {
        let slot = self.slot_or_err(tenant)?;
        let plugin = self.engine.load(wasm)?;
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
        let mut history = slot.history.lock();
        let version = slot
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
        slot.active.store(Some(deployed.clone()));
        Ok(deployed.info())
    }

    /// Re-activates the version before the active one.
    pub fn rollback(&self, tenant: &str) -> Result<VersionInfo, RegistryError> {
        let slot = self.slot_or_err(tenant)?;
        let mut history = slot.history.lock();
        if history.len() < 2 {
            return Err(RegistryError::NoHistory);
        }
        history.pop();
        let previous = history.last().cloned().ok_or(RegistryError::NoHistory)?;
        slot.active.store(Some(previous.clone()));
        Ok(previous.info())
    }

    /// Stops running a plugin for the tenant (manifests pass through).
    pub fn deactivate(&self, tenant: &str) -> Result<(), RegistryError> {
        self.slot_or_err(tenant)?.active.store(None);
        Ok(())
    }

    pub fn list(&self) -> Vec<TenantPlugins> {
        let mut out: Vec<TenantPlugins> = self
            .slots
            .iter()
            .map(|(t, s)| TenantPlugins {
                tenant: t.clone(),
                active: s.active().map(|d| d.info()),
                history: s.history.lock().iter().map(|d| d.info()).collect(),
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
        reg.add_tenant("t", PluginSettings::new("t", None, None).unwrap());
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
}
