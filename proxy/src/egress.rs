//! Where the proxy may connect on behalf of an ad decision: VAST wrappers (`VASTAdTagURI`),
//! their redirects, and tracking beacons. Those URLs come from ad server answers, not from
//! the tenant's config, so they must not reach the proxy's own network: an address that is
//! not public (loopback, private, link-local — cloud metadata —, CGNAT, unique-local,
//! multicast, unspecified) is refused, whether it is written in the URL, reached by a redirect
//! or what a name resolves to.
//!
//! The one exception is the tenant's own configured ad server (it may be an internal
//! service): its host *and port*, for that tenant only. Each tenant has an [`Egress`] with two
//! clients, one that only reaches public addresses and one whose resolver also lets the ad
//! server's name resolve internally; a URL goes through the second only when it names exactly
//! the ad server's host and port. The `Egress` lives in the tenant's routing entry, so a
//! reload that removes or changes the ad server takes its trust away with it.
//!
//! Manifests and segments never go through here: they come from the tenant's origin only
//! (`route.rs`, `origin.rs`, `proxy.rs::upstream_peer`).

use once_cell::sync::Lazy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// A host (lowercase, no IPv6 brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dest {
    host: String,
    port: u16,
}

impl Dest {
    fn of(url: &url::Url) -> Option<Dest> {
        Some(Dest {
            host: normal_host(url.host_str()?),
            port: url.port_or_known_default()?,
        })
    }
}

fn normal_host(host: &str) -> String {
    host.trim_matches(['[', ']']).to_ascii_lowercase()
}

/// Connect timeout when no ad server sets one (beacons only).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One tenant's HTTP clients for ad decisions and beacons.
#[derive(Debug)]
pub struct Egress {
    public: reqwest::Client,
    /// The ad server's host and port, and the client that may reach it internally.
    trusted: Option<(Dest, reqwest::Client)>,
}

static PUBLIC_ONLY: Lazy<Arc<Egress>> = Lazy::new(|| {
    Arc::new(Egress {
        public: public_client(DEFAULT_CONNECT_TIMEOUT),
        trusted: None,
    })
});

impl Egress {
    /// For a tenant whose ad server is at `ad_server_url` (a URL template: macros outside the
    /// host and port are fine), or with none.
    pub fn new(
        ad_server_url: Option<&str>,
        connect_timeout: Duration,
    ) -> Result<Arc<Egress>, String> {
        let Some(template) = ad_server_url else {
            return Ok(PUBLIC_ONLY.clone());
        };
        let dest = url::Url::parse(template)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .as_ref()
            .and_then(Dest::of)
            .ok_or_else(|| format!("{template:?} is not an http(s) URL with a host"))?;
        let trusted = builder(Some(dest.host.clone()), dest.clone(), connect_timeout)
            .build()
            .map_err(|e| format!("cannot create the ad server's HTTP client: {e}"))?;
        Ok(Arc::new(Egress {
            public: public_client(connect_timeout),
            trusted: Some((dest, trusted)),
        }))
    }

    /// Only public destinations (tenants without an ad server, tests).
    pub fn public_only() -> Arc<Egress> {
        PUBLIC_ONLY.clone()
    }

    /// The client to fetch `url` with, or why it may not be fetched: http(s), and either the
    /// tenant's ad server (host and port) or a public destination.
    pub fn client_for(&self, url: &url::Url) -> Result<&reqwest::Client, String> {
        if let Some((dest, client)) = &self.trusted {
            if Dest::of(url).as_ref() == Some(dest) && matches!(url.scheme(), "http" | "https") {
                return Ok(client);
            }
        }
        check_public(url)?;
        Ok(&self.public)
    }
}

fn public_client(connect_timeout: Duration) -> reqwest::Client {
    let none = Dest {
        host: String::new(),
        port: 0,
    };
    builder(None, none, connect_timeout)
        .build()
        // the builder only fails on TLS back-end set-up, which the trusted client would hit too
        .unwrap_or_default()
}

fn builder(
    trusted_name: Option<String>,
    trusted: Dest,
    connect_timeout: Duration,
) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        // HTTP(S)_PROXY from the environment would send requests past the address filter
        .no_proxy()
        .dns_resolver(Arc::new(PublicResolver { trusted_name }))
        .redirect(redirect_policy(3, trusted))
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .user_agent(concat!("manifold/", env!("CARGO_PKG_VERSION")))
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 64:ff9b::/96 (maps to v4)
                || (s[0] == 0x2001 && s[1] == 0xdb8)) // documentation
        }
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240) // reserved
}

/// Checks a URL for the public client: http(s), and a host that is a public address or a
/// name (whose addresses [`PublicResolver`] checks when connecting).
pub fn check_public(url: &url::Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} is not http or https", url.scheme()));
    }
    let ip = match url.host() {
        None => return Err("no host".into()),
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(d)) => {
            let d = d.to_ascii_lowercase();
            if d == "localhost" || d.ends_with(".localhost") {
                return Err(format!("host {d:?} is not public"));
            }
            return Ok(());
        }
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(format!("address {ip} is not public"))
    }
}

