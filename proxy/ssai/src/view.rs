//! The compact, typed view of a parsed manifest that a plugin receives, and where its ad
//! breaks are. Built once per origin fetch and shared by every request for that manifest.

use crate::scte35;
use crate::types::{
    AdBreak, AdaptationSet, DashMpd, HlsMaster, HlsMedia, Period, Rendition, Representation,
    Resolution, Scte35, Segment, Variant,
};
use m3u8_rs::{MasterPlaylist, MediaPlaylist, MediaPlaylistType, MediaSegment};

pub fn hls_master(m: &MasterPlaylist) -> HlsMaster {
    HlsMaster {
        variants: m
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| Variant {
                index: i as u32,
                uri: v.uri.clone(),
                bandwidth: v.bandwidth,
                average_bandwidth: v.average_bandwidth,
                resolution: v.resolution.map(|r| Resolution {
                    width: r.width.min(u32::MAX as u64) as u32,
                    height: r.height.min(u32::MAX as u64) as u32,
                }),
                codecs: v.codecs.clone(),
                frame_rate: v.frame_rate,
                audio_group: v.audio.clone(),
            })
            .collect(),
        renditions: m
            .alternatives
            .iter()
            .enumerate()
            .map(|(i, r)| Rendition {
                index: i as u32,
                kind: r.media_type.to_string(),
                group_id: r.group_id.clone(),
                name: r.name.clone(),
                language: r.language.clone(),
                uri: r.uri.clone(),
                is_default: r.default,
            })
            .collect(),
    }
}

/// Where a break lies in a media playlist: content segments `first..end` (within the listed
/// window), starting `elapsed` seconds into the break.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakSpan {
    pub id: String,
    pub first: usize,
    pub end: usize,
    pub duration: f64,
    pub elapsed: f64,
    pub scte35: Option<Scte35>,
}

/// Longer signalled "breaks" are not ad breaks (a malformed or hostile duration): ignored, so
/// no pod is ever laid out over them.
pub const MAX_BREAK_SECS: f64 = 3600.0;

/// A break signalled ahead of time (a future `EXT-X-DATERANGE`, a DASH event beyond the live
/// edge): not in the manifest's timeline yet, but its ad decision can be prefetched.
#[derive(Debug, Clone)]
pub struct Announcement {
    /// The break as plugins will see it when it starts.
    pub brk: AdBreak,
    /// When it starts, Unix milliseconds.
    pub at_ms: i64,
}

/// A media playlist's view and its break spans.
#[derive(Debug, Clone)]
pub struct HlsMediaView {
    pub view: HlsMedia,
    pub spans: Vec<BreakSpan>,
    pub announced: Vec<Announcement>,
    /// Where each segment's lines are in the origin text, when they could be found.
    pub layout: Option<TextLayout>,
    /// LL-HLS: its parts (`None` for other playlists).
    pub edge: Option<crate::types::LiveEdge>,
}

/// Byte ranges of a media playlist's text: the header, each segment (its tags and URI line),
/// and what follows the last segment. Edits splice this text instead of re-serializing it,
/// so untouched parts stay byte-exact and cost a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct TextLayout {
    pub header: std::ops::Range<usize>,
    pub segments: Vec<std::ops::Range<usize>>,
    pub footer: std::ops::Range<usize>,
}

/// Playlist-level tags: everything else before a URI belongs to that segment.
const PLAYLIST_TAGS: &[&str] = &[
    "#EXTM3U",
    "#EXT-X-VERSION",
    "#EXT-X-TARGETDURATION",
    "#EXT-X-MEDIA-SEQUENCE",
    "#EXT-X-DISCONTINUITY-SEQUENCE",
    "#EXT-X-PLAYLIST-TYPE",
    "#EXT-X-INDEPENDENT-SEGMENTS",
    "#EXT-X-START",
    "#EXT-X-I-FRAMES-ONLY",
    "#EXT-X-SERVER-CONTROL",
    "#EXT-X-PART-INF",
    "#EXT-X-DEFINE",
    "#EXT-X-ALLOW-CACHE",
    "#EXT-X-ENDLIST",
];

fn is_playlist_tag(line: &[u8]) -> bool {
    PLAYLIST_TAGS.iter().any(|t| {
        line.starts_with(t.as_bytes())
            && matches!(line.get(t.len()), None | Some(b':') | Some(b'\r'))
    })
}

