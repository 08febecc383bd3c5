//! Step 2 (both paths): which origin, and which address of it, a request goes to. A tenant
//! has its `origin` and optional `failover` origins, in priority order. Each origin's host is
//! re-resolved every `dns_refresh` and, when there is a choice, every address is
//! health-checked (pingora-load-balancing: DNS discovery, `HttpHealthCheck`, round robin over
//! the healthy addresses); a request goes to the first origin with a healthy address. A failure a request meets (refused, timed out,
//! 5xx) sends it on to the next origin at once and keeps the failed one out of rotation for
//! `hold`, so a primary failing mid-event costs viewers no error.
//!
//! All origins must serve the same streams (same packager output): live manifests fetched
//! from either must line up, which the priority order (not load spreading) keeps simple.

use crate::config::OriginUrl;
use crate::invalid::Invalid;
use async_trait::async_trait;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::health_check::{HealthObserve, HttpHealthCheck};
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use crate::config::health::HealthConfig;

impl HealthConfig {
    pub fn validate(&self, at: &str) -> Result<(), Invalid> {
        if !self.path.starts_with('/') || self.path.contains(['?', '#', ' ']) {
            return Err(Invalid::new(
                format!("{at}.path"),
                "must be an absolute path",
            ));
        }
        let between = |v: Duration, lo: u64, hi: u64| {
            v >= Duration::from_millis(lo) && v <= Duration::from_millis(hi)
        };
        if !between(self.interval, 100, 600_000) {
            return Err(Invalid::new(
                format!("{at}.interval"),
                "must be between 100ms and 10m",
            ));
        }
        if !between(self.timeout, 10, 60_000) || self.timeout > self.interval.max(self.timeout) {
            return Err(Invalid::new(
                format!("{at}.timeout"),
                "must be between 10ms and 60s",
            ));
        }
        if !between(self.dns_refresh, 1000, 86_400_000) {
            return Err(Invalid::new(
                format!("{at}.dns_refresh"),
                "must be between 1s and 24h",
            ));
        }
        for (name, v) in [
            ("unhealthy_after", self.unhealthy_after),
            ("healthy_after", self.healthy_after),
        ] {
            if !(1..=100).contains(&v) {
                return Err(Invalid::new(
                    format!("{at}.{name}"),
                    "must be between 1 and 100",
                ));
            }
        }
        Ok(())
    }
}

/// Resolves an origin's host: at start-up the addresses resolved while loading the config,
/// later `tokio::net::lookup_host`. A failed lookup keeps the last addresses.
struct Dns {
    host: String,
    port: u16,
    seed: parking_lot::Mutex<Option<BTreeSet<Backend>>>,
}

fn backend(addr: SocketAddr) -> Backend {
    Backend {
        addr: PingoraAddr::Inet(addr),
        weight: 1,
        ext: Default::default(),
    }
}

#[async_trait]
impl ServiceDiscovery for Dns {
    async fn discover(&self) -> pingora_error::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        if let Some(seed) = self.seed.lock().take() {
            return Ok((seed, HashMap::new()));
        }
        let found: BTreeSet<Backend> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| Error::because(ErrorType::ConnectNoRoute, "resolving origin", e))?
            .map(backend)
            .collect();
        if found.is_empty() {
            return Error::e_explain(ErrorType::ConnectNoRoute, "origin resolves to nothing");
        }
        Ok((found, HashMap::new()))
    }
}

/// Logs and counts health changes.
struct Observer {
    tenant: String,
    origin: String,
}

