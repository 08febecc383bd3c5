use super::*;
use crate::config::CreativeConfig;
use manifold_origin::{Origin, OriginOptions};
use std::net::SocketAddr;
use std::time::Instant;

fn catalog() -> Arc<AdCatalog> {
    // from TOML, as in a tenant's config
    let c = |name: &str, duration: f64, slate: bool| -> CreativeConfig {
        toml::from_str(&format!(
            "name = \"{name}\"\nduration = {duration:?}\nslate = {slate}\n\
             hls = \"/ads/{name}/hls/master.m3u8\"\nhls_fmp4 = \"/ads/{name}/cmaf/master.m3u8\"\n"
        ))
        .unwrap()
    };
    Arc::new(AdCatalog::new(
        "t",
        vec![
            c("ad10", 10.0, false),
            c("ad15", 15.0, false),
            c("ad30", 30.0, false),
            c("slate", 10.0, true),
        ],
    ))
}

fn brk(id: &str, duration: f64) -> AdBreak {
    AdBreak {
        id: id.into(),
        start: 0.0,
        duration,
        first_segment: None,
        scte35: None,
    }
}

fn viewer() -> Viewer {
    Viewer {
        tenant: "t".into(),
        session_id: Some("s1".into()),
        query: vec![("app".into(), "my app/1".into())],
        headers: vec![],
        user_agent: Some("TestPlayer/1".into()),
        device: DeviceClass::Tv,
        client_ip: Some("192.0.2.7".into()),
        country: Some("NL".into()),
        cmcd: vec![],
    }
}

fn cfg(url: String, timeout_ms: u64, budget_ms: u64) -> AdServerConfig {
    AdServerConfig {
        url,
        timeout: Duration::from_millis(timeout_ms),
        budget: Duration::from_millis(budget_ms),
        prefetch_window: Duration::from_secs(10),
    }
}