/// Finds each segment's text; `None` if the text does not line up with `expected` segments.
pub fn text_layout(body: &[u8], expected: usize) -> Option<TextLayout> {
    let mut segments = Vec::with_capacity(expected);
    let mut header_end = None;
    let mut seg_start = 0usize;
    let mut at = 0usize;
    while at < body.len() {
        let end = memchr::memchr(b'\n', &body[at..]).map_or(body.len(), |i| at + i + 1);
        let line = body[at..end].trim_ascii();
        if !line.is_empty() {
            let is_uri = line[0] != b'#';
            if header_end.is_none()
                && (is_uri || (line.starts_with(b"#EXT") && !is_playlist_tag(line)))
            {
                header_end = Some(at);
                seg_start = at;
            }
            if is_uri {
                segments.push(seg_start..end);
                seg_start = end;
            } else if header_end.is_some() && is_playlist_tag(line) && segments.len() == expected {
                break; // the footer (EXT-X-ENDLIST ...)
            }
        }
        at = end;
    }
    let header_end = header_end?;
    // the first line is `#EXTM3U` (m3u8-rs checked): a header that does not hold it means a
    // line the parser took as the header's (`#EXTM3U` followed by junk) was not recognized
    if header_end == 0 || segments.len() != expected {
        return None;
    }
    let last = segments.last().map_or(header_end, |r| r.end);
    Some(TextLayout {
        header: 0..header_end,
        segments,
        footer: last..body.len(),
    })
}

/// `DURATION=30` / `30` / `ElapsedTime=4,Duration=30` attribute lists of cue tags.
fn attr(rest: &str, name: &str) -> Option<f64> {
    rest.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').parse().ok())?
    })
}

enum Cue {
    Out {
        duration: Option<f64>,
    },
    Cont {
        elapsed: Option<f64>,
        duration: Option<f64>,
    },
    In,
}

fn cue_of(seg: &MediaSegment) -> Option<Cue> {
    for t in &seg.unknown_tags {
        let rest = t.rest.as_deref().unwrap_or("");
        match t.tag.as_str() {
            "X-CUE-OUT" => {
                let duration = attr(rest, "DURATION").or_else(|| rest.trim().parse().ok());
                return Some(Cue::Out { duration });
            }
            "X-CUE-OUT-CONT" => {
                return Some(Cue::Cont {
                    elapsed: attr(rest, "ElapsedTime"),
                    duration: attr(rest, "Duration"),
                })
            }
            "X-CUE-IN" => return Some(Cue::In),
            _ => {}
        }
    }
    None
}

/// SCTE-35 from a segment's `EXT-X-DATERANGE` (`SCTE35-OUT`/`-IN`), with its id.
/// The SCTE-35 signal of a `DATERANGE` on `seg` and whether it announces a break that starts
/// later than the segment (by more than half of it).
fn announces(seg: &MediaSegment) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let dr = seg.daterange.as_ref()?;
    let pdt = seg.program_date_time?;
    let half = chrono::Duration::try_milliseconds((seg.duration as f64 * 500.0) as i64)?;
    (dr.start_date > pdt.checked_add_signed(half)?).then_some(dr.start_date)
}

fn daterange_signal(seg: &MediaSegment) -> Option<(String, Option<Scte35>, bool, Option<f64>)> {
    let dr = seg.daterange.as_ref()?;
    let other = dr.other_attributes.as_ref();
    let get = |k: &str| other.and_then(|o| o.get(k)).map(|v| v.to_string());
    let (text, out) = match (get("SCTE35-OUT"), get("SCTE35-IN")) {
        (Some(t), _) => (Some(t), true),
        (None, Some(t)) => (Some(t), false),
        _ => (None, dr.planned_duration.is_some()),
    };
    let signal = text.and_then(|t| match scte35::decode_text(&t) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(id = %dr.id, error = %e, "ignoring undecodable SCTE-35 in DATERANGE");
            None
        }
    });
    Some((
        dr.id.clone(),
        signal,
        out,
        dr.planned_duration.or(dr.duration),
    ))
}

/// The view of a media playlist; with its text, also where each segment's lines are.
pub fn hls_media_with_text(m: &MediaPlaylist, body: &[u8]) -> HlsMediaView {
    let mut v = hls_media(m);
    v.layout = text_layout(body, m.segments.len());
    v
}

