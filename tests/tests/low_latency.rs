//! LL-HLS through the proxy over HTTP: blocking reloads and preload-hinted parts reach the
//! origin about once per part whatever the audience, delivery directives stay out of cache
//! keys, bad ones get a 400; a personalized session's blocking reloads are answered in the
//! session's numbering as soon as what they ask for is out, across an ad break.

use manifold_e2e::{creatives, plugin, Origin, Proxy};
use manifold_ssai::low_latency::{Blocking, Progress};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One client for every request: a client per request spends more on its set-up than the
/// proxy does on the answer.
static CLIENT: std::sync::LazyLock<reqwest::Client> =
    std::sync::LazyLock::new(reqwest::Client::new);

async fn get(url: &str) -> (u16, String) {
    let r = CLIENT
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

fn progress(text: &str) -> Progress {
    Progress::of(text.as_bytes()).unwrap_or_else(|| panic!("not a blocking playlist:\n{text}"))
}

/// What hls.js asks next: the part after the last one listed, or the next segment when the
/// edge lists no parts.
fn next_of(p: Progress) -> Blocking {
    match (p.parts, p.last_parts) {
        (0, 0) => Blocking {
            msn: p.end,
            part: None,
        },
        (n, _) => Blocking {
            msn: p.end,
            part: Some(n),
        },
    }
}

fn with(url: &str, b: Blocking) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{}", b.query())
}

#[tokio::test]
async fn blocking_reloads_and_hinted_parts_reach_the_origin_once_per_part() {
    let origin = Origin::start(&["--elapsed", "30"]).unwrap();
    let proxy = Proxy::for_origin(&origin).unwrap();
    let url = proxy.url("/t/live/ll/v0.m3u8");
    let (status, first) = get(&url).await;
    assert_eq!(status, 200, "{first}");
    let mut at = progress(&first);
    let before = origin.count("/live/ll/v0.m3u8").await.unwrap();
    let viewers = 30;
    for _ in 0..4 {
        let b = next_of(at);
        let hint = format!("/t/live/ll/v0/{}.{}.m4s", b.msn, b.part.unwrap());
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..viewers {
            let (u, h) = (with(&url, b), proxy.url(&hint));
            tasks.push(tokio::spawn(async move {
                (get(&u).await, CLIENT.get(h).send().await)
            }));
        }
        let mut parts = Vec::new();
        let mut got = None;
        for t in tasks {
            let ((status, text), part) = t.await.unwrap();
            assert_eq!(status, 200, "{text}");
            let p = progress(&text);
            assert!(p.answers(b), "{b:?} answered with {p:?}");
            got = got.max(Some(p));
            let part = part.unwrap();
            assert_eq!(part.status(), 200);
            parts.push(part.bytes().await.unwrap());
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "held {:?}",
            started.elapsed()
        );
        let from_origin = CLIENT
            .get(origin.url(&hint[2..]))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(
            parts.iter().all(|p| *p == from_origin),
            "every viewer gets the origin's part"
        );
        // one fetch for all (and ours); one in about six runs here a second proxy fetch shows
        // up (not understood yet, see docs/benchmarks.md), never one per viewer
        let fetched = origin.count(&hint[2..]).await.unwrap();
        assert!(
            fetched <= 3,
            "{fetched} fetches of {hint} for {viewers} viewers"
        );
        at = got.unwrap();
    }
    let reloads = origin.count("/live/ll/v0.m3u8").await.unwrap() - before;
    assert!(
        reloads <= 5,
        "{reloads} origin playlist requests for 4 parts x {viewers} viewers"
    );

    // delivery directives never split a segment's cache entry; bad ones are refused
    let seg = format!("/t/live/ll/v0/{}.m4s", at.end - 1);
    for q in ["", "?_HLS_msn=3", "?_HLS_part=1&_HLS_msn=4"] {
        assert_eq!(get(&proxy.url(&format!("{seg}{q}"))).await.0, 200);
    }
    assert_eq!(origin.count(&seg[2..]).await.unwrap(), 1);
    for q in ["_HLS_part=1", "_HLS_msn=x", "_HLS_msn=99999"] {
        let (status, body) = get(&format!("{url}?{q}")).await;
        assert_eq!(status, 400, "{q}: {body}");
    }
    // a delta update is its own answer
    let (_, delta) = get(&format!("{url}?_HLS_skip=YES")).await;
    assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS="), "{delta}");
    let (_, full) = get(&url).await;
    assert!(!full.contains("#EXT-X-SKIP"));
}

