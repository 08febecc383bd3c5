//! The manifest cache's timers: any manifest, any `Cache-Control` and any tenant timings
//! give a TTL and a stale limit without overflow (u64::MAX target durations, `max-age`s and
//! refresh periods included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifold::config::TenantCachePolicy;
use manifold::manifest_cache::{ttl_for, Manifest};
use manifold::parse::{parse, Parsed};
use manifold::route::Class;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let (nums, rest) = data.split_at(12);
    let n = |i: usize| u32::from_le_bytes(nums[i..i + 4].try_into().unwrap());
    let split = rest.iter().position(|b| *b == b'\n').unwrap_or(0);
    let (cc, body) = rest.split_at(split);
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(cc) {
        headers.insert(http::header::CACHE_CONTROL, v);
    }
    let policy = TenantCachePolicy {
        stale_manifest_targets: Some(n(0)),
        stale_live_window: (n(4) % 2 == 0).then(|| Duration::from_secs(u64::from(n(4)) << 20)),
        stale_if_error: Duration::from_secs(u64::from(n(8)) << 24),
        ..TenantCachePolicy::default()
    };
    for class in [Class::HlsPlaylist, Class::DashManifest] {
        let (kind, parsed) = parse(class, body);
        let ttl = ttl_for(http::StatusCode::OK, &kind, &headers, &policy);
        let m = Manifest {
            status: http::StatusCode::OK,
            headers: vec![],
            body: bytes::Bytes::new(),
            kind,
            parsed: Parsed::None,
            wire: Default::default(),
            ttl,
            fetched: Instant::now(),
            window: Some(Duration::from_secs(u64::from(n(0)) << 16)),
        };
        drop(parsed);
        let _ = m.stale_limit(&policy);
    }
});
