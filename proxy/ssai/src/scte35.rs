//! Decoding SCTE-35 `splice_info_section`s as manifests carry them: hex (`0xFC..`, HLS
//! `EXT-X-DATERANGE`), base64 (`EXT-X-CUE-OUT-CONT:SCTE35=`, DASH `scte35:Binary`).

use crate::types::Scte35;
use base64::Engine;
use broadcast_common::Parse;
use scte35_splice::commands::AnyCommand;
use scte35_splice::descriptors::AnySpliceDescriptor;
use scte35_splice::SpliceInfoSection;

/// Segmentation types that open a break (provider/distributor advertisement and placement
/// opportunity starts).
const OPENING_SEGMENTATION_TYPES: [u8; 6] = [0x30, 0x32, 0x34, 0x36, 0x38, 0x3A];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Scte35Error {
    #[error("SCTE-35: not hex or base64")]
    Encoding,
    #[error("SCTE-35: {0}")]
    Section(String),
}

/// Decodes `0x`-hex or base64 text.
pub fn decode_text(text: &str) -> Result<Scte35, Scte35Error> {
    let t = text.trim().trim_matches('"');
    let bytes = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        hex::decode(h).map_err(|_| Scte35Error::Encoding)?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(t)
            .map_err(|_| Scte35Error::Encoding)?
    };
    decode(&bytes)
}

/// Decodes a binary section (the CRC is verified by the parser).
pub fn decode(bytes: &[u8]) -> Result<Scte35, Scte35Error> {
    if bytes.len() > 4096 {
        return Err(Scte35Error::Section(format!(
            "{} bytes is too long",
            bytes.len()
        )));
    }
    let s = SpliceInfoSection::parse(bytes).map_err(|e| Scte35Error::Section(format!("{e:?}")))?;
    let adjust = |pts: u64| (pts + s.pts_adjustment) & ((1 << 33) - 1);
    let clear = s
        .clear
        .as_ref()
        .ok_or_else(|| Scte35Error::Section("encrypted section".into()))?;
    Ok(match &clear.command {
        AnyCommand::SpliceInsert(si) => Scte35 {
            splice_event_id: Some(si.splice_event_id),
            out_of_network: si.out_of_network_indicator && !si.splice_event_cancel_indicator,
            duration: si
                .break_duration
                .as_ref()
                .map(|d| d.duration as f64 / 90_000.0),
            pts: si.splice_time.as_ref().and_then(|t| t.pts_time).map(adjust),
        },
        AnyCommand::TimeSignal(ts) => {
            let seg = s.descriptors().find_map(|d| match d {
                Ok(AnySpliceDescriptor::Segmentation(sd)) => Some(sd),
                _ => None,
            });
            Scte35 {
                splice_event_id: seg.as_ref().map(|sd| sd.segmentation_event_id),
                out_of_network: seg.as_ref().is_some_and(|sd| {
                    OPENING_SEGMENTATION_TYPES.contains(&sd.segmentation_type_id.to_u8())
                }),
                duration: seg
                    .as_ref()
                    .and_then(|sd| sd.segmentation_duration)
                    .map(|d| d as f64 / 90_000.0),
                pts: ts.splice_time.pts_time.map(adjust),
            }
        }
        other => {
            return Err(Scte35Error::Section(format!(
                "{} is not a splice_insert or time_signal",
                other.name()
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // splice_insert, event 1000, out of network, 30 s break, pts 1_800_000 (from the simulator)
    const OUT: &str =
        "0xFC302500000000000000FFF01405000003E87FEFFE001B7740FE002932E00000000000000C64BCB6";

    #[test]
    fn decodes_hex_and_base64() {
        let s = decode_text(OUT).unwrap();
        assert_eq!(s.splice_event_id, Some(1000));
        assert!(s.out_of_network);
        assert_eq!(s.duration, Some(30.0));
        assert_eq!(s.pts, Some(1_800_000));
        let bytes = hex::decode(&OUT[2..]).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(decode_text(&b64).unwrap(), s);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(decode_text("0xZZ"), Err(Scte35Error::Encoding));
        assert!(decode_text("0xFC30").is_err());
        let mut bytes = hex::decode(&OUT[2..]).unwrap();
        bytes[10] ^= 0xff;
        assert!(decode(&bytes).is_err(), "CRC mismatch");
        assert!(decode(&[0u8; 20]).is_err());
        assert!(decode(&vec![0xfc; 5000]).is_err());
        assert!(decode(&[]).is_err());
        // every truncation of a valid section is an error, never a panic
        let good = hex::decode(&OUT[2..]).unwrap();
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "{n}");
        }
    }
}
