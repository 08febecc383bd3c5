//! A test VAST ad server on the simulator itself, so ad decisions can be exercised end to end
//! without a real ad server.
//!
//! `GET /vast?dur=<secs>&...` answers a VAST document whose pod is made of the sample creatives
//! (`ad30`, `ad15`, `ad10`: longest first while they fit `dur`, default 30 s). Every ad has an
//! `<Impression>` and `start`/`firstQuartile`/`midpoint`/`thirdQuartile`/`complete` trackers
//! pointing at `/beacon/<ad id>/<event>?<query>` here, and two media files: the creative's HLS
//! master (`application/x-mpegURL`) and its MPD (`application/dash+xml`). Ad ids are
//! `<creative>.<position>` (`ad15.2`), so each beacon of a pod has its own counted path.
//!
//! | parameter | effect |
//! |---|---|
//! | `version=2\|3\|4` | VAST version (default 4, with the IAB namespace); 2 has no `sequence` (standalone ads) |
//! | `mode=inline` | the default |
//! | `mode=wrapper&depth=N` | a Wrapper (its own `/beacon/wrapperN/...` trackers) whose `VASTAdTagURI` asks for `depth=N-1`; `depth=0` is the inline pod |
//! | `mode=empty` | `<VAST version="4.0"/>`: no ads |
//! | `mode=slow&delay_ms=N` | the inline pod after N ms (default 2000); `delay_ms` delays any mode |
//! | `mode=malformed` | a truncated, unparsable document |
//! | `mode=unknown` | a first ad (`mystery.1`, 10 s) whose media files name no known creative, then the pod |
//!
//! Other query parameters (`sid`, ...) are carried into wrapper and beacon URLs. `/vast` and
//! `/beacon/...` requests are counted per path like any other request (`/_origin/counters`);
//! beacons answer `204 No Content`.

use super::Origin;
use axum::extract::Query;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// Tracking events every ad carries (besides its impression).
pub const EVENTS: [&str; 5] = [
    "start",
    "firstQuartile",
    "midpoint",
    "thirdQuartile",
    "complete",
];

/// Longest delay `delay_ms` can ask for, so a test cannot hang the simulator.
const MAX_DELAY_MS: u64 = 60_000;
/// Longest wrapper chain the server builds.
const MAX_DEPTH: u32 = 32;

