//! Step 3: parsing origin manifests (m3u8-rs, dash-mpd), once per origin fetch. The parsed
//! manifest and its plugin view are kept with the cached manifest, so requests never re-parse.

use crate::asked::Class;
use crate::low_latency;
use crate::types::{DashMpd, HlsMaster};
use crate::view::{self, HlsMediaView};
use std::time::Duration;

/// A parsed origin manifest with the view plugins get of it.
#[derive(Debug, Default)]
pub enum Parsed {
    HlsMaster {
        playlist: m3u8_rs::MasterPlaylist,
        view: HlsMaster,
    },
    HlsMedia {
        playlist: m3u8_rs::MediaPlaylist,
        view: HlsMediaView,
    },
    Dash {
        mpd: Box<dash_mpd_core::MPD>,
        view: DashMpd,
        /// Breaks signalled beyond the live edge.
        announced: Vec<view::Announcement>,
    },
    /// Did not parse (or was not asked to).
    #[default]
    None,
}

/// Parses a manifest body: its kind (for caching) and the parsed form (for plugins).
pub fn parse(class: Class, body: &[u8]) -> (ManifestKind, Parsed) {
    match class {
        Class::DashManifest => {
            let text = match std::str::from_utf8(body) {
                Ok(t) => t,
                Err(e) => {
                    return (
                        ManifestKind::Unparsed(format!("DASH: not UTF-8: {e}")),
                        Parsed::None,
                    )
                }
            };
            if let Some(value) = oversized_duration(text) {
                return (
                    ManifestKind::Unparsed(format!(
                        "DASH: duration {:?} out of range",
                        short(value)
                    )),
                    Parsed::None,
                );
            }
            match dash_mpd_core::parse(text) {
                Ok(mpd) => {
                    let kind = dash_kind(&mpd);
                    let (view, announced) = view::dash_with_announcements(&mpd);
                    (
                        kind,
                        Parsed::Dash {
                            mpd: Box::new(mpd),
                            view,
                            announced,
                        },
                    )
                }
                Err(e) => (
                    ManifestKind::Unparsed(format!("DASH: {}", short(&e.to_string()))),
                    Parsed::None,
                ),
            }
        }
        _ => match m3u8_rs::parse_playlist_res(body) {
            Ok(m3u8_rs::Playlist::MasterPlaylist(m))
                if !counts_match(
                    body,
                    b"#EXT-X-STREAM-INF",
                    m.variants.iter().filter(|v| !v.is_i_frame).count(),
                ) =>
            {
                (
                    ManifestKind::Unparsed("HLS: variants that do not parse".into()),
                    Parsed::None,
                )
            }
            Ok(m3u8_rs::Playlist::MediaPlaylist(m)) if media_problem(body, &m).is_some() => (
                ManifestKind::Unparsed(format!(
                    "HLS: {}",
                    media_problem(body, &m).unwrap_or_default()
                )),
                Parsed::None,
            ),
            Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => {
                let view = view::hls_master(&m);
                (
                    ManifestKind::HlsMaster,
                    Parsed::HlsMaster { playlist: m, view },
                )
            }
            Ok(m3u8_rs::Playlist::MediaPlaylist(mut m)) => {
                let kind = ManifestKind::HlsMedia {
                    live: !m.end_list && m.playlist_type != Some(m3u8_rs::MediaPlaylistType::Vod),
                    target: Duration::from_secs(m.target_duration.clamp(1, MAX_TARGET_SECS)),
                };
                let mut layout = view::text_layout(body, m.segments.len());
                // LL-HLS: the segment being made, from its parts, is the last segment
                let mut making = false;
                if let Some(l) = layout.as_mut() {
                    if let Some((seg, end)) = low_latency::in_progress(body, l.footer.clone()) {
                        m.segments.push(seg);
                        l.segments.push(l.footer.start..end);
                        l.footer = end..body.len();
                        making = true;
                    }
                }
                let mut view = view::hls_media(&m);
                view.edge = layout
                    .as_ref()
                    .and_then(|l| low_latency::edge(body, l, making));
                view.layout = layout;
                (kind, Parsed::HlsMedia { playlist: m, view })
            }
            Err(e) => (
                ManifestKind::Unparsed(format!("HLS: {}", short(&e.to_string()))),
                Parsed::None,
            ),
        },
    }
}

/// The first `xs:duration` attribute value (`"P..."`, `"-P..."`) with a number too large for
/// dash-mpd-core, whose duration parser multiplies without overflow checks (found by the
/// `dash` fuzz target: `PT99999999999999999H` panics in debug builds and wraps in release
/// ones). Eleven digits per component keep the sum of every component times its unit (years
/// of 365 days ... seconds) below `u64::MAX`; a real MPD's durations are far shorter.
fn oversized_duration(text: &str) -> Option<&str> {
    const MAX_DIGITS: usize = 11;
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(q) = memchr::memchr2(b'"', b'\'', &b[i..]).map(|k| i + k) {
        let quote = b[q];
        let end = memchr::memchr(quote, &b[q + 1..]).map_or(b.len(), |k| q + 1 + k);
        let value = &b[q + 1..end];
        let after_sign = match value.first() {
            Some(b'+' | b'-') => &value[1..],
            _ => value,
        };
        if after_sign.first() == Some(&b'P') {
            let mut run = 0;
            let mut fraction = false;
            for &c in after_sign {
                if c.is_ascii_digit() {
                    run += 1;
                    if run > MAX_DIGITS && !fraction {
                        return text.get(q + 1..end);
                    }
                } else {
                    fraction = matches!(c, b'.' | b',');
                    run = 0;
                }
            }
        }
        i = end + 1;
        if i >= b.len() {
            break;
        }
    }
    None
}

