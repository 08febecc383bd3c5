//! The caching edge proxy end to end: real processes on loopback.

use manifold_e2e::{run_manifold, tool, Origin, Proxy};
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use serde_json::json;
use std::time::Duration;

fn cache_status(h: &HeaderMap) -> String {
    h.get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<none>")
        .to_string()
}

async fn get(url: &str) -> (u16, HeaderMap, bytes::Bytes) {
    let r = reqwest::get(url).await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.expect("body"))
}

/// Status line of a request sent byte for byte as given.
async fn raw_get_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let head = String::from_utf8_lossy(&resp);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A live segment number that is published (inside the window) and not yet requested by anyone.
async fn fresh_segment(origin: &Origin, variant: &str) -> u64 {
    let (_, _, body) = get(&origin.url(&format!("/live/hls/{variant}.m3u8"))).await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    let last = text
        .lines()
        .rfind(|l| l.ends_with(".ts"))
        .expect("segments");
    last.rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".ts")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_pass_through_byte_exact() {
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::for_origin(&origin).unwrap();
    for path in [
        "/vod/hls/master.m3u8",
        "/vod/hls/v1.m3u8",
        "/vod/cmaf/a0.m3u8",
        "/vod/dash/manifest.mpd",
        "/live/hls/master.m3u8",
        "/live/cmaf/master.m3u8",
    ] {
        let (s, h, via_proxy) = get(&proxy.url(&format!("/t{path}"))).await;
        let (_, oh, direct) = get(&origin.url(path)).await;
        assert_eq!(s, 200, "{path}");
        assert_eq!(via_proxy, direct, "{path} differs through the proxy");
        assert_eq!(h.get(CONTENT_TYPE), oh.get(CONTENT_TYPE), "{path}");
        assert!(cache_status(&h).starts_with("Manifold;"), "{path}");
    }
    // a live playlist changes every 2 s: compare within one segment interval
    let mut equal = false;
    for _ in 0..5 {
        let (_, _, via_proxy) = get(&proxy.url("/t/live/hls/v0.m3u8")).await;
        let (_, _, direct) = get(&origin.url("/live/hls/v0.m3u8")).await;
        if via_proxy == direct {
            equal = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert!(
        equal,
        "live playlist through the proxy never matched the origin's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_segment_request_is_a_hit_and_origin_is_not_asked_again() {
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::for_origin(&origin).unwrap();
    let n = fresh_segment(&origin, "v1").await;
    let path = format!("/live/hls/v1/{n}.ts");
    let (s1, h1, b1) = get(&proxy.url(&format!("/t{path}"))).await;
    assert_eq!(s1, 200);
    assert!(
        cache_status(&h1).contains("fwd=uri-miss"),
        "{}",
        cache_status(&h1)
    );
    assert!(
        cache_status(&h1).contains("stored"),
        "{}",
        cache_status(&h1)
    );
    assert_eq!(origin.count(&path).await.unwrap(), 1);

    let (s2, h2, b2) = get(&proxy.url(&format!("/t{path}"))).await;
    assert_eq!(s2, 200);
    assert!(
        cache_status(&h2).starts_with("Manifold; hit"),
        "{}",
        cache_status(&h2)
    );
    assert_eq!(b1, b2);
    assert_eq!(
        origin.count(&path).await.unwrap(),
        1,
        "a hit must not reach the origin"
    );

    // host routing reaches the same tenant and cache entry
    let r = reqwest::Client::new()
        .get(proxy.url(&path))
        .header("host", "t.example")
        .send()
        .await
        .unwrap();
    assert!(cache_status(r.headers()).starts_with("Manifold; hit"));
    assert_eq!(r.bytes().await.unwrap(), b1);
    assert_eq!(origin.count(&path).await.unwrap(), 1);

    // and the body is the origin's
    let (_, _, direct) = get(&origin.url(&path)).await;
    assert_eq!(b1, direct);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_misses_make_one_origin_fetch() {
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::for_origin(&origin).unwrap();
    let n = fresh_segment(&origin, "v2").await;
    let path = format!("/live/hls/v2/{n}.ts");
    // a slow origin makes sure all 200 requests overlap the one fetch
    origin
        .set_faults(json!({"delay_ms": 400, "path_prefix": path}))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let url = proxy.url(&format!("/t{path}"));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (c, u) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let r = c.get(u).send().await.expect("request");
                let cs = cache_status(r.headers());
                (r.status().as_u16(), cs, r.bytes().await.expect("body"))
            })
        })
        .collect();
    let mut bodies = Vec::new();
    let mut collapsed = 0;
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for t in tasks {
        let (status, cs, body) = t.await.unwrap();
        assert_eq!(status, 200, "{cs}");
        if cs.contains("collapsed") || cs.contains("hit") {
            collapsed += 1;
        }
        *statuses.entry(cs).or_default() += 1;
        bodies.push(body);
    }
    assert_eq!(
        origin.count(&path).await.unwrap(),
        1,
        "exactly one origin fetch; Cache-Status seen: {statuses:?}"
    );
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        collapsed, 199,
        "all but the first were served from the one fetch"
    );

    // live playlists coalesce the same way
    let playlist = "/live/hls/v2.m3u8";
    origin
        .set_faults(json!({"delay_ms": 300, "path_prefix": playlist}))
        .await
        .unwrap();
    let before = origin.count(playlist).await.unwrap();
    let url = proxy.url(&format!("/t{playlist}"));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (c, u) = (client.clone(), url.clone());
            tokio::spawn(async move { c.get(u).send().await.unwrap().status().as_u16() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let fetches = origin.count(playlist).await.unwrap() - before;
    assert!(
        fetches <= 2,
        "100 concurrent playlist requests made {fetches} origin fetches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_and_head_on_a_cached_segment() {
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::for_origin(&origin).unwrap();
    let n = fresh_segment(&origin, "v0").await;
    let path = format!("/t/live/hls/v0/{n}.ts");
    let (_, _, full) = get(&proxy.url(&path)).await;
    let len = full.len();
    let client = reqwest::Client::new();

    let r = client
        .get(proxy.url(&path))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        format!("bytes 100-199/{len}")
    );
    assert!(cache_status(r.headers()).starts_with("Manifold; hit"));
    assert_eq!(r.bytes().await.unwrap(), full.slice(100..200));

    let r = client
        .get(proxy.url(&path))
        .header("range", "bytes=-50")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().await.unwrap(), full.slice(len - 50..));

    let r = client
        .get(proxy.url(&path))
        .header("range", format!("bytes={}-", len + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 416);

    let r = client.head(proxy.url(&path)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["content-length"].to_str().unwrap(),
        len.to_string()
    );
    assert!(cache_status(r.headers()).starts_with("Manifold; hit"));
    assert!(r.bytes().await.unwrap().is_empty());

    // a Range request on a cold object is answered from the one full fetch that fills the cache
    let m = fresh_segment(&origin, "v1").await;
    let cold = format!("/live/hls/v1/{m}.ts");
    let r = client
        .get(proxy.url(&format!("/t{cold}")))
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().await.unwrap().len(), 10);
    let (_, h, _) = get(&proxy.url(&format!("/t{cold}"))).await;
    assert!(cache_status(&h).starts_with("Manifold; hit"));
    assert_eq!(origin.count(&cold).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tenant_bad_method_and_bad_path() {
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::for_origin(&origin).unwrap();
    let (s, h, body) = get(&proxy.url("/nobody/live/hls/master.m3u8")).await;
    assert_eq!(s, 404);
    assert!(String::from_utf8_lossy(&body).contains("unknown tenant"));
    assert_eq!(
        cache_status(&h),
        "Manifold; fwd=bypass; detail=unknown-tenant"
    );

    let r = reqwest::Client::new()
        .post(proxy.url("/t/live/hls/master.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);

    // sent raw: HTTP clients would normalize the dot segments away themselves
    for path in ["/t/live/../x.ts", "/t/live/%2e%2E/x.ts"] {
        assert_eq!(raw_get_status(proxy.addr, path).await, 400, "{path}");
    }
    assert_eq!(
        origin.counters("").await.unwrap()["total"],
        0,
        "nothing reached the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_down_is_502_and_slow_origin_is_504() {
    let closed = manifold_e2e::free_port();
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::start(&format!(
        r#"
[[tenants]]
id = "down"
origin = "http://127.0.0.1:{closed}"
connect_timeout = "1s"

[[tenants]]
id = "slow"
origin = "http://{}"
read_timeout = "500ms"
"#,
        origin.addr
    ))
    .unwrap();
    for path in ["/down/live/hls/v0/1.ts", "/down/live/hls/v0.m3u8"] {
        let (s, h, body) = get(&proxy.url(path)).await;
        assert_eq!(s, 502, "{path}");
        assert!(cache_status(&h).starts_with("Manifold;"), "{path}");
        let text = String::from_utf8_lossy(&body).to_string();
        assert!(text.contains("origin"), "{path}: {text}");
    }
    origin.set_faults(json!({"delay_ms": 1500})).await.unwrap();
    for path in ["/slow/live/hls/v0/3.ts", "/slow/live/hls/v0.m3u8"] {
        let (s, h, _) = get(&proxy.url(path)).await;
        assert_eq!(s, 504, "{path}");
        assert!(
            cache_status(&h).contains("origin-timeout"),
            "{path}: {}",
            cache_status(&h)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_errors_and_broken_bodies_are_never_cached() {
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::for_origin(&origin).unwrap();
    let n = fresh_segment(&origin, "v0").await;
    let path = format!("/live/hls/v0/{n}.ts");

    // 503 passes through, is not stored
    origin
        .set_faults(json!({"status": 503, "remaining": 1}))
        .await
        .unwrap();
    let (s, _, _) = get(&proxy.url(&format!("/t{path}"))).await;
    assert_eq!(s, 503);
    let (s, h, good) = get(&proxy.url(&format!("/t{path}"))).await;
    assert_eq!(s, 200);
    assert!(cache_status(&h).contains("stored"), "{}", cache_status(&h));

    // a body cut short by the origin must not become a cached (corrupt) segment
    let m = fresh_segment(&origin, "v1").await;
    let cut = format!("/live/hls/v1/{m}.ts");
    origin
        .set_faults(json!({"truncate": true, "remaining": 1}))
        .await
        .unwrap();
    let r = reqwest::get(proxy.url(&format!("/t{cut}"))).await.unwrap();
    assert!(
        r.bytes().await.is_err(),
        "a truncated body must not look complete"
    );
    let (s, h, body) = get(&proxy.url(&format!("/t{cut}"))).await;
    assert_eq!(s, 200);
    assert!(
        !cache_status(&h).starts_with("Manifold; hit"),
        "{}",
        cache_status(&h)
    );
    let (_, _, direct) = get(&origin.url(&cut)).await;
    assert_eq!(body, direct);
    assert!(!good.is_empty());

    // a malformed origin manifest is passed through as-is (fail open), not a proxy error
    origin
        .set_faults(json!({"malformed_manifest": true, "path_prefix": "/vod/hls/v2.m3u8"}))
        .await
        .unwrap();
    let (s, _, body) = get(&proxy.url("/t/vod/hls/v2.m3u8")).await;
    let (_, _, direct) = get(&origin.url("/vod/hls/v2.m3u8")).await;
    assert_eq!(s, 200);
    assert_eq!(body, direct);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_exits_2_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[tenants]]\nid = \"acme\"\norigin = \"ftp://nowhere\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    for cmd in ["serve", "check"] {
        let (code, _, stderr) = run_manifold(&[cmd, "--config", f]).unwrap();
        assert_eq!(code, 2, "{cmd}: {stderr}");
        assert!(stderr.contains(f), "{cmd}: {stderr}");
        assert!(stderr.contains("tenants[0].origin"), "{cmd}: {stderr}");
    }
    std::fs::write(
        &file,
        "[[tenants]]\nid = \"acme\"\norigin = \"http://127.0.0.1:1\"\nttl = 5\n",
    )
    .unwrap();
    let (code, _, stderr) = run_manifold(&["serve", "--config", f]).unwrap();
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown field `ttl`"), "{stderr}");
    let (code, _, stderr) = run_manifold(&["serve", "--config", "/nonexistent.toml"]).unwrap();
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent.toml"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_decodes_live_hls_and_dash_through_the_proxy() {
    let ffmpeg = tool("ffmpeg", "ffmpeg");
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::for_origin(&origin).unwrap();
    for path in [
        "/t/live/hls/master.m3u8",
        "/t/live/cmaf/master.m3u8",
        "/t/live/dash/manifest.mpd",
        "/t/live/dash/timeline.mpd",
    ] {
        let url = proxy.url(path);
        let out = tokio::process::Command::new(&ffmpeg)
            .args(["-hide_banner", "-nostdin", "-v", "error", "-i", &url])
            .args([
                "-map", "0:v:0", "-map", "0:a:0", "-t", "6", "-f", "null", "-",
            ])
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), out)
            .await
            .unwrap_or_else(|_| panic!("ffmpeg on {path} took over 60 s"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "ffmpeg failed on {path}: {stderr}");
        assert!(
            stderr.trim().is_empty(),
            "ffmpeg reported errors on {path}: {stderr}"
        );
    }
    let c = origin.counters("").await.unwrap();
    assert!(c["by_class"]["segment"].as_u64().unwrap() > 0);
}
