//! Step 5: applying a plugin's edit plan to the parsed manifest. Every edit is checked first;
//! one bad edit rejects the whole plan (the failure policy then decides what the viewer gets),
//! so what is served is always either the origin manifest or a valid edited one.

use crate::plugin::bindings::{Ad, Edit};
use crate::view::{BreakSpan, HlsMediaView, TextLayout};
use async_trait::async_trait;
use m3u8_rs::{ExtTag, MasterPlaylist, MediaPlaylist, MediaSegment};
use std::collections::HashSet;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPlan(pub String);

fn invalid<T>(msg: impl Into<String>) -> Result<T, InvalidPlan> {
    Err(InvalidPlan(msg.into()))
}

/// Tags the host writes itself; a plugin may not add them.
const MANAGED_TAGS: &[&str] = &[
    "EXT-X-VERSION",
    "EXT-X-TARGETDURATION",
    "EXT-X-MEDIA-SEQUENCE",
    "EXT-X-DISCONTINUITY-SEQUENCE",
    "EXT-X-DISCONTINUITY",
    "EXT-X-ENDLIST",
    "EXT-X-PLAYLIST-TYPE",
    "EXT-X-I-FRAMES-ONLY",
    "EXT-X-MAP",
    "EXT-X-KEY",
    "EXT-X-BYTERANGE",
    "EXT-X-PROGRAM-DATE-TIME",
    "EXT-X-GAP",
    "EXT-X-BITRATE",
    "EXT-X-PART",
    "EXT-X-PART-INF",
    "EXT-X-SERVER-CONTROL",
    "EXT-X-PRELOAD-HINT",
    "EXT-X-RENDITION-REPORT",
    "EXT-X-SKIP",
    "EXT-X-START",
    "EXT-X-INDEPENDENT-SEGMENTS",
    "EXT-X-STREAM-INF",
    "EXT-X-I-FRAME-STREAM-INF",
    "EXT-X-MEDIA",
    "EXT-X-SESSION-DATA",
    "EXT-X-SESSION-KEY",
    "EXT-X-DEFINE",
];

pub const MAX_TAG_LEN: usize = 1024;
pub const MAX_URI_LEN: usize = 2048;

/// A custom tag line a plugin may add: `#EXT-X-NAME[:value]`, printable, not host-managed.
fn check_tag(line: &str) -> Result<ExtTag, InvalidPlan> {
    if line.len() > MAX_TAG_LEN || line.chars().any(|c| c.is_control()) {
        return invalid(format!(
            "tag longer than {MAX_TAG_LEN} bytes or with control characters"
        ));
    }
    let Some(body) = line.strip_prefix("#EXT-X-") else {
        return invalid(format!("tag {line:?} is not an #EXT-X- tag"));
    };
    let (name, rest) = match body.split_once(':') {
        Some((n, r)) => (n, Some(r.to_string())),
        None => (body, None),
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
    {
        return invalid(format!("tag name in {line:?} must be A-Z 0-9 -"));
    }
    let full = format!("EXT-X-{name}");
    if MANAGED_TAGS.contains(&full.as_str()) {
        return invalid(format!("{full} is managed by the host"));
    }
    Ok(ExtTag {
        tag: format!("X-{name}"),
        rest,
    })
}

/// A URI a plugin may write: relative, or absolute http(s); printable, bounded.
fn check_uri(uri: &str) -> Result<(), InvalidPlan> {
    if uri.is_empty() || uri.len() > MAX_URI_LEN {
        return invalid(format!("URI must be 1-{MAX_URI_LEN} bytes"));
    }
    if uri
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '"')
    {
        return invalid(format!(
            "URI {uri:?} has whitespace, quotes or control characters"
        ));
    }
    if let Some((scheme, _)) = uri.split_once("://") {
        if !matches!(scheme, "http" | "https") {
            return invalid(format!("URI scheme {scheme:?} is not http or https"));
        }
    } else if uri.split_once(':').is_some_and(|(s, _)| !s.contains('/')) {
        return invalid(format!("URI {uri:?} has a non-http scheme"));
    }
    Ok(())
}

