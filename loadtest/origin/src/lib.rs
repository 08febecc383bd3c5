//! `manifold-origin`: a live HLS/DASH origin built from the sample media.
//!
//! | path | what |
//! |---|---|
//! | `/{live,vod}/hls/master.m3u8`, `/{live,vod}/hls/v{0,1,2}.m3u8` | MPEG-TS, muxed audio |
//! | `/{live,vod}/cmaf/master.m3u8`, `/{live,vod}/cmaf/{v0,v1,v2,a0}.m3u8` | fMP4, demuxed audio |
//! | `/live/ll/master.m3u8`, `/live/ll/{v0,v1,v2,a0}.m3u8`, parts `/live/ll/{r}/{n}.{k}.m4s` | LL-HLS, CMAF ([`ll`]) |
//! | `/live/dash/manifest.mpd` (`$Number$`), `/live/dash/timeline.mpd` (SegmentTimeline), `/vod/dash/manifest.mpd` | DASH |
//! | `/ads/{ad10,ad15,ad30,slate}/{hls,cmaf}/master.m3u8`, `/ads/{name}/dash/manifest.mpd` | ad creatives |
//! | `/vast?dur=<secs>&mode=...`, `/beacon/<ad>/<event>` | a test VAST ad server and its beacons ([`vast`]) |
//! | `GET /_origin/counters[?prefix=/p]`, `DELETE /_origin/counters` | request counters |
//! | `GET/PUT/DELETE /_origin/faults` | fault injection ([`control::Faults`] as JSON) |

pub mod control;
pub mod dash;
pub mod hls;
pub mod ll;
pub mod media;
pub mod mp4;
pub mod schedule;
pub mod scte35;
pub mod vast;

use anyhow::{bail, Result};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use control::{Class, Counters, FaultSwitch, Faults};
use media::{Library, Package};
use schedule::Schedule;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How the simulated channel behaves.
#[derive(Debug, Clone)]
pub struct OriginOptions {
    /// `samples/media`.
    pub media_dir: PathBuf,
    /// Segment (and target) duration: 2 or 6 seconds (what the sample media is cut to).
    pub segment_secs: u32,
    /// Segments in the live window.
    pub window: u64,
    /// How long the channel has already been live at start-up, seconds (full window by default).
    pub elapsed_secs: Option<u64>,
    /// When the channel started (segment 0), as Unix seconds: two simulators given the same
    /// epoch serve the same channel to the segment, as redundant origins do. Overrides
    /// `elapsed_secs`.
    pub epoch_unix: Option<u64>,
    /// First ad break this many seconds after the channel started.
    pub ad_first_secs: u64,
    /// One break every this many seconds (0: none).
    pub ad_every_secs: u64,
    /// Break length, seconds.
    pub ad_len_secs: u64,
    /// Breaks are announced this many seconds before they start (a future `EXT-X-DATERANGE`,
    /// an early DASH `Event`), so ad decisions can be prefetched; 0: signalled as they start.
    pub ad_announce_secs: u64,
    /// Length of the VOD asset, seconds.
    pub vod_secs: u64,
}

impl OriginOptions {
    /// Defaults for the given media directory: 2 s segments, a 10-segment window, a 30 s break
    /// every 90 s starting 30 s in, and a 120 s VOD asset.
    pub fn new(media_dir: PathBuf) -> Self {
        OriginOptions {
            media_dir,
            segment_secs: 2,
            window: 10,
            elapsed_secs: None,
            epoch_unix: None,
            ad_first_secs: 30,
            ad_every_secs: 90,
            ad_len_secs: 30,
            ad_announce_secs: 0,
            vod_secs: 120,
        }
    }
}

/// The simulator's state, shared by all requests.
pub struct Origin {
    lib: Library,
    schedule: Schedule,
    vod_segments: u64,
    parts: ll::Parts,
    pub counters: Counters,
    pub faults: FaultSwitch,
}