/// The origin simulator (and its VAST server) on a loopback port.
async fn simulator() -> (Arc<Origin>, SocketAddr) {
    let media = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/media"));
    let origin = Arc::new(Origin::new(&OriginOptions::new(media)).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(manifold_origin::serve(listener, origin.clone()));
    (origin, addr)
}

async fn decide(addr: SocketAddr, query: &str, dur: f64) -> Result<Vec<DecidedAd>, VastError> {
    decide_with(addr, query, dur, 500, 1500).await
}

async fn decide_with(
    addr: SocketAddr,
    query: &str,
    dur: f64,
    timeout_ms: u64,
    budget_ms: u64,
) -> Result<Vec<DecidedAd>, VastError> {
    let url = format!("http://{addr}/vast?dur=[DURATION]&sid=[SESSION_ID]&{query}");
    let d = VastDecider::new(cfg(url, timeout_ms, budget_ms), catalog()).unwrap();
    d.decide_pod("t", Some("s1"), &brk("b7", dur), &viewer())
        .await
}

fn creatives(ads: &[DecidedAd]) -> Vec<&str> {
    ads.iter().map(|a| a.creative.as_str()).collect()
}

#[test]
fn url_macros_are_filled_and_encoded() {
    let d = VastDecider::new(
        cfg(
            "https://ads.example/v?s=[SESSION_ID]&b=[BREAK_ID]&d=[DURATION]&c=[COUNTRY]\
             &dev=[DEVICE]&app=[PARAM:app]&none=[PARAM:nope]&cb=[CACHEBUSTER]&x=[OTHER]"
                .into(),
            500,
            1500,
        ),
        catalog(),
    )
    .unwrap();
    let u = d.request_url(Some("s 1"), &brk("b/7&x", 29.97), &viewer());
    let (head, cb) = u.split_once("&cb=").unwrap();
    assert_eq!(
        head,
        "https://ads.example/v?s=s%201&b=b%2F7%26x&d=29.97&c=NL&dev=tv&app=my%20app%2F1&none="
    );
    let (digits, rest) = cb.split_at(8);
    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{u}");
    assert_eq!(rest, "&x=[OTHER]", "unknown macros are left alone");
    let u = d.request_url(None, &brk("b", 30.0), &viewer());
    assert!(u.contains("?s=&b=b&d=30&"), "{u}");
    // unbalanced brackets survive
    assert_eq!(expand("a[b[c", |_| None), "a[b[c");
    assert_eq!(expand("[X]]", |_| Some("1".into())), "1]");
}

#[test]
fn parses_namespaces_cdata_entities_and_whitespace() {
    let xml = "\u{feff}<?xml version=\"1.0\"?>\n<!-- ad server -->\n\
        <v:VAST xmlns:v=\"http://www.iab.com/VAST\" version=\"4.1\">\n\
          <v:Ad id=\" a&amp;1 \" sequence=\" 2 \"><v:InLine>\n\
            <v:Impression><![CDATA[ http://t/imp?a=1&b=2 ]]></v:Impression>\n\
            <v:Impression>\n  http://t/imp2?a=1&amp;b=&#50;\n</v:Impression>\n\
            <v:Impression>   </v:Impression>\n\
            <v:Creatives><v:Creative><v:CompanionAds/></v:Creative><v:Creative><v:Linear>\n\
              <v:Duration> 00:01:02.500 </v:Duration>\n\
              <v:TrackingEvents>\n\
                <v:Tracking event=\"start\">http://t/start</v:Tracking>\n\
                <v:Tracking event=\"pause\">http://t/pause</v:Tracking>\n\
                <v:Tracking event=\"complete\"><![CDATA[http://t/c]]></v:Tracking>\n\
              </v:TrackingEvents>\n\
              <v:MediaFiles><v:MediaFile type=\"video/mp4\">\n<![CDATA[http://cdn/x.mp4]]>\n</v:MediaFile>\n\
              <v:MediaFile type='application/x-mpegURL'>http://cdn/ads/ad15/hls/master.m3u8</v:MediaFile></v:MediaFiles>\n\
            </v:Linear></v:Creative></v:Creatives>\n\
          </v:InLine></v:Ad>\n\
          <v:Ad><v:Wrapper followAdditionalWrappers=\"false\" allowMultipleAds=\"false\">\
            <v:VASTAdTagURI>\n http://next/vast \n</v:VASTAdTagURI></v:Wrapper></v:Ad>\n\
          <v:Ad id=\"empty-wrapper\"><v:Wrapper><v:VASTAdTagURI/></v:Wrapper></v:Ad>\n\
          <v:Ad id=\"nothing\"/>\n\
        </v:VAST>\n<trailing>junk";
    let ads = parse(xml).unwrap();
    assert_eq!(ads.len(), 2);
    let a = &ads[0];
    assert_eq!((a.id.as_str(), a.sequence), ("a&1", Some(2)));
    assert_eq!(
        a.impressions,
        ["http://t/imp?a=1&b=2", "http://t/imp2?a=1&b=2"]
    );
    assert_eq!(a.tracking["start"], ["http://t/start"]);
    assert_eq!(a.tracking["complete"], ["http://t/c"]);
    assert!(!a.tracking.contains_key("pause"));
    assert_eq!(
        a.kind,
        AdKind::InLine {
            media: vec![
                ("http://cdn/x.mp4".into(), "video/mp4".into()),
                (
                    "http://cdn/ads/ad15/hls/master.m3u8".into(),
                    "application/x-mpegURL".into()
                )
            ],
            duration: Some(62.5),
        }
    );
    assert_eq!(
        ads[1].kind,
        AdKind::Wrapper {
            tag_uri: "http://next/vast".into(),
            follow_wrappers: false,
            allow_multiple: Some(false),
        }
    );
    assert_eq!(ads[1].sequence, None);
}

#[test]
fn bad_documents_are_errors_not_panics() {
    for bad in [
        "",
        "   ",
        "not xml at all",
        "<VAST version=\"4.0\"><Ad><InLine>",
        "<VAST></Ad></VAST>",
        "<html><body>502</body></html>",
        "<VAST><Ad id=\"x></VAST>",
        "\u{0}\u{1}<<<>>>",
    ] {
        assert!(
            matches!(parse(bad), Err(VastError::Malformed(_))),
            "{bad:?}: {:?}",
            parse(bad)
        );
    }
    assert_eq!(parse("<VAST version=\"4.0\"/>"), Ok(vec![]));
    // deep nesting is refused, not recursed into
    let deep = "<VAST>".to_string() + &"<a>".repeat(10_000);
    assert!(parse(&deep).is_err());
    assert_eq!(clock("00:00:15"), Some(15.0));
    assert_eq!(clock("1:2"), None);
    assert_eq!(clock("00:00:-1"), None);
    assert_eq!(clock("00:00:NaN"), None);
}

proptest::proptest! {
    #[test]
    fn never_panics_on_any_input(s in "\\PC{0,400}") {
        let _ = parse(&s);
        let _ = parse(&format!("<VAST><Ad><InLine>{s}</InLine></Ad></VAST>"));
        let _ = expand(&s, |n| Some(n.to_string()));
    }
}

#[test]
fn pods_play_in_sequence_with_standalone_ads_as_backups() {
    let ad = |id: &str, seq: Option<u32>| VastAd {
        id: id.into(),
        sequence: seq,
        ..VastAd::default()
    };
    let (plays, backups) = play_order(vec![
        ad("s1", None),
        ad("p3", Some(3)),
        ad("p1", Some(1)),
        ad("p2", Some(2)),
    ]);
    let ids = |v: &[VastAd]| v.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&plays), ["p1", "p2", "p3"]);
    assert_eq!(ids(&backups), ["s1"]);
    let (plays, backups) = play_order(vec![ad("a", None), ad("b", None)]);
    assert_eq!(ids(&plays), ["a", "b"]);
    assert!(backups.is_empty());
}

