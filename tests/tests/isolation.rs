//! Isolation under attack: adversarial plugins run beside a healthy tenant. The proxy stays up
//! and within its memory, every request of the healthy tenant is personalized, and each
//! attacker's requests fail with their own reason.

use manifold_e2e::plugin_tenant as tenant;
use manifold_e2e::{Options, Origin, Proxy};
use std::time::Duration;

async fn get(url: &str) -> (u16, String, String) {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let p = r
        .headers()
        .get("manifold-plugin")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<none>")
        .to_string();
    (status, p, r.text().await.unwrap_or_default())
}

/// A `/proc/<pid>/status` field in KiB (`VmHWM`: peak resident memory).
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field")
}

/// A `/proc/.../stat` line: name, CPU seconds (user + system), nice value.
fn stat(path: &std::path::Path) -> Option<(String, f64, i64)> {
    let stat = std::fs::read_to_string(path).ok()?; // a thread may have exited meanwhile
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let f: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // fields 14 and 15 (utime, stime, in USER_HZ = 100 ticks/s) and 19 (nice)
    let nice = f.get(16)?.parse().ok()?;
    Some((
        stat[open + 1..close].to_string(),
        (ticks(11) + ticks(12)) / 100.0,
        nice,
    ))
}

/// The proxy's threads, by `stat`.
fn threads(pid: u32) -> Vec<(String, f64, i64)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("proc tasks")
        .filter_map(|t| stat(&t.ok()?.path().join("stat")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacking_plugins_cost_only_their_own_requests() {
    // One scenario in order: each attack, then what it cost the other tenants.
    let origin = Origin::start(&[]).unwrap();
    let mut toml = tenant(
        "healthy",
        &origin,
        "variant_filter",
        "config = \"unknown=180\"\ndeadline = \"2s\"",
    );
    // 25 tags aliasing one 4 MiB buffer: 100 MB per call for a host that lifts it whole
    toml += &tenant(
        "bomb",
        &origin,
        "misbehave",
        "config = \"mode=alias\"\ndeadline = \"2s\"",
    );
    // holds the longest deadline there is, and keeps many requests in flight
    toml += &tenant(
        "spinner",
        &origin,
        "misbehave",
        "config = \"mode=loop\"\ndeadline = \"5s\"",
    );
    // asks decide-ads for made-up breaks, forever
    toml += &tenant(
        "decider",
        &origin,
        "misbehave",
        "config = \"mode=decide\"\ndeadline = \"2s\"\ncapabilities = [\"ads\"]",
    );
    toml += "[[tenants.creatives]]\nname = \"ad10\"\nduration = 10.0\nhls = \"/ads/ad10/hls/master.m3u8\"\n";
    // 16 instances: each of the 4 tenants gets a share of 4
    let opts = Options {
        max_instances: 16,
        ..Options::default()
    };
    let proxy = Proxy::start_with(&toml, &opts).unwrap();
    let master = |t: &str, n: usize| proxy.url(&format!("/{t}/live/hls/master.m3u8?n={n}"));
    for n in 0..3 {
        let (s, p, _) = get(&master("healthy", n)).await;
        assert_eq!(s, 200);
        assert!(p.starts_with("ok"), "{p}");
    }
    let baseline = status_kib(proxy.pid(), "VmHWM");

    let mut attackers = Vec::new();
    for i in 0..40 {
        let url = master("spinner", i);
        attackers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..2 {
                out.push(("spinner", get(&url).await));
            }
            out
        }));
    }
    for i in 0..8 {
        let url = master("bomb", i);
        attackers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..4 {
                out.push(("bomb", get(&url).await));
            }
            out
        }));
    }
    for i in 0..4 {
        let url = master("decider", i);
        attackers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..5 {
                out.push(("decider", get(&url).await));
            }
            out
        }));
    }
    // the healthy tenant's viewers, while all that runs: every request personalized
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 0..10 {
        let tasks: Vec<_> = (0..3)
            .map(|k| {
                let url = master("healthy", 100 + round * 3 + k);
                tokio::spawn(async move { get(&url).await })
            })
            .collect();
        for t in tasks {
            let (s, p, body) = t.await.unwrap();
            assert_eq!(s, 200, "{body}");
            assert!(p.starts_with("ok"), "healthy tenant under attack: {p}");
            assert_eq!(body.matches("#EXT-X-STREAM-INF").count(), 2, "{body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut reasons = std::collections::BTreeMap::<(&str, String), usize>::new();
    for a in attackers {
        for (t, (s, p, _)) in a.await.unwrap() {
            assert_eq!(s, 200, "{t}: fail open serves the viewer");
            let reason = p
                .split("; ")
                .find_map(|f| f.strip_prefix("reason="))
                .unwrap_or(&p)
                .to_string();
            *reasons.entry((t, reason)).or_default() += 1;
        }
    }
    eprintln!("attackers' outcomes: {reasons:?}");
    for (t, reason) in reasons.keys() {
        let expected: &[&str] = match *t {
            "spinner" => &["deadline", "busy"],
            "bomb" => &["invalid-plan"],
            _ => &["trap"],
        };
        assert!(expected.contains(&reason.as_str()), "{t}: {reason}");
    }
    // the spinner saturated its own share
    assert!(
        reasons.contains_key(&("spinner", "busy".to_string())),
        "{reasons:?}"
    );
    let peak = status_kib(proxy.pid(), "VmHWM");
    let grown = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "peak resident memory: {} MiB, {grown} MiB over the baseline",
        peak / 1024
    );
    assert!(
        grown < 100,
        "peak memory grew {grown} MiB under the plan bomb"
    );
    let (s, p, _) = get(&master("healthy", 999)).await;
    assert_eq!(s, 200);
    assert!(p.starts_with("ok"), "{p}");

    // where the spinning ran: once the spinner had run long, on the demoted plugin threads,
    // at the lowest priority, not on the proxy's workers or the healthy tenant's threads
    let threads = threads(proxy.pid());
    let nice_of = |name: &str| threads.iter().find(|t| t.0 == name).map(|t| t.2);
    let cpu_of = |name: &str| -> f64 { threads.iter().filter(|t| t.0 == name).map(|t| t.1).sum() };
    eprintln!("proxy threads: {threads:?}");
    let main = stat(std::path::Path::new(&format!("/proc/{}/stat", proxy.pid())))
        .expect("proxy stat")
        .2;
    assert_eq!(nice_of("plugin"), Some(main), "{threads:?}");
    assert_eq!(
        nice_of("plugin-demoted"),
        Some((main + 19).min(19)),
        "{threads:?}"
    );
    assert!(cpu_of("plugin-demoted") >= 1.0, "{threads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_from_the_environment_are_not_used() {
    let origin = Origin::start(&[]).unwrap();
    // a proxy that refuses every connection: a client that used it would fail
    let env = [
        ("HTTP_PROXY", "http://127.0.0.1:9"),
        ("HTTPS_PROXY", "http://127.0.0.1:9"),
        ("ALL_PROXY", "http://127.0.0.1:9"),
        ("http_proxy", "http://127.0.0.1:9"),
    ];
    let opts = Options {
        env: &env,
        ..Options::default()
    };
    let toml = format!(
        "[[tenants]]\nid = \"t\"\norigin = \"http://{}\"\n",
        origin.addr
    );
    let proxy = Proxy::start_with(&toml, &opts).unwrap();
    let (s, _, body) = get(&proxy.url("/t/live/hls/master.m3u8")).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("#EXT-X-STREAM-INF"), "{body}");
}

/// `Cache-Status` of a GET.
async fn cache_status(url: &str) -> String {
    let r = reqwest::get(url).await.expect("request");
    r.headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_manifest_urls_stays_in_its_tenants_share() {
    let origin = Origin::start(&[]).unwrap();
    // 32 MiB of manifests: 16 MiB per tenant
    let mut toml = "[cache]\nmanifest_memory = \"32MiB\"\n\n".to_string();
    for t in ["flood", "other"] {
        toml += &format!(
            "[[tenants]]\nid = \"{t}\"\norigin = \"http://{}\"\n[tenants.cache]\nmaster_ttl = \"10m\"\nignore_origin_cache_control = true\n",
            origin.addr
        );
    }
    let proxy = Proxy::start(&toml).unwrap();
    let other = proxy.url("/other/live/hls/master.m3u8");
    assert!(cache_status(&other).await.contains("fwd=uri-miss"));
    assert!(cache_status(&other).await.contains("hit"));
    let baseline = status_kib(proxy.pid(), "VmRSS");
    // 20k distinct VOD playlists (each cached for its VOD TTL) from 8 clients at once
    let tasks: Vec<_> = (0..8)
        .map(|k| {
            let base = proxy.url("/flood/vod/hls/v2.m3u8");
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in 0..2500 {
                    let r = client
                        .get(format!("{base}?flood={k}-{i}"))
                        .send()
                        .await
                        .expect("request");
                    assert_eq!(r.status().as_u16(), 200);
                    r.bytes().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let grown = status_kib(proxy.pid(), "VmRSS").saturating_sub(baseline) / 1024;
    eprintln!("resident memory grew {grown} MiB over 20k distinct manifests");
    assert!(grown < 96, "{grown} MiB for a 16 MiB share");
    // the other tenant kept its cached master
    let cs = cache_status(&other).await;
    assert!(cs.contains("hit"), "{cs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_minting_sessions_is_held_to_its_rate() {
    let origin = Origin::start(&[]).unwrap();
    let toml = tenant(
        "t",
        &origin,
        "variant_filter",
        "config = \"unknown=180\"\ndeadline = \"2s\"\n\
         [tenants.sessions]\nper_client_per_minute = 60\nclient_burst = 100",
    );
    let proxy = Proxy::start(&toml).unwrap();
    let master = proxy.url("/t/live/hls/master.m3u8");
    let baseline = status_kib(proxy.pid(), "VmRSS");
    let started = std::time::Instant::now();
    // 20k session starts from one address, 8 at a time
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = master.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut ok, mut refused) = (0u32, 0u32);
                for _ in 0..2500 {
                    let r = client.get(&url).send().await.expect("request");
                    match r.status().as_u16() {
                        200 => ok += 1,
                        429 => {
                            assert!(r.headers().contains_key("retry-after"));
                            refused += 1
                        }
                        s => panic!("status {s}"),
                    }
                    r.bytes().await.unwrap();
                }
                (ok, refused)
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (o, r) = t.await.unwrap();
        ok += o;
        refused += r;
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let allowed = 100.0 + 60.0 * minutes + 2.0;
    eprintln!(
        "{ok} sessions started, {refused} refused in {:.0} s",
        minutes * 60.0
    );
    assert!(
        f64::from(ok) <= allowed,
        "{ok} started, at most {allowed:.0}"
    );
    assert_eq!(ok + refused, 20_000);
    let grown = status_kib(proxy.pid(), "VmRSS").saturating_sub(baseline) / 1024;
    eprintln!("resident memory grew {grown} MiB");
    assert!(grown < 64, "{grown} MiB");
    // a viewer on another address starts a session as usual
    let other = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let r = other.get(&master).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let p = r
        .headers()
        .get("manifold-plugin")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(p.starts_with("ok"), "{p}");
}
