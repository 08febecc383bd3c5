//! One load-test run: viewers joining and leaving per the scenario, a one-second ticker for the
//! time series, process sampling and progress, the origin's counters before and after, and
//! the summary.

use super::http::{loopback_endpoint, BodyMode, Client, ClientOptions};
use super::metrics::{Aggregator, Kind, Metrics, Percentiles, ProcFigures, Second};
use super::player::{self, PlayerOptions, Protocol, Shared};
use super::procstat::ProcMeter;
use super::report::{
    AdStats, ConsistencyStats, KindSummary, LatencySummary, OriginStats, ProcStats, RequestStats,
    ScenarioInfo, SegmentFetches, Summary, ViewerStats,
};
use super::scenario::{Rng, Scenario, ScenarioKind};
use manifold_origin::control::{Class, CountersView};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Off,
    /// A progress bar on stderr (a terminal).
    Bar,
    /// A line on stderr every 5 s (not a terminal, `--progress`).
    Lines,
}

impl Progress {
    /// A bar on a terminal; plain lines if forced elsewhere; else nothing.
    pub fn auto(forced: bool) -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::Bar
        } else if forced {
            Progress::Lines
        } else {
            Progress::Off
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Url,
    pub protocol: Protocol,
    pub scenario: Scenario,
    pub player: PlayerOptions,
    pub client: ClientOptions,
    /// Origin simulator base URL, for its request counters.
    pub origin: Option<Url>,
    /// Only origin paths under this prefix count per path.
    pub origin_prefix: String,
    pub proxy_pid: Option<u32>,
    pub progress: Progress,
    pub command_line: Vec<String>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Target(String),
    #[error("bad scenario: {0}")]
    Scenario(String),
    #[error("origin counters at {0}: {1}")]
    Origin(String, String),
    #[error("proxy pid {0}: {1}")]
    ProxyPid(u32, std::io::Error),
}

async fn origin_counters(
    client: &Client,
    origin: &Url,
    prefix: &str,
) -> Result<CountersView, RunError> {
    let mut u = origin
        .join("/_origin/counters")
        .map_err(|e| RunError::Origin(origin.to_string(), e.to_string()))?;
    // the simulator matches the prefix as written, undecoded
    u.set_query(Some(&format!("prefix={prefix}")));
    let f = client
        .get(&u, BodyMode::Collect { limit: 256 << 20 })
        .await
        .map_err(|e| RunError::Origin(u.to_string(), e.to_string()))?;
    serde_json::from_slice(&f.body).map_err(|e| RunError::Origin(u.to_string(), e.to_string()))
}

/// CPU/RSS of one process over the run.
struct ProcTrack {
    meter: ProcMeter,
    pid: Option<u32>,
    cpu_start: f64,
    started: Instant,
    cpu_max: f64,
    rss_start: f64,
    rss_max: f64,
    rss_end: f64,
}

impl ProcTrack {
    fn new(meter: ProcMeter, pid: Option<u32>) -> Self {
        let rss = meter
            .read()
            .map(|r| r.rss_kib as f64 / 1024.0)
            .unwrap_or(0.0);
        ProcTrack {
            cpu_start: meter.cpu_seconds().unwrap_or(0.0),
            meter,
            pid,
            started: Instant::now(),
            cpu_max: 0.0,
            rss_start: rss,
            rss_max: rss,
            rss_end: rss,
        }
    }

    fn sample(&mut self) -> Option<(f64, f64)> {
        let (cpu, rss) = self.meter.sample()?;
        self.cpu_max = self.cpu_max.max(cpu);
        self.rss_max = self.rss_max.max(rss);
        self.rss_end = rss;
        Some((cpu, rss))
    }

    fn stats(&self) -> ProcStats {
        let wall = self.started.elapsed().as_secs_f64().max(1e-3);
        let cpu = self
            .meter
            .cpu_seconds()
            .map(|c| (c - self.cpu_start) / wall * 100.0)
            .unwrap_or(0.0);
        let r = |v: f64| (v * 10.0).round() / 10.0;
        ProcStats {
            pid: self.pid,
            cpu_pct_mean: r(cpu),
            cpu_pct_max: r(self.cpu_max),
            rss_mib_start: r(self.rss_start),
            rss_mib_max: r(self.rss_max),
            rss_mib_end: r(self.rss_end),
        }
    }
}

