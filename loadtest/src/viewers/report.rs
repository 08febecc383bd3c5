//! The run's summary: a human-readable table, the JSON document (`--json`, field names are
//! stable) and SVG plots (`--plots`).

use super::metrics::{Percentiles, Second, Tally};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// What was run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub protocol: String,
    pub target: String,
    pub viewers: u64,
    pub ramp_s: f64,
    pub duration_s: f64,
    pub churn_per_min: f64,
    pub abr_switch: f64,
    pub seed: u64,
    pub connections: usize,
    pub timeout_s: f64,
    pub query: Option<String>,
    /// Viewers sent CMCD in query form.
    #[serde(default)]
    pub cmcd: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ViewerStats {
    pub peak_active: u64,
    pub sessions_started: u64,
    /// Viewers that left before the end (churn).
    pub left: u64,
    pub abr_switches: u64,
    /// Segments viewers missed because the window moved past them between two reloads.
    pub segments_skipped: u64,
    pub connections_opened: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KindSummary {
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
    pub per_second: f64,
    pub latency_ms: Percentiles,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequestStats {
    pub total: u64,
    pub errors: u64,
    pub per_second: f64,
    pub bytes: u64,
    pub mb_per_second: f64,
    /// Redirects followed (counted apart from the requests).
    pub redirects: u64,
    /// By kind: `master`, `media_playlist`, `mpd`, `init`, `segment`.
    pub by_kind: BTreeMap<String, KindSummary>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Masters, media playlists and MPDs.
    pub manifest: Percentiles,
    /// Init and media segments.
    pub segment: Percentiles,
    /// Waiting for a free connection (only when `--connections` binds); not in the latencies.
    pub pool_wait: Percentiles,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConsistencyStats {
    pub reloads_checked: u64,
    pub violations: Tally,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AdStats {
    /// Ad segments downloaded (URIs with `/ads/`).
    pub ad_segments: u64,
    /// Manifest loads showing an ad break (markers, ad segments or ad periods).
    pub manifests_with_breaks: u64,
}

/// Origin fetches of each segment path (one path = one segment of one rendition).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SegmentFetches {
    pub paths: u64,
    pub max: u64,
    pub mean: f64,
    /// Paths fetched more than once during the run.
    pub paths_over_one: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OriginStats {
    pub url: String,
    pub prefix: String,
    /// Origin requests during the run, by class (`hls_playlist`, `dash_manifest`, `segment`, `other`).
    pub requests: BTreeMap<String, u64>,
    pub total: u64,
    /// Segment (and init) requests the viewers made.
    pub viewer_segment_requests: u64,
    /// 1 - origin segment requests / viewer segment requests.
    pub offload_ratio: Option<f64>,
    pub segment_fetches: SegmentFetches,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcStats {
    pub pid: Option<u32>,
    /// CPU over the run (100 = one core): CPU time / wall time.
    pub cpu_pct_mean: f64,
    /// Highest one-second figure.
    pub cpu_pct_max: f64,
    pub rss_mib_start: f64,
    pub rss_mib_max: f64,
    pub rss_mib_end: f64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub tool: String,
    pub version: String,
    pub command_line: Vec<String>,
    pub scenario: ScenarioInfo,
    /// RFC 3339.
    pub started_at: String,
    pub elapsed_s: f64,
    /// Ran its full duration.
    pub completed: bool,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
    pub viewers: ViewerStats,
    pub requests: RequestStats,
    pub latency_ms: LatencySummary,
    pub errors: Tally,
    /// How far behind live manifests were when loaded, seconds.
    pub staleness_s: Percentiles,
    /// LL-HLS blocking reloads: ms from the part's availability to the answer.
    #[serde(default)]
    pub blocking_beyond_ms: Percentiles,
    pub consistency: ConsistencyStats,
    pub ads: AdStats,
    pub origin: Option<OriginStats>,
    pub proxy: Option<ProcStats>,
    pub loadgen: ProcStats,
    /// Why `--fail-on-errors` would fail this run (empty: it passes).
    pub failures: Vec<String>,
    pub timeseries: Vec<Second>,
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn tally_line(t: &Tally) -> String {
    if t.total == 0 {
        return "none".into();
    }
    let kinds: Vec<String> = t.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!("{} ({})", t.total, kinds.join(", "))
}

/// The table printed at the end of a run.
pub fn table(s: &Summary) -> String {
    // Long on purpose: one row per figure, in the order printed.
    let mut o = String::new();
    let sc = &s.scenario;
    let _ = writeln!(
        o,
        "manifold-loadtest: {} {}, {} viewers, ramp {} s, hold {} s{}\n  target {}",
        sc.protocol,
        sc.name,
        sc.viewers,
        sc.ramp_s,
        sc.duration_s,
        if sc.name == "churn" {
            format!(", churn {}/min", sc.churn_per_min)
        } else {
            String::new()
        },
        sc.target
    );
    let _ = writeln!(
        o,
        "  {:.1} s, {}; peak {} viewers, {} sessions, {} left, {} ABR switches, {} TCP connections",
        s.elapsed_s,
        if s.completed {
            "completed"
        } else if s.interrupted {
            "interrupted"
        } else {
            "stopped"
        },
        s.viewers.peak_active,
        s.viewers.sessions_started,
        s.viewers.left,
        s.viewers.abr_switches,
        s.viewers.connections_opened,
    );
    let _ = writeln!(
        o,
        "\n{:<16} {:>10} {:>9} {:>8} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "requests", "count", "req/s", "MB/s", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    let elapsed = s.elapsed_s.max(1e-3);
    let row = |o: &mut String, name: &str, n: u64, errs: u64, bytes: u64, l: &Percentiles| {
        let _ = writeln!(
            o,
            "{:<16} {:>10} {:>9.1} {:>8.2} {:>7} {:>8} {:>8} {:>8} {:>8}",
            name,
            n,
            n as f64 / elapsed,
            bytes as f64 / elapsed / 1e6,
            errs,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.max)
        );
    };
    for (name, k) in &s.requests.by_kind {
        if k.requests > 0 {
            row(&mut o, name, k.requests, k.errors, k.bytes, &k.latency_ms);
        }
    }
    let sum = |f: &dyn Fn(&str) -> bool| {
        s.requests
            .by_kind
            .iter()
            .filter(|(n, _)| f(n))
            .fold((0, 0, 0), |(a, b, c), (_, k)| {
                (a + k.requests, b + k.errors, c + k.bytes)
            })
    };
    let man = sum(&|n| matches!(n, "master" | "media_playlist" | "mpd"));
    let seg = sum(&|n| matches!(n, "init" | "segment"));
    row(
        &mut o,
        "all manifests",
        man.0,
        man.1,
        man.2,
        &s.latency_ms.manifest,
    );
    row(
        &mut o,
        "all segments",
        seg.0,
        seg.1,
        seg.2,
        &s.latency_ms.segment,
    );
    let _ = writeln!(
        o,
        "{:<16} {:>10} {:>9.1} {:>8.2} {:>7}",
        "total",
        s.requests.total,
        s.requests.per_second,
        s.requests.mb_per_second,
        s.requests.errors
    );
    if s.latency_ms.pool_wait.count > 0 {
        let w = &s.latency_ms.pool_wait;
        let _ = writeln!(
            o,
            "waited for a connection: {} requests, p99 {} ms, max {} ms (raise --connections)",
            w.count,
            ms(w.p99),
            ms(w.max)
        );
    }
    let _ = writeln!(o, "\nerrors: {}", tally_line(&s.errors));
    for e in s.errors.examples.iter().take(5) {
        let _ = writeln!(o, "  {e}");
    }
    let st = &s.staleness_s;
    let _ = writeln!(
        o,
        "staleness (s behind live): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  ({} loads)",
        st.p50, st.p90, st.p99, st.max, st.count
    );
    let b = &s.blocking_beyond_ms;
    if b.count > 0 {
        let _ = writeln!(
            o,
            "LL-HLS blocking reloads, ms past the part's availability: p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}  ({} reloads)",
            b.p50, b.p90, b.p99, b.max, b.count
        );
    }
    let _ = writeln!(
        o,
        "consistency: {} reloads checked, violations: {}",
        s.consistency.reloads_checked,
        tally_line(&s.consistency.violations)
    );
    for e in s.consistency.violations.examples.iter().take(5) {
        let _ = writeln!(o, "  {e}");
    }
    let _ = writeln!(
        o,
        "ads: {} ad segments downloaded, {} manifest loads showed a break; {} segments skipped",
        s.ads.ad_segments, s.ads.manifests_with_breaks, s.viewers.segments_skipped
    );
    if let Some(og) = &s.origin {
        let classes: Vec<String> = og
            .requests
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            o,
            "origin {} (prefix {}): {} requests ({})",
            og.url,
            og.prefix,
            og.total,
            classes.join(", ")
        );
        let f = &og.segment_fetches;
        let _ = writeln!(
            o,
            "  offload {}; origin fetches per segment per rendition: max {}, mean {:.3} over {} paths ({} fetched more than once)",
            og.offload_ratio
                .map(|r| format!("{:.2} %", r * 100.0))
                .unwrap_or_else(|| "n/a".into()),
            f.max,
            f.mean,
            f.paths,
            f.paths_over_one
        );
    }
    if let Some(p) = &s.proxy {
        let _ = writeln!(
            o,
            "proxy pid {}: CPU mean {:.0} %, max {:.0} %; RSS {:.0} → {:.0} MiB (max {:.0})",
            p.pid.unwrap_or(0),
            p.cpu_pct_mean,
            p.cpu_pct_max,
            p.rss_mib_start,
            p.rss_mib_end,
            p.rss_mib_max
        );
    }
    let _ = writeln!(
        o,
        "load generator: CPU mean {:.0} %, max {:.0} %; RSS max {:.0} MiB",
        s.loadgen.cpu_pct_mean, s.loadgen.cpu_pct_max, s.loadgen.rss_mib_max
    );
    if s.failures.is_empty() {
        let _ = writeln!(o, "result: no errors, no violations");
    } else {
        let _ = writeln!(o, "result: {}", s.failures.join("; "));
    }
    o
}

/// Writes `latency_manifest.svg`, `latency_segment.svg`, `request_rate.svg` and (with a proxy
/// pid) `proxy.svg` into `dir`; returns the files written.
pub fn plots(s: &Summary, dir: &Path) -> Result<Vec<PathBuf>, String> {
    // Long: one chart after another, each a few plotters calls.
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ts = &s.timeseries;
    let title = format!(
        "{} {} · {} viewers",
        s.scenario.protocol, s.scenario.name, s.scenario.viewers
    );
    let mut written = Vec::new();
    let pct = |f: fn(&Second) -> &Percentiles, q: fn(&Percentiles) -> f64| -> Vec<(f64, f64)> {
        ts.iter()
            .filter(|p| f(p).count > 0)
            .map(|p| (p.t, q(f(p))))
            .collect()
    };
    for (file, what, f) in [
        (
            "latency_manifest.svg",
            "manifest latency",
            (|p: &Second| &p.manifest_ms) as fn(&Second) -> &Percentiles,
        ),
        ("latency_segment.svg", "segment latency", |p: &Second| {
            &p.segment_ms
        }),
    ] {
        let series = vec![
            ("p50".to_string(), pct(f, |p| p.p50)),
            ("p90".to_string(), pct(f, |p| p.p90)),
            ("p99".to_string(), pct(f, |p| p.p99)),
            ("max".to_string(), pct(f, |p| p.max)),
        ];
        let path = dir.join(file);
        line_chart(
            &path,
            &format!("{what} (ms, log scale) — {title}"),
            "ms",
            &series,
            true,
        )?;
        written.push(path);
    }
    let mut kinds: Vec<String> = ts
        .iter()
        .flat_map(|p| {
            p.requests
                .iter()
                .filter(|(_, v)| **v > 0.0)
                .map(|(k, _)| k.clone())
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    let mut series: Vec<(String, Vec<(f64, f64)>)> = vec![(
        "all".into(),
        ts.iter().map(|p| (p.t, p.req_per_s)).collect(),
    )];
    for k in kinds {
        series.push((
            k.clone(),
            ts.iter()
                .map(|p| (p.t, p.requests.get(&k).copied().unwrap_or(0.0)))
                .collect(),
        ));
    }
    series.push((
        "errors".into(),
        ts.iter().map(|p| (p.t, p.errors_per_s)).collect(),
    ));
    let path = dir.join("request_rate.svg");
    line_chart(
        &path,
        &format!("requests per second — {title}"),
        "req/s",
        &series,
        false,
    )?;
    written.push(path);
    if s.proxy.is_some() {
        let cpu = vec![
            (
                "proxy CPU %".to_string(),
                ts.iter()
                    .filter_map(|p| Some((p.t, p.proxy_cpu_pct?)))
                    .collect(),
            ),
            (
                "load generator CPU %".to_string(),
                ts.iter()
                    .filter_map(|p| Some((p.t, p.loadgen_cpu_pct?)))
                    .collect(),
            ),
        ];
        let rss = vec![(
            "proxy RSS MiB".to_string(),
            ts.iter()
                .filter_map(|p| Some((p.t, p.proxy_rss_mib?)))
                .collect(),
        )];
        let path = dir.join("proxy.svg");
        {
            let root = SVGBackend::new(&path, (960, 720)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let (top, bottom) = root.split_vertically(360);
            let caption = format!("CPU (100 % = one core) — {title}");
            draw_lines(&top, &caption, "%", &cpu, 0f64..y_max(&cpu))?;
            draw_lines(
                &bottom,
                "proxy resident memory",
                "MiB",
                &rss,
                0f64..y_max(&rss),
            )?;
            root.present().map_err(|e| e.to_string())?;
        }
        written.push(path);
    }
    Ok(written)
}

fn y_max(series: &[(String, Vec<(f64, f64)>)]) -> f64 {
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(0.0f64, f64::max);
    if ymax > 0.0 {
        ymax * 1.1
    } else {
        1.0
    }
}

fn line_chart(
    path: &Path,
    caption: &str,
    unit: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log: bool,
) -> Result<(), String> {
    let root = SVGBackend::new(path, (960, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    if log {
        // latencies span orders of magnitude: p50 and max both stay readable
        let positive = || {
            series
                .iter()
                .flat_map(|(_, p)| p.iter().map(|q| q.1))
                .filter(|v| *v > 0.0)
        };
        let lo = positive().fold(f64::INFINITY, f64::min);
        let lo = if lo.is_finite() {
            (lo / 2.0).max(0.001)
        } else {
            0.01
        };
        let hi = positive().fold(lo * 10.0, f64::max) * 2.0;
        let clamped: Vec<(String, Vec<(f64, f64)>)> = series
            .iter()
            .map(|(n, p)| (n.clone(), p.iter().map(|&(x, y)| (x, y.max(lo))).collect()))
            .collect();
        draw_lines(&root, caption, unit, &clamped, (lo..hi).log_scale())?;
    } else {
        draw_lines(&root, caption, unit, series, 0f64..y_max(series))?;
    }
    root.present()
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn draw_lines<DB: DrawingBackend, Y>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    unit: &str,
    series: &[(String, Vec<(f64, f64)>)],
    y: Y,
) -> Result<(), String>
where
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let xmax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..xmax, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc(unit)
        .draw()
        .map_err(err)?;
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    for (i, (name, points)) in series.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let color = palette[i % palette.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests;
