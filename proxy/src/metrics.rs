//! Prometheus metrics, served on the admin listener at `/metrics`. Per tenant: requests by
//! class and status, cache results, origin fetches and their latency, plugin invocations,
//! latency and failures by kind, ad decisions by outcome; per process: memory, CPU, file
//! descriptors (the `process` collector) and loaded plugins.
//!
//! One process-wide registry: every step of the data path records where it knows the outcome,
//! without plumbing handles through. Label values are bounded: tenants come from the config,
//! classes, outcomes and kinds are fixed sets, statuses are HTTP codes.

use once_cell::sync::Lazy;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    /// `manifold_requests_total{tenant,class,status}`
    pub requests: IntCounterVec,
    /// `manifold_request_duration_seconds{tenant,class}`: until the response head is written
    /// for manifests and errors, until the body is done for proxied segments.
    pub request_seconds: HistogramVec,
    /// `manifold_cache_results_total{tenant,class,result}`: hit, miss, coalesced, stale, bypass.
    pub cache: IntCounterVec,
    /// `manifold_origin_fetches_total{tenant,class,outcome}`: ok, status_4xx, status_5xx,
    /// timeout, error.
    pub origin_fetches: IntCounterVec,
    /// `manifold_origin_fetch_duration_seconds{tenant,class}`: to the response head.
    pub origin_seconds: HistogramVec,
    /// `manifold_plugin_invocations_total{tenant,outcome}`: ok or failed.
    pub plugin_calls: IntCounterVec,
    /// `manifold_plugin_duration_seconds{tenant}`
    pub plugin_seconds: HistogramVec,
    /// `manifold_plugin_failures_total{tenant,kind}`: trap, deadline, memory, invalid-plan...
    pub plugin_failures: IntCounterVec,
    /// `manifold_plugin_demoted_calls_total{tenant}`: calls run at low priority because the
    /// tenant's plugin recently ran long (`plugin/executor.rs`).
    pub plugin_demoted_calls: IntCounterVec,
    /// `manifold_ad_decisions_total{tenant,outcome}`: filled, slate (nothing to play),
    /// timeout, error.
    pub ad_decisions: IntCounterVec,
    /// `manifold_plugins_loaded`: compiled plugins held in memory.
    pub plugins_loaded: IntGauge,
    /// `manifold_sessions_active{tenant}`: sessions that fetched a manifest from this node in
    /// the last 30 s (set at each scrape; kept only with an admin listener).
    pub sessions_active: IntGaugeVec,
    /// `manifold_origin_failovers_total{tenant,origin}`: origin requests sent to an origin
    /// other than the first choice (a backup, or the next one after a failure).
    pub origin_failovers: IntCounterVec,
    /// `manifold_origin_health_changes_total{tenant,state}`: an origin address went `up` or
    /// `down` by its health checks.
    pub origin_health_changes: IntCounterVec,
    /// `manifold_outage_manifests_total{tenant,mode}`: manifests answered while the origin
    /// fails: `stale` (the last good copy) or `slate` (the live edge advanced with slate).
    pub outage_manifests: IntCounterVec,
    /// `manifold_beacons_dropped_total{tenant}`: ad segments whose beacons were not fired
    /// because too many beacon tasks were running.
    pub beacons_dropped: IntCounterVec,
    /// `manifold_sessions_refused_total{tenant,reason}`: session starts refused (429) because
    /// the `client` address or the whole `tenant` started too many lately.
    pub sessions_refused: IntCounterVec,
}

/// Latency buckets from 100 µs to 10 s.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
        labels,
    )
    .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

