//! HLS playlists (RFC 8216) for the looped content and the ad creatives.

use super::media::Package;
use super::schedule::{Cue, Schedule};
use super::scte35;
use anyhow::Result;
use std::fmt::Write;

/// How a package is segmented for HLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pack {
    /// MPEG-TS, audio muxed into each variant.
    Ts,
    /// fMP4/CMAF, one audio rendition shared by all variants.
    Cmaf,
}

/// The segments a media playlist lists: `first..end`, and whether more will follow.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub first: u64,
    pub end: u64,
    pub live: bool,
}

pub fn master(pkg: &Package, pack: Pack) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    match pack {
        Pack::Ts => {
            for v in &pkg.ts {
                let _ = write!(
                    out,
                    "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{},CODECS=\"{}\"\n{}.m3u8\n",
                    v.bandwidth, v.average_bandwidth, v.width, v.height, v.codecs, v.id
                );
            }
        }
        Pack::Cmaf => {
            let audio = pkg.audio();
            if let Some(a) = audio {
                let _ = writeln!(
                    out,
                    "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"1\",URI=\"{}.m3u8\"",
                    a.id
                );
            }
            for v in pkg.video() {
                let (ab, aab, acodec) = audio
                    .map(|a| {
                        (
                            a.bandwidth,
                            a.average_bandwidth,
                            format!(",{}", a.info.codec),
                        )
                    })
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{},CODECS=\"{}{}\"{}\n{}.m3u8\n",
                    v.bandwidth + ab,
                    v.average_bandwidth + aab,
                    v.info.width,
                    v.info.height,
                    v.info.codec,
                    acodec,
                    if audio.is_some() { ",AUDIO=\"aud\"" } else { "" },
                    v.id
                );
            }
        }
    }
    out
}

/// A media playlist for one rendition, or `None` if the package has no such rendition.
///
/// With a `schedule` (the content) segments are numbered on the live timeline and carry
/// program-date-time, loop discontinuities (TS only: CMAF is re-timed continuously) and ad cues.
pub fn media(
    pkg: &Package,
    pack: Pack,
    rendition: &str,
    span: Span,
    schedule: Option<&Schedule>,
) -> Result<Option<String>> {
    // per loop position: duration in seconds; CMAF tracks also give exact start times
    let (durations, ext, cmaf): (Vec<f64>, &str, _) = match pack {
        Pack::Ts => match pkg.ts(rendition) {
            Some(r) => (r.segments.iter().map(|s| s.duration).collect(), "ts", None),
            None => return Ok(None),
        },
        Pack::Cmaf => match pkg.cmaf(rendition) {
            Some(r) => (
                r.segments.iter().map(|s| s.seconds).collect(),
                "m4s",
                Some(r),
            ),
            None => return Ok(None),
        },
    };
    let len = durations.len() as u64;
    let target = durations
        .iter()
        .map(|d| d.round() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::with_capacity(256 + 160 * (span.end - span.first) as usize);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
        span.first
    );
    if let (Some(s), Pack::Ts) = (schedule, pack) {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            s.discontinuities_before(span.first)
        );
    }
    if !span.live {
        out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    if cmaf.is_some() {
        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{rendition}/init.mp4\"");
    }
    for n in span.first..span.end {
        let k = (n % len) as usize;
        if let Some(s) = schedule {
            if pack == Pack::Ts && s.loop_restarts_at(n) {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            write_cue(&mut out, s, n)?;
            let start = match cmaf {
                None => s.segment_start(n),
                Some(r) => {
                    let secs = r.looped_start(n) as f64 / r.info.timescale as f64;
                    s.epoch + std::time::Duration::from_secs_f64(secs)
                }
            };
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                humantime::format_rfc3339_millis(start)
            );
        }
        let _ = write!(out, "#EXTINF:{:.6},\n{rendition}/{n}.{ext}\n", durations[k]);
    }
    if !span.live {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    Ok(Some(out))
}

/// SCTE-35 signalling on segment `n`: `EXT-X-CUE-OUT`/`-CONT`/`-IN` and `EXT-X-DATERANGE`.
pub(crate) fn write_cue(out: &mut String, s: &Schedule, n: u64) -> Result<()> {
    if let Some(b) = s.announced_at(n) {
        // the same DATERANGE as at the splice point, ahead of it: START-DATE is in the future
        let bytes = scte35::splice_insert(s, &b, true)?;
        let _ = writeln!(
            out,
            "#EXT-X-DATERANGE:ID=\"splice-{}\",START-DATE=\"{}\",PLANNED-DURATION={}.0,SCTE35-OUT={}",
            scte35::event_id(&b),
            humantime::format_rfc3339_millis(s.segment_start(b.start)),
            b.duration_secs(s),
            scte35::hex(&bytes)
        );
    }
    let Some(cue) = s.cue_at(n) else {
        return Ok(());
    };
    match cue {
        Cue::Out(b) => {
            let bytes = scte35::splice_insert(s, &b, true)?;
            let dur = b.duration_secs(s);
            let _ = write!(
                out,
                "#EXT-X-DATERANGE:ID=\"splice-{}\",START-DATE=\"{}\",PLANNED-DURATION={dur}.0,SCTE35-OUT={}\n#EXT-X-CUE-OUT:DURATION={dur}\n",
                scte35::event_id(&b),
                humantime::format_rfc3339_millis(s.segment_start(b.start)),
                scte35::hex(&bytes)
            );
        }
        Cue::Cont(b, off) => {
            let _ = writeln!(
                out,
                "#EXT-X-CUE-OUT-CONT:ElapsedTime={},Duration={}",
                off * s.segment_secs as u64,
                b.duration_secs(s)
            );
        }
        Cue::In(b) => {
            let bytes = scte35::splice_insert(s, &b, false)?;
            let _ = write!(
                out,
                "#EXT-X-DATERANGE:ID=\"splice-{}\",START-DATE=\"{}\",DURATION={}.0,SCTE35-IN={}\n#EXT-X-CUE-IN\n",
                scte35::event_id(&b),
                humantime::format_rfc3339_millis(s.segment_start(b.start)),
                b.duration_secs(s),
                scte35::hex(&bytes)
            );
        }
    }
    Ok(())
}
