//! Steps 4–6 for one viewer: build the viewer context, run the tenant's plugin on the parsed
//! origin manifest, apply and serialize its edit plan. A plugin failure follows the tenant's
//! policy: serve the origin manifest unchanged (open) or 503 (closed).

use crate::ads::AdCatalog;
use crate::apply::{self, Creatives, RenditionWant};
use crate::config::FailPolicy;
use crate::manifest_cache::{Manifest, ManifestCache};
use crate::parse::Parsed;
use crate::plugin::bindings::{DeviceClass, Viewer};
use crate::plugin::registry::Registry;
use crate::plugin::{FailureKind, Input, PluginFailure};
use crate::route::{Route, VariantHint, HINT_PARAM};
use bytes::Bytes;
use pingora_http::RequestHeader;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// What to answer a manifest request with.
pub enum Outcome {
    /// No plugin for this tenant or manifest: the origin manifest as it is.
    PassThrough,
    /// The personalized manifest.
    Personalized {
        body: Bytes,
        version: u64,
        micros: u64,
    },
    /// The plugin failed and the tenant fails open: the origin manifest, with the reason.
    FailedOpen(PluginFailure),
    /// The plugin failed and the tenant fails closed: 503.
    FailedClosed(PluginFailure),
}

pub struct Personalizer {
    pub registry: Arc<Registry>,
    pub catalogs: HashMap<String, Arc<AdCatalog>>,
    pub manifests: Arc<ManifestCache>,
}

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

/// CMCD keys (CTA-5004) from its headers and the `CMCD` query parameter.
fn cmcd_pairs(req: &RequestHeader, query_value: Option<&str>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let header_values = ["cmcd-request", "cmcd-object", "cmcd-status", "cmcd-session"]
        .into_iter()
        .filter_map(|h| req.headers.get(h).and_then(|v| v.to_str().ok()));
    for list in header_values.chain(query_value) {
        for item in list.split(',') {
            if out.len() >= MAX_PAIRS {
                return out;
            }
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (k, v) = item.split_once('=').unwrap_or((item, "true"));
            out.push((clip(k), clip(v.trim_matches('"'))));
        }
    }
    out
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_VALUE).collect()
}

