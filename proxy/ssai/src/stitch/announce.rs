//! What a guided session's playlist announces: tags placed before the segment a break
//! starts at, and the date an undated playlist's first segment gets.

use super::Stitch;

/// A tag announcing a break, and the content segment (origin media sequence) it goes before.
#[derive(Debug, Clone, PartialEq)]
pub struct Announce {
    pub at: Option<u64>,
    pub line: String,
}

impl Stitch<'_> {
    /// Whether an announcement goes before content segment `n` of the window (`None`: after
    /// the header).
    pub(super) fn anchored(&self, a: &Announce) -> Option<u64> {
        let seq0 = self.playlist.media_sequence;
        let end = seq0 + self.playlist.segments.len() as u64;
        a.at.filter(|n| (seq0..end).contains(n))
    }
}

/// `#EXT-X-PROGRAM-DATE-TIME` of Unix ms.
pub(super) fn pdt_line(ms: i64) -> String {
    format!("#EXT-X-PROGRAM-DATE-TIME:{}", crate::guided::date(ms))
}
