//! Checking a plugin's edit plan against the parsed manifest. Every edit is checked first;
//! one bad edit rejects the whole plan (the failure policy then decides what the viewer gets),
//! so what is served is always either the origin manifest or a valid edited one.

use crate::types::{Ad, Edit};
use crate::view::HlsMediaView;
use m3u8_rs::{ExtTag, MasterPlaylist};
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPlan(pub String);

pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T, InvalidPlan> {
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
/// Edits one plan may hold (the plugin runtime refuses more before they get here).
pub const MAX_EDITS: usize = 10_000;
/// Bytes of text (ids, names, tags, URIs) one plan may hold.
pub const MAX_PLAN_BYTES: usize = 1 << 20;
/// Longest pod, in seconds (ads are also at most an hour each).
pub const MAX_POD_SECS: f64 = 3600.0;
/// A personalized manifest may be at most this many times the tenant's origin manifest size
/// limit (`max_manifest_size`), and at least [`MIN_OUTPUT_LIMIT`]: inserted pods make a
/// manifest grow, a plan must not make it unbounded.
pub const OUTPUT_GROWTH: usize = 4;
pub const MIN_OUTPUT_LIMIT: usize = 4 << 20;

/// The largest personalized manifest a tenant's plugin may cause.
pub fn output_limit(max_manifest_size: usize) -> usize {
    max_manifest_size
        .saturating_mul(OUTPUT_GROWTH)
        .max(MIN_OUTPUT_LIMIT)
}

/// Checks a personalized manifest's size against [`output_limit`].
pub fn check_output(len: usize, max_manifest_size: usize) -> Result<(), InvalidPlan> {
    let limit = output_limit(max_manifest_size);
    if len > limit {
        return invalid(format!(
            "the plan makes a {len}-byte manifest (at most {limit} bytes)"
        ));
    }
    Ok(())
}

/// Whole-plan limits, before any edit is looked at: the number of edits and the bytes of
/// text they carry, so a plugin cannot make the host hold or write an unbounded plan.
pub fn check_plan(edits: &[Edit]) -> Result<(), InvalidPlan> {
    if edits.len() > MAX_EDITS {
        return invalid(format!("{} edits (at most {MAX_EDITS})", edits.len()));
    }
    let pod_bytes =
        |pod: &[Ad]| -> usize { pod.iter().map(|a| a.id.len() + a.creative.len()).sum() };
    let bytes: usize = edits
        .iter()
        .map(|e| match e {
            Edit::DropVariant(_) | Edit::DropRendition(_) => 0,
            Edit::DropRepresentation(id) => id.len(),
            Edit::FillBreak(f) => f.break_id.len() + pod_bytes(&f.pod),
            Edit::Preroll(pod) => pod_bytes(pod),
            Edit::InsertPod(i) => pod_bytes(&i.pod),
            Edit::AddTag(t) => t.line.len(),
            Edit::RewriteUri(r) => r.uri.len(),
        })
        .fold(0usize, usize::saturating_add);
    if bytes > MAX_PLAN_BYTES {
        return invalid(format!(
            "the plan carries {bytes} bytes of text (at most {MAX_PLAN_BYTES})"
        ));
    }
    Ok(())
}

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
    check_plan(edits)?;
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

/// An edit's name in the WIT (`fill-break`, ...), for errors and reports.
pub fn edit_name(e: &Edit) -> &'static str {
    match e {
        Edit::DropVariant(_) => "drop-variant",
        Edit::DropRendition(_) => "drop-rendition",
        Edit::DropRepresentation(_) => "drop-representation",
        Edit::FillBreak(_) => "fill-break",
        Edit::Preroll(_) => "preroll",
        Edit::AddTag(_) => "add-tag",
        Edit::RewriteUri(_) => "rewrite-uri",
        Edit::InsertPod(_) => "insert-pod",
    }
}

/// What a plugin asked for a media playlist, checked.
#[derive(Debug, Default, Clone)]
pub struct MediaPlan {
    /// Break id → the pod to fill it with.
    pub fills: Vec<(String, Vec<Ad>)>,
    pub preroll: Option<Vec<Ad>>,
    /// VOD: (seconds into the content, pod).
    pub inserts: Vec<(f64, Vec<Ad>)>,
    /// Per window segment: tags to add before it.
    pub tags: Vec<Vec<ExtTag>>,
    /// Per window segment: a new URI.
    pub uris: Vec<Option<String>>,
}