pub fn hls_master(m: &MasterPlaylist, edits: &[Edit]) -> Result<MasterPlaylist, InvalidPlan> {
    let mut drop_v = HashSet::new();
    let mut drop_r = HashSet::new();
    let mut out = m.clone();
    for e in edits {
        match e {
            Edit::DropVariant(i) => {
                if *i as usize >= m.variants.len() {
                    return invalid(format!(
                        "drop-variant({i}): only {} variants",
                        m.variants.len()
                    ));
                }
                drop_v.insert(*i as usize);
            }
            Edit::DropRendition(i) => {
                if *i as usize >= m.alternatives.len() {
                    return invalid(format!(
                        "drop-rendition({i}): only {} renditions",
                        m.alternatives.len()
                    ));
                }
                drop_r.insert(*i as usize);
            }
            Edit::RewriteUri(r) => {
                check_uri(&r.uri)?;
                match out.variants.get_mut(r.index as usize) {
                    Some(v) => v.uri = r.uri.clone(),
                    None => return invalid(format!("rewrite-uri({}): no such variant", r.index)),
                }
            }
            other => {
                return invalid(format!(
                    "{} does not apply to a master playlist",
                    edit_name(other)
                ))
            }
        }
    }
    if !m.variants.is_empty() && drop_v.len() == m.variants.len() {
        return invalid("the plan drops every variant");
    }
    let mut i = 0;
    out.variants.retain(|_| {
        i += 1;
        !drop_v.contains(&(i - 1))
    });
    let mut i = 0;
    out.alternatives.retain(|_| {
        i += 1;
        !drop_r.contains(&(i - 1))
    });
    // a variant must not point at a rendition group the plan emptied
    for v in &out.variants {
        for group in [&v.audio, &v.subtitles, &v.video].into_iter().flatten() {
            let had = m.alternatives.iter().any(|a| &a.group_id == group);
            let has = out.alternatives.iter().any(|a| &a.group_id == group);
            if had && !has {
                return invalid(format!(
                    "the plan empties rendition group {group:?} still used by a variant"
                ));
            }
        }
    }
    Ok(out)
}

fn edit_name(e: &Edit) -> &'static str {
    match e {
        Edit::DropVariant(_) => "drop-variant",
        Edit::DropRendition(_) => "drop-rendition",
        Edit::DropRepresentation(_) => "drop-representation",
        Edit::FillBreak(_) => "fill-break",
        Edit::Preroll(_) => "preroll",
        Edit::AddTag(_) => "add-tag",
        Edit::RewriteUri(_) => "rewrite-uri",
    }
}

/// How the content is packaged, so ads come in the same packaging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Packaging {
    Ts,
    Fmp4,
}

/// Which rendition of a creative fits the content rendition being personalized.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RenditionWant {
    pub audio_only: bool,
    pub bandwidth: Option<u64>,
    pub height: Option<u32>,
}

/// A creative's segments for one rendition, with URIs the viewer can fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct AdMedia {
    pub segments: Vec<(String, f64)>,
    /// `EXT-X-MAP` URI for fMP4.
    pub map: Option<String>,
}

/// Finds ad creatives' media (the tenant's catalog, fetched through the manifest cache).
#[async_trait]
pub trait Creatives: Send + Sync {
    async fn media(
        &self,
        creative: &str,
        packaging: Packaging,
        want: RenditionWant,
    ) -> Result<Arc<AdMedia>, String>;

    /// The slate creative that pads breaks, if the tenant has one.
    fn slate(&self) -> Option<&str>;
}

/// One item of a laid-out pod: a segment at an offset into the break.
struct PodSegment {
    uri: String,
    duration: f64,
    offset: f64,
    /// First segment of a new creative (discontinuity, new init segment).
    starts_creative: bool,
    map: Option<String>,
}

/// Lays `ads` out over a break of `duration` seconds: whole ads that fit (cut policy: an ad
/// that would overrun the break is skipped), then slate to fill what is left.
async fn lay_out(
    pod: &[Ad],
    duration: f64,
    target: f64,
    packaging: Packaging,
    want: RenditionWant,
    creatives: &dyn Creatives,
) -> Result<Vec<PodSegment>, InvalidPlan> {
    let mut out = Vec::new();
    let mut offset = 0.0;
    let fits_target = |m: &AdMedia| m.segments.iter().all(|(_, d)| d.round() <= target);
    for ad in pod {
        if !(0.0..=3600.0).contains(&ad.duration) || ad.duration == 0.0 {
            return invalid(format!("ad {:?} has duration {}", ad.id, ad.duration));
        }
        let media = creatives
            .media(&ad.creative, packaging, want)
            .await
            .map_err(|e| InvalidPlan(format!("ad {:?}: {e}", ad.id)))?;
        let total: f64 = media.segments.iter().map(|(_, d)| d).sum();
        if offset + total > duration + 0.25 || !fits_target(&media) {
            // does not fit the break or the target duration: not used, slate instead
            continue;
        }
        push_media(&mut out, &media, &mut offset);
    }
    if let Some(slate) = creatives.slate() {
        let media = creatives
            .media(slate, packaging, want)
            .await
            .map_err(|e| InvalidPlan(format!("slate: {e}")))?;
        let slate_len: f64 = media.segments.iter().map(|(_, d)| d).sum();
        if slate_len > 0.0 && fits_target(&media) {
            let mut first = true;
            while offset < duration - 0.25 {
                for (i, (uri, d)) in media.segments.iter().enumerate() {
                    if offset + d > duration + 0.25 {
                        break;
                    }
                    out.push(PodSegment {
                        uri: uri.clone(),
                        duration: *d,
                        offset,
                        starts_creative: first && i == 0,
                        map: if first && i == 0 {
                            media.map.clone()
                        } else {
                            None
                        },
                    });
                    offset += d;
                }
                first = false;
                if media
                    .segments
                    .iter()
                    .all(|(_, d)| offset + d > duration + 0.25)
                {
                    break;
                }
            }
        }
    }
    Ok(out)
}

