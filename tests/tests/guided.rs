//! Server-guided sessions over HTTP: the insertion mode chosen when a session starts and kept
//! for its life, the interstitial of a break the same on every reload and on two nodes
//! sharing Redis, the asset list of a mid-break join, the ad playlists under the session,
//! beacons once per session, and clear refusals of what does not exist.

use manifold_e2e::{creatives, plugin, Origin, Proxy, Redis};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const KEY: &str = "e2e-guided-session-key-0123456789";

/// A `player-select` tenant `t` filling every break from the simulator's VAST server.
fn tenant(origin: &Origin, store: &str) -> String {
    let t = format!(
        "[sessions]\nkey = \"{KEY}\"\nstore = \"{store}\"\nttl = \"10m\"\n\n\
         [[tenants]]\nid = \"t\"\norigin = \"http://{o}\"\n\
         [tenants.plugin]\nfile = \"{}\"\ncapabilities = [\"ads\", \"log\"]\nfail = \"closed\"\n\
         deadline = \"1s\"\n\
         [tenants.ssai]\ninsertion = \"player-select\"\n\
         [tenants.ad_server]\nurl = \"http://{o}/vast?dur=[DURATION]&sid=[SESSION_ID]\"\n\
         timeout = \"300ms\"\nbudget = \"600ms\"\n",
        plugin("scte35_breaks").display(),
        o = origin.addr,
    );
    t + &creatives(&["ad10", "ad15", "ad30", "slate"], true, false)
}

/// 2 s segments, a 40 s window; a 26 s break started 14 s ago (segment 13 of 0..20).
fn mid_break_origin() -> Origin {
    Origin::live(40, 20, 26, 600, 26).unwrap()
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    url: String,
    body: String,
}

async fn get(url: &str) -> Resp {
    let r = reqwest::Client::new()
        .get(url)
        .header("origin", "https://player.example")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        url: r.url().to_string(),
        body: r.text().await.expect("body"),
    }
}