/// Runs the scenario until it completes or `interrupt` resolves, and summarizes.
pub async fn run(cfg: RunConfig, interrupt: impl Future<Output = ()>) -> Result<Summary, RunError> {
    // The run in order: meters, the schedule loop, the stop; its parts are the helpers below.
    cfg.scenario.validate().map_err(RunError::Scenario)?;
    loopback_endpoint(&cfg.target).map_err(|e| RunError::Target(e.to_string()))?;
    if let Some(o) = &cfg.origin {
        loopback_endpoint(o).map_err(|e| RunError::Target(e.to_string()))?;
    }
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let metrics = Arc::new(Metrics::new());
    let client = Client::new(cfg.client.clone());
    // counters and process meters first: a wrong --origin or --proxy-pid fails before any load
    let origin_before = match &cfg.origin {
        Some(o) => Some(origin_counters(&client, o, &cfg.origin_prefix).await?),
        None => None,
    };
    let mut proxy = match cfg.proxy_pid {
        Some(pid) => Some(ProcTrack::new(
            ProcMeter::pid(pid).map_err(|e| RunError::ProxyPid(pid, e))?,
            Some(pid),
        )),
        None => None,
    };
    let mut own = ProcMeter::this_process()
        .ok()
        .map(|m| ProcTrack::new(m, None));

    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared::new(
        client.clone(),
        metrics.clone(),
        cfg.player.clone(),
        stop_rx,
    ));
    let sc = cfg.scenario.clone();
    let total = sc.total();
    let start = Instant::now();
    let mut agg = Aggregator::new(&metrics);
    let mut slots: Vec<JoinHandle<()>> = Vec::with_capacity(sc.viewers as usize);
    let mut next_id = 0u64;
    let mut left = 0u64;
    let mut rng = Rng::new(cfg.player.seed ^ 0x5EED_C4A0);
    let spawn = |id: u64| {
        metrics.add(&metrics.counters.sessions_started, 1);
        tokio::spawn(player::viewer(
            shared.clone(),
            id,
            cfg.target.clone(),
            cfg.protocol,
        ))
    };
    let bar = progress_bar(cfg.progress, total);
    let mut schedule = tokio::time::interval(Duration::from_millis(20));
    schedule.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(interrupt);
    let mut interrupted = false;
    let mut last_line = Instant::now();
    loop {
        tokio::select! {
            _ = &mut interrupt => {
                interrupted = true;
                break;
            }
            _ = schedule.tick() => {
                let el = start.elapsed();
                if el >= total {
                    break;
                }
                let due = sc.joined_by(el);
                while (slots.len() as u64) < due {
                    slots.push(spawn(next_id));
                    next_id += 1;
                }
                let leaves = sc.left_by(el);
                while left < leaves && !slots.is_empty() {
                    let i = rng.below(slots.len() as u64) as usize;
                    slots[i].abort();
                    slots[i] = spawn(next_id);
                    next_id += 1;
                    left += 1;
                    metrics.add(&metrics.counters.viewers_left, 1);
                }
            }
            _ = ticker.tick() => {
                let figures = sample(&mut proxy, &mut own);
                let s = agg.tick(&metrics, figures);
                let msg = tick_line(s, &metrics);
                match &bar {
                    Some(b) => {
                        b.set_position(start.elapsed().as_secs().min(total.as_secs()));
                        b.set_message(msg);
                    }
                    None if cfg.progress == Progress::Lines && last_line.elapsed() >= Duration::from_secs(5) => {
                        last_line = Instant::now();
                        eprintln!("[{:>5.0} s] {msg}", start.elapsed().as_secs_f64());
                    }
                    None => {}
                }
            }
        }
    }
    stop_viewers(&stop_tx, &mut slots, cfg.client.timeout).await;
    let elapsed = start.elapsed();
    let figures = sample(&mut proxy, &mut own);
    agg.tick(&metrics, figures);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let origin_after = match &cfg.origin {
        Some(o) => Some(origin_counters(&client, o, &cfg.origin_prefix).await?),
        None => None,
    };

    let viewer_segments =
        agg.kinds[Kind::Segment as usize].requests + agg.kinds[Kind::Init as usize].requests;
    let origin = match (&cfg.origin, origin_before, origin_after) {
        (Some(url), Some(before), Some(after)) => Some(origin_stats(
            url,
            &cfg.origin_prefix,
            &before,
            &after,
            viewer_segments,
        )),
        _ => None,
    };
    let finished = Finished {
        started_at,
        elapsed,
        interrupted,
        agg,
        origin,
        proxy,
        own,
    };
    Ok(summarize(&cfg, &metrics, &client, finished))
}

/// The progress bar on a terminal (`Progress::Bar`), none otherwise.
fn progress_bar(progress: Progress, total: Duration) -> Option<indicatif::ProgressBar> {
    if progress != Progress::Bar {
        return None;
    }
    let b = indicatif::ProgressBar::new(total.as_secs().max(1));
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:24}] {pos}/{len} s  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    Some(b)
}

