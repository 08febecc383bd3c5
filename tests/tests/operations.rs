//! Operations: Prometheus metrics, readiness and request ids, against a running proxy.

use manifold_e2e::{free_port, plugin, Origin, Proxy};
use std::collections::BTreeMap;
use std::time::Duration;

/// `name{labels} value` lines of a Prometheus exposition, by the full series name.
fn series(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn value(s: &BTreeMap<String, f64>, name: &str) -> f64 {
    s.get(name).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_readiness_and_request_ids() {
    // One scenario in order: each operation, then the metric or header it must leave.
    let origin =
        Origin::start(&["--ad-first", "0", "--ad-every", "60", "--ad-duration", "10"]).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let dead = free_port();
    let toml = format!(
        "[admin]\nlisten = \"{admin}\"\ntoken = \"a-token-of-sixteen-chars\"\n\n\
         [[tenants]]\nid = \"t\"\norigin = \"http://{o}\"\n\
         [[tenants]]\nid = \"p\"\norigin = \"http://{o}\"\n[tenants.plugin]\nfile = \"{}\"\n\
         capabilities = [\"ads\"]\ndeadline = \"1s\"\n\
         [[tenants.creatives]]\nname = \"ad10\"\nduration = 10.0\nhls = \"/ads/ad10/hls/master.m3u8\"\n\
         [[tenants]]\nid = \"down\"\norigin = \"http://127.0.0.1:{dead}\"\n",
        plugin("scte35_breaks").display(),
        o = origin.addr,
    );
    let proxy = Proxy::start(&toml).unwrap();
    let client = reqwest::Client::new();
    let admin_get = |path: &str| {
        client
            .get(format!("http://{admin}{path}"))
            .bearer_auth("a-token-of-sixteen-chars")
            .send()
    };

    // a segment twice (a miss, then a hit), a manifest, a personalized one, an unknown tenant
    let seg = proxy.url("/t/live/hls/v0/3.ts");
    let r = client.get(&seg).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 20, "{id}");
    let r = client
        .get(&seg)
        .header("x-request-id", "cdn-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["x-request-id"],
        "cdn-abc.123",
        "the caller's id is kept"
    );
    let r = client
        .get(proxy.url("/t/live/hls/master.m3u8"))
        .send()
        .await
        .unwrap();
    let other = r.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(other, id, "ids are unique");
    let r = client
        .get(proxy.url("/p/live/hls/v1.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "followed into a session");
    let r = client.get(proxy.url("/nobody/x.ts")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));

    // metrics need the token
    let r = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // access logging happens after the response: give it a moment
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = admin_get("/metrics").await.unwrap().text().await.unwrap();
    let s = series(&text);
    let req = |t: &str, c: &str, st: &str| {
        value(
            &s,
            &format!("manifold_requests_total{{class=\"{c}\",status=\"{st}\",tenant=\"{t}\"}}"),
        )
    };
    assert_eq!(req("t", "segment", "200"), 2.0, "{text}");
    assert_eq!(req("t", "hls-playlist", "200"), 1.0);
    assert_eq!(req("-", "-", "404"), 1.0);
    assert!(req("p", "hls-playlist", "200") >= 1.0);
    let cache = |r: &str| {
        value(
            &s,
            &format!(
                "manifold_cache_results_total{{class=\"segment\",result=\"{r}\",tenant=\"t\"}}"
            ),
        )
    };
    assert_eq!((cache("miss"), cache("hit")), (1.0, 1.0), "{text}");
    assert_eq!(
        value(
            &s,
            "manifold_origin_fetches_total{class=\"segment\",outcome=\"ok\",tenant=\"t\"}"
        ),
        1.0
    );
    assert!(
        value(
            &s,
            "manifold_origin_fetch_duration_seconds_count{class=\"segment\",tenant=\"t\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &s,
            "manifold_plugin_invocations_total{outcome=\"ok\",tenant=\"p\"}"
        ) >= 1.0
    );
    assert!(value(&s, "manifold_plugin_duration_seconds_count{tenant=\"p\"}") >= 1.0);
    assert!(
        value(
            &s,
            "manifold_ad_decisions_total{outcome=\"filled\",tenant=\"p\"}"
        ) >= 0.0
    );
    assert!(value(&s, "manifold_plugins_loaded") >= 1.0, "{text}");
    assert!(value(&s, "process_resident_memory_bytes") > 1e6, "{text}");
    assert!(text.contains("# TYPE manifold_request_duration_seconds histogram"));

    // readiness: one origin is down, and /readyz says which
    let r = client
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let why = r.text().await.unwrap();
    assert!(
        why.contains("tenant down") && !why.contains("tenant t:"),
        "{why}"
    );
    let r = client
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_when_every_origin_answers() {
    let origin = Origin::start(&[]).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let proxy = Proxy::start(&format!(
        "[admin]\nlisten = \"{admin}\"\n\n[[tenants]]\nid = \"t\"\norigin = \"http://{}\"\n",
        origin.addr
    ))
    .unwrap();
    let r = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ready\n");
    drop(proxy);
}

/// The origin fails mid-event: the live playlist is served stale for a few target durations
/// (the tenant's `stale_manifest_targets`), then the failure shows; meanwhile the origin sees a
/// handful of retries with backoff, not one per viewer request; it recovers when the origin does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_origin_gets_stale_manifests_then_errors_without_a_retry_storm() {
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::start(&format!(
        "[[tenants]]\nid = \"t\"\norigin = \"http://{}\"\n[tenants.cache]\nstale_manifest_targets = 2\n",
        origin.addr
    ))
    .unwrap();
    let url = proxy.url("/t/live/hls/v1.m3u8");
    let good = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let path = "/live/hls/v1.m3u8";
    origin
        .set_faults(serde_json::json!({"status": 503, "path_prefix": path}))
        .await
        .unwrap();
    let before = origin.count(path).await.unwrap();
    let started = std::time::Instant::now();
    let (mut stale, mut failed, mut stale_after_fail) = (0, 0, 0);
    let mut first_failure = None;
    while started.elapsed() < Duration::from_secs(9) {
        let r = reqwest::get(&url).await.unwrap();
        let status = r.status().as_u16();
        let cs = r.headers()["cache-status"].to_str().unwrap().to_string();
        let body = r.text().await.unwrap();
        if status == 200 {
            assert_eq!(body, good, "the last good playlist");
            if cs.contains("stale-if-error") {
                stale += 1;
                if failed > 0 {
                    stale_after_fail += 1;
                }
            }
        } else {
            assert_eq!(status, 503, "{body}");
            failed += 1;
            first_failure.get_or_insert(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // a 2 s target, 1 s TTL: stale until ~5 s after the last good fetch, then the failure
    assert!(stale > 10, "served stale at first: {stale}");
    assert!(failed > 10, "then the failure: {failed}");
    assert_eq!(
        stale_after_fail, 0,
        "never stale again once the limit passed"
    );
    let at = first_failure.unwrap();
    assert!(
        at > Duration::from_secs(3) && at < Duration::from_secs(7),
        "stale for about 2 target durations past the TTL: failed from {at:?}"
    );
    let fetches = origin.count(path).await.unwrap() - before;
    assert!(
        (2..=8).contains(&fetches),
        "retries backed off: {fetches} origin fetches for ~150 requests"
    );
    // the origin comes back: so does the playlist, within the backoff
    origin.clear_faults().await.unwrap();
    let back = std::time::Instant::now();
    loop {
        let r = reqwest::get(&url).await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(6), "did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