/// A session started from the master with `query`: the session's `v0` media playlist URL.
async fn start(node: &Proxy, query: &str) -> String {
    let r = get(&node.url(&format!("/t/live/hls/master.m3u8{query}"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v0 = r
        .body
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("/v0.m3u8"))
        .expect("v0")
        .to_string();
    assert!(v0.starts_with("/t/~"), "{v0}");
    v0
}

/// The interstitial date ranges, with the node's own `scheme://host` taken out of their
/// (absolute) asset-list URIs: nodes behind one name get the same host from the viewer.
fn interstitials(body: &str) -> Vec<String> {
    body.lines()
        .filter(|l| l.contains("CLASS=\"com.apple.hls.interstitial\""))
        .map(|l| match l.find("X-ASSET-LIST=\"http://") {
            Some(i) => {
                let rest = &l[i + 21..];
                let path = &rest[rest.find('/').unwrap_or(0)..];
                format!("{}X-ASSET-LIST=\"{path}", &l[..i])
            }
            None => l.to_string(),
        })
        .collect()
}

/// The path of an absolute URL on the proxy.
fn path_of(url: &str) -> &str {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    &rest[rest.find('/').unwrap_or(0)..]
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let i = line
        .find(&format!(",{name}="))
        .or_else(|| line.find(&format!(":{name}=")))?;
    let rest = &line[i + name.len() + 2..];
    match rest.strip_prefix('"') {
        Some(q) => q.split('"').next(),
        None => rest.split(',').next(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_insertion_mode_is_chosen_when_a_session_starts_and_kept_for_its_life() {
    let origin = mid_break_origin();
    let proxy = Proxy::start(&tenant(&origin, "memory")).unwrap();
    let guided = start(&proxy, "?insertion=guided").await;
    let stitched = start(&proxy, "?insertion=stitched").await;
    let default = start(&proxy, "").await;
    let g = get(&proxy.url(&guided)).await;
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(interstitials(&g.body).len(), 1, "{}", g.body);
    assert!(
        !g.body.contains("/ads/"),
        "content stays in place:\n{}",
        g.body
    );
    for s in [&stitched, &default] {
        let r = get(&proxy.url(s)).await;
        assert!(interstitials(&r.body).is_empty(), "{}", r.body);
        assert!(r.body.contains("/ads/"), "stitched:\n{}", r.body);
    }
    // asking again on a later request changes nothing: the session chose
    let again = get(&proxy.url(&format!("{guided}&insertion=stitched"))).await;
    assert_eq!(interstitials(&again.body), interstitials(&g.body));
    // a value the tenant does not offer is refused, with the reason
    let bad = get(&proxy.url("/t/live/hls/master.m3u8?insertion=magic")).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("insertion"), "{}", bad.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_is_announced_identically_on_every_reload_and_by_two_nodes_sharing_redis() {
    let origin = mid_break_origin();
    let redis = Redis::start().unwrap();
    let toml = tenant(&origin, &redis.url());
    let (a, b) = (Proxy::start(&toml).unwrap(), Proxy::start(&toml).unwrap());
    let v0 = start(&a, "?insertion=guided").await;
    let first = get(&a.url(&v0)).await;
    let dr = interstitials(&first.body);
    assert_eq!(dr.len(), 1, "{}", first.body);
    let v1 = v0.replace("/v0.m3u8", "/v1.m3u8");
    for (node, path) in [(&b, &v0), (&a, &v1), (&b, &v1), (&a, &v0)] {
        let r = get(&node.url(path)).await;
        assert_eq!(interstitials(&r.body), dr, "{path}:\n{}", r.body);
    }
    // the asset list is the same decision on both nodes
    let list = attr(&dr[0], "X-ASSET-LIST").unwrap();
    let (la, lb) = (get(&a.url(list)).await, get(&b.url(list)).await);
    assert_eq!(la.status, 200, "{}", la.body);
    let uris = |body: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["ASSETS"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let u = a["URI"].as_str().unwrap();
                u[u.find("/t/~").unwrap()..].to_string()
            })
            .collect()
    };
    assert_eq!(uris(&la.body), uris(&lb.body));
}

/// The simulator's pod for 26 s is ad15 then ad10 (VAST); the viewer joins 14 s in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_break_join_gets_the_pod_placed_from_the_break_start_and_its_ads_under_the_session() {
    let origin = mid_break_origin();
    let proxy = Proxy::start(&tenant(&origin, "memory")).unwrap();
    let v0 = start(&proxy, "?insertion=guided").await;
    let m = get(&proxy.url(&v0)).await;
    let dr = interstitials(&m.body);
    assert_eq!(dr.len(), 1, "{}", m.body);
    let list = attr(&dr[0], "X-ASSET-LIST").unwrap().to_string();
    let r = get(&proxy.url(&format!("{list}?_HLS_start_offset=14.0&_HLS_primary_id=p1"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.headers["access-control-allow-origin"], "*",
        "asset lists are fetched cross-origin"
    );
    assert!(r.headers["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("private"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let assets = v["ASSETS"].as_array().unwrap();
    let durations: Vec<f64> = assets
        .iter()
        .map(|a| a["DURATION"].as_f64().unwrap())
        .collect();
    // the whole pod, so players place it at the break's start and start 14 s in: the rest
    // of ad15, then ad10 (players skip what passed by these durations)
    assert_eq!(durations.len(), 2, "{}", r.body);
    assert!((durations[0] - 15.0).abs() < 0.5 && (durations[1] - 10.0).abs() < 0.5);
    // each ad: a multivariant playlist under the session, its renditions VOD, its segments
    // the creative's, under the session, naming their slot
    let master = get(&proxy.url(path_of(assets[0]["URI"].as_str().unwrap()))).await;
    assert_eq!(master.status, 200, "{}", master.body);
    let rendition = master
        .body
        .lines()
        .find(|l| !l.starts_with('#'))
        .unwrap()
        .to_string();
    let base = &master.url[..master.url.rfind('/').unwrap() + 1];
    let media = get(&format!("{base}{rendition}")).await;
    assert!(media.body.contains("#EXT-X-ENDLIST"), "{}", media.body);
    let segs: Vec<&str> = media.body.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(!segs.is_empty());
    assert!(
        segs.iter()
            .all(|s| s.starts_with("/t/~") && s.contains("/ads/ad15/") && s.contains("mf_b=")),
        "{}",
        media.body
    );
    // the ad segments play from the cache and fire the session's beacons, once
    assert!(origin.beacons().await.is_empty());
    for _ in 0..2 {
        for s in &segs {
            assert_eq!(get(&proxy.url(s)).await.status, 200, "{s}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let all_fired = |f: &BTreeMap<String, u64>| f.keys().any(|k| k.ends_with("ad15.1/complete"));
    while !all_fired(&origin.beacons().await) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fired = origin.beacons().await;
    assert_eq!(
        fired.len(),
        6,
        "impression, start, quartiles, complete: {fired:?}"
    );
    assert!(fired.values().all(|n| *n == 1), "{fired:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guided_urls_that_name_nothing_are_refused_clearly() {
    let origin = mid_break_origin();
    let proxy = Proxy::start(&tenant(&origin, "memory")).unwrap();
    let v0 = start(&proxy, "?insertion=guided").await;
    let m = get(&proxy.url(&v0)).await;
    let list = attr(&interstitials(&m.body)[0], "X-ASSET-LIST")
        .unwrap()
        .to_string();
    let prefix = &list[..list.find("/~guided/").unwrap()];
    for (path, status) in [
        (format!("{list}?_HLS_start_offset=soon"), 400),
        (format!("{prefix}/~guided/ts/6e6f7065/assets.json"), 404),
        (format!("{prefix}/~guided/ts/zz/assets.json"), 404),
        (list.replace("assets.json", "7/master.m3u8"), 404),
        (list.replace("assets.json", "0/99.m3u8"), 404),
        (list.replace("/t/~", "/t/~forged"), 403),
    ] {
        let r = get(&proxy.url(&path)).await;
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(!r.body.trim().is_empty(), "{path}: says why");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guided_dash_session_announces_each_pod_as_an_alternative_mpd() {
    let origin = mid_break_origin();
    let toml = tenant(&origin, "memory").replace(
        "[tenants.ssai]\ninsertion = \"player-select\"\n",
        "[tenants.ssai]\ninsertion = \"guided\"\n",
    );
    let toml = toml.replace(
        &creatives(&["ad10", "ad15", "ad30", "slate"], true, false),
        &creatives(&["ad10", "ad15", "ad30", "slate"], true, true),
    );
    let proxy = Proxy::start(&toml).unwrap();
    let r = get(&proxy.url("/t/live/dash/manifest.mpd")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mpd = &r.body;
    let at = mpd
        .find("urn:mpeg:dash:event:alternativeMPD:insert:2025")
        .unwrap_or_else(|| panic!("no alternative-MPD event:\n{mpd}"));
    let event = &mpd[at..at + mpd[at..].find("</EventStream>").unwrap()];
    assert!(event.contains("returnOffset=\"25000\""), "{event}");
    assert!(!mpd.contains("~ad0"), "no pod stitched in:\n{mpd}");
    let uri = event
        .split("uri=\"")
        .nth(1)
        .and_then(|u| u.split('"').next())
        .unwrap();
    let again = get(&r.url).await;
    assert!(again.body.contains(uri), "the same event on a reload");
    let pod = get(&proxy.url(path_of(uri))).await;
    assert_eq!(pod.status, 200, "{}", pod.body);
    assert!(pod.body.contains("type=\"static\""), "{}", pod.body);
    assert!(pod.body.contains("/ads/ad15/dash/"), "{}", pod.body);
    assert!(pod.body.contains("mf_b=dash:"), "beacons: {}", pod.body);
}