/// One second of the run, in a line.
fn tick_line(s: &Second, metrics: &Metrics) -> String {
    format!(
        "{} viewers · {:.0} req/s · {:.1} MB/s · errors {} · manifest p99 {:.1} ms · segment p99 {:.1} ms",
        s.viewers,
        s.req_per_s,
        s.mb_per_s,
        metrics.errors().total,
        s.manifest_ms.p99,
        s.segment_ms.p99
    )
}

/// Viewers finish the request in flight (bounded by the request timeout), then go.
async fn stop_viewers(stop: &watch::Sender<bool>, slots: &mut [JoinHandle<()>], timeout: Duration) {
    let _ = stop.send(true);
    let deadline = tokio::time::Instant::now() + timeout + Duration::from_secs(1);
    for h in slots {
        if tokio::time::timeout_at(deadline, &mut *h).await.is_err() {
            h.abort();
        }
    }
}

/// What a run leaves for its summary.
struct Finished {
    started_at: String,
    elapsed: Duration,
    interrupted: bool,
    agg: Aggregator,
    origin: Option<OriginStats>,
    proxy: Option<ProcTrack>,
    own: Option<ProcTrack>,
}

/// The run's report: totals per request kind, latencies, errors, what failed.
fn summarize(cfg: &RunConfig, metrics: &Metrics, client: &Client, f: Finished) -> Summary {
    // Mostly the report's literal: one field per line of the JSON summary.
    let Finished {
        started_at,
        elapsed,
        interrupted,
        mut agg,
        origin,
        proxy,
        own,
    } = f;
    let completed = !interrupted;
    let sc = &cfg.scenario;
    let secs = elapsed.as_secs_f64().max(1e-3);
    let mut by_kind = BTreeMap::new();
    let (mut total_req, mut total_err, mut total_bytes) = (0, 0, 0);
    for (i, kind) in Kind::ALL.iter().enumerate() {
        let k = &agg.kinds[i];
        total_req += k.requests;
        total_err += k.errors;
        total_bytes += k.bytes;
        by_kind.insert(
            kind.name().to_string(),
            KindSummary {
                requests: k.requests,
                errors: k.errors,
                bytes: k.bytes,
                per_second: round(k.requests as f64 / secs),
                latency_ms: Percentiles::of(&k.latency, 1000.0),
            },
        );
    }
    let c = &metrics.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let errors = metrics.errors();
    let violations = metrics.violations();
    let mut failures = Vec::new();
    if errors.total > 0 {
        failures.push(format!("{} request errors", errors.total));
    }
    if violations.total > 0 {
        failures.push(format!("{} consistency violations", violations.total));
    }
    let segments_ok =
        agg.kinds[Kind::Segment as usize].requests - agg.kinds[Kind::Segment as usize].errors;
    if segments_ok == 0 {
        failures.push("no media segment was downloaded".into());
    }
    if sc.kind == ScenarioKind::AdStorm && load(&c.manifests_with_breaks) == 0 {
        failures.push(
            "ad-storm: no ad break was seen during the run (start the origin with --ad-first/--ad-every so that one falls inside it)"
                .into(),
        );
    }
    let staleness_s = {
        let ms = metrics.staleness_ms();
        Percentiles {
            count: ms.count,
            mean: ms.mean / 1000.0,
            p50: ms.p50 / 1000.0,
            p90: ms.p90 / 1000.0,
            p99: ms.p99 / 1000.0,
            max: ms.max / 1000.0,
        }
    };
    Summary {
        tool: "manifold-loadtest".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        command_line: cfg.command_line.clone(),
        scenario: ScenarioInfo {
            name: sc.kind.name().into(),
            protocol: cfg.protocol.name().into(),
            target: cfg.target.to_string(),
            viewers: sc.viewers,
            ramp_s: sc.ramp.as_secs_f64(),
            duration_s: sc.hold.as_secs_f64(),
            churn_per_min: if sc.kind == ScenarioKind::Churn {
                sc.churn_per_min
            } else {
                0.0
            },
            abr_switch: cfg.player.abr_switch,
            seed: cfg.player.seed,
            connections: cfg.client.max_connections,
            timeout_s: cfg.client.timeout.as_secs_f64(),
            query: cfg.player.query.clone(),
            cmcd: cfg.player.cmcd,
        },
        started_at,
        elapsed_s: round(secs),
        completed,
        interrupted,
        viewers: ViewerStats {
            peak_active: load(&c.viewers_peak),
            sessions_started: load(&c.sessions_started),
            left: load(&c.viewers_left),
            abr_switches: load(&c.abr_switches),
            segments_skipped: load(&c.segments_skipped),
            connections_opened: client.connections_opened(),
        },
        requests: RequestStats {
            total: total_req,
            errors: total_err,
            per_second: round(total_req as f64 / secs),
            bytes: total_bytes,
            mb_per_second: round(total_bytes as f64 / secs / 1e6),
            redirects: load(&c.redirects),
            by_kind,
        },
        latency_ms: LatencySummary {
            manifest: Percentiles::of(&agg.manifest, 1000.0),
            segment: Percentiles::of(&agg.segment, 1000.0),
            pool_wait: Percentiles::of(&agg.wait, 1000.0),
        },
        errors,
        staleness_s,
        blocking_beyond_ms: metrics.beyond_ms(),
        consistency: ConsistencyStats {
            reloads_checked: load(&c.reloads_checked),
            violations,
        },
        ads: AdStats {
            ad_segments: load(&c.ad_segments),
            manifests_with_breaks: load(&c.manifests_with_breaks),
        },
        origin,
        proxy: proxy.as_ref().map(ProcTrack::stats),
        loadgen: own.as_ref().map(ProcTrack::stats).unwrap_or_default(),
        failures,
        timeseries: std::mem::take(&mut agg.series),
    }
}

