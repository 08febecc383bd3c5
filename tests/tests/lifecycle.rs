//! Process lifecycle: config reload on SIGHUP, graceful shutdown on SIGTERM, zero-downtime
//! binary upgrade (SIGQUIT + `serve --upgrade`).

use manifold_e2e::{Origin, Proxy};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tenant(id: &str, origin: &Origin) -> String {
    format!(
        "[[tenants]]\nid = \"{id}\"\norigin = \"http://{}\"\n",
        origin.addr
    )
}

async fn status(url: &str) -> u16 {
    match reqwest::get(url).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Waits until the origin has been asked for `path` (the proxy has the request in hand).
async fn until_origin_asked(origin: &Origin, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while origin.count(path).await.unwrap() == 0 {
        assert!(Instant::now() < deadline, "{path} never reached the origin");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `url` answers `want`, up to 10 s.
async fn until_status(url: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = status(url).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{url}: {got}, waited for {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_tenants_refuses_bad_config_and_lets_requests_finish() {
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::start(&tenant("a", &origin)).unwrap();
    let a = proxy.url("/a/vod/hls/v1.m3u8");
    let b = proxy.url("/b/vod/hls/v1.m3u8");
    assert_eq!(status(&a).await, 200);
    assert_eq!(status(&b).await, 404, "no tenant b yet");

    // a new tenant appears without a restart
    let pid = proxy.pid();
    proxy
        .reload(&format!("{}{}", tenant("a", &origin), tenant("b", &origin)))
        .unwrap();
    until_status(&b, 200).await;
    assert_eq!(status(&a).await, 200);
    assert_eq!(proxy.pid(), pid);

    // an invalid config is refused: both tenants keep serving
    for (bad, raw) in [
        ("this is not toml [".to_string(), true),
        // parses, but its plugin cannot be loaded
        (
            format!(
                "{}{}[tenants.plugin]\nfile = \"/nonexistent/p.wasm\"\n",
                tenant("a", &origin),
                tenant("b", &origin)
            ),
            false,
        ),
    ] {
        proxy.write_config(&bad, raw).unwrap();
        proxy.signal(libc::SIGHUP).unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(status(&a).await, 200, "after refusing {bad:?}");
        assert_eq!(status(&b).await, 200, "after refusing {bad:?}");
    }

    // a request in flight when its tenant is removed finishes on the config it started with
    origin
        .set_faults(serde_json::json!({"delay_ms": 1500, "path_prefix": "/vod/hls/v2.m3u8"}))
        .await
        .unwrap();
    let slow = tokio::spawn(reqwest::get(proxy.url("/b/vod/hls/v2.m3u8")));
    until_origin_asked(&origin, "/vod/hls/v2.m3u8").await;
    proxy.reload(&tenant("a", &origin)).unwrap();
    until_status(&b, 404).await;
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status(), 200);
    assert!(slow.text().await.unwrap().starts_with("#EXTM3U"));
    assert_eq!(status(&a).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_cached_manifests_unless_the_tenants_origin_changed() {
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::start(&tenant("a", &origin)).unwrap();
    let path = "/vod/hls/v1.m3u8";
    let get = || async {
        let r = reqwest::get(proxy.url(&format!("/a{path}"))).await.unwrap();
        assert_eq!(r.status(), 200);
        let cs = r.headers()["cache-status"].to_str().unwrap().to_string();
        (cs, origin.count(path).await.unwrap())
    };
    let (cs, n) = get().await;
    assert!(cs.contains("fwd=uri-miss"), "{cs}");
    assert_eq!(n, 1);

    // another tenant added: a's VOD playlist is still cached
    proxy
        .reload(&format!("{}{}", tenant("a", &origin), tenant("b", &origin)))
        .unwrap();
    until_status(&proxy.url(&format!("/b{path}")), 200).await;
    let (cs, n) = get().await;
    assert!(cs.contains("hit"), "{cs}");
    assert_eq!(n, 2, "only b's first request reached the origin");

    // a's cache settings changed: its manifests are fetched again under them
    let changed = format!(
        "{}[tenants.cache]\nvod_manifest_ttl = \"10m\"\n",
        tenant("a", &origin)
    );
    proxy.reload(&changed).unwrap();
    until_status(&proxy.url(&format!("/b{path}")), 404).await;
    let (cs, n) = get().await;
    assert!(cs.contains("fwd=uri-miss"), "{cs}");
    assert_eq!(n, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_in_flight_then_exits() {
    let origin = Origin::start(&[]).unwrap();
    let mut proxy = Proxy::start_with_grace(&tenant("t", &origin), "20s").unwrap();
    origin
        .set_faults(serde_json::json!({"delay_ms": 2000, "path_prefix": "/vod/hls/v1.m3u8"}))
        .await
        .unwrap();
    let slow = tokio::spawn(reqwest::get(proxy.url("/t/vod/hls/v1.m3u8")));
    until_origin_asked(&origin, "/vod/hls/v1.m3u8").await;
    let term = Instant::now();
    proxy.signal(libc::SIGTERM).unwrap();
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status(), 200, "the request in flight completes");
    assert!(slow.text().await.unwrap().starts_with("#EXTM3U"));
    let exit = tokio::task::spawn_blocking(move || {
        let s = proxy.wait_exit(Duration::from_secs(15));
        (s, proxy)
    })
    .await
    .unwrap();
    let status = exit.0.unwrap();
    assert!(status.success(), "clean exit: {status}");
    // drained, not the whole 20 s grace period
    assert!(
        term.elapsed() < Duration::from_secs(12),
        "exited {:?} after SIGTERM",
        term.elapsed()
    );
    assert!(
        std::net::TcpStream::connect(exit.1.addr).is_err(),
        "no longer listening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_accepted_before_sigterm_still_gets_its_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start(&[]).unwrap();
    let mut proxy = Proxy::start_with_grace(&tenant("t", &origin), "10s").unwrap();
    let url = proxy.url("/t/vod/hls/v1.m3u8");
    assert_eq!(status(&url).await, 200);
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // a viewer connects; its request is still on its way when the listeners stop
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.signal(libc::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.write_all(
        format!("GET /t/vod/hls/v1.m3u8 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer within 10 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.contains("#EXTM3U"), "{answer:?}");
    let exited = tokio::task::spawn_blocking(move || proxy.wait_exit(Duration::from_secs(15)))
        .await
        .unwrap()
        .unwrap();
    assert!(exited.success(), "clean exit: {exited}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_upgrade_hands_listeners_over_without_failing_a_request() {
    let origin = Origin::start(&[]).unwrap();
    let mut proxy = Proxy::start_with_grace(&tenant("t", &origin), "10s").unwrap();
    let url = proxy.url("/t/vod/hls/v1.m3u8");
    assert_eq!(status(&url).await, 200);

    // viewers keep asking throughout, on fresh and kept-alive connections
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for keep_alive in [false, true, false, true] {
        let (url, stop, ok, failed) = (url.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let mut client = reqwest::Client::new();
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if !keep_alive {
                    client = reqwest::Client::builder()
                        .pool_max_idle_per_host(0)
                        .build()
                        .unwrap();
                }
                let outcome = match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                    }
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(format!("keep-alive {keep_alive}: {e:?}")),
                };
                match outcome {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        errors.push(e);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            errors
        }));
    }

    let mut old = proxy.upgrade().unwrap();
    let new_pid = proxy.pid();
    let old_exit = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = old.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = old.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let exited = old_exit.expect("the old process exits after handing over");
    assert!(exited.success(), "{exited}");
    // the new process serves alone for a while
    let served_before = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for l in load {
        errors.extend(l.await.unwrap());
    }
    assert!(
        ok.load(Ordering::Relaxed) > served_before,
        "requests after the old one left"
    );
    assert!(ok.load(Ordering::Relaxed) > 100, "load ran throughout");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "{errors:?}");
    assert_eq!(proxy.pid(), new_pid);
    assert_eq!(status(&url).await, 200);
}
