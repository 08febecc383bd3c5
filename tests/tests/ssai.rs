//! Server-side ad insertion end to end: stitched live DASH (periods) and HLS decode through the
//! proxy with the durations the manifests declare, and published periods never change.

use manifold_e2e::dash_player::{self, PeriodPlan};
use manifold_e2e::{creatives, plugin, tool, Origin, Proxy};
use std::path::Path;
use std::time::Duration;

fn tenant(origin: &Origin, plugin_name: &str, config: &str) -> String {
    format!(
        "[[tenants]]\nid = \"t\"\norigin = \"http://{}\"\n[tenants.plugin]\nfile = \"{}\"\nconfig = \"{config}\"\nfail = \"closed\"\ndeadline = \"1s\"\n{}",
        origin.addr,
        plugin(plugin_name).display(),
        creatives(&["ad10", "ad15", "slate"], true, true)
    )
}

/// Segments 0..20 are live (2 s each, a 40 s time-shift window, so a slow run does not see
/// the break leave it); a 10 s break starts at 26 s (segment 13).
fn live_origin() -> Origin {
    Origin::live(40, 20, 26, 60, 10).unwrap()
}

/// The MPD through the proxy: the first request starts a session and redirects into it.
async fn mpd_at(url: &str) -> (String, dash_mpd_core::MPD) {
    let r = reqwest::get(url).await.expect("MPD request");
    assert_eq!(r.status(), 200);
    let final_url = r.url().to_string();
    let text = r.text().await.unwrap();
    let mpd = dash_mpd_core::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (final_url, mpd)
}

