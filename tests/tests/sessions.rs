//! Viewer sessions across proxy nodes: two `manifold` processes sharing one real
//! `redis-server` and one session key serve a viewer the same personalized manifests
//! whichever node answers, honour each other's session tokens (and neither honours a forged
//! one), ask the ad server once per break and fire each beacon once between them. With the
//! embedded memory store each node keeps its own sessions (the control). A Redis that does
//! not answer costs the tenant's fail policy, promptly, and sessions work once it is back.

use manifold_e2e::{creatives, free_port, plugin, Origin, Proxy, Redis};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The HMAC key both nodes sign and verify session tokens with.
const KEY: &str = "e2e-shared-session-key-0123456789";

fn sessions(store: &str) -> String {
    format!("[sessions]\nkey = \"{KEY}\"\nstore = \"{store}\"\nttl = \"10m\"\n\n")
}

/// A tenant running `scte35-breaks` (every break filled with `ad10`) with the given fail
/// policy; creatives in all three packagings. Plugin deadlines here are generous: these
/// tests run debug builds side by side on small machines, and are not about deadlines.
fn breaks_tenant(id: &str, origin: &Origin, fail: &str) -> String {
    let t = format!(
        "[[tenants]]\nid = \"{id}\"\norigin = \"http://{}\"\n\
         [tenants.plugin]\nfile = \"{}\"\nconfig = \"pod=ad10\"\nfail = \"{fail}\"\n\
         deadline = \"1s\"\n",
        origin.addr,
        plugin("scte35_breaks").display(),
    );
    t + &creatives(&["ad10", "slate"], true, true)
}

/// A tenant running `scte35-breaks` with the origin simulator's VAST server deciding the ads.
fn vast_tenant(origin: &Origin) -> String {
    let t = format!(
        "[[tenants]]\nid = \"t\"\norigin = \"http://{o}\"\n\
         [tenants.plugin]\nfile = \"{}\"\ncapabilities = [\"ads\", \"log\"]\nfail = \"closed\"\n\
         deadline = \"1s\"\n\
         [tenants.ad_server]\nurl = \"http://{o}/vast?dur=[DURATION]&sid=[SESSION_ID]\"\n\
         timeout = \"300ms\"\nbudget = \"600ms\"\n",
        plugin("scte35_breaks").display(),
        o = origin.addr,
    );
    t + &creatives(&["ad10", "ad15", "ad30", "slate"], true, false)
}

/// 2 s segments, a 40 s window over segments 0..20; a 10 s break starts at 26 s (segment 13)
/// and stays in the window for the first 26 s of the run.
fn live_origin() -> Origin {
    Origin::live(40, 20, 26, 60, 10).unwrap()
}

struct Resp {
    status: u16,
    /// The `manifold-plugin` header.
    plugin: String,
    /// The URL after redirects.
    url: String,
    body: String,
}

async fn get(url: &str) -> Resp {
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    Resp {
        status: r.status().as_u16(),
        plugin: r
            .headers()
            .get("manifold-plugin")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<none>")
            .to_string(),
        url: r.url().to_string(),
        body: r.text().await.expect("body"),
    }
}

/// A new session from a master playlist: its URL prefix (`/t/~<token>`) and the session's
/// media playlist URIs by rendition (`v0`, `a0`, ...).
async fn master(node: &Proxy, path: &str) -> (String, BTreeMap<String, String>) {
    let r = get(&node.url(path)).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    assert!(r.plugin.starts_with("ok"), "{path}: {}", r.plugin);
    let mut uris = BTreeMap::new();
    for line in r.body.lines() {
        let uri = match line.split_once("URI=\"") {
            Some((_, rest)) => rest.split('"').next().unwrap_or(""),
            None if !line.starts_with('#') => line,
            None => continue,
        };
        if let Some(file) = uri.split('?').next().and_then(|p| p.rsplit('/').next()) {
            uris.insert(file.trim_end_matches(".m3u8").to_string(), uri.to_string());
        }
    }
    let first = uris.values().next().expect("variants").clone();
    let prefix = first[..first.find("/live/").expect("session URI")].to_string();
    assert!(prefix.starts_with("/t/~"), "{first}");
    assert!(uris.values().all(|u| u.starts_with(&prefix)), "{uris:?}");
    (prefix, uris)
}

/// The manifest with the origin's `MPD@publishTime` blanked: the simulator stamps every
/// response with the time it was made and each node fetches the origin on its own, so that
/// attribute is the one thing two nodes' MPDs legitimately differ in.
fn normalized(body: &str) -> String {
    let Some(at) = body.find("publishTime=\"") else {
        return body.to_string();
    };
    let value = at + "publishTime=\"".len();
    let end = value + body[value..].find('"').unwrap_or(0);
    format!("{}*{}", &body[..value], &body[end..])
}