pub fn hls_media(m: &MediaPlaylist) -> HlsMediaView {
    // Long: one pass over the segments builds every part of the view (split, it would walk them again).
    let mut segments = Vec::with_capacity(m.segments.len());
    let mut spans: Vec<BreakSpan> = Vec::new();
    // the break currently open: its span and how much of it the listed segments covered
    let mut open: Option<(BreakSpan, f64)> = None;
    let mut offset = 0f64;
    let mut starts = Vec::with_capacity(m.segments.len());
    let mut announced = Vec::new();
    for (i, seg) in m.segments.iter().enumerate() {
        let seq = m.media_sequence + i as u64;
        let d = seg.duration as f64;
        let mut signal = daterange_signal(seg);
        let cue = cue_of(seg);
        if let (Some(at), Some((id, sig, true, dur))) = (announces(seg), &signal) {
            let pdt = seg.program_date_time.unwrap_or(at);
            let duration = dur
                .or_else(|| sig.as_ref().and_then(|s| s.duration))
                .unwrap_or(0.0);
            if duration > 0.0 && duration <= MAX_BREAK_SECS && announced.len() < 16 {
                announced.push(Announcement {
                    brk: AdBreak {
                        id: id.clone(),
                        start: offset + (at - pdt).num_milliseconds() as f64 / 1000.0,
                        duration,
                        first_segment: None,
                        scte35: *sig,
                    },
                    at_ms: at.timestamp_millis(),
                });
            }
            signal = None;
        }
        // close: CUE-IN, a DATERANGE SCTE35-IN, or the break's duration used up
        let closes = matches!(cue, Some(Cue::In)) || matches!(signal, Some((_, _, false, _)));
        if let Some((span, covered)) = open.take() {
            let used_up = span.elapsed + covered >= span.duration - 0.05;
            if closes || used_up {
                spans.push(BreakSpan { end: i, ..span });
            } else {
                open = Some((span, covered));
            }
        }
        let opens_out =
            matches!(cue, Some(Cue::Out { .. })) || matches!(signal, Some((_, _, true, _)));
        if opens_out && open.is_none() {
            let (dr_id, sig, dr_dur) = match &signal {
                Some((id, s, true, d)) => (Some(id.clone()), *s, *d),
                _ => (None, None, None),
            };
            let cue_dur = match cue {
                Some(Cue::Out { duration }) => duration,
                _ => None,
            };
            let duration = cue_dur
                .or(dr_dur)
                .or_else(|| sig.as_ref().and_then(|s| s.duration))
                .unwrap_or(0.0);
            let id = dr_id
                .or_else(|| {
                    sig.as_ref()
                        .and_then(|s| s.splice_event_id)
                        .map(|e| format!("splice-{e}"))
                })
                .unwrap_or_else(|| format!("cue-{seq}"));
            open = Some((
                BreakSpan {
                    id,
                    first: i,
                    end: i,
                    duration,
                    elapsed: 0.0,
                    scte35: sig,
                },
                0.0,
            ));
        } else if let (None, Some(Cue::Cont { elapsed, duration })) = (&open, &cue) {
            // joined mid-break: the break started `elapsed` seconds before this segment
            let elapsed = elapsed.unwrap_or(0.0);
            let duration = duration.unwrap_or(0.0);
            if duration > elapsed {
                let back = (elapsed / d.max(0.001)).round() as u64;
                open = Some((
                    BreakSpan {
                        id: format!("cue-{}", seq.saturating_sub(back)),
                        first: i,
                        end: i,
                        duration,
                        elapsed,
                        scte35: None,
                    },
                    0.0,
                ));
            }
        }
        if let Some((_, covered)) = open.as_mut() {
            *covered += d;
        }
        starts.push(offset);
        segments.push(Segment {
            index: i as u32,
            sequence: seq,
            uri: seg.uri.clone(),
            duration: d,
            discontinuity: seg.discontinuity,
            program_date_time: seg.program_date_time.map(|t| t.timestamp_millis()),
        });
        offset += d;
    }
    if let Some((span, _)) = open {
        spans.push(BreakSpan {
            end: m.segments.len(),
            ..span
        });
    }
    spans.retain(|s| s.duration > 0.0 && s.duration <= MAX_BREAK_SECS && s.end > s.first);
    let breaks = spans
        .iter()
        .map(|s| AdBreak {
            id: s.id.clone(),
            start: starts[s.first] - s.elapsed,
            duration: s.duration,
            first_segment: Some(s.first as u32),
            scte35: s.scte35,
        })
        .collect();
    HlsMediaView {
        view: HlsMedia {
            target_duration: m.target_duration.min(u32::MAX as u64) as u32,
            media_sequence: m.media_sequence,
            discontinuity_sequence: m.discontinuity_sequence,
            live: !m.end_list && m.playlist_type != Some(MediaPlaylistType::Vod),
            segments,
            breaks,
        },
        spans,
        announced,
        layout: None,
        edge: None,
    }
}

