//! A lean HTTP/1.1 client for many simulated viewers on loopback.
//!
//! One keep-alive connection pool per `host:port`, capped (`--connections`): a request waits
//! for a free connection (that wait is measured apart from the latency), reuses an idle one or
//! opens a new one. Redirects are followed by hand (so a loop is its own error), bodies are
//! either collected (manifests, with a size cap) or only counted as they stream (segments), and
//! every failure has a kind for the report. Only loopback targets are accepted: IP literals in
//! 127.0.0.0/8 or `::1`, `localhost` and `*.localhost` (sent to 127.0.0.1 with that `Host`, so
//! host-routed tenants can be tested).

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, HOST, LOCATION, USER_AGENT};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

/// Redirects followed before a request counts as a redirect loop.
pub const MAX_REDIRECTS: u32 = 5;

/// Why a request failed; [`FetchError::kind`] is the key it is counted under.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    /// No free connection within the timeout: the load generator's limit, not the target's.
    #[error("no free connection within the timeout (raise --connections)")]
    PoolTimeout,
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("body: {0}")]
    Body(String),
    #[error("more than {MAX_REDIRECTS} redirects")]
    RedirectLoop,
    #[error("not a loopback target: {0}")]
    NotLoopback(String),
    #[error("request: {0}")]
    Request(String),
}

impl FetchError {
    /// Stable key for counting: `connect`, `timeout`, `pool_timeout`, `http_503`, `body`,
    /// `redirect_loop`, `not_loopback`, `request`.
    pub fn kind(&self) -> String {
        match self {
            FetchError::Connect(_) => "connect".into(),
            FetchError::Timeout => "timeout".into(),
            FetchError::PoolTimeout => "pool_timeout".into(),
            FetchError::Status(code) => format!("http_{code}"),
            FetchError::Body(_) => "body".into(),
            FetchError::RedirectLoop => "redirect_loop".into(),
            FetchError::NotLoopback(_) => "not_loopback".into(),
            FetchError::Request(_) => "request".into(),
        }
    }
}

/// What to do with a response body.
#[derive(Debug, Clone, Copy)]
pub enum BodyMode {
    /// Keep it (manifests), failing past this many bytes.
    Collect { limit: usize },
    /// Count its bytes as they stream and drop them (segments).
    Count,
}

/// A successful (2xx) response.
#[derive(Debug)]
pub struct Fetched {
    /// The URL that answered, after redirects: the base for relative URIs in the body.
    pub url: Url,
    pub status: u16,
    /// The body in [`BodyMode::Collect`], empty otherwise.
    pub body: Bytes,
    /// Body bytes received.
    pub bytes: u64,
    /// From sending the first request to the end of the last body, less time spent waiting
    /// for a free connection.
    pub latency: Duration,
    /// Time spent waiting for a free connection (non-zero only when `--connections` binds).
    pub wait: Duration,
    pub redirects: u32,
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Connections per `host:port` (in use and idle together).
    pub max_connections: usize,
    /// Whole request, redirects and body included (time waiting for a free connection is
    /// bounded apart, by the same figure).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            max_connections: 1024,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            user_agent: concat!("manifold-loadtest/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// A loopback target: where to connect and what `Host` to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `host[:port]` as written in the URL.
    pub authority: String,
}

/// Checks that `url` is plain HTTP to a loopback address and says where to connect.
pub fn loopback_endpoint(url: &Url) -> Result<Endpoint, FetchError> {
    if url.scheme() != "http" {
        return Err(FetchError::NotLoopback(format!(
            "{url}: only http:// is supported"
        )));
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| FetchError::NotLoopback(format!("{url}: no port")))?;
    let ip: IpAddr = match url.host() {
        Some(url::Host::Ipv4(ip)) if ip.is_loopback() => ip.into(),
        Some(url::Host::Ipv6(ip)) if ip.is_loopback() => ip.into(),
        Some(url::Host::Domain(d))
            if d.eq_ignore_ascii_case("localhost")
                || d.to_ascii_lowercase().ends_with(".localhost") =>
        {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        _ => {
            return Err(FetchError::NotLoopback(format!(
                "{url}: the load test only sends traffic to loopback (127.0.0.0/8, ::1, localhost)"
            )))
        }
    };
    let host = url.host_str().unwrap_or_default();
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    Ok(Endpoint {
        addr: SocketAddr::new(ip, port),
        authority,
    })
}

/// Shared by all viewers; cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    opts: ClientOptions,
    user_agent: HeaderValue,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    connects: AtomicU64,
}

