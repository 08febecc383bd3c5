use super::*;

fn summary() -> Summary {
    let second = |t: f64| Second {
        t,
        viewers: 10,
        requests: [
            ("segment".to_string(), 5.0),
            ("media_playlist".to_string(), 5.0),
        ]
        .into_iter()
        .collect(),
        req_per_s: 10.0,
        errors_per_s: 0.0,
        mb_per_s: 0.1,
        manifest_ms: Percentiles {
            count: 5,
            mean: 1.0,
            p50: 1.0,
            p90: 2.0,
            p99: 3.0,
            max: 4.0,
        },
        segment_ms: Percentiles::default(),
        proxy_cpu_pct: Some(12.0),
        proxy_rss_mib: Some(80.0),
        loadgen_cpu_pct: Some(5.0),
    };
    Summary {
        tool: "manifold-loadtest".into(),
        version: "0".into(),
        command_line: vec!["manifold-loadtest".into()],
        scenario: ScenarioInfo {
            name: "steady".into(),
            protocol: "hls".into(),
            target: "http://127.0.0.1:1/m.m3u8".into(),
            viewers: 10,
            ramp_s: 1.0,
            duration_s: 2.0,
            churn_per_min: 0.0,
            abr_switch: 0.0,
            seed: 1,
            connections: 8,
            timeout_s: 5.0,
            query: None,
            cmcd: false,
        },
        started_at: "2026-01-01T00:00:00Z".into(),
        elapsed_s: 3.0,
        completed: true,
        interrupted: false,
        viewers: ViewerStats::default(),
        requests: RequestStats {
            by_kind: [(
                "segment".to_string(),
                KindSummary {
                    requests: 30,
                    ..KindSummary::default()
                },
            )]
            .into_iter()
            .collect(),
            total: 30,
            ..RequestStats::default()
        },
        latency_ms: LatencySummary::default(),
        errors: Tally::default(),
        staleness_s: Percentiles::default(),
        blocking_beyond_ms: Default::default(),
        consistency: ConsistencyStats::default(),
        ads: AdStats::default(),
        origin: Some(OriginStats::default()),
        proxy: Some(ProcStats::default()),
        loadgen: ProcStats::default(),
        failures: vec![],
        timeseries: vec![second(1.0), second(2.0), second(3.0)],
    }
}

#[test]
fn table_and_json_and_plots() {
    let s = summary();
    let t = table(&s);
    assert!(t.contains("segment") && t.contains("all manifests"), "{t}");
    assert!(t.contains("result: no errors"));
    let json = serde_json::to_value(&s).unwrap();
    for field in [
        "command_line",
        "scenario",
        "requests",
        "latency_ms",
        "errors",
        "staleness_s",
        "consistency",
        "origin",
        "proxy",
        "loadgen",
        "timeseries",
        "failures",
    ] {
        assert!(json.get(field).is_some(), "{field}");
    }
    let back: Summary = serde_json::from_value(json).unwrap();
    assert_eq!(back.requests.total, 30);
    let dir = tempfile::tempdir().unwrap();
    let files = plots(&s, dir.path()).unwrap();
    assert_eq!(files.len(), 4);
    for f in files {
        let svg = std::fs::read_to_string(&f).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("polyline"),
            "{}",
            f.display()
        );
    }
}