/// m3u8-rs skips what it does not understand; a manifest where it skipped a tag that
/// defines the structure is malformed, not something to edit.
fn counts_match(body: &[u8], tag: &[u8], parsed: usize) -> bool {
    lines(body)
        .filter(|l| l.trim_ascii_start().starts_with(tag))
        .count()
        == parsed
}

/// The lines of a body (memchr finds the ends: the byte-at-a-time `split` was 8% of a
/// 300-segment parse).
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= body.len() {
            return None;
        }
        let end = memchr::memchr(b'\n', &body[at..]).map_or(body.len(), |i| at + i);
        let line = &body[at..end];
        at = end + 1;
        Some(line)
    })
}

/// Why a media playlist m3u8-rs accepted is still malformed, if it is.
fn media_problem(body: &[u8], m: &m3u8_rs::MediaPlaylist) -> Option<String> {
    let n = m.segments.len();
    // one pass: the segment URIs and the EXTINF tags listed, each of which must have parsed
    let (mut uris, mut extinfs) = (0, 0);
    for l in lines(body) {
        let l = l.trim_ascii_start();
        match l.first() {
            Some(b'#') => extinfs += usize::from(l.starts_with(b"#EXTINF")),
            Some(_) => uris += usize::from(!l.trim_ascii_end().is_empty()),
            None => {}
        }
    }
    if extinfs != n || uris != n {
        return Some(format!("{n} segments parse out of {uris} listed"));
    }
    if n > 0 && m.target_duration == 0 {
        return Some("no EXT-X-TARGETDURATION".into());
    }
    if m.target_duration > MAX_TARGET_SECS {
        return Some(format!(
            "EXT-X-TARGETDURATION {} s is beyond {MAX_TARGET_SECS} s",
            m.target_duration
        ));
    }
    m.segments
        .iter()
        .find(|s| !(s.duration.is_finite() && s.duration >= 0.0))
        .map(|s| format!("segment {} has duration {}", s.uri, s.duration))
}

/// Longest target duration or MPD refresh period taken as such: manifest timers derive from
/// them (a day is far beyond any stream's, and keeps every sum and product of them small).
pub const MAX_TARGET_SECS: u64 = 86_400;

fn dash_kind(mpd: &dash_mpd_core::MPD) -> ManifestKind {
    if mpd.mpdtype.as_deref() == Some("dynamic") {
        let refresh = [mpd.minimumUpdatePeriod, mpd.maxSegmentDuration]
            .into_iter()
            .flatten()
            .filter(|d| !d.is_zero())
            .min()
            .unwrap_or(FALLBACK_REFRESH)
            .min(Duration::from_secs(MAX_TARGET_SECS));
        ManifestKind::DashDynamic { refresh }
    } else {
        ManifestKind::DashStatic
    }
}

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

/// Just the kind of a manifest.
pub fn inspect(class: Class, body: &[u8]) -> ManifestKind {
    parse(class, body).0
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
        // what m3u8-rs quietly skips still makes the manifest malformed
        for bad in [
            &b"#EXTM3U\n#EXT-X-TARGETDURATION:two\n#EXTINF:oops,\n\0 garbage"[..],
            b"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\n1.ts\n2.ts\n",
            b"#EXTM3U\n#EXTINF:6,\n1.ts\n",
            b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=x\nv0.m3u8\n",
        ] {
            let (k, p) = parse(Class::HlsPlaylist, bad);
            assert!(matches!(k, ManifestKind::Unparsed(_)), "{k:?}");
            assert!(matches!(p, Parsed::None));
        }
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
        // durations dash-mpd-core would overflow on (found by fuzzing): refused before it
        // sees them; long fractions and ordinary durations are fine
        for bad in [
            r#"<MPD type="static" mediaPresentationDuration="PT0011627460059052638206H"><Period/></MPD>"#,
            r#"<MPD type='static' mediaPresentationDuration='P999999999999Y9M9W'><Period/></MPD>"#,
            r#"<MPD type="dynamic" minimumUpdatePeriod="-P123456789012D"><Period/></MPD>"#,
        ] {
            let (k, p) = parse(Class::DashManifest, bad.as_bytes());
            assert!(
                matches!(&k, ManifestKind::Unparsed(m) if m.contains("out of range")),
                "{k:?}"
            );
            assert!(matches!(p, Parsed::None));
        }
        assert_eq!(
            oversized_duration(
                r#"<MPD a="PT1.1234567890123456S" b="P1Y2M3DT4H5M6S" id="P123456789012345">"#
            ),
            Some("P123456789012345")
        );
        assert_eq!(
            oversized_duration(
                r#"<MPD a="PT1.1234567890123456S" b="P1Y2M3DT4H5M6S" c="x123456789012345">"#
            ),
            None
        );
        assert!(matches!(
            inspect(
                Class::DashManifest,
                stat.replace("PT10S", "PT99999999999S").as_bytes()
            ),
            ManifestKind::DashStatic
        ));
    }
}