/// What ffmpeg decodes from a media file or playlist: the duration of each stream (summed
/// frame durations, so timestamp jumps at discontinuities do not count) and the first
/// timestamp (s). Fails on any decoder error.
async fn decode(input: &str, extra: &[&str]) -> (Vec<f64>, f64) {
    let ffmpeg = tool("ffmpeg", "ffmpeg");
    let out = tokio::process::Command::new(&ffmpeg)
        .args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(extra)
        .args(["-i", input, "-map", "0", "-f", "framecrc", "-"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("ffmpeg in time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed on {input}: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "ffmpeg errors on {input}: {stderr}"
    );
    // `#tb 0: 1/90000` headers, then `stream, dts, pts, duration, size, crc` per frame
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut timebase: Vec<f64> = Vec::new();
    let mut total: Vec<f64> = Vec::new();
    for line in stdout.lines() {
        if let Some(tb) = line.strip_prefix("#tb ") {
            let (_, frac) = tb.split_once(": ").unwrap();
            let (n, d) = frac.split_once('/').unwrap();
            timebase.push(n.trim().parse::<f64>().unwrap() / d.trim().parse::<f64>().unwrap());
            total.push(0.0);
        } else if !line.starts_with('#') {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if let (Ok(i), Ok(d)) = (f[0].parse::<usize>(), f[3].parse::<f64>()) {
                total[i] += d * timebase[i];
            }
        }
    }
    let ffprobe = tool("ffprobe", "ffmpeg");
    let probe = tokio::process::Command::new(ffprobe)
        .args(["-v", "error"])
        .args(extra)
        .args([
            "-show_entries",
            "format=start_time",
            "-of",
            "csv=p=0",
            input,
        ])
        .output()
        .await
        .unwrap();
    let start = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    (total, start)
}

/// Fetches a period's track through the proxy into one file (init + fragments).
async fn fetch_track(init: &Option<String>, segments: &[(String, f64, f64)], to: &Path) {
    let mut body = Vec::new();
    for url in init.iter().chain(segments.iter().map(|(u, _, _)| u)) {
        let r = reqwest::get(url).await.expect("segment");
        assert_eq!(r.status(), 200, "{url}");
        body.extend_from_slice(&r.bytes().await.unwrap());
    }
    std::fs::write(to, body).unwrap();
}

/// Every period with media decodes, its segments carry the media time the MPD says they do,
/// and consecutive periods leave no gap.
async fn play_periods(periods: &[PeriodPlan]) {
    let dir = tempfile::tempdir().unwrap();
    let mut reach: Option<f64> = None;
    for p in periods {
        for t in p.tracks.iter().filter(|t| !t.segments.is_empty()) {
            let file = dir
                .path()
                .join(format!("{}-{}.mp4", p.id.replace('~', "_"), t.kind));
            fetch_track(&t.init, &t.segments, &file).await;
            let (decoded, first_pts) = decode(file.to_str().unwrap(), &[]).await;
            let decoded = decoded[0];
            let listed: f64 = t.segments.iter().map(|s| s.2).sum();
            // video may start a couple of frames late (its composition offset)
            let tol = if t.kind == "audio" { 0.1 } else { 0.25 };
            assert!(
                (decoded - listed).abs() < 0.15,
                "period {} {}: decoded {decoded:.3} s of {listed:.3} s listed",
                p.id,
                t.kind
            );
            assert!(
                (first_pts - t.segments[0].1).abs() < tol,
                "period {} {}: first timestamp {first_pts:.3} s, the MPD says {:.3} s",
                p.id,
                t.kind,
                t.segments[0].1
            );
            // where this track's media reaches on the MPD timeline
            let last = t.segments.last().unwrap();
            let end = p.start + (last.1 + last.2 - t.offset);
            if t.kind == "video" {
                reach = Some(end);
            }
        }
        if let (Some(r), Some(e)) = (reach, p.end) {
            let next_has_media = periods
                .iter()
                .find(|q| q.start >= e - 1e-3)
                .is_some_and(|q| q.tracks.iter().any(|t| !t.segments.is_empty()));
            if next_has_media {
                assert!(
                    r >= e - 0.1,
                    "gap before {e:.3} s: period {} reaches {r:.3} s",
                    p.id
                );
            }
        }
    }
}

fn pick(a: &dash_mpd_core::AdaptationSet) -> Option<&dash_mpd_core::Representation> {
    a.representations
        .iter()
        .find(|r| r.id.as_deref() == Some("v1"))
        .or(a.representations.first())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_dash_breaks_become_periods_that_play_and_stay_put() {
    let origin = live_origin();
    let proxy = Proxy::start(&tenant(&origin, "scte35_breaks", "pod=ad10")).unwrap();
    for path in ["/t/live/dash/manifest.mpd", "/t/live/dash/timeline.mpd"] {
        let (url, mpd) = mpd_at(&proxy.url(path)).await;
        assert!(url.contains("/t/~"), "redirected into a session: {url}");
        let got: Vec<(String, f64)> = mpd
            .periods
            .iter()
            .map(|p| (p.id.clone().unwrap(), p.start.unwrap().as_secs_f64()))
            .collect();
        // the content before the break may have left the window already
        let want =
            [("0", 0.0), ("1000~ad0", 26.0), ("0~1000", 36.0)].map(|(i, s)| (i.to_string(), s));
        assert!(
            got.len() >= 2 && got[..] == want[3 - got.len()..],
            "{path}: {got:?}"
        );
        assert_eq!(mpd.locations[0].url, url[url.find("/t/~").unwrap()..]);
        let ad = mpd
            .periods
            .iter()
            .find(|p| p.id.as_deref() == Some("1000~ad0"))
            .unwrap();
        assert!(
            ad.BaseURL[0].base.ends_with("/ads/ad10/dash/"),
            "{:?}",
            ad.BaseURL
        );
        assert!(
            ad.BaseURL[0].base.starts_with("/t/~"),
            "ads through the proxy in the session"
        );
        assert_eq!(
            ad.adaptations.len(),
            mpd.periods[0].adaptations.len(),
            "same shape"
        );
        let base = url::Url::parse(&url).unwrap();
        let periods = dash_player::plan(&mpd, &base, pick).unwrap();
        let ad_plan = periods.iter().find(|p| p.id == "1000~ad0").unwrap();
        assert!(
            ad_plan.tracks.iter().all(|t| t.segments.len() == 5),
            "the 10 s ad in 2 s segments: {:?}",
            ad_plan.tracks
        );
        play_periods(&periods).await;

        // a later reload: the same periods with the same timing
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (_, again) = mpd_at(&url).await;
        for p in &again.periods {
            let before = mpd.periods.iter().find(|q| q.id == p.id);
            let Some(before) = before else { continue };
            assert_eq!(before.start, p.start, "period {:?} moved", p.id);
            let pto = |p: &dash_mpd_core::Period| {
                p.adaptations
                    .iter()
                    .map(|a| {
                        a.SegmentTemplate
                            .as_ref()
                            .map(|t| (t.presentationTimeOffset, t.startNumber))
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(pto(before), pto(p), "period {:?} re-based", p.id);
        }
    }
    let c = origin.counters("/ads/ad10/dash/").await.unwrap();
    assert!(
        c["by_path"].as_object().is_some_and(|m| m.len() >= 10),
        "ad segments came from the origin through the proxy: {c}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vod_dash_preroll_shifts_the_content_and_everything_decodes() {
    let origin = Origin::start(&["--vod-duration", "20"]).unwrap();
    let proxy = Proxy::start(&tenant(&origin, "preroll", "pod=ad15")).unwrap();
    let (url, mpd) = mpd_at(&proxy.url("/t/vod/dash/manifest.mpd")).await;
    let got: Vec<(String, f64)> = mpd
        .periods
        .iter()
        .map(|p| (p.id.clone().unwrap(), p.start.unwrap().as_secs_f64()))
        .collect();
    assert_eq!(
        got,
        [
            ("~preroll~ad0".to_string(), 0.0),
            ("0~~preroll".to_string(), 15.0)
        ]
    );
    assert_eq!(mpd.mediaPresentationDuration.unwrap().as_secs_f64(), 35.0);
    let periods = dash_player::plan(&mpd, &url::Url::parse(&url).unwrap(), pick).unwrap();
    play_periods(&periods).await;
    let content: f64 = periods[1].tracks[0].segments.iter().map(|s| s.2).sum();
    assert!(
        (content - 20.0).abs() < 0.1,
        "all of the content plays: {content}"
    );
}

/// A run of segments between discontinuities: its init segment and (duration, URL)s.
type Run = (Option<String>, Vec<(f64, String)>);

/// The stitched live HLS window decodes to the duration its EXTINFs declare: no segment is
/// missing, short or doubled. Each run between discontinuities is decoded as a finished
/// playlist of its own (ffmpeg does not re-initialize fMP4 on a discontinuity as players do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_hls_windows_decode_to_their_declared_duration() {
    let origin = live_origin();
    let proxy = Proxy::start(&tenant(&origin, "scte35_breaks", "pod=ad10")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (master, pick) in [
        ("/t/live/hls/master.m3u8", "v1.m3u8"),
        ("/t/live/cmaf/master.m3u8", "v1.m3u8"),
        ("/t/live/cmaf/master.m3u8", "a0.m3u8"),
    ] {
        let text = reqwest::get(proxy.url(master))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let uri = text
            .split(['\n', '"'])
            .find(|l| l.contains(pick))
            .unwrap_or_else(|| panic!("{pick} in {text}"));
        let media_url = proxy.url(uri);
        let media = reqwest::get(&media_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(media.contains("/ads/ad10/"), "{media}");
        let base = url::Url::parse(&media_url).unwrap();
        let mut runs: Vec<Run> = vec![(None, Vec::new())];
        let mut map = None;
        let mut extinf = None;
        for line in media.lines() {
            if let Some(d) = line.strip_prefix("#EXTINF:") {
                extinf = Some(d.trim_end_matches(',').parse::<f64>().unwrap());
            } else if line == "#EXT-X-DISCONTINUITY" {
                runs.push((None, Vec::new()));
            } else if let Some(u) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
                map = Some(base.join(u.trim_end_matches('"')).unwrap().to_string());
            } else if !line.starts_with('#') && !line.is_empty() {
                let run = runs.last_mut().unwrap();
                run.0 = map.clone();
                run.1
                    .push((extinf.take().unwrap(), base.join(line).unwrap().to_string()));
            }
        }
        let runs: Vec<_> = runs.into_iter().filter(|r| !r.1.is_empty()).collect();
        assert!(runs.len() >= 2, "content and ads: {media}");
        let mut declared = 0.0;
        let mut decoded = Vec::new();
        for (k, (init, segs)) in runs.iter().enumerate() {
            let mut pl = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n");
            if let Some(i) = init {
                pl += &format!("#EXT-X-MAP:URI=\"{i}\"\n");
            }
            for (d, u) in segs {
                pl += &format!("#EXTINF:{d},\n{u}\n");
                declared += d;
            }
            pl += "#EXT-X-ENDLIST\n";
            let file = dir
                .path()
                .join(format!("{}-{k}.m3u8", pick.replace('.', "_")));
            std::fs::write(&file, pl).unwrap();
            let (streams, _) = decode(
                file.to_str().unwrap(),
                &[
                    "-protocol_whitelist",
                    "file,http,tcp",
                    "-allowed_extensions",
                    "ALL",
                ],
            )
            .await;
            decoded.push(streams);
        }
        let streams = decoded[0].len();
        for s in 0..streams {
            let total: f64 = decoded.iter().map(|d| d[s]).sum();
            assert!(
                (total - declared).abs() < 0.25,
                "{master} {pick} stream {s}: decoded {total:.3} s, the playlist declares {declared:.3} s"
            );
        }
    }
}

/// Bad input from the origin: a malformed manifest fails open (the origin's bytes, with the
/// reason in a header); a manifest over the tenant's size limit is refused with 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_origin_manifests() {
    let origin = live_origin();
    let toml = tenant(&origin, "scte35_breaks", "pod=ad10")
        .replace("fail = \"closed\"", "fail = \"open\"")
        + &format!(
            "[[tenants]]\nid = \"small\"\norigin = \"http://{}\"\nmax_manifest_size = \"1KiB\"\n",
            origin.addr
        );
    let proxy = Proxy::start(&toml).unwrap();
    for path in ["/live/hls/v1.m3u8", "/live/dash/manifest.mpd"] {
        origin
            .set_faults(serde_json::json!({"malformed_manifest": true, "path_prefix": path}))
            .await
            .unwrap();
        let r = reqwest::get(proxy.url(&format!("/t{path}"))).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let why = r
            .headers()
            .get("manifold-plugin")
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(why, "skipped; reason=unparsable-manifest; served=origin");
        let body = r.text().await.unwrap();
        let direct = reqwest::get(origin.url(path))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, direct, "{path}: the origin's manifest, unchanged");
        origin.clear_faults().await.unwrap();
    }
    let r = reqwest::get(proxy.url("/small/live/hls/v1.m3u8"))
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let reason = r.text().await.unwrap();
    assert!(reason.contains("exceeds the 1024-byte limit"), "{reason}");
}

/// A plugin that starts failing mid-session (here: a config reload swaps in one that traps)
/// must not undo what the viewer was already shown: with `fail = "open"` the session's
/// recorded breaks are replayed from its ledger, so the ads, sequence numbers and
/// discontinuities stay; only new decisions stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_plugin_mid_session_replays_the_recorded_breaks() {
    let origin = live_origin();
    let open = |plugin_name: &str, config: &str| {
        tenant(&origin, plugin_name, config).replace("fail = \"closed\"", "fail = \"open\"")
    };
    let proxy = Proxy::start(&open("scte35_breaks", "pod=ad10")).unwrap();
    let r = reqwest::get(proxy.url("/t/live/hls/v1.m3u8"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let session_url = r.url().to_string();
    assert!(session_url.contains("/~"), "into a session: {session_url}");
    let before = r.text().await.unwrap();
    let ads = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("/ads/"))
            .map(str::to_string)
            .collect()
    };
    let seq = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no media sequence in {text}"))
    };
    let ads_before = ads(&before);
    assert!(!ads_before.is_empty(), "the break is filled: {before}");

    proxy.reload(&open("misbehave", "mode=trap")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (header, after) = loop {
        let r = reqwest::get(&session_url).await.unwrap();
        assert_eq!(r.status(), 200);
        let h = r.headers()["manifold-plugin"].to_str().unwrap().to_string();
        let text = r.text().await.unwrap();
        if h.starts_with("failed") {
            break (h, text);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reload not applied: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(header, "failed; reason=trap; served=session");
    assert_eq!(ads(&after), ads_before, "the same ads: {after}");
    assert!(seq(&after) >= seq(&before), "{before}\n---\n{after}");
    assert!(after.starts_with("#EXTM3U"), "{after}");
    // the same for a rendition the session had not asked for yet: its breaks come from the
    // ledger too
    let other = session_url.replace("/live/hls/v1.m3u8", "/live/hls/v2.m3u8");
    let r = reqwest::get(&other).await.unwrap();
    assert_eq!(
        r.headers()["manifold-plugin"].to_str().unwrap(),
        "failed; reason=trap; served=session"
    );
    let v2 = r.text().await.unwrap();
    assert_eq!(ads(&v2).len(), ads_before.len(), "{v2}");
}