#[tokio::test]
async fn inline_pod_maps_creatives_in_order_with_beacons() {
    let (_, addr) = simulator().await;
    let ads = decide(addr, "", 55.0).await.unwrap();
    assert_eq!(creatives(&ads), ["ad30", "ad15", "ad10"]);
    assert_eq!(ads[1].id, "b7-1-ad15.2");
    assert_eq!(ads[1].duration, 15.0);
    let t = &ads[1].tracking;
    assert_eq!(
        t["impression"],
        [format!(
            "http://{addr}/beacon/ad15.2/impression?sid=s1&cb=[CACHEBUSTER]"
        )]
    );
    for e in EVENTS {
        assert_eq!(
            t[e],
            [format!(
                "http://{addr}/beacon/ad15.2/{e}?sid=s1&cb=[CACHEBUSTER]"
            )]
        );
    }
    // VAST 2 (no pod) and 3 give the same ads
    for v in ["version=2", "version=3"] {
        let ads = decide(addr, v, 25.0).await.unwrap();
        assert_eq!(creatives(&ads), ["ad15", "ad10"], "{v}");
    }
}

#[tokio::test]
async fn wrappers_merge_their_beacons_into_the_ads() {
    let (origin, addr) = simulator().await;
    let ads = decide(addr, "mode=wrapper&depth=2", 30.0).await.unwrap();
    assert_eq!(creatives(&ads), ["ad30"]);
    let imp = &ads[0].tracking["impression"];
    assert_eq!(imp.len(), 3, "{imp:?}");
    for who in ["ad30.1", "wrapper1", "wrapper2"] {
        assert!(
            imp.iter()
                .any(|u| u.contains(&format!("/beacon/{who}/impression"))),
            "{who}: {imp:?}"
        );
        let q = &ads[0].tracking["firstQuartile"];
        assert!(
            q.iter()
                .any(|u| u.contains(&format!("/beacon/{who}/firstQuartile"))),
            "{q:?}"
        );
    }
    assert_eq!(origin.counters.view("/vast").by_path["/vast"], 3);
    // seven wrappers are followed, an eighth is refused (after 8 fetches, none more)
    let ads = decide_with(addr, "mode=wrapper&depth=7", 10.0, 500, 5000)
        .await
        .unwrap();
    assert_eq!(ads[0].tracking["impression"].len(), 8);
    let before = origin.counters.view("/vast").by_path["/vast"];
    let e = decide_with(addr, "mode=wrapper&depth=8", 10.0, 500, 5000)
        .await
        .unwrap_err();
    assert_eq!(e, VastError::TooDeep);
    assert_eq!(origin.counters.view("/vast").by_path["/vast"] - before, 8);
}

