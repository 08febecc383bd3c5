//! Tenants' WebAssembly plugins end to end: sample plugins personalize manifests, misbehaving
//! plugins are contained, plugins are deployed and rolled back through the admin API.

use manifold_e2e::plugin_tenant as tenant;
use manifold_e2e::{creatives, free_port, plugin, run_manifold, tool, Origin, Proxy};
use reqwest::header::HeaderMap;
use std::time::Duration;

fn hdr(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<none>")
        .to_string()
}

async fn get_with(url: &str, ua: &str) -> (u16, HeaderMap, String) {
    let r = reqwest::Client::new()
        .get(url)
        .header("user-agent", ua)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.expect("body"))
}

async fn get(url: &str) -> (u16, HeaderMap, String) {
    get_with(url, "e2e").await
}

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";

fn catalog() -> String {
    creatives(&["ad10", "ad15", "slate"], true, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variant_filter_caps_renditions_by_device() {
    variant_filter_scenario("variant_filter").await
}

/// The TypeScript sample (plugins/ts), run through the same scenario.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_variant_filter_caps_renditions_by_device() {
    variant_filter_scenario("variant_filter_ts").await
}

async fn variant_filter_scenario(plugin: &str) {
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::start(&tenant(
        "t",
        &origin,
        plugin,
        "config = \"mobile=180\"\ndeadline = \"1s\"",
    ))
    .unwrap();
    let (s, h, phone) = get_with(&proxy.url("/t/live/hls/master.m3u8"), IPHONE).await;
    assert_eq!(s, 200);
    assert!(
        hdr(&h, "manifold-plugin").starts_with("ok; version=1"),
        "{}",
        hdr(&h, "manifold-plugin")
    );
    assert!(hdr(&h, "cache-control").starts_with("private"));
    assert_eq!(phone.matches("#EXT-X-STREAM-INF").count(), 2, "{phone}");
    assert!(!phone.contains("480x270"));
    // variant URIs say which rendition they are, for ad matching
    assert!(phone.contains("v0.m3u8?mf_v=v"), "{phone}");
    let (_, _, desktop) = get_with(
        &proxy.url("/t/live/hls/master.m3u8"),
        "Mozilla/5.0 (X11; Linux x86_64)",
    )
    .await;
    assert_eq!(desktop.matches("#EXT-X-STREAM-INF").count(), 3);
    // the player param lowers the cap further
    let (_, _, low) = get(&proxy.url("/t/live/hls/master.m3u8?maxres=108")).await;
    assert_eq!(low.matches("#EXT-X-STREAM-INF").count(), 1, "{low}");
    // DASH: representations above the cap are gone
    let (s, _, mpd) = get_with(&proxy.url("/t/live/dash/manifest.mpd"), IPHONE).await;
    assert_eq!(s, 200);
    assert!(
        mpd.contains("id=\"v1\"") && !mpd.contains("id=\"v2\""),
        "{mpd}"
    );
    // the hint never reaches the origin
    let (s, _, _) = get(&proxy.url("/t/live/hls/v0.m3u8?mf_v=v94000x108")).await;
    assert_eq!(s, 200);
    let c = origin.counters("/live/hls/v0.m3u8").await.unwrap();
    assert_eq!(c["by_path"]["/live/hls/v0.m3u8"], 1, "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scte35_breaks_are_filled_and_the_stream_decodes() {
    scte35_breaks_scenario("scte35_breaks").await
}

/// The TypeScript sample (plugins/ts), run through the same scenario.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_scte35_breaks_are_filled_and_the_stream_decodes() {
    scte35_breaks_scenario("scte35_breaks_ts").await
}

async fn scte35_breaks_scenario(plugin: &str) {
    // One scenario in order: the break filled, the URIs checked, the stream decoded.
    // segments 10..20 are live; a 10 s break starts at segment 13
    let origin = Origin::live(40, 10, 26, 60, 10).unwrap();
    let toml = tenant(
        "t",
        &origin,
        plugin,
        "capabilities = [\"ads\", \"log\"]\nfail = \"closed\"\ndeadline = \"200ms\"",
    ) + &catalog();
    let proxy = Proxy::start(&toml).unwrap();
    let (_, _, master) = get(&proxy.url("/t/live/hls/master.m3u8")).await;
    // a new session: variant URIs lead into it
    let v1 = master
        .lines()
        .find(|l| l.contains("v1.m3u8"))
        .expect("v1 in master");
    assert!(
        v1.starts_with("/t/~") && v1.contains("/live/hls/v1.m3u8?mf_v=v"),
        "{master}"
    );
    let session = &v1[..v1.find("/live/").unwrap()];
    let (s, h, media) = get(&proxy.url(v1)).await;
    assert_eq!(s, 200, "{media}");
    assert!(
        hdr(&h, "manifold-plugin").starts_with("ok"),
        "{}",
        hdr(&h, "manifold-plugin")
    );
    // the host's ad decision picked the 10 s creative, in the matching rendition
    let ads: Vec<&str> = media.lines().filter(|l| l.contains("/ads/")).collect();
    assert_eq!(ads.len(), 5, "{media}");
    assert!(
        ads.iter()
            .all(|l| l.starts_with(&format!("{session}/ads/ad10/hls/v1/"))),
        "{media}"
    );
    assert!(
        media.matches("#EXT-X-DISCONTINUITY").count() >= 2,
        "{media}"
    );
    assert!(media.contains("#EXT-X-CUE-OUT"));
    // ad segments stream through the proxy's cache
    let (s, h, _) = get(&proxy.url(ads[0])).await;
    assert_eq!(s, 200);
    assert!(hdr(&h, "cache-status").contains("stored"));
    // CMAF: video and audio renditions both get ads, with their own init segments
    let (_, _, cmaf_master) = get(&proxy.url("/t/live/cmaf/master.m3u8")).await;
    let a0 = cmaf_master
        .split("URI=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("audio rendition URI");
    assert!(a0.contains("mf_v=a"), "{cmaf_master}");
    let (_, _, audio) = get(&proxy.url(a0)).await;
    assert!(audio.contains("/ads/ad10/cmaf/a0/"), "{audio}");
    assert!(audio.contains("/ads/ad10/cmaf/a0/init.mp4\""), "{audio}");
    assert!(
        audio.contains("#EXT-X-MAP:URI=\"a0/init.mp4\""),
        "content init re-emitted: {audio}"
    );

    // ffmpeg plays content → ad → content through the proxy
    let ffmpeg = tool("ffmpeg", "ffmpeg");
    let url = proxy.url("/t/live/hls/master.m3u8");
    let out = tokio::process::Command::new(ffmpeg)
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-live_start_index",
            "0",
            "-i",
            &url,
        ])
        .args([
            "-map", "0:v:0", "-map", "0:a:0", "-t", "16", "-f", "null", "-",
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), out)
        .await
        .expect("ffmpeg in time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "ffmpeg errors: {stderr}");
    let ad_fetches = origin.counters("/ads/ad10/hls/v0/").await.unwrap();
    assert!(
        ad_fetches["by_path"]
            .as_object()
            .is_some_and(|m| !m.is_empty()),
        "the player fetched ad segments"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vod_preroll_comes_first() {
    vod_preroll_scenario("preroll").await
}

/// The TypeScript sample (plugins/ts), run through the same scenario.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_vod_preroll_comes_first() {
    vod_preroll_scenario("preroll_ts").await
}

async fn vod_preroll_scenario(plugin: &str) {
    let origin = Origin::start(&[]).unwrap();
    let toml = tenant(
        "t",
        &origin,
        plugin,
        "config = \"pod=ad15\"\ndeadline = \"1s\"",
    ) + &catalog();
    let proxy = Proxy::start(&toml).unwrap();
    let (s, h, media) = get(&proxy.url("/t/vod/hls/v0.m3u8?mf_v=v94000x108")).await;
    assert_eq!(s, 200, "{media}");
    assert!(hdr(&h, "manifold-plugin").starts_with("ok"));
    let uris: Vec<&str> = media
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(
        uris[0].starts_with("/t/~") && uris[0].contains("/ads/ad15/hls/v0/0.ts"),
        "{media}"
    );
    assert_eq!(uris.iter().filter(|u| u.contains("/ads/")).count(), 8); // 7 x 2 s + 1 s
    assert!(media.contains("#EXT-X-ENDLIST"));
    let (_, _, skip) = get(&proxy.url("/t/vod/hls/v0.m3u8?preroll=0")).await;
    assert!(!skip.contains("/ads/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_plugins_cost_only_their_own_requests() {
    // One scenario in order: each misbehaving plugin, then what its failure cost.
    let origin = Origin::start(&[]).unwrap();
    let kinds = [
        ("loop", "deadline"),
        ("memory", "memory"),
        ("trap", "trap"),
        ("stack", "trap"),
        ("huge", ""),
        ("invalid", "invalid-plan"),
        ("denied", "trap"),
    ];
    let mut toml = String::new();
    for (t, _) in kinds {
        let mode = if t == "denied" { "kv" } else { t };
        let deadline = if t == "loop" { "50ms" } else { "2s" };
        toml += &tenant(
            t,
            &origin,
            "misbehave",
            &format!("config = \"mode={mode}\"\ndeadline = \"{deadline}\""),
        );
    }
    toml += &tenant(
        "closed",
        &origin,
        "misbehave",
        "config = \"mode=trap\"\nfail = \"closed\"\ndeadline = \"1s\"",
    );
    toml += &tenant(
        "healthy",
        &origin,
        "variant_filter",
        "config = \"unknown=180\"\ndeadline = \"2s\"",
    );
    let proxy = Proxy::start(&toml).unwrap();
    let (_, _, origin_master) = get(&origin.url("/live/hls/master.m3u8")).await;

    // the origin's master without the plugin's edits, but in the viewer's new session: every
    // variant, each under the session with its rendition hint (fail open keeps the session, or
    // each playlist reload would start a new one)
    let in_session = |t: &str, body: &str| {
        let uris: Vec<&str> = body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        uris.len() == origin_master.matches("#EXT-X-STREAM-INF").count()
            && uris
                .iter()
                .all(|u| u.starts_with(&format!("/{t}/~")) && u.contains("mf_v="))
    };
    // each failure is reported as what it was
    for (t, reason) in kinds {
        let (status, h, body) = get(&proxy.url(&format!("/{t}/live/hls/master.m3u8"))).await;
        let p = hdr(&h, "manifold-plugin");
        assert_eq!(status, 200, "{t}: {body}");
        assert!(p.starts_with("failed; reason="), "{t}: {p}");
        assert!(p.contains(reason), "{t}: {p}");
        assert!(p.ends_with("served=session"), "{t}: {p}");
        assert!(in_session(t, &body), "{t}: {body}");
    }
    // inside the session an invalid plan is replayed like any failure: the session's own
    // playlist (its recorded breaks), never the origin's
    let (_, _, master) = get(&proxy.url("/invalid/live/hls/master.m3u8")).await;
    let variant = master
        .lines()
        .find(|l| l.starts_with("/invalid/~"))
        .expect("a session variant");
    let (status, h, media) = get(&proxy.url(variant)).await;
    assert_eq!(status, 200, "{media}");
    assert_eq!(
        hdr(&h, "manifold-plugin"),
        "failed; reason=invalid-plan; served=session"
    );
    assert!(media.contains("#EXT-X-MEDIA-SEQUENCE"), "{media}");
    let (s, h, body) = get(&proxy.url("/closed/live/hls/master.m3u8")).await;
    assert_eq!(s, 503, "{body}");
    assert!(hdr(&h, "manifold-plugin").contains("reason=trap"));

    // all of them at once: every misbehaving request fails open, the healthy tenant is served
    let mut tasks = Vec::new();
    for round in 0..4 {
        for (t, _) in kinds {
            let url = proxy.url(&format!("/{t}/live/hls/master.m3u8?r={round}"));
            tasks.push(tokio::spawn(async move { (t, get(&url).await) }));
        }
        let url = proxy.url(&format!("/healthy/live/hls/master.m3u8?r={round}"));
        tasks.push(tokio::spawn(async move { ("healthy", get(&url).await) }));
    }
    for task in tasks {
        let (t, (status, h, body)) = task.await.unwrap();
        let p = hdr(&h, "manifold-plugin");
        assert_eq!(status, 200, "{t}: {body}");
        if t == "healthy" {
            assert!(p.starts_with("ok"), "{t}: {p}");
            assert_eq!(body.matches("#EXT-X-STREAM-INF").count(), 2);
        } else {
            assert!(
                p.starts_with("failed; reason=") && p.ends_with("served=session"),
                "{t}: {p}"
            );
            assert!(in_session(t, &body), "{t}: {body}");
        }
    }
    // segments never depend on plugins
    let (s, _, _) = get(&proxy.url("/loop/live/hls/v0/12.ts")).await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_deploys_validates_and_rolls_back_without_failing_requests() {
    // One scenario in order: deploy, refuse, roll back, with viewers asking throughout.
    let origin = Origin::start(&[]).unwrap();
    let admin_port = free_port();
    let token = "e2e-admin-token-0123456789";
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"{token}\"\n\n\
         [[tenants]]\nid = \"t\"\norigin = \"http://{}\"\n[tenants.plugin]\ndeadline = \"2s\"\n",
        origin.addr
    );
    let proxy = Proxy::start(&toml).unwrap();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let client = reqwest::Client::new();
    let auth = format!("Bearer {token}");
    // no plugin yet: pass-through
    let (_, h, _) = get(&proxy.url("/t/live/hls/master.m3u8")).await;
    assert_eq!(hdr(&h, "manifold-plugin"), "<none>");

    let unauthorized = client.get(format!("{admin}/tenants")).send().await.unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
    let wrong = client
        .get(format!("{admin}/tenants"))
        .header("authorization", "Bearer nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);

    let call = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{admin}{path}"))
            .header("authorization", &auth)
    };
    let deploy = |wasm: Vec<u8>| {
        call(reqwest::Method::PUT, "/tenants/t/plugin")
            .body(wasm)
            .send()
    };
    let rollback = |tenant: &str| {
        call(
            reqwest::Method::POST,
            &format!("/tenants/{tenant}/plugin/rollback"),
        )
        .send()
    };
    let r = deploy(std::fs::read(plugin("variant_filter")).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());

    // keep viewers busy while versions change
    let url = proxy.url("/t/live/hls/master.m3u8?device=mobile");
    let load: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..60 {
                    let (s, h, _) = get(&url).await;
                    statuses.push((s, hdr(&h, "manifold-plugin")));
                }
                statuses
            })
        })
        .collect();
    let r = deploy(std::fs::read(plugin("misbehave")).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["version"], 2);
    // not a component: refused, the active version stays
    let r = deploy(b"definitely not wasm".to_vec()).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("not a valid WebAssembly component"));
    let r = deploy(b"\0asm\x0d\0\x01\0".to_vec()).await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        400,
        "an empty component does not fit the world"
    );
    let r = rollback("t").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["version"], 1);
    for task in load {
        for (s, p) in task.await.unwrap() {
            assert_eq!(s, 200, "a request failed during a deploy: {p}");
            assert!(p.starts_with("ok") || p == "<none>", "{p}");
        }
    }
    let list = json(call(reqwest::Method::GET, "/tenants")).await;
    assert_eq!(list[0]["tenant"], "t");
    assert_eq!(list[0]["active"]["version"], 1);
    // the rolled-back version is live again: the mobile cap applies
    let (_, h, body) = get(&url).await;
    assert!(hdr(&h, "manifold-plugin").starts_with("ok; version=1"));
    assert_eq!(
        body.matches("#EXT-X-STREAM-INF").count(),
        3,
        "variant_filter without caps keeps all"
    );
    let r = rollback("nobody").await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_check_command_reports_and_exits_by_outcome() {
    let good = plugin("scte35_breaks");
    let (code, out, err) = run_manifold(&[
        "plugin",
        "check",
        good.to_str().unwrap(),
        "--runs",
        "2",
        "--capabilities",
        "ads",
        "--deadline",
        "1s",
    ])
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("hls-live-break.m3u8") && out.contains("fill-break"),
        "{out}"
    );
    let bad = plugin("misbehave");
    let (code, out, _) = run_manifold(&[
        "plugin",
        "check",
        bad.to_str().unwrap(),
        "--config",
        "mode=loop",
        "--runs",
        "1",
    ])
    .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL deadline"));
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"junk").unwrap();
    let (code, _, err) = run_manifold(&["plugin", "check", junk.to_str().unwrap()]).unwrap();
    assert_eq!(code, 2);
    assert!(err.contains("not a valid WebAssembly component"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_tokens_manage_their_own_tenant_only() {
    let origin = Origin::start(&[]).unwrap();
    let admin_port = free_port();
    // no operator token, on loopback: once a tenant token exists, every request needs a token
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n\
         [[tenants]]\nid = \"a\"\norigin = \"http://{o}\"\nadmin_token = \"token-of-tenant-a-0123\"\n\
         [tenants.plugin]\ndeadline = \"2s\"\n\
         [[tenants]]\nid = \"b\"\norigin = \"http://{o}\"\nadmin_token = \"token-of-tenant-b-0123\"\n\
         [tenants.plugin]\ndeadline = \"2s\"\n",
        o = origin.addr
    );
    let _proxy = Proxy::start(&toml).unwrap();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let client = reqwest::Client::new();
    let wasm = std::fs::read(plugin("variant_filter")).unwrap();
    let call = |method: reqwest::Method, path: &str, token: Option<&str>| {
        let mut r = client.request(method, format!("{admin}{path}"));
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r
    };
    let (a, b) = (
        Some("token-of-tenant-a-0123"),
        Some("token-of-tenant-b-0123"),
    );
    let status = |r: reqwest::RequestBuilder| async { r.send().await.unwrap().status().as_u16() };
    use reqwest::Method;
    // without a token: refused, though on loopback
    assert_eq!(status(call(Method::GET, "/tenants", None)).await, 401);
    // a's token deploys a's plugin, not b's
    let deploy = |tenant: &str| call(Method::PUT, &format!("/tenants/{tenant}/plugin"), a);
    assert_eq!(status(deploy("a").body(wasm.clone())).await, 201);
    assert_eq!(status(deploy("b").body(wasm.clone())).await, 403);
    for (m, p) in [
        (Method::POST, "/tenants/b/plugin/rollback"),
        (Method::DELETE, "/tenants/b/plugin"),
        (Method::GET, "/metrics"),
    ] {
        assert_eq!(status(call(m, p, a)).await, 403, "{p}");
    }
    // each sees its own tenant only
    let listed = json(call(Method::GET, "/tenants", b)).await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["tenant"].as_str())
        .collect();
    assert_eq!(names, ["b"]);
    assert_eq!(
        status(call(Method::DELETE, "/tenants/a/plugin", a)).await,
        204
    );
}

