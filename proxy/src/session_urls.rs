//! Pointing a personalized manifest into the viewer's session: a master's variant and
//! rendition URIs carry which rendition they are (and live under the new session), and an
//! MPD's absolute BaseURLs at the origin become session paths through the proxy.

use crate::route::{Route, VariantHint, GROUP_PARAM, HINT_PARAM};

/// Tags variant and rendition URIs of a personalized master with what they are, so their
/// media playlist requests get ads in the matching rendition; with `base`, relative URIs
/// become absolute paths under the viewer's new session.
pub fn add_hints(m: &mut m3u8_rs::MasterPlaylist, base: Option<&str>, group: Option<&str>) {
    let tag = |uri: &mut String, hint: VariantHint, base: Option<&str>| {
        if uri.contains("://") || uri.is_empty() {
            return;
        }
        if let Some(base) = base {
            if !uri.starts_with('/') {
                *uri = format!("{base}{uri}");
            }
        }
        let sep = if uri.contains('?') { '&' } else { '?' };
        uri.push(sep);
        uri.push_str(HINT_PARAM);
        uri.push('=');
        uri.push_str(&hint.to_param());
        if let Some(g) = group {
            uri.push('&');
            uri.push_str(GROUP_PARAM);
            uri.push('=');
            uri.push_str(g);
        }
    };
    for v in &mut m.variants {
        let hint = VariantHint::Video {
            bandwidth: v.bandwidth,
            height: v.resolution.map(|r| r.height.min(u32::MAX as u64) as u32),
        };
        tag(&mut v.uri, hint, base);
    }
    for a in &mut m.alternatives {
        let hint = if a.media_type == m3u8_rs::AlternativeMediaType::Audio {
            VariantHint::Audio
        } else {
            VariantHint::Video {
                bandwidth: 0,
                height: None,
            }
        };
        if let Some(uri) = a.uri.as_mut() {
            tag(uri, hint, base);
        }
    }
}

/// Absolute BaseURLs at the tenant's origin become session paths through the proxy
/// (relative ones already resolve against the MPD's session URL).
pub fn route_base_urls(mpd: &mut dash_mpd_core::MPD, route: &Route, session_prefix: &str) {
    let o = &route.tenant.origin;
    let scheme = if o.tls { "https" } else { "http" };
    let default_port = if o.tls { 443 } else { 80 };
    let mut roots = vec![format!("{scheme}://{}:{}{}", o.host, o.port, o.base_path)];
    if o.port == default_port {
        roots.push(format!("{scheme}://{}{}", o.host, o.base_path));
    }
    let fix = |b: &mut dash_mpd_core::BaseURL| {
        if let Some(rest) = roots.iter().find_map(|r| b.base.strip_prefix(r.as_str())) {
            if rest.is_empty() || rest.starts_with('/') {
                b.base = format!(
                    "{session_prefix}{}",
                    if rest.is_empty() { "/" } else { rest }
                );
            }
        }
    };
    mpd.base_url.iter_mut().for_each(fix);
    for p in &mut mpd.periods {
        p.BaseURL.iter_mut().for_each(fix);
        for a in &mut p.adaptations {
            a.BaseURL.iter_mut().for_each(fix);
            for r in &mut a.representations {
                r.BaseURL.iter_mut().for_each(fix);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_and_session_paths_go_on_relative_uris_only() {
        let text = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"a0.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=1000,RESOLUTION=320x180,AUDIO=\"a\"\nv0.m3u8?token=1\n\
#EXT-X-STREAM-INF:BANDWIDTH=2000\nhttps://cdn.example/v1.m3u8\n";
        let parse = || match m3u8_rs::parse_playlist_res(text.as_bytes()).unwrap() {
            m3u8_rs::Playlist::MasterPlaylist(m) => m,
            _ => panic!(),
        };
        let mut m = parse();
        add_hints(&mut m, None, None);
        assert_eq!(m.variants[0].uri, "v0.m3u8?token=1&mf_v=v1000x180");
        assert_eq!(m.variants[1].uri, "https://cdn.example/v1.m3u8");
        assert_eq!(m.alternatives[0].uri.as_deref(), Some("a0.m3u8?mf_v=a"));
        let mut m = parse();
        add_hints(&mut m, Some("/t/~tok/live/hls/"), None);
        assert_eq!(
            m.variants[0].uri,
            "/t/~tok/live/hls/v0.m3u8?token=1&mf_v=v1000x180"
        );
        assert_eq!(
            m.alternatives[0].uri.as_deref(),
            Some("/t/~tok/live/hls/a0.m3u8?mf_v=a")
        );
    }
}
