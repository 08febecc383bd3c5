//! The viewer simulator against the origin simulator, in process: a few dozen HLS (TS and CMAF)
//! and DASH (`$Number$` and SegmentTimeline) viewers for ~9 s each, all at once, must see no
//! errors and no consistency violations and download segments; injected origin faults must be
//! counted by kind.

use manifold_loadtest::viewers::http::ClientOptions;
use manifold_loadtest::viewers::player::{PlayerOptions, Protocol};
use manifold_loadtest::viewers::report::Summary;
use manifold_loadtest::viewers::run::{run, Progress, RunConfig};
use manifold_loadtest::viewers::scenario::{Scenario, ScenarioKind};
use manifold_origin::control::{Class, Faults};
use manifold_origin::{serve, Origin, OriginOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

async fn start_origin() -> (SocketAddr, Arc<Origin>) {
    let media = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/media"));
    // the channel is 20 s old; a break is signalled from 24 s (DASH events ahead, HLS cues at 26 s)
    let origin = Arc::new(
        Origin::new(&OriginOptions {
            ad_first_secs: 24,
            ad_every_secs: 60,
            ad_len_secs: 10,
            ..OriginOptions::new(media)
        })
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, origin.clone()));
    (addr, origin)
}

fn config(origin: SocketAddr, path: &str, kind: ScenarioKind, viewers: u64) -> RunConfig {
    let target = Url::parse(&format!("http://{origin}{path}")).unwrap();
    RunConfig {
        protocol: Protocol::of_url(&target).unwrap(),
        target,
        scenario: Scenario {
            kind,
            viewers,
            ramp: Duration::from_secs(2),
            hold: Duration::from_secs(7),
            churn_per_min: 1.0,
        },
        player: PlayerOptions {
            abr_switch: 0.2,
            ..PlayerOptions::default()
        },
        client: ClientOptions {
            max_connections: 64,
            timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        },
        origin: Some(Url::parse(&format!("http://{origin}")).unwrap()),
        origin_prefix: "/live/".into(),
        proxy_pid: Some(std::process::id()),
        progress: Progress::Off,
        command_line: vec!["test".into()],
    }
}

fn assert_clean(s: &Summary, what: &str) {
    assert_eq!(s.errors.total, 0, "{what}: errors {:?}", s.errors);
    assert_eq!(
        s.consistency.violations.total, 0,
        "{what}: violations {:?}",
        s.consistency.violations
    );
    assert!(s.failures.is_empty(), "{what}: {:?}", s.failures);
    assert!(s.completed && !s.interrupted, "{what}");
    assert!(s.consistency.reloads_checked > 0, "{what}");
    assert!(
        s.ads.manifests_with_breaks > 0,
        "{what}: the break was not seen"
    );
    let segments = s.requests.by_kind["segment"].requests;
    // each viewer starts with 3 segments per track, then more as they are published
    assert!(
        segments > 3 * s.scenario.viewers,
        "{what}: only {segments} segments"
    );
    assert!(s.latency_ms.segment.count > 0 && s.latency_ms.manifest.p99 > 0.0);
    assert!(
        s.staleness_s.count > 0 && s.staleness_s.max < 10.0,
        "{what}: {:?}",
        s.staleness_s
    );
    let o = s.origin.as_ref().expect("origin counters");
    assert!(
        o.total >= s.requests.total,
        "{what}: the origin saw every request"
    );
    assert_eq!(o.offload_ratio, Some(0.0), "{what}: no proxy, no offload");
    assert!(s.timeseries.len() >= 8, "{what}");
    assert!(s.proxy.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_play_live_hls_and_dash_cleanly() {
    // one origin per run, so that its counters are the run's
    let mut origins = Vec::new();
    for _ in 0..5 {
        origins.push(start_origin().await.0);
    }
    let (faulty, faulty_origin) = start_origin().await;
    faulty_origin.faults.set(Faults {
        status: Some(503),
        class: Some(Class::Segment),
        remaining: Some(5),
        ..Faults::default()
    });
    let never = std::future::pending::<()>;
    let (ts, cmaf, number, timeline, churn, faults) = tokio::join!(
        run(
            config(
                origins[0],
                "/live/hls/master.m3u8",
                ScenarioKind::FlashCrowd,
                24
            ),
            never()
        ),
        run(
            config(
                origins[1],
                "/live/cmaf/master.m3u8",
                ScenarioKind::Steady,
                24
            ),
            never()
        ),
        run(
            config(
                origins[2],
                "/live/dash/manifest.mpd",
                ScenarioKind::AdStorm,
                24
            ),
            never()
        ),
        run(
            config(
                origins[3],
                "/live/dash/timeline.mpd",
                ScenarioKind::Steady,
                24
            ),
            never()
        ),
        run(
            config(origins[4], "/live/hls/v1.m3u8", ScenarioKind::Churn, 12),
            never()
        ),
        run(
            config(faulty, "/live/hls/master.m3u8", ScenarioKind::Steady, 6),
            never()
        ),
    );
    let (ts, cmaf, number, timeline, churn, faults) = (
        ts.unwrap(),
        cmaf.unwrap(),
        number.unwrap(),
        timeline.unwrap(),
        churn.unwrap(),
        faults.unwrap(),
    );
    for (s, what) in [
        (&ts, "HLS TS"),
        (&cmaf, "HLS CMAF"),
        (&number, "DASH $Number$"),
        (&timeline, "DASH timeline"),
        (&churn, "HLS media playlist, churn"),
    ] {
        assert_clean(s, what);
    }
    // demuxed audio: video and audio inits and playlists for every viewer
    assert!(cmaf.requests.by_kind["init"].requests >= 2 * 24);
    assert!(number.requests.by_kind["init"].requests >= 2 * 24);
    assert!(timeline.requests.by_kind["init"].requests >= 2 * 24);
    assert_eq!(ts.requests.by_kind["master"].requests, 24);
    // churn: 12 viewers at 100 %/min for 7 s leave one after another, replaced by new sessions
    assert!(churn.viewers.left >= 1, "{:?}", churn.viewers);
    assert_eq!(
        churn.viewers.sessions_started,
        12 + churn.viewers.left,
        "{:?}",
        churn.viewers
    );
    // injected 503s on segments: counted by kind, the run reports the failure
    assert_eq!(
        faults.errors.by_kind.get("http_503"),
        Some(&5),
        "{:?}",
        faults.errors
    );
    assert_eq!(faults.requests.by_kind["segment"].errors, 5);
    assert!(faults
        .failures
        .iter()
        .any(|f| f.contains("5 request errors")));
}

#[tokio::test]
async fn non_loopback_targets_are_refused() {
    let mut cfg = config(
        "127.0.0.1:9".parse().unwrap(),
        "/live/hls/master.m3u8",
        ScenarioKind::Steady,
        1,
    );
    cfg.target = Url::parse("http://192.0.2.1:8080/live/hls/master.m3u8").unwrap();
    cfg.origin = None;
    let e = run(cfg, std::future::pending()).await.unwrap_err();
    assert!(e.to_string().contains("loopback"), "{e}");
}
