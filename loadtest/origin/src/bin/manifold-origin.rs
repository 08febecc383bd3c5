//! Live HLS/DASH origin simulator serving the sample media on a looped live timeline.

use anyhow::Context;
use clap::Parser;
use manifold_origin::{self as origin, Origin, OriginOptions};
use std::path::PathBuf;
use std::sync::Arc;

/// Live HLS/DASH origin simulator: a looped live channel with scheduled SCTE-35 ad breaks, VOD
/// assets and ad creatives, request counters and fault injection.
#[derive(Parser, Debug)]
#[command(name = "manifold-origin", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is printed first).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// The sample media directory.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/media"))]
    media: PathBuf,
    /// Segment and target duration in seconds (the sample media exists for 2 and 6).
    #[arg(long, default_value_t = 2)]
    segment_duration: u32,
    /// Segments in the live window.
    #[arg(long, default_value_t = 10)]
    window: u64,
    /// Seconds the channel has already been live at start-up (default: one full window).
    #[arg(long)]
    elapsed: Option<u64>,
    /// When the channel started, Unix seconds (instead of --elapsed): simulators given the
    /// same epoch serve the same channel, as redundant origins.
    #[arg(long)]
    epoch: Option<u64>,
    /// First ad break, seconds after the channel started.
    #[arg(long, default_value_t = 30)]
    ad_first: u64,
    /// Seconds between ad break starts (0 disables breaks).
    #[arg(long, default_value_t = 90)]
    ad_every: u64,
    /// Length of each ad break, seconds.
    #[arg(long, default_value_t = 30)]
    ad_duration: u64,
    /// Announce each break this many seconds before it starts (0: as it starts).
    #[arg(long, default_value_t = 0)]
    ad_announce: u64,
    /// Length of the VOD asset, seconds.
    #[arg(long, default_value_t = 120)]
    vod_duration: u64,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("manifold-origin: {e:#}");
        std::process::exit(2);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let opts = OriginOptions {
        segment_secs: args.segment_duration,
        window: args.window,
        elapsed_secs: args.elapsed,
        epoch_unix: args.epoch,
        ad_first_secs: args.ad_first,
        ad_every_secs: args.ad_every,
        ad_len_secs: args.ad_duration,
        ad_announce_secs: args.ad_announce,
        vod_secs: args.vod_duration,
        ..OriginOptions::new(args.media)
    };
    let origin = Arc::new(Origin::new(&opts)?);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    tracing::info!(%addr, "origin simulator ready: /live/hls/master.m3u8, /live/dash/manifest.mpd");
    origin::serve(listener, origin).await?;
    Ok(())
}
