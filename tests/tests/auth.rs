//! Edge auth end to end: viewer tokens (JWT, HS256/RS256/ES256) are verified before the
//! request does anything else (401 missing/invalid, 403 expired/wrong audience), the session
//! URIs of a personalized playlist work without the token until it would have expired, forged
//! or ended sessions are refused, the token's claims reach the plugin on every reload (on
//! another node too, through Redis), and `manifold check` names a bad `[tenants.auth]` field.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use manifold_e2e::{plugin, run_manifold, Origin, Proxy, Redis};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "e2e-viewer-token-secret-0123456789abcdef";

fn keys() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samples/keys")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(alg: &str, claims: serde_json::Value) -> String {
    let pem = |f: &str| std::fs::read(keys().join(f)).unwrap();
    let (a, key) = match alg {
        "HS256" => (
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET.as_bytes()),
        ),
        "RS256" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&pem("test-only-rs256-private.pem")).unwrap(),
        ),
        "ES256" => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&pem("test-only-es256-private.pem")).unwrap(),
        ),
        other => panic!("{other}"),
    };
    encode(&Header::new(a), &claims, &key).unwrap()
}

/// A valid token for the tests' audience, `sub`/`tier` as claims.
fn token(alg: &str) -> String {
    sign(
        alg,
        json!({"sub": "alice", "tier": "gold", "aud": "manifold", "exp": now() + 600}),
    )
}

/// Tenants: `hs` (HS256, plugin echoing the viewer's headers into media playlists), `rs`
/// (RS256, token in `X-Viewer-Token` or `?jwt=`), `es` (ES256, no plugin), `short` (HS256,
/// no leeway, the plugin), `open` (no auth).
fn config(origin: &Origin) -> String {
    let o = origin.addr;
    let echo = format!(
        "[tenants.plugin]\nfile = \"{}\"\nconfig = \"mode=viewer\"\ndeadline = \"1s\"\n",
        plugin("misbehave").display()
    );
    let k = keys();
    format!(
        "[[tenants]]\nid = \"hs\"\norigin = \"http://{o}\"\n{echo}\
         [tenants.auth]\nalg = \"HS256\"\nsecret = \"{SECRET}\"\naudience = [\"manifold\"]\n\
         claims = [\"sub\", \"tier\"]\n\n\
         [[tenants]]\nid = \"rs\"\norigin = \"http://{o}\"\n\
         [tenants.auth]\nalg = \"RS256\"\nkey_file = \"{}\"\naudience = [\"manifold\"]\n\
         header = \"X-Viewer-Token\"\nquery_param = \"jwt\"\n\n\
         [[tenants]]\nid = \"es\"\norigin = \"http://{o}\"\n\
         [tenants.auth]\nalg = \"ES256\"\nkey_file = \"{}\"\naudience = [\"manifold\"]\n\n\
         [[tenants]]\nid = \"short\"\norigin = \"http://{o}\"\n{echo}\
         [tenants.auth]\nalg = \"HS256\"\nsecret = \"{SECRET}\"\nleeway = \"0s\"\n\
         claims = [\"sub\"]\n\n\
         [[tenants]]\nid = \"open\"\norigin = \"http://{o}\"\n",
        k.join("test-only-rs256-public.pem").display(),
        k.join("test-only-es256-public.pem").display(),
    )
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<none>")
    }
}

