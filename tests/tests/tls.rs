//! HTTPS to viewers: HTTP/2 by ALPN beside HTTP/1.1, the certificate chosen by SNI, and
//! certificates swapped by SIGHUP without dropping the connections already open.

use manifold_e2e::{free_port, run_manifold, Origin, Proxy};
use reqwest::{Certificate, Client, Version};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn self_signed(dir: &Path, name: &str, file: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    let (code, _, err) = run_manifold(&[
        "tls",
        "self-signed",
        "--names",
        name,
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(code, 0, "{err}");
    (cert, key)
}

/// A client that trusts only `root` and reaches both test names at `addr`.
fn client(root: &Path, addr: SocketAddr, http1: bool) -> Client {
    let pem = std::fs::read(root).unwrap();
    let mut b = Client::builder()
        .tls_certs_only([Certificate::from_pem(&pem).unwrap()])
        .resolve("a.example", addr)
        .resolve("b.example", addr)
        .timeout(Duration::from_secs(10));
    if http1 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

async fn wait_listening(addr: SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {addr}");
}

#[tokio::test]
async fn https_serves_http2_and_http1_picks_certificates_by_sni_and_reloads_them() {
    let origin = Origin::start(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key) = self_signed(dir.path(), "a.example", "a");
    let (b_cert, b_key) = self_signed(dir.path(), "b.example", "b");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let proxy = Proxy::start(&format!(
        r#"
[tls]
listen = ["{addr}"]
[[tls.certificates]]
cert = "{}"
key = "{}"
[[tls.certificates]]
cert = "{}"
key = "{}"

[[tenants]]
id = "t"
origin = "http://{}"
"#,
        a_cert.display(),
        a_key.display(),
        b_cert.display(),
        b_key.display(),
        origin.addr
    ))
    .unwrap();
    wait_listening(addr).await;
    let url = |host: &str, path: &str| format!("https://{host}:{port}{path}");
    let master = "/t/live/hls/master.m3u8";

    // HTTP/2 by ALPN, and the name's own certificate: a client trusting only a.example's
    // certificate reaches a.example and not b.example, and the other way round
    let ca = client(&a_cert, addr, false);
    let cb = client(&b_cert, addr, false);
    let r = ca.get(url("a.example", master)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, Version::HTTP_2));
    assert!(r.text().await.unwrap().starts_with("#EXTM3U"));
    assert!(cb.get(url("a.example", master)).send().await.is_err());
    let r = cb.get(url("b.example", master)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, Version::HTTP_2));
    // many requests multiplexed on the one connection
    let segs: Vec<_> = (20..40)
        .map(|n| {
            let (c, u) = (
                ca.clone(),
                url("a.example", &format!("/t/live/hls/v0/{n}.ts")),
            );
            tokio::spawn(async move { c.get(u).send().await })
        })
        .collect();
    for s in segs {
        let r = s.await.unwrap().unwrap();
        assert_eq!((r.status().as_u16(), r.version()), (200, Version::HTTP_2));
    }
    // HTTP/1.1 for clients that do not offer h2; a name no certificate has gets the first
    let h1 = client(&a_cert, addr, true);
    let r = h1.get(url("a.example", master)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, Version::HTTP_11));
    let plain = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let r = plain
        .get(format!("https://{addr}{master}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // the plain listener still speaks HTTP
    let r = reqwest::get(proxy.url(master)).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // a new certificate for a.example, swapped in by SIGHUP
    let old_a = dir.path().join("a-old.pem");
    std::fs::copy(&a_cert, &old_a).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let (a2_cert, a2_key) = self_signed(fresh.path(), "a.example", "a2");
    std::fs::copy(&a2_cert, &a_cert).unwrap();
    std::fs::copy(&a2_key, &a_key).unwrap();
    proxy.signal(libc::SIGHUP).unwrap();
    let mut swapped = false;
    for _ in 0..50 {
        // a fresh client each time: a new handshake
        let ca2 = client(&a2_cert, addr, false);
        if ca2.get(url("a.example", master)).send().await.is_ok() {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(swapped, "new handshakes get the new certificate");
    // new connections no longer get the old one...
    let old_only = client(&old_a, addr, false);
    assert!(old_only.get(url("a.example", master)).send().await.is_err());
    // ...and the connection opened before the reload goes on serving
    let r = ca.get(url("a.example", master)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, Version::HTTP_2));
}
