//! A plugin of `manifold:plugin@0.2.2` as published (`wit/0.2.2/`), the `session-plugin`
//! world before the `segments` interface: it tags an HLS media playlist with how many segments
//! its input listed and how many parts `low-latency` gave. The host must keep loading it and
//! passing it every segment (it has no other way to read them).

wit_bindgen::generate!({
    path: "../../wit/0.2.2",
    world: "session-plugin",
});

use manifold::plugin::low_latency::live_edge;
use manifold::plugin::types::Tag;

struct Legacy;

impl Guest for Legacy {
    fn hls_master(
        _master: HlsMaster,
        _viewer: Viewer,
        _session: Session,
        _config: String,
    ) -> Result<Vec<Edit>, String> {
        Ok(Vec::new())
    }

    fn hls_media(
        media: HlsMedia,
        _viewer: Viewer,
        _session: Session,
        _config: String,
    ) -> Result<Vec<Edit>, String> {
        let parts = live_edge().map_or(0, |e| e.parts.len());
        let last = media.segments.last().map_or("", |s| s.uri.as_str());
        Ok(vec![Edit::AddTag(Tag {
            before_segment: 0,
            line: format!(
                "#EXT-X-LEGACY-0-2-2:SEGMENTS={},LAST=\"{last}\",PARTS={parts}",
                media.segments.len()
            ),
        })])
    }

    fn dash_mpd(
        _mpd: DashMpd,
        _viewer: Viewer,
        _session: Session,
        _config: String,
    ) -> Result<Vec<Edit>, String> {
        Ok(Vec::new())
    }
}

export!(Legacy);
