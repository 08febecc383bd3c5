//! The manifest view a plugin receives and the edit plan it returns, as plain Rust: the
//! records of `wit/plugin.wit` (`manifold:plugin/types`) with the same names and fields. The
//! proxy's plugin layer converts these to and from its generated bindings; the compiler checks
//! that both sides keep every field.

/// One `EXT-X-STREAM-INF` of an HLS master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub index: u32,
    pub uri: String,
    pub bandwidth: u64,
    pub average_bandwidth: Option<u64>,
    pub resolution: Option<Resolution>,
    pub codecs: Option<String>,
    pub frame_rate: Option<f64>,
    pub audio_group: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolution {
    pub width: u32,
    pub height: u32,
}

/// One `EXT-X-MEDIA` (alternate audio, subtitles, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendition {
    pub index: u32,
    pub kind: String,
    pub group_id: String,
    pub name: String,
    pub language: Option<String>,
    pub uri: Option<String>,
    pub is_default: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HlsMaster {
    pub variants: Vec<Variant>,
    pub renditions: Vec<Rendition>,
}

/// Decoded SCTE-35 fields of a splice signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scte35 {
    pub splice_event_id: Option<u32>,
    pub out_of_network: bool,
    /// Break duration from the signal, seconds.
    pub duration: Option<f64>,
    /// Splice time, 90 kHz ticks.
    pub pts: Option<u64>,
}

/// An ad opportunity found in the manifest (SCTE-35, cue tags, DASH events).
#[derive(Debug, Clone, PartialEq)]
pub struct AdBreak {
    /// Stable across reloads of the same manifest: the signal's id.
    pub id: String,
    /// Seconds from the start of the manifest's timeline (HLS: first listed segment).
    pub start: f64,
    pub duration: f64,
    /// HLS: index (in `segments`) of the first segment of the break.
    pub first_segment: Option<u32>,
    pub scte35: Option<Scte35>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub index: u32,
    /// Media sequence number.
    pub sequence: u64,
    pub uri: String,
    pub duration: f64,
    pub discontinuity: bool,
    /// `EXT-X-PROGRAM-DATE-TIME`, Unix milliseconds.
    pub program_date_time: Option<i64>,
}

/// One `EXT-X-PART` of an LL-HLS media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Index (in `segments`) of the segment the part belongs to.
    pub segment: u32,
    pub uri: String,
    pub duration: f64,
    pub independent: bool,
    pub gap: bool,
}

/// An LL-HLS media playlist's live edge: what plugins see of its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEdge {
    /// `EXT-X-PART-INF` PART-TARGET, seconds.
    pub part_target: f64,
    /// Oldest first, the last [`crate::low_latency::MAX_EDGE_PARTS`] at most.
    pub parts: Vec<Part>,
    /// `EXT-X-PRELOAD-HINT` of TYPE=PART: the part the origin is making.
    pub preload_hint: Option<String>,
    /// The last segment is still being made (listed only as its parts).
    pub in_progress: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HlsMedia {
    pub target_duration: u32,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    /// No `EXT-X-ENDLIST`: the playlist will grow.
    pub live: bool,
    pub segments: Vec<Segment>,
    pub breaks: Vec<AdBreak>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Representation {
    pub id: String,
    pub bandwidth: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub codecs: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdaptationSet {
    pub id: Option<String>,
    /// `video`, `audio`, `text`, ... (from contentType or mimeType).
    pub content_type: String,
    pub representations: Vec<Representation>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub id: Option<String>,
    /// Seconds from the presentation start.
    pub start: Option<f64>,
    pub adaptation_sets: Vec<AdaptationSet>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DashMpd {
    pub dynamic: bool,
    pub periods: Vec<Period>,
    pub breaks: Vec<AdBreak>,
}

/// One ad to play, from the tenant's ad catalog or ad decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Ad {
    pub id: String,
    /// Creative name in the tenant's catalog.
    pub creative: String,
    pub duration: f64,
}

/// An edit the host validates and applies. Indices refer to the view the plugin was given.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// HLS master: drop the variant with this index.
    DropVariant(u32),
    /// HLS master: drop the rendition with this index.
    DropRendition(u32),
    /// DASH: drop the representation with this id.
    DropRepresentation(String),
    /// Play this pod in the break with this id (padded with slate, cut to the break).
    FillBreak(Fill),
    /// Play this pod before the content (VOD, or when a live session starts).
    Preroll(Vec<Ad>),
    /// VOD: play this pod at a position (seconds into the content).
    InsertPod(Insert),
    /// Add a tag before the segment with this index.
    AddTag(Tag),
    /// Replace the URI of a segment (HLS media) or variant (HLS master).
    RewriteUri(UriRewrite),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    pub break_id: String,
    pub pod: Vec<Ad>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    pub at: f64,
    pub pod: Vec<Ad>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub before_segment: u32,
    pub line: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UriRewrite {
    pub index: u32,
    pub uri: String,
}
