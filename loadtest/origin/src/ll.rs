//! The low-latency channel (`/live/ll/`): the live CMAF content cut into 0.5 s parts, with
//! preload hints, blocking reloads (`_HLS_msn`/`_HLS_part`), delta updates (`_HLS_skip`),
//! rendition reports and the same SCTE-35 breaks as the other live streams (RFC 8216bis §6.2.5).
//!
//! Part `k` of segment `n` is published when it has ended, `epoch + n·d + (k+1)·0.5 s`; the
//! segment, when its last part has. A segment's bytes are its parts' bytes, in order.

use super::hls::{self, Pack};
use super::media::{CmafRendition, Package};
use super::mp4::{self, FragInfo};
use super::schedule::Schedule;
use super::Resource;
use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use std::fmt::Write;
use std::time::{Duration, SystemTime};

/// Part target duration, milliseconds.
pub const PART_MS: u64 = 500;
/// Delta updates skip what is older than this many target durations (the spec's minimum).
const SKIP_TARGETS: u64 = 6;
/// Segments keep their parts listed for this many target durations from the live edge.
const PARTS_KEPT_TARGETS: u64 = 3;
/// A blocking reload or a hinted part is held at most this long.
pub const MAX_HOLD: Duration = Duration::from_secs(6);

struct Part {
    data: Bytes,
    frag: FragInfo,
    /// From the segment's decode time, track ticks.
    start: u64,
    duration: u64,
    independent: bool,
}

/// Every rendition's loop segments, cut into parts once at start-up.
pub struct Parts {
    renditions: Vec<(String, Vec<Vec<Part>>)>,
    per_segment: u64,
    /// `PART-TARGET`: the longest part, rounded up to the millisecond.
    target_ms: u64,
}

impl Parts {
    pub fn new(pkg: &Package, segment_secs: u32) -> Result<Parts> {
        let per_segment = segment_secs as u64 * 1000 / PART_MS;
        let mut renditions = Vec::new();
        let mut longest = 0f64;
        for r in &pkg.cmaf {
            let ts = r.info.timescale as u64;
            let bounds: Vec<u64> = (1..per_segment).map(|k| k * PART_MS * ts / 1000).collect();
            let mut segments = Vec::new();
            for (i, seg) in r.segments.iter().enumerate() {
                let pieces = mp4::split(&seg.data, &bounds)
                    .with_context(|| format!("cutting {} segment {i} into parts", r.id))?;
                let mut parts = Vec::new();
                for p in pieces {
                    longest = longest.max(p.duration as f64 / ts as f64);
                    let frag = mp4::read_fragment(&p.data)?;
                    parts.push(Part {
                        data: Bytes::from(p.data),
                        frag,
                        start: p.start,
                        duration: p.duration,
                        independent: p.independent,
                    });
                }
                if parts.len() as u64 != per_segment {
                    anyhow::bail!("{} segment {i} makes {} parts", r.id, parts.len());
                }
                segments.push(parts);
            }
            renditions.push((r.id.clone(), segments));
        }
        Ok(Parts {
            renditions,
            per_segment,
            target_ms: (longest * 1000.0).ceil() as u64,
        })
    }

    fn of(&self, id: &str) -> Option<&[Vec<Part>]> {
        self.renditions
            .iter()
            .find(|(r, _)| r == id)
            .map(|(_, s)| s.as_slice())
    }
}

/// What a request to the channel gets.
pub enum Answer {
    Ready(Resource),
    /// Not published yet: ask again at this instant (a blocking reload).
    At(SystemTime),
    /// A hinted part: its bytes, finished at this instant (sent as they are made).
    Streamed(Resource, SystemTime),
    Bad(String),
    Missing,
}

/// Where the channel stands at an instant: segments before `end` are complete, and `parts`
/// parts of segment `end` are out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Edge {
    end: u64,
    parts: u64,
}

fn edge(s: &Schedule, per_segment: u64, now: SystemTime) -> Edge {
    let ms = now.duration_since(s.epoch).unwrap_or_default().as_millis() as u64;
    let seg_ms = s.segment_secs as u64 * 1000;
    Edge {
        end: ms / seg_ms,
        parts: (ms % seg_ms / PART_MS).min(per_segment - 1),
    }
}

