use super::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const NOW: u64 = 1_800_000_000;

fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samples/keys")
}

fn cfg(alg: &str) -> AuthConfig {
    let mut c: AuthConfig = toml::from_str(&format!("alg = {alg:?}")).unwrap();
    match alg {
        "HS256" => c.secret = Some(SECRET.into()),
        "RS256" => c.key_file = Some("test-only-rs256-public.pem".into()),
        "ES256" => c.key_file = Some("test-only-es256-public.pem".into()),
        _ => {}
    }
    c.audience = vec!["manifold".into()];
    c.claims = vec!["sub".into(), "tier".into(), "n".into()];
    c
}

fn auth(alg: &str) -> TenantAuth {
    TenantAuth::new(&cfg(alg), &keys_dir()).unwrap()
}

fn sign(alg: &str, claims: &serde_json::Value) -> String {
    let (a, key) = match alg {
        "HS256" => (
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET.as_bytes()),
        ),
        "RS256" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(
                &std::fs::read(keys_dir().join("test-only-rs256-private.pem")).unwrap(),
            )
            .unwrap(),
        ),
        _ => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(
                &std::fs::read(keys_dir().join("test-only-es256-private.pem")).unwrap(),
            )
            .unwrap(),
        ),
    };
    encode(&Header::new(a), claims, &key).unwrap()
}

fn good() -> serde_json::Value {
    json!({"sub": "alice", "tier": "gold", "n": 7, "aud": "manifold", "exp": NOW + 600})
}

fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
    for (k, v) in headers {
        r.insert_header(k.to_string(), *v).unwrap();
    }
    r
}

#[test]
fn each_algorithm_verifies_its_tokens_and_passes_the_listed_claims() {
    for alg in ["HS256", "RS256", "ES256"] {
        let g = auth(alg).verify_token(&sign(alg, &good()), NOW).unwrap();
        assert_eq!(
            g.claims,
            vec![
                ("sub".to_string(), "alice".to_string()),
                ("tier".to_string(), "gold".to_string()),
                ("n".to_string(), "7".to_string()),
            ],
            "{alg}"
        );
        assert_eq!(g.expires, NOW + 600);
    }
}

#[test]
fn wrong_algorithm_or_key_is_401() {
    // an RS256 token for an ES256 tenant, an HS256 token for an RS256 tenant
    for (tenant, signer) in [("ES256", "RS256"), ("RS256", "HS256"), ("HS256", "ES256")] {
        let d = auth(tenant)
            .verify_token(&sign(signer, &good()), NOW)
            .unwrap_err();
        assert_eq!(d.status, 401, "{tenant} given {signer}: {d:?}");
        assert!(d.message.contains("algorithm"), "{d:?}");
    }
    // right algorithm, another secret
    let other = encode(
        &Header::new(Algorithm::HS256),
        &good(),
        &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes"),
    )
    .unwrap();
    let d = auth("HS256").verify_token(&other, NOW).unwrap_err();
    assert_eq!((d.status, d.reason), (401, "auth-invalid"));
    assert!(d.message.contains("signature"), "{d:?}");
    // a tampered payload
    let t = sign("ES256", &good());
    let mut parts: Vec<String> = t.split('.').map(String::from).collect();
    parts[1] = sign(
        "ES256",
        &json!({"sub": "mallory", "aud": "manifold", "exp": NOW + 600}),
    )
    .split('.')
    .nth(1)
    .unwrap()
    .to_string();
    let d = auth("ES256")
        .verify_token(&parts.join("."), NOW)
        .unwrap_err();
    assert_eq!(d.status, 401);
}

#[test]
fn alg_none_is_refused() {
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let t = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good())
    );
    for alg in ["HS256", "RS256", "ES256"] {
        assert_eq!(auth(alg).verify_token(&t, NOW).unwrap_err().status, 401);
    }
}