pub static METRICS: Lazy<Metrics> = Lazy::new(|| {
    let r = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }
    let plugins_loaded =
        IntGauge::new("manifold_plugins_loaded", "Compiled plugins held in memory").expect("valid");
    r.register(Box::new(plugins_loaded.clone()))
        .expect("unique");
    let sessions_active = IntGaugeVec::new(
        Opts::new(
            "manifold_sessions_active",
            "Sessions that fetched a manifest from this node in the last 30 s",
        ),
        &["tenant"],
    )
    .expect("valid metric");
    r.register(Box::new(sessions_active.clone()))
        .expect("unique");
    Metrics {
        requests: counter(
            &r,
            "manifold_requests_total",
            "Requests by tenant, class and response status",
            &["tenant", "class", "status"],
        ),
        request_seconds: histogram(
            &r,
            "manifold_request_duration_seconds",
            "Time to answer a request",
            &["tenant", "class"],
        ),
        cache: counter(
            &r,
            "manifold_cache_results_total",
            "Cache lookups by result: hit, miss, coalesced, stale, bypass",
            &["tenant", "class", "result"],
        ),
        origin_fetches: counter(
            &r,
            "manifold_origin_fetches_total",
            "Fetches from the tenant's origin by outcome",
            &["tenant", "class", "outcome"],
        ),
        origin_seconds: histogram(
            &r,
            "manifold_origin_fetch_duration_seconds",
            "Time to the origin's response head",
            &["tenant", "class"],
        ),
        plugin_calls: counter(
            &r,
            "manifold_plugin_invocations_total",
            "Plugin calls by outcome",
            &["tenant", "outcome"],
        ),
        plugin_seconds: histogram(
            &r,
            "manifold_plugin_duration_seconds",
            "Plugin call time, instantiation included",
            &["tenant"],
        ),
        plugin_failures: counter(
            &r,
            "manifold_plugin_failures_total",
            "Plugin failures by kind",
            &["tenant", "kind"],
        ),
        plugin_demoted_calls: counter(
            &r,
            "manifold_plugin_demoted_calls_total",
            "Plugin calls run at low priority: the tenant's plugin recently executed past 20 ms",
            &["tenant"],
        ),
        ad_decisions: counter(
            &r,
            "manifold_ad_decisions_total",
            "Ad decisions by outcome: filled, slate, timeout, error",
            &["tenant", "outcome"],
        ),
        plugins_loaded,
        sessions_active,
        origin_failovers: counter(
            &r,
            "manifold_origin_failovers_total",
            "Origin requests sent to an origin other than the first choice",
            &["tenant", "origin"],
        ),
        origin_health_changes: counter(
            &r,
            "manifold_origin_health_changes_total",
            "Origin addresses going up or down by their health checks",
            &["tenant", "state"],
        ),
        outage_manifests: counter(
            &r,
            "manifold_outage_manifests_total",
            "Manifests answered while the origin fails: stale (last good copy) or slate",
            &["tenant", "mode"],
        ),
        sessions_refused: counter(
            &r,
            "manifold_sessions_refused_total",
            "Session starts refused: the client address or the tenant started too many",
            &["tenant", "reason"],
        ),
        beacons_dropped: counter(
            &r,
            "manifold_beacons_dropped_total",
            "Ad segments whose beacons were dropped: too many beacon tasks in flight",
            &["tenant"],
        ),
        registry: r,
    }
});

/// What a `Cache-Status` value says the cache did.
pub fn cache_result(cache_status: &str) -> &'static str {
    if cache_status.contains("fwd=bypass") {
        "bypass"
    } else if cache_status.contains("fwd=stale") || cache_status.contains("; stale") {
        "stale"
    } else if cache_status.contains("; hit") {
        "hit"
    } else if cache_status.contains("collapsed") {
        "coalesced"
    } else {
        "miss"
    }
}

/// An origin fetch's outcome label for a response status.
pub fn origin_outcome(status: u16) -> &'static str {
    match status {
        500..=599 => "status_5xx",
        400..=499 => "status_4xx",
        _ => "ok",
    }
}

/// The text exposition of every metric.
pub fn render() -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 1024);
    let families = METRICS.registry.gather();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        tracing::warn!(error = %e, "metrics did not encode");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_status_values_map_to_results() {
        assert_eq!(cache_result("Manifold; hit; ttl=3"), "hit");
        assert_eq!(
            cache_result("Manifold; fwd=uri-miss; fwd-status=200; stored"),
            "miss"
        );
        assert_eq!(
            cache_result("Manifold; fwd=miss; fwd-status=200; collapsed"),
            "coalesced"
        );
        assert_eq!(
            cache_result("Manifold; fwd=bypass; detail=unknown-tenant"),
            "bypass"
        );
    }

    #[test]
    fn exposition_follows_prometheus_conventions() {
        METRICS
            .requests
            .with_label_values(&["t", "segment", "200"])
            .inc();
        METRICS
            .plugin_seconds
            .with_label_values(&["t"])
            .observe(0.00002);
        let text = String::from_utf8(render()).unwrap();
        assert!(
            text.contains("manifold_requests_total{class=\"segment\",status=\"200\",tenant=\"t\"}"),
            "{text}"
        );
        assert!(text.contains("# TYPE manifold_plugin_duration_seconds histogram"));
        assert!(
            text.contains("manifold_plugin_duration_seconds_bucket{tenant=\"t\",le=\"0.0001\"} ")
        );
    }
}