struct Pool {
    endpoint: Endpoint,
    host: HeaderValue,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<SendRequest<Empty<Bytes>>>>,
}

/// A connection checked out of a pool with its permit; dropped (closed) unless released.
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    reused: bool,
    _permit: OwnedSemaphorePermit,
}

impl Client {
    pub fn new(opts: ClientOptions) -> Client {
        let user_agent = HeaderValue::from_str(&opts.user_agent)
            .unwrap_or_else(|_| HeaderValue::from_static("manifold-loadtest"));
        Client {
            inner: Arc::new(Inner {
                opts,
                user_agent,
                pools: Mutex::new(HashMap::new()),
                connects: AtomicU64::new(0),
            }),
        }
    }

    /// TCP connections opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.inner.connects.load(Ordering::Relaxed)
    }

    fn pool(&self, url: &Url) -> Result<Arc<Pool>, FetchError> {
        let endpoint = loopback_endpoint(url)?;
        let mut pools = self.inner.pools.lock();
        if let Some(p) = pools.get(&endpoint.authority) {
            return Ok(p.clone());
        }
        let host = HeaderValue::from_str(&endpoint.authority)
            .map_err(|e| FetchError::Request(format!("bad host {}: {e}", endpoint.authority)))?;
        let pool = Arc::new(Pool {
            host,
            permits: Arc::new(Semaphore::new(self.inner.opts.max_connections.max(1))),
            idle: Mutex::new(Vec::new()),
            endpoint: endpoint.clone(),
        });
        pools.insert(endpoint.authority, pool.clone());
        Ok(pool)
    }

    /// GET `url`, following redirects, within the client's timeout (not counting waits for
    /// a free connection).
    pub async fn get(&self, url: &Url, mode: BodyMode) -> Result<Fetched, FetchError> {
        let start = Instant::now();
        let mut deadline = tokio::time::Instant::now() + self.inner.opts.timeout;
        let mut wait = Duration::ZERO;
        let mut url = url.clone();
        let mut redirects = 0;
        loop {
            let pool = self.pool(&url)?;
            let path = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            };
            let (resp, conn) = {
                let mut attempt = 0;
                loop {
                    let (mut conn, waited) = self.acquire(&pool, deadline).await?;
                    wait += waited;
                    deadline += waited;
                    let req = http::Request::get(path.as_str())
                        .header(HOST, pool.host.clone())
                        .header(USER_AGENT, self.inner.user_agent.clone())
                        .body(Empty::<Bytes>::new())
                        .map_err(|e| FetchError::Request(format!("{url}: {e}")))?;
                    let sent = tokio::time::timeout_at(deadline, conn.sender.send_request(req))
                        .await
                        .map_err(|_| FetchError::Timeout)?;
                    match sent {
                        Ok(resp) => break (resp, conn),
                        // a kept-alive connection the server closed meanwhile: once more, fresh
                        Err(_) if conn.reused && attempt == 0 => attempt += 1,
                        Err(e) => return Err(FetchError::Request(e.to_string())),
                    }
                }
            };
            let status = resp.status().as_u16();
            if resp.status().is_redirection() {
                let location = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                drain(resp.into_body(), BodyMode::Count, deadline).await?;
                release(&pool, conn);
                let Some(location) = location else {
                    return Err(FetchError::Status(status));
                };
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(FetchError::RedirectLoop);
                }
                url = url
                    .join(&location)
                    .map_err(|e| FetchError::Request(format!("bad Location {location:?}: {e}")))?;
                continue;
            }
            if !resp.status().is_success() {
                // read (a bounded amount of) the error body so the connection can be reused
                let ok = drain(
                    resp.into_body(),
                    BodyMode::Collect { limit: 64 * 1024 },
                    deadline,
                )
                .await
                .is_ok();
                if ok {
                    release(&pool, conn);
                }
                return Err(FetchError::Status(status));
            }
            let (body, bytes) = drain(resp.into_body(), mode, deadline).await?;
            release(&pool, conn);
            let total = start.elapsed();
            return Ok(Fetched {
                url,
                status,
                body,
                bytes,
                latency: total.saturating_sub(wait),
                wait,
                redirects,
            });
        }
    }

    /// A connection, and how long the wait for a free slot took (at most the timeout); a new
    /// connection must be made by `deadline` (and within the connect timeout).
    async fn acquire(
        &self,
        pool: &Pool,
        deadline: tokio::time::Instant,
    ) -> Result<(Conn, Duration), FetchError> {
        let (permit, waited) = match pool.permits.clone().try_acquire_owned() {
            Ok(p) => (p, Duration::ZERO),
            Err(_) => {
                let t = Instant::now();
                let p = tokio::time::timeout(
                    self.inner.opts.timeout,
                    pool.permits.clone().acquire_owned(),
                )
                .await
                .map_err(|_| FetchError::PoolTimeout)?
                .map_err(|_| FetchError::Request("pool closed".into()))?;
                (p, t.elapsed())
            }
        };
        loop {
            let idle = pool.idle.lock().pop();
            let Some(mut sender) = idle else { break };
            if sender.is_closed() {
                continue;
            }
            if let Ok(Ok(())) = tokio::time::timeout_at(deadline + waited, sender.ready()).await {
                return Ok((
                    Conn {
                        sender,
                        reused: true,
                        _permit: permit,
                    },
                    waited,
                ));
            }
        }
        let connect = async {
            let stream = tokio::net::TcpStream::connect(pool.endpoint.addr)
                .await
                .map_err(|e| FetchError::Connect(format!("{}: {e}", pool.endpoint.addr)))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| FetchError::Connect(format!("{}: {e}", pool.endpoint.addr)))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok::<_, FetchError>(sender)
        };
        let connect_by =
            (tokio::time::Instant::now() + self.inner.opts.connect_timeout).min(deadline + waited);
        let sender = tokio::time::timeout_at(connect_by, connect)
            .await
            .map_err(|_| {
                FetchError::Connect(format!("{}: connect timed out", pool.endpoint.addr))
            })??;
        self.inner.connects.fetch_add(1, Ordering::Relaxed);
        Ok((
            Conn {
                sender,
                reused: false,
                _permit: permit,
            },
            waited,
        ))
    }
}

