//! `manifold-loadtest`: simulated live-event viewers against a loopback target.

use anyhow::Context;
use clap::Parser;
use manifold_loadtest::viewers::http::ClientOptions;
use manifold_loadtest::viewers::player::{PlayerOptions, Protocol};
use manifold_loadtest::viewers::report;
use manifold_loadtest::viewers::run::{self, Progress, RunConfig, RunError};
use manifold_loadtest::viewers::scenario::{Scenario, ScenarioKind};
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// Simulated viewers of a live HLS or DASH stream through a proxy on loopback: players that
/// join per the scenario, reload manifests as real players do and download every new segment.
/// Reports latency percentiles, throughput, errors by kind, staleness, per-session
/// consistency, origin offload and the proxy's CPU/RSS as a table, JSON and SVG plots.
///
/// Exit status: 0 when the run completed, 1 with --fail-on-errors and any request error,
/// consistency violation or unmet scenario, 2 for bad arguments or an unusable target, 130 when
/// interrupted (the report is still written).
#[derive(Parser, Debug)]
#[command(name = "manifold-loadtest", version)]
struct Args {
    /// Entry URL: an HLS master or media playlist (.m3u8) or a DASH MPD (.mpd) on loopback,
    /// e.g. http://127.0.0.1:8080/tenant/live/hls/master.m3u8.
    target: String,
    /// hls or dash (default: from the URL's extension).
    #[arg(long, value_parser = ["hls", "dash"])]
    protocol: Option<String>,
    /// How viewers come and go.
    #[arg(long, value_enum, default_value = "steady")]
    scenario: ScenarioKind,
    /// Concurrent viewers (at most 100000).
    #[arg(long, default_value_t = 100)]
    viewers: u64,
    /// Seconds over which viewers join (default 5 for flash-crowd, 10 otherwise; "30s", "2m" work too).
    #[arg(long, value_parser = parse_duration)]
    ramp: Option<Duration>,
    /// How long all viewers watch after the ramp (at most 1 h).
    #[arg(long, value_parser = parse_duration, default_value = "60")]
    duration: Duration,
    /// churn: fraction of the viewers that leave per minute, replaced by new ones.
    #[arg(long, default_value_t = 0.1)]
    churn: f64,
    /// Probability, per manifest reload, that a viewer switches video rendition.
    #[arg(long, default_value_t = 0.02)]
    abr_switch: f64,
    /// Seed for variant choices, switches and churn (same seed, same choices).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Most TCP connections to the target (requests beyond wait for one; the wait is reported).
    #[arg(long, default_value_t = 1024)]
    connections: usize,
    /// Request timeout, redirects and body included.
    #[arg(long, value_parser = parse_duration, default_value = "10")]
    timeout: Duration,
    /// Query appended to each viewer's entry URL; {viewer} becomes its number (e.g. "uid={viewer}&device=tv").
    #[arg(long)]
    query: Option<String>,
    /// Players send CMCD as a query parameter on every request, different each time (what
    /// hls.js, dash.js and Shaka do with CMCD on): it must not split the cache.
    #[arg(long)]
    cmcd: bool,
    /// User-Agent of the viewers.
    #[arg(long)]
    user_agent: Option<String>,
    /// Origin simulator base URL (e.g. http://127.0.0.1:9000): its request counters before and
    /// after give origin requests per class, the offload ratio and fetches per segment.
    #[arg(long)]
    origin: Option<String>,
    /// Only origin segment paths under this prefix count per path.
    #[arg(long, default_value = "/")]
    origin_prefix: String,
    /// Sample this process's CPU and RSS every second (the proxy).
    #[arg(long)]
    proxy_pid: Option<u32>,
    /// Write the summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write SVG plots (latency percentiles, request rate, proxy CPU/RSS) into this directory.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Show progress even when stderr is not a terminal (a line every 5 s).
    #[arg(long)]
    progress: bool,
    /// Exit 1 on any request error or consistency violation, no segment downloaded, or an
    /// ad-storm without a break.
    #[arg(long)]
    fail_on_errors: bool,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// Seconds ("30", "2.5") or a humantime duration ("30s", "2m").
fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err(format!("{s}: not a duration"));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s}: {e}"))
}

fn main() {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("manifold-loadtest: starting the runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = rt.block_on(async move {
        match main_async(args).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("manifold-loadtest: {e:#}");
                2
            }
        }
    });
    std::process::exit(code);
}

async fn main_async(args: Args) -> anyhow::Result<i32> {
    let target = Url::parse(&args.target).with_context(|| format!("target {:?}", args.target))?;
    let protocol = match args.protocol.as_deref() {
        Some("hls") => Protocol::Hls,
        Some("dash") => Protocol::Dash,
        _ => Protocol::of_url(&target).with_context(|| {
            format!("cannot tell HLS from DASH by {target} (no .m3u8/.mpd): pass --protocol")
        })?,
    };
    let origin = args
        .origin
        .as_deref()
        .map(|o| Url::parse(o).with_context(|| format!("--origin {o:?}")))
        .transpose()?;
    if !(0.0..=1.0).contains(&args.abr_switch) {
        anyhow::bail!("--abr-switch is a probability between 0 and 1");
    }
    if args.connections == 0 || args.connections > 60_000 {
        anyhow::bail!("--connections must be between 1 and 60000");
    }
    if args.timeout.is_zero() || args.timeout > Duration::from_secs(300) {
        anyhow::bail!("--timeout must be between 1 ms and 300 s");
    }
    let cfg = RunConfig {
        target,
        protocol,
        scenario: Scenario {
            kind: args.scenario,
            viewers: args.viewers,
            ramp: args.ramp.unwrap_or(args.scenario.default_ramp()),
            hold: args.duration,
            churn_per_min: args.churn,
        },
        player: PlayerOptions {
            abr_switch: args.abr_switch,
            seed: args.seed,
            query: args.query.clone(),
            cmcd: args.cmcd,
            ..PlayerOptions::default()
        },
        client: ClientOptions {
            max_connections: args.connections,
            timeout: args.timeout,
            user_agent: args
                .user_agent
                .clone()
                .unwrap_or_else(|| ClientOptions::default().user_agent),
            ..ClientOptions::default()
        },
        origin,
        origin_prefix: args.origin_prefix.clone(),
        proxy_pid: args.proxy_pid,
        progress: Progress::auto(args.progress),
        command_line: std::env::args().collect(),
    };
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let summary = run::run(cfg, interrupt)
        .await
        .map_err(|e: RunError| anyhow::anyhow!(e))?;
    print!("{}", report::table(&summary));
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("summary written to {}", path.display());
    }
    if let Some(dir) = &args.plots {
        let files = report::plots(&summary, dir)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("writing plots to {}", dir.display()))?;
        eprintln!(
            "plots: {}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(if summary.interrupted {
        130
    } else if args.fail_on_errors && !summary.failures.is_empty() {
        1
    } else {
        0
    })
}
