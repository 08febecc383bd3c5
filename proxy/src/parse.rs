//! Step 3: parsing origin manifests (m3u8-rs, dash-mpd), once per origin fetch.
//!
//! What the cache needs from a manifest is whether it is live and how often it changes.

use crate::route::Class;
use std::time::Duration;

/// What kind of manifest a body is, as far as caching is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum ManifestKind {
    HlsMaster,
    /// Live (no `EXT-X-ENDLIST`, not `VOD`) or not, with its target duration.
    HlsMedia {
        live: bool,
        target: Duration,
    },
    /// `type="dynamic"`, refreshed at most every `refresh` (minimum update period or maximum
    /// segment duration, whichever is shorter).
    DashDynamic {
        refresh: Duration,
    },
    DashStatic,
    /// Did not parse: served as the origin sent it, cached briefly.
    Unparsed(String),
}

/// How often an unparsable or unannotated live manifest is refetched.
const FALLBACK_REFRESH: Duration = Duration::from_secs(2);

pub fn inspect(class: Class, body: &[u8]) -> ManifestKind {
    match class {
        Class::DashManifest => inspect_dash(body),
        _ => inspect_hls(body),
    }
}

fn inspect_hls(body: &[u8]) -> ManifestKind {
    match m3u8_rs::parse_playlist_res(body) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(_)) => ManifestKind::HlsMaster,
        Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => ManifestKind::HlsMedia {
            live: !m.end_list && m.playlist_type != Some(m3u8_rs::MediaPlaylistType::Vod),
            target: Duration::from_secs(m.target_duration.max(1)),
        },
        Err(e) => ManifestKind::Unparsed(format!("HLS: {}", short(&e.to_string()))),
    }
}

fn inspect_dash(body: &[u8]) -> ManifestKind {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => return ManifestKind::Unparsed(format!("DASH: not UTF-8: {e}")),
    };
    match dash_mpd_core::parse(text) {
        Ok(mpd) if mpd.mpdtype.as_deref() == Some("dynamic") => {
            let refresh = [mpd.minimumUpdatePeriod, mpd.maxSegmentDuration]
                .into_iter()
                .flatten()
                .filter(|d| !d.is_zero())
                .min()
                .unwrap_or(FALLBACK_REFRESH);
            ManifestKind::DashDynamic { refresh }
        }
        Ok(_) => ManifestKind::DashStatic,
        Err(e) => ManifestKind::Unparsed(format!("DASH: {}", short(&e.to_string()))),
    }
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

impl ManifestKind {
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            ManifestKind::HlsMedia { live: true, .. }
                | ManifestKind::DashDynamic { .. }
                | ManifestKind::Unparsed(_)
        )
    }

    /// Half the interval at which a live manifest changes (RFC 8216 §6.2.2 lets a client reload
    /// after half a target duration when it saw no change).
    pub fn half_refresh(&self) -> Option<Duration> {
        match self {
            ManifestKind::HlsMedia { live: true, target } => Some(*target / 2),
            ManifestKind::DashDynamic { refresh } => Some(*refresh / 2),
            ManifestKind::Unparsed(_) => Some(FALLBACK_REFRESH / 2),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hls_kinds() {
        let master = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nv0.m3u8\n";
        assert_eq!(inspect(Class::HlsPlaylist, master), ManifestKind::HlsMaster);
        let live = b"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\n1.ts\n";
        let k = inspect(Class::HlsPlaylist, live);
        assert_eq!(
            k,
            ManifestKind::HlsMedia {
                live: true,
                target: Duration::from_secs(6)
            }
        );
        assert_eq!(k.half_refresh(), Some(Duration::from_secs(3)));
        let vod = b"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\n1.ts\n#EXT-X-ENDLIST\n";
        assert!(!inspect(Class::HlsPlaylist, vod).is_live());
        assert!(matches!(
            inspect(Class::HlsPlaylist, b"<html>"),
            ManifestKind::Unparsed(_)
        ));
    }

    #[test]
    fn dash_kinds() {
        let dynamic = r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" minimumUpdatePeriod="PT6S" maxSegmentDuration="PT4S"><Period id="0"/></MPD>"#;
        assert_eq!(
            inspect(Class::DashManifest, dynamic.as_bytes()),
            ManifestKind::DashDynamic {
                refresh: Duration::from_secs(4)
            }
        );
        let stat = r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT10S"><Period id="0"/></MPD>"#;
        assert_eq!(
            inspect(Class::DashManifest, stat.as_bytes()),
            ManifestKind::DashStatic
        );
        assert!(matches!(
            inspect(Class::DashManifest, b"<MPD><Per"),
            ManifestKind::Unparsed(_)
        ));
        assert!(matches!(
            inspect(Class::DashManifest, b"\xff\xfe"),
            ManifestKind::Unparsed(_)
        ));
    }
}
