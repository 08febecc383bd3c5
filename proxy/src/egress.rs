//! Where the proxy may connect on behalf of an ad decision: VAST wrappers (`VASTAdTagURI`),
//! their redirects, and tracking beacons. Those URLs come from ad server answers, not from
//! the tenant's config, so they must not reach the proxy's own network: an address that is
//! not public (loopback, private, link-local — cloud metadata —, CGNAT, unique-local,
//! multicast, unspecified) is refused, whether it is written in the URL, reached by a redirect
//! or what a name resolves to. A tenant's configured ad server host is trusted (it may be an
//! internal service), and so are the hosts of every configured ad server, since beacons share
//! one client.
//!
//! Manifests and segments never go through here: they come from the tenant's origin only
//! (`route.rs`, `origin.rs`, `proxy.rs::upstream_peer`).

use once_cell::sync::Lazy;
use parking_lot::RwLock;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Hosts of configured ad servers (lowercase), trusted whatever they resolve to.
static TRUSTED: Lazy<RwLock<HashSet<String>>> = Lazy::new(Default::default);

/// Trusts the host of a configured ad server URL (template macros outside the host are fine).
pub fn trust_url_host(url: &str) {
    if let Some(host) = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
    {
        TRUSTED
            .write()
            .insert(host.trim_matches(['[', ']']).to_string());
    }
}

fn trusted(host: &str) -> bool {
    TRUSTED
        .read()
        .contains(host.trim_matches(['[', ']']).to_ascii_lowercase().as_str())
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

/// Checks a URL the proxy is about to fetch for an ad decision or a beacon: http(s), and a
/// host that is trusted, a public address, or a name (whose addresses [`PublicResolver`]
/// checks when connecting).
pub fn check_url(url: &url::Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} is not http or https", url.scheme()));
    }
    let host = match url.host() {
        Some(h) => h,
        None => return Err("no host".into()),
    };
    let host_str = url.host_str().unwrap_or_default();
    if trusted(host_str) {
        return Ok(());
    }
    let ip = match host {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(d) => {
            if d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
            {
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

/// A DNS resolver that drops non-public addresses of names that are not trusted.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublicResolver;

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let keep: Vec<SocketAddr> = if trusted(&host) {
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

/// Redirects followed (at most `max`) only to URLs [`check_url`] accepts.
pub fn redirect_policy(max: usize) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= max {
            return attempt.error(format!("more than {max} redirects"));
        }
        match check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(e) => {
                let e = format!("redirect to {} refused: {e}", attempt.url());
                attempt.error(e)
            }
        }
    })
}

/// A client builder for ad-decision and beacon fetches: public destinations only (plus
/// trusted ad server hosts), redirects checked.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(PublicResolver))
        .redirect(redirect_policy(3))
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
    fn urls_to_internal_hosts_are_refused_unless_trusted() {
        let u = |s: &str| url::Url::parse(s).unwrap();
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
            assert!(check_url(&u(bad)).is_err(), "{bad}");
        }
        assert_eq!(check_url(&u("https://ads.example/vast?x=1")), Ok(()));
        assert_eq!(check_url(&u("http://8.8.8.8/")), Ok(()));
        // a configured ad server on an internal address is trusted, with its host only
        trust_url_host("http://10.9.8.7:8080/vast?d=[DURATION]");
        assert_eq!(check_url(&u("http://10.9.8.7:9999/wrapper")), Ok(()));
        assert!(check_url(&u("http://10.9.8.6/")).is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_internal_addresses_are_refused() {
        let r = PublicResolver;
        let err = match r.resolve("localhost".parse::<Name>().unwrap()).await {
            Ok(_) => panic!("localhost resolved"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("no public address"), "{err}");
    }
}
