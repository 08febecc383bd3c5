//! What real player traffic needs from the edge besides playing: CORS on every answer (and
//! preflights before auth and routing), CMCD and per-viewer parameters kept out of cache keys,
//! and a segment cache that ignores nothing that could change the origin's answer and shares
//! nothing it must not (credentials, `Vary`).

use manifold_e2e::{plugin, Origin, Proxy, RecordingOrigin};
use reqwest::{Client, Method, StatusCode};

const PAGE: &str = "https://player.example";

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(c: &Client, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = c.get(url).header("origin", PAGE);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

fn acao(r: &reqwest::Response) -> Option<&str> {
    r.headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn every_answer_carries_cors_and_preflights_come_before_auth_and_routing() {
    // One walk through every kind of answer; each check follows the request it is about.
    let origin =
        Origin::start(&["--elapsed", "60", "--ad-first", "40", "--ad-every", "40"]).unwrap();
    let recording = RecordingOrigin::start().unwrap();
    // an origin that sends its own CORS headers: they never decide
    recording.set_header(
        "/",
        "access-control-allow-origin",
        "https://origin-says.example",
    );
    let proxy = Proxy::start(&format!(
        r#"
[[tenants]]
id = "t"
origin = "http://{o}"

[[tenants]]
id = "p"
origin = "http://{o}"
[tenants.plugin]
file = "{plugin}"
capabilities = ["ads"]
deadline = "250ms"
[[tenants.creatives]]
name = "ad10"
duration = 10.0
hls = "/ads/ad10/hls/master.m3u8"
dash = "/ads/ad10/dash/manifest.mpd"

[[tenants]]
id = "secure"
origin = "http://{o}"
[tenants.auth]
alg = "HS256"
secret = "0123456789abcdef0123456789abcdef"

[[tenants]]
id = "strict"
origin = "http://{r}"
[tenants.cors]
allow_origins = ["{PAGE}"]
"#,
        o = origin.addr,
        r = recording.addr,
        plugin = plugin("scte35_breaks").display(),
    ))
    .unwrap();
    let c = client();
    // everything the proxy answers or passes, with `*` and the headers a page may read
    let cases = [
        ("/t/live/hls/master.m3u8", 200),
        ("/t/live/hls/v0.m3u8", 200),
        ("/t/live/hls/v0/30.ts", 200),
        ("/t/live/hls/v0/30.ts", 200), // a cache hit
        ("/p/live/dash/manifest.mpd", 302),
        ("/p/live/hls/master.m3u8", 200),
        ("/nobody/live/hls/master.m3u8", 404),
        ("/t/live/..%2Fx.m3u8", 400),
        ("/secure/live/hls/master.m3u8", 401),
        ("/t/live/hls/v9/1.ts", 404),
    ];
    for (path, status) in cases {
        let r = get(&c, &proxy.url(path), &[]).await;
        assert_eq!(r.status().as_u16(), status, "{path}");
        assert_eq!(acao(&r), Some("*"), "{path}: {:?}", r.headers());
        let exposed = r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_string();
        for h in ["Cache-Status", "Manifold-Plugin", "X-Request-Id"] {
            assert!(exposed.contains(h), "{path}: {exposed}");
        }
    }
    // the session's tracking JSON, from a session the redirect made
    let r = get(&c, &proxy.url("/p/live/dash/manifest.mpd"), &[]).await;
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let token_prefix = location.split("/live/").next().unwrap();
    let r = get(
        &c,
        &proxy.url(&format!("{token_prefix}/tracking.json")),
        &[],
    )
    .await;
    assert_eq!((r.status(), acao(&r)), (StatusCode::OK, Some("*")));
    // a method the proxy does not serve: 405 with Allow, still readable by the page
    let r = c
        .post(proxy.url("/t/live/hls/master.m3u8"))
        .header("origin", PAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, HEAD, OPTIONS");
    assert_eq!(acao(&r), Some("*"));
    // preflights: answered for a tenant with edge auth (no token) and for nobody's path
    for path in [
        "/secure/live/hls/master.m3u8",
        "/nobody/x.m3u8",
        "/t/live/hls/v0/1.ts",
    ] {
        let r = c
            .request(Method::OPTIONS, proxy.url(path))
            .header("origin", PAGE)
            .header("access-control-request-method", "GET")
            .header(
                "access-control-request-headers",
                "authorization, cmcd-request",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(acao(&r), Some("*"), "{path}");
        assert_eq!(
            r.headers()["access-control-allow-headers"],
            "authorization, cmcd-request"
        );
        assert!(r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("GET"));
        assert!(r.headers().contains_key("access-control-max-age"));
    }
    // a tenant that names its pages: the page's origin echoed, the origin's own value gone
    let r = get(&c, &proxy.url("/strict/x/index.m3u8"), &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(acao(&r), Some(PAGE));
    assert_eq!(
        r.headers()
            .get_all("access-control-allow-origin")
            .iter()
            .count(),
        1
    );
    assert!(r.headers()["vary"].to_str().unwrap().contains("Origin"));
    let r = c
        .get(proxy.url("/strict/x/0.ts"))
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        acao(&r),
        None,
        "a page the tenant does not list gets no CORS"
    );
}

#[tokio::test]
async fn cmcd_and_per_viewer_parameters_never_split_the_cache() {
    let recording = RecordingOrigin::start().unwrap();
    let proxy = Proxy::start(&format!(
        r#"
[[tenants]]
id = "t"
origin = "http://{r}/a"
[tenants.cache]
volatile_params = ["sid"]

[[tenants]]
id = "fwd"
origin = "http://{r}/b"
[tenants.forward]
cmcd = true
"#,
        r = recording.addr
    ))
    .unwrap();
    let c = client();
    let cmcd = |bl: u32| format!("bl%3D{bl}%2Cbr%3D3200%2Csid%3D%22abc%22");
    // segments: different CMCD per request (as players send them), one origin fetch
    for (i, bl) in [1000, 2000, 3000].into_iter().enumerate() {
        let r = get(
            &c,
            &proxy.url(&format!("/t/live/1.ts?CMCD={}&sid=viewer{i}", cmcd(bl))),
            &[("cmcd-request", &format!("bl={bl}"))],
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let cs = r.headers()["cache-status"].to_str().unwrap().to_string();
        if i > 0 {
            assert!(cs.contains("hit"), "request {i}: {cs}");
        }
    }
    let seen = recording.requests("/a/live/1.ts");
    assert_eq!(seen.len(), 1, "{seen:?}");
    // not forwarded by default: no CMCD in the query or headers; volatile params are
    assert_eq!(seen[0].target, "/a/live/1.ts?sid=viewer0");
    assert_eq!(seen[0].header("cmcd-request"), None);
    // manifests too
    for bl in [1000, 2000] {
        let r = get(
            &c,
            &proxy.url(&format!("/t/live/v.m3u8?CMCD={}", cmcd(bl))),
            &[],
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(recording.requests("/a/live/v.m3u8").len(), 1);
    // a tenant that forwards CMCD: the origin sees it, the cache is still shared
    for bl in [1000, 2000] {
        let r = get(
            &c,
            &proxy.url(&format!("/fwd/live/2.ts?CMCD={}", cmcd(bl))),
            &[("cmcd-request", "bl=1000")],
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let seen = recording.requests("/b/live/2.ts");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].target.contains("CMCD=bl%3D1000"),
        "{}",
        seen[0].target
    );
    assert_eq!(seen[0].header("cmcd-request"), Some("bl=1000"));
}

#[tokio::test]
async fn credentials_stay_home_vary_is_honoured_and_credentialed_answers_are_not_shared() {
    let recording = RecordingOrigin::start().unwrap();
    recording.set_header("/a/ua/", "vary", "User-Agent");
    recording.set_header("/a/enc/", "vary", "Accept-Encoding, Origin");
    recording.set_header("/a/any/", "vary", "*");
    recording.set_header("/b/public/", "cache-control", "public, max-age=60");
    let proxy = Proxy::start(&format!(
        r#"
[[tenants]]
id = "t"
origin = "http://{r}/a"

[[tenants]]
id = "creds"
origin = "http://{r}/b"
[tenants.forward]
credentials = true
"#,
        r = recording.addr
    ))
    .unwrap();
    let c = client();
    let viewer = [
        ("cookie", "session=secret"),
        ("authorization", "Bearer viewer-jwt"),
        ("accept-encoding", "gzip, br"),
    ];
    // by default none of the viewer's credentials (or its encoding, or its page) reach the
    // origin, and the answer is shared
    for _ in 0..2 {
        assert_eq!(
            get(&c, &proxy.url("/t/plain/1.ts"), &viewer).await.status(),
            StatusCode::OK
        );
    }
    let seen = recording.requests("/a/plain/1.ts");
    assert_eq!(seen.len(), 1);
    for h in ["cookie", "authorization", "accept-encoding", "origin"] {
        assert_eq!(seen[0].header(h), None, "{h} reached the origin");
    }
    // Vary on a forwarded header: one copy per value
    for ua in ["A", "B", "A", "B"] {
        let r = get(&c, &proxy.url("/t/ua/1.ts"), &[("user-agent", ua)]).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let uas: Vec<String> = recording
        .requests("/a/ua/1.ts")
        .iter()
        .map(|r| r.header("user-agent").unwrap_or("").to_string())
        .collect();
    assert_eq!(uas, ["A", "B"], "one origin fetch per User-Agent");
    // Vary on what is never forwarded: one copy for all
    for enc in ["gzip", "br", "identity"] {
        get(&c, &proxy.url("/t/enc/1.ts"), &[("accept-encoding", enc)]).await;
    }
    assert_eq!(recording.requests("/a/enc/1.ts").len(), 1);
    // Vary: * is never stored
    for _ in 0..2 {
        get(&c, &proxy.url("/t/any/1.ts"), &[]).await;
    }
    assert_eq!(recording.requests("/a/any/1.ts").len(), 2);
    // a tenant that forwards credentials: they reach the origin, and the answer is shared
    // only when the origin says it may be
    for _ in 0..2 {
        get(&c, &proxy.url("/creds/private/1.ts"), &viewer).await;
    }
    let seen = recording.requests("/b/private/1.ts");
    assert_eq!(
        seen.len(),
        2,
        "an answer to a credentialed request is not shared"
    );
    assert_eq!(seen[0].header("cookie"), Some("session=secret"));
    assert_eq!(seen[0].header("accept-encoding"), None);
    for _ in 0..2 {
        get(&c, &proxy.url("/creds/public/1.ts"), &viewer).await;
    }
    assert_eq!(recording.requests("/b/public/1.ts").len(), 1);
    // without credentials the same tenant shares as usual
    for _ in 0..2 {
        get(&c, &proxy.url("/creds/anon/1.ts"), &[]).await;
    }
    assert_eq!(recording.requests("/b/anon/1.ts").len(), 1);
}
