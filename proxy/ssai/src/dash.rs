//! DASH helpers written once, for the proxy, the load test's viewers and the test suite's
//! player: what an adaptation set carries, and the SegmentTemplate that applies to a
//! representation.

use dash_mpd_core::{AdaptationSet, Period, Representation, SegmentTemplate};

/// `video`, `audio`, `text`, ...: the set's contentType, else its mimeType's type.
pub fn content_type(a: &AdaptationSet) -> &str {
    a.contentType
        .as_deref()
        .or_else(|| a.mimeType.as_deref().and_then(|m| m.split('/').next()))
        .unwrap_or("")
}

/// The SegmentTemplate that applies to a representation: its own over its set's over its
/// period's, attribute by attribute.
pub fn effective_template(
    p: &Period,
    a: &AdaptationSet,
    r: Option<&Representation>,
) -> Option<SegmentTemplate> {
    let levels = [
        p.SegmentTemplate.as_ref(),
        a.SegmentTemplate.as_ref(),
        r.and_then(|r| r.SegmentTemplate.as_ref()),
    ];
    let mut out: Option<SegmentTemplate> = None;
    for t in levels.into_iter().flatten() {
        let o = out.get_or_insert_with(SegmentTemplate::default);
        macro_rules! inherit {
            ($($f:ident),*) => { $( if t.$f.is_some() { o.$f = t.$f.clone(); } )* };
        }
        inherit!(
            media,
            initialization,
            startNumber,
            duration,
            timescale,
            presentationTimeOffset,
            SegmentTimeline,
            availabilityTimeOffset
        );
    }
    out
}