/// When part `k` of segment `n` is out.
fn part_out(s: &Schedule, n: u64, k: u64) -> SystemTime {
    s.segment_start(n) + Duration::from_millis((k + 1) * PART_MS)
}

/// Directives of a playlist request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Directives {
    pub msn: Option<u64>,
    pub part: Option<u64>,
    pub skip: bool,
}

impl Directives {
    pub fn parse(query: Option<&str>) -> Result<Directives, String> {
        let mut d = Directives::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let num = || {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| *n < 1 << 40)
                    .ok_or_else(|| format!("{k}={v:?} is not a number"))
            };
            match k {
                "_HLS_msn" => d.msn = Some(num()?),
                "_HLS_part" => d.part = Some(num()?),
                "_HLS_skip" => d.skip = v == "YES" || v == "v2",
                _ => {}
            }
        }
        if d.part.is_some() && d.msn.is_none() {
            return Err("_HLS_part without _HLS_msn".into());
        }
        Ok(d)
    }
}

/// A request below `/live/ll/` at `now`.
pub fn request(
    pkg: &Package,
    parts: &Parts,
    s: &Schedule,
    rest: &[&str],
    query: Option<&str>,
    now: SystemTime,
) -> Result<Answer> {
    let per = parts.per_segment;
    let at = edge(s, per, now);
    match rest {
        ["master.m3u8"] => Ok(Answer::Ready(Resource::playlist(
            hls::master(pkg, Pack::Cmaf),
            "max-age=30",
        ))),
        [file] if file.ends_with(".m3u8") => {
            let id = file.trim_end_matches(".m3u8");
            let (Some(r), Some(cut)) = (pkg.cmaf(id), parts.of(id)) else {
                return Ok(Answer::Missing);
            };
            let d = match Directives::parse(query) {
                Ok(d) => d,
                Err(e) => return Ok(Answer::Bad(e)),
            };
            if let Some(msn) = d.msn {
                if msn > at.end + 2 {
                    return Ok(Answer::Bad(format!(
                        "_HLS_msn={msn} is more than two segments past {}",
                        at.end
                    )));
                }
                // a part index past the segment's last is part 0 of the next segment
                let due = match d.part {
                    Some(k) if k >= per => part_out(s, msn + 1, 0),
                    Some(k) => part_out(s, msn, k),
                    None => s.segment_start(msn + 1),
                };
                if due > now {
                    return Ok(Answer::At(due));
                }
            }
            let text = playlist(pkg, parts, s, r, cut, at, d.skip)?;
            // a blocking answer never changes; the plain playlist, every part
            let cc = if d.msn.is_some() {
                "max-age=60"
            } else {
                "max-age=0, s-maxage=0"
            };
            Ok(Answer::Ready(Resource::playlist(text, cc)))
        }
        [id, file] => {
            let (Some(r), Some(cut)) = (pkg.cmaf(id), parts.of(id)) else {
                return Ok(Answer::Missing);
            };
            let mime = if r.is_video() {
                "video/mp4"
            } else {
                "audio/mp4"
            };
            if *file == "init.mp4" {
                return Ok(Answer::Ready(Resource::segment(r.init.clone(), mime)));
            }
            let Some(stem) = file.strip_suffix(".m4s") else {
                return Ok(Answer::Missing);
            };
            let num = |t: &str| t.parse::<u64>().ok().filter(|n| *n < 1 << 40);
            let len = cut.len() as u64;
            match stem.split_once('.') {
                None => {
                    let Some(n) = num(stem) else {
                        return Ok(Answer::Missing);
                    };
                    if n >= at.end {
                        return Ok(Answer::Missing);
                    }
                    let mut body = BytesMut::new();
                    for p in &cut[(n % len) as usize] {
                        body.extend_from_slice(&retimed(r, p, n));
                    }
                    Ok(Answer::Ready(Resource::segment(body.freeze(), mime)))
                }
                Some((n, k)) => {
                    let (Some(n), Some(k)) = (num(n), num(k)) else {
                        return Ok(Answer::Missing);
                    };
                    let Some(p) = cut[(n % len) as usize].get(k as usize) else {
                        return Ok(Answer::Missing);
                    };
                    let body = Bytes::from(retimed(r, p, n));
                    let out = part_out(s, n, k);
                    if out <= now {
                        return Ok(Answer::Ready(Resource::segment(body, mime)));
                    }
                    // a hinted part (the next one or the one after) is held, later ones are not out
                    if out > now + Duration::from_millis(2 * PART_MS) {
                        return Ok(Answer::Missing);
                    }
                    Ok(Answer::Streamed(Resource::segment(body, mime), out))
                }
            }
        }
        _ => Ok(Answer::Missing),
    }
}