impl MediaPlan {
    /// The ad edits HLS media and DASH share: fill a break of this manifest (`kind`) once, one
    /// preroll, pods inserted into VOD.
    fn ad_edit(
        &mut self,
        e: &Edit,
        has_break: impl Fn(&str) -> bool,
        live: bool,
        kind: &str,
    ) -> Result<(), InvalidPlan> {
        match e {
            Edit::FillBreak(f) => {
                if !has_break(&f.break_id) {
                    return invalid(format!(
                        "fill-break: no break {:?} in this {kind}",
                        f.break_id
                    ));
                }
                if self.fills.iter().any(|(id, _)| id == &f.break_id) {
                    return invalid(format!("fill-break: break {:?} filled twice", f.break_id));
                }
                check_pod(&f.pod)?;
                self.fills.push((f.break_id.clone(), f.pod.clone()));
            }
            Edit::Preroll(pod) => {
                check_pod(pod)?;
                if self.preroll.replace(pod.clone()).is_some() {
                    return invalid("more than one preroll");
                }
            }
            Edit::InsertPod(ins) => {
                if live {
                    return invalid(format!(
                        "insert-pod applies to VOD {kind}s (live breaks use fill-break)"
                    ));
                }
                if !(ins.at >= 0.0 && ins.at.is_finite()) {
                    return invalid(format!("insert-pod at {}", ins.at));
                }
                check_pod(&ins.pod)?;
                if self.inserts.len() >= 64 {
                    return invalid("more than 64 inserted pods");
                }
                self.inserts.push((ins.at, ins.pod.clone()));
            }
            _ => {}
        }
        Ok(())
    }
}

fn check_pod(pod: &[Ad]) -> Result<(), InvalidPlan> {
    if pod.len() > 64 {
        return invalid(format!("a pod of {} ads (at most 64)", pod.len()));
    }
    let total: f64 = pod.iter().map(|a| a.duration).sum();
    if total > MAX_POD_SECS {
        return invalid(format!("a pod of {total} s (at most {MAX_POD_SECS} s)"));
    }
    for ad in pod {
        if !(ad.duration > 0.0 && ad.duration <= 3600.0) {
            return invalid(format!("ad {:?} has duration {}", ad.id, ad.duration));
        }
        if ad.creative.is_empty() || ad.creative.len() > 256 || ad.id.len() > 256 {
            return invalid(format!(
                "ad {:?}: creative name or id empty or too long",
                ad.id
            ));
        }
    }
    Ok(())
}

