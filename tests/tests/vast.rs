//! VAST ad decisions end to end: the `scte35-breaks` plugin asks the host for each break's ads,
//! the host asks the origin simulator's VAST server, and the viewer's playlist gets the
//! creatives the VAST named; beacons fire once when the viewer fetches the ad segments; a
//! slow, empty or broken ad server costs a slate, never an error or a late response.

use manifold_e2e::{creatives, dash_player, plugin, Origin, Proxy};
use reqwest::header::HeaderMap;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

async fn get(url: &str) -> (u16, HeaderMap, String) {
    let r = reqwest::get(url).await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.expect("body"))
}

fn hdr(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<none>")
        .to_string()
}

/// A tenant running `scte35-breaks` with the origin's VAST server (`query` appended). The
/// plugin deadline (250 ms) is shorter than the ad server's budget (600 ms): waiting on the ad
/// server does not count against it.
fn tenant(id: &str, origin: &Origin, query: &str) -> String {
    let t = format!(
        "[[tenants]]\nid = \"{id}\"\norigin = \"http://{o}\"\n\
         [tenants.plugin]\nfile = \"{}\"\ncapabilities = [\"ads\", \"log\"]\nfail = \"closed\"\n\
         deadline = \"250ms\"\n\
         [tenants.ad_server]\nurl = \"http://{o}/vast?dur=[DURATION]&sid=[SESSION_ID]{query}\"\n\
         timeout = \"300ms\"\nbudget = \"600ms\"\n",
        plugin("scte35_breaks").display(),
        o = origin.addr,
    );
    t + &creatives(&["ad10", "ad15", "ad30", "slate"], true, true)
}

/// A new session's media playlist URIs by rendition (`v0`, `v1`, `v2`).
async fn session(proxy: &Proxy, tenant: &str) -> BTreeMap<String, String> {
    let (s, _, master) = get(&proxy.url(&format!("/{tenant}/live/hls/master.m3u8"))).await;
    assert_eq!(s, 200, "{master}");
    let uris: BTreeMap<String, String> = master
        .lines()
        .filter(|l| l.starts_with(&format!("/{tenant}/~")))
        .filter_map(|l| {
            let file = l.split('?').next()?.rsplit('/').next()?;
            Some((file.trim_end_matches(".m3u8").to_string(), l.to_string()))
        })
        .collect();
    assert_eq!(uris.len(), 3, "{master}");
    uris
}