#[test]
fn exp_nbf_and_aud_are_checked_with_the_leeway() {
    let a = auth("HS256"); // leeway 30 s by default
    let with = |patch: serde_json::Value| {
        let mut c = good();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        a.verify_token(&sign("HS256", &c), NOW)
    };
    assert!(with(json!({"exp": NOW - 20})).is_ok(), "within the leeway");
    let d = with(json!({"exp": NOW - 31})).unwrap_err();
    assert_eq!((d.status, d.reason), (403, "auth-expired"));
    assert!(with(json!({"nbf": NOW + 20})).is_ok(), "within the leeway");
    let d = with(json!({"nbf": NOW + 31})).unwrap_err();
    assert_eq!((d.status, d.reason), (403, "auth-not-yet-valid"));
    let d = with(json!({"aud": "someone-else"})).unwrap_err();
    assert_eq!((d.status, d.reason), (403, "auth-audience"));
    assert!(with(json!({"aud": ["x", "manifold"]})).is_ok());
    let mut no_aud = good();
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        a.verify_token(&sign("HS256", &no_aud), NOW)
            .unwrap_err()
            .status,
        403
    );
    let mut no_exp = good();
    no_exp.as_object_mut().unwrap().remove("exp");
    let d = a.verify_token(&sign("HS256", &no_exp), NOW).unwrap_err();
    assert_eq!(d.status, 401, "{d:?}");
    let d = with(json!({"exp": "tomorrow"})).unwrap_err();
    assert_eq!(d.status, 401, "{d:?}");
    let d = with(json!({"nbf": -5})).unwrap_err();
    assert_eq!(d.status, 401, "{d:?}");

    let mut c = cfg("HS256");
    c.leeway = Duration::ZERO;
    c.audience.clear();
    let strict = TenantAuth::new(&c, &keys_dir()).unwrap();
    let mut t = good();
    t["exp"] = json!(NOW - 1);
    assert_eq!(
        strict
            .verify_token(&sign("HS256", &t), NOW)
            .unwrap_err()
            .status,
        403
    );
    // no audience configured: aud is not checked
    t["exp"] = json!(NOW + 1);
    t["aud"] = json!("anything");
    assert!(strict.verify_token(&sign("HS256", &t), NOW).is_ok());
}

#[test]
fn malformed_tokens_are_401_and_never_panic() {
    let a = auth("RS256");
    let long = "a".repeat(MAX_TOKEN + 1);
    let cases = [
        "",
        ".",
        "..",
        "...",
        "a.b.c",
        "eyJhbGciOiJSUzI1NiJ9",
        "eyJhbGciOiJSUzI1NiJ9..",
        "eyJhbGciOiJSUzI1NiJ9.e30.",
        "eyJhbGciOiJSUzI1NiJ9.e30.AAAA",
        "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.AAAA",
        "%%%.%%%.%%%",
        "ey\u{0}.ey.ey",
        "ëÿ.ÿ.ÿ",
        &long,
    ];
    for t in cases {
        let d = a.verify_token(t, NOW).unwrap_err();
        assert_eq!(d.status, 401, "{t:?}: {d:?}");
    }
    // pseudo-random garbage built from token-like pieces
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..2000 {
        let mut t = String::new();
        for _ in 0..(x % 40) {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pieces = [
                "eyJ",
                "hbGciOiJ",
                ".",
                "SUzI1NiJ9",
                "e30",
                "-",
                "_",
                "=",
                "A",
                "%",
            ];
            t.push_str(pieces[(x >> 33) as usize % pieces.len()]);
        }
        assert!(a.verify_token(&t, NOW).is_err());
    }
}

#[test]
fn encoded_token_names_are_stripped_too() {
    let a = auth("HS256");
    assert_eq!(
        a.strip_param("/p.m3u8?%74oken=abc&x=1&tok%65n=d&to+ken=k"),
        "/p.m3u8?x=1&to+ken=k"
    );
    assert_eq!(a.strip_param("/p.m3u8?token"), "/p.m3u8");
    assert_eq!(a.strip_param("/p.m3u8?tokens=1"), "/p.m3u8?tokens=1");
}

#[test]
fn token_from_header_or_query() {
    let a = auth("HS256");
    let t = sign("HS256", &good());
    let keys = SessionKeys::new(b"0123456789abcdef0123");
    let check = |r: &RequestHeader| a.check(r, "acme", None, &keys, NOW);
    let bearer = format!("Bearer {t}");
    assert!(matches!(
        check(&req("/x.m3u8", &[("authorization", &bearer)])),
        Ok(Access::Token(_))
    ));
    let lower = format!("bearer {t}");
    assert!(check(&req("/x.m3u8", &[("Authorization", &lower)])).is_ok());
    assert!(check(&req(&format!("/x.m3u8?a=1&token={t}&b=2"), &[])).is_ok());
    let d = check(&req("/x.m3u8?a=1", &[])).unwrap_err();
    assert_eq!((d.status, d.reason), (401, "auth-missing"));
    assert!(d.message.contains("\"token\" query parameter"), "{d:?}");
    // a header that is there but wrong decides (no fallback to the query)
    let d = check(&req(
        &format!("/x.m3u8?token={t}"),
        &[("authorization", "Bearer x.y.z")],
    ))
    .unwrap_err();
    assert_eq!(d.status, 401);
    assert_eq!(
        check(&req("/x.m3u8", &[("authorization", "Basic abc")]))
            .unwrap_err()
            .status,
        401
    );

    // configured names
    let mut c = cfg("HS256");
    c.query_param = "jwt".into();
    c.header = "X-Viewer-Token".into();
    let custom = TenantAuth::new(&c, &keys_dir()).unwrap();
    let check = |r: &RequestHeader| custom.check(r, "acme", None, &keys, NOW);
    assert!(check(&req("/s.ts", &[("x-viewer-token", &t)])).is_ok());
    assert!(check(&req(&format!("/s.ts?jwt={t}"), &[])).is_ok());
    assert!(check(&req(&format!("/s.ts?token={t}"), &[])).is_err());
    assert!(check(&req("/s.ts", &[("authorization", &bearer)])).is_err());
}