fn push_media(out: &mut Vec<PodSegment>, media: &AdMedia, offset: &mut f64) {
    for (i, (uri, d)) in media.segments.iter().enumerate() {
        out.push(PodSegment {
            uri: uri.clone(),
            duration: *d,
            offset: *offset,
            starts_creative: i == 0,
            map: if i == 0 { media.map.clone() } else { None },
        });
        *offset += d;
    }
}

fn init_map(uri: &str) -> m3u8_rs::Map {
    m3u8_rs::Map {
        uri: uri.to_string(),
        ..Default::default()
    }
}

fn pdt_plus(
    t: Option<chrono::DateTime<chrono::FixedOffset>>,
    secs: f64,
) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    t.map(|t| t + chrono::Duration::milliseconds((secs * 1000.0).round() as i64))
}

/// An output segment that is not the origin's: an ad or slate segment.
struct AdOut {
    uri: String,
    duration: f64,
    discontinuity: bool,
    map: Option<String>,
    pdt: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Content segment whose signalling (cue tags, date range) this one carries.
    carries: Option<usize>,
}

/// One segment of the output, in order.
enum Out {
    Content {
        index: usize,
        /// Starts a new timeline after ads: add a discontinuity, re-emit init and key.
        after_ads: bool,
    },
    Ad(AdOut),
}

/// Applies a plan to a media playlist and serializes the result. Breaks are filled by
/// replacing each content segment of the break with the pod segments that start within its
/// time span, so the same break shows the same ads on every reload and the playlist only
/// grows at the live edge. With the origin text's layout, untouched segments are copied as
/// they were (byte-exact) and only new lines are written.
pub async fn hls_media(
    m: &MediaPlaylist,
    view: &HlsMediaView,
    body: &[u8],
    edits: &[Edit],
    want: RenditionWant,
    creatives: &dyn Creatives,
) -> Result<Vec<u8>, InvalidPlan> {
    let n = m.segments.len();
    let mut added: Vec<Vec<ExtTag>> = vec![Vec::new(); n];
    let mut uris: Vec<Option<String>> = vec![None; n];
    let mut fills: Vec<(&BreakSpan, &[Ad])> = Vec::new();
    let mut preroll: Option<&[Ad]> = None;
    for e in edits {
        match e {
            Edit::AddTag(t) => {
                let tag = check_tag(&t.line)?;
                match added.get_mut(t.before_segment as usize) {
                    Some(v) => v.push(tag),
                    None => {
                        return invalid(format!(
                            "add-tag before segment {}: only {n} segments",
                            t.before_segment
                        ))
                    }
                }
            }
            Edit::RewriteUri(r) => {
                check_uri(&r.uri)?;
                match uris.get_mut(r.index as usize) {
                    Some(u) => *u = Some(r.uri.clone()),
                    None => return invalid(format!("rewrite-uri({}): only {n} segments", r.index)),
                }
            }
            Edit::FillBreak(f) => {
                let Some(span) = view.spans.iter().find(|s| s.id == f.break_id) else {
                    return invalid(format!(
                        "fill-break: no break {:?} in this playlist",
                        f.break_id
                    ));
                };
                if fills.iter().any(|(s, _)| s.id == span.id) {
                    return invalid(format!("fill-break: break {:?} filled twice", span.id));
                }
                fills.push((span, &f.pod));
            }
            Edit::Preroll(pod) => {
                if preroll.replace(pod).is_some() {
                    return invalid("more than one preroll");
                }
            }
            other => {
                return invalid(format!(
                    "{} does not apply to a media playlist",
                    edit_name(other)
                ))
            }
        }
    }
    let packaging = if m.segments.iter().any(|s| s.map.is_some()) {
        Packaging::Fmp4
    } else {
        Packaging::Ts
    };
    let target = m.target_duration as f64;
    // the ad segments standing in for each content segment of a filled break
    let mut replaced: Vec<Option<Vec<AdOut>>> = (0..n).map(|_| None).collect();
    let mut after_ads = vec![false; n];
    for (span, pod) in &fills {
        let laid = lay_out(pod, span.duration, target, packaging, want, creatives).await?;
        let break_pdt = m.segments[span.first]
            .program_date_time
            .map(|t| t - chrono::Duration::milliseconds((span.elapsed * 1000.0).round() as i64));
        let mut t = span.elapsed;
        for (j, content) in m
            .segments
            .iter()
            .enumerate()
            .take(span.end)
            .skip(span.first)
        {
            let d = content.duration as f64;
            let mut first = true;
            let ads = laid
                .iter()
                .filter(|p| p.offset >= t - 0.001 && p.offset < t + d - 0.001)
                .map(|p| {
                    let carries = first.then_some(j);
                    first = false;
                    AdOut {
                        uri: p.uri.clone(),
                        duration: p.duration,
                        discontinuity: p.starts_creative,
                        map: p.map.clone(),
                        pdt: pdt_plus(break_pdt, p.offset),
                        carries,
                    }
                })
                .collect();
            t += d;
            replaced[j] = Some(ads);
        }
        if span.end < n {
            after_ads[span.end] = true;
        }
    }
    let mut out: Vec<Out> = Vec::with_capacity(n + 16);
    if let Some(pod) = preroll {
        if view.view.live {
            return invalid("preroll on a live playlist needs viewer sessions (not supported yet)");
        }
        let total = pod.iter().map(|a| a.duration).sum();
        let laid = lay_out(pod, total, target, packaging, want, creatives).await?;
        if !laid.is_empty() && n > 0 {
            after_ads[0] = true;
        }
        out.extend(laid.iter().map(|p| {
            Out::Ad(AdOut {
                uri: p.uri.clone(),
                duration: p.duration,
                discontinuity: p.starts_creative && p.offset > 0.0,
                map: p.map.clone(),
                pdt: None,
                carries: None,
            })
        }));
    }
    for (j, r) in replaced.into_iter().enumerate() {
        match r {
            Some(ads) => out.extend(ads.into_iter().map(Out::Ad)),
            None => out.push(Out::Content {
                index: j,
                after_ads: after_ads[j],
            }),
        }
    }
    if out.is_empty() {
        return invalid("the plan leaves no segments");
    }
    // the first segment never opens with a discontinuity the playlist does not count
    if let Some(Out::Ad(a)) = out.first_mut() {
        a.discontinuity = false;
    }
    let encrypted = m.segments.iter().any(|s| {
        s.key
            .as_ref()
            .is_some_and(|k| k.method != m3u8_rs::KeyMethod::None)
    });
    Ok(match (&view.layout, body.is_empty()) {
        (Some(layout), false) => render_text(body, layout, &out, &added, &uris, encrypted),
        _ => render_m3u8(m, out, added, uris, encrypted),
    })
}