/// The ad segment URIs of a media playlist, and its creatives in play order.
fn ads(media: &str) -> (Vec<String>, Vec<String>) {
    let uris: Vec<String> = media
        .lines()
        .filter(|l| l.contains("/ads/"))
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

/// Seconds of ad (and slate) segments in a media playlist.
fn ad_seconds(media: &str) -> f64 {
    let mut last = 0.0;
    let mut total = 0.0;
    for l in media.lines() {
        if let Some(d) = l.strip_prefix("#EXTINF:") {
            last = d
                .split(',')
                .next()
                .and_then(|d| d.parse().ok())
                .unwrap_or(0.0);
        } else if l.contains("/ads/") {
            total += last;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vast_pod_is_stitched_decided_once_and_beacons_fire_once() {
    // an 80 s window over segments 0..30 (slack for a slow start); a 26 s break at segment 13
    // (26 s) is all in it, and
    // the next one too far off to be announced (and prefetched) while the test runs
    let origin = Origin::live(60, 40, 26, 600, 26).unwrap();
    let proxy = Proxy::start(&tenant("t", &origin, "")).unwrap();
    let renditions = session(&proxy, "t").await;
    let (s, h, media) = get(&proxy.url(&renditions["v1"])).await;
    assert_eq!(s, 200, "{media}");
    assert!(hdr(&h, "manifold-plugin").starts_with("ok"), "{h:?}");
    // the VAST for 26 s is ad15 then ad10 (the simulator's pod), each in the viewer's rendition
    let (uris, order) = ads(&media);
    assert_eq!(order[..2], ["ad15", "ad10"], "{media}");
    assert!(order[2..].iter().all(|c| c == "slate"), "{media}");
    assert!(uris.iter().all(|u| u.contains("/hls/v1/")), "{media}");
    assert_eq!(origin.count("/vast").await.unwrap(), 1);

    // reloads and the other renditions reuse the session's decision
    for r in ["v1", "v0", "v2", "v1", "v0"] {
        let (s, _, m) = get(&proxy.url(&renditions[r])).await;
        assert_eq!(s, 200);
        assert_eq!(ads(&m).1[..2], ["ad15", "ad10"], "{r}: {m}");
    }
    assert_eq!(origin.count("/vast").await.unwrap(), 1);

    // the beacon parameters on anything but the slot's own ad segment fire nothing: a content
    // segment, a path that is not there
    for u in uris.iter().filter(|u| !u.contains("/slate/")) {
        let (path, query) = u.split_once('?').expect("a tracked ad segment");
        let session = &path[..path.find("/ads/").expect("an ad path")];
        for other in [
            format!("{session}/live/hls/v1/12.ts?{query}"),
            format!("{session}/ads/nothing/here.ts?{query}"),
        ] {
            let (s, _, _) = get(&proxy.url(&other)).await;
            assert!(s == 200 || s == 404, "{other}: {s}");
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(origin.beacons().await.is_empty());

    // the viewer plays the pod: every beacon of both ads fires, once
    for u in uris.iter().filter(|u| !u.contains("/slate/")) {
        let (s, _, _) = get(&proxy.url(u)).await;
        assert_eq!(s, 200, "{u}");
    }
    let expected: Vec<String> = ["ad15.1", "ad10.2"]
        .iter()
        .flat_map(|ad| {
            [
                "impression",
                "start",
                "firstQuartile",
                "midpoint",
                "thirdQuartile",
                "complete",
            ]
            .map(|e| format!("/beacon/{ad}/{e}"))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fired = origin.beacons().await;
    while fired.len() < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fired = origin.beacons().await;
    }
    assert_eq!(fired.keys().cloned().collect::<Vec<_>>(), {
        let mut e = expected.clone();
        e.sort();
        e
    });
    // the same segments again, and another rendition's: nothing fires twice
    let (_, _, v0) = get(&proxy.url(&renditions["v0"])).await;
    for u in uris.iter().chain(&ads(&v0).0) {
        get(&proxy.url(u)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fired = origin.beacons().await;
    assert!(fired.values().all(|n| *n == 1), "{fired:?}");
    assert_eq!(fired.len(), expected.len());

    // a second viewer gets a decision of its own
    let other = session(&proxy, "t").await;

    let (_, _, m) = get(&proxy.url(&other["v2"])).await;
    assert_eq!(ads(&m).1[..2], ["ad15", "ad10"], "{m}");
    assert_eq!(origin.count("/vast").await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_slow_or_broken_ad_server_gives_slate_in_time() {
    // segments 10..20 are live; a 10 s break starts at segment 13
    let origin = Origin::live(40, 10, 26, 60, 10).unwrap();
    let toml = tenant("empty", &origin, "&mode=empty")
        + &tenant("slow", &origin, "&mode=slow&delay_ms=5000")
        + &tenant("bad", &origin, "&mode=malformed")
        + &tenant("good", &origin, "");
    let proxy = Proxy::start(&toml).unwrap();
    // the control: this break gets ad10 from the VAST
    let (_, _, m) = get(&proxy.url(&session(&proxy, "good").await["v1"])).await;
    assert_eq!(ads(&m).1, ["ad10"], "{m}");
    for t in ["empty", "slow", "bad"] {
        let v1 = &session(&proxy, t).await["v1"];
        let asked = origin.count("/vast").await.unwrap();
        let started = Instant::now();
        let (s, h, media) = get(&proxy.url(v1)).await;
        let took = started.elapsed();
        assert_eq!(s, 200, "{t}: {media}");
        assert!(hdr(&h, "manifold-plugin").starts_with("ok"), "{t}: {h:?}");
        // the budget is 600 ms: the response does not wait for the ad server beyond it
        assert!(took < Duration::from_millis(1500), "{t}: took {took:?}");
        assert_eq!(origin.count("/vast").await.unwrap(), asked + 1, "{t}");
        assert_eq!(ads(&media).1, ["slate"], "{t}: {media}");
        let secs = ad_seconds(&media);
        assert!(
            (secs - 10.0).abs() < 0.01,
            "{t}: {secs} s of slate: {media}"
        );
        // the failed decision stands for the session: a reload does not ask again
        let started = Instant::now();
        let (s, _, again) = get(&proxy.url(v1)).await;
        assert_eq!(s, 200);
        assert_eq!(ads(&again).1, ["slate"], "{t}: {again}");
        assert!(started.elapsed() < Duration::from_millis(300), "{t}");
        assert_eq!(origin.count("/vast").await.unwrap(), asked + 1, "{t}");
    }
    assert!(origin.beacons().await.is_empty());
}

/// A break announced ahead: each session's ad request comes at its own point of the prefetch
/// window, all before the break, and none at the break itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_breaks_are_decided_ahead_spread_over_the_window() {
    // live at 30 s; a 10 s break at 40 s, announced 8 s ahead (visible from ~34 s)
    let origin = Origin::start(&[
        "--elapsed",
        "30",
        "--ad-first",
        "40",
        "--ad-every",
        "120",
        "--ad-duration",
        "10",
        "--ad-announce",
        "8",
    ])
    .unwrap();
    let toml = tenant("t", &origin, "").replace(
        "budget = \"600ms\"\n",
        "budget = \"600ms\"\nprefetch_window = \"4s\"\n",
    );
    assert!(toml.contains("prefetch_window"), "{toml}");
    let proxy = Proxy::start(&toml).unwrap();
    let mut viewers = Vec::new();
    for _ in 0..12 {
        viewers.push(session(&proxy, "t").await["v0"].clone());
    }
    // wait for the announcement, then every viewer loads its playlist once
    let started = Instant::now();
    loop {
        let (_, _, m) = get(&proxy.url(&viewers[0])).await;
        if m.contains("PLANNED-DURATION") && !m.contains("/ads/") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no announcement: {m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for v in &viewers[1..] {
        get(&proxy.url(v)).await;
    }
    // the ad server sees them one by one, not all at once
    let mut seen = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(6) {
        seen.push((t0.elapsed(), origin.count("/vast").await.unwrap()));
        if seen.last().unwrap().1 >= 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, total) = *seen.last().unwrap();
    assert_eq!(total, 12, "every session decided ahead: {seen:?}");
    let first_all = seen.iter().find(|(_, n)| *n >= 12).unwrap().0;
    let first_any = seen.iter().find(|(_, n)| *n >= 1).unwrap().0;
    assert!(
        first_all - first_any >= Duration::from_millis(1500),
        "requests spread over the window: {seen:?}"
    );
    // when the break starts, the decisions are there: no request at the break
    loop {
        let (_, _, m) = get(&proxy.url(&viewers[0])).await;
        if m.contains("/ads/") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "the break never came: {m}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for v in &viewers {
        let (_, _, m) = get(&proxy.url(v)).await;
        assert!(ads(&m).1.first().is_some_and(|c| c == "ad10"), "{m}");
    }
    assert_eq!(origin.count("/vast").await.unwrap(), 12);
}

/// DASH: the pod plays as ad periods; fetching their segments fires each beacon once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dash_ad_periods_fire_their_beacons_once() {
    let origin = Origin::live(60, 20, 26, 120, 26).unwrap();
    let proxy = Proxy::start(&tenant("t", &origin, "")).unwrap();
    let r = reqwest::get(proxy.url("/t/live/dash/manifest.mpd"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let url = r.url().clone();
    let mpd = dash_mpd_core::parse(&r.text().await.unwrap()).unwrap();
    let ids: Vec<_> = mpd.periods.iter().filter_map(|p| p.id.clone()).collect();
    assert!(
        ids.iter().any(|i| i == "1000~ad0") && ids.iter().any(|i| i == "1000~ad1"),
        "ad15 and ad10 periods: {ids:?}"
    );
    let periods = dash_player::plan(&mpd, &url, |a| a.representations.first()).unwrap();
    for p in periods.iter().filter(|p| p.id.contains("~ad")) {
        for t in &p.tracks {
            for (u, _, _) in &t.segments {
                let r = reqwest::get(u).await.unwrap();
                assert_eq!(r.status(), 200, "{u}");
            }
        }
    }
    let expected = 12; // two ads, six beacons each
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fired = origin.beacons().await;
    while fired.len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fired = origin.beacons().await;
    }
    assert_eq!(fired.len(), expected, "{fired:?}");
    assert!(fired.values().all(|n| *n == 1), "once each: {fired:?}");
    assert!(
        fired.keys().any(|k| k == "/beacon/ad10.2/complete"),
        "{fired:?}"
    );
}