/// The JSON an admin API call answers.
async fn json(r: reqwest::RequestBuilder) -> serde_json::Value {
    let text = r.send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_plugin_is_refused_at_deploy_unless_its_capabilities_are_granted() {
    let origin = Origin::start(&[]).unwrap();
    let admin_port = free_port();
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n\
         [[tenants]]\nid = \"granted\"\norigin = \"http://{o}\"\n\
         [tenants.plugin]\ncapabilities = [\"kv\", \"log\"]\ndeadline = \"2s\"\n\
         [[tenants]]\nid = \"bare\"\norigin = \"http://{o}\"\n\
         [tenants.plugin]\ncapabilities = [\"log\"]\ndeadline = \"2s\"\n",
        o = origin.addr
    );
    let proxy = Proxy::start(&toml).unwrap();
    let client = reqwest::Client::new();
    let wasm = std::fs::read(plugin("scoped_kv")).unwrap();
    let deploy = |tenant: &str| {
        client
            .put(format!(
                "http://127.0.0.1:{admin_port}/tenants/{tenant}/plugin"
            ))
            .body(wasm.clone())
            .send()
    };
    // it imports kv, which `bare` does not grant: refused at deploy, not trapping later
    let r = deploy("bare").await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let why = r.text().await.unwrap();
    assert!(why.contains("does not grant: kv"), "{why}");
    let (_, h, _) = get(&proxy.url("/bare/live/hls/master.m3u8")).await;
    assert_eq!(hdr(&h, "manifold-plugin"), "<none>", "nothing was deployed");
    // granted: it runs through its own kv, dropping the top variant every other request
    let r = deploy("granted").await.unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    let mut variants = Vec::new();
    for _ in 0..4 {
        let (s, h, body) = get(&proxy.url("/granted/live/hls/master.m3u8")).await;
        assert_eq!(s, 200);
        assert!(hdr(&h, "manifold-plugin").starts_with("ok"), "{h:?}");
        variants.push(body.matches("#EXT-X-STREAM-INF").count());
    }
    assert_eq!(variants, [3, 2, 3, 2]);
    // a reload that takes kv away from the tenant running it is refused (with a probe tenant,
    // which stays unknown); one that keeps kv is taken
    let tenants = |caps: &str, probe: &str| {
        let probe = format!(
            "[[tenants]]\nid = \"{probe}\"\norigin = \"http://{}\"\n",
            origin.addr
        );
        toml.replace("capabilities = [\"kv\", \"log\"]", caps) + &probe
    };
    let taken = |probe: &'static str| {
        let url = proxy.url(&format!("/{probe}/vod/hls/v1.m3u8"));
        async move {
            for _ in 0..100 {
                if get(&url).await.0 == 200 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the reload adding {probe} was never taken");
        }
    };
    let (kv_log, log) = (
        "capabilities = [\"kv\", \"log\"]",
        "capabilities = [\"log\"]",
    );
    proxy.reload(&tenants(log, "p1")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        get(&proxy.url("/p1/vod/hls/v1.m3u8")).await.0,
        404,
        "the reload was refused"
    );
    let (_, h, _) = get(&proxy.url("/granted/live/hls/master.m3u8")).await;
    assert!(hdr(&h, "manifold-plugin").starts_with("ok"), "{h:?}");
    proxy.reload(&tenants(kv_log, "p2")).unwrap();
    taken("p2").await;
    // nor can a rollback bring it back once kv is gone
    let other = std::fs::read(plugin("variant_filter")).unwrap();
    let r = client
        .put(format!(
            "http://127.0.0.1:{admin_port}/tenants/granted/plugin"
        ))
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    proxy.reload(&tenants(log, "p3")).unwrap();
    taken("p3").await;
    let r = client
        .post(format!(
            "http://127.0.0.1:{admin_port}/tenants/granted/plugin/rollback"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let why = r.text().await.unwrap();
    assert!(why.contains("does not grant: kv"), "{why}");
    // `plugin check` says the same before anything is deployed
    let (code, _, err) = run_manifold(&[
        "plugin",
        "check",
        plugin("scoped_kv").to_str().unwrap(),
        "--capabilities",
        "log",
    ])
    .unwrap();
    assert_ne!(code, 0);
    assert!(err.contains("does not grant: kv"), "{err}");
}
