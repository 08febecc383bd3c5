//! SCTE-35: binary `splice_info_section`s as DASH/HLS carry them, and the text forms
//! (`0x` hex, base64). Decoding never panics, and the hex form decodes like the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifold_ssai::scte35;

fuzz_target!(|data: &[u8]| {
    let binary = scte35::decode(data);
    let mut hex = String::with_capacity(2 + data.len() * 2);
    hex.push_str("0x");
    for b in data {
        hex.push_str(&format!("{b:02X}"));
    }
    assert_eq!(scte35::decode_text(&hex), binary);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = scte35::decode_text(text);
    }
});
