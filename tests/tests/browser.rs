//! What viewers see, in real players: hls.js and Shaka Player in headless Chromium play every
//! demo stream through the proxy, from a page on another origin (so CORS is exercised), across
//! ad breaks. Each asserts what a viewer would notice: it started, nothing fatal, no stall or
//! buffer hole after start-up, played time at least 90 % of wall time, and the ads played.

use manifold_e2e::browser::{self, Player, Report, Stream};
use manifold_e2e::{demo_tenants, Origin, Proxy};
use std::sync::Mutex;

/// One browser run at a time: each plays for minutes with many pages.
static BROWSER: Mutex<()> = Mutex::new(());

/// The browser to this test alone, once the previous test's Chromium, proxy and origin have
/// had a moment to exit (on two cores their teardown otherwise overlaps the first seconds of
/// the next run).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    let guard = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::sleep(std::time::Duration::from_secs(3));
    guard
}

/// What a stream must show besides playing smoothly.
#[derive(Clone, Copy)]
enum Ads {
    /// No ad segment at all (pass-through tenants).
    None,
    /// At least this many seconds of ad segments went past the playhead.
    AtLeast(f64),
}

fn check(reports: &[Report], expect: &[(String, Ads)]) {
    let mut failures = Vec::new();
    for (name, ads) in expect {
        let Some(r) = reports.iter().find(|r| r.name() == name) else {
            failures.push(format!("{name}: no report"));
            continue;
        };
        if let Err(e) = r.check_smooth() {
            failures.push(format!("{e:#}"));
            continue;
        }
        let played = r.ad_seconds();
        match *ads {
            Ads::None if played > 0.0 => {
                failures.push(format!("{name}: {played} s of ads on a tenant without ads"))
            }
            Ads::AtLeast(min) if played < min => failures.push(format!(
                "{name}: {played:.1} s of ads played, expected at least {min}\n{}",
                r.brief()
            )),
            _ => {}
        }
        let http = r.http_failures();
        if !http.is_empty() {
            failures.push(format!("{name}: HTTP failures {http:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_demo_stream_plays_in_hls_js_and_shaka_across_an_ad_break() {
    use Player::{HlsJs, Shaka};
    let _one = one_at_a_time();
    // a 20 s break every 40 s, the first 10 s after start-up at the live edge
    let origin = Origin::live(20, 10, 30, 40, 20).unwrap();
    // HTTPS too, with a certificate the proxy makes itself (the browser is told to accept it)
    let https = format!("127.0.0.1:{}", manifold_e2e::free_port());
    let tls = format!(
        "[tls]\nlisten = [\"{https}\"]\n[[tls.certificates]]\nself_signed = [\"127.0.0.1\"]\n\n"
    );
    let proxy = Proxy::start(&format!("{tls}{}", demo_tenants(&origin, "250ms"))).unwrap();
    let seconds = 60;
    let mut plan: Vec<(Stream, Ads)> = Vec::new();
    let mut over_tls = Vec::new();
    for (player, path, ads) in [
        (HlsJs, "/breaks/live/cmaf/master.m3u8", Ads::AtLeast(15.0)),
        (Shaka, "/vast/live/dash/manifest.mpd", Ads::AtLeast(15.0)),
        (Shaka, "/demo/live/hls/master.m3u8", Ads::None),
    ] {
        let s = Stream::new(player, format!("https://{https}{path}"), seconds);
        over_tls.push(s.name.clone());
        plan.push((s, ads));
    }
    let mut add = |player, path: &str, ads| {
        plan.push((Stream::new(player, proxy.url(path), seconds), ads));
    };
    for p in [HlsJs, Shaka] {
        for path in [
            "/live/hls/master.m3u8",
            "/live/cmaf/master.m3u8",
            "/vod/hls/master.m3u8",
        ] {
            add(p, &format!("/demo{path}"), Ads::None);
        }
    }
    for path in [
        "/live/dash/manifest.mpd",
        "/live/dash/timeline.mpd",
        "/vod/dash/manifest.mpd",
    ] {
        add(Shaka, &format!("/demo{path}"), Ads::None);
    }
    // the personalized tenants: a break is 20 s of ads and slate. `breaks-ts` runs the
    // TypeScript build of `breaks`'s plugin (the same manifests, tested in plugins_ts.rs): the
    // two share the formats between them, so the run stays two batches long.
    let formats = [
        ("vast", "/live/hls/master.m3u8"),
        ("vast", "/live/cmaf/master.m3u8"),
        ("breaks", "/live/hls/master.m3u8"),
        ("breaks-ts", "/live/cmaf/master.m3u8"),
    ];
    for (tenant, path) in formats {
        for p in [HlsJs, Shaka] {
            add(p, &format!("/{tenant}{path}"), Ads::AtLeast(15.0));
        }
    }
    for (tenant, path) in [
        ("vast", "/live/dash/manifest.mpd"),
        ("vast", "/live/dash/timeline.mpd"),
        ("breaks", "/live/dash/manifest.mpd"),
        ("breaks-ts", "/live/dash/timeline.mpd"),
    ] {
        add(Shaka, &format!("/{tenant}{path}"), Ads::AtLeast(15.0));
    }
    // a 25 s pre-roll pod before VOD content
    for p in [HlsJs, Shaka] {
        add(p, "/preroll/vod/hls/master.m3u8", Ads::AtLeast(20.0));
    }
    add(Shaka, "/preroll/vod/dash/manifest.mpd", Ads::AtLeast(20.0));
    add(
        HlsJs,
        "/mobile/live/hls/master.m3u8?device=mobile",
        Ads::None,
    );
    let streams: Vec<Stream> = plan.iter().map(|(s, _)| s.clone()).collect();
    let expect: Vec<(String, Ads)> = plan.iter().map(|(s, a)| (s.name.clone(), *a)).collect();
    // 14 pages at a time: more saturate two cores (players then stall for want of CPU); a break
    // every 40 s means both halves cross one
    let reports = browser::play(&streams, 14, true).unwrap();
    check(&reports, &expect);
    // the HTTPS streams went over HTTP/2
    for name in &over_tls {
        let r = reports.iter().find(|r| r.name() == name).unwrap();
        let h2 = r.0["protocols"]["h2"].as_u64().unwrap_or(0);
        assert!(h2 > 10, "{name}: protocols {}", r.0["protocols"]);
    }
}

/// The origin answers 503 to everything for 20 s in the middle of a live stream. Tenants in
/// the default mode get the live playlists' last good copies (the stale window is the
/// playlists' own window, 30 s here), refreshed from the origin at least once a target
/// duration: players may run dry and wait, but none goes fatal, and playback resumes once the
/// origin is back. The `breaks` tenant is in slate mode: its live HLS goes on with the slate
/// through the outage and back to content after it, so its players never stop at all.
#[test]
fn players_ride_out_a_20_second_origin_outage() {
    use Player::{HlsJs, Shaka};
    let _one = one_at_a_time();
    let origin = Origin::start(&["--window", "15", "--ad-every", "0"]).unwrap();
    let proxy = Proxy::start(&demo_tenants(&origin, "250ms")).unwrap();
    let seconds = 80;
    let plan = [
        (HlsJs, "/demo/live/hls/master.m3u8", false),
        (Shaka, "/demo/live/cmaf/master.m3u8", false),
        (Shaka, "/breaks/live/dash/manifest.mpd", false),
        (Shaka, "/demo/live/dash/timeline.mpd", false),
        (HlsJs, "/breaks/live/cmaf/master.m3u8", true),
        (HlsJs, "/breaks/live/hls/master.m3u8", true),
        (Shaka, "/breaks/live/hls/master.m3u8", true),
        (Shaka, "/breaks/live/cmaf/master.m3u8", true),
    ];
    let streams: Vec<Stream> = plan
        .iter()
        .map(|(p, path, _)| Stream::new(*p, proxy.url(path), seconds))
        .collect();
    let (outage_start, outage_len) = (25, 20);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reports = std::thread::scope(|s| {
        let player = s.spawn(|| browser::play(&streams, streams.len(), false));
        std::thread::sleep(std::time::Duration::from_secs(outage_start));
        rt.block_on(origin.set_faults(serde_json::json!({"status": 503})))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_secs(outage_len));
        rt.block_on(origin.clear_faults()).unwrap();
        player.join().unwrap()
    })
    .unwrap();
    let mut failures = Vec::new();
    for ((player, _, slate), stream) in plan.iter().zip(&streams) {
        let Some(r) = reports.iter().find(|r| r.name() == stream.name) else {
            failures.push(format!("{}: no report", stream.name));
            continue;
        };
        if *slate {
            // slate mode: played straight through, as if nothing happened. One wait of under
            // half a second is tolerated: Shaka, playing close to the live edge, was once seen
            // to wait that long 30 s after the outage, back on content (a CI run, 2-core box)
            // CI runs also saw Shaka wait once well after the outage (71.1 s, 77.6 s, 79.2 s of
            // 80; the outage ends at 45 s), back on content at the live edge: a wait more than
            // 10 s after the outage, by a player that kept up with the clock, is not the
            // outage's and is not counted (docs/benchmarks.md). Waits during it still fail.
            let after_outage = seconds as f64 - (outage_start + outage_len + 10) as f64;
            if let Err(e) = r.check_smooth() {
                if !one_short_wait(r) && !only_waits_at_the_end(r, after_outage) {
                    failures.push(format!("{e:#}"));
                }
            }
            if let Some(h) = r.http_failures().iter().find(|h| h["status"] == 503) {
                failures.push(format!("{}: saw the origin's 503: {h}", r.name()));
            }
            continue;
        }
        // stale mode: hls.js stops on a fatal error, so none is allowed; Shaka reports the
        // outage's 503s (a rendition first asked for during it has no last good copy) as
        // critical and goes on retrying by itself: only those are allowed
        let fatal: Vec<_> = r
            .fatal()
            .into_iter()
            .filter(|e| *player == HlsJs || !e["detail"].as_str().unwrap_or("").contains(",503,"))
            .collect();
        if !r.started() || !fatal.is_empty() {
            failures.push(format!("{}: fatal {fatal:?}\n{}", r.name(), r.brief()));
            continue;
        }
        // resumed: well after the outage the playhead advances like wall time again
        let resume_from = (outage_start + outage_len) as f64 + 10.0;
        let samples = r.0["samples"].as_array().cloned().unwrap_or_default();
        let at = |t: f64| {
            samples
                .iter()
                .filter(|s| s["t"].as_f64().unwrap_or(0.0) >= t)
                .find_map(|s| Some((s["t"].as_f64()?, s["ct"].as_f64()?)))
        };
        let (Some((t0, c0)), Some((t1, c1))) = (at(resume_from), at(seconds as f64 - 3.0)) else {
            failures.push(format!("{}: no samples after the outage", r.name()));
            continue;
        };
        if c1 - c0 < 0.9 * (t1 - t0) {
            failures.push(format!(
                "{}: after the outage played {:.1} s in {:.1} s\n{}",
                r.name(),
                c1 - c0,
                t1 - t0,
                r.brief()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A guided tenant for VOD: a 10 s pre-roll and a 25 s mid-roll 20 s in, as interstitials.
fn guided_vod_tenant(origin: &Origin) -> String {
    let creatives: String = ["ad10", "ad15"]
        .iter()
        .map(|c| {
            format!(
                "[[tenants.creatives]]\nname = \"{c}\"\nduration = {}.0\nhls = \"/ads/{c}/hls/master.m3u8\"\nhls_fmp4 = \"/ads/{c}/cmaf/master.m3u8\"\ndash = \"/ads/{c}/dash/manifest.mpd\"\n",
                &c[2..]
            )
        })
        .collect();
    format!(
        "{}deadline = \"250ms\"\n[tenants.ssai]\ninsertion = \"guided\"\n{creatives}",
        manifold_e2e::plugin_tenant(
            "guided-vod",
            origin,
            "preroll",
            "config = \"pod=ad10; midroll=ad10,ad15; midroll_at=20\""
        )
    )
}

/// Where the content resumes after an interstitial.
#[derive(Clone, Copy)]
enum Resume {
    /// Live: after the pod, as long as it played (its asset list's duration).
    AfterPod,
    /// VOD pre- and mid-rolls: where it was inserted.
    Where,
}

/// What a guided stream must show: interstitials that started, played their assets from the
/// proxy, and gave playback back to the content where it should resume.
fn check_guided(r: &Report, proxy: &str, resume: Option<Resume>) -> Result<(), String> {
    let name = r.name();
    let marks = r.0["interstitials"].as_array().cloned().unwrap_or_default();
    let of = |what: &str| -> Vec<&serde_json::Value> {
        marks.iter().filter(|m| m["what"] == what).collect()
    };
    let requests: Vec<&str> = r.0["guidedRequests"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let ad_segments: Vec<&&str> = requests
        .iter()
        .filter(|u| u.contains("mf_b=") && u.contains("/ads/"))
        .collect();
    if ad_segments.is_empty() || !ad_segments.iter().all(|u| u.starts_with(proxy)) {
        return Err(format!(
            "{name}: ad segments not from the proxy: {ad_segments:?}\n{}",
            r.brief()
        ));
    }
    if !requests.iter().any(|u| u.contains("/~guided/")) {
        return Err(format!(
            "{name}: no asset list or pod fetched\n{}",
            r.brief()
        ));
    }
    let started = [of("started"), of("ad-started")].concat();
    if started.is_empty() {
        return Err(format!("{name}: no interstitial started\n{}", r.brief()));
    }
    // smooth: no fatal error, no stall after start-up, and the content's playhead plus the
    // time in ads kept up with the wall clock. Outside ads, a player that swaps media
    // sources at an interstitial's edge may wait for under a second there (hls.js leaving a
    // pod inserted in VOD); any other wait is a stall.
    let wall = r.played().1;
    let played = r.0["progressed"].as_f64().unwrap_or(0.0);
    let ads = r.0["adWall"].as_f64().unwrap_or(0.0);
    let playing: Vec<f64> = r.0["playingAt"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    let edges: Vec<f64> = marks.iter().filter_map(|m| m["t"].as_f64()).collect();
    let stalls: Vec<serde_json::Value> = r
        .stalls()
        .into_iter()
        .filter(|s| s["ad"] != true)
        .filter(|s| {
            let t = s["t"].as_f64().unwrap_or(0.0);
            let lasted = playing
                .iter()
                .find(|p| **p >= t)
                .map_or(f64::INFINITY, |p| p - t);
            let at_edge = edges.iter().any(|e| (e - t).abs() < 1.5);
            !(at_edge && lasted < 1.0)
        })
        .collect();
    if !r.started() || !r.fatal().is_empty() || !stalls.is_empty() || played + ads < 0.9 * wall {
        return Err(format!(
            "{name}: fatal {:?}, stalls {stalls:?}; played {played:.1} s + {ads:.1} s of ads in {wall:.1} s\n{}",
            r.fatal(),
            r.brief()
        ));
    }
    if let Some(resume) = resume {
        // hls.js: the primary resumed where it should after the first interstitial
        let (Some(s), Some(back)) = (
            of("started").first().copied(),
            of("resumed").first().copied(),
        ) else {
            return Err(format!("{name}: primary never resumed\n{}", r.brief()));
        };
        let expected = match resume {
            Resume::AfterPod => s["duration"].as_f64().unwrap_or(f64::NAN),
            Resume::Where => 0.0,
        };
        let start = s["start"].as_f64().unwrap_or(f64::NAN);
        let at = back["primary"].as_f64().unwrap_or(f64::NAN);
        if !((at - start) - expected).abs().lt(&1.5) {
            return Err(format!(
                "{name}: resumed at {at:.2}, {:.2} s after the break's start {start:.2} (expected {expected})\n{}",
                at - start,
                r.brief()
            ));
        }
    }
    Ok(())
}

/// Server-guided sessions in real players: breaks announced as HLS Interstitials (live and
/// VOD) and DASH alternative-MPD events, their pods fetched by the players from the proxy's
/// asset lists and pod MPDs, content resuming where it should, and no beacon fired more than
/// once per session.
#[test]
fn guided_breaks_play_as_interstitials_in_hls_js_and_shaka() {
    use Player::{HlsJs, Shaka};
    let _one = one_at_a_time();
    // a 20 s break every 40 s, the first 10 s after start-up
    let origin = Origin::live(20, 10, 30, 40, 20).unwrap();
    let config = format!(
        "{}{}",
        demo_tenants(&origin, "250ms"),
        guided_vod_tenant(&origin)
    );
    let proxy = Proxy::start(&config).unwrap();
    let seconds = 60;
    let plan = [
        (
            HlsJs,
            "/guided/live/cmaf/master.m3u8?insertion=guided",
            Some(Resume::AfterPod),
        ),
        (
            HlsJs,
            "/guided/live/hls/master.m3u8?insertion=guided",
            Some(Resume::AfterPod),
        ),
        (
            HlsJs,
            "/guided-vod/vod/hls/master.m3u8",
            Some(Resume::Where),
        ),
        (
            Shaka,
            "/guided/live/cmaf/master.m3u8?insertion=guided",
            None,
        ),
        (Shaka, "/guided/live/hls/master.m3u8?insertion=guided", None),
        (Shaka, "/guided-vod/vod/cmaf/master.m3u8", None),
        (
            Shaka,
            "/guided/live/dash/manifest.mpd?insertion=guided",
            None,
        ),
        (Shaka, "/guided-vod/vod/dash/manifest.mpd", None),
    ];
    let streams: Vec<Stream> = plan
        .iter()
        .map(|(p, path, _)| Stream::new(*p, proxy.url(path), seconds))
        .collect();
    let reports = browser::play(&streams, streams.len(), false).unwrap();
    let base = proxy.url("");
    let mut failures = Vec::new();
    for ((_, _, resume), s) in plan.iter().zip(&streams) {
        let Some(r) = reports.iter().find(|r| r.name() == s.name) else {
            failures.push(format!("{}: no report", s.name));
            continue;
        };
        if let Err(e) = check_guided(r, &base, *resume) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fired = rt.block_on(origin.beacons());
    // once per session and break: no beacon (here, per pod position) fired more often than
    // the live sessions' players met breaks (the VAST simulator's pods repeat per break)
    let met: usize = reports
        .iter()
        .filter(|r| r.name().contains("/live/"))
        .map(|r| {
            let marks = r.0["interstitials"].as_array().cloned().unwrap_or_default();
            let ids: std::collections::BTreeSet<&str> =
                marks.iter().filter_map(|m| m["id"].as_str()).collect();
            let shaka = marks.iter().filter(|m| m["what"] == "ad-started").count();
            ids.len().max(shaka)
        })
        .sum();
    assert!(
        fired.keys().any(|k| k.ends_with("/impression")),
        "no impression fired: {fired:?}"
    );
    for (path, n) in &fired {
        assert!(
            *n as usize <= met,
            "{path} fired {n} times for {met} breaks met: {fired:?}"
        );
    }
}

/// LL-HLS in hls.js's low-latency mode, personalized: a stitched session and a guided one
/// play across a break with parts, blocking reloads and preload hints through the proxy.
/// Behind live by at most 3 part targets + 1.5 s (hls.js's own estimate) once back on
/// content, no stall after start-up, and the ads played. A player without blocking reloads
/// and parts sits 3 target durations (6 s) behind; these sessions measure 2.2–2.5 s, and a
/// loaded CI run saw the guided one settle at 2.69 s after its interstitial.
#[test]
fn low_latency_hls_plays_personalized_across_a_break_in_hls_js() {
    let _one = one_at_a_time();
    // a 12 s break 14 s after start-up; parts of 0.5 s (PART-TARGET 0.512 s)
    let origin = Origin::live(20, 10, 34, 600, 12).unwrap();
    let proxy = Proxy::start(&demo_tenants(&origin, "250ms")).unwrap();
    let ll = serde_json::json!({ "lowLatencyMode": true });
    let streams = [
        Stream::new(Player::HlsJs, proxy.url("/breaks/live/ll/master.m3u8"), 40)
            .with_config(ll.clone()),
        Stream::new(
            Player::HlsJs,
            proxy.url("/guided/live/ll/master.m3u8?insertion=guided"),
            40,
        )
        .with_config(ll),
    ];
    let reports = browser::play(&streams, streams.len(), false).unwrap();
    let bound = 3.0 * 0.512 + 1.5;
    let base = proxy.url("");
    let mut failures = Vec::new();
    for r in &reports {
        // guided: hls.js waits a moment as it swaps to and from the asset player
        let smooth = if r.name().contains("/guided/") {
            check_guided(r, &base, Some(Resume::AfterPod))
        } else {
            r.check_smooth()
                .or_else(|e| one_short_wait(r).then_some(()).ok_or(e))
                .map_err(|e| e.to_string())
        };
        if let Err(e) = smooth {
            failures.push(e);
            continue;
        }
        let parts = r.0["partsLoaded"].as_u64().unwrap_or(0);
        let ads = if r.name().contains("/guided/") {
            r.0["interstitials"]
                .as_array()
                .map_or(0, |m| m.iter().filter(|m| m["what"] == "asset").count())
        } else {
            r.ad_seconds() as usize
        };
        // the last 8 s: content again, after the break
        let samples = r.0["samples"].as_array().cloned().unwrap_or_default();
        let wall = r.0["wall"].as_f64().unwrap_or(0.0);
        let late: Vec<f64> = samples
            .iter()
            .filter(|s| s["t"].as_f64().unwrap_or(0.0) > wall - 8.0)
            .filter_map(|s| s["lat"].as_f64())
            .collect();
        let worst = late.iter().cloned().fold(0.0, f64::max);
        eprintln!(
            "{}: parts {parts}, ads {ads}, latency at the end {late:?}",
            r.name()
        );
        if parts < 10 || ads == 0 || late.is_empty() || worst > bound {
            failures.push(format!(
                "{}: {parts} parts, ads {ads}, latency {late:?} (at most {bound:.2} s)\n{}",
                r.name(),
                r.brief()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A report whose only flaw is waits in its last `secs` seconds (too late to see whether
/// they were short): started, nothing fatal, no hole, kept up with the clock.
fn only_waits_at_the_end(r: &Report, secs: f64) -> bool {
    let (played, wall) = r.played();
    r.started()
        && r.fatal().is_empty()
        && r.holes().is_empty()
        && played >= 0.9 * wall
        && r.stalls()
            .iter()
            .all(|s| s["t"].as_f64().unwrap_or(0.0) > wall - secs)
}

/// A report whose only flaw is one wait of under half a second (seen here in about one run
/// in four, where a stitched LL-HLS session returns from its whole ad segments to content
/// parts; docs/benchmarks.md): started, nothing fatal, no hole, kept up with the clock.
fn one_short_wait(r: &Report) -> bool {
    let stalls = r.stalls();
    let playing: Vec<f64> = r.0["playingAt"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    let waits: std::collections::BTreeSet<u64> = stalls
        .iter()
        .filter_map(|s| s["t"].as_f64())
        .map(|t| (t * 2.0) as u64)
        .collect();
    let short = stalls.iter().all(|s| {
        let t = s["t"].as_f64().unwrap_or(0.0);
        playing
            .iter()
            .find(|p| **p >= t)
            .is_some_and(|p| p - t < 0.5)
    });
    let (played, wall) = r.played();
    r.started()
        && r.fatal().is_empty()
        && r.holes().is_empty()
        && waits.len() <= 1
        && short
        && played >= 0.9 * wall
}