impl Origin {
    pub fn new(opts: &OriginOptions) -> Result<Origin> {
        let d = opts.segment_secs as u64;
        if d == 0 {
            bail!("segment duration must be positive");
        }
        for (name, v) in [
            ("ad-first", opts.ad_first_secs),
            ("ad-every", opts.ad_every_secs),
            ("ad-duration", opts.ad_len_secs),
            ("ad-announce", opts.ad_announce_secs),
            ("vod-duration", opts.vod_secs),
        ] {
            if v % d != 0 {
                bail!("--{name} ({v} s) must be a multiple of the segment duration ({d} s)");
            }
        }
        if opts.ad_every_secs > 0
            && (opts.ad_len_secs == 0 || opts.ad_len_secs >= opts.ad_every_secs)
        {
            bail!("--ad-duration must be positive and shorter than --ad-every");
        }
        if opts.window == 0 {
            bail!("--window must be at least 1 segment");
        }
        let lib = Library::load(&opts.media_dir, opts.segment_secs)?;
        let elapsed = opts.elapsed_secs.unwrap_or(opts.window * d);
        let schedule = Schedule {
            segment_secs: opts.segment_secs,
            window: opts.window,
            epoch: match opts.epoch_unix {
                Some(e) => SystemTime::UNIX_EPOCH + Duration::from_secs(e),
                None => SystemTime::now() - Duration::from_secs(elapsed),
            },
            loop_len: lib.content.ts[0].segments.len() as u64,
            ad_first: opts.ad_first_secs / d,
            ad_every: opts.ad_every_secs / d,
            ad_len: opts.ad_len_secs / d,
            announce: opts.ad_announce_secs / d,
        };
        let parts = ll::Parts::new(&lib.content, opts.segment_secs)?;
        Ok(Origin {
            parts,
            lib,
            schedule,
            vod_segments: opts.vod_secs / d,
            counters: Counters::default(),
            faults: FaultSwitch::default(),
        })
    }

    /// A live channel of `window` segments from the sample media, `window * 2` s in, with a
    /// break of `len` s every `every` s from `first` s (0: none); and that moment, from which
    /// the benches and property tests step the clock.
    pub fn live_window(
        media_dir: PathBuf,
        window: u64,
        first: u64,
        every: u64,
        len: u64,
    ) -> Result<(Origin, SystemTime)> {
        let origin = Origin::new(&OriginOptions {
            window,
            elapsed_secs: Some(window * 2),
            ad_first_secs: first,
            ad_every_secs: every,
            ad_len_secs: len,
            ..OriginOptions::new(media_dir)
        })?;
        let now = origin.schedule.epoch + Duration::from_secs(window * 2);
        Ok((origin, now))
    }

    /// A request for the low-latency channel at `now` (`rest`: the path below `/live/ll/`).
    pub fn low_latency(
        &self,
        rest: &str,
        query: Option<&str>,
        now: SystemTime,
    ) -> Result<ll::Answer> {
        let rest: Vec<&str> = rest.split('/').collect();
        ll::request(
            &self.lib.content,
            &self.parts,
            &self.schedule,
            &rest,
            query,
            now,
        )
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The resource at `path` at time `now`.
    pub fn resource(&self, path: &str, now: SystemTime) -> Result<Option<Resource>> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["ads", name, fmt, rest @ ..] => match self.lib.ads.get(*name) {
                Some(pkg) => creative_resource(pkg, fmt, rest),
                None => Ok(None),
            },
            [scope @ ("live" | "vod"), fmt, rest @ ..] => {
                self.content_resource(*scope == "live", fmt, rest, now)
            }
            _ => Ok(None),
        }
    }

    fn content_resource(
        &self,
        live: bool,
        fmt: &str,
        rest: &[&str],
        now: SystemTime,
    ) -> Result<Option<Resource>> {
        let pkg = &self.lib.content;
        let s = &self.schedule;
        let manifest_cc = if live { "max-age=1" } else { "max-age=3600" };
        let span = if live {
            let w = s.live_window(now);
            hls::Span {
                first: w.start,
                end: w.end,
                live: true,
            }
        } else {
            hls::Span {
                first: 0,
                end: self.vod_segments,
                live: false,
            }
        };
        match (fmt, rest) {
            ("hls" | "cmaf", ["master.m3u8"]) => Ok(Some(Resource::playlist(
                hls::master(pkg, pack(fmt)),
                if live { "max-age=30" } else { "max-age=3600" },
            ))),
            ("hls" | "cmaf", [file]) if file.ends_with(".m3u8") => {
                let id = file.trim_end_matches(".m3u8");
                Ok(hls::media(pkg, pack(fmt), id, span, Some(s))?
                    .map(|text| Resource::playlist(text, manifest_cc)))
            }
            ("dash", ["manifest.mpd"]) => {
                let text = if live {
                    dash::live(pkg, s, now, dash::Addressing::Number)?
                } else {
                    dash::vod(pkg, s, self.vod_segments)?
                };
                Ok(Some(Resource::mpd(text, manifest_cc)))
            }
            ("dash", ["timeline.mpd"]) if live => Ok(Some(Resource::mpd(
                dash::live(pkg, s, now, dash::Addressing::Timeline)?,
                manifest_cc,
            ))),
            ("hls", [id, file]) => {
                let (Some(r), Some(n)) = (pkg.ts(id), segment_number(file, ".ts")) else {
                    return Ok(None);
                };
                let seg = &r.segments[(n % r.segments.len() as u64) as usize];
                Ok(Some(Resource::segment(seg.data.clone(), "video/mp2t")))
            }
            ("cmaf" | "dash", [id, file]) => {
                let Some(r) = pkg.cmaf(id) else {
                    return Ok(None);
                };
                let mime = if r.is_video() {
                    "video/mp4"
                } else {
                    "audio/mp4"
                };
                if *file == "init.mp4" {
                    return Ok(Some(Resource::segment(r.init.clone(), mime)));
                }
                let n = match file.strip_prefix('t') {
                    Some(t) => segment_number(t, ".m4s").and_then(|ticks| r.segment_at(ticks)),
                    None => segment_number(file, ".m4s"),
                };
                Ok(n.map(|n| Resource::segment(r.looped_segment(n), mime)))
            }
            _ => Ok(None),
        }
    }
}