/// Checks a media playlist plan against the view it was made for.
pub fn media_plan(view: &HlsMediaView, edits: &[Edit]) -> Result<MediaPlan, InvalidPlan> {
    check_plan(edits)?;
    let n = view.view.segments.len();
    let mut plan = MediaPlan {
        tags: vec![Vec::new(); n],
        uris: vec![None; n],
        ..Default::default()
    };
    for e in edits {
        match e {
            Edit::AddTag(t) => {
                let tag = check_tag(&t.line)?;
                match plan.tags.get_mut(t.before_segment as usize) {
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
                match plan.uris.get_mut(r.index as usize) {
                    Some(u) => *u = Some(r.uri.clone()),
                    None => return invalid(format!("rewrite-uri({}): only {n} segments", r.index)),
                }
            }
            e @ (Edit::FillBreak(_) | Edit::Preroll(_) | Edit::InsertPod(_)) => plan.ad_edit(
                e,
                |id| view.spans.iter().any(|s| s.id == id),
                view.view.live,
                "playlist",
            )?,
            other => {
                return invalid(format!(
                    "{} does not apply to a media playlist",
                    edit_name(other)
                ))
            }
        }
    }
    Ok(plan)
}

/// What a plugin asked for an MPD: representations dropped from `mpd`, and its ad plan.
pub fn dash(
    mpd: &dash_mpd_core::MPD,
    view: &crate::types::DashMpd,
    edits: &[Edit],
) -> Result<(dash_mpd_core::MPD, MediaPlan), InvalidPlan> {
    check_plan(edits)?;
    let mut out = mpd.clone();
    let mut plan = MediaPlan::default();
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
            e @ (Edit::FillBreak(_) | Edit::Preroll(_) | Edit::InsertPod(_)) => plan.ad_edit(
                e,
                |id| view.breaks.iter().any(|b| b.id == id),
                view.dynamic,
                "MPD",
            )?,
            other => return invalid(format!("{} does not apply to an MPD", edit_name(other))),
        }
    }
    Ok((out, plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Tag, UriRewrite};

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

    #[test]
    fn media_plans_are_checked() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-CUE-OUT:4\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n";
        let m = match m3u8_rs::parse_playlist_res(text.as_bytes()).unwrap() {
            m3u8_rs::Playlist::MediaPlaylist(m) => m,
            _ => panic!(),
        };
        let v = crate::view::hls_media(&m);
        let ad = |d: f64| Ad {
            id: "a".into(),
            creative: "c".into(),
            duration: d,
        };
        let fill = |id: &str, pod: Vec<Ad>| {
            Edit::FillBreak(crate::types::Fill {
                break_id: id.into(),
                pod,
            })
        };
        assert!(media_plan(&v, &[fill("cue-0", vec![ad(4.0)])]).is_ok());
        assert!(media_plan(&v, &[fill("nope", vec![])]).is_err());
        assert!(media_plan(&v, &[fill("cue-0", vec![ad(-1.0)])]).is_err());
        assert!(media_plan(&v, &[fill("cue-0", vec![ad(f64::NAN)])]).is_err());
        assert!(media_plan(&v, &[fill("cue-0", vec![]), fill("cue-0", vec![])]).is_err());
        let ins = Edit::InsertPod(crate::types::Insert {
            at: 1.0,
            pod: vec![],
        });
        assert!(media_plan(&v, &[ins]).is_err(), "insert-pod is VOD only");
        let tag = Edit::AddTag(Tag {
            before_segment: 5,
            line: "#EXT-X-A".into(),
        });
        assert!(media_plan(&v, &[tag]).is_err());
        assert!(media_plan(&v, &[Edit::DropVariant(0)]).is_err());
    }

    #[test]
    fn plans_are_bounded_in_edits_text_and_pod_length() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-CUE-OUT:4\n#EXTINF:2,\na.ts\n";
        let m = match m3u8_rs::parse_playlist_res(text.as_bytes()).unwrap() {
            m3u8_rs::Playlist::MediaPlaylist(m) => m,
            _ => panic!(),
        };
        let v = crate::view::hls_media(&m);
        let tag = |line: String| {
            Edit::AddTag(Tag {
                before_segment: 0,
                line,
            })
        };
        // as many edits as allowed pass; one more is an invalid plan
        let ok: Vec<Edit> = (0..MAX_EDITS).map(|_| tag("#EXT-X-A".into())).collect();
        assert!(media_plan(&v, &ok).is_ok());
        let mut over = ok.clone();
        over.push(tag("#EXT-X-A".into()));
        let e = media_plan(&v, &over).unwrap_err();
        assert!(e.0.contains("10001 edits (at most 10000)"), "{e}");
        assert!(hls_master(&master(), &over).is_err());
        // each tag is within its own limit, together they carry too much text
        let long = format!("#EXT-X-A:{}", "x".repeat(MAX_TAG_LEN - 9));
        let big: Vec<Edit> = (0..(MAX_PLAN_BYTES / MAX_TAG_LEN + 1))
            .map(|_| tag(long.clone()))
            .collect();
        let e = media_plan(&v, &big).unwrap_err();
        assert!(e.0.contains("bytes of text (at most 1048576)"), "{e}");
        // 64 ads of an hour each are within the per-ad limits, not within the pod's
        let pod: Vec<Ad> = (0..64)
            .map(|i| Ad {
                id: format!("a{i}"),
                creative: "c".into(),
                duration: 3600.0,
            })
            .collect();
        let e = media_plan(&v, &[Edit::Preroll(pod)]).unwrap_err();
        assert!(e.0.contains("a pod of 230400 s"), "{e}");
        // the personalized manifest: 4 times the origin limit, at least 4 MiB
        assert_eq!(output_limit(1 << 20), 4 << 20);
        assert_eq!(output_limit(10 << 20), 40 << 20);
        assert!(check_output(4 << 20, 1 << 20).is_ok());
        let e = check_output((4 << 20) + 1, 1 << 20).unwrap_err();
        assert!(e.0.contains("(at most 4194304 bytes)"), "{e}");
    }
}