/// A stitched tenant filling every break from the host catalog.
fn stitched(origin: &Origin) -> String {
    format!(
        "[sessions]\nkey = \"e2e-ll-session-key-0123456789abcdef\"\n\n\
         [[tenants]]\nid = \"t\"\norigin = \"http://{}\"\n\
         [tenants.plugin]\nfile = \"{}\"\ncapabilities = [\"ads\", \"log\"]\ndeadline = \"1s\"\n",
        origin.addr,
        plugin("scte35_breaks").display(),
    ) + &creatives(&["ad10", "slate"], true, false)
}

#[tokio::test]
async fn personalized_blocking_reloads_follow_each_session_across_a_break() {
    // a 10 s break 6 s after start
    let origin = Origin::live(20, 10, 26, 600, 10).unwrap();
    let proxy = Proxy::start(&stitched(&origin)).unwrap();
    let (status, master) = get(&proxy.url("/t/live/ll/master.m3u8")).await;
    assert_eq!(status, 200, "{master}");
    let before = origin.count("/live/ll/v1.m3u8").await.unwrap();
    let mut viewers = Vec::new();
    for _ in 0..3 {
        let (_, master) = get(&proxy.url("/t/live/ll/master.m3u8")).await;
        let v1 = master
            .lines()
            .find(|l| l.contains("/v1.m3u8"))
            .unwrap()
            .to_string();
        let url = proxy.url(&v1);
        viewers.push(tokio::spawn(async move {
            follow(&url, Duration::from_secs(16)).await
        }));
    }
    let mut reloads = 0;
    for v in viewers {
        let (n, ads, slowest) = v.await.unwrap();
        reloads += n;
        assert!(ads > 0, "the session's playlist never had ads");
        // at most a segment and a part: a reload for the segment after a break (no parts at
        // an ad edge) waits for it whole
        assert!(
            slowest < Duration::from_millis(4000),
            "a reload held {slowest:?}"
        );
    }
    let from_origin = origin.count("/live/ll/v1.m3u8").await.unwrap() - before;
    // 16 s: about 32 origin parts; the three sessions reload about 50 times
    assert!(reloads > 30, "{reloads} reloads");
    assert!(
        from_origin <= 45,
        "{from_origin} origin requests for {reloads} session reloads"
    );
}

/// A player's blocking reloads for `run`: how many, how many ad segments it saw, the longest
/// hold. Each answer holds what was asked; no published segment ever changes.
async fn follow(url: &str, run: Duration) -> (usize, usize, Duration) {
    let (_, text) = get(url).await;
    let mut at = progress(&text);
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    let (mut n, mut slowest) = (0, Duration::ZERO);
    let started = Instant::now();
    while started.elapsed() < run {
        let b = next_of(at);
        let t = Instant::now();
        let (status, text) = get(&with(url, b)).await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(status, 200, "{text}");
        at = progress(&text);
        // a reload for the segment after an ad edge is served with its first part
        assert!(at.serves(b), "{b:?} answered with {at:?}:\n{text}");
        let first: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
            .unwrap()
            .parse()
            .unwrap();
        let uris = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty());
        for (msn, uri) in (first..).zip(uris) {
            if let Some(old) = seen.insert(msn, uri.to_string()) {
                assert_eq!(old, uri, "segment {msn} changed:\n{text}");
            }
        }
        n += 1;
    }
    let ads = seen.values().filter(|u| u.contains("/ads/")).count();
    (n, ads, slowest)
}