#[test]
fn session_tokens_carry_the_authorization() {
    let a = auth("ES256");
    let keys = SessionKeys::new(b"0123456789abcdef0123");
    let bare = req("/live/v1.m3u8", &[]);
    let (_, live) = keys.create_until("acme", NOW + 100);
    assert_eq!(
        a.check(&bare, "acme", Some(&live), &keys, NOW),
        Ok(Access::Session)
    );
    // within the leeway, then ended
    assert!(a
        .check(&bare, "acme", Some(&live), &keys, NOW + 120)
        .is_ok());
    let d = a
        .check(&bare, "acme", Some(&live), &keys, NOW + 131)
        .unwrap_err();
    assert_eq!((d.status, d.reason), (403, "session-expired"));
    // another tenant's, forged, or a changed expiry
    let d = a
        .check(&bare, "other", Some(&live), &keys, NOW)
        .unwrap_err();
    assert_eq!((d.status, d.reason), (403, "bad-session"));
    assert_eq!(
        a.check(
            &bare,
            "acme",
            Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            &keys,
            NOW
        )
        .unwrap_err()
        .status,
        403
    );
    let (_, other_exp) = SessionKeys::new(b"another key, 20 bytes").create_until("acme", NOW + 100);
    assert_eq!(
        a.check(&bare, "acme", Some(&other_exp), &keys, NOW)
            .unwrap_err()
            .status,
        403
    );
    // a session no viewer token started needs the viewer token
    let (_, plain) = keys.create("acme");
    assert_eq!(
        a.check(&bare, "acme", Some(&plain), &keys, NOW)
            .unwrap_err()
            .status,
        401
    );
    let t = sign("ES256", &good());
    let with_token = req(&format!("/live/v1.m3u8?token={t}"), &[]);
    assert!(matches!(
        a.check(&with_token, "acme", Some(&plain), &keys, NOW),
        Ok(Access::Token(_))
    ));
}

#[test]
fn the_token_parameter_is_stripped_for_the_origin() {
    let a = auth("HS256");
    assert_eq!(a.strip_param("/a/b.ts?token=x.y.z"), "/a/b.ts");
    assert_eq!(a.strip_param("/a/b.ts?x=1&token=t&y=2"), "/a/b.ts?x=1&y=2");
    assert_eq!(a.strip_param("/a/b.ts?tokens=1&token"), "/a/b.ts?tokens=1");
    assert_eq!(a.strip_param("/a/b.ts"), "/a/b.ts");
}

#[test]
fn config_errors_name_the_field() {
    let dir = keys_dir();
    let err = |c: AuthConfig| TenantAuth::new(&c, &dir).unwrap_err();
    let mut c = cfg("HS256");
    c.alg = "HS512".into();
    assert_eq!(err(c).0, "alg");
    let mut c = cfg("HS256");
    c.secret = Some("short".into());
    assert_eq!(err(c).0, "secret");
    let mut c = cfg("HS256");
    c.secret = Some("env:MANIFOLD_TEST_UNSET_AUTH_SECRET".into());
    let (f, m) = err(c);
    assert_eq!(f, "secret");
    assert!(m.contains("MANIFOLD_TEST_UNSET_AUTH_SECRET"), "{m}");
    let mut c = cfg("RS256");
    c.key_file = Some("missing.pem".into());
    let (f, m) = err(c);
    assert_eq!(f, "key_file");
    assert!(m.contains("cannot read"), "{m}");
    let mut c = cfg("ES256");
    c.key_file = Some("test-only-p384-public.pem".into());
    let (f, m) = err(c);
    assert_eq!(f, "key_file");
    assert!(m.contains("P-256"), "{m}");
    let mut c = cfg("ES256");
    c.key_file = Some("test-only-rs256-public.pem".into());
    assert_eq!(err(c).0, "key_file");
    let mut c = cfg("RS256");
    c.key_file = Some("test-only-es256-public.pem".into());
    assert_eq!(err(c).0, "key_file");
    let mut c = cfg("RS256");
    c.key_file = Some("README.md".into());
    assert_eq!(err(c).0, "key_file");
    let mut c = cfg("RS256");
    c.secret = Some(SECRET.into());
    assert_eq!(err(c).0, "secret");
    let mut c = cfg("HS256");
    c.claims = vec!["sub".into(), "bad claim".into()];
    assert_eq!(err(c).0, "claims");
    let mut c = cfg("HS256");
    c.query_param = "a&b".into();
    assert_eq!(err(c).0, "query_param");
    let mut c = cfg("HS256");
    c.header = "bad header".into();
    assert_eq!(err(c).0, "header");
    let mut c = cfg("HS256");
    c.leeway = Duration::from_secs(7200);
    assert_eq!(err(c).0, "leeway");
}
