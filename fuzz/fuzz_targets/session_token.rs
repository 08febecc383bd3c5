//! Session tokens: any string verifies or not, never panics; a token the keys issued
//! verifies to its session for its tenant only, and any one-byte change is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifold::session::SessionKeys;

fuzz_target!(|data: &[u8]| {
    let keys = SessionKeys::new(&[7u8; 32]);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = keys.verify("t", text);
        let _ = keys.verify_expiry("t", text);
    }
    let (sid, token) = keys.create("t");
    assert_eq!(keys.verify("t", &token).as_deref(), Some(sid.as_str()));
    assert!(keys.verify("u", &token).is_none());
    if let Some((&i, &b)) = data.first().zip(data.get(1)) {
        let mut t = token.into_bytes();
        let i = i as usize % t.len();
        if t[i] != b {
            t[i] = b;
            if let Ok(t) = String::from_utf8(t) {
                assert!(keys.verify("t", &t).is_none(), "a changed token verified");
            }
        }
    }
});