impl Personalizer {
    fn viewer(
        &self,
        route: &Route,
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
                if k == HINT_PARAM {
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
            tenant: route.tenant.id.clone(),
            session_id: None,
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

    /// Personalizes `manifest` for the viewer making `req`, if the tenant runs a plugin.
    pub async fn run(
        &self,
        route: &Route,
        manifest: &Manifest,
        req: &RequestHeader,
        client_ip: Option<IpAddr>,
    ) -> Outcome {
        let tenant = &route.tenant.id;
        let Some(slot) = self.registry.slot(tenant) else {
            return Outcome::PassThrough;
        };
        let Some(deployed) = slot.active() else {
            return Outcome::PassThrough;
        };
        if manifest.status != http::StatusCode::OK || matches!(manifest.parsed, Parsed::None) {
            // nothing a plugin could edit: the origin's answer goes out as it is
            return Outcome::PassThrough;
        }
        let started = Instant::now();
        let s = &slot.settings;
        let viewer = self.viewer(
            route,
            req,
            client_ip,
            &s.pass_headers,
            s.country_header.as_deref(),
        );
        let engine = &self.registry.engine;
        let plugin = &deployed.plugin;
        let result = match &manifest.parsed {
            Parsed::HlsMaster { playlist, view } => {
                match engine
                    .call(plugin, Input::HlsMaster(view), &viewer, &s.config, &s.env)
                    .await
                {
                    Ok(edits) => apply::hls_master(playlist, &edits)
                        .map(|mut out| {
                            add_hints(&mut out);
                            let mut buf = Vec::with_capacity(manifest.body.len() + 256);
                            let _ = out.write_to(&mut buf);
                            buf
                        })
                        .map_err(invalid),
                    Err(f) => Err(f),
                }
            }
            Parsed::HlsMedia { playlist, view } => {
                match engine
                    .call(
                        plugin,
                        Input::HlsMedia(&view.view),
                        &viewer,
                        &s.config,
                        &s.env,
                    )
                    .await
                {
                    Ok(edits) => {
                        let want = match route.hint {
                            Some(VariantHint::Audio) => RenditionWant {
                                audio_only: true,
                                ..Default::default()
                            },
                            Some(VariantHint::Video { bandwidth, height }) => RenditionWant {
                                audio_only: false,
                                bandwidth: Some(bandwidth),
                                height,
                            },
                            None => RenditionWant::default(),
                        };
                        let none = NoCreatives;
                        let resolver;
                        let creatives: &dyn Creatives = match self.catalogs.get(tenant) {
                            Some(c) => {
                                resolver = c.resolver(&self.manifests, &route.prefix);
                                &resolver
                            }
                            None => &none,
                        };
                        apply::hls_media(playlist, view, &manifest.body, &edits, want, creatives)
                            .await
                            .map_err(invalid)
                    }
                    Err(f) => Err(f),
                }
            }
            Parsed::Dash { mpd, view } => {
                match engine
                    .call(plugin, Input::DashMpd(view), &viewer, &s.config, &s.env)
                    .await
                {
                    Ok(edits) => apply::dash(mpd, &edits)
                        .and_then(|out| {
                            // dash-mpd-core writes the XML body; the declaration is ours
                            let xml = out.to_string();
                            if xml.is_empty() {
                                return Err(apply::InvalidPlan("MPD did not serialize".into()));
                            }
                            Ok(
                                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{xml}\n")
                                    .into_bytes(),
                            )
                        })
                        .map_err(invalid),
                    Err(f) => Err(f),
                }
            }
            Parsed::None => return Outcome::PassThrough,
        };
        match result {
            Ok(body) => Outcome::Personalized {
                body: Bytes::from(body),
                version: deployed.version,
                micros: started.elapsed().as_micros() as u64,
            },
            Err(failure) => {
                tracing::warn!(
                    tenant = %tenant,
                    plugin = %plugin.digest,
                    version = deployed.version,
                    kind = failure.kind.as_str(),
                    error = %failure.message,
                    "plugin failed"
                );
                match s.fail {
                    FailPolicy::Open => Outcome::FailedOpen(failure),
                    FailPolicy::Closed => Outcome::FailedClosed(failure),
                }
            }
        }
    }
}

fn invalid(e: apply::InvalidPlan) -> PluginFailure {
    PluginFailure::new(FailureKind::InvalidPlan, e.0)
}

/// Tags relative variant and rendition URIs of a personalized master with what they are, so
/// their media playlist requests can get ads in the matching rendition.
fn add_hints(m: &mut m3u8_rs::MasterPlaylist) {
    fn tag(uri: &mut String, hint: VariantHint) {
        if uri.contains("://") || uri.is_empty() {
            return;
        }
        let sep = if uri.contains('?') { '&' } else { '?' };
        uri.push(sep);
        uri.push_str(HINT_PARAM);
        uri.push('=');
        uri.push_str(&hint.to_param());
    }
    for v in &mut m.variants {
        let hint = VariantHint::Video {
            bandwidth: v.bandwidth,
            height: v.resolution.map(|r| r.height.min(u32::MAX as u64) as u32),
        };
        tag(&mut v.uri, hint);
    }
    for a in &mut m.alternatives {
        if a.media_type == m3u8_rs::AlternativeMediaType::Audio {
            if let Some(uri) = a.uri.as_mut() {
                tag(uri, VariantHint::Audio);
            }
        }
    }
}

/// For tenants without an ad catalog: every creative is unknown.
struct NoCreatives;

#[async_trait::async_trait]
impl Creatives for NoCreatives {
    async fn media(
        &self,
        creative: &str,
        _p: apply::Packaging,
        _w: RenditionWant,
    ) -> Result<Arc<apply::AdMedia>, String> {
        Err(format!(
            "no creative {creative:?}: the tenant has no ad catalog"
        ))
    }
    fn slate(&self) -> Option<&str> {
        None
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
    }

    #[test]
    fn hints_go_on_relative_uris_only() {
        let text = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"a0.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=1000,RESOLUTION=320x180,AUDIO=\"a\"\nv0.m3u8?token=1\n\
#EXT-X-STREAM-INF:BANDWIDTH=2000\nhttps://cdn.example/v1.m3u8\n";
        let mut m = match m3u8_rs::parse_playlist_res(text.as_bytes()).unwrap() {
            m3u8_rs::Playlist::MasterPlaylist(m) => m,
            _ => panic!(),
        };
        add_hints(&mut m);
        assert_eq!(m.variants[0].uri, "v0.m3u8?token=1&mf_v=v1000x180");
        assert_eq!(m.variants[1].uri, "https://cdn.example/v1.m3u8");
        assert_eq!(m.alternatives[0].uri.as_deref(), Some("a0.m3u8?mf_v=a"));
    }
}
