//! What the viewers measure: latency histograms (hdrhistogram, microseconds) per request kind,
//! bytes, errors by kind with examples, manifest staleness, consistency violations, and a
//! per-second time series for the plots.
//!
//! Viewers record into the current one-second interval under one short lock; the runner's
//! ticker swaps the interval out every second ([`Aggregator::tick`]), turns it into a
//! [`Second`] and merges it into the run's totals.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Request kinds, measured apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// HLS master playlist.
    Master,
    /// HLS media playlist.
    Playlist,
    /// DASH MPD.
    Mpd,
    /// Initialization segment (`EXT-X-MAP`, DASH `initialization`).
    Init,
    /// Media segment.
    Segment,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Master,
        Kind::Playlist,
        Kind::Mpd,
        Kind::Init,
        Kind::Segment,
    ];

    /// The name in the report and the JSON summary.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Master => "master",
            Kind::Playlist => "media_playlist",
            Kind::Mpd => "mpd",
            Kind::Init => "init",
            Kind::Segment => "segment",
        }
    }

    pub fn is_manifest(self) -> bool {
        matches!(self, Kind::Master | Kind::Playlist | Kind::Mpd)
    }

    fn idx(self) -> usize {
        self as usize
    }
}

/// Latencies in microseconds, up to an hour.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Staleness in milliseconds, up to a day.
fn staleness_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 86_400_000, 3).expect("valid histogram bounds")
}

/// p50/p90/p99/max of a histogram, in the report's unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Values divided by `per_unit` (1000 turns microseconds into milliseconds).
    pub fn of(h: &Histogram<u64>, per_unit: f64) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let r = |v: f64| (v / per_unit * 1000.0).round() / 1000.0;
        Percentiles {
            count: h.len(),
            mean: r(h.mean()),
            p50: r(h.value_at_quantile(0.50) as f64),
            p90: r(h.value_at_quantile(0.90) as f64),
            p99: r(h.value_at_quantile(0.99) as f64),
            max: r(h.max() as f64),
        }
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

#[derive(Clone)]
struct KindInterval {
    requests: u64,
    errors: u64,
    bytes: u64,
    latency: Histogram<u64>,
}

impl KindInterval {
    fn new() -> Self {
        KindInterval {
            requests: 0,
            errors: 0,
            bytes: 0,
            latency: latency_histogram(),
        }
    }
    fn reset(&mut self) {
        self.requests = 0;
        self.errors = 0;
        self.bytes = 0;
        self.latency.reset();
    }
}

/// One interval's recordings.
#[derive(Clone)]
struct Interval {
    kinds: [KindInterval; 5],
    wait: Histogram<u64>,
}

impl Interval {
    fn new() -> Self {
        Interval {
            kinds: std::array::from_fn(|_| KindInterval::new()),
            wait: latency_histogram(),
        }
    }
    fn reset(&mut self) {
        self.kinds.iter_mut().for_each(KindInterval::reset);
        self.wait.reset();
    }
}

/// Counts by key with the first few examples of each.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    pub total: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub examples: Vec<String>,
}

impl Tally {
    const EXAMPLES_PER_KIND: u64 = 3;
    const EXAMPLES: usize = 20;

    fn add(&mut self, kind: &str, example: impl FnOnce() -> String) {
        self.total += 1;
        let n = self.by_kind.entry(kind.to_string()).or_default();
        *n += 1;
        if *n <= Self::EXAMPLES_PER_KIND && self.examples.len() < Self::EXAMPLES {
            self.examples.push(format!("{kind}: {}", example()));
        }
    }
}

/// Counters of viewer behaviour.
#[derive(Debug, Default)]
pub struct Counters {
    pub viewers_active: AtomicU64,
    /// Viewers started (each starts a session on a personalizing proxy).
    pub viewers_peak: AtomicU64,
    pub sessions_started: AtomicU64,
    pub viewers_left: AtomicU64,
    pub abr_switches: AtomicU64,
    /// Segments a viewer never saw because the window had moved past them between reloads.
    pub segments_skipped: AtomicU64,
    pub ad_segments: AtomicU64,
    /// Manifest loads that showed an ad break (cue markers, ad segments, ad periods).
    pub manifests_with_breaks: AtomicU64,
    pub redirects: AtomicU64,
    /// Manifest reloads compared against the session's earlier ones.
    pub reloads_checked: AtomicU64,
}

