//! Edge auth: the viewer token found in any header value or query string, then verified,
//! never panics (HS256 and the JWT claims parser see attacker bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifold::auth::TenantAuth;
use manifold::config::AuthConfig;
use std::path::Path;
use std::sync::OnceLock;

fn auth() -> &'static TenantAuth {
    static A: OnceLock<TenantAuth> = OnceLock::new();
    A.get_or_init(|| {
        let c: AuthConfig = toml::from_str(
            "alg = \"HS256\"\nsecret = \"0123456789abcdef0123456789abcdef\"\naudience = [\"viewers\"]\n",
        )
        .expect("auth config");
        TenantAuth::new(&c, Path::new(".")).expect("auth")
    })
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (header, query) = data.split_at(split);
    let query = std::str::from_utf8(query.get(1..).unwrap_or_default()).ok();
    for h in [Some(header), None] {
        if let Some(token) = auth().token_in(h, query) {
            let _ = auth().verify_token(&token, 1_700_000_000);
        }
    }
});
