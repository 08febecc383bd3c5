use super::*;
use crate::route::Class;
use moka::Expiry;

fn h(cc: &str) -> HeaderMap {
    let mut m = HeaderMap::new();
    if !cc.is_empty() {
        m.insert(http::header::CACHE_CONTROL, cc.parse().unwrap());
    }
    m
}

#[test]
fn backoff_doubles_up_to_a_cap() {
    let d: Vec<u64> = (1..=7).map(|a| backoff(a).as_millis() as u64).collect();
    assert_eq!(d, [500, 1000, 2000, 4000, 4000, 4000, 4000]);
}

#[test]
fn live_playlists_live_half_a_target_duration_or_less() {
    let p = TenantCachePolicy::default();
    let live = ManifestKind::HlsMedia {
        live: true,
        target: Duration::from_secs(6),
    };
    assert_eq!(
        ttl_for(StatusCode::OK, &live, &h(""), &p),
        Duration::from_secs(3)
    );
    assert_eq!(
        ttl_for(StatusCode::OK, &live, &h("max-age=1"), &p),
        Duration::from_secs(1)
    );
    assert_eq!(
        ttl_for(StatusCode::OK, &live, &h("max-age=60"), &p),
        Duration::from_secs(3)
    );
    assert_eq!(
        ttl_for(StatusCode::OK, &live, &h("no-store"), &p),
        Duration::ZERO
    );
    let dash = ManifestKind::DashDynamic {
        refresh: Duration::from_secs(2),
    };
    assert_eq!(
        ttl_for(StatusCode::OK, &dash, &h(""), &p),
        Duration::from_secs(1)
    );
}

#[test]
fn masters_and_vod_live_longer() {
    let p = TenantCachePolicy::default();
    assert_eq!(
        ttl_for(StatusCode::OK, &ManifestKind::HlsMaster, &h(""), &p),
        p.master_ttl
    );
    let vod = ManifestKind::HlsMedia {
        live: false,
        target: Duration::from_secs(6),
    };
    assert_eq!(
        ttl_for(StatusCode::OK, &vod, &h("max-age=86400"), &p),
        p.vod_manifest_ttl
    );
    assert_eq!(
        ttl_for(StatusCode::OK, &ManifestKind::DashStatic, &h(""), &p),
        p.vod_manifest_ttl
    );
}

#[test]
fn errors_are_not_stored_and_not_found_briefly() {
    let p = TenantCachePolicy::default();
    let k = ManifestKind::Unparsed("x".into());
    assert_eq!(
        ttl_for(StatusCode::SERVICE_UNAVAILABLE, &k, &h("max-age=60"), &p),
        Duration::ZERO
    );
    assert_eq!(
        ttl_for(StatusCode::NOT_FOUND, &k, &h(""), &p),
        p.negative_ttl
    );
}

#[test]
fn huge_target_durations_and_refresh_periods_do_not_overflow_the_timers() {
    // an origin saying #EXT-X-TARGETDURATION:18446744073709551615 is not taken as live HLS
    let body = b"#EXTM3U\n#EXT-X-TARGETDURATION:18446744073709551615\n#EXTINF:6,\n1.ts\n";
    let (kind, _) = parse(Class::HlsPlaylist, body);
    assert!(matches!(kind, ManifestKind::Unparsed(ref w) if w.contains("TARGETDURATION")));
    let policy = TenantCachePolicy {
        stale_manifest_targets: Some(u32::MAX),
        stale_if_error: Duration::MAX,
        ..TenantCachePolicy::default()
    };
    for kind in [
        ManifestKind::HlsMedia {
            live: true,
            target: Duration::MAX,
        },
        ManifestKind::DashDynamic {
            refresh: Duration::MAX,
        },
        ManifestKind::HlsMaster,
    ] {
        let ttl = ttl_for(StatusCode::OK, &kind, &h(""), &policy);
        let m = Manifest {
            progress: None,
            wire: Default::default(),
            status: StatusCode::OK,
            headers: vec![],
            body: Bytes::new(),
            kind,
            parsed: Parsed::None,
            ttl,
            fetched: Instant::now(),
            window: Some(Duration::MAX),
        };
        assert!(m.stale_limit(&policy) <= MAX_TTL);
        assert!(PerEntryTtl
            .expire_after_create(&Arc::from("k"), &Arc::new(m), Instant::now())
            .is_some_and(|t| t <= MAX_TTL));
    }
}

#[test]
fn tenant_live_ttl_override() {
    let p = TenantCachePolicy {
        live_manifest_ttl: Some(Duration::from_millis(500)),
        ..TenantCachePolicy::default()
    };
    let live = ManifestKind::HlsMedia {
        live: true,
        target: Duration::from_secs(6),
    };
    assert_eq!(
        ttl_for(StatusCode::OK, &live, &h(""), &p),
        Duration::from_millis(500)
    );
}
