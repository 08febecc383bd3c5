//! What a request asks for, as far as the manifest core cares: the class of its path, the
//! rendition a personalized master's URI names, and the markers stitched URIs carry.

/// What a request is for, decided from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    HlsPlaylist,
    DashManifest,
    Segment,
    Other,
}

impl Class {
    /// Classifies by the extension of the last path segment (query excluded).
    pub fn of(path: &str) -> Class {
        let file = path.rsplit('/').next().unwrap_or_default();
        let ext = file.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
        match ext.to_ascii_lowercase().as_str() {
            "m3u8" => Class::HlsPlaylist,
            "mpd" => Class::DashManifest,
            "ts" | "m4s" | "mp4" | "m4a" | "m4v" | "aac" | "ac3" | "ec3" | "vtt" | "webvtt"
            | "cmfv" | "cmfa" | "cmft" | "init" => Class::Segment,
            _ => Class::Other,
        }
    }

    pub fn is_manifest(self) -> bool {
        matches!(self, Class::HlsPlaylist | Class::DashManifest)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Class::HlsPlaylist => "hls-playlist",
            Class::DashManifest => "dash-manifest",
            Class::Segment => "segment",
            Class::Other => "other",
        }
    }
}

/// Marks a creative's first MPEG-TS segment in a stitched playlist: served with its audio
/// leading to its video's decode time ([`crate::ts_lead`]). Kept from the origin; in the key.
pub const LEAD_PARAM: &str = "mf_lead";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VariantHint {
    Video { bandwidth: u64, height: Option<u32> },
    Audio,
}

impl VariantHint {
    /// `v1200000x720`, `v1200000`, or `a`.
    pub fn parse(v: &str) -> Option<VariantHint> {
        if v == "a" {
            return Some(VariantHint::Audio);
        }
        let rest = v.strip_prefix('v')?;
        let (bw, h) = match rest.split_once('x') {
            Some((bw, h)) => (bw, Some(h.parse().ok()?)),
            None => (rest, None),
        };
        Some(VariantHint::Video {
            bandwidth: bw.parse().ok()?,
            height: h,
        })
    }

    pub fn to_param(self) -> String {
        match self {
            VariantHint::Audio => "a".into(),
            VariantHint::Video {
                bandwidth,
                height: Some(h),
            } => format!("v{bandwidth}x{h}"),
            VariantHint::Video {
                bandwidth,
                height: None,
            } => format!("v{bandwidth}"),
        }
    }
}