fn pack(fmt: &str) -> hls::Pack {
    if fmt == "hls" {
        hls::Pack::Ts
    } else {
        hls::Pack::Cmaf
    }
}

/// `123.ts` → 123, bounded so timeline arithmetic cannot overflow.
fn segment_number(file: &str, ext: &str) -> Option<u64> {
    file.strip_suffix(ext)?
        .parse::<u64>()
        .ok()
        .filter(|n| *n < 1 << 40)
}

fn creative_resource(pkg: &Package, fmt: &str, rest: &[&str]) -> Result<Option<Resource>> {
    const CC: &str = "max-age=86400";
    let len = pkg.ts[0].segments.len() as u64;
    let whole = hls::Span {
        first: 0,
        end: len,
        live: false,
    };
    match (fmt, rest) {
        ("hls" | "cmaf", ["master.m3u8"]) => {
            Ok(Some(Resource::playlist(hls::master(pkg, pack(fmt)), CC)))
        }
        ("hls" | "cmaf", [file]) if file.ends_with(".m3u8") => {
            let id = file.trim_end_matches(".m3u8");
            let cmaf_len = pkg.cmaf(id).map(|r| r.segments.len() as u64).unwrap_or(len);
            let span = if fmt == "hls" {
                whole
            } else {
                hls::Span {
                    end: cmaf_len,
                    ..whole
                }
            };
            Ok(
                hls::media(pkg, pack(fmt), id, span, None)?
                    .map(|text| Resource::playlist(text, CC)),
            )
        }
        ("dash", ["manifest.mpd"]) => Ok(Some(Resource::mpd(dash::creative(pkg), CC))),
        ("hls", [id, file]) => Ok(pkg.ts(id).and_then(|r| {
            let n = segment_number(file, ".ts")? as usize;
            let seg = r.segments.get(n)?;
            Some(Resource::segment(seg.data.clone(), "video/mp2t"))
        })),
        ("cmaf" | "dash", [id, file]) => Ok(pkg.cmaf(id).and_then(|r| {
            let mime = if r.is_video() {
                "video/mp4"
            } else {
                "audio/mp4"
            };
            if *file == "init.mp4" {
                return Some(Resource::segment(r.init.clone(), mime));
            }
            let n = segment_number(file, ".m4s")? as usize;
            Some(Resource::segment(r.segments.get(n)?.data.clone(), mime))
        })),
        _ => Ok(None),
    }
}

/// A response body with its content type and caching policy.
pub struct Resource {
    pub body: Bytes,
    pub content_type: &'static str,
    pub cache_control: &'static str,
}

impl Resource {
    fn playlist(text: String, cache_control: &'static str) -> Self {
        Resource {
            body: Bytes::from(text),
            content_type: "application/vnd.apple.mpegurl",
            cache_control,
        }
    }
    fn mpd(text: String, cache_control: &'static str) -> Self {
        Resource {
            body: Bytes::from(text),
            content_type: "application/dash+xml",
            cache_control,
        }
    }
    fn segment(body: Bytes, content_type: &'static str) -> Self {
        Resource {
            body,
            content_type,
            cache_control: "max-age=3600",
        }
    }
}

/// The HTTP surface of the simulator.
pub fn router(origin: Arc<Origin>) -> Router {
    Router::new().fallback(handle).with_state(origin)
}

/// Serves until the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, origin: Arc<Origin>) -> std::io::Result<()> {
    axum::serve(listener, router(origin)).await
}

