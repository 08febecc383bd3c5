//! VAST: documents as ad servers (and wrappers) answer, and URL templates as tenants write
//! them. Parsing never panics; what parses has bounded, well-formed fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifold::vast;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(ads) = vast::parse(&text) {
        for ad in &ads {
            let _ = format!("{ad:?}");
        }
    }
    let _ = vast::expand(&text, |name| (name.len() % 2 == 0).then(|| name.repeat(2)));
});