fn write_ad(w: &mut Vec<u8>, a: &AdOut, carried: &[&[u8]], key_none: bool) {
    use std::io::Write;
    if a.discontinuity {
        w.extend_from_slice(b"#EXT-X-DISCONTINUITY\n");
    }
    if key_none {
        w.extend_from_slice(b"#EXT-X-KEY:METHOD=NONE\n");
    }
    if let Some(map) = &a.map {
        let _ = writeln!(w, "#EXT-X-MAP:URI=\"{map}\"");
    }
    if let Some(t) = a.pdt {
        let _ = writeln!(
            w,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
    }
    for line in carried {
        w.extend_from_slice(line);
        w.push(b'\n');
    }
    let _ = write!(w, "#EXTINF:{:.3},\n{}\n", a.duration, a.uri);
}

/// Lines of a content segment's text.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| *b == b'\n')
        .map(|l| l.trim_ascii_end())
        .filter(|l| !l.is_empty())
}

fn has_tag(text: &[u8], tag: &[u8]) -> bool {
    lines(text).any(|l| l.starts_with(tag))
}

/// Signalling a replaced content segment hands to the ad segment in its place: cue tags,
/// date ranges, custom tags (not its timing, init, key or URI).
fn carried_lines(text: &[u8]) -> Vec<&[u8]> {
    const OWN: [&[u8]; 8] = [
        b"#EXTINF",
        b"#EXT-X-DISCONTINUITY",
        b"#EXT-X-MAP",
        b"#EXT-X-KEY",
        b"#EXT-X-PROGRAM-DATE-TIME",
        b"#EXT-X-BYTERANGE",
        b"#EXT-X-GAP",
        b"#EXT-X-BITRATE",
    ];
    lines(text)
        .filter(|l| l.starts_with(b"#") && !OWN.iter().any(|t| l.starts_with(t)))
        .collect()
}