/// A DNS resolver that drops non-public addresses, except for the trusted ad server's name.
#[derive(Debug, Default, Clone)]
pub struct PublicResolver {
    trusted_name: Option<String>,
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let trusted = self.trusted_name.as_deref() == Some(normal_host(&host).as_str());
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let keep: Vec<SocketAddr> = if trusted {
                all
            } else {
                all.into_iter().filter(|a| is_public(a.ip())).collect()
            };
            if keep.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: Addrs = Box::new(keep.into_iter());
            Ok(addrs)
        })
    }
}

/// Redirects followed (at most `max`) only to the trusted ad server (host and port) or to
/// public destinations. A redirect to the ad server's host on another port is refused: the
/// trusted client's resolver would let that name reach an internal address.
fn redirect_policy(max: usize, trusted: Dest) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= max {
            return attempt.error(format!("more than {max} redirects"));
        }
        let to = attempt.url();
        let verdict = match Dest::of(to) {
            Some(d) if d == trusted => Ok(()),
            Some(d) if d.host == trusted.host => Err("the ad server's host on another port".into()),
            _ => check_public(to),
        };
        match verdict {
            Ok(()) => attempt.follow(),
            Err(e) => {
                let e = format!("redirect to {to} refused: {e}");
                attempt.error(e)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn urls_to_internal_hosts_are_refused_unless_the_ad_servers() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let public = Egress::public_only();
        for bad in [
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:9090/admin",
            "http://[::1]/x",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://localhost/",
            "http://a.localhost/",
            "file:///etc/passwd",
            "gopher://ads.example/",
        ] {
            assert!(public.client_for(&u(bad)).is_err(), "{bad}");
        }
        assert!(public
            .client_for(&u("https://ads.example/vast?x=1"))
            .is_ok());
        assert!(public.client_for(&u("http://8.8.8.8/")).is_ok());
        // a configured ad server on an internal address is trusted: its host and port only,
        // and only in its own tenant's egress
        let e = Egress::new(
            Some("http://10.9.8.7:8080/vast?d=[DURATION]"),
            DEFAULT_CONNECT_TIMEOUT,
        )
        .unwrap();
        let trusted = &e.trusted.as_ref().unwrap().1;
        let to = |s: &str| e.client_for(&u(s)).map(|c| std::ptr::eq(c, trusted));
        assert_eq!(to("http://10.9.8.7:8080/wrapper"), Ok(true));
        assert!(to("http://10.9.8.7:9999/wrapper").is_err());
        assert!(to("http://10.9.8.6:8080/").is_err());
        assert!(to("ftp://10.9.8.7:8080/").is_err());
        assert_eq!(to("https://ads.example/x"), Ok(false));
        assert!(public
            .client_for(&u("http://10.9.8.7:8080/wrapper"))
            .is_err());
        // default ports count as written
        let e = Egress::new(Some("https://Ads.Internal/vast"), DEFAULT_CONNECT_TIMEOUT).unwrap();
        assert_eq!(e.trusted.as_ref().unwrap().0.port, 443);
        assert!(Egress::new(Some("not a url"), DEFAULT_CONNECT_TIMEOUT).is_err());
    }

    /// A loopback ad server is reached on its own port; another port of the same host is not,
    /// neither directly nor by a redirect from the ad server.
    #[tokio::test]
    async fn only_the_ad_servers_own_port_is_reached_internally() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let other_hits = Arc::new(AtomicUsize::new(0));
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other_addr = other.local_addr().unwrap();
        let counted = other_hits.clone();
        let app = axum::Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            async { "internal" }
        });
        tokio::spawn(async move { axum::serve(other, app).await });

        let ads = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ads_port = ads.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route("/vast", axum::routing::get(|| async { "<VAST/>" }))
            .route(
                "/away",
                axum::routing::get(move || async move {
                    axum::response::Redirect::temporary(&format!("http://{other_addr}/x"))
                }),
            )
            .route(
                "/again",
                axum::routing::get(|| async { axum::response::Redirect::temporary("/vast") }),
            );
        tokio::spawn(async move { axum::serve(ads, app).await });

        // by name, so the trusted client's resolver is exercised too
        let base = format!("http://localhost:{ads_port}");
        let e = Egress::new(Some(&format!("{base}/vast")), DEFAULT_CONNECT_TIMEOUT).unwrap();
        let get = |path: String| {
            let e = e.clone();
            async move {
                let url = url::Url::parse(&path).unwrap();
                let client = e.client_for(&url)?;
                let r = client.get(url).send().await.map_err(|e| e.to_string())?;
                r.text().await.map_err(|e| e.to_string())
            }
        };
        assert_eq!(get(format!("{base}/vast")).await.unwrap(), "<VAST/>");
        assert_eq!(get(format!("{base}/again")).await.unwrap(), "<VAST/>");
        let err = get(format!("{base}/away")).await.unwrap_err();
        assert!(err.contains("redirect"), "{err}");
        assert!(get(format!("http://{other_addr}/x")).await.is_err());
        assert!(get(format!("http://localhost:{}/x", other_addr.port()))
            .await
            .is_err());
        assert_eq!(other_hits.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn names_resolving_to_internal_addresses_are_refused() {
        let r = PublicResolver::default();
        let err = match r.resolve("localhost".parse::<Name>().unwrap()).await {
            Ok(_) => panic!("localhost resolved"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("no public address"), "{err}");
    }
}