/// Shared by all viewers.
pub struct Metrics {
    start: Instant,
    current: Mutex<Interval>,
    errors: Mutex<Tally>,
    violations: Mutex<Tally>,
    staleness: Mutex<Histogram<u64>>,
    /// LL-HLS: how long after the part it asked for was out a blocking reload was answered.
    beyond: Mutex<Histogram<u64>>,
    pub counters: Counters,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            start: Instant::now(),
            current: Mutex::new(Interval::new()),
            errors: Mutex::new(Tally::default()),
            violations: Mutex::new(Tally::default()),
            staleness: Mutex::new(staleness_histogram()),
            beyond: Mutex::new(staleness_histogram()),
            counters: Counters::default(),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// A successful request.
    pub fn ok(&self, kind: Kind, latency: Duration, wait: Duration, bytes: u64) {
        let mut cur = self.current.lock();
        let k = &mut cur.kinds[kind.idx()];
        k.requests += 1;
        k.bytes += bytes;
        let _ = k.latency.record(micros(latency));
        if !wait.is_zero() {
            let _ = cur.wait.record(micros(wait));
        }
    }

    /// A failed request (`error_kind` from [`super::http::FetchError::kind`]).
    pub fn request_error(&self, kind: Kind, error_kind: &str, example: impl FnOnce() -> String) {
        {
            let mut cur = self.current.lock();
            let k = &mut cur.kinds[kind.idx()];
            k.requests += 1;
            k.errors += 1;
        }
        self.errors.lock().add(error_kind, example);
    }

    /// A response that arrived but could not be used (unparsable manifest).
    pub fn parse_error(&self, kind: Kind, example: impl FnOnce() -> String) {
        self.current.lock().kinds[kind.idx()].errors += 1;
        self.errors.lock().add("parse", example);
    }

    pub fn staleness(&self, behind: Duration) {
        let _ = self
            .staleness
            .lock()
            .record((behind.as_millis() as u64).max(1));
    }

    /// A blocking reload answered `ms` after what it asked for was out (0 when early).
    pub fn beyond(&self, ms: i64) {
        let _ = self.beyond.lock().record(ms.max(1) as u64);
    }

    pub fn beyond_ms(&self) -> Percentiles {
        Percentiles::of(&self.beyond.lock(), 1.0)
    }

    pub fn violation(&self, kind: &str, example: impl FnOnce() -> String) {
        self.violations.lock().add(kind, example);
    }

    pub fn errors(&self) -> Tally {
        self.errors.lock().clone()
    }

    pub fn violations(&self) -> Tally {
        self.violations.lock().clone()
    }

    pub fn staleness_ms(&self) -> Percentiles {
        Percentiles::of(&self.staleness.lock(), 1.0)
    }

