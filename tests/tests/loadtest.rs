//! The live-event load test in CI (issue 5): `manifold-loadtest` as a process, 200 viewers for
//! ~20 s through a personalizing tenant (SCTE-35 breaks filled with ads) in front of the origin
//! simulator, HLS then DASH. Asserted from its JSON summary: no request errors, no
//! per-session consistency violations, viewers really played (segments, sessions, the break and
//! its ads) and the origin saw each segment of each rendition exactly once. No timings.

use manifold_e2e::{bin, creatives, plugin, Origin, Proxy};
use serde_json::Value;
use std::process::Command;

const VIEWERS: u64 = 200;

/// A tenant `t` whose plugin fills every break with the 10 s ad (slate-padded). It fails closed
/// (a failing plugin would be a 503, counted as an error); the plugin deadline and the cache
/// lock timeout are generous because a debug build on a loaded CI box is slow, and time is not
/// what this test measures.
fn personalizing_tenant(origin: &Origin) -> String {
    // a segment fetch held up by a starved debug build must not let the waiting requests give
    // up on the cache lock and fetch it again: coalescing is what this test checks
    format!(
        "[cache]\nlock_timeout = \"30s\"\n\n[[tenants]]\nid = \"t\"\norigin = \"http://{}\"\n[tenants.plugin]\nfile = \"{}\"\nconfig = \"pod=ad10\"\nfail = \"closed\"\ndeadline = \"5s\"\n{}",
        origin.addr,
        plugin("scte35_breaks").display(),
        creatives(&["ad10", "slate"], true, true)
    )
}

/// 2 s segments, a 10-segment window; the channel has been live 60 s and a 12 s break starts
/// 12 s after the origin starts, so it reaches the live edge during the run (and stays in the
/// window until well after it, however slowly the processes start).
fn live_origin() -> Origin {
    Origin::live(60, 10, 72, 600, 12).unwrap()
}

/// Runs `manifold-loadtest` to completion and returns its JSON summary (`extra`: more
/// arguments, e.g. `--cmcd`).
fn run_loadtest(target: &str, origin: &Origin, tag: &str, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join(format!("{tag}.json"));
    let out = Command::new(bin("manifold-loadtest"))
        .arg(target)
        .args(extra)
        .args(["--scenario", "steady", "--viewers", &VIEWERS.to_string()])
        .args(["--ramp", "5", "--duration", "15", "--abr-switch", "0.05"])
        .args(["--connections", "256", "--timeout", "20", "--threads", "2"])
        .args(["--origin", &origin.url(""), "--fail-on-errors"])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("running manifold-loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| {
            panic!(
                "{tag}: no JSON summary ({}):\n{stdout}\n{stderr}",
                out.status
            )
        });
    assert!(
        out.status.success(),
        "{tag}: manifold-loadtest exited with {}; failures {}\n{stdout}\n{stderr}",
        out.status,
        summary["failures"]
    );
    summary
}

fn u(v: &Value, path: &str) -> u64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{path} is not a number: {cur}"))
}

fn f(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {cur}"))
}