async fn get_with(url: &str, headers: &[(&str, &str)]) -> Resp {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

async fn get(url: &str) -> Resp {
    get_with(url, &[]).await
}

/// URIs (lines that are not tags) of a playlist, resolved against its URL.
fn uris(base: &str, body: &str) -> Vec<String> {
    let base = url::Url::parse(base).unwrap();
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| base.join(l).unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_tokens_are_checked_before_anything_else() {
    // One token after another, each with the answer it must get.
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::start(&config(&origin)).unwrap();
    let master = "/live/hls/master.m3u8";

    // missing: 401 with a challenge and a reason, and the origin never asked
    let r = get(&proxy.url(&format!("/hs{master}"))).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("missing viewer token"), "{}", r.body);
    assert!(
        r.header("www-authenticate").starts_with("Bearer"),
        "{:?}",
        r.headers
    );
    assert!(r.header("cache-status").contains("detail=auth-missing"));
    // invalid: malformed, bad signature, algorithm not the tenant's
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &json!({"aud": "manifold", "exp": now() + 600}),
        &EncodingKey::from_secret(b"not-the-tenant-secret-0123456789abcdef"),
    )
    .unwrap();
    for (tenant, t) in [
        ("hs", "garbage".to_string()),
        ("hs", "a.b.c".to_string()),
        ("hs", forged),
        ("hs", token("ES256")),
        ("es", token("RS256")),
        ("es", token("HS256")),
    ] {
        let r = get(&proxy.url(&format!("/{tenant}{master}?token={t}"))).await;
        assert_eq!(r.status, 401, "{tenant} {t}: {}", r.body);
        assert!(r.body.starts_with("invalid viewer token"), "{}", r.body);
        assert!(r.header("www-authenticate").contains("invalid_token"));
    }
    // valid but expired, not yet valid, for someone else: 403
    let claims = |patch: serde_json::Value| {
        let mut c = json!({"sub": "alice", "aud": "manifold", "exp": now() + 600});
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    for (patch, reason) in [
        (json!({"exp": now() - 120}), "expired"),
        (json!({"nbf": now() + 120}), "not valid yet"),
        (json!({"aud": "another-service"}), "audience"),
    ] {
        for alg in ["HS256", "ES256"] {
            let tenant = if alg == "HS256" { "hs" } else { "es" };
            let t = sign(alg, claims(patch.clone()));
            let r = get(&proxy.url(&format!("/{tenant}{master}?token={t}"))).await;
            assert_eq!(r.status, 403, "{tenant} {patch}: {}", r.body);
            assert!(r.body.contains(reason), "{}", r.body);
        }
    }
    // session-less segments too
    let seg = "/live/hls/v0/0.ts";
    assert_eq!(get(&proxy.url(&format!("/es{seg}"))).await.status, 401);
    assert_eq!(
        origin.count(master).await.unwrap(),
        0,
        "refused before the origin"
    );
    assert_eq!(
        origin.count(seg).await.unwrap(),
        0,
        "refused before the origin"
    );

    // valid: each algorithm, query or header
    let plain = get(&origin.url(master)).await.body;
    let r = get(&proxy.url(&format!("/es{master}?token={}", token("ES256")))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, plain, "no plugin: the origin's playlist");
    let bearer = format!("Bearer {}", token("ES256"));
    let r = get_with(
        &proxy.url(&format!("/es{seg}")),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(origin.count(seg).await.unwrap(), 1);
    // RS256 with the tenant's names for them; the default names do not count there
    let rs = token("RS256");
    let r = get_with(
        &proxy.url(&format!("/rs{master}")),
        &[("x-viewer-token", &rs)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        get(&proxy.url(&format!("/rs{master}?jwt={rs}")))
            .await
            .status,
        200
    );
    assert_eq!(
        get(&proxy.url(&format!("/rs{master}?token={rs}")))
            .await
            .status,
        401
    );
    let r = get(&proxy.url(&format!("/hs{master}?token={}", token("HS256")))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("manifold-plugin").starts_with("ok"),
        "{:?}",
        r.headers
    );
    // the token is not part of the origin request or the cache key: one origin fetch for
    // two viewers' tokens (the manifest cache answers the second)
    let before = origin.count(master).await.unwrap();
    let other = sign("ES256", claims(json!({"sub": "bob"})));
    assert_eq!(
        get(&proxy.url(&format!("/es{master}?token={other}")))
            .await
            .status,
        200
    );
    assert_eq!(
        origin.count(master).await.unwrap(),
        before,
        "served from the manifest cache"
    );
    // a tenant without auth is not affected
    assert_eq!(get(&proxy.url(&format!("/open{master}"))).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_started_by_a_token_carry_it_and_its_claims() {
    let origin = Origin::start(&[]).unwrap();
    let proxy = Proxy::start(&config(&origin)).unwrap();
    let url = proxy.url(&format!(
        "/hs/live/hls/master.m3u8?token={}",
        token("HS256")
    ));
    let r = get(&url).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let variants = uris(&url, &r.body);
    assert!(!variants.is_empty(), "{}", r.body);
    for v in &variants {
        assert!(v.contains("/hs/~"), "session URI: {v}");
        assert!(
            !v.contains("token="),
            "the token is not copied into URIs: {v}"
        );
    }
    // reloads and segments of the session need no token; the claims reach the plugin
    let media = &variants[0];
    for _ in 0..2 {
        let r = get(media).await;
        assert_eq!(r.status, 200, "{media}: {}", r.body);
        assert!(
            r.body
                .contains("#EXT-X-VIEWER-HEADERS:jwt.sub=alice;jwt.tier=gold"),
            "{}",
            r.body
        );
        let segments = uris(media, &r.body);
        let r = get(&segments[0]).await;
        assert_eq!(r.status, 200, "{}: {}", segments[0], r.body);
    }
    // a client header named like a claim does not get in (only the token's claims do)
    let r = get_with(media, &[("jwt.sub", "mallory")]).await;
    assert!(r.body.contains("jwt.sub=alice;"), "{}", r.body);
    assert!(!r.body.contains("mallory"), "{}", r.body);

    // forged session tokens, and another tenant's: 403
    let (prefix, rest) = media.split_once("/~").unwrap();
    let (tok, path) = rest.split_once('/').unwrap();
    let mut bytes = tok.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let forged = format!("{prefix}/~{}/{path}", String::from_utf8(bytes).unwrap());
    let r = get(&forged).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("invalid session"), "{}", r.body);
    let other_tenant = media.replacen("/hs/~", "/short/~", 1);
    assert_eq!(get(&other_tenant).await.status, 403);
    // a session-less media playlist still needs the token
    let bare = media.replacen(&format!("/~{tok}"), "", 1);
    assert_eq!(get(&bare).await.status, 401);

    // a session ends when its token does: `short` has no leeway
    let exp = now() + 2;
    let t = sign("HS256", json!({"sub": "carol", "exp": exp}));
    let url = proxy.url(&format!("/short/live/hls/master.m3u8?token={t}"));
    let r = get(&url).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let media = uris(&url, &r.body).remove(0);
    let r = get(&media).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("#EXT-X-VIEWER-HEADERS:jwt.sub=carol"),
        "{}",
        r.body
    );
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = get(&media).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("session expired"), "{}", r.body);
    // even with a fresh token next to it: the session's own expiry decides
    let fresh = sign("HS256", json!({"sub": "carol", "exp": now() + 600}));
    let sep = if media.contains('?') { '&' } else { '?' };
    let r = get(&format!("{media}{sep}token={fresh}")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    // a new token starts a new session
    let url = proxy.url(&format!("/short/live/hls/master.m3u8?token={fresh}"));
    let r = get(&url).await;
    assert_eq!(r.status, 200);
    assert_eq!(get(&uris(&url, &r.body)[0]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_follow_the_session_to_another_node_through_redis() {
    let origin = Origin::start(&[]).unwrap();
    let redis = Redis::start().unwrap();
    let sessions = format!(
        "[sessions]\nkey = \"e2e-shared-session-key-0123456789\"\nstore = \"{}\"\n\n",
        redis.url()
    );
    let a = Proxy::start(&format!("{sessions}{}", config(&origin))).unwrap();
    let b = Proxy::start(&format!("{sessions}{}", config(&origin))).unwrap();
    let t = sign(
        "HS256",
        json!({"sub": "dave", "tier": 3, "aud": "manifold", "exp": now() + 600}),
    );
    let url = a.url(&format!("/hs/live/hls/master.m3u8?token={t}"));
    let r = get(&url).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let media = uris(&url, &r.body).remove(0);
    // the same session URI on the other node: authorized by the session token, claims from Redis
    let on_b = media.replace(&a.addr.to_string(), &b.addr.to_string());
    let r = get(&on_b).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("#EXT-X-VIEWER-HEADERS:jwt.sub=dave;jwt.tier=3"),
        "{}",
        r.body
    );
}

#[test]
fn check_names_the_auth_field() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let cases = [
        ("alg = \"none\"", "tenants[0].auth.alg"),
        (
            "alg = \"HS256\"\nsecret = \"short\"",
            "tenants[0].auth.secret",
        ),
        (
            "alg = \"HS256\"\nsecret = \"env:MANIFOLD_E2E_UNSET_VAR\"",
            "tenants[0].auth.secret",
        ),
        (
            "alg = \"RS256\"\nkey_file = \"missing.pem\"",
            "tenants[0].auth.key_file",
        ),
        (
            &format!(
                "alg = \"ES256\"\nkey_file = \"{}\"",
                keys.join("test-only-p384-public.pem").display()
            ),
            "tenants[0].auth.key_file",
        ),
    ];
    for (i, (auth, field)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(
            &path,
            format!(
                "[[tenants]]\nid = \"t\"\norigin = \"http://127.0.0.1:9\"\n[tenants.auth]\n{auth}\n"
            ),
        )
        .unwrap();
        let (code, _, stderr) =
            run_manifold(&["check", "--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(code, 2, "{auth}: {stderr}");
        assert!(stderr.contains(field), "{auth}: {stderr}");
    }
    // a key file next to the config, named relatively
    std::fs::copy(
        keys.join("test-only-es256-public.pem"),
        dir.path().join("viewer.pem"),
    )
    .unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(
        &path,
        "[[tenants]]\nid = \"t\"\norigin = \"http://127.0.0.1:9\"\n\
         [tenants.auth]\nalg = \"ES256\"\nkey_file = \"viewer.pem\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) =
        run_manifold(&["check", "--config", path.to_str().unwrap()]).unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
}
