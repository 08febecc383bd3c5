//! `/readyz`: whether this process should get traffic (its tenants' plugins are active, each
//! tenant has an origin that accepts a connection). Its own module so that the config swap
//! (`reload`) builds it and the admin API (`admin`) asks it without the two importing each
//! other.

use crate::plugin::registry::Registry;
use std::sync::Arc;

/// What `/readyz` checks: every tenant's configured plugin is active, every tenant has an
/// origin address that accepts a TCP connection (any of its origins: a backup carries the
/// tenant while the primary is down). Probes are cached briefly so a tight probe loop does not
/// hammer origins.
pub struct Readiness {
    pub origins: Vec<(String, Arc<crate::origins::Origins>)>,
    pub plugins: Vec<String>,
    last: parking_lot::Mutex<Option<(std::time::Instant, bool, String)>>,
}

const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
const PROBE_CACHE: std::time::Duration = std::time::Duration::from_secs(2);

impl Readiness {
    pub fn new(origins: Vec<(String, Arc<crate::origins::Origins>)>, plugins: Vec<String>) -> Self {
        Readiness {
            origins,
            plugins,
            last: parking_lot::Mutex::new(None),
        }
    }

    pub async fn check(&self, registry: &Registry) -> (bool, String) {
        if let Some((at, ok, text)) = self.last.lock().clone() {
            if at.elapsed() < PROBE_CACHE {
                return (ok, text);
            }
        }
        let mut problems = Vec::new();
        for t in &self.plugins {
            if registry.slot(t).and_then(|s| s.active()).is_none() {
                problems.push(format!("tenant {t}: plugin not loaded"));
            }
        }
        let probes = self.origins.iter().map(|(t, origins)| async move {
            let addrs = origins.status();
            let tries = addrs.iter().map(|(name, addr, _)| async move {
                let r =
                    tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await;
                match r {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("origin {name} ({addr}) unreachable: {e}")),
                    Err(_) => Err(format!(
                        "origin {name} ({addr}) did not answer within {PROBE_TIMEOUT:?}"
                    )),
                }
            });
            let results = futures_util::future::join_all(tries).await;
            if results.iter().any(Result::is_ok) {
                return None;
            }
            let why: Vec<String> = results.into_iter().filter_map(Result::err).collect();
            Some(format!("tenant {t}: {}", why.join("; ")))
        });
        problems.extend(
            futures_util::future::join_all(probes)
                .await
                .into_iter()
                .flatten(),
        );
        let ok = problems.is_empty();
        let text = if ok {
            "ready\n".to_string()
        } else {
            problems.join("\n") + "\n"
        };
        *self.last.lock() = Some((std::time::Instant::now(), ok, text.clone()));
        (ok, text)
    }
}
