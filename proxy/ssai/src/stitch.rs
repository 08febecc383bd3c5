//! Stitching ad breaks into a live or VOD HLS media playlist, consistently for a session.
//!
//! Every output segment is *owned* by a content segment of the origin: a content segment owns
//! itself, or (inside a filled break) the ad slots whose offset falls within its time span;
//! inserted pods (pre-rolls, VOD mid-rolls) are owned by the content segment they precede.
//! Ownership only depends on the session's recorded break layouts, so as the origin window
//! slides, output segments leave exactly when their owner leaves and new ones are appended:
//!
//! * `EXT-X-MEDIA-SEQUENCE` = the first content segment's origin sequence, plus the slots owned
//!   by content before it, minus the content segments before it that ads replaced;
//! * `EXT-X-DISCONTINUITY-SEQUENCE` = the origin's count, minus the content discontinuities
//!   ads replaced before the window, plus the discontinuities the host added before it.
//!
//! Every rendition of a session uses the same slots, so all have the same timing and
//! discontinuities at the same places.

use crate::ledger::Slot;
use crate::view::{HlsMediaView, TextLayout};
use m3u8_rs::{MediaPlaylist, MediaSegment};
use std::collections::BTreeSet;
use std::io::Write;

/// A pod placed in the playlist: a filled break (replacing `start..end` content) or an
/// insert (`end == Some(start)`, before content `start`).
#[derive(Debug, Clone)]
pub struct Placed<'a> {
    pub id: &'a str,
    pub start: u64,
    /// First content segment after it, once known.
    pub end: Option<u64>,
    pub end_tagged: bool,
    pub content_discs: &'a BTreeSet<u64>,
    pub slots: &'a [Slot],
    /// This rendition's URI (and init segment) for each slot.
    pub uris: Vec<SlotUri>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlotUri {
    pub uri: String,
    pub map: Option<String>,
}

impl Placed<'_> {
    fn is_insert(&self) -> bool {
        self.end == Some(self.start)
    }

    /// Whether content `n` is replaced by this break's ads.
    fn replaces(&self, n: u64) -> bool {
        !self.is_insert() && n >= self.start && self.end.is_none_or(|e| n < e)
    }
}

/// How the output handles ad markers from the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Markers {
    #[default]
    Pass,
    Strip,
}

/// Output header values for a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbering {
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
}

/// How far a rendition's segment boundary may sit from another's (demuxed audio segments
/// end on audio frames, a few ms off the video's): slot ownership must not depend on it.
const BOUNDARY_SLACK: f64 = 0.1;

/// The slots owned by the content segment spanning `from..to` seconds into break `p`.
fn owned_slots<'s>(p: &'s Placed, from: f64, to: f64) -> impl Iterator<Item = (usize, &'s Slot)> {
    p.slots
        .iter()
        .enumerate()
        .filter(move |(_, s)| s.offset >= from - BOUNDARY_SLACK && s.offset < to - BOUNDARY_SLACK)
}

/// Content sequence numbers that get a discontinuity for returning from ads (unless the
/// origin tags them already): the end of each filled break or insert, when it is output.
fn return_points(placed: &[Placed]) -> BTreeSet<u64> {
    placed
        .iter()
        .filter_map(|p| p.end)
        .filter(|e| !placed.iter().any(|q| q.replaces(*e)))
        .collect()
}

