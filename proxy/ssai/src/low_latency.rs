//! LL-HLS (RFC 8216bis §4.4.3.7–4.4.5.2, §6.2.5): where a playlist's parts stand, whether it
//! answers a blocking reload, and the segment its parts are still making.
//!
//! The segment being made is listed only as parts after the last URI. Parsing takes it as one
//! more content segment (its duration what its parts cover so far), so a break that starts on
//! it is seen with its first part, not a segment later, when players at the edge are already
//! playing it.

use m3u8_rs::MediaSegment;
use std::ops::Range;

mod edge;
pub use edge::{edge, MAX_EDGE_PARTS};

/// A blocking reload's delivery directives (`_HLS_msn`, `_HLS_part`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocking {
    pub msn: u64,
    pub part: Option<u64>,
}

impl Blocking {
    /// The query pairs that ask an origin for it.
    pub fn query(&self) -> String {
        match self.part {
            Some(p) => format!("_HLS_msn={}&_HLS_part={p}", self.msn),
            None => format!("_HLS_msn={}", self.msn),
        }
    }
}

/// Where a playlist stands: segments before `end` are complete; `parts` parts of segment `end`
/// are listed; segment `end - 1` has `last_parts` parts (0: not listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Progress {
    pub end: u64,
    pub parts: u64,
    pub last_parts: u64,
}

fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| *b == b'\n').map(|l| l.trim_ascii())
}

