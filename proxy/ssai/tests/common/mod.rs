//! What the invariant property tests share.
#![allow(dead_code)] // each test binary uses part of it

use m3u8_rs::MediaPlaylist;
use proptest::prelude::*;

/// Break schedules: a window of 3..15 segments; breaks of 4..30 s every 20..80 s, the first
/// within 60 s (on the 2 s segment grid), each shorter than its period.
pub fn schedule() -> impl Strategy<Value = (u64, u64, u64, u64)> {
    (3u64..15, 0u64..30, 10u64..40, 2u64..15).prop_filter_map(
        "break shorter than its period",
        |(w, f, e, l)| {
            let (first, every, len) = (f * 2, e * 2, l * 2);
            (len < every).then_some((w, first, every, len))
        },
    )
}

fn key(s: &m3u8_rs::MediaSegment) -> &str {
    // ad URIs carry their break and slot, so a URI names one position of the stream
    &s.uri
}

/// The invariants between two consecutive reloads of one rendition.
pub fn check_reload(
    prev: &MediaPlaylist,
    cur: &MediaPlaylist,
    label: &str,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        prev.target_duration,
        cur.target_duration,
        "{}: target duration changed",
        label
    );
    for s in &cur.segments {
        prop_assert!(
            (s.duration as f64).round() as u64 <= cur.target_duration,
            "{}: segment over target",
            label
        );
    }
    let Some(left) = prev
        .segments
        .iter()
        .position(|s| key(s) == key(&cur.segments[0]))
    else {
        return Err(TestCaseError::fail(format!(
            "{label}: windows do not overlap"
        )));
    };
    prop_assert_eq!(
        cur.media_sequence,
        prev.media_sequence + left as u64,
        "{}: media sequence",
        label
    );
    let kept = &prev.segments[left..];
    prop_assert!(
        kept.len() <= cur.segments.len(),
        "{}: segments vanished from the tail",
        label
    );
    for (a, b) in kept.iter().zip(&cur.segments) {
        prop_assert_eq!(key(a), key(b), "{}: a published segment changed", label);
        prop_assert_eq!(
            a.discontinuity,
            b.discontinuity,
            "{}: discontinuity moved at {}",
            label,
            a.uri.clone()
        );
        prop_assert!(
            (a.duration - b.duration).abs() < 1e-3,
            "{}: duration changed",
            label
        );
    }
    let left_discs = prev.segments[..left]
        .iter()
        .filter(|s| s.discontinuity)
        .count() as u64;
    prop_assert_eq!(
        cur.discontinuity_sequence,
        prev.discontinuity_sequence + left_discs,
        "{}: discontinuity sequence",
        label
    );
    for w in cur.segments.windows(2) {
        if let (Some(a), Some(b)) = (w[0].program_date_time, w[1].program_date_time) {
            let gap = (b - a).num_milliseconds() as f64 / 1000.0 - w[0].duration as f64;
            prop_assert!(
                gap.abs() < 0.6,
                "{}: program date-time jumps {:.3} s at {}",
                label,
                gap,
                w[1].uri.clone()
            );
        }
    }
    Ok(())
}
