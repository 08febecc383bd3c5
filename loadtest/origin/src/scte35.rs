//! Real SCTE-35 `splice_info_section`s (with CRC-32) for the scheduled breaks.

use super::schedule::{Break, Schedule};
use anyhow::{anyhow, Result};
use broadcast_common::Serialize;
use scte35_splice::commands::{AnyCommand, SpliceInsert};
use scte35_splice::time::{BreakDuration, SpliceTime};
use scte35_splice::SpliceInfoSection;

/// PTS wraps at 2^33 ticks of 90 kHz.
const PTS_WRAP: u64 = 1 << 33;

/// `splice_insert` for the start (`out = true`) or end of a break, timed at its splice point.
pub fn splice_insert(s: &Schedule, b: &Break, out: bool) -> Result<Vec<u8>> {
    let at_secs = if out {
        b.start_secs(s)
    } else {
        b.start_secs(s) + b.duration_secs(s)
    };
    let insert = SpliceInsert {
        splice_event_id: event_id(b),
        out_of_network_indicator: out,
        splice_time: Some(SpliceTime::with_pts(pts_ticks(at_secs))),
        break_duration: out.then(|| BreakDuration {
            auto_return: true,
            duration: b.duration_secs(s) * 90_000,
        }),
        ..SpliceInsert::default()
    };
    let mut section = SpliceInfoSection::new_clear(AnyCommand::SpliceInsert(insert), &[]);
    section.tier = 0xFFF; // "no tier restriction", as encoders send it
    section
        .try_to_bytes()
        .map_err(|e| anyhow!("encoding SCTE-35: {e:?}"))
}

/// `splice_event_id` of a break (ids start at 1000 to look like a real scheduler's).
pub fn event_id(b: &Break) -> u32 {
    1000 + (b.id % 1_000_000) as u32
}

/// `0x`-prefixed uppercase hex, as `EXT-X-DATERANGE` SCTE35-OUT/IN attributes carry it.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("0x");
    for b in bytes {
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// PTS of a splice point in 90 kHz ticks (what the XML form's `ptsTime` carries).
pub fn pts_ticks(secs: u64) -> u64 {
    (secs * 90_000) % PTS_WRAP
}

#[cfg(test)]
mod tests {
    use super::*;
    use broadcast_common::Parse;
    use std::time::SystemTime;

    #[test]
    fn sections_parse_back_with_valid_crc() {
        let s = Schedule {
            segment_secs: 2,
            window: 5,
            epoch: SystemTime::UNIX_EPOCH,
            loop_len: 12,
            ad_first: 15,
            ad_every: 45,
            ad_len: 15,
            announce: 0,
        };
        let b = s.break_by_id(3).unwrap();
        let bytes = splice_insert(&s, &b, true).unwrap();
        let parsed = SpliceInfoSection::parse(&bytes).unwrap(); // verifies the CRC
        match parsed.clear.unwrap().command {
            AnyCommand::SpliceInsert(si) => {
                assert_eq!(si.splice_event_id, 1003);
                assert!(si.out_of_network_indicator);
                assert_eq!(si.break_duration.unwrap().duration, 30 * 90_000);
                assert_eq!(
                    si.splice_time.unwrap().pts_time,
                    Some(((15 + 3 * 45) * 2) * 90_000)
                );
            }
            other => panic!("not a splice_insert: {other:?}"),
        }
        let back_in = splice_insert(&s, &b, false).unwrap();
        let parsed = SpliceInfoSection::parse(&back_in).unwrap();
        assert!(matches!(parsed.clear.unwrap().command,
            AnyCommand::SpliceInsert(ref si) if !si.out_of_network_indicator));
        assert!(hex(&bytes).starts_with("0xFC"));
    }
}
