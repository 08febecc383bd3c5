//! Step 2 (manifests): fetching a manifest from the tenant's origin, with the tenant's timeouts
//! and size limit, mapping every failure to the status a viewer gets (502 or 504).

use crate::origins::Origins;
use crate::route::Tenant;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// An origin answer (any status).
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("origin unreachable: {0}")]
    Unreachable(String),
    #[error("origin did not answer within {0:?}")]
    Timeout(Duration),
    #[error("origin manifest exceeds the {0}-byte limit")]
    TooLarge(usize),
    #[error("origin response broke off: {0}")]
    Body(String),
    #[error("origin request failed: {0}")]
    Other(String),
}

impl OriginError {
    /// The status a viewer gets for this failure.
    pub fn status(&self) -> u16 {
        match self {
            OriginError::Timeout(_) => 504,
            _ => 502,
        }
    }
}

/// One HTTP client (connection pool) per tenant, so tenants' origins do not share pools or
/// timeouts. Names resolve through the tenant's [`Origins`]: its healthy addresses first, as
/// its health checks and DNS refresh know them.
pub struct OriginClient {
    clients: HashMap<String, reqwest::Client>,
}

/// reqwest's resolver for a tenant: an origin's healthy addresses (then its others); names that
/// are none of its origins (there are none: redirects are not followed) go to the system.
struct OriginResolver {
    origins: Arc<Origins>,
}

impl reqwest::dns::Resolve for OriginResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let known: Vec<(SocketAddr, bool)> = self
            .origins
            .list
            .iter()
            .filter(|u| u.url.host.eq_ignore_ascii_case(name.as_str()))
            .flat_map(|u| u.addresses())
            .collect();
        let host = name.as_str().to_string();
        Box::pin(async move {
            if known.is_empty() {
                let found: Vec<SocketAddr> =
                    tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
                return Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs);
            }
            let mut addrs = known;
            addrs.sort_by_key(|(_, healthy)| !healthy);
            Ok(Box::new(addrs.into_iter().map(|(a, _)| a)) as reqwest::dns::Addrs)
        })
    }
}

impl OriginClient {
    pub fn new<'a>(tenants: impl Iterator<Item = &'a Tenant>) -> Result<Self, reqwest::Error> {
        let mut clients = HashMap::new();
        for t in tenants {
            if clients.contains_key(&t.id) {
                continue;
            }
            let client = reqwest::Client::builder()
                // the origin is reached directly, whatever HTTP(S)_PROXY says
                .no_proxy()
                .connect_timeout(t.connect_timeout)
                .timeout(t.read_timeout)
                // never follow an origin elsewhere: the tenant's origin is the only upstream
                .redirect(reqwest::redirect::Policy::none())
                .pool_idle_timeout(Duration::from_secs(60))
                .tcp_nodelay(true)
                .user_agent(concat!("manifold/", env!("CARGO_PKG_VERSION")))
                .dns_resolver(Arc::new(OriginResolver {
                    origins: t.origins.clone(),
                }))
                .build()?;
            clients.insert(t.id.clone(), client);
        }
        Ok(OriginClient { clients })
    }

    /// GETs `origin_path` from the tenant's origin, reading at most `max_manifest_size` bytes.
    pub async fn fetch(&self, tenant: &Tenant, origin_path: &str) -> Result<Fetched, OriginError> {
        let started = std::time::Instant::now();
        let result = self.fetch_inner(tenant, origin_path).await;
        let m = &crate::metrics::METRICS;
        let outcome = match &result {
            Ok(f) => crate::metrics::origin_outcome(f.status.as_u16()),
            Err(OriginError::Timeout(_)) => "timeout",
            Err(_) => "error",
        };
        let labels = [tenant.id.as_str(), "manifest"];
        m.origin_fetches
            .with_label_values(&[labels[0], labels[1], outcome])
            .inc();
        if result.is_ok() {
            m.origin_seconds
                .with_label_values(&labels)
                .observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// The first origin's answer that is not a failure; a failure (unreachable, timed out,
    /// broken off, 5xx) goes on to the next origin, and the last one's is the answer.
    async fn fetch_inner(
        &self,
        tenant: &Tenant,
        origin_path: &str,
    ) -> Result<Fetched, OriginError> {
        let client = self
            .clients
            .get(&tenant.id)
            .ok_or_else(|| OriginError::Other(format!("no client for tenant {}", tenant.id)))?;
        let rest = tenant.below_base(origin_path);
        let mut tried = Vec::new();
        let mut last = None;
        while let Some(pick) = tenant.origins.pick(&tried) {
            tried.push(pick.index);
            let url = tenant.origins.list[pick.index].url_for(rest);
            let result = self.fetch_url(client, tenant, &url).await;
            let failed = match &result {
                Ok(f) => f.status.is_server_error(),
                Err(OriginError::TooLarge(_)) => false,
                Err(_) => true,
            };
            if !failed || !tenant.origins.has_more(&tried) {
                return result;
            }
            let why = match &result {
                Ok(f) => format!("status {}", f.status),
                Err(e) => e.to_string(),
            };
            tenant.origins.failed(pick.index, &why);
            last = Some(result);
        }
        last.unwrap_or_else(|| Err(OriginError::Other("the tenant has no origin".into())))
    }

    async fn fetch_url(
        &self,
        client: &reqwest::Client,
        tenant: &Tenant,
        url: &str,
    ) -> Result<Fetched, OriginError> {
        let map = |e: reqwest::Error| classify(e, tenant.read_timeout);
        let mut resp = client.get(url).send().await.map_err(map)?;
        let limit = tenant.max_manifest_size;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(OriginError::TooLarge(limit));
        }
        let status = resp.status();
        let headers = std::mem::take(resp.headers_mut());
        let mut body = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(map)? {
            if body.len() + chunk.len() > limit {
                return Err(OriginError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status,
            headers,
            body: body.freeze(),
        })
    }
}

fn classify(e: reqwest::Error, timeout: Duration) -> OriginError {
    // the whole chain names the root cause (e.g. "Connection refused")
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_timeout() {
        OriginError::Timeout(timeout)
    } else if e.is_connect() {
        OriginError::Unreachable(msg)
    } else if e.is_body() || e.is_decode() {
        OriginError::Body(msg)
    } else {
        OriginError::Other(msg)
    }
}
