//! How fast new sessions may start: per client address, and per tenant. A session costs a
//! session-store entry and can cost ad decisions and prefetches; a bot starting one on every
//! request would evict real viewers' sessions and flood the ad server. Token buckets: a
//! client (or the tenant) may start `burst` sessions at once, then `per_minute`.

use parking_lot::Mutex;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sessions per minute and the burst allowed above it (0 per minute: no limit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate) -> Bucket {
        Bucket {
            tokens: rate.burst.max(1) as f64,
            at: Instant::now(),
        }
    }

    /// Takes a token; else how long until one is there.
    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        let per_sec = rate.per_minute as f64 / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(rate.burst.max(1) as f64);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - self.tokens) / per_sec).min(3600.0),
            ))
        }
    }
}

/// Why a session was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This client address started too many.
    Client(Duration),
    /// The tenant's whole budget is spent.
    Tenant(Duration),
}

impl Refused {
    pub fn retry_after(self) -> Duration {
        match self {
            Refused::Client(d) | Refused::Tenant(d) => d,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Client(_) => "client",
            Refused::Tenant(_) => "tenant",
        }
    }
}

/// One tenant's session start limits.
pub struct SessionLimits {
    client: Rate,
    tenant: Rate,
    tenant_bucket: Mutex<Bucket>,
    /// Buckets of the addresses seen lately (bounded: an address unseen for ten minutes has
    /// a full bucket again anyway).
    clients: moka::sync::Cache<IpAddr, Arc<Mutex<Bucket>>>,
}

impl SessionLimits {
    pub fn new(client: Rate, tenant: Rate) -> SessionLimits {
        SessionLimits {
            client,
            tenant,
            tenant_bucket: Mutex::new(Bucket::full(tenant)),
            clients: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        }
    }

    /// Whether `client` may start a session now (taking a token if so).
    pub fn admit(&self, client: Option<IpAddr>) -> Result<(), Refused> {
        let now = Instant::now();
        if let (Some(ip), true) = (client, self.client.per_minute > 0) {
            let rate = self.client;
            let bucket = self
                .clients
                .get_with(ip, || Arc::new(Mutex::new(Bucket::full(rate))));
            bucket.lock().take(rate, now).map_err(Refused::Client)?;
        }
        if self.tenant.per_minute > 0 {
            self.tenant_bucket
                .lock()
                .take(self.tenant, now)
                .map_err(Refused::Tenant)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_its_rate_and_others_are_not_affected() {
        let l = SessionLimits::new(
            Rate {
                per_minute: 60,
                burst: 5,
            },
            Rate {
                per_minute: 0,
                burst: 0,
            },
        );
        let bot: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            l.admit(Some(bot)).unwrap();
        }
        let r = l.admit(Some(bot)).unwrap_err();
        assert!(
            matches!(r, Refused::Client(d) if d <= Duration::from_secs(1)),
            "{r:?}"
        );
        // another viewer starts fine
        l.admit(Some("192.0.2.2".parse().unwrap())).unwrap();
        // a second later the bot has one more
        std::thread::sleep(Duration::from_millis(1050));
        l.admit(Some(bot)).unwrap();
        assert!(l.admit(Some(bot)).is_err());
    }

    #[test]
    fn the_tenant_budget_holds_across_clients() {
        let l = SessionLimits::new(
            Rate {
                per_minute: 0,
                burst: 0,
            },
            Rate {
                per_minute: 1,
                burst: 3,
            },
        );
        for i in 0..3 {
            l.admit(Some(IpAddr::from([10, 0, 0, i]))).unwrap();
        }
        let r = l.admit(Some("10.0.0.9".parse().unwrap())).unwrap_err();
        assert_eq!(r.as_str(), "tenant");
        assert!(r.retry_after() > Duration::from_secs(30));
    }
}
