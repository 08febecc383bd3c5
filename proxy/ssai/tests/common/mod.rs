//! What the invariant property tests share.

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