#[tokio::test]
async fn failures_give_no_ads_within_the_budget() {
    let (origin, addr) = simulator().await;
    assert_eq!(
        decide(addr, "mode=empty", 30.0).await,
        Err(VastError::Empty)
    );
    assert!(matches!(
        decide(addr, "mode=malformed", 30.0).await,
        Err(VastError::Malformed(_))
    ));
    // one slow hop: the per-request timeout
    let t = Instant::now();
    let e = decide_with(addr, "mode=slow&delay_ms=3000", 30.0, 200, 1000).await;
    assert!(matches!(e, Err(VastError::Timeout { .. })), "{e:?}");
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    // each hop in time, the chain not: the budget
    let t = Instant::now();
    let e = decide_with(addr, "mode=wrapper&depth=4&delay_ms=150", 30.0, 200, 400).await;
    assert_eq!(e, Err(VastError::Budget(Duration::from_millis(400))));
    assert!(
        t.elapsed() < Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );
    // HTTP errors
    origin.faults.set(manifold_origin::control::Faults {
        status: Some(503),
        path_prefix: Some("/vast".into()),
        remaining: Some(1),
        ..Default::default()
    });
    assert!(matches!(
        decide(addr, "", 30.0).await,
        Err(VastError::Status { status: 503, .. })
    ));
    // nobody listening
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    assert!(matches!(
        decide(dead_addr, "", 30.0).await,
        Err(VastError::Http { .. })
    ));
    // the AdDecider answers an empty pod for all of these
    let d = VastDecider::new(
        cfg(format!("http://{addr}/vast?mode=malformed"), 500, 1500),
        catalog(),
    )
    .unwrap();
    assert!(d
        .decide("t", Some("s"), &brk("b", 30.0), &viewer())
        .await
        .is_empty());
}

#[tokio::test]
async fn unknown_creatives_are_skipped() {
    let (_, addr) = simulator().await;
    // `mystery` is first in the pod; the rest plays
    let ads = decide(addr, "mode=unknown", 25.0).await.unwrap();
    assert_eq!(creatives(&ads), ["ad15", "ad10"]);
    assert_eq!(ads[0].id, "b7-0-ad15.2");
}

