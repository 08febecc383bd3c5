//! `[tenants.health_check]`: how a tenant's origins are watched (by `crate::origins`).

use serde::Deserialize;
use std::time::Duration;

/// `[tenants.health_check]`: how a tenant's origins are watched.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Requested with GET under each origin's base path; any answer below 500 is healthy (a
    /// 404 still proves a working server), 5xx, timeouts and refused connections are not.
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failed checks that take an address out.
    #[serde(default = "default_unhealthy")]
    pub unhealthy_after: usize,
    /// Consecutive good checks that bring it back.
    #[serde(default = "default_healthy")]
    pub healthy_after: usize,
    /// How often origin host names are resolved again.
    #[serde(default = "default_dns", with = "humantime_serde")]
    pub dns_refresh: Duration,
}

fn default_path() -> String {
    "/".into()
}
fn default_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_unhealthy() -> usize {
    2
}
fn default_healthy() -> usize {
    1
}
fn default_dns() -> Duration {
    Duration::from_secs(30)
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            path: default_path(),
            interval: default_interval(),
            timeout: default_timeout(),
            unhealthy_after: default_unhealthy(),
            healthy_after: default_healthy(),
            dns_refresh: default_dns(),
        }
    }
}