async fn handle(
    State(o): State<Arc<Origin>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if let Some(what) = path.strip_prefix("/_origin/") {
        return control_endpoint(&o, &method, what, uri.query(), &body);
    }
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n").into_response();
    }
    let class = Class::of(path);
    o.counters.record(class, path);
    let faults = o.faults.take(class, path).unwrap_or_default();
    if faults.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await;
    }
    if let Some(code) = faults.status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (status, format!("injected fault: status {code}\n")).into_response();
    }
    if let Some(r) = vast::serve(&o, &uri, &headers).await {
        return r;
    }
    let mut finished = None;
    let found = match path.strip_prefix("/live/ll/") {
        Some(rest) => match low_latency(&o, rest, uri.query()).await {
            Ok(ll::Answer::Ready(r)) => Ok(Some(r)),
            Ok(ll::Answer::Streamed(r, at)) => {
                finished = Some(at);
                Ok(Some(r))
            }
            Ok(ll::Answer::Bad(why)) => {
                return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
            }
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        },
        None => o.resource(path, SystemTime::now()),
    };
    let resource = match found {
        Ok(Some(r)) => r,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such resource\n").into_response(),
        Err(e) => {
            tracing::error!(path, error = %e, "origin failed to build resource");
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response();
        }
    };
    let mut body = resource.body;
    if faults.malformed_manifest && class.is_manifest() {
        body = Bytes::from_static(match class {
            Class::DashManifest => b"<?xml version=\"1.0\"?><MPD type=\"dynamic\"><Period><Adapt",
            _ => b"#EXTM3U\n#EXT-X-TARGETDURATION:two\n#EXTINF:oops,\n\x00\xff garbage",
        });
    }
    let len = body.len();
    let body = if method == Method::HEAD {
        Body::empty()
    } else if faults.truncate {
        // full length announced, half delivered (and flushed), then the connection breaks
        use futures_util::StreamExt;
        let half = body.slice(..len / 2);
        let first = futures_util::stream::once(async move { Ok::<_, std::io::Error>(half) });
        let then_fail = futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(std::io::Error::other("injected truncation"))
        });
        Body::from_stream(first.chain(then_fail))
    } else if let Some(at) = finished {
        streamed(body, at)
    } else {
        Body::from(body)
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(resource.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(resource.cache_control),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

/// Answers a low-latency request, holding a blocking reload until what it asks for is out.
async fn low_latency(o: &Origin, rest: &str, query: Option<&str>) -> Result<ll::Answer> {
    let started = SystemTime::now();
    let mut now = started;
    loop {
        match o.low_latency(rest, query, now)? {
            ll::Answer::At(t) => {
                if t.duration_since(started).unwrap_or_default() > ll::MAX_HOLD {
                    return Ok(ll::Answer::Bad("asks for what is not due soon".into()));
                }
                if let Ok(wait) = t.duration_since(SystemTime::now()) {
                    tokio::time::sleep(wait).await;
                }
                now = t.max(SystemTime::now());
            }
            done => return Ok(done),
        }
    }
}

/// A part still being made: its first half now, the rest when it is finished (`at`), as a
/// packager writes a part while it encodes it.
fn streamed(body: Bytes, at: SystemTime) -> Body {
    use futures_util::StreamExt;
    let half = body.len() / 2;
    let (first, rest) = (body.slice(..half), body.slice(half..));
    let later = futures_util::stream::once(async move {
        if let Ok(wait) = at.duration_since(SystemTime::now()) {
            tokio::time::sleep(wait).await;
        }
        Ok::<_, std::io::Error>(rest)
    });
    Body::from_stream(futures_util::stream::once(async move { Ok(first) }).chain(later))
}

fn control_endpoint(
    o: &Origin,
    method: &Method,
    what: &str,
    query: Option<&str>,
    body: &[u8],
) -> Response {
    match (what, method.as_str()) {
        ("counters", "GET") => {
            let prefix = query
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("prefix=")))
                .unwrap_or("");
            axum::Json(o.counters.view(prefix)).into_response()
        }
        ("counters", "DELETE") => {
            o.counters.reset();
            StatusCode::NO_CONTENT.into_response()
        }
        ("faults", "GET") => axum::Json(o.faults.current()).into_response(),
        ("faults", "PUT") => match serde_json::from_slice::<Faults>(body) {
            Ok(f) => {
                tracing::info!(?f, "faults set");
                o.faults.set(f);
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, format!("bad faults JSON: {e}\n")).into_response(),
        },
        ("faults", "DELETE") => {
            o.faults.clear();
            StatusCode::NO_CONTENT.into_response()
        }
        _ => (StatusCode::NOT_FOUND, "unknown control endpoint\n").into_response(),
    }
}

#[cfg(test)]
mod tests;