#[async_trait]
impl HealthObserve for Observer {
    async fn observe(&self, target: &Backend, healthy: bool) {
        let addr = target.addr.to_string();
        if healthy {
            tracing::info!(tenant = %self.tenant, origin = %self.origin, %addr, "origin address healthy again");
        } else {
            tracing::warn!(tenant = %self.tenant, origin = %self.origin, %addr, "origin address failed its health checks");
        }
        crate::metrics::METRICS
            .origin_health_changes
            .with_label_values(&[self.tenant.as_str(), if healthy { "up" } else { "down" }])
            .inc();
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One origin: its URL, its addresses and their health.
pub struct Upstream {
    pub url: OriginUrl,
    lb: LoadBalancer<RoundRobin>,
    /// A request saw it fail: out of rotation until then (unix ms).
    held_until: AtomicU64,
    next_dns: parking_lot::Mutex<Instant>,
    next_check: parking_lot::Mutex<Instant>,
}

impl Upstream {
    /// `host:port` for connecting and `Host`.
    pub fn authority(&self) -> String {
        self.url.authority()
    }

    /// The URL of `path` (under this origin's base path).
    pub fn url_for(&self, rest: &str) -> String {
        let scheme = if self.url.tls { "https" } else { "http" };
        format!(
            "{scheme}://{}{}{rest}",
            self.url.authority(),
            self.url.base_path
        )
    }

    fn held(&self) -> bool {
        unix_ms() < self.held_until.load(Ordering::Relaxed)
    }

    /// A healthy address, round robin.
    fn healthy_addr(&self) -> Option<SocketAddr> {
        self.lb
            .select(b"", 64)
            .and_then(|b| b.addr.as_inet().copied())
    }

    /// Any address, healthy or not.
    fn any_addr(&self) -> Option<SocketAddr> {
        self.lb
            .select_with(b"", 64, |_, _| true)
            .and_then(|b| b.addr.as_inet().copied())
    }

    /// Every address it resolves to now, with whether it is healthy.
    pub fn addresses(&self) -> Vec<(SocketAddr, bool)> {
        self.lb
            .backends()
            .get_backend()
            .iter()
            .filter_map(|b| {
                let a = b.addr.as_inet().copied()?;
                Some((a, self.lb.backends().ready(b)))
            })
            .collect()
    }
}

impl std::fmt::Debug for Origins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|u| u.authority()))
            .finish()
    }
}

/// A tenant's origins in priority order.
pub struct Origins {
    tenant: String,
    pub list: Vec<Upstream>,
    health: HealthConfig,
    /// How long an origin that failed a request stays out.
    hold: Duration,
}

/// Where a request goes: which origin (index) and address.
#[derive(Debug, Clone, Copy)]
pub struct Pick {
    pub index: usize,
    pub addr: SocketAddr,
}