/// Answers `/vast` and `/beacon/...`; `None` for any other path.
pub async fn serve(o: &Origin, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    let path = uri.path();
    if path.starts_with("/beacon/") {
        return Some(StatusCode::NO_CONTENT.into_response());
    }
    if path != "/vast" {
        return None;
    }
    let params: BTreeMap<String, String> = Query::try_from_uri(uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("127.0.0.1");
    let req = Request::new(params, host);
    let delay = req.delay_ms();
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut resp = Response::new(axum::body::Body::from(document(o, &req)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(resp)
}

/// A parsed `/vast` request.
pub struct Request {
    params: BTreeMap<String, String>,
    base: String,
}

impl Request {
    pub fn new(params: BTreeMap<String, String>, host: &str) -> Self {
        Request {
            params,
            base: format!("http://{host}"),
        }
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str)
    }

    fn mode(&self) -> &str {
        self.get("mode").unwrap_or("inline")
    }

    fn delay_ms(&self) -> u64 {
        let default = if self.mode() == "slow" { 2000 } else { 0 };
        self.get("delay_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
            .min(MAX_DELAY_MS)
    }

    fn version(&self) -> u8 {
        match self.get("version") {
            Some("2" | "2.0") => 2,
            Some("3" | "3.0") => 3,
            _ => 4,
        }
    }

    fn duration(&self) -> f64 {
        self.get("dur")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d >= 0.0)
            .unwrap_or(30.0)
            .min(3600.0)
    }

    /// The request's parameters minus the ones that shape the document, as a query string
    /// carried into beacon URLs.
    fn carried(&self) -> String {
        self.query_with(|k| !matches!(k, "mode" | "depth" | "delay_ms" | "version" | "dur"))
    }

    fn query_with(&self, keep: impl Fn(&str) -> bool) -> String {
        self.params
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    fn beacon(&self, ad: &str, event: &str) -> String {
        let q = self.carried();
        let sep = if q.is_empty() { "" } else { "&" };
        format!("{}/beacon/{ad}/{event}?{q}{sep}cb=[CACHEBUSTER]", self.base)
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The creatives that fill `dur` seconds: longest first while they fit.
pub fn pod(o: &Origin, dur: f64) -> Vec<(String, f64)> {
    let mut ads: Vec<(&String, f64)> = o
        .lib
        .ads
        .iter()
        .filter(|(name, _)| name.as_str() != "slate")
        .map(|(name, p)| (name, p.duration))
        .collect();
    ads.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let mut left = dur;
    let mut out = Vec::new();
    while let Some((name, d)) = ads.iter().find(|(_, d)| *d <= left + 0.001) {
        out.push((name.to_string(), *d));
        left -= d;
        if out.len() >= 32 {
            break;
        }
    }
    out
}

/// The VAST document a request gets.
pub fn document(o: &Origin, req: &Request) -> String {
    let version = req.version();
    let v = format!("{version}.0");
    match req.mode() {
        "empty" => return format!("<VAST version=\"{v}\"/>"),
        "malformed" => {
            return format!(
                "<?xml version=\"1.0\"?><VAST version=\"{v}\"><Ad id=\"x\"><InLine><Creatives>\
                 <Creative><Linear><MediaFiles><MediaFile type=\"application/x-mpegURL\">\
                 <![CDATA[{}/ads/ad10/hls/mas",
                req.base
            )
        }
        _ => {}
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let ns = if version >= 4 {
        " xmlns=\"http://www.iab.com/VAST\""
    } else {
        ""
    };
    let _ = writeln!(out, "<VAST version=\"{v}\"{ns}>");
    let depth: u32 = req
        .get("depth")
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
        .min(MAX_DEPTH);
    if req.mode() == "wrapper" && depth > 0 {
        wrapper(&mut out, req, depth);
    } else {
        let mut ads: Vec<(String, f64)> = Vec::new();
        if req.mode() == "unknown" {
            ads.push(("mystery".into(), 10.0));
        }
        ads.extend(pod(o, req.duration()));
        for (i, (name, secs)) in ads.iter().enumerate() {
            inline(&mut out, req, version, i + 1, name, *secs);
        }
    }
    out.push_str("</VAST>\n");
    out
}

fn cdata(url: &str) -> String {
    format!("<![CDATA[{url}]]>")
}

fn tracking_events(out: &mut String, req: &Request, ad: &str) {
    out.push_str("          <TrackingEvents>\n");
    for e in EVENTS {
        let _ = writeln!(
            out,
            "            <Tracking event=\"{e}\">{}</Tracking>",
            cdata(&req.beacon(ad, e))
        );
    }
    out.push_str("          </TrackingEvents>\n");
}

fn inline(out: &mut String, req: &Request, version: u8, seq: usize, name: &str, secs: f64) {
    let id = format!("{name}.{seq}");
    let sequence = if version >= 3 {
        format!(" sequence=\"{seq}\"")
    } else {
        String::new()
    };
    let _ = writeln!(out, "  <Ad id=\"{id}\"{sequence}>\n    <InLine>");
    let _ = writeln!(
        out,
        "      <AdSystem version=\"1\">manifold-origin</AdSystem>"
    );
    if version >= 4 {
        let _ = writeln!(out, "      <AdServingId>{id}</AdServingId>");
    }
    let _ = writeln!(out, "      <AdTitle>{name} &amp; friends</AdTitle>");
    let _ = writeln!(
        out,
        "      <Impression id=\"{id}\">{}</Impression>",
        cdata(&req.beacon(&id, "impression"))
    );
    let _ = writeln!(out, "      <Creatives>\n        <Creative id=\"{name}\">");
    if version >= 4 {
        let _ = writeln!(
            out,
            "          <UniversalAdId idRegistry=\"manifold\">{name}</UniversalAdId>"
        );
    }
    let ms = (secs * 1000.0).round() as u64;
    let _ = writeln!(
        out,
        "        <Linear>\n          <Duration>{:02}:{:02}:{:02}.{:03}</Duration>",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
    tracking_events(out, req, &id);
    let _ = writeln!(
        out,
        "          <MediaFiles>\n            <MediaFile delivery=\"streaming\" \
         type=\"application/x-mpegURL\" width=\"640\" height=\"360\">\n              {}\n            \
         </MediaFile>\n            <MediaFile delivery=\"streaming\" type=\"application/dash+xml\" \
         width=\"640\" height=\"360\">{}/ads/{name}/dash/manifest.mpd</MediaFile>\n          \
         </MediaFiles>",
        cdata(&format!("{}/ads/{name}/hls/master.m3u8", req.base)),
        req.base
    );
    out.push_str(
        "        </Linear>\n        </Creative>\n      </Creatives>\n    </InLine>\n  </Ad>\n",
    );
}

fn wrapper(out: &mut String, req: &Request, depth: u32) {
    let id = format!("wrapper{depth}");
    let next = req.query_with(|k| k != "depth");
    let sep = if next.is_empty() { "" } else { "&" };
    let tag = format!("{}/vast?{next}{sep}depth={}", req.base, depth - 1);
    let _ = writeln!(
        out,
        "  <Ad id=\"{id}\">\n    <Wrapper followAdditionalWrappers=\"true\" allowMultipleAds=\"true\">"
    );
    let _ = writeln!(
        out,
        "      <AdSystem>manifold-origin wrapper</AdSystem>\n      <VASTAdTagURI>{}</VASTAdTagURI>",
        cdata(&tag)
    );
    let _ = writeln!(
        out,
        "      <Impression>{}</Impression>",
        cdata(&req.beacon(&id, "impression"))
    );
    out.push_str("      <Creatives>\n        <Creative>\n        <Linear>\n");
    tracking_events(out, req, &id);
    out.push_str(
        "        </Linear>\n        </Creative>\n      </Creatives>\n    </Wrapper>\n  </Ad>\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{handle, OriginOptions};
    use axum::extract::State;
    use axum::http::Method;
    use std::path::PathBuf;
    use std::sync::Arc;

    fn origin() -> Arc<Origin> {
        let media = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/media"));
        Arc::new(Origin::new(&OriginOptions::new(media)).unwrap())
    }

    async fn get(o: &Arc<Origin>, uri: &str) -> (StatusCode, String) {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("ads.test:9"));
        let r = handle(
            State(o.clone()),
            Method::GET,
            uri.parse().unwrap(),
            headers,
            axum::body::Bytes::new(),
        )
        .await;
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Element local name, attributes, text.
    type Element = (String, Vec<(String, String)>, String);

    /// Every element of a document in document order, or why it is not well-formed. Enough XML
    /// for what this server writes (double-quoted attributes, CDATA, `&amp;`).
    fn elements(xml: &str) -> Result<Vec<Element>, String> {
        let mut out: Vec<Element> = Vec::new();
        let mut open: Vec<(String, usize)> = Vec::new();
        let mut rest = xml;
        while let Some(lt) = rest.find('<') {
            if let Some((_, i)) = open.last() {
                out[*i].2.push_str(&rest[..lt].replace("&amp;", "&"));
            }
            rest = &rest[lt..];
            if let Some(r) = rest.strip_prefix("<![CDATA[") {
                let end = r.find("]]>").ok_or("unterminated CDATA")?;
                if let Some((_, i)) = open.last() {
                    out[*i].2.push_str(&r[..end]);
                }
                rest = &r[end + 3..];
                continue;
            }
            let gt = rest.find('>').ok_or("unterminated tag")?;
            let tag = &rest[1..gt];
            rest = &rest[gt + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let (opened, i) = open.pop().ok_or("unbalanced end tag")?;
                if opened != name {
                    return Err(format!("</{name}> closes <{opened}>"));
                }
                out[i].2 = out[i].2.trim().to_string();
                continue;
            }
            let empty = tag.ends_with('/');
            let (name, attrs) = tag
                .trim_end_matches('/')
                .split_once(char::is_whitespace)
                .unwrap_or((tag.trim_end_matches('/'), ""));
            let attrs = attrs
                .split('"')
                .collect::<Vec<_>>()
                .chunks(2)
                .filter(|kv| kv.len() == 2)
                .map(|kv| {
                    (
                        kv[0].trim().trim_end_matches('=').to_string(),
                        kv[1].to_string(),
                    )
                })
                .collect();
            out.push((name.to_string(), attrs, String::new()));
            if !empty {
                open.push((name.to_string(), out.len() - 1));
            }
        }
        match open.last() {
            None if !out.is_empty() => Ok(out),
            None => Err("no elements".into()),
            Some((name, _)) => Err(format!("<{name}> not closed")),
        }
    }

    fn texts<'a>(els: &'a [Element], name: &str) -> Vec<&'a str> {
        els.iter()
            .filter(|e| e.0 == name)
            .map(|e| e.2.as_str())
            .collect()
    }

    #[tokio::test]
    async fn inline_pod_fills_the_duration_with_beacons_here() {
        let o = origin();
        let (s, body) = get(&o, "/vast?dur=55&sid=s%201").await;
        assert_eq!(s, StatusCode::OK);
        let els = elements(&body).unwrap();
        assert_eq!(els[0].0, "VAST");
        assert!(els[0].1.contains(&("version".into(), "4.0".into())));
        let ads: Vec<_> = els.iter().filter(|e| e.0 == "Ad").collect();
        // 30 + 15 + 10 = 55
        let ids: Vec<&str> = ads
            .iter()
            .map(|a| a.1.iter().find(|(k, _)| k == "id").unwrap().1.as_str())
            .collect();
        assert_eq!(ids, ["ad30.1", "ad15.2", "ad10.3"]);
        assert!(ads[1].1.contains(&("sequence".into(), "2".into())));
        assert_eq!(
            texts(&els, "Duration"),
            ["00:00:30.000", "00:00:15.000", "00:00:10.000"]
        );
        assert_eq!(
            texts(&els, "Impression")[1],
            "http://ads.test:9/beacon/ad15.2/impression?sid=s%201&cb=[CACHEBUSTER]"
        );
        assert_eq!(texts(&els, "Tracking").len(), 15);
        let media = texts(&els, "MediaFile");
        assert_eq!(media[0], "http://ads.test:9/ads/ad30/hls/master.m3u8");
        assert_eq!(media[1], "http://ads.test:9/ads/ad30/dash/manifest.mpd");
        // the creatives it names exist
        for m in media {
            let path = m.strip_prefix("http://ads.test:9").unwrap();
            assert_eq!(get(&o, path).await.0, StatusCode::OK, "{path}");
        }
        assert_eq!(texts(&els, "AdTitle")[0], "ad30 & friends");
    }

    #[tokio::test]
    async fn versions_and_short_breaks() {
        let o = origin();
        let (_, v2) = get(&o, "/vast?dur=25&version=2").await;
        let els = elements(&v2).unwrap();
        assert!(els[0].1.contains(&("version".into(), "2.0".into())));
        assert!(!v2.contains("sequence=") && !v2.contains("xmlns"));
        assert_eq!(texts(&els, "AdTitle").len(), 2);
        let (_, v3) = get(&o, "/vast?dur=10&version=3").await;
        assert!(v3.contains("<VAST version=\"3.0\">") && v3.contains("sequence=\"1\""));
        // nothing fits 5 s: a valid document without ads
        let (_, none) = get(&o, "/vast?dur=5").await;
        assert!(elements(&none).unwrap().iter().all(|e| e.0 != "Ad"));
    }

    #[tokio::test]
    async fn wrappers_chain_down_to_the_inline_pod() {
        let o = origin();
        let mut uri = "/vast?mode=wrapper&depth=3&dur=30&sid=abc".to_string();
        for level in (1..=3).rev() {
            let (_, body) = get(&o, &uri).await;
            let els = elements(&body).unwrap();
            assert!(els.iter().any(|e| e.0 == "Wrapper"), "{body}");
            assert_eq!(
                texts(&els, "Impression"),
                [format!(
                    "http://ads.test:9/beacon/wrapper{level}/impression?sid=abc&cb=[CACHEBUSTER]"
                )]
            );
            assert_eq!(texts(&els, "Tracking").len(), 5);
            let next = texts(&els, "VASTAdTagURI")[0];
            uri = next.strip_prefix("http://ads.test:9").unwrap().to_string();
        }
        assert!(uri.contains("depth=0") && uri.contains("sid=abc"), "{uri}");
        let (_, body) = get(&o, &uri).await;
        let els = elements(&body).unwrap();
        assert!(els.iter().any(|e| e.0 == "InLine"));
        assert_eq!(texts(&els, "AdTitle"), ["ad30 & friends"]);
        assert_eq!(o.counters.view("/vast").by_path["/vast"], 4);
    }

    #[tokio::test]
    async fn empty_malformed_unknown_and_slow() {
        let o = origin();
        let (_, empty) = get(&o, "/vast?mode=empty").await;
        assert_eq!(empty, "<VAST version=\"4.0\"/>");
        let (s, bad) = get(&o, "/vast?mode=malformed&dur=10").await;
        assert_eq!(s, StatusCode::OK);
        assert!(elements(&bad).is_err(), "{bad}");
        let (_, unknown) = get(&o, "/vast?mode=unknown&dur=10").await;
        let els = elements(&unknown).unwrap();
        let media = texts(&els, "MediaFile");
        assert_eq!(media[0], "http://ads.test:9/ads/mystery/hls/master.m3u8");
        assert_eq!(get(&o, "/ads/mystery/hls/master.m3u8").await.0, 404);
        assert_eq!(media[2], "http://ads.test:9/ads/ad10/hls/master.m3u8");
        let t = std::time::Instant::now();
        let (_, slow) = get(&o, "/vast?mode=slow&delay_ms=300&dur=10").await;
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert!(slow.contains("ad10.1"));
    }

    #[tokio::test]
    async fn beacons_are_counted_per_ad_and_event() {
        let o = origin();
        for _ in 0..2 {
            let (s, body) = get(&o, "/beacon/ad15.2/start?sid=x&cb=123").await;
            assert_eq!(s, StatusCode::NO_CONTENT);
            assert!(body.is_empty());
        }
        get(&o, "/beacon/ad15.2/midpoint").await;
        let v = o.counters.view("/beacon/");
        assert_eq!(v.by_path["/beacon/ad15.2/start"], 2);
        assert_eq!(v.by_path["/beacon/ad15.2/midpoint"], 1);
        assert_eq!(v.by_path.len(), 2);
        // other paths still reach the media
        assert_eq!(get(&o, "/vastly").await.0, StatusCode::NOT_FOUND);
    }
}