    pub fn add(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn viewer_joined(&self) {
        let c = &self.counters;
        let now = c.viewers_active.fetch_add(1, Ordering::Relaxed) + 1;
        c.viewers_peak.fetch_max(now, Ordering::Relaxed);
    }

    pub fn viewer_gone(&self) {
        self.counters.viewers_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Process figures sampled with a second (see [`super::procstat`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcFigures {
    pub proxy_cpu_pct: Option<f64>,
    pub proxy_rss_mib: Option<f64>,
    pub loadgen_cpu_pct: Option<f64>,
}

/// One point of the time series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the start of the run, at the end of the interval.
    pub t: f64,
    pub viewers: u64,
    /// Requests per second by kind.
    pub requests: BTreeMap<String, f64>,
    pub req_per_s: f64,
    pub errors_per_s: f64,
    pub mb_per_s: f64,
    pub manifest_ms: Percentiles,
    pub segment_ms: Percentiles,
    pub proxy_cpu_pct: Option<f64>,
    pub proxy_rss_mib: Option<f64>,
    pub loadgen_cpu_pct: Option<f64>,
}

/// Totals of one kind over the run.
pub struct KindTotals {
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
    pub latency: Histogram<u64>,
}

/// Turns intervals into the time series and the run's totals.
pub struct Aggregator {
    spare: Interval,
    scratch_manifest: Histogram<u64>,
    scratch_segment: Histogram<u64>,
    pub kinds: Vec<KindTotals>,
    pub manifest: Histogram<u64>,
    pub segment: Histogram<u64>,
    pub wait: Histogram<u64>,
    pub series: Vec<Second>,
    last: Instant,
}

impl Aggregator {
    pub fn new(m: &Metrics) -> Aggregator {
        Aggregator {
            spare: Interval::new(),
            scratch_manifest: latency_histogram(),
            scratch_segment: latency_histogram(),
            kinds: Kind::ALL
                .iter()
                .map(|_| KindTotals {
                    requests: 0,
                    errors: 0,
                    bytes: 0,
                    latency: latency_histogram(),
                })
                .collect(),
            manifest: latency_histogram(),
            segment: latency_histogram(),
            wait: latency_histogram(),
            series: Vec::new(),
            last: m.start,
        }
    }

    /// Closes the current interval.
    pub fn tick(&mut self, m: &Metrics, procs: ProcFigures) -> &Second {
        {
            let mut cur = m.current.lock();
            std::mem::swap(&mut *cur, &mut self.spare);
        }
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64().max(1e-3);
        self.last = now;
        self.scratch_manifest.reset();
        self.scratch_segment.reset();
        let mut requests = BTreeMap::new();
        let (mut total, mut errors, mut bytes) = (0, 0, 0);
        for kind in Kind::ALL {
            let iv = &self.spare.kinds[kind.idx()];
            let t = &mut self.kinds[kind.idx()];
            t.requests += iv.requests;
            t.errors += iv.errors;
            t.bytes += iv.bytes;
            let _ = t.latency.add(&iv.latency);
            let scratch = if kind.is_manifest() {
                &mut self.scratch_manifest
            } else {
                &mut self.scratch_segment
            };
            let _ = scratch.add(&iv.latency);
            requests.insert(kind.name().to_string(), round(iv.requests as f64 / dt));
            total += iv.requests;
            errors += iv.errors;
            bytes += iv.bytes;
        }
        let _ = self.manifest.add(&self.scratch_manifest);
        let _ = self.segment.add(&self.scratch_segment);
        let _ = self.wait.add(&self.spare.wait);
        self.spare.reset();
        self.series.push(Second {
            t: round(now.duration_since(m.start).as_secs_f64()),
            viewers: m.counters.viewers_active.load(Ordering::Relaxed),
            requests,
            req_per_s: round(total as f64 / dt),
            errors_per_s: round(errors as f64 / dt),
            mb_per_s: round(bytes as f64 / dt / 1e6),
            manifest_ms: Percentiles::of(&self.scratch_manifest, 1000.0),
            segment_ms: Percentiles::of(&self.scratch_segment, 1000.0),
            proxy_cpu_pct: procs.proxy_cpu_pct.map(round),
            proxy_rss_mib: procs.proxy_rss_mib.map(round),
            loadgen_cpu_pct: procs.loadgen_cpu_pct.map(round),
        });
        self.series.last().expect("just pushed")
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_roll_into_totals_and_series() {
        let m = Metrics::new();
        let mut agg = Aggregator::new(&m);
        for ms in [1u64, 2, 3, 4, 100] {
            m.ok(
                Kind::Segment,
                Duration::from_millis(ms),
                Duration::ZERO,
                1000,
            );
        }
        m.ok(
            Kind::Playlist,
            Duration::from_millis(5),
            Duration::from_millis(1),
            200,
        );
        m.request_error(Kind::Segment, "http_503", || "GET /a.ts".into());
        m.request_error(Kind::Segment, "http_503", || "GET /b.ts".into());
        m.parse_error(Kind::Playlist, || "bad".into());
        let s = agg.tick(&m, ProcFigures::default()).clone();
        assert_eq!(s.segment_ms.count, 5);
        assert!((s.segment_ms.max - 100.0).abs() < 0.2, "{:?}", s.segment_ms);
        assert!((s.segment_ms.p50 - 3.0).abs() < 0.01);
        assert_eq!(s.manifest_ms.count, 1);
        assert!(s.errors_per_s > 0.0);
        // the next interval starts empty, totals keep everything
        let s2 = agg.tick(&m, ProcFigures::default()).clone();
        assert_eq!(s2.segment_ms.count, 0);
        let seg = &agg.kinds[Kind::Segment.idx()];
        assert_eq!((seg.requests, seg.errors, seg.bytes), (7, 2, 5000));
        assert_eq!(agg.kinds[Kind::Playlist.idx()].errors, 1);
        assert_eq!(agg.segment.len(), 5);
        assert_eq!(agg.wait.len(), 1);
        let e = m.errors();
        assert_eq!(e.total, 3);
        assert_eq!(e.by_kind["http_503"], 2);
        assert_eq!(e.by_kind["parse"], 1);
        assert_eq!(e.examples.len(), 3);
    }

    #[test]
    fn tallies_keep_few_examples() {
        let mut t = Tally::default();
        for i in 0..10 {
            t.add("segment_changed", || format!("#{i}"));
        }
        assert_eq!(t.total, 10);
        assert_eq!(t.examples.len(), 3);
    }
}
