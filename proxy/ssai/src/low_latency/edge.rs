//! What a plugin sees of an LL-HLS playlist's live edge: its part target, the parts listed
//! with the segment each belongs to, and the preload hint. Read from the text (m3u8-rs keeps
//! no parts), one pass over each segment's lines.

use super::{attr, lines};
use crate::types::{LiveEdge, Part};
use crate::view::TextLayout;

/// Parts handed to a plugin at most: the newest. An origin lists parts only for the last few
/// segments (RFC 8216bis §4.4.4.9), so this bounds what a hostile one costs, not a real edge.
pub const MAX_EDGE_PARTS: usize = 256;

/// The live edge of a playlist with `EXT-X-PART-INF`; `None` for every other one. `making`:
/// the last of the layout's segments is the one still being made.
pub fn edge(body: &[u8], layout: &TextLayout, making: bool) -> Option<LiveEdge> {
    let part_target = lines(body.get(layout.header.clone())?)
        .find_map(|l| l.strip_prefix(b"#EXT-X-PART-INF:"))
        .and_then(|rest| std::str::from_utf8(rest).ok())
        .and_then(|rest| attr(rest, "PART-TARGET")?.parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t > 0.0)?;
    let mut parts = std::collections::VecDeque::new();
    for (i, range) in layout.segments.iter().enumerate() {
        let Some(text) = body.get(range.clone()) else {
            continue;
        };
        for l in lines(text) {
            let Some(p) = l
                .strip_prefix(b"#EXT-X-PART:")
                .and_then(|rest| part(rest, i as u32))
            else {
                continue;
            };
            if parts.len() == MAX_EDGE_PARTS {
                parts.pop_front();
            }
            parts.push_back(p);
        }
    }
    let preload_hint = body.get(layout.footer.clone()).and_then(|footer| {
        lines(footer)
            .filter_map(|l| l.strip_prefix(b"#EXT-X-PRELOAD-HINT:"))
            .filter_map(|rest| std::str::from_utf8(rest).ok())
            .find(|rest| attr(rest, "TYPE") == Some("PART"))
            .and_then(|rest| Some(attr(rest, "URI")?.trim_matches('"').to_string()))
    });
    Some(LiveEdge {
        part_target,
        parts: parts.into(),
        preload_hint,
        in_progress: making,
    })
}

/// One `EXT-X-PART` attribute list; `None` when it lacks a URI or a usable duration.
fn part(rest: &[u8], segment: u32) -> Option<Part> {
    let rest = std::str::from_utf8(rest).ok()?;
    let duration = attr(rest, "DURATION")?.parse::<f64>().ok()?;
    if !(duration.is_finite() && duration >= 0.0) {
        return None;
    }
    Some(Part {
        segment,
        uri: attr(rest, "URI")?.trim_matches('"').to_string(),
        duration,
        independent: attr(rest, "INDEPENDENT") == Some("YES"),
        gap: attr(rest, "GAP") == Some("YES"),
    })
}
