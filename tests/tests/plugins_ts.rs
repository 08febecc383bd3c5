//! The TypeScript samples (plugins/ts, built with plugins/sdk-ts) against the Rust ones
//! (plugins/*): one origin, a Rust tenant and a TypeScript tenant per sample with the same
//! config, the same requests; the manifests must be identical but for the tenant's path.

use manifold_e2e::plugin_tenant as tenant;
use manifold_e2e::{creatives, Origin, Proxy};

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";
const DESKTOP: &str = "Mozilla/5.0 (X11; Linux x86_64)";

async fn get(url: &str, ua: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(url)
        .header("user-agent", ua)
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// The body with the tenant's prefix, its session ids and the MPD's publish time (when it
/// was answered) made neutral.
fn neutral(body: &str, tenant: &str) -> String {
    let mut body = body.replace(&format!("/{tenant}/"), "/T/");
    if let Some(i) = body.find(" publishTime=\"") {
        if let Some(len) = body[i + 14..].find('"') {
            body.replace_range(i + 14..i + 14 + len, "P");
        }
    }
    let mut out = String::with_capacity(body.len());
    let mut rest = body.as_str();
    while let Some(i) = rest.find("/T/~") {
        out.push_str(&rest[..i + 4]);
        rest = &rest[i + 4..];
        let end = rest.find('/').unwrap_or(rest.len());
        out.push('S');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `path` through both tenants (`rs`, `ts`); for a path starting with `@master:NAME`, the
/// variant of the tenant's own master (a session's URL) whose line contains NAME.
async fn compare(proxy: &Proxy, path: &str, ua: &str) -> String {
    // Each tenant caches the origin's live playlist on its own, so the two may hold different
    // versions of the window for a moment: compare when they hold the same one.
    for attempt in 0..20 {
        let mut bodies = Vec::new();
        for t in ["rs", "ts"] {
            let url = match path.strip_prefix("@master:") {
                Some(rest) => {
                    let (master, name) = rest.split_once(' ').expect("@master:PATH NAME");
                    let (s, m) = get(&proxy.url(&format!("/{t}{master}")), ua).await;
                    assert_eq!(s, 200, "{t}{master}: {m}");
                    let line = m
                        .lines()
                        .find(|l| !l.starts_with('#') && l.contains(name))
                        .unwrap_or_else(|| panic!("{name} in {t}'s master: {m}"))
                        .to_string();
                    proxy.url(&line)
                }
                None => proxy.url(&format!("/{t}{path}")),
            };
            let (s, body) = get(&url, ua).await;
            assert_eq!(s, 200, "{url}: {body}");
            bodies.push(neutral(&body, t));
        }
        let window = |b: &str| {
            b.lines()
                .find(|l| l.starts_with("#EXT-X-MEDIA-SEQUENCE:") || l.contains("startNumber="))
                .map(str::to_string)
        };
        if window(&bodies[0]) != window(&bodies[1]) && attempt < 19 {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            continue;
        }
        if bodies[0] != bodies[1] {
            let (l, r) = (&bodies[0], &bodies[1]);
            let lines: Vec<String> = l
                .lines()
                .zip(r.lines())
                .filter(|(a, b)| a != b)
                .map(|(a, b)| format!("- {a}\n+ {b}"))
                .take(10)
                .collect();
            panic!(
                "{path} ({ua}): Rust (-) and TypeScript (+) differ in:\n{}\n(lines: {} vs {})\nRust:\n{l}\nTypeScript:\n{r}",
                lines.join("\n"),
                l.lines().count(),
                r.lines().count()
            );
        }
        return bodies.swap_remove(0);
    }
    unreachable!()
}

fn pair(origin: &Origin, rust: &str, toml: &str, extra: &str) -> String {
    tenant("rs", origin, rust, toml)
        + extra
        + &tenant("ts", origin, &format!("{rust}_ts"), toml)
        + extra
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_and_rust_variant_filters_give_identical_manifests() {
    let origin = Origin::start(&[]).unwrap();
    let cfg = "config = \"mobile=180; tv=270; desktop=1e9\"\ndeadline = \"1s\"";
    let proxy = Proxy::start(&pair(&origin, "variant_filter", cfg, "")).unwrap();
    let phone = compare(&proxy, "/live/hls/master.m3u8", IPHONE).await;
    assert_eq!(phone.matches("#EXT-X-STREAM-INF").count(), 2, "{phone}");
    for path in [
        "/live/hls/master.m3u8?maxres=108",
        "/live/hls/master.m3u8?maxres=abc",
        "/live/cmaf/master.m3u8?maxres=108",
        "/vod/hls/master.m3u8",
        "/live/dash/manifest.mpd",
        "/live/dash/manifest.mpd?maxres=200",
    ] {
        compare(&proxy, path, IPHONE).await;
        compare(&proxy, path, DESKTOP).await;
    }
    let low = compare(&proxy, "/live/hls/master.m3u8?maxres=108", DESKTOP).await;
    assert_eq!(low.matches("#EXT-X-STREAM-INF").count(), 1, "{low}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_and_rust_scte35_breaks_give_identical_manifests() {
    // segments 0..20 are live; a 10 s break starts at segment 13: it stays in the window for
    // 26 s more (a busy machine compiling both plugins took longer than the 6 s of a shorter one)
    let origin = Origin::live(40, 20, 26, 60, 10).unwrap();
    let ads = creatives(&["ad10", "ad15", "slate"], true, true);
    // decided by the host (the catalog) and from the config
    let decided = "capabilities = [\"ads\"]\nfail = \"closed\"\ndeadline = \"1s\"";
    let proxy = Proxy::start(&pair(&origin, "scte35_breaks", decided, &ads)).unwrap();
    let media = compare(&proxy, "@master:/live/hls/master.m3u8 v1.m3u8", DESKTOP).await;
    assert_eq!(media.matches("/ads/ad10/hls/v1/").count(), 5, "{media}");
    compare(&proxy, "@master:/live/cmaf/master.m3u8 v0.m3u8", DESKTOP).await;
    let mpd = compare(&proxy, "/live/dash/manifest.mpd", DESKTOP).await;
    assert!(mpd.contains("/ads/ad10/dash/"), "{mpd}");
    drop(proxy);
    // a fresh channel, so the break is still in the window
    drop(origin);
    let origin = Origin::live(40, 20, 26, 60, 10).unwrap();
    // ad15 is longer than the break, adx lasts nothing: only ad10 plays
    let fixed = "config = \"pod=ad15, adx,ad10\"\nfail = \"closed\"\ndeadline = \"1s\"";
    let proxy = Proxy::start(&pair(&origin, "scte35_breaks", fixed, &ads)).unwrap();
    let media = compare(&proxy, "@master:/live/hls/master.m3u8 v0.m3u8", DESKTOP).await;
    assert!(media.contains("/ads/ad10/hls/v0/"), "{media}");
    assert!(!media.contains("/ads/ad15/"), "{media}");
    compare(&proxy, "/vod/hls/v0.m3u8?mf_v=v94000x108", DESKTOP).await;
    compare(&proxy, "/live/dash/manifest.mpd", DESKTOP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_and_rust_prerolls_give_identical_manifests() {
    let origin = Origin::start(&[]).unwrap();
    let ads = creatives(&["ad10", "ad15", "slate"], true, true);
    let cfg = "config = \"pod=ad15; midroll=ad10; midroll_at=20\"\ndeadline = \"1s\"";
    let proxy = Proxy::start(&pair(&origin, "preroll", cfg, &ads)).unwrap();
    let vod = compare(&proxy, "/vod/hls/v0.m3u8?mf_v=v94000x108", DESKTOP).await;
    assert!(vod.contains("/ads/ad15/hls/v0/0.ts"), "{vod}");
    assert!(vod.contains("/ads/ad10/hls/v0/"), "mid-roll: {vod}");
    let skip = compare(&proxy, "/vod/hls/v0.m3u8?preroll=0", DESKTOP).await;
    assert!(!skip.contains("/ads/"), "{skip}");
    compare(&proxy, "/vod/dash/manifest.mpd", DESKTOP).await;
    compare(&proxy, "@master:/vod/cmaf/master.m3u8 v0.m3u8", DESKTOP).await;
    compare(&proxy, "@master:/live/hls/master.m3u8 v0.m3u8", DESKTOP).await;
}

fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("spawn");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaffolded_plugins_build_pass_check_and_deploy_in_both_languages() {
    let dir = tempfile::tempdir().unwrap();
    let manifold = manifold_e2e::bin("manifold");
    let new = |name: &str, lang: &str| {
        run(std::process::Command::new(&manifold).args([
            "plugin",
            "new",
            name,
            "--lang",
            lang,
            "--dir",
            dir.path().to_str().unwrap(),
        ]))
    };
    let check = |wasm: &std::path::Path| {
        let report = run(std::process::Command::new(&manifold).args([
            "plugin",
            "check",
            wasm.to_str().unwrap(),
            "--config",
            "pod=ad10",
            "--query",
            "maxres=200",
            "--deadline",
            "1s",
            "--runs",
            "2",
        ]));
        assert!(report.contains("all samples ok"), "{report}");
        assert!(
            report.contains("fill-break") && report.contains("drop-variant"),
            "{report}"
        );
    };
    // TypeScript: the pinned tools from the lock file (already in npm's cache), then the build
    new("my-ts", "ts");
    let ts = dir.path().join("my-ts");
    run(std::process::Command::new("npm")
        .args([
            "ci",
            "--prefer-offline",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(ts.join("vendor/sdk-ts")));
    run(std::process::Command::new("npm")
        .args(["run", "build"])
        .current_dir(&ts));
    check(&ts.join("plugin.wasm"));
    // Rust: the samples' lock file, so the crates are the ones already built
    new("my-rs", "rust");
    let rs = dir.path().join("my-rs");
    let target = manifold.parent().unwrap().parent().unwrap();
    run(std::process::Command::new("cargo")
        .args(["build", "--release", "--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(&rs));
    check(&target.join("wasm32-wasip2/release/my_rs.wasm"));
    // a second project of the same name is refused, the first one kept
    let again = std::process::Command::new(&manifold)
        .args(["plugin", "new", "my-ts", "--lang", "ts", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(ts.join("plugin.ts").exists());

    // the TypeScript component deploys through the admin API and personalizes at once
    let origin = Origin::start(&[]).unwrap();
    let admin_port = manifold_e2e::free_port();
    let token = "e2e-admin-token-0123456789";
    let proxy = Proxy::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"{token}\"\n\n\
         [[tenants]]\nid = \"t\"\norigin = \"http://{}\"\n[tenants.plugin]\ndeadline = \"1s\"\n",
        origin.addr
    ))
    .unwrap();
    let r = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{admin_port}/tenants/t/plugin"))
        .header("authorization", format!("Bearer {token}"))
        .body(std::fs::read(ts.join("plugin.wasm")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    let (s, all) = get(&proxy.url("/t/live/hls/master.m3u8"), DESKTOP).await;
    assert_eq!(s, 200);
    let (_, low) = get(&proxy.url("/t/live/hls/master.m3u8?maxres=108"), DESKTOP).await;
    assert_eq!(all.matches("#EXT-X-STREAM-INF").count(), 3, "{all}");
    assert_eq!(low.matches("#EXT-X-STREAM-INF").count(), 1, "{low}");
}
