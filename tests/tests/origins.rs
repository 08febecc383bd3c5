//! Several origins per tenant: the primary fails mid-event (first answering 503 to
//! everything, then gone altogether) while 100 viewers watch a personalized live stream
//! through the proxy, and they see zero errors and a consistent stream: requests go on to the
//! backup at once, health checks keep the primary out, and the backup serves the same
//! channel (both simulators run it from one epoch, as redundant packagers do).

use manifold_e2e::{bin, creatives, plugin, Origin, Proxy};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const VIEWERS: u64 = 100;

fn redundant_pair() -> (Origin, Origin) {
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let args = [
        "--epoch".to_string(),
        epoch.to_string(),
        "--ad-first".into(),
        "74".into(),
        "--ad-every".into(),
        "600".into(),
        "--ad-duration".into(),
        "12".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Origin::start(&args).unwrap(), Origin::start(&args).unwrap())
}

#[test]
fn a_primary_failing_mid_event_costs_viewers_no_error() {
    let (primary, backup) = redundant_pair();
    let proxy = Proxy::start(&format!(
        r#"
[cache]
lock_timeout = "30s"

[[tenants]]
id = "t"
origin = "http://{}"
failover = ["http://{}"]
[tenants.health_check]
interval = "500ms"
timeout = "300ms"
unhealthy_after = 1
[tenants.plugin]
file = "{}"
config = "pod=ad10"
fail = "closed"
deadline = "5s"
{}"#,
        primary.addr,
        backup.addr,
        plugin("scte35_breaks").display(),
        creatives(&["ad10", "slate"], false, true),
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("failover.json");
    let run = Command::new(bin("manifold-loadtest"))
        .arg(proxy.url("/t/live/hls/master.m3u8"))
        .args(["--scenario", "steady", "--viewers", &VIEWERS.to_string()])
        .args(["--ramp", "3", "--duration", "27", "--abr-switch", "0.05"])
        .args(["--connections", "128", "--timeout", "20", "--threads", "2"])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // mid-event: the primary answers 503 to everything (health checks included)...
    std::thread::sleep(Duration::from_secs(9));
    rt.block_on(primary.set_faults(serde_json::json!({"status": 503})))
        .unwrap();
    let backup_before = rt.block_on(backup.counters("/")).unwrap();
    std::thread::sleep(Duration::from_secs(9));
    // ...then is gone altogether: connections refused
    drop(primary);
    let out = run.wait_with_output().unwrap();
    let summary: Value = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| {
            panic!(
                "no summary: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let show = format!(
        "errors {} violations {} requests {}",
        summary["errors"], summary["consistency"]["violations"], summary["requests"]["by_kind"]
    );
    assert_eq!(summary["completed"], true, "{show}");
    assert_eq!(summary["errors"]["total"], 0, "{show}");
    assert_eq!(summary["requests"]["errors"], 0, "{show}");
    assert_eq!(summary["consistency"]["violations"]["total"], 0, "{show}");
    assert_eq!(summary["viewers"]["sessions_started"], VIEWERS, "{show}");
    // not vacuous: viewers kept playing through both failures, and the backup carried them
    let segments = summary["requests"]["by_kind"]["segment"]["requests"]
        .as_u64()
        .unwrap();
    assert!(segments > 10 * VIEWERS, "{segments} segments; {show}");
    let backup_after = rt.block_on(backup.counters("/")).unwrap();
    let served = |c: &Value, class: &str| c["by_class"][class].as_u64().unwrap_or(0);
    for class in ["hls_playlist", "segment"] {
        assert!(
            served(&backup_after, class) > served(&backup_before, class) + 5,
            "the backup served {class}: before {} after {}",
            backup_before["by_class"],
            backup_after["by_class"]
        );
    }
}

/// The retry inside one request, without health checks to help: the primary passes its checks
/// but fails one rendition (503), then refuses connections; each request is answered by the
/// backup. With no origin left, the last origin's answer is the viewer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_answer_goes_on_to_the_next_origin_in_the_same_request() {
    let (primary, backup) = redundant_pair();
    let proxy = Proxy::start(&format!(
        "[[tenants]]\nid = \"t\"\norigin = \"http://{}\"\nfailover = [\"http://{}\"]\n\
         [tenants.health_check]\ninterval = \"60s\"\n",
        primary.addr, backup.addr
    ))
    .unwrap();
    primary
        .set_faults(serde_json::json!({"status": 503, "path_prefix": "/live/hls/v0"}))
        .await
        .unwrap();
    let c = reqwest::Client::new();
    let get = |path: &str| c.get(proxy.url(path)).send();
    for path in [
        "/t/live/hls/v0.m3u8",
        "/t/live/hls/v0/25.ts",
        "/t/live/hls/v0/26.ts",
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            backup.count(&path[2..]).await.unwrap(),
            1,
            "{path} from the backup"
        );
    }
    // a primary that failed requests is held out a while: the rest goes to the backup too,
    // without first trying the primary
    let primary_before = primary.count("/live/hls/v1/25.ts").await.unwrap();
    let r = get("/t/live/hls/v1/25.ts").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(backup.count("/live/hls/v1/25.ts").await.unwrap(), 1);
    assert_eq!(
        primary.count("/live/hls/v1/25.ts").await.unwrap(),
        primary_before
    );
    // the primary gone: refused connections go on to the backup too
    drop(primary);
    for n in 27..30 {
        let r = get(&format!("/t/live/hls/v2/{n}.ts")).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // nothing left to try: the viewer gets the failure (502, with CORS, never a hang)
    drop(backup);
    let r = get("/t/live/hls/v2/40.ts").await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}