impl Origins {
    /// Resolves every origin now (a host that does not resolve is a config error).
    pub fn new(
        tenant: &str,
        urls: Vec<OriginUrl>,
        health: &HealthConfig,
    ) -> Result<Origins, String> {
        let mut list = Vec::with_capacity(urls.len());
        for url in urls {
            let addrs: BTreeSet<Backend> = (url.host.as_str(), url.port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
                .map(backend)
                .collect();
            if addrs.is_empty() {
                return Err(format!("{} resolves to no address", url.host));
            }
            let dns = Dns {
                host: url.host.clone(),
                port: url.port,
                seed: parking_lot::Mutex::new(Some(addrs)),
            };
            let mut check = HttpHealthCheck::new(&url.host, url.tls);
            check.consecutive_failure = health.unhealthy_after;
            check.consecutive_success = health.healthy_after;
            check.peer_template.options.connection_timeout = Some(health.timeout);
            check.peer_template.options.total_connection_timeout = Some(health.timeout);
            check.peer_template.options.read_timeout = Some(health.timeout);
            let path = format!("{}{}", url.base_path, health.path);
            let mut req = RequestHeader::build("GET", path.as_bytes(), None)
                .map_err(|e| format!("health check path {path:?}: {e}"))?;
            req.insert_header("host", url.authority())
                .map_err(|e| e.to_string())?;
            req.insert_header(
                "user-agent",
                concat!("manifold/", env!("CARGO_PKG_VERSION"), " health-check"),
            )
            .map_err(|e| e.to_string())?;
            check.req = req;
            check.validator = Some(Box::new(|resp: &ResponseHeader| {
                if resp.status.is_server_error() {
                    return Error::e_explain(
                        ErrorType::CustomCode("origin answered", resp.status.as_u16()),
                        "health check",
                    );
                }
                Ok(())
            }));
            check.health_changed_callback = Some(Box::new(Observer {
                tenant: tenant.to_string(),
                origin: url.authority(),
            }));
            let mut backends = Backends::new(Box::new(dns));
            backends.set_health_check(Box::new(check));
            let lb = LoadBalancer::<RoundRobin>::from_backends(backends);
            // the seed answers at once: the addresses are known before the first request
            futures_util::FutureExt::now_or_never(lb.update())
                .ok_or("resolving at start-up did not complete")?
                .map_err(|e| e.to_string())?;
            let now = Instant::now();
            list.push(Upstream {
                url,
                lb,
                held_until: AtomicU64::new(0),
                next_dns: parking_lot::Mutex::new(now + health.dns_refresh),
                next_check: parking_lot::Mutex::new(now),
            });
        }
        Ok(Origins {
            tenant: tenant.to_string(),
            list,
            hold: health.interval.max(Duration::from_secs(1)) * 2,
            health: health.clone(),
        })
    }

    /// The origin and address for the next attempt, skipping origins already `tried`: the
    /// first origin with a healthy address that no request saw fail recently; when none is,
    /// the first untried one anyway (trying beats answering 502 untried).
    pub fn pick(&self, tried: &[usize]) -> Option<Pick> {
        let untried = || (0..self.list.len()).filter(|i| !tried.contains(i));
        let healthy = untried().find_map(|i| {
            let u = &self.list[i];
            (!u.held())
                .then(|| u.healthy_addr())
                .flatten()
                .map(|addr| Pick { index: i, addr })
        });
        let pick = healthy.or_else(|| {
            untried().find_map(|i| self.list[i].any_addr().map(|addr| Pick { index: i, addr }))
        })?;
        if pick.index > 0 {
            crate::metrics::METRICS
                .origin_failovers
                .with_label_values(&[&self.tenant, &self.list[pick.index].authority()])
                .inc();
        }
        Some(pick)
    }

    /// Whether another origin is left after `tried`.
    pub fn has_more(&self, tried: &[usize]) -> bool {
        (0..self.list.len()).any(|i| !tried.contains(&i))
    }

    /// A request met a failure at origin `index`: out of rotation for a while.
    pub fn failed(&self, index: usize, why: &str) {
        if let Some(u) = self.list.get(index) {
            let until = unix_ms() + self.hold.as_millis() as u64;
            if !u.held() {
                tracing::warn!(tenant = %self.tenant, origin = %u.authority(), reason = why, hold = ?self.hold, "origin failed a request: trying the next one meanwhile");
            }
            u.held_until.store(until, Ordering::Relaxed);
        }
    }

    /// A pingora peer for a pick, with the tenant's timeouts.
    pub fn peer(&self, pick: Pick, connect: Duration, read: Duration) -> HttpPeer {
        let u = &self.list[pick.index];
        let mut peer = HttpPeer::new(pick.addr, u.url.tls, u.url.host.clone());
        peer.options.connection_timeout = Some(connect);
        peer.options.total_connection_timeout = Some(connect);
        peer.options.read_timeout = Some(read);
        peer.options.write_timeout = Some(read);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        peer
    }

    /// Whether health matters: with one origin at one address there is nothing to choose
    /// between (every request goes there anyway), so it is not probed.
    fn has_choice(&self) -> bool {
        self.list.len() > 1
            || self
                .list
                .iter()
                .any(|u| u.lb.backends().get_backend().len() > 1)
    }

    /// One round of upkeep: DNS refresh and health checks that are due.
    pub async fn maintain(&self) {
        let now = Instant::now();
        let probe = self.has_choice();
        let checks = self.list.iter().map(|u| async move {
            let dns_due = {
                let mut next = u.next_dns.lock();
                let due = now >= *next;
                if due {
                    *next = now + self.health.dns_refresh;
                }
                due
            };
            if dns_due {
                if let Err(e) = u.lb.update().await {
                    tracing::warn!(tenant = %self.tenant, origin = %u.authority(), error = %e, "origin DNS refresh failed: keeping the last addresses");
                }
            }
            let check_due = {
                let mut next = u.next_check.lock();
                let due = now >= *next;
                if due {
                    *next = now + self.health.interval;
                }
                due
            };
            if check_due && probe {
                u.lb.backends().run_health_check(true).await;
            }
        });
        futures_util::future::join_all(checks).await;
    }

    /// `(origin, address, healthy)` for every address of every origin (readiness, admin).
    pub fn status(&self) -> Vec<(String, SocketAddr, bool)> {
        self.list
            .iter()
            .flat_map(|u| {
                u.addresses()
                    .into_iter()
                    .map(move |(a, ok)| (u.authority(), a, ok))
            })
            .collect()
    }
}

/// Keeps every tenant's origins resolved and checked, for the config current at each round
/// (a reload's new origins are picked up at the next one).
pub struct UpkeepService {
    /// The origins of the config current at the moment of asking.
    pub origins: Box<dyn Fn() -> Vec<std::sync::Arc<Origins>> + Send + Sync>,
}

#[async_trait]
impl pingora_core::services::background::BackgroundService for UpkeepService {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        loop {
            let origins = (self.origins)();
            let rounds = origins.iter().map(|o| o.maintain());
            tokio::select! {
                _ = futures_util::future::join_all(rounds) => {}
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(urls: &[&str]) -> Origins {
        Origins::new(
            "t",
            urls.iter().map(|u| OriginUrl::parse(u).unwrap()).collect(),
            &HealthConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn priority_order_then_failover_past_failed_and_tried_origins() {
        let o = origins(&[
            "http://127.0.0.1:1/a",
            "http://127.0.0.1:2/b",
            "http://127.0.0.1:3",
        ]);
        assert_eq!(o.pick(&[]).unwrap().index, 0);
        assert_eq!(o.pick(&[0]).unwrap().index, 1);
        assert_eq!(o.pick(&[0, 1]).unwrap().index, 2);
        assert!(o.pick(&[0, 1, 2]).is_none());
        assert!(o.has_more(&[0, 1]) && !o.has_more(&[0, 1, 2]));
        // a request saw the primary fail: the next one goes to the backup
        o.failed(0, "test");
        assert_eq!(o.pick(&[]).unwrap().index, 1);
        o.failed(1, "test");
        o.failed(2, "test");
        // everything failed recently: try in order anyway
        assert_eq!(o.pick(&[]).unwrap().index, 0);
        assert_eq!(o.list[1].url_for("/x.ts"), "http://127.0.0.1:2/b/x.ts");
    }

    #[test]
    fn settings_are_checked() {
        let bad = |f: fn(&mut HealthConfig)| {
            let mut h = HealthConfig::default();
            f(&mut h);
            h.validate("tenants[0].health_check").unwrap_err().field
        };
        assert_eq!(bad(|h| h.path = "x".into()), "tenants[0].health_check.path");
        assert_eq!(
            bad(|h| h.interval = Duration::ZERO),
            "tenants[0].health_check.interval"
        );
        assert_eq!(
            bad(|h| h.unhealthy_after = 0),
            "tenants[0].health_check.unhealthy_after"
        );
        assert!(Origins::new(
            "t",
            vec![OriginUrl::parse("http://no-such-host.invalid").unwrap()],
            &HealthConfig::default()
        )
        .is_err());
    }

    #[tokio::test]
    async fn health_checks_take_a_dead_origin_out_and_bring_it_back() {
        // one live server, one refused port
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = live.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let _ = s
                            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                });
            }
        });
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let h = HealthConfig {
            unhealthy_after: 1,
            interval: Duration::from_millis(100),
            ..Default::default()
        };
        let o = Origins::new(
            "t",
            vec![
                OriginUrl::parse(&format!("http://{dead_addr}")).unwrap(),
                OriginUrl::parse(&format!("http://{live_addr}")).unwrap(),
            ],
            &h,
        )
        .unwrap();
        // before any check both count as healthy: the primary is picked
        assert_eq!(o.pick(&[]).unwrap().index, 0);
        o.maintain().await;
        assert_eq!(o.pick(&[]).unwrap().index, 1, "{:?}", o.status());
        assert_eq!(
            o.status(),
            vec![
                (dead_addr.to_string(), dead_addr, false),
                (live_addr.to_string(), live_addr, true)
            ]
        );
    }
}