/// Back to the idle list (its permit is released as `conn` drops).
fn release(pool: &Pool, conn: Conn) {
    if !conn.sender.is_closed() {
        pool.idle.lock().push(conn.sender);
    }
}

async fn drain(
    mut body: hyper::body::Incoming,
    mode: BodyMode,
    deadline: tokio::time::Instant,
) -> Result<(Bytes, u64), FetchError> {
    let mut bytes = 0u64;
    let mut buf = BytesMut::new();
    while let Some(frame) = tokio::time::timeout_at(deadline, body.frame())
        .await
        .map_err(|_| FetchError::Timeout)?
    {
        let frame = frame.map_err(|e| FetchError::Body(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            bytes += data.len() as u64;
            if let BodyMode::Collect { limit } = mode {
                if buf.len() + data.len() > limit {
                    return Err(FetchError::Body(format!("larger than {limit} bytes")));
                }
                buf.extend_from_slice(&data);
            }
        }
    }
    Ok((buf.freeze(), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        let ok = |s: &str| loopback_endpoint(&Url::parse(s).unwrap());
        assert_eq!(
            ok("http://127.0.0.1:8080/t/live/hls/master.m3u8")
                .unwrap()
                .addr,
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            ok("http://127.1.2.3/x").unwrap().addr,
            "127.1.2.3:80".parse().unwrap()
        );
        assert!(ok("http://[::1]:9000/x").is_ok());
        let d = ok("http://demo.localhost:8080/live/hls/master.m3u8").unwrap();
        assert_eq!(d.authority, "demo.localhost:8080");
        assert_eq!(d.addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        for bad in [
            "http://10.0.0.1/x",
            "http://192.168.1.1:8080/x",
            "http://example.com/x",
            "https://127.0.0.1/x",
            "http://0.0.0.0:8080/x",
        ] {
            let e = ok(bad).unwrap_err();
            assert_eq!(e.kind(), "not_loopback", "{bad}");
        }
    }

    #[test]
    fn error_kinds_are_stable() {
        assert_eq!(FetchError::Status(503).kind(), "http_503");
        assert_eq!(FetchError::Timeout.kind(), "timeout");
        assert_eq!(FetchError::RedirectLoop.kind(), "redirect_loop");
        assert_eq!(FetchError::Connect("x".into()).kind(), "connect");
    }
}