/// The view of an MPD; breaks that start beyond the live edge (further than players look
/// ahead) are announcements, not breaks yet.
pub fn dash_with_announcements(mpd: &dash_mpd_core::MPD) -> (DashMpd, Vec<Announcement>) {
    let mut view = dash(mpd);
    let (Some(ast), true) = (mpd.availabilityStartTime, view.dynamic) else {
        return (view, Vec::new());
    };
    let now = mpd.publishTime.unwrap_or_else(chrono::Utc::now) - ast;
    let now = now.num_milliseconds() as f64 / 1000.0;
    let lead = [mpd.minimumUpdatePeriod, mpd.maxSegmentDuration]
        .into_iter()
        .flatten()
        .map(|d| d.as_secs_f64())
        .fold(2.0, f64::max)
        * 2.0;
    let (ahead, breaks): (Vec<AdBreak>, Vec<AdBreak>) =
        view.breaks.into_iter().partition(|b| b.start > now + lead);
    view.breaks = breaks;
    let announced = ahead
        .into_iter()
        .map(|brk| Announcement {
            at_ms: ast
                .timestamp_millis()
                .saturating_add((brk.start * 1000.0) as i64),
            brk,
        })
        .collect();
    (view, announced)
}

pub fn dash(mpd: &dash_mpd_core::MPD) -> DashMpd {
    let mut breaks = Vec::new();
    let periods = mpd
        .periods
        .iter()
        .map(|p| {
            let period_start = p.start.map(|d| d.as_secs_f64()).unwrap_or(0.0);
            for es in &p.event_streams {
                let scheme = es.schemeIdUri.as_str();
                if !scheme.starts_with("urn:scte:scte35") {
                    continue;
                }
                let ts = es.timescale.unwrap_or(1).max(1) as f64;
                let pto = es.presentationTimeOffset.unwrap_or(0) as f64;
                for ev in &es.event {
                    let sig = dash_event_signal(ev);
                    let duration = ev
                        .duration
                        .map(|d| d as f64 / ts)
                        .or_else(|| sig.as_ref().and_then(|s| s.duration))
                        .unwrap_or(0.0);
                    if !(duration > 0.0 && duration <= MAX_BREAK_SECS)
                        || sig.as_ref().is_some_and(|s| !s.out_of_network)
                    {
                        continue;
                    }
                    let start = period_start + (ev.presentationTime.unwrap_or(0) as f64 - pto) / ts;
                    let id = ev
                        .id
                        .clone()
                        .or_else(|| {
                            sig.as_ref()
                                .and_then(|s| s.splice_event_id)
                                .map(|e| e.to_string())
                        })
                        .unwrap_or_else(|| format!("{start:.3}"));
                    breaks.push(AdBreak {
                        id,
                        start,
                        duration,
                        first_segment: None,
                        scte35: sig,
                    });
                }
            }
            Period {
                id: p.id.clone(),
                start: p.start.map(|d| d.as_secs_f64()),
                adaptation_sets: p
                    .adaptations
                    .iter()
                    .map(|a| AdaptationSet {
                        id: a.id.clone(),
                        content_type: crate::dash::content_type(a).to_string(),
                        representations: a
                            .representations
                            .iter()
                            .map(|r| Representation {
                                id: r.id.clone().unwrap_or_default(),
                                bandwidth: r.bandwidth.unwrap_or(0),
                                width: r.width.or(a.width).map(|w| w.min(u32::MAX as u64) as u32),
                                height: r
                                    .height
                                    .or(a.height)
                                    .map(|h| h.min(u32::MAX as u64) as u32),
                                codecs: r.codecs.clone().or_else(|| a.codecs.clone()),
                            })
                            .collect(),
                    })
                    .collect(),
            }
        })
        .collect();
    DashMpd {
        dynamic: mpd.mpdtype.as_deref() == Some("dynamic"),
        periods,
        breaks,
    }
}

/// SCTE-35 of a DASH event: binary (`scte35:Signal/scte35:Binary`) or XML
/// (`scte35:SpliceInfoSection/scte35:SpliceInsert`).
fn dash_event_signal(ev: &dash_mpd_core::Event) -> Option<Scte35> {
    for s in &ev.signal {
        if let Some(b) = &s.content {
            match scte35::decode_text(&b.content) {
                Ok(sig) => return Some(sig),
                Err(e) => tracing::debug!(error = %e, "ignoring undecodable SCTE-35 event"),
            }
        }
    }
    let sis = ev.splice_info_section.first()?;
    let si = sis.splice_insert.as_ref()?;
    Some(Scte35 {
        splice_event_id: si.splice_event_id,
        out_of_network: si.out_of_network_indicator.unwrap_or(false),
        duration: si
            .break_duration
            .as_ref()
            .map(|b| b.duration as f64 / 90_000.0),
        // the XML form's splice time is not modelled by dash-mpd-core
        pts: None,
    })
}

#[cfg(test)]
mod tests;
