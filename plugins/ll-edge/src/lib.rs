//! Reads the live edge of an LL-HLS media playlist (`low-latency.live-edge`, 0.2.2) and says
//! what it saw in one tag before the newest part's segment: how many parts, the part target,
//! the newest part, the preload hint, and whether that segment is still being made. A
//! playlist without parts gets no tag.

use manifold_plugin_sdk::*;

struct LlEdge;

impl Plugin for LlEdge {
    fn hls_media(_media: HlsMedia, _viewer: Viewer, _config: String) -> Result<Vec<Edit>, String> {
        let Some(edge) = live_edge() else {
            return Ok(Vec::new());
        };
        let Some(last) = edge.parts.last() else {
            return Ok(Vec::new());
        };
        let independent = edge.parts.iter().filter(|p| p.independent).count();
        let line = format!(
            "#EXT-X-LL-EDGE:PARTS={},INDEPENDENT={independent},TARGET={},LAST=\"{}\",HINT=\"{}\",MAKING={}",
            edge.parts.len(),
            edge.part_target,
            last.uri,
            edge.preload_hint.as_deref().unwrap_or(""),
            if edge.in_progress { "YES" } else { "NO" },
        );
        Ok(vec![Edit::AddTag(Tag {
            before_segment: last.segment,
            line,
        })])
    }
}

plugin!(LlEdge);