/// What every run must show, HLS or DASH.
fn assert_run(s: &Value, tag: &str) {
    let show = || {
        format!(
            "{tag}: errors {} violations {} requests {} ads {} origin {}",
            s["errors"],
            s["consistency"]["violations"],
            s["requests"]["by_kind"],
            s["ads"],
            s["origin"]
        )
    };
    assert_eq!(s["completed"], Value::Bool(true), "{}", show());
    assert_eq!(s["failures"], serde_json::json!([]), "{}", show());
    // zero errors of any kind, zero consistency violations
    assert_eq!(u(s, "errors.total"), 0, "{}", show());
    assert_eq!(u(s, "requests.errors"), 0, "{}", show());
    assert_eq!(u(s, "consistency.violations.total"), 0, "{}", show());

    // not vacuous: every viewer joined and played, manifests were reloaded and checked
    assert_eq!(u(s, "viewers.sessions_started"), VIEWERS, "{}", show());
    assert_eq!(u(s, "viewers.peak_active"), VIEWERS, "{}", show());
    let segments = u(s, "requests.by_kind.segment.requests");
    // each viewer takes the last 3 segments of the window as it joins, then every new one
    assert!(segments >= 3 * VIEWERS, "{segments} segments; {}", show());
    assert!(
        u(s, "consistency.reloads_checked") >= 3 * VIEWERS,
        "{}",
        show()
    );
    // the break was seen and its ads (stitched by the plugin, from the catalog) were fetched
    assert!(u(s, "ads.manifests_with_breaks") > 0, "{}", show());
    assert!(u(s, "ads.ad_segments") > 0, "{}", show());

    // coalescing: every segment of every rendition (content and ads) reached the origin once
    let o = &s["origin"];
    assert!(o.is_object(), "{}", show());
    let paths = u(o, "segment_fetches.paths");
    assert!(paths > 0, "{}", show());
    assert_eq!(u(o, "segment_fetches.max"), 1, "{}", show());
    assert_eq!(u(o, "segment_fetches.paths_over_one"), 0, "{}", show());
    assert_eq!(u(o, "requests.segment"), paths, "{}", show());
    let viewer_segments = u(o, "viewer_segment_requests");
    assert!(viewer_segments > 10 * paths, "{}", show());
    assert!(f(o, "offload_ratio") > 0.9, "{}", show());
    // manifests: refreshed per cache TTL, not per viewer
    let manifest_kind = if s["scenario"]["protocol"] == "hls" {
        "hls_playlist"
    } else {
        "dash_manifest"
    };
    let viewer_manifests: u64 = ["master", "media_playlist", "mpd"]
        .iter()
        .map(|k| u(s, &format!("requests.by_kind.{k}.requests")))
        .sum();
    let origin_manifests = u(o, &format!("requests.{manifest_kind}"));
    assert!(origin_manifests > 0, "{}", show());
    assert!(
        origin_manifests * 5 < viewer_manifests,
        "{origin_manifests} origin manifest fetches for {viewer_manifests} viewer loads; {}",
        show()
    );
}

/// One protocol's run against its own origin and proxy, started just before it so that the
/// break reaches the live edge during the run; the per-path origin counts belong to this run.
fn run_protocol(path: &str, tag: &str, extra: &[&str]) -> Value {
    let origin = live_origin();
    let proxy = Proxy::start(&personalizing_tenant(&origin)).unwrap();
    run_loadtest(&proxy.url(path), &origin, tag, extra)
}

/// HLS (MPEG-TS, three variants) then DASH (`$Number$`, video and audio): one after the other,
/// so that the two debug-built proxies and load generators do not share the CPU (~45 s). The
/// HLS viewers send CMCD in query form on every request, different each time, as real players
/// with CMCD on do: every segment must still reach the origin exactly once.
#[test]
fn two_hundred_viewers_hls_and_dash_with_ad_breaks() {
    let hls = run_protocol("/t/live/hls/master.m3u8", "hls", &["--cmcd"]);
    assert_eq!(hls["scenario"]["protocol"], "hls");
    assert_eq!(hls["scenario"]["cmcd"], true);
    // HLS viewers load a master (the session) each, then media playlists
    assert_eq!(u(&hls, "requests.by_kind.master.requests"), VIEWERS);
    assert!(u(&hls, "requests.by_kind.media_playlist.requests") > VIEWERS);
    assert_run(&hls, "hls");

    let dash = run_protocol("/t/live/dash/manifest.mpd", "dash", &[]);
    assert_eq!(dash["scenario"]["protocol"], "dash");
    // DASH viewers reload MPDs and fetch the CMAF init segments
    assert!(u(&dash, "requests.by_kind.mpd.requests") > VIEWERS);
    assert!(u(&dash, "requests.by_kind.init.requests") > 0);
    assert_run(&dash, "dash");
}