fn sample(proxy: &mut Option<ProcTrack>, own: &mut Option<ProcTrack>) -> ProcFigures {
    let p = proxy.as_mut().and_then(ProcTrack::sample);
    let o = own.as_mut().and_then(ProcTrack::sample);
    ProcFigures {
        proxy_cpu_pct: p.map(|p| p.0),
        proxy_rss_mib: p.map(|p| p.1),
        loadgen_cpu_pct: o.map(|o| o.0),
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Origin requests during the run and how well the proxy shielded the origin.
pub fn origin_stats(
    url: &Url,
    prefix: &str,
    before: &CountersView,
    after: &CountersView,
    viewer_segment_requests: u64,
) -> OriginStats {
    let requests: BTreeMap<String, u64> = after
        .by_class
        .iter()
        .map(|(k, n)| {
            (
                k.clone(),
                n.saturating_sub(before.by_class.get(k).copied().unwrap_or(0)),
            )
        })
        .collect();
    let origin_segments = requests.get("segment").copied().unwrap_or(0);
    let per_path: Vec<u64> = after
        .by_path
        .iter()
        .filter(|(p, _)| Class::of(p) == Class::Segment)
        .map(|(p, n)| n.saturating_sub(before.by_path.get(p).copied().unwrap_or(0)))
        .filter(|n| *n > 0)
        .collect();
    let paths = per_path.len() as u64;
    let sum: u64 = per_path.iter().sum();
    OriginStats {
        url: url.to_string(),
        prefix: prefix.to_string(),
        total: after.total.saturating_sub(before.total),
        requests,
        viewer_segment_requests,
        offload_ratio: (viewer_segment_requests > 0)
            .then(|| round(1.0 - origin_segments as f64 / viewer_segment_requests as f64)),
        segment_fetches: SegmentFetches {
            paths,
            max: per_path.iter().copied().max().unwrap_or(0),
            mean: if paths > 0 {
                round(sum as f64 / paths as f64)
            } else {
                0.0
            },
            paths_over_one: per_path.iter().filter(|n| **n > 1).count() as u64,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(classes: &[(&str, u64)], paths: &[(&str, u64)]) -> CountersView {
        CountersView {
            total: classes.iter().map(|c| c.1).sum(),
            by_class: classes.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            by_path: paths.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        }
    }

    #[test]
    fn offload_and_fetches_per_segment() {
        let before = view(
            &[("segment", 10), ("hls_playlist", 5)],
            &[("/live/hls/v0/1.ts", 1), ("/live/hls/v0.m3u8", 5)],
        );
        let after = view(
            &[("segment", 14), ("hls_playlist", 9)],
            &[
                ("/live/hls/v0/1.ts", 1),
                ("/live/hls/v0/2.ts", 1),
                ("/live/hls/v0/3.ts", 2),
                ("/live/hls/v1/3.ts", 1),
                ("/live/hls/v0.m3u8", 9),
            ],
        );
        let url = Url::parse("http://127.0.0.1:9000").unwrap();
        let s = origin_stats(&url, "/live/", &before, &after, 400);
        assert_eq!(s.requests["segment"], 4);
        assert_eq!(s.total, 8);
        assert_eq!(s.offload_ratio, Some(0.99));
        assert_eq!(s.segment_fetches.paths, 3);
        assert_eq!(s.segment_fetches.max, 2);
        assert_eq!(s.segment_fetches.paths_over_one, 1);
        assert!((s.segment_fetches.mean - 1.333).abs() < 1e-9);
    }
}