fn number_after(line: &[u8], tag: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(tag)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

impl Progress {
    /// A live playlist that can block (`CAN-BLOCK-RELOAD=YES`): where it stands. One pass over
    /// the lines; `None` for every other playlist.
    pub fn of(text: &[u8]) -> Option<Progress> {
        let mut blocks = false;
        let mut seq = 0u64;
        let mut segments = 0u64;
        let (mut parts, mut last_parts) = (0u64, 0u64);
        for l in lines(text) {
            if l.first() != Some(&b'#') {
                if !l.is_empty() {
                    segments += 1;
                    last_parts = parts;
                    parts = 0;
                }
            } else if l.starts_with(b"#EXT-X-PART:") {
                parts += 1;
            } else if let Some(n) = number_after(l, b"#EXT-X-MEDIA-SEQUENCE:") {
                seq = n;
            } else if let Some(n) = number_after(l, b"#EXT-X-SKIP:SKIPPED-SEGMENTS=") {
                segments += n;
            } else if l.starts_with(b"#EXT-X-SERVER-CONTROL:") {
                blocks = contains(l, b"CAN-BLOCK-RELOAD=YES");
            } else if l.starts_with(b"#EXT-X-ENDLIST") {
                return None;
            }
        }
        blocks.then_some(Progress {
            end: seq + segments,
            parts,
            last_parts,
        })
    }

    /// Whether a playlist standing here answers `b`. A part index past a segment's last part
    /// asks for the next segment's first part.
    pub fn answers(&self, b: Blocking) -> bool {
        match b.part {
            None => self.end > b.msn,
            Some(k) if self.end == b.msn => self.parts > k,
            // segment msn is complete; an index past its parts is the next one's part 0
            Some(k) if self.end == b.msn + 1 && self.last_parts > 0 && k >= self.last_parts => {
                self.parts > 0
            }
            Some(_) => self.end > b.msn,
        }
    }

    /// Whether a session's playlist standing here serves `b`: it [answers](Self::answers) it,
    /// or `b` asks whole for the segment after an ad edge (players ask so when the last
    /// segment lists no parts) and that segment's first part is out. The player then has the
    /// content's parts while its buffer of ads is not yet spent, and asks by part from there.
    /// A content segment before keeps its parts listed, so a player that blocks by segment
    /// only is held until the segment is complete, never answered early in a loop.
    pub fn serves(&self, b: Blocking) -> bool {
        self.answers(b)
            || (b.part.is_none() && self.end == b.msn && self.parts > 0 && self.last_parts == 0)
    }

    /// What to ask the origin for next: the part after the last one listed.
    pub fn next(&self) -> Blocking {
        Blocking {
            msn: self.end,
            part: Some(self.parts),
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// The segment still being made, from the text after the last URI (`footer`): its tags and
/// parts, as a segment whose duration is what the parts cover, and where its text ends (the
/// preload hint, the rendition reports and the end of the playlist stay after it).
pub fn in_progress(body: &[u8], footer: Range<usize>) -> Option<(MediaSegment, usize)> {
    let text = body.get(footer.clone())?;
    let mut end = footer.start;
    let mut at = footer.start;
    let mut tags = Vec::new();
    let mut covered = 0f64;
    let mut first_uri = None;
    for raw in text.split_inclusive(|b| *b == b'\n') {
        at += raw.len();
        let l = raw.trim_ascii();
        if l.starts_with(b"#EXT-X-PRELOAD-HINT")
            || l.starts_with(b"#EXT-X-RENDITION-REPORT")
            || l.starts_with(b"#EXT-X-ENDLIST")
        {
            break;
        }
        if let Some(rest) = l.strip_prefix(b"#EXT-X-PART:") {
            let rest = std::str::from_utf8(rest).ok()?;
            covered += attr(rest, "DURATION")?.parse::<f64>().ok()?;
            if first_uri.is_none() {
                first_uri = Some(attr(rest, "URI")?.trim_matches('"').to_string());
            }
        } else if !l.is_empty() {
            tags.push(l);
        }
        end = at;
    }
    let uri = first_uri?;
    if !(covered.is_finite() && covered > 0.0) {
        return None;
    }
    // its tags parsed as m3u8-rs parses a segment's: cues, date ranges, program date-time
    let mut one = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n".to_vec();
    for t in tags {
        one.extend_from_slice(t);
        one.push(b'\n');
    }
    one.extend_from_slice(format!("#EXTINF:{covered:.5},\n{uri}\n").as_bytes());
    let seg = m3u8_rs::parse_media_playlist_res(&one)
        .ok()?
        .segments
        .pop()?;
    Some((seg, end))
}

/// One attribute's raw value in an attribute list (`URI="a,b"` kept whole).
fn attr<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let close = q.find('"')? + 2;
            (&after[..close], after[close..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// A personalized playlist whose live edge is an ad break: no parts and no preload hint.
/// Ad segments are listed whole; a part listed before them would have players ask for parts
/// of a segment long complete, answered at once, in a loop.
pub fn without_parts(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for raw in text.split_inclusive(|b| *b == b'\n') {
        let l = raw.trim_ascii_start();
        if !(l.starts_with(b"#EXT-X-PART:") || l.starts_with(b"#EXT-X-PRELOAD-HINT")) {
            out.extend_from_slice(raw);
        }
    }
    out
}

/// Rendition reports that say where this personalized playlist stands: every rendition of a
/// session is cut the same (same slots, same timing), so the others stand where it does. The
/// origin's numbers count the origin's segments, not the session's.
pub fn reports_at(text: &[u8], at: Progress) -> Vec<u8> {
    if !contains(text, b"#EXT-X-RENDITION-REPORT") {
        return text.to_vec();
    }
    let (msn, part) = match (at.parts, at.last_parts) {
        (0, 0) => (at.end.saturating_sub(1), None),
        (0, n) => (at.end.saturating_sub(1), Some(n - 1)),
        (n, _) => (at.end, Some(n - 1)),
    };
    let mut out = Vec::with_capacity(text.len());
    for raw in text.split_inclusive(|b| *b == b'\n') {
        let l = raw.trim_ascii();
        match l.strip_prefix(b"#EXT-X-RENDITION-REPORT:") {
            Some(rest) => {
                let rest = String::from_utf8_lossy(rest);
                let Some(uri) = attr(&rest, "URI") else {
                    continue;
                };
                out.extend_from_slice(
                    format!("#EXT-X-RENDITION-REPORT:URI={uri},LAST-MSN={msn}").as_bytes(),
                );
                if let Some(p) = part {
                    out.extend_from_slice(format!(",LAST-PART={p}").as_bytes());
                }
                out.push(b'\n');
            }
            None => out.extend_from_slice(raw),
        }
    }
    out
}

/// A personalized playlist offers no delta updates: the session's playlist is made whole from
/// the whole origin playlist each time (`CAN-SKIP-UNTIL` dropped from its server control).
pub fn without_skip(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for raw in text.split_inclusive(|b| *b == b'\n') {
        match raw.trim_ascii().strip_prefix(b"#EXT-X-SERVER-CONTROL:") {
            Some(rest) => {
                let kept: Vec<&str> = std::str::from_utf8(rest)
                    .unwrap_or("")
                    .split(',')
                    .filter(|a| !a.starts_with("CAN-SKIP"))
                    .collect();
                out.extend_from_slice(b"#EXT-X-SERVER-CONTROL:");
                out.extend_from_slice(kept.join(",").as_bytes());
                out.push(b'\n');
            }
            None => out.extend_from_slice(raw),
        }
    }
    out
}

#[cfg(test)]
mod tests;
