//! Step 5: applying a plugin's edit plan to the parsed manifest. Every edit is checked first;
//! one bad edit rejects the whole plan (the failure policy then decides what the viewer gets),
//! so what is served is always either the origin manifest or a valid edited one.

use crate::plugin::bindings::{Ad, Edit};
use crate::view::{BreakSpan, HlsMediaView};
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

/// Applies a plan to a media playlist. Breaks are filled by replacing each content segment of
/// the break with the pod segments that start within its time span, so the same break shows
/// the same ads on every reload and the playlist only grows at the live edge.
pub async fn hls_media(
    m: &MediaPlaylist,
    view: &HlsMediaView,
    edits: &[Edit],
    want: RenditionWant,
    creatives: &dyn Creatives,
) -> Result<MediaPlaylist, InvalidPlan> {
    let n = m.segments.len();
    let mut segments: Vec<MediaSegment> = m.segments.clone();
    let mut fills: Vec<(&BreakSpan, &[Ad])> = Vec::new();
    let mut preroll: Option<&[Ad]> = None;
    for e in edits {
        match e {
            Edit::AddTag(t) => {
                let tag = check_tag(&t.line)?;
                match segments.get_mut(t.before_segment as usize) {
                    Some(s) => s.unknown_tags.push(tag),
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
                match segments.get_mut(r.index as usize) {
                    Some(s) => s.uri = r.uri.clone(),
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
    let content_map = m.segments.iter().find_map(|s| s.map.clone());
    let target = m.target_duration as f64;
    // replacement segments for each content index inside a filled break
    let mut replaced: Vec<Option<Vec<MediaSegment>>> = vec![None; n];
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
            let mut out: Vec<MediaSegment> = laid
                .iter()
                .filter(|p| p.offset >= t - 0.001 && p.offset < t + d - 0.001)
                .map(|p| MediaSegment {
                    uri: p.uri.clone(),
                    duration: p.duration as f32,
                    discontinuity: p.starts_creative,
                    map: p.map.as_deref().map(init_map),
                    program_date_time: pdt_plus(break_pdt, p.offset),
                    ..MediaSegment::empty()
                })
                .collect();
            if let Some(first) = out.first_mut() {
                // the cue and date-range signalling stays where the content had it
                first.unknown_tags = content.unknown_tags.clone();
                first.daterange = content.daterange.clone();
            }
            t += d;
            replaced[j] = Some(std::mem::take(&mut out));
        }
        // back to content: a new timeline and (fMP4) the content's init segment again
        if let Some(after) = segments.get_mut(span.end) {
            after.discontinuity = true;
            if packaging == Packaging::Fmp4 && after.map.is_none() {
                after.map = content_map.clone();
            }
        }
    }
    let mut out_segments = Vec::with_capacity(n + 16);
    if let Some(pod) = preroll {
        if !view.view.live {
            let laid = lay_out(
                pod,
                pod.iter().map(|a| a.duration).sum(),
                target,
                packaging,
                want,
                creatives,
            )
            .await?;
            out_segments.extend(laid.iter().map(|p| MediaSegment {
                uri: p.uri.clone(),
                duration: p.duration as f32,
                discontinuity: p.starts_creative && p.offset > 0.0,
                map: p.map.as_deref().map(init_map),
                ..MediaSegment::empty()
            }));
            if let Some(first) = segments.first_mut() {
                if !out_segments.is_empty() {
                    first.discontinuity = true;
                    if packaging == Packaging::Fmp4 && first.map.is_none() {
                        first.map = content_map.clone();
                    }
                }
            }
        } else {
            return invalid("preroll on a live playlist needs viewer sessions (not supported yet)");
        }
    }
    for (j, seg) in segments.into_iter().enumerate() {
        match replaced[j].take() {
            Some(ads) => out_segments.extend(ads),
            None => out_segments.push(seg),
        }
    }
    if out_segments.is_empty() {
        return invalid("the plan leaves no segments");
    }
    // a playlist never starts with a discontinuity it does not count
    if let Some(first) = out_segments.first_mut() {
        if first.discontinuity && !m.segments.first().is_some_and(|s| s.discontinuity) {
            first.discontinuity = false;
        }
    }
    Ok(MediaPlaylist {
        segments: out_segments,
        ..m.clone_without_segments()
    })
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

    fn live_with_break(first_seq: u64) -> MediaPlaylist {
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
        match m3u8_rs::parse_playlist_res(text.as_bytes()).unwrap() {
            m3u8_rs::Playlist::MediaPlaylist(m) => m,
            _ => panic!(),
        }
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
        let m = live_with_break(10);
        let v = view::hls_media(&m);
        let out = hls_media(
            &m,
            &v,
            &[fill(&["ad4", "ad6"])],
            RenditionWant::default(),
            &FakeCreatives,
        )
        .await
        .unwrap();
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
        let m = live_with_break(10);
        let v = view::hls_media(&m);
        let out = hls_media(
            &m,
            &v,
            &[fill(&["long", "ad4"])],
            RenditionWant::default(),
            &FakeCreatives,
        )
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
        let a = live_with_break(10);
        let b = live_with_break(13); // the window slid by 3 segments, mid-break
        let oa = hls_media(
            &a,
            &view::hls_media(&a),
            &edits,
            RenditionWant::default(),
            &FakeCreatives,
        )
        .await
        .unwrap();
        let ob = hls_media(
            &b,
            &view::hls_media(&b),
            &edits,
            RenditionWant::default(),
            &FakeCreatives,
        )
        .await
        .unwrap();
        let ua = uris(&oa);
        let ub = uris(&ob);
        // every segment both show appears in the same order: b is a suffix-extension of a
        let start = ua.iter().position(|x| x == &ub[0]).expect("overlap");
        assert_eq!(&ua[start..], &ub[..ua.len() - start]);
    }

    #[tokio::test]
    async fn bad_plans_are_refused_whole() {
        let m = live_with_break(10);
        let v = view::hls_media(&m);
        let w = RenditionWant::default();
        let tag = |i: u32, l: &str| {
            Edit::AddTag(Tag {
                before_segment: i,
                line: l.into(),
            })
        };
        assert!(hls_media(&m, &v, &[tag(99, "#EXT-X-A")], w, &FakeCreatives)
            .await
            .is_err());
        assert!(
            hls_media(&m, &v, &[tag(0, "#EXT-X-ENDLIST")], w, &FakeCreatives)
                .await
                .is_err()
        );
        let unknown = Edit::FillBreak(Fill {
            break_id: "nope".into(),
            pod: vec![],
        });
        assert!(hls_media(&m, &v, &[unknown], w, &FakeCreatives)
            .await
            .is_err());
        assert!(
            hls_media(&m, &v, &[fill(&["ad4"]), fill(&["ad6"])], w, &FakeCreatives)
                .await
                .is_err()
        );
        assert!(hls_media(&m, &v, &[fill(&["nosuch"])], w, &FakeCreatives)
            .await
            .is_err());
        assert!(
            hls_media(&m, &v, &[Edit::Preroll(vec![])], w, &FakeCreatives)
                .await
                .is_err(),
            "live preroll"
        );
        assert!(
            hls_media(&m, &v, &[Edit::DropVariant(0)], w, &FakeCreatives)
                .await
                .is_err()
        );
        let ok = hls_media(&m, &v, &[tag(1, "#EXT-X-MINE:1")], w, &FakeCreatives)
            .await
            .unwrap();
        assert_eq!(
            ok.segments[1].unknown_tags.last().unwrap().to_string(),
            "#EXT-X-MINE:1"
        );
    }

    #[tokio::test]
    async fn vod_preroll_goes_first() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:2.0,\na.ts\n#EXTINF:2.0,\nb.ts\n#EXT-X-ENDLIST\n";
        let m = match m3u8_rs::parse_playlist_res(text.as_bytes()).unwrap() {
            m3u8_rs::Playlist::MediaPlaylist(m) => m,
            _ => panic!(),
        };
        let pod = vec![Ad {
            id: "x".into(),
            creative: "ad4".into(),
            duration: 4.0,
        }];
        let out = hls_media(
            &m,
            &view::hls_media(&m),
            &[Edit::Preroll(pod)],
            RenditionWant::default(),
            &FakeCreatives,
        )
        .await
        .unwrap();
        assert_eq!(
            uris(&out),
            vec!["/ads/ad4/0.ts", "/ads/ad4/1.ts", "a.ts", "b.ts"]
        );
        assert!(!out.segments[0].discontinuity && out.segments[2].discontinuity);
        assert!(out.end_list);
    }
}