fn render_text(
    body: &[u8],
    layout: &TextLayout,
    out: &[Out],
    added: &[Vec<ExtTag>],
    uris: &[Option<String>],
    encrypted: bool,
) -> Vec<u8> {
    use std::io::Write;
    let mut w = Vec::with_capacity(body.len() + out.len() * 64);
    w.extend_from_slice(&body[layout.header.clone()]);
    // init segment and key in force for the content, as its text goes by
    let mut map_line: Option<&[u8]> = None;
    let mut key_line: Option<&[u8]> = None;
    fn track<'a>(text: &'a [u8], map: &mut Option<&'a [u8]>, key: &mut Option<&'a [u8]>) {
        for l in lines(text) {
            if l.starts_with(b"#EXT-X-MAP") {
                *map = Some(l);
            } else if l.starts_with(b"#EXT-X-KEY") {
                *key = Some(l);
            }
        }
    }
    let mut in_ads = false;
    for item in out {
        match item {
            Out::Ad(a) => {
                let carried = a
                    .carries
                    .map(|j| {
                        let text = &body[layout.segments[j].clone()];
                        track(text, &mut map_line, &mut key_line);
                        carried_lines(text)
                    })
                    .unwrap_or_default();
                write_ad(&mut w, a, &carried, encrypted && !in_ads);
                in_ads = true;
            }
            Out::Content { index, after_ads } => {
                let text = &body[layout.segments[*index].clone()];
                if *after_ads || in_ads {
                    if !has_tag(text, b"#EXT-X-DISCONTINUITY") {
                        w.extend_from_slice(b"#EXT-X-DISCONTINUITY\n");
                    }
                    if let (Some(map), false) = (map_line, has_tag(text, b"#EXT-X-MAP")) {
                        w.extend_from_slice(map);
                        w.push(b'\n');
                    }
                    if let (Some(key), false) = (key_line, has_tag(text, b"#EXT-X-KEY")) {
                        w.extend_from_slice(key);
                        w.push(b'\n');
                    }
                }
                in_ads = false;
                track(text, &mut map_line, &mut key_line);
                for t in &added[*index] {
                    let _ = writeln!(w, "{t}");
                }
                match &uris[*index] {
                    None => w.extend_from_slice(text),
                    Some(uri) => {
                        // everything but the URI line, then the new URI
                        let uri_at = text
                            .trim_ascii_end()
                            .iter()
                            .rposition(|b| *b == b'\n')
                            .map_or(0, |i| i + 1);
                        w.extend_from_slice(&text[..uri_at]);
                        let _ = writeln!(w, "{uri}");
                    }
                }
            }
        }
    }
    w.extend_from_slice(&body[layout.footer.clone()]);
    w
}

fn render_m3u8(
    m: &MediaPlaylist,
    out: Vec<Out>,
    mut added: Vec<Vec<ExtTag>>,
    mut uris: Vec<Option<String>>,
    encrypted: bool,
) -> Vec<u8> {
    let mut segments = Vec::with_capacity(out.len());
    let mut map: Option<m3u8_rs::Map> = None;
    let mut key: Option<m3u8_rs::Key> = None;
    let mut in_ads = false;
    for item in out {
        match item {
            Out::Ad(a) => {
                let mut seg = MediaSegment {
                    uri: a.uri,
                    duration: a.duration as f32,
                    discontinuity: a.discontinuity,
                    map: a.map.as_deref().map(init_map),
                    program_date_time: a.pdt,
                    ..MediaSegment::empty()
                };
                if let Some(j) = a.carries {
                    let c = &m.segments[j];
                    map = c.map.clone().or(map);
                    key = c.key.clone().or(key);
                    seg.unknown_tags = c.unknown_tags.clone();
                    seg.daterange = c.daterange.clone();
                }
                if encrypted && !in_ads {
                    seg.key = Some(m3u8_rs::Key {
                        method: m3u8_rs::KeyMethod::None,
                        ..Default::default()
                    });
                }
                in_ads = true;
                segments.push(seg);
            }
            Out::Content { index, after_ads } => {
                let mut seg = m.segments[index].clone();
                if after_ads || in_ads {
                    seg.discontinuity = true;
                    if seg.map.is_none() {
                        seg.map = map.clone();
                    }
                    if seg.key.is_none() {
                        seg.key = key.clone();
                    }
                }
                in_ads = false;
                map = seg.map.clone().or(map);
                key = seg.key.clone().or(key);
                seg.unknown_tags.append(&mut added[index]);
                if let Some(u) = uris[index].take() {
                    seg.uri = u;
                }
                segments.push(seg);
            }
        }
    }
    let out = MediaPlaylist {
        segments,
        ..m.clone_without_segments()
    };
    let mut buf = Vec::new();
    let _ = out.write_to(&mut buf);
    buf
}

/// Cloning a playlist's header without copying its segments twice.
trait CloneHeader {
    fn clone_without_segments(&self) -> Self;
}