fn retimed(r: &CmafRendition, p: &Part, n: u64) -> Vec<u8> {
    p.frag.retime(&p.data, r.looped_start(n) + p.start)
}

fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The media playlist of rendition `r` at `at`.
fn playlist(
    pkg: &Package,
    parts: &Parts,
    s: &Schedule,
    r: &CmafRendition,
    cut: &[Vec<Part>],
    at: Edge,
    skip: bool,
) -> Result<String> {
    let d = s.segment_secs as u64;
    let first = at.end.saturating_sub(s.window);
    let len = cut.len() as u64;
    let ts = r.info.timescale as f64;
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{d}\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},CAN-SKIP-UNTIL={}.0\n\
         #EXT-X-PART-INF:PART-TARGET={}\n#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-INDEPENDENT-SEGMENTS\n",
        secs(3 * parts.target_ms),
        SKIP_TARGETS * d,
        secs(parts.target_ms),
    );
    let kept = (at.end - first).min(SKIP_TARGETS);
    let skipped = if skip { at.end - first - kept } else { 0 };
    if skipped > 0 {
        let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        // date ranges are not skippable (no CAN-SKIP-DATERANGES): they stay
        for n in first..first + skipped {
            let mut cue = String::new();
            hls::write_cue(&mut cue, s, n)?;
            for line in cue.lines().filter(|l| l.starts_with("#EXT-X-DATERANGE")) {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}/init.mp4\"", r.id);
    let id = &r.id;
    let head = |out: &mut String, n: u64| -> Result<()> {
        hls::write_cue(out, s, n)?;
        let start = s.epoch + Duration::from_secs_f64(r.looped_start(n) as f64 / ts);
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            humantime::format_rfc3339_millis(start)
        );
        Ok(())
    };
    let part_lines = |out: &mut String, n: u64, upto: u64| {
        for (k, p) in cut[(n % len) as usize]
            .iter()
            .take(upto as usize)
            .enumerate()
        {
            let _ = writeln!(
                out,
                "#EXT-X-PART:DURATION={:.5},URI=\"{id}/{n}.{k}.m4s\"{}",
                p.duration as f64 / ts,
                if p.independent {
                    ",INDEPENDENT=YES"
                } else {
                    ""
                }
            );
        }
    };
    for n in first + skipped..at.end {
        head(&mut out, n)?;
        if n + PARTS_KEPT_TARGETS >= at.end {
            part_lines(&mut out, n, parts.per_segment);
        }
        let dur: u64 = cut[(n % len) as usize].iter().map(|p| p.duration).sum();
        let _ = write!(out, "#EXTINF:{:.5},\n{id}/{n}.m4s\n", dur as f64 / ts);
    }
    if at.parts > 0 {
        head(&mut out, at.end)?;
        part_lines(&mut out, at.end, at.parts);
    }
    let _ = writeln!(
        out,
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{id}/{}.{}.m4s\"",
        at.end, at.parts
    );
    let (last_msn, last_part) = if at.parts > 0 {
        (at.end, at.parts - 1)
    } else {
        (at.end.saturating_sub(1), parts.per_segment - 1)
    };
    for other in pkg.cmaf.iter().filter(|o| o.id != r.id) {
        let _ = writeln!(
            out,
            "#EXT-X-RENDITION-REPORT:URI=\"{}.m3u8\",LAST-MSN={last_msn},LAST-PART={last_part}",
            other.id
        );
    }
    Ok(out)
}
