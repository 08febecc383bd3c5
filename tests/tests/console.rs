//! The operator console in headless Chromium against the demo's tenants: log in with the
//! token, every tenant listed with live figures, a plugin checked, deployed and rolled back
//! through the page, the session inspector showing the ads of a viewer who crossed a break,
//! the preview playing, the event view charting; a wrong or missing token shows nothing and
//! the API answers 401. The screenshots of each view land in `docs/console/`.

use manifold_e2e::browser::{drive_console, pinned_player};
use manifold_e2e::{demo_tenants, free_port, plugin, Origin, Proxy};
use serde_json::{json, Value};
use std::path::PathBuf;

const TOKEN: &str = "console-test-token";

/// A session of the `vast` tenant that crossed a break: its token, the creatives its break
/// played, and how many ad segments it fetched (which fire beacons).
async fn viewer_across_a_break(proxy: &Proxy) -> (String, Vec<String>) {
    let master = reqwest::get(proxy.url("/vast/live/hls/master.m3u8"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let media = master
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("/~"))
        .unwrap_or_else(|| panic!("no session URI in {master}"))
        .to_string();
    let token = media
        .split("/~")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_string();
    let body = reqwest::get(proxy.url(&media))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ads: Vec<&str> = body
        .lines()
        .filter(|l| l.contains("/ads/") && !l.contains("/ads/slate/"))
        .collect();
    assert!(!ads.is_empty(), "the break is in the window: {body}");
    let mut creatives: Vec<String> = Vec::new();
    for u in &ads {
        let name = u.split("/ads/").nth(1).and_then(|r| r.split('/').next());
        if let Some(n) = name.filter(|n| creatives.last().map(String::as_str) != Some(*n)) {
            creatives.push(n.to_string());
        }
    }
    // the viewer plays the first ad's first segments: impression and start fire
    for u in ads.iter().take(2) {
        let url = if u.starts_with('/') {
            proxy.url(u)
        } else {
            let base = media.rsplit_once('/').unwrap().0;
            proxy.url(&format!("{base}/{u}"))
        };
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
    }
    (token, creatives)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_and_steers_the_edge_in_a_real_browser() {
    // a 26 s break at 26 s, inside the 80 s window from the start
    let origin = Origin::live(60, 40, 26, 600, 26).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let toml = format!("[admin]\nlisten = \"{admin}\"\ntoken = \"{TOKEN}\"\n\n")
        + &demo_tenants(&origin, "500ms");
    let proxy = Proxy::start(&toml).unwrap();
    let (session, creatives) = viewer_across_a_break(&proxy).await;
    let shots = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/console"));
    let spec = json!({
        "admin": format!("http://{admin}"),
        "token": TOKEN,
        "tenant": "breaks",
        "session": {"tenant": "vast", "token": session},
        "upload": {"tenant": "breaks", "wasm": plugin("variant_filter")},
        "previewSeconds": 14,
        "screenshots": shots,
    });
    let out = tokio::task::spawn_blocking(move || drive_console(&spec))
        .await
        .unwrap()
        .unwrap();
    let s = &out["steps"];
    let all = serde_json::to_string_pretty(&out).unwrap();
    assert!(out["fatal"].is_null(), "{all}");

    // the page: served with a strict policy, asks for the token, shows nothing before
    assert_eq!(s["page"]["status"], 200, "{all}");
    let csp = s["page"]["csp"].as_str().unwrap_or_default();
    for d in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(d), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(
        (&s["page"]["loginShown"], &s["page"]["navShown"]),
        (&json!(true), &json!(false)),
        "{all}"
    );
    for call in ["edge", "tenants", "session"] {
        assert_eq!(s["noToken"][call], 401, "{call} without a token: {all}");
    }
    // a wrong token: refused, and still nothing shown
    assert_eq!(s["wrongToken"]["edge"], 401, "{all}");
    assert_eq!(s["wrongToken"]["navShown"], false, "{all}");
    assert_eq!(s["wrongToken"]["tenantRows"], 0, "{all}");
    assert!(
        s["wrongToken"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("401")),
        "{all}"
    );

    // every tenant of the demo, with its plugin and live figures
    let ids: Vec<&str> = s["tenants"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in [
        "demo", "breaks", "vast", "guided", "preroll", "mobile", "override",
    ] {
        assert!(ids.contains(&t), "{t} missing from {ids:?}");
    }
    let row = |id: &str| -> Vec<String> {
        let i = ids.iter().position(|x| *x == id).unwrap();
        s["tenants"]["rows"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_string())
            .collect()
    };
    let vast = row("vast");
    assert!(vast[3].starts_with("v1 sha256:"), "plugin column: {vast:?}");
    assert_eq!(vast[4], "ads, log", "{vast:?}");
    assert_eq!(vast[5], "open", "{vast:?}");
    assert!(vast[7].ends_with('%'), "cache hit ratio: {vast:?}");
    assert!(vast[8].contains("ms /"), "plugin p50/p99: {vast:?}");
    assert_eq!(row("demo")[3], "pass-through");

    // plugins: a bad upload is refused with the reason, nothing deployed
    let before = &s["deploy"]["before"];
    assert!(
        s["badUpload"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("400")),
        "{all}"
    );
    assert_eq!(s["badUpload"]["deployEnabled"], false, "{all}");
    assert_eq!(
        &s["badUpload"]["active"], before,
        "a refused upload deploys nothing"
    );
    // a good one: checked first (world, imports), then active; the rollback restores it
    let check = s["check"]["result"].as_str().unwrap_or_default();
    assert!(
        check.contains("Valid plugin") && check.contains("world"),
        "{check}"
    );
    assert_eq!(s["check"]["deployEnabled"], true);
    let after = &s["deploy"]["after"];
    assert_ne!(after["digest"], before["digest"], "{all}");
    assert_eq!(
        after["version"].as_u64(),
        before["version"].as_u64().map(|v| v + 1),
        "{all}"
    );
    assert!(
        s["deploy"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("v{}", after["version"]))),
        "{all}"
    );
    assert_eq!(s["rollback"]["after"]["digest"], before["digest"], "{all}");

    // the session inspector: the viewer's break, its ads in pod order, fired beacons
    assert_eq!(s["session"]["mode"], "stitched", "{all}");
    let breaks = s["session"]["breaks"].as_array().unwrap();
    let filled: Vec<&Value> = breaks
        .iter()
        .filter(|b| !b["ads"].as_array().unwrap().is_empty())
        .collect();
    assert_eq!(filled.len(), 1, "{all}");
    assert!(
        breaks.iter().all(|b| b["id"] != "~start"),
        "the session's start is not a break: {all}"
    );
    let shown: Vec<&str> = filled[0]["ads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[2].as_str().unwrap())
        .collect();
    assert_eq!(shown, creatives, "the ads the viewer was served: {all}");
    let beacons = filled[0]["beacons"][0].as_str().unwrap_or_default();
    assert!(beacons.contains(":0:impression"), "{beacons}");
    assert!(s["session"]["manifests"].as_u64() >= Some(1), "{all}");
    assert!(s["session"]["diffLines"].as_u64() > Some(0), "{all}");

    // the preview: the personalized stream plays in hls.js, its ads on the timeline, beside
    // the same stream through the pass-through tenant
    let p = &s["preview"];
    assert_eq!(p["main"]["started"], true, "{all}");
    assert_eq!(p["main"]["errors"], json!([]), "{all}");
    assert!(p["main"]["time"].as_f64() > Some(3.0), "{all}");
    assert!(p["timelineAds"].as_u64() > Some(0), "{all}");
    assert_eq!(p["compareWith"], "tenant:demo", "{all}");
    assert_eq!(p["compare"]["started"], true, "{all}");
    let p = &s["previewShaka"];
    assert_eq!(p["main"]["started"], true, "Shaka: {all}");
    assert_eq!(p["main"]["errors"], json!([]), "Shaka: {all}");
    assert!(p["main"]["time"].as_f64() > Some(3.0), "Shaka: {all}");
    assert!(p["timelineAds"].as_u64() > Some(0), "Shaka: {all}");
    assert_eq!(p["compare"]["started"], true, "Shaka: {all}");
    // and the tenants view counts the preview's requests, through both tenants
    let watched = s["tenantsWatched"].as_array().unwrap();
    for id in ["breaks", "demo"] {
        let i = ids.iter().position(|x| *x == id).unwrap();
        let rate: f64 = watched[i][6].as_str().unwrap_or("").parse().unwrap_or(0.0);
        assert!(rate > 0.0, "{id}: req/s {:?}", watched[i]);
    }

    // the event view: the viewers watching (this test's session and the preview's)
    let events = s["events"].as_array().unwrap();
    let chart = |name: &str| {
        events
            .iter()
            .find(|c| c["chart"].as_str().is_some_and(|c| c.starts_with(name)))
            .unwrap_or_else(|| panic!("no {name} chart: {all}"))
    };
    assert!(chart("viewers")["value"].as_f64() >= Some(1.0), "{all}");
    assert!(chart("requests")["value"].as_f64() > Some(0.0), "{all}");
    assert_eq!(chart("requests")["points"], 1, "{all}");

    // logging out forgets the token
    assert_eq!(s["logout"]["loginShown"], true, "{all}");
    assert_eq!(s["logout"]["stored"], 0, "{all}");
    assert_eq!(s["logout"]["tenantRows"], 0, "{all}");
    assert_eq!(
        out["http"].as_array().map(|h| h
            .iter()
            .filter(|r| r["status"] != 401 && r["status"] != 400)
            .count()),
        Some(0),
        "{all}"
    );
}

/// The console embeds the players the browser tests pin: the preview plays what is tested.
#[test]
fn the_console_players_are_the_pinned_ones() {
    let ui = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../proxy/ui/vendor"));
    for (vendored, pinned) in [
        ("hls.min.js", "hls.js/dist/hls.min.js"),
        (
            "shaka-player.compiled.js",
            "shaka-player/dist/shaka-player.compiled.js",
        ),
    ] {
        let a = std::fs::read(ui.join(vendored)).unwrap();
        let b = std::fs::read(pinned_player(pinned))
            .unwrap_or_else(|e| panic!("{pinned}: {e} (scripts/setup.sh installs the players)"));
        assert!(
            a == b,
            "proxy/ui/vendor/{vendored} differs from tests/browser's {pinned}: copy it again"
        );
    }
}
