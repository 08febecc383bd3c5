//! `manifold demo`: the embedded live origin simulator next to the proxy, on loopback.

use crate::config::{Config, OriginUrl};
use anyhow::{bail, Context, Result};
use manifold_origin::{serve, Origin, OriginOptions};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

/// Default sample locations, relative to the source tree the binary was built from.
pub fn default_samples() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../samples"))
}

/// Starts the origin simulator on the (loopback) address the config's first tenant names, on
/// its own thread and runtime, and returns that address once it is listening.
pub fn start_origin(config: &Config, media: PathBuf) -> Result<SocketAddr> {
    let tenant = config.tenants.first().context("config has no tenants")?;
    let url = OriginUrl::parse(&tenant.origin).map_err(anyhow::Error::msg)?;
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()?
        .next()
        .context("origin address does not resolve")?;
    if !addr.ip().is_loopback() {
        bail!("the demo origin must be on loopback, config says {addr}");
    }
    let origin = Arc::new(Origin::new(&OriginOptions {
        // breaks announced ahead, so ad decisions can be prefetched
        ad_announce_secs: 12,
        ..OriginOptions::new(media)
    })?);
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding the demo origin to {addr} (is it in use?)"))?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("demo-origin".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "demo origin runtime failed");
                    return;
                }
            };
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => {
                        if let Err(e) = serve(l, origin).await {
                            tracing::error!(error = %e, "demo origin stopped");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "demo origin listener failed"),
                }
            });
        })?;
    Ok(addr)
}

/// What to open and how to play it.
pub fn banner(config: &Config, origin: SocketAddr) -> String {
    let proxy = config.server.listen.first().cloned().unwrap_or_default();
    let tenant = config.tenants.first().map_or("demo", |t| t.id.as_str());
    let base = format!("http://{proxy}/{tenant}");
    let personalized: String = config
        .tenants
        .iter()
        .filter(|t| t.plugin.is_some())
        .map(|t| {
            let file = t
                .plugin
                .as_ref()
                .and_then(|p| p.file.as_ref())
                .and_then(|f| std::path::Path::new(f).file_stem())
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
            let choose = if t.ssai.insertion == crate::config::InsertionConfig::PlayerSelect {
                format!(
                    "\x20 {:<9} guided: http://{proxy}/{}/live/hls/master.m3u8?insertion=guided  stitched: ...?insertion=stitched\n",
                    "", t.id
                )
            } else {
                String::new()
            };
            format!(
                "\x20 {:<9} http://{proxy}/{}/live/hls/master.m3u8  .../live/dash/manifest.mpd  ({file})\n{choose}",
                t.id, t.id
            )
        })
        .collect();
    let personalized = match config.tenants.iter().find(|t| t.plugin.is_some()) {
        None => String::new(),
        Some(first) => format!(
            "Personalized by the tenants' plugins (each viewer gets a session):\n{personalized}\
             \x20 LL-HLS, personalized: http://{proxy}/{}/live/ll/master.m3u8  (hls.js lowLatencyMode)\n",
            first.id
        ),
    };
    let https = config
        .tls
        .as_ref()
        .and_then(|t| t.listen.first())
        .map(|a| {
            format!(
                "\x20 proxy (HTTPS)     https://{a}/{tenant}/live/hls/master.m3u8  (HTTP/2; self-signed certificate)\n"
            )
        })
        .unwrap_or_default();
    let console = config
        .admin
        .as_ref()
        .map(|a| {
            let token = if a.token.as_deref().is_some_and(|t| !t.starts_with("env:")) {
                "  (token: [admin] token in the config)"
            } else {
                ""
            };
            format!("\x20 console           http://{}/ui/{token}\n", a.listen)
        })
        .unwrap_or_default();
    format!(
        "Manifold demo\n\
         \x20 origin simulator  http://{origin}  (live channel, 2 s segments, 30 s SCTE-35 break every 90 s, announced 12 s ahead)\n\
         \x20 proxy             http://{proxy}\n\
         {https}{console}\
         \n\
         Open through the proxy:\n\
         \x20 HLS (TS)    {base}/live/hls/master.m3u8\n\
         \x20 HLS (CMAF)  {base}/live/cmaf/master.m3u8\n\
         \x20 LL-HLS      {base}/live/ll/master.m3u8  (0.5 s parts, blocking reloads, preload hints)\n\
         \x20 DASH        {base}/live/dash/manifest.mpd\n\
         \x20 DASH (SegmentTimeline)  {base}/live/dash/timeline.mpd\n\
         \x20 VOD         {base}/vod/hls/master.m3u8   {base}/vod/dash/manifest.mpd\n\
         \n\
         {personalized}\n\
         Play:   ffplay {base}/live/hls/master.m3u8\n\
         Decode: ffmpeg -i {base}/live/dash/manifest.mpd -t 20 -f null -\n\
         Origin request counters: curl http://{origin}/_origin/counters\n\
         Stop with Ctrl-C.\n"
    )
}
