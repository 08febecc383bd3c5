//! Bad requests end to end: request limits answered with 414/431 and a reason, and requests
//! that try to make the proxy fetch from somewhere else than the tenant's origin (absolute
//! URIs, Host headers, encoded dot segments, query parameters).

use manifold_e2e::{run_manifold, Origin, Proxy};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `head` (request line and headers, without the blank line) and returns the status and
/// the whole response text.
async fn raw(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn get(path: &str, headers: &[String]) -> String {
    let mut h = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1");
    for x in headers {
        h.push_str("\r\n");
        h.push_str(x);
    }
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_requests_get_414_and_431_with_a_reason() {
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::for_origin(&origin).unwrap();
    let path = "/t/vod/hls/master.m3u8";
    let (s, ok) = raw(proxy.addr, &get(path, &[])).await;
    assert_eq!(s, 200, "{ok}");

    // URI over 8 KiB (the default)
    let long = format!("{path}?pad={}", "a".repeat(8 * 1024));
    let (s, text) = raw(proxy.addr, &get(&long, &[])).await;
    assert_eq!(s, 414, "{text}");
    assert!(
        text.contains("request URI of 8219 bytes exceeds the 8192-byte limit"),
        "{text}"
    );
    assert!(
        text.to_ascii_lowercase().contains("cache-status:"),
        "{text}"
    );
    // just under the limit passes (the origin ignores the query)
    let fits = format!("{path}?pad={}", "a".repeat(8 * 1024 - path.len() - 5));
    assert_eq!(raw(proxy.addr, &get(&fits, &[])).await.0, 200);

    // more than 100 headers
    let many: Vec<String> = (0..101).map(|i| format!("x-h{i}: v")).collect();
    let (s, text) = raw(proxy.addr, &get(path, &many)).await;
    assert_eq!(s, 431, "{text}");
    assert!(
        text.contains("request headers exceed the limit of 100"),
        "{text}"
    );

    // more than 32 KiB of headers in a few large ones
    let big: Vec<String> = (0..5)
        .map(|i| format!("x-big{i}: {}", "b".repeat(7000)))
        .collect();
    let (s, text) = raw(proxy.addr, &get(path, &big)).await;
    assert_eq!(s, 431, "{text}");
    assert!(text.contains("exceed the 32768-byte limit"), "{text}");

    // pingora's own ceiling (256 headers) still answers first, with a bare 400
    let too_many: Vec<String> = (0..300).map(|i| format!("x-h{i}: v")).collect();
    assert_eq!(raw(proxy.addr, &get(path, &too_many)).await.0, 400);

    // the origin saw only the requests that passed
    assert_eq!(origin.count("/vod/hls/master.m3u8").await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_configurable_and_checked() {
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::start(&format!(
        "[limits]\nmax_uri_len = 1024\nmax_headers = 20\n\n\
         [[tenants]]\nid = \"t\"\norigin = \"http://{}\"\n",
        origin.addr
    ))
    .unwrap();
    let path = "/t/vod/hls/master.m3u8";
    let (s, text) = raw(
        proxy.addr,
        &get(&format!("{path}?p={}", "a".repeat(1100)), &[]),
    )
    .await;
    assert_eq!(s, 414, "{text}");
    assert!(text.contains("1024-byte limit"), "{text}");
    let some: Vec<String> = (0..25).map(|i| format!("x-h{i}: v")).collect();
    assert_eq!(raw(proxy.addr, &get(path, &some)).await.0, 431);
    assert_eq!(raw(proxy.addr, &get(path, &some[..10])).await.0, 200);

    // values the proxy could never enforce are refused with the field named
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    for (limits, field) in [
        ("max_headers = 1000", "limits.max_headers"),
        ("max_uri_len = 1", "limits.max_uri_len"),
        ("max_header_byte = 1", "max_header_byte"),
    ] {
        std::fs::write(
            &cfg,
            format!(
                "[limits]\n{limits}\n[[tenants]]\nid = \"t\"\norigin = \"http://127.0.0.1:1\"\n"
            ),
        )
        .unwrap();
        let (code, out, err) = run_manifold(&["check", "--config", cfg.to_str().unwrap()]).unwrap();
        assert_eq!(code, 2, "{limits}: {out}{err}");
        assert!(err.contains(field), "{limits}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cannot_point_the_proxy_at_another_host() {
    let origin = Origin::start(&[]).unwrap();
    // another server on this machine, which no tenant names: nothing may reach it
    let other = Origin::start(&[]).unwrap();
    let proxy = Proxy::for_origin(&origin).unwrap();
    let o = other.addr;
    let cases = [
        // absolute-form request target naming another host (and a tenant prefix)
        (
            format!("GET http://{o}/t/vod/hls/v1.m3u8 HTTP/1.1\r\nHost: {o}"),
            200,
        ),
        (
            format!("GET http://{o}/vod/hls/v1.m3u8 HTTP/1.1\r\nHost: {o}"),
            404,
        ),
        // Host header naming another host
        (format!("GET /t/vod/hls/v1.m3u8 HTTP/1.1\r\nHost: {o}"), 200),
        (format!("GET /vod/hls/v1.m3u8 HTTP/1.1\r\nHost: {o}"), 404),
        // the tenant's host with another host in the query or as a path segment
        (
            format!(
                "GET /vod/hls/v1.m3u8?url=http://{o}/vod/hls/v1.m3u8 HTTP/1.1\r\nHost: t.example"
            ),
            200,
        ),
        (
            format!("GET /t/http:/{o}/vod/hls/v1.m3u8 HTTP/1.1\r\nHost: 127.0.0.1"),
            404,
        ),
        (
            format!("GET /t//{o}/vod/hls/v1.m3u8 HTTP/1.1\r\nHost: 127.0.0.1"),
            404,
        ),
        // dot segments, plain and encoded, and encoded separators
        (
            "GET /t/vod/../../vod/hls/v1.m3u8 HTTP/1.1\r\nHost: 127.0.0.1".into(),
            400,
        ),
        (
            "GET /t/vod/%2e%2e/vod/hls/v1.m3u8 HTTP/1.1\r\nHost: 127.0.0.1".into(),
            400,
        ),
        (
            "GET /t/..%2f..%2fvod/hls/v1.m3u8 HTTP/1.1\r\nHost: 127.0.0.1".into(),
            400,
        ),
        (
            "GET /t/..%5c..%5cvod/hls/v1.m3u8 HTTP/1.1\r\nHost: 127.0.0.1".into(),
            400,
        ),
    ];
    for (head, want) in &cases {
        let (s, text) = raw(proxy.addr, head).await;
        assert_eq!(s, *want, "{head}\n{text}");
    }
    // segments too (pingora's proxy path rather than the manifest fetch)
    let (s, _) = raw(
        proxy.addr,
        &format!("GET http://{o}/t/vod/hls/v1/0.ts HTTP/1.1\r\nHost: {o}"),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = raw(
        proxy.addr,
        &format!("GET /t//{o}/vod/hls/v1/0.ts HTTP/1.1\r\nHost: 127.0.0.1"),
    )
    .await;
    assert_ne!(s, 200);
    let seen = other.counters("/").await.unwrap();
    assert_eq!(
        seen["by_path"].as_object().map_or(0, |m| m.len()),
        0,
        "the other server was reached: {seen}"
    );
    assert!(origin.count("/vod/hls/v1.m3u8").await.unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_ids_and_plugin_digests_cannot_name_paths() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    for (tenant, field) in [
        ("id = \"../etc\"\n", "tenants[0].id"),
        ("id = \"a/b\"\n", "tenants[0].id"),
        (
            "id = \"t\"\n[tenants.plugin]\nfile = \"sha256:../../../etc/passwd\"\n",
            "tenants[0].plugin.file",
        ),
    ] {
        std::fs::write(
            &cfg,
            format!("[[tenants]]\norigin = \"http://127.0.0.1:1\"\n{tenant}"),
        )
        .unwrap();
        let (code, out, err) = run_manifold(&["check", "--config", cfg.to_str().unwrap()]).unwrap();
        assert_eq!(code, 2, "{tenant}: {out}{err}");
        assert!(err.contains(field), "{tenant}: {err}");
    }
}