/// The header values for a window whose first content segment is `first` (origin media
/// sequence), whose origin discontinuity sequence is `origin_disc`, and where `first` lies
/// `first_offset` seconds into a break that contains it (if one does).
pub fn numbering(
    placed: &[Placed],
    first: u64,
    origin_disc: u64,
    first_offset: impl Fn(&Placed) -> f64,
) -> Numbering {
    let mut seq = first as i64;
    let mut disc = origin_disc as i64;
    let returns = return_points(placed);
    for p in placed {
        if p.is_insert() {
            if p.start < first {
                seq += p.slots.len() as i64;
                disc += p.slots.iter().filter(|s| s.disc).count() as i64;
            }
            continue;
        }
        if p.start >= first {
            continue;
        }
        let ended = p.end.is_some_and(|e| e <= first);
        let (slots_before, tags_before) = if ended {
            (p.slots.len(), p.slots.iter().filter(|s| s.disc).count())
        } else {
            let t = first_offset(p);
            let before: Vec<&Slot> = p
                .slots
                .iter()
                .filter(|s| s.offset < t - BOUNDARY_SLACK)
                .collect();
            (before.len(), before.iter().filter(|s| s.disc).count())
        };
        // never before the start, even from records of a stream whose numbering went back
        let replaced_to = if ended { p.end.unwrap_or(first) } else { first }.max(p.start);
        seq += slots_before as i64 - (replaced_to - p.start) as i64;
        let removed = p.content_discs.range(p.start..replaced_to).count() as i64;
        disc += tags_before as i64 - removed;
    }
    for r in returns.range(..first) {
        // a return tag on content before the window, unless the origin had one there already
        let tagged_at_origin = placed.iter().any(|p| p.end == Some(*r) && p.end_tagged);
        if !tagged_at_origin {
            disc += 1;
        }
    }
    Numbering {
        media_sequence: seq.max(0) as u64,
        discontinuity_sequence: disc.max(0) as u64,
    }
}

/// Tags that carry ad signalling (stripped with [`Markers::Strip`]).
fn is_marker_line(line: &[u8]) -> bool {
    const MARKERS: [&[u8]; 6] = [
        b"#EXT-X-CUE-OUT",
        b"#EXT-X-CUE-IN",
        b"#EXT-X-CUE",
        b"#EXT-X-SCTE35",
        b"#EXT-OATCLS-SCTE35",
        b"#EXT-X-ASSET",
    ];
    MARKERS.iter().any(|m| line.starts_with(m))
        || (line.starts_with(b"#EXT-X-DATERANGE") && contains(line, b"SCTE35"))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| *b == b'\n')
        .map(|l| l.trim_ascii_end())
        .filter(|l| !l.is_empty())
}

fn has_tag(text: &[u8], tag: &[u8]) -> bool {
    lines(text).any(|l| l.starts_with(tag))
}

/// Signalling a replaced content segment hands to the first slot in its place.
fn carried_lines(text: &[u8], markers: Markers) -> Vec<&[u8]> {
    // the content segment's own: an ad slot carries none of them (its parts neither)
    const OWN: [&[u8]; 9] = [
        b"#EXTINF",
        b"#EXT-X-PART:",
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
        .filter(|l| markers == Markers::Pass || !is_marker_line(l))
        .collect()
}

/// An ad segment's URI as the viewer fetches it: with its break and slot when tracked (its
/// request fires that slot's beacons), and for a creative's first MPEG-TS segment with its
/// audio made to start at its video's decode time, so the splice leaves no audio hole (see
/// `ts_lead`). Stitched pods and guided sessions' ad playlists both use it.
pub fn ad_segment_uri(uri: &str, tracked: Option<(&str, usize)>, first: bool) -> String {
    use std::fmt::Write as _;
    let mut out = uri.to_string();
    let mut sep = if uri.contains('?') { '&' } else { '?' };
    if let Some((brk, slot)) = tracked {
        let _ = write!(out, "{sep}mf_b={brk}&mf_s={slot}");
        sep = '&';
    }
    if first && uri.split('?').next().is_some_and(|f| f.ends_with(".ts")) {
        let _ = write!(out, "{sep}{}=1", crate::asked::LEAD_PARAM);
    }
    out
}

/// Per-request extras from the plugin plan for content segments (by window index).
pub struct ContentEdits<'a> {
    pub tags: &'a [Vec<m3u8_rs::ExtTag>],
    pub uris: &'a [Option<String>],
}

/// One output item.
enum Item<'a> {
    Content(usize),
    Slot {
        p: &'a Placed<'a>,
        k: usize,
        /// Content segment (window index) whose signalling the slot carries.
        carries: Option<usize>,
    },
}

/// Where a slot lands in the output, for the tags it needs.
#[derive(Clone, Copy)]
struct SlotAt {
    /// The content is encrypted and this slot follows content: `EXT-X-KEY:METHOD=NONE`.
    key_none: bool,
    /// The playlist's first segment.
    first: bool,
}