#[tokio::test]
async fn wrappers_and_redirects_into_the_proxys_network_are_refused() {
    use std::sync::atomic::AtomicUsize;
    // an internal service on another loopback address: what an SSRF would reach
    let hits = Arc::new(AtomicUsize::new(0));
    let internal = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let inner = internal.local_addr().unwrap();
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        async { "<VAST version=\"4.0\"/>" }
    });
    tokio::spawn(async move { axum::serve(internal, app).await });
    // the tenant's ad server (trusted, on loopback) answers with wrappers and a redirect
    // into it, and at the cloud metadata address
    let wrap = |url: &str| {
        format!("<Ad><Wrapper><VASTAdTagURI><![CDATA[{url}]]></VASTAdTagURI></Wrapper></Ad>")
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let doc = format!(
        "<VAST version=\"4.0\">{}{}{}{}</VAST>",
        wrap(&format!("http://{inner}/admin")),
        wrap("http://169.254.169.254/latest/meta-data/"),
        wrap(&format!("http://[::ffff:127.0.0.2]:{}/", inner.port())),
        wrap(&format!("http://{addr}/redirect")),
    );
    let to = format!("http://{inner}/via-redirect");
    let app = axum::Router::new()
        .route("/", axum::routing::get(move || async move { doc }))
        .route(
            "/redirect",
            axum::routing::get(move || async move {
                (
                    axum::http::StatusCode::FOUND,
                    [(axum::http::header::LOCATION, to)],
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let d = VastDecider::new(cfg(format!("http://{addr}/"), 500, 1500), catalog()).unwrap();
    let e = d.decide_pod("t", None, &brk("b", 30.0), &viewer()).await;
    assert!(
        matches!(&e, Err(VastError::Refused { why, .. }) if why.contains("not public")),
        "{e:?}"
    );
    assert_eq!(
        hits.load(Ordering::Relaxed),
        0,
        "the internal service was reached"
    );
}

#[tokio::test]
async fn wrapper_fan_out_is_capped() {
    use std::sync::atomic::AtomicUsize;
    // every answer is a pod of 32 wrappers leading back to it
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ads: String = (1..=32)
        .map(|i| {
            format!(
                "<Ad sequence=\"{i}\"><Wrapper><VASTAdTagURI>http://{addr}/</VASTAdTagURI>\
                 </Wrapper></Ad>"
            )
        })
        .collect();
    let doc = format!("<VAST version=\"4.0\">{ads}</VAST>");
    let counted = hits.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            let doc = doc.clone();
            async move { doc }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let d = VastDecider::new(cfg(format!("http://{addr}/"), 500, 1500), catalog()).unwrap();
    let e = d.decide_pod("t", None, &brk("b", 30.0), &viewer()).await;
    assert_eq!(e, Err(VastError::TooManyFetches));
    let n = hits.load(Ordering::Relaxed);
    assert!(n <= MAX_FETCHES as usize, "{n} requests");
}

#[tokio::test]
async fn backups_stand_in_and_wrapper_failures_cost_only_their_ad() {
    use axum::routing::get;
    let (_, sim) = simulator().await;
    let inline = |name: &str, seq: &str| {
        format!(
            "<Ad id=\"{name}\"{seq}><InLine><Impression>http://b/{name}</Impression><Creatives>\
             <Creative><Linear><Duration>00:00:10</Duration><MediaFiles><MediaFile \
             type=\"application/x-mpegURL\">http://cdn/ads/{name}/hls/master.m3u8</MediaFile>\
             </MediaFiles></Linear></Creative></Creatives></InLine></Ad>"
        )
    };
    // the ad server's wrappers point at its own /vast, which the simulator answers (an
    // internal ad server is trusted at its own host and port only)
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let doc = format!(
        "<VAST version=\"3.0\">{}{}{}<Ad id=\"w\" sequence=\"2\"><Wrapper><VASTAdTagURI>\
         http://{addr}/vast?mode=slow&amp;delay_ms=2000</VASTAdTagURI></Wrapper></Ad>{}\
         <Ad id=\"w2\" sequence=\"4\"><Wrapper><VASTAdTagURI>http://{addr}/vast?dur=30\
         </VASTAdTagURI><Impression>http://b/w2</Impression></Wrapper></Ad></VAST>",
        inline("ad30", " sequence=\"1\""),
        inline("nope", " sequence=\"3\""),
        inline("ad10", ""),
        inline("ad15", ""),
    );
    let forward = move |uri: axum::http::Uri| async move {
        let r = reqwest::get(format!("http://{sim}{uri}")).await.unwrap();
        r.text().await.unwrap()
    };
    let app = axum::Router::new()
        .route("/", get(move || async move { doc }))
        .route("/vast", get(forward));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let d = VastDecider::new(cfg(format!("http://{addr}/"), 300, 1500), catalog()).unwrap();
    let t = Instant::now();
    let ads = d
        .decide_pod("t", None, &brk("b", 60.0), &viewer())
        .await
        .unwrap();
    // pod order; the timed-out wrapper (2) and the unknown creative (3) are replaced by the
    // standalone ads; the good wrapper (4) brings its pod with its impression merged
    assert_eq!(creatives(&ads), ["ad30", "ad10", "ad15", "ad30"]);
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(ads[3].tracking["impression"].len(), 2);
    assert!(ads[3].tracking["impression"].contains(&"http://b/w2".to_string()));
}