/// Where the origin's live window stands in a manifest: the media sequence and last segment
/// of a playlist; the segment timelines of an MPD (constant for `$Number$` templates).
fn window(body: &str) -> String {
    if body.starts_with("#EXTM3U") {
        let seq = body
            .lines()
            .find(|l| l.starts_with("#EXT-X-MEDIA-SEQUENCE:"))
            .unwrap_or("");
        let last = body
            .lines()
            .rfind(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        format!("{seq} {last}")
    } else {
        body.split("<S ")
            .skip(1)
            .map(|s| s.split("/>").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(";")
    }
}

fn media_sequence(body: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|s| s.trim().parse().ok())
}

/// The first line where two manifests differ, for the failure message.
fn first_difference(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let i = (0..la.len().max(lb.len()))
        .find(|&i| la.get(i) != lb.get(i))
        .unwrap_or(0);
    format!(
        "line {}: {:?} vs {:?}\n--- first:\n{a}\n--- second:\n{b}",
        i + 1,
        la.get(i),
        lb.get(i)
    )
}

/// Fetches `path` from `first`, then at once from `second`, and returns the manifest both
/// serve. Different bytes for the same live window fail the test. A different window means it
/// slid between the two fetches (or one node's manifest cache is a refresh behind): the pair
/// is fetched again once the nodes show the same window, which they must within 3 s.
async fn agree(first: &Proxy, second: &Proxy, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let x = get(&first.url(path)).await;
        let y = get(&second.url(path)).await;
        for (node, r) in [("first", &x), ("second", &y)] {
            assert_eq!(r.status, 200, "{path} from the {node} node: {}", r.body);
            assert!(
                r.plugin.starts_with("ok"),
                "{path} from the {node} node: manifold-plugin: {}",
                r.plugin
            );
        }
        let (nx, ny) = (normalized(&x.body), normalized(&y.body));
        if nx == ny {
            return nx;
        }
        assert_ne!(
            window(&x.body),
            window(&y.body),
            "{path}: the nodes serve the same live window differently: {}",
            first_difference(&nx, &ny)
        );
        assert!(
            Instant::now() < deadline,
            "{path}: the nodes' live windows did not meet within 3 s: {}",
            first_difference(&nx, &ny)
        );
        // waiting for a window to slide (or a node's cached copy to expire), not a guess
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two nodes with one Redis: viewers who started on either node get, from either node,
/// byte-identical stitched media playlists (HLS TS, CMAF video and audio) and MPDs
/// (`$Number$` and SegmentTimeline), reload after reload as the live window slides, each
/// rendition first laid out by one node or the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sharing_redis_serve_a_viewer_identical_manifests() {
    let origin = live_origin();
    let redis = Redis::start().unwrap();
    let toml = sessions(&redis.url()) + &breaks_tenant("t", &origin, "closed");
    let a = Proxy::start(&toml).unwrap();
    let b = Proxy::start(&toml).unwrap();

    // an HLS TS viewer and a CMAF viewer start on A; the masters of their sessions are the
    // same from B
    let (ts, ts_uris) = master(&a, "/t/live/hls/master.m3u8").await;
    let (cmaf, cmaf_uris) = master(&a, "/t/live/cmaf/master.m3u8").await;
    assert!(cmaf_uris.contains_key("a0"), "demuxed audio: {cmaf_uris:?}");
    for (prefix, m) in [(&ts, "hls"), (&cmaf, "cmaf")] {
        agree(&b, &a, &format!("{prefix}/live/{m}/master.m3u8")).await;
    }
    // two DASH viewers: one starts on B, one on A; the MPD redirects into a new session
    let mut dash = Vec::new();
    for (node, mpd) in [(&b, "manifest.mpd"), (&a, "timeline.mpd")] {
        let r = get(&node.url(&format!("/t/live/dash/{mpd}"))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let path = &r.url[r.url.find("/t/~").expect("redirected into a session")..];
        dash.push(path.to_string());
    }

    let mut paths: Vec<(String, &str)> = ["v0", "v1", "v2"]
        .iter()
        .map(|r| (ts_uris[*r].clone(), ts.as_str()))
        .chain(
            ["v1", "a0"]
                .iter()
                .map(|r| (cmaf_uris[*r].clone(), cmaf.as_str())),
        )
        .collect();
    for p in &dash {
        let prefix = &p[..p.find("/live/").unwrap()];
        paths.push((p.clone(), prefix));
    }

    // reloads, as players make them, for 10 s
    let started = Instant::now();
    let mut rounds = 0;
    let mut ts_windows = BTreeSet::new();
    while rounds < 3 || started.elapsed() < Duration::from_secs(10) {
        let round = Instant::now();
        for (i, (path, prefix)) in paths.iter().enumerate() {
            // which node answers first alternates by rendition and by round: in round 0 half
            // the renditions are laid out by A and half by B
            let (first, second) = if (i + rounds) % 2 == 0 {
                (&b, &a)
            } else {
                (&a, &b)
            };
            let body = agree(first, second, path).await;
            if body.starts_with("#EXTM3U") {
                assert!(
                    body.contains(&format!("{prefix}/ads/ad10/")),
                    "{path}: the break is stitched with the session's ad: {body}"
                );
                assert!(body.contains("#EXT-X-DISCONTINUITY"), "{path}: {body}");
            } else {
                assert!(
                    body.contains("id=\"1000~ad0\"")
                        && body.contains(&format!("<BaseURL>{prefix}/ads/ad10/dash/")),
                    "{path}: the break is an ad period in the session: {body}"
                );
            }
            if i == 1 {
                ts_windows.insert(media_sequence(&body).expect("media sequence"));
            }
        }
        rounds += 1;
        if let Some(rest) = Duration::from_secs(1).checked_sub(round.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    // the comparisons spanned several window slides
    assert!(ts_windows.len() >= 3, "windows seen: {ts_windows:?}");
}

/// A session started on one node is the viewer's on the other (same key); a token that was
/// altered, or made up, is refused by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_one_node_are_honoured_by_the_other_and_forged_ones_by_neither() {
    let origin = live_origin();
    let redis = Redis::start().unwrap();
    let toml = sessions(&redis.url()) + &breaks_tenant("t", &origin, "open");
    let a = Proxy::start(&toml).unwrap();
    let b = Proxy::start(&toml).unwrap();
    let (prefix, uris) = master(&a, "/t/live/hls/master.m3u8").await;
    let token = prefix.trim_start_matches("/t/~").to_string();
    let v1 = uris["v1"].clone();
    let rest = &v1[prefix.len()..];
    for node in [&b, &a] {
        let r = get(&node.url(&v1)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.plugin.starts_with("ok"), "{}", r.plugin);
        let r = get(&node.url(&format!("{prefix}/live/hls/master.m3u8"))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.plugin.starts_with("ok"), "{}", r.plugin);
    }
    // one character changed in the session id, one in the signature; and a made-up token
    let alter = |i: usize| {
        let mut t = token.clone().into_bytes();
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(t).unwrap()
    };
    let forged = [alter(3), alter(token.len() - 3), "A".repeat(token.len())];
    for f in &forged {
        assert_ne!(f, &token);
        for node in [&a, &b] {
            for path in [
                format!("/t/~{f}{rest}"),
                format!("/t/~{f}/live/hls/master.m3u8"),
                format!("/t/~{f}/live/dash/manifest.mpd"),
            ] {
                let r = get(&node.url(&path)).await;
                assert_eq!(r.status, 403, "{path}: {}", r.body);
                assert!(r.body.contains("invalid session"), "{}", r.body);
            }
        }
    }
}

/// The ad (not slate) segment URIs of a media playlist, and its creatives in play order.
fn ads(media: &str) -> (Vec<String>, Vec<String>) {
    let uris: Vec<String> = media
        .lines()
        .filter(|l| l.contains("/ads/") && !l.contains("/ads/slate/"))
        .map(str::to_string)
        .collect();
    let mut order: Vec<String> = Vec::new();
    for u in &uris {
        let name = u.split("/ads/").nth(1).and_then(|r| r.split('/').next());
        if let Some(name) = name.filter(|n| order.last().map(String::as_str) != Some(n)) {
            order.push(name.to_string());
        }
    }
    (uris, order)
}

/// One viewer, two nodes with the given session store: the session starts on A, A serves
/// rendition v1 and B rendition v0, then the viewer fetches every ad segment through both
/// nodes at once. Returns the ad server requests and the beacon hits once they settle.
async fn one_viewer_two_nodes(store: Option<&Redis>) -> (u64, BTreeMap<String, u64>) {
    // an 80 s window over segments 0..30 (slack for a slow start); a 26 s break at segment 13
    // (26 s) is all in it
    let origin = Origin::live(60, 40, 26, 600, 26).unwrap();
    let store = store.map_or("memory".to_string(), Redis::url);
    let toml = sessions(&store) + &vast_tenant(&origin);
    let a = Proxy::start(&toml).unwrap();
    let b = Proxy::start(&toml).unwrap();
    let (_, uris) = master(&a, "/t/live/hls/master.m3u8").await;
    let mut pod = Vec::new();
    for (node, r) in [(&a, "v1"), (&b, "v0")] {
        let m = get(&node.url(&uris[r])).await;
        assert_eq!(m.status, 200, "{}", m.body);
        assert!(m.plugin.starts_with("ok"), "{}", m.plugin);
        // the simulator's pod for 26 s: ad15 then ad10
        let (segments, order) = ads(&m.body);
        assert_eq!(order, ["ad15", "ad10"], "{r}: {}", m.body);
        pod.extend(segments);
    }
    assert!(origin.beacons().await.is_empty());
    for u in &pod {
        let (ua, ub) = (a.url(u), b.url(u));
        let (x, y) = tokio::join!(get(&ua), get(&ub));
        assert_eq!((x.status, y.status), (200, 200), "{u}");
    }
    // every event of both ads fires (beacons go out in the background); then anything
    // that would fire twice has had time to
    let expected = 12;
    let deadline = Instant::now() + Duration::from_secs(10);
    while origin.beacons().await.len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fired = origin.beacons().await;
    assert_eq!(fired.len(), expected, "{fired:?}");
    (origin.count("/vast").await.unwrap(), fired)
}

/// With Redis the nodes share the viewer's ad decision and beacon ledger: the ad server is
/// asked once, and each impression and quartile beacon fires once, although every ad segment
/// was requested from both nodes at the same moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_the_ad_server_is_asked_once_and_beacons_fire_once_across_nodes() {
    let redis = Redis::start().unwrap();
    let (vast, fired) = one_viewer_two_nodes(Some(&redis)).await;
    assert_eq!(vast, 1, "one ad decision for the viewer's break");
    assert!(fired.values().all(|n| *n == 1), "{fired:?}");
}

/// The control: with the embedded memory store (same key, so the token is valid on both)
/// each node keeps its own session, so each asks the ad server and fires every beacon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_memory_stores_each_node_decides_and_fires_on_its_own() {
    let (vast, fired) = one_viewer_two_nodes(None).await;
    assert_eq!(vast, 2, "each node decided the break");
    assert!(fired.values().all(|n| *n == 2), "{fired:?}");
}

/// The fail policies while Redis does not answer: the origin's manifests with the reason, or
/// 503, promptly; a tenant without a plugin does not notice.
async fn fail_policies_apply_promptly(proxy: &Proxy) {
    for path in [
        "/live/hls/master.m3u8",
        "/live/hls/v1.m3u8",
        "/live/cmaf/a0.m3u8",
        "/live/dash/manifest.mpd",
    ] {
        let started = Instant::now();
        let r = get(&proxy.url(&format!("/t{path}"))).await;
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(
            r.plugin, "failed; reason=session-store; served=origin",
            "{path}"
        );
        assert!(!r.body.contains("/~"), "{path}: the origin's manifest");
        assert!(took < Duration::from_secs(1), "{path}: took {took:?}");

        let started = Instant::now();
        let r = get(&proxy.url(&format!("/closed{path}"))).await;
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        assert_eq!(r.plugin, "failed; reason=session-store; served=503");
        assert!(took < Duration::from_secs(1), "{path}: took {took:?}");

        let r = get(&proxy.url(&format!("/plain{path}"))).await;
        assert_eq!(r.status, 200, "{path}");
    }
}

/// Sessions work again (within 5 s of Redis listening, without a restart).
async fn sessions_resume(proxy: &Proxy) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(&proxy.url("/t/live/hls/master.m3u8")).await;
        if r.plugin.starts_with("ok") {
            let (_, uris) = master(proxy, "/t/live/hls/master.m3u8").await;
            let m = get(&proxy.url(&uris["v1"])).await;
            assert_eq!(m.status, 200);
            assert!(m.plugin.starts_with("ok"), "{}", m.plugin);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sessions did not resume within 5 s of Redis listening: {}",
            r.plugin
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Redis not answering, at start-up or later: the proxy starts, a plugin tenant's manifests
/// get its fail policy promptly, other tenants are unaffected, and once Redis listens again
/// sessions work without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_costs_the_fail_policy_promptly_and_sessions_resume_when_it_is_back() {
    let origin = live_origin();
    let port = free_port();
    let toml = sessions(&format!("redis://127.0.0.1:{port}"))
        + &breaks_tenant("t", &origin, "open")
        + &breaks_tenant("closed", &origin, "closed")
        + &format!(
            "[[tenants]]\nid = \"plain\"\norigin = \"http://{}\"\n",
            origin.addr
        );
    let proxy = Proxy::start(&toml).expect("the proxy starts while Redis is down");
    fail_policies_apply_promptly(&proxy).await;
    let r = get(&proxy.url("/t/live/hls/master.m3u8")).await;
    let direct = get(&origin.url("/live/hls/master.m3u8")).await;
    assert_eq!(r.body, direct.body, "fail open serves the origin's master");

    let redis = Redis::start_on(port).unwrap();
    sessions_resume(&proxy).await;
    // Redis goes away after the proxy connected to it, and comes back
    drop(redis);
    fail_policies_apply_promptly(&proxy).await;
    let _redis = Redis::start_on(port).unwrap();
    sessions_resume(&proxy).await;
}