/// Everything needed to render one rendition's playlist.
pub struct Stitch<'a> {
    pub playlist: &'a MediaPlaylist,
    pub view: &'a HlsMediaView,
    pub body: &'a [u8],
    pub placed: &'a [Placed<'a>],
    pub markers: Markers,
    pub edits: ContentEdits<'a>,
    /// Added to every ad segment URI (tracking), e.g. `?mf_b=<break>&mf_s=`; the slot index is appended.
    pub tracking: bool,
    /// `EXT-X-START` for a live pre-roll: seconds from the end where the pod begins.
    pub start_offset: Option<f64>,
    /// Tags announcing the session's breaks (guided: interstitial date ranges), each before
    /// the content segment it starts at (players anchor a date range on the segment after
    /// it), or after the header when that segment is not in the window.
    pub announce: &'a [Announce],
    /// A program date-time (Unix ms) for the first segment of an undated playlist (date
    /// ranges need one to be placed).
    pub first_pdt: Option<i64>,
}

impl Stitch<'_> {
    /// Offset into placed break `p` at which window segment `i` starts.
    fn offset_at(&self, p: &Placed, i: usize) -> f64 {
        let segs = &self.playlist.segments;
        let seq0 = self.playlist.media_sequence;
        // anchor on the span the view found for this break, else on uniform durations
        if let Some(span) = self.view.spans.iter().find(|s| s.id == p.id) {
            if i >= span.first {
                return span.elapsed
                    + segs[span.first..i]
                        .iter()
                        .map(|s| s.duration as f64)
                        .sum::<f64>();
            }
        }
        // from the window's first segment when the break holds it: the last segment may be
        // one still being made (LL-HLS), shorter than the others
        if i > 0 && p.replaces(seq0) {
            return self.offset_at(p, 0) + segs[..i].iter().map(|s| s.duration as f64).sum::<f64>();
        }
        let d = segs.get(i).map_or(0.0, |s| s.duration as f64);
        (seq0 + i as u64).saturating_sub(p.start) as f64 * d
    }

    fn items(&self) -> Vec<Item<'_>> {
        let segs = &self.playlist.segments;
        let seq0 = self.playlist.media_sequence;
        let mut out = Vec::with_capacity(segs.len() + 16);
        for (i, s) in segs.iter().enumerate() {
            let n = seq0 + i as u64;
            for p in self.placed.iter().filter(|p| p.is_insert() && p.start == n) {
                out.extend((0..p.slots.len()).map(|k| Item::Slot {
                    p,
                    k,
                    carries: None,
                }));
            }
            match self.placed.iter().find(|p| p.replaces(n)) {
                Some(p) => {
                    let t = self.offset_at(p, i);
                    let mut first = true;
                    for (k, _) in owned_slots(p, t, t + s.duration as f64) {
                        out.push(Item::Slot {
                            p,
                            k,
                            carries: first.then_some(i),
                        });
                        first = false;
                    }
                }
                None => out.push(Item::Content(i)),
            }
        }
        // post-rolls: inserted before the content that would follow the last segment
        let after = seq0 + segs.len() as u64;
        for p in self
            .placed
            .iter()
            .filter(|p| p.is_insert() && p.start == after)
        {
            out.extend((0..p.slots.len()).map(|k| Item::Slot {
                p,
                k,
                carries: None,
            }));
        }
        out
    }

    pub fn numbering(&self) -> Numbering {
        let seq0 = self.playlist.media_sequence;
        numbering(
            self.placed,
            seq0,
            self.playlist.discontinuity_sequence,
            |p| self.offset_at(p, 0),
        )
    }

    fn pdt_of(&self, p: &Placed, slot: &Slot) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        let segs = &self.playlist.segments;
        let seq0 = self.playlist.media_sequence;
        // the break's start time from any visible content of it, or the content it precedes
        let (i, base) = if p.is_insert() {
            let i = p.start.checked_sub(seq0)? as usize;
            (i, 0.0)
        } else {
            let i = segs
                .iter()
                .enumerate()
                .position(|(i, _)| p.replaces(seq0 + i as u64))?;
            (i, self.offset_at(p, i))
        };
        let t = segs.get(i)?.program_date_time?;
        let ms = ((slot.offset - base) * 1000.0).round() as i64;
        if p.is_insert() {
            // inserted pods play before content `start`: they end at its date-time
            let total: f64 = p.slots.iter().map(|s| s.duration).sum();
            let ms_before = ((total - slot.offset) * 1000.0).round() as i64;
            return t.checked_sub_signed(chrono::Duration::try_milliseconds(ms_before)?);
        }
        t.checked_add_signed(chrono::Duration::try_milliseconds(ms)?)
    }

    fn slot_uri(&self, p: &Placed, k: usize) -> String {
        let tracked = (self.tracking && p.slots[k].ad.is_some()).then_some((p.id, k));
        ad_segment_uri(&p.uris[k].uri, tracked, p.slots[k].disc)
    }

    /// Renders the output: text splicing when the origin layout is known, m3u8-rs otherwise.
    pub fn render(&self) -> Vec<u8> {
        let num = self.numbering();
        match &self.view.layout {
            Some(layout) if !self.body.is_empty() => self.render_text(layout, num),
            _ => self.render_m3u8(num),
        }
    }

    /// The init segment slot `k` names: at each creative's start, and on the playlist's first
    /// segment, since a window that starts mid-break has slid the creative's first one out
    /// (a player joining there has no other init to use).
    fn slot_map<'p>(p: &'p Placed, k: usize, first: bool) -> Option<&'p String> {
        (p.slots[k].disc || k == 0 || first)
            .then_some(p.uris[k].map.as_ref())
            .flatten()
    }

    fn write_slot(&self, w: &mut Vec<u8>, p: &Placed, k: usize, carried: &[&[u8]], at: SlotAt) {
        let slot = &p.slots[k];
        if slot.disc {
            w.extend_from_slice(b"#EXT-X-DISCONTINUITY\n");
        }
        if at.key_none {
            w.extend_from_slice(b"#EXT-X-KEY:METHOD=NONE\n");
        }
        if let Some(map) = Self::slot_map(p, k, at.first) {
            let _ = writeln!(w, "#EXT-X-MAP:URI=\"{map}\"");
        }
        if let Some(t) = self.pdt_of(p, slot) {
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
        let _ = write!(
            w,
            "#EXTINF:{:.3},\n{}\n",
            slot.duration,
            self.slot_uri(p, k)
        );
    }

    fn render_header(&self, w: &mut Vec<u8>, header: &[u8], num: Numbering) {
        let disc = |w: &mut Vec<u8>| {
            let _ = writeln!(
                w,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                num.discontinuity_sequence
            );
        };
        let mut wrote_disc = false;
        for line in header.split_inclusive(|b| *b == b'\n') {
            let l = line.trim_ascii_end();
            if l.starts_with(b"#EXT-X-MEDIA-SEQUENCE:") {
                let _ = writeln!(w, "#EXT-X-MEDIA-SEQUENCE:{}", num.media_sequence);
                if !wrote_disc
                    && num.discontinuity_sequence > 0
                    && !contains(header, b"#EXT-X-DISCONTINUITY-SEQUENCE")
                {
                    disc(w);
                    wrote_disc = true;
                }
            } else if l.starts_with(b"#EXT-X-DISCONTINUITY-SEQUENCE:") {
                disc(w);
                wrote_disc = true;
            } else if l.starts_with(b"#EXT-X-START:") && self.start_offset.is_some() {
                // replaced below
            } else {
                w.extend_from_slice(line);
                if !line.ends_with(b"\n") {
                    w.push(b'\n');
                }
            }
        }
        if !contains(header, b"#EXT-X-MEDIA-SEQUENCE") && num.media_sequence > 0 {
            let _ = writeln!(w, "#EXT-X-MEDIA-SEQUENCE:{}", num.media_sequence);
        }
        if !wrote_disc
            && num.discontinuity_sequence > 0
            && !contains(header, b"#EXT-X-MEDIA-SEQUENCE")
        {
            disc(w);
        }
        if let Some(off) = self.start_offset {
            let _ = writeln!(w, "#EXT-X-START:TIME-OFFSET=-{off:.3}");
        }
        if let (Some(hold), false) = (self.hold_back(), contains(header, b"#EXT-X-SERVER-CONTROL"))
        {
            let _ = writeln!(w, "#EXT-X-SERVER-CONTROL:HOLD-BACK={hold:.1}");
        }
    }

    /// How far from the live edge players should start (RFC 8216bis `HOLD-BACK`: three target
    /// durations), stated for live playlists. Players otherwise add up the last three
    /// segments' durations (Shaka does), and a window ending in short slate segments (a viewer
    /// joining mid-break) would start them 3 s from the edge instead of 6: a stall at every
    /// content segment after.
    fn hold_back(&self) -> Option<f64> {
        let m = self.playlist;
        let live = !m.end_list && m.playlist_type != Some(m3u8_rs::MediaPlaylistType::Vod);
        (live && m.target_duration > 0).then_some(3.0 * m.target_duration as f64)
    }

    fn render_text(&self, layout: &TextLayout, num: Numbering) -> Vec<u8> {
        let body = self.body;
        let mut w = Vec::with_capacity(body.len() + 64 * 32);
        self.render_header(&mut w, &body[layout.header.clone()], num);
        for a in self.announce.iter().filter(|a| self.anchored(a).is_none()) {
            w.extend_from_slice(a.line.as_bytes());
            w.push(b'\n');
        }
        let mut first_item = true;
        let mut announced_at = None;
        let encrypted = self.playlist.segments.iter().any(|s| {
            s.key
                .as_ref()
                .is_some_and(|k| k.method != m3u8_rs::KeyMethod::None)
        });
        let returns = return_points(self.placed);
        let seq0 = self.playlist.media_sequence;
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
        // init and key in force before the window (from the content before the first ad)
        let mut in_ads = false;
        for item in self.items() {
            // announcements go before the first item of their content segment
            let content = match item {
                Item::Content(i) => Some(i),
                Item::Slot { carries, .. } => carries,
            };
            if let Some(n) = content.map(|i| seq0 + i as u64) {
                if announced_at != Some(n) {
                    announced_at = Some(n);
                    for a in self.announce.iter().filter(|a| self.anchored(a) == Some(n)) {
                        w.extend_from_slice(a.line.as_bytes());
                        w.push(b'\n');
                    }
                }
            }
            match item {
                Item::Slot { p, k, carries } => {
                    let carried = carries
                        .map(|i| {
                            let text = &body[layout.segments[i].clone()];
                            track(text, &mut map_line, &mut key_line);
                            carried_lines(text, self.markers)
                        })
                        .unwrap_or_default();
                    let at = SlotAt {
                        key_none: encrypted && !in_ads,
                        first: first_item,
                    };
                    first_item = false;
                    self.write_slot(&mut w, p, k, &carried, at);
                    in_ads = true;
                }
                Item::Content(i) => {
                    let n = seq0 + i as u64;
                    let text = &body[layout.segments[i].clone()];
                    if let (Some(ms), true) = (self.first_pdt, first_item) {
                        let _ = writeln!(w, "{}", pdt_line(ms));
                    }
                    first_item = false;
                    let back = in_ads || returns.contains(&n);
                    if back {
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
                    for t in &self.edits.tags[i] {
                        let _ = writeln!(w, "{t}");
                    }
                    let strip = self.markers == Markers::Strip && lines(text).any(is_marker_line);
                    // the segment being made (LL-HLS) has parts and no URI line to replace
                    let uri = self.edits.uris[i]
                        .as_ref()
                        .filter(|_| lines(text).last().is_some_and(|l| l.first() != Some(&b'#')));
                    match (uri, strip) {
                        (None, false) => w.extend_from_slice(text),
                        (uri, _) => {
                            let mut ls: Vec<&[u8]> = lines(text).collect();
                            let last = ls.pop().unwrap_or_default();
                            for l in ls {
                                if !(strip && is_marker_line(l)) {
                                    w.extend_from_slice(l);
                                    w.push(b'\n');
                                }
                            }
                            match uri {
                                Some(u) => {
                                    let _ = writeln!(w, "{u}");
                                }
                                None => {
                                    w.extend_from_slice(last);
                                    w.push(b'\n');
                                }
                            }
                        }
                    }
                }
            }
        }
        w.extend_from_slice(&body[layout.footer.clone()]);
        w
    }
}

mod announce;
mod m3u8;
use announce::pdt_line;
pub use announce::Announce;
