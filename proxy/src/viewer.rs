//! The viewer context a plugin gets (WIT `viewer`): player params, chosen headers, device
//! class sniffed from the User-Agent, country, and CMCD keys, each bounded in count and size.

use crate::plugin::bindings::{DeviceClass, Viewer};
use pingora_http::RequestHeader;
use std::net::IpAddr;

/// Limits on what the viewer context carries from the request.
const MAX_PAIRS: usize = 64;
const MAX_VALUE: usize = 1024;

fn device_of(user_agent: Option<&str>, param: Option<&str>) -> DeviceClass {
    match param {
        Some("mobile") => return DeviceClass::Mobile,
        Some("tablet") => return DeviceClass::Tablet,
        Some("tv") => return DeviceClass::Tv,
        Some("desktop") => return DeviceClass::Desktop,
        _ => {}
    }
    let Some(ua) = user_agent else {
        return DeviceClass::Unknown;
    };
    let has = |needles: &[&str]| needles.iter().any(|n| ua.contains(n));
    if has(&[
        "SmartTV", "SMART-TV", "AppleTV", "Roku", "CrKey", "AFT", "Tizen", "Web0S", "BRAVIA",
        "HbbTV",
    ]) {
        DeviceClass::Tv
    } else if has(&["iPad", "Tablet"]) || (ua.contains("Android") && !ua.contains("Mobile")) {
        DeviceClass::Tablet
    } else if has(&["iPhone", "Mobile", "Android"]) {
        DeviceClass::Mobile
    } else if has(&["Mozilla", "Windows", "Macintosh", "Linux"]) {
        DeviceClass::Desktop
    } else {
        DeviceClass::Unknown
    }
}

/// CMCD keys (CTA-5004, v1 and v2) from its headers and the `CMCD` query parameter. Lists are
/// RFC 8941 dictionaries: items split on commas outside strings and inner lists (v2's
/// `(1000 2000)`), strings unquoted, a bare key is `true`.
fn cmcd_pairs(req: &RequestHeader, query_value: Option<&str>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let header_values = ["cmcd-request", "cmcd-object", "cmcd-status", "cmcd-session"]
        .into_iter()
        .filter_map(|h| req.headers.get(h).and_then(|v| v.to_str().ok()));
    for list in header_values.chain(query_value) {
        for item in sf_items(list) {
            if out.len() >= MAX_PAIRS {
                return out;
            }
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (k, v) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), sf_value(v.trim())),
                None => (item, "true".to_string()),
            };
            if k.is_empty() {
                continue;
            }
            out.push((clip(k), clip(&v)));
        }
    }
    out
}

/// The top-level items of a structured-field dictionary.
fn sf_items(list: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut start, mut depth, mut quoted, mut escaped) = (0, 0u32, false, false);
    for (i, c) in list.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            ',' if !quoted && depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    items
}

/// A value as the plugin gets it: strings unquoted and unescaped, anything else as written.
fn sf_value(v: &str) -> String {
    match v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            out
        }
        None => v.to_string(),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_VALUE).collect()
}

/// The viewer making `req`, as the plugin sees it.
pub fn viewer_context(
    tenant: &str,
    session: Option<&str>,
    req: &RequestHeader,
    client_ip: Option<IpAddr>,
    pass_headers: &[String],
    country_header: Option<&str>,
) -> Viewer {
    let mut query = Vec::new();
    let mut cmcd_query = None;
    let mut device_param = None;
    if let Some(q) = req.uri.query() {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            if k.starts_with("mf_") {
                continue;
            }
            if k == "CMCD" {
                cmcd_query = Some(v.into_owned());
                continue;
            }
            if k == "device" {
                device_param = Some(v.to_string());
            }
            if query.len() < MAX_PAIRS {
                query.push((clip(&k), clip(&v)));
            }
        }
    }
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let user_agent = header("user-agent").map(clip);
    Viewer {
        tenant: tenant.to_string(),
        session_id: session.map(str::to_string),
        device: device_of(user_agent.as_deref(), device_param.as_deref()),
        query,
        headers: pass_headers
            .iter()
            .filter_map(|h| header(h).map(|v| (h.clone(), clip(v))))
            .collect(),
        user_agent,
        client_ip: client_ip.map(|ip| ip.to_string()),
        country: country_header
            .and_then(header)
            .map(|c| clip(c).to_ascii_uppercase()),
        cmcd: cmcd_pairs(req, cmcd_query.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_classes() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
        let ipad = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)";
        let android_tablet =
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 Safari/537.36";
        let android_phone =
            "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 Mobile Safari/537.36";
        let tv = "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36";
        let desktop = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120";
        assert_eq!(device_of(Some(iphone), None), DeviceClass::Mobile);
        assert_eq!(device_of(Some(ipad), None), DeviceClass::Tablet);
        assert_eq!(device_of(Some(android_tablet), None), DeviceClass::Tablet);
        assert_eq!(device_of(Some(android_phone), None), DeviceClass::Mobile);
        assert_eq!(device_of(Some(tv), None), DeviceClass::Tv);
        assert_eq!(device_of(Some(desktop), None), DeviceClass::Desktop);
        assert_eq!(device_of(None, None), DeviceClass::Unknown);
        assert_eq!(
            device_of(Some(desktop), Some("mobile")),
            DeviceClass::Mobile
        );
    }

    #[test]
    fn cmcd_from_headers_and_query() {
        let mut req = RequestHeader::build("GET", b"/x.m3u8", None).unwrap();
        req.insert_header("cmcd-request", "bl=21300,mtp=25400")
            .unwrap();
        req.insert_header("cmcd-session", "sid=\"6e2fb550\",sf=h")
            .unwrap();
        let pairs = cmcd_pairs(&req, Some("br=3200,bs"));
        assert!(pairs.contains(&("bl".into(), "21300".into())));
        assert!(pairs.contains(&("sid".into(), "6e2fb550".into())));
        assert!(pairs.contains(&("br".into(), "3200".into())));
        assert!(pairs.contains(&("bs".into(), "true".into())));
        // v2: strings holding commas and quotes, inner lists, custom keys
        let v2 = r#"v=2,cid="a,b \"c\"",br=(1000 2500),com.example-Key=7,sta=p"#;
        let pairs = cmcd_pairs(&RequestHeader::build("GET", b"/", None).unwrap(), Some(v2));
        assert_eq!(
            pairs,
            vec![
                ("v".into(), "2".into()),
                ("cid".into(), "a,b \"c\"".into()),
                ("br".into(), "(1000 2500)".into()),
                ("com.example-Key".into(), "7".into()),
                ("sta".into(), "p".into()),
            ]
        );
    }
}