impl CloneHeader for MediaPlaylist {
    fn clone_without_segments(&self) -> MediaPlaylist {
        MediaPlaylist {
            version: self.version,
            target_duration: self.target_duration,
            media_sequence: self.media_sequence,
            segments: Vec::new(),
            discontinuity_sequence: self.discontinuity_sequence,
            end_list: self.end_list,
            playlist_type: self.playlist_type.clone(),
            i_frames_only: self.i_frames_only,
            start: self.start.clone(),
            independent_segments: self.independent_segments,
            unknown_tags: self.unknown_tags.clone(),
        }
    }
}

pub fn dash(mpd: &dash_mpd_core::MPD, edits: &[Edit]) -> Result<dash_mpd_core::MPD, InvalidPlan> {
    let mut out = mpd.clone();
    for e in edits {
        match e {
            Edit::DropRepresentation(id) => {
                let mut found = false;
                for p in &mut out.periods {
                    for a in &mut p.adaptations {
                        let before = a.representations.len();
                        a.representations
                            .retain(|r| r.id.as_deref() != Some(id.as_str()));
                        if a.representations.len() != before {
                            found = true;
                            if a.representations.is_empty() {
                                return invalid(format!(
                                    "dropping {id:?} empties an adaptation set"
                                ));
                            }
                        }
                    }
                }
                if !found {
                    return invalid(format!("drop-representation: no representation {id:?}"));
                }
            }
            Edit::FillBreak(_) | Edit::Preroll(_) => {
                return invalid("ad insertion into DASH is not supported yet (HLS only)")
            }
            other => return invalid(format!("{} does not apply to an MPD", edit_name(other))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::bindings::{Fill, Tag, UriRewrite};
    use crate::view;

    fn master() -> MasterPlaylist {
        let text =
            "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en\",URI=\"a0.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=1000,RESOLUTION=320x180,AUDIO=\"aud\"\nv0.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=2000,RESOLUTION=640x360,AUDIO=\"aud\"\nv1.m3u8\n";
        match m3u8_rs::parse_playlist_res(text.as_bytes()).unwrap() {
            m3u8_rs::Playlist::MasterPlaylist(m) => m,
            _ => panic!(),
        }
    }

    #[test]
    fn master_edits_are_checked_then_applied() {
        let m = master();
        let out = hls_master(&m, &[Edit::DropVariant(1)]).unwrap();
        assert_eq!(out.variants.len(), 1);
        assert_eq!(out.variants[0].uri, "v0.m3u8");
        assert!(hls_master(&m, &[Edit::DropVariant(0), Edit::DropVariant(1)]).is_err());
        assert!(hls_master(&m, &[Edit::DropVariant(7)]).is_err());
        assert!(
            hls_master(&m, &[Edit::DropRendition(0)]).is_err(),
            "group still used"
        );
        let rw = Edit::RewriteUri(UriRewrite {
            index: 0,
            uri: "low/v0.m3u8".into(),
        });
        assert_eq!(
            hls_master(&m, &[rw]).unwrap().variants[0].uri,
            "low/v0.m3u8"
        );
        let bad = Edit::RewriteUri(UriRewrite {
            index: 0,
            uri: "javascript:alert(1)".into(),
        });
        assert!(hls_master(&m, &[bad]).is_err());
        assert!(hls_master(&m, &[Edit::Preroll(vec![])]).is_err());
    }

    #[test]
    fn tags_are_custom_printable_and_not_host_managed() {
        assert!(check_tag("#EXT-X-MY-TAG:1").is_ok());
        assert!(check_tag("#EXT-X-FLAG").is_ok());
        assert!(check_tag("#EXT-X-MEDIA-SEQUENCE:0").is_err());
        assert!(check_tag("#EXT-X-DISCONTINUITY").is_err());
        assert!(check_tag("#EXTINF:2,").is_err());
        assert!(check_tag("#EXT-X-A:1\n#EXT-X-ENDLIST").is_err());
        assert!(check_tag("#EXT-X-lower").is_err());
        assert!(check_tag(&format!("#EXT-X-A:{}", "x".repeat(2000))).is_err());
    }

    #[test]
    fn uris_are_http_or_relative() {
        for ok in [
            "a.ts",
            "../b/c.ts?x=1",
            "/abs/path.ts",
            "https://cdn.example/a.ts",
        ] {
            assert!(check_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b.ts",
            "file:///etc/passwd",
            "data:text/plain,hi",
            "a\n.ts",
            "ftp://x/y",
        ] {
            assert!(check_uri(bad).is_err(), "{bad:?}");
        }
    }

    struct FakeCreatives;

    #[async_trait]
    impl Creatives for FakeCreatives {
        async fn media(
            &self,
            creative: &str,
            _p: Packaging,
            _w: RenditionWant,
        ) -> Result<Arc<AdMedia>, String> {
            let (n, d) = match creative {
                "ad4" => (2, 2.0),
                "ad6" => (3, 2.0),
                "slate" => (2, 1.0),
                "long" => (2, 5.0),
                _ => return Err(format!("unknown creative {creative}")),
            };
            Ok(Arc::new(AdMedia {
                segments: (0..n)
                    .map(|i| (format!("/ads/{creative}/{i}.ts"), d))
                    .collect(),
                map: None,
            }))
        }
        fn slate(&self) -> Option<&str> {
            Some("slate")
        }
    }

    fn parse_media(text: &[u8]) -> MediaPlaylist {
        match m3u8_rs::parse_playlist_res(text).unwrap() {
            m3u8_rs::Playlist::MediaPlaylist(m) => m,
            _ => panic!("not media: {}", String::from_utf8_lossy(text)),
        }
    }

    /// Applies edits to playlist text through both renderers; they must agree, and the
    /// output must parse.
    async fn run(text: &str, edits: &[Edit]) -> Result<MediaPlaylist, InvalidPlan> {
        let m = parse_media(text.as_bytes());
        let v = view::hls_media_with_text(&m, text.as_bytes());
        assert!(v.layout.is_some(), "layout of {text}");
        let spliced = hls_media(
            &m,
            &v,
            text.as_bytes(),
            edits,
            RenditionWant::default(),
            &FakeCreatives,
        )
        .await?;
        let rebuilt =
            hls_media(&m, &v, b"", edits, RenditionWant::default(), &FakeCreatives).await?;
        let a = parse_media(&spliced);
        let b = parse_media(&rebuilt);
        assert_eq!(a.segments.len(), b.segments.len());
        for (x, y) in a.segments.iter().zip(&b.segments) {
            assert_eq!(
                (&x.uri, x.discontinuity, &x.map, x.program_date_time),
                (&y.uri, y.discontinuity, &y.map, y.program_date_time)
            );
        }
        Ok(a)
    }

    fn live_text(first_seq: u64) -> String {
        let mut text =
            format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first_seq}\n");
        for n in first_seq..first_seq + 8 {
            if n == 12 {
                text += "#EXT-X-CUE-OUT:DURATION=10\n";
            } else if n > 12 && n < 17 {
                text += &format!(
                    "#EXT-X-CUE-OUT-CONT:ElapsedTime={},Duration=10\n",
                    (n - 12) * 2
                );
            } else if n == 17 {
                text += "#EXT-X-CUE-IN\n";
            }
            text += &format!(
                "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:{:02}.000Z\n#EXTINF:2.0,\nc/{n}.ts\n",
                n * 2 % 60
            );
        }
        text
    }

    fn uris(m: &MediaPlaylist) -> Vec<String> {
        m.segments.iter().map(|s| s.uri.clone()).collect()
    }

    fn fill(pod: &[&str]) -> Edit {
        Edit::FillBreak(Fill {
            break_id: "cue-12".into(),
            pod: pod
                .iter()
                .map(|c| Ad {
                    id: c.to_string(),
                    creative: c.to_string(),
                    duration: 4.0,
                })
                .collect(),
        })
    }

    #[tokio::test]
    async fn a_break_is_replaced_by_ads_then_slate_with_discontinuities() {
        let out = run(&live_text(10), &[fill(&["ad4", "ad6"])]).await.unwrap();
        assert_eq!(
            uris(&out),
            vec![
                "c/10.ts",
                "c/11.ts",
                "/ads/ad4/0.ts",
                "/ads/ad4/1.ts",
                "/ads/ad6/0.ts",
                "/ads/ad6/1.ts",
                "/ads/ad6/2.ts",
                "c/17.ts"
            ]
        );
        let disc: Vec<bool> = out.segments.iter().map(|s| s.discontinuity).collect();
        assert_eq!(
            disc,
            vec![false, false, true, false, true, false, false, true]
        );
        // cue signalling kept on the first replacement, PDT continuous through the break
        assert_eq!(out.segments[2].unknown_tags[0].tag, "X-CUE-OUT");
        let pdt = |i: usize| {
            out.segments[i]
                .program_date_time
                .unwrap()
                .timestamp_millis()
        };
        assert_eq!(pdt(3) - pdt(2), 2000);
        assert_eq!(pdt(6) - pdt(2), 8000);
        let total: f32 = out.segments[2..7].iter().map(|s| s.duration).sum();
        assert_eq!(total, 10.0, "the break keeps its duration");
    }

    #[tokio::test]
    async fn short_pods_are_padded_with_slate_and_long_ads_skipped() {
        let out = run(&live_text(10), &[fill(&["long", "ad4"])])
            .await
            .unwrap();
        // "long" has 5 s segments (over the 2 s target): not used; ad4 (4 s) + 6 s of slate
        let u = uris(&out);
        assert_eq!(&u[2..4], &["/ads/ad4/0.ts", "/ads/ad4/1.ts"]);
        assert!(
            u[4..10].iter().all(|x| x.starts_with("/ads/slate/")),
            "{u:?}"
        );
        assert_eq!(u[10], "c/17.ts");
    }

    #[tokio::test]
    async fn reloads_are_append_only_for_the_same_break() {
        let edits = [fill(&["ad4", "ad6"])];
        let ua = uris(&run(&live_text(10), &edits).await.unwrap());
        // the window slid by 3 segments, mid-break
        let ub = uris(&run(&live_text(13), &edits).await.unwrap());
        let start = ua.iter().position(|x| x == &ub[0]).expect("overlap");
        assert_eq!(&ua[start..], &ub[..ua.len() - start]);
    }

    #[tokio::test]
    async fn bad_plans_are_refused_whole() {
        let t = live_text(10);
        let tag = |i: u32, l: &str| {
            Edit::AddTag(Tag {
                before_segment: i,
                line: l.into(),
            })
        };
        assert!(run(&t, &[tag(99, "#EXT-X-A")]).await.is_err());
        assert!(run(&t, &[tag(0, "#EXT-X-ENDLIST")]).await.is_err());
        let unknown = Edit::FillBreak(Fill {
            break_id: "nope".into(),
            pod: vec![],
        });
        assert!(run(&t, &[unknown]).await.is_err());
        assert!(run(&t, &[fill(&["ad4"]), fill(&["ad6"])]).await.is_err());
        assert!(run(&t, &[fill(&["nosuch"])]).await.is_err());
        assert!(
            run(&t, &[Edit::Preroll(vec![])]).await.is_err(),
            "live preroll"
        );
        assert!(run(&t, &[Edit::DropVariant(0)]).await.is_err());
        let rw = Edit::RewriteUri(UriRewrite {
            index: 0,
            uri: "https://cdn.example/c10.ts".into(),
        });
        let ok = run(&t, &[tag(1, "#EXT-X-MINE:1"), rw]).await.unwrap();
        assert_eq!(
            ok.segments[1].unknown_tags.last().unwrap().to_string(),
            "#EXT-X-MINE:1"
        );
        assert_eq!(ok.segments[0].uri, "https://cdn.example/c10.ts");
    }

    #[tokio::test]
    async fn untouched_segments_are_copied_byte_exact_and_keys_survive_breaks() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
#EXT-X-KEY:METHOD=AES-128,URI=\"k.bin\"\n#EXTINF:2.000,odd title\nc0.ts\n\
#EXT-X-CUE-OUT:DURATION=4\n#EXTINF:2.0,\nc1.ts\n#EXTINF:2.0,\nc2.ts\n#EXT-X-CUE-IN\n#EXTINF:2.0,\nc3.ts\n";
        let pod = vec![Ad {
            id: "a".into(),
            creative: "ad4".into(),
            duration: 4.0,
        }];
        let f = Edit::FillBreak(Fill {
            break_id: "cue-1".into(),
            pod,
        });
        let m = parse_media(text.as_bytes());
        let v = view::hls_media_with_text(&m, text.as_bytes());
        let out = hls_media(
            &m,
            &v,
            text.as_bytes(),
            std::slice::from_ref(&f),
            RenditionWant::default(),
            &FakeCreatives,
        )
        .await
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-KEY:METHOD=AES-128,URI=\"k.bin\"\n#EXTINF:2.000,odd title\nc0.ts\n"),
            "{out}"
        );
        // ads are not encrypted; the content key comes back after them
        assert!(out.contains("#EXT-X-KEY:METHOD=NONE\n"), "{out}");
        assert!(
            out.ends_with("#EXT-X-DISCONTINUITY\n#EXT-X-KEY:METHOD=AES-128,URI=\"k.bin\"\n#EXT-X-CUE-IN\n#EXTINF:2.0,\nc3.ts\n"),
            "{out}"
        );
        let both = run(text, &[f]).await.unwrap();
        assert_eq!(both.segments.len(), 4);
    }

    #[tokio::test]
    async fn vod_preroll_goes_first() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:2.0,\na.ts\n#EXTINF:2.0,\nb.ts\n#EXT-X-ENDLIST\n";
        let pod = vec![Ad {
            id: "x".into(),
            creative: "ad4".into(),
            duration: 4.0,
        }];
        let out = run(text, &[Edit::Preroll(pod)]).await.unwrap();
        assert_eq!(
            uris(&out),
            vec!["/ads/ad4/0.ts", "/ads/ad4/1.ts", "a.ts", "b.ts"]
        );
        assert!(!out.segments[0].discontinuity && out.segments[2].discontinuity);
        assert!(out.end_list);
    }
}
