//! Config files: any text parses and validates or is refused with a field and a message,
//! never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifold::config::Config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = Config::parse(text, Path::new("/nonexistent/fuzz.toml")) {
            let _ = c.plugin_shares();
            let _ = c.manifest_quotas();
        }
    }
});
