//! CMAF fragment timing, normalized on its way into the segment cache: in every track fragment
//! the first sample is presented at its decode time (ISO/IEC 23000-19's "earliest
//! presentation time equals baseMediaDecodeTime"), with `trun` version 1 (signed composition
//! offsets) where B-frames need it.
//!
//! Why: encoders with B-frames (ffmpeg's default fMP4, among others) start each fragment with a
//! positive composition offset, so video is presented a few frames after its decode time. At an
//! `EXT-X-DISCONTINUITY` hls.js maps the new piece's *decode* start to where the previous piece's
//! *presentation* ended, so every splice into or out of such media leaves a hole of that offset
//! in both tracks (0.2 s with the sample media: `bufferStalledError` + `bufferSeekOverHole` at
//! every ad boundary). With the offset removed from content and ads alike, pieces meet exactly.
//! DASH gains too: `SegmentTimeline@t` and period starts are decode times there, and the
//! normalized media starts exactly on them.
//!
//! The rewrite is in place (same sizes, no offsets move), so `Content-Length` stays valid and
//! the body streams: only each `moof` (and a leading `sidx`, whose earliest presentation time
//! moves with it) is held until complete. Anything that is not a well-formed fragmented MP4
//! passes through untouched.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

/// `[tenants.cache] cmaf_timing`: what the segment cache does with CMAF fragments.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum CmafTiming {
    /// Normalize for tenants that stitch ads (a plugin or an ad catalog), pass otherwise.
    #[default]
    Auto,
    Normalize,
    Pass,
}

/// Whether a response is a fragmented MP4 worth normalizing, by path and `Content-Type`.
pub fn is_fmp4(path: &str, content_type: Option<&str>) -> bool {
    let file = path.split('?').next().unwrap_or_default();
    let ext = file.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    if matches!(
        ext.to_ascii_lowercase().as_str(),
        "m4s" | "mp4" | "m4v" | "m4a" | "cmfv" | "cmfa"
    ) {
        return true;
    }
    content_type.is_some_and(|ct| {
        let ct = ct.trim().to_ascii_lowercase();
        ct.starts_with("video/mp4")
            || ct.starts_with("audio/mp4")
            || ct.starts_with("video/iso.segment")
    })
}

/// Longest run of leading boxes (`styp`, `sidx`, `moof`...) held back before giving up.
const MAX_HELD: usize = 1 << 20;

/// Top-level box types of a media segment; anything else means "not a fragment": pass.
const SEGMENT_BOXES: [&[u8; 4]; 9] = [
    b"styp", b"sidx", b"moof", b"mdat", b"emsg", b"prft", b"free", b"skip", b"ftyp",
];

#[derive(Debug)]
enum State {
    /// Reading top-level boxes: bytes since the last emitted one are held.
    Boxes,
    /// Inside a box passed as is (`mdat`...): this many bytes still to stream.
    Stream(u64),
    /// Not a fragment, or given up: everything passes.
    Pass,
}

/// Streams one response body through, normalizing every `moof` it contains.
#[derive(Debug)]
pub struct Normalizer {
    held: BytesMut,
    state: State,
    /// A `sidx` held until the first `moof` says how far its presentation time moves.
    sidx_at: Option<usize>,
    /// Fragments whose timing changed (for tests and metrics).
    pub rewritten: u32,
    /// The track's shift, from the last fragment that starts on a sync sample. A fragment
    /// that does not (an LL-HLS part inside a GOP: its first sample's offset is a B-frame's,
    /// not the stream's delay) moves by this one, so the GOP's parts keep meeting.
    pub shift: Option<i64>,
}

impl Default for Normalizer {
    fn default() -> Self {
        Normalizer {
            held: BytesMut::new(),
            state: State::Boxes,
            sidx_at: None,
            rewritten: 0,
            shift: None,
        }
    }
}

impl Normalizer {
    /// A normalizer for a fragment of a track whose shift is already known (`None`: not).
    pub fn with_shift(shift: Option<i64>) -> Normalizer {
        Normalizer {
            shift,
            ..Normalizer::default()
        }
    }
}

impl Normalizer {
    /// Feeds the next chunk (`None` for none); returns what can be sent on now. At the end of
    /// the stream everything still held is returned.
    pub fn push(&mut self, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
        let mut out = BytesMut::new();
        let mut input = chunk.unwrap_or_default();
        while !input.is_empty() {
            match self.state {
                State::Pass => {
                    out.extend_from_slice(&input);
                    input.clear();
                }
                State::Stream(n) => {
                    let take = (n.min(input.len() as u64)) as usize;
                    out.extend_from_slice(&input.split_to(take));
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::Boxes
                    } else {
                        State::Stream(left)
                    };
                }
                State::Boxes => {
                    self.held.extend_from_slice(&input);
                    input.clear();
                    if let Some(rest) = self.boxes(&mut out) {
                        input = rest;
                    }
                }
            }
        }
        if end {
            out.extend_from_slice(&self.held.split());
            self.state = State::Pass;
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    /// Works through the held bytes: complete boxes are emitted (`moof` rewritten), a box to
    /// stream switches state and returns the bytes past its header.
    fn boxes(&mut self, out: &mut BytesMut) -> Option<Bytes> {
        let mut at = 0usize; // start of the next unparsed box in `held`
                             // until a box header is incomplete: then more bytes are needed
        while let Some((size, header, kind)) = box_header(&self.held[at..]) {
            if !SEGMENT_BOXES.contains(&&kind) || size < header as u64 {
                return self.give_up(out);
            }
            let complete = self.held.len() - at >= size as usize;
            match &kind {
                b"moof" | b"sidx" | b"styp" | b"emsg" | b"prft" | b"ftyp" => {
                    if size as usize > MAX_HELD {
                        return self.give_up(out);
                    }
                    if !complete {
                        break;
                    }
                    if &kind == b"sidx" && self.rewritten == 0 && self.sidx_at.is_none() {
                        self.sidx_at = Some(at);
                    }
                    if &kind == b"moof" {
                        let moof = at..at + size as usize;
                        if let Some(shift) = normalize_moof(&mut self.held[moof], &mut self.shift) {
                            self.rewritten += 1;
                            if let Some(s) = self.sidx_at.take() {
                                shift_sidx(&mut self.held[s..], shift);
                            }
                        }
                        self.sidx_at = None;
                        // everything up to the end of this moof can go
                        at += size as usize;
                        out.extend_from_slice(&self.held.split_to(at));
                        at = 0;
                        continue;
                    }
                    at += size as usize;
                }
                _ => {
                    // mdat and the like: stream it, unless a sidx still waits for its moof
                    if self.sidx_at.is_some() {
                        self.sidx_at = None;
                    }
                    let body_start = at + header;
                    out.extend_from_slice(&self.held.split_to(body_start.min(self.held.len())));
                    let rest = self.held.split().freeze();
                    let left = size - header as u64;
                    self.state = State::Stream(left);
                    return (!rest.is_empty()).then_some(rest);
                }
            }
            if at > MAX_HELD {
                return self.give_up(out);
            }
        }
        if self.held.len() > MAX_HELD {
            return self.give_up(out);
        }
        None
    }

    fn give_up(&mut self, out: &mut BytesMut) -> Option<Bytes> {
        out.extend_from_slice(&self.held.split());
        self.state = State::Pass;
        None
    }
}

/// `(size, header length, type)` of the box at the start of `b`, once its header is there.
/// Size 0 ("to the end") is not used by segments: treated as malformed.
fn box_header(b: &[u8]) -> Option<(u64, usize, [u8; 4])> {
    if b.len() < 8 {
        return None;
    }
    let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64;
    let kind = [b[4], b[5], b[6], b[7]];
    if size == 1 {
        if b.len() < 16 {
            return None;
        }
        let large = u64::from_be_bytes(b[8..16].try_into().ok()?);
        return Some((large, 16, kind));
    }
    Some((size, 8, kind))
}

/// Children of a container box body: `(type, range in body)`; stops at the first bad header.
fn children(body: &[u8]) -> Vec<([u8; 4], std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some((size, header, kind)) = box_header(&body[at..]) {
        let size = size as usize;
        if size < header || at + size > body.len() {
            break;
        }
        out.push((kind, at + header..at + size));
        at += size;
    }
    out
}

/// Rewrites a `moof` box in place; returns the presentation shift (in the first track's
/// timescale ticks, as a composition offset) when something changed.
fn normalize_moof(moof: &mut [u8], known: &mut Option<i64>) -> Option<u32> {
    let (_, header, _) = box_header(moof)?;
    let body = &mut moof[header..];
    let mut first_shift = None;
    for (kind, range) in children(body) {
        if &kind != b"traf" {
            continue;
        }
        let traf = &mut body[range];
        // the first sample's offset over every trun of this track fragment
        let mut shift: Option<i64> = None;
        let default_flags = children(traf)
            .into_iter()
            .find(|(k, _)| k == b"tfhd")
            .and_then(|(_, r)| tfhd_default_flags(&traf[r]));
        for (k, r) in children(traf) {
            if &k == b"trun" {
                if let Some(first) = first_offset(&traf[r.clone()]) {
                    if starts_on_sync(&traf[r], default_flags) {
                        shift = Some(first);
                        *known = shift;
                    } else {
                        shift = *known;
                    }
                    break;
                }
            }
        }
        let Some(shift) = shift.filter(|s| *s != 0) else {
            continue;
        };
        for (k, r) in children(traf) {
            if &k == b"trun" {
                rebase_trun(&mut traf[r], shift);
            }
        }
        first_shift.get_or_insert(shift.clamp(0, u32::MAX as i64) as u32);
    }
    first_shift
}

/// Layout of a `trun` body: (flags, sample count, offset of the first sample record, record
/// size, offset of the composition offset within a record), when it carries offsets.
fn trun_layout(trun: &[u8]) -> Option<(u32, usize, usize, usize, usize)> {
    if trun.len() < 8 {
        return None;
    }
    let flags = u32::from_be_bytes([0, trun[1], trun[2], trun[3]]);
    if flags & 0x800 == 0 {
        return None;
    }
    let count = u32::from_be_bytes(trun[4..8].try_into().ok()?) as usize;
    let mut first: usize = 8;
    if flags & 0x001 != 0 {
        first += 4; // data offset
    }
    if flags & 0x004 != 0 {
        first += 4; // first sample flags
    }
    let field = |bit: u32| if flags & bit != 0 { 4 } else { 0 };
    let cto_at = field(0x100) + field(0x200) + field(0x400);
    let record = cto_at + 4;
    let end = first.checked_add(count.checked_mul(record)?)?;
    (end <= trun.len()).then_some((flags, count, first, record, cto_at))
}

fn read_offset(trun: &[u8], at: usize) -> i64 {
    let raw = u32::from_be_bytes([trun[at], trun[at + 1], trun[at + 2], trun[at + 3]]);
    if trun[0] == 0 {
        raw as i64
    } else {
        raw as i32 as i64
    }
}

/// `default_sample_flags` of a `tfhd` body, if it has them.
fn tfhd_default_flags(tfhd: &[u8]) -> Option<u32> {
    let flags = u32::from_be_bytes([0, *tfhd.get(1)?, *tfhd.get(2)?, *tfhd.get(3)?]);
    if flags & 0x20 == 0 {
        return None;
    }
    let field = |bit: u32, n: usize| if flags & bit != 0 { n } else { 0 };
    let at = 8 + field(0x1, 8) + field(0x2, 4) + field(0x8, 4) + field(0x10, 4);
    Some(u32::from_be_bytes(tfhd.get(at..at + 4)?.try_into().ok()?))
}

/// Whether a `trun`'s first sample is a sync sample (`sample_is_non_sync_sample` clear); a
/// run that says nothing of it counts as one.
fn starts_on_sync(trun: &[u8], default_flags: Option<u32>) -> bool {
    let Some((flags, count, first, _, _)) = trun_layout(trun) else {
        return true;
    };
    let word = |at: usize| {
        trun.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let sample_flags = if flags & 0x004 != 0 {
        word(8 + if flags & 0x001 != 0 { 4 } else { 0 })
    } else if flags & 0x400 != 0 && count > 0 {
        let at =
            first + if flags & 0x100 != 0 { 4 } else { 0 } + if flags & 0x200 != 0 { 4 } else { 0 };
        word(at)
    } else {
        default_flags
    };
    sample_flags.is_none_or(|f| f & 0x0001_0000 == 0)
}

/// The composition offset of the first sample of a `trun` body.
fn first_offset(trun: &[u8]) -> Option<i64> {
    let (_, count, first, _, cto_at) = trun_layout(trun)?;
    (count > 0).then(|| read_offset(trun, first + cto_at))
}

/// Subtracts `shift` from every sample's composition offset, as version 1 (signed).
fn rebase_trun(trun: &mut [u8], shift: i64) {
    let Some((_, count, first, record, cto_at)) = trun_layout(trun) else {
        return;
    };
    let values: Vec<i64> = (0..count)
        .map(|i| read_offset(trun, first + i * record + cto_at) - shift)
        .collect();
    if values
        .iter()
        .any(|v| *v < i32::MIN as i64 || *v > i32::MAX as i64)
    {
        return; // not representable: leave this run as it was
    }
    for (i, v) in values.into_iter().enumerate() {
        let at = first + i * record + cto_at;
        trun[at..at + 4].copy_from_slice(&(v as i32).to_be_bytes());
    }
    trun[0] = 1;
}

/// Moves a `sidx`'s earliest presentation time back by `shift` (the first fragment's).
fn shift_sidx(sidx_box: &mut [u8], shift: u32) {
    let Some((_, header, _)) = box_header(sidx_box) else {
        return;
    };
    let b = &mut sidx_box[header..];
    // version(1) flags(3) reference_ID(4) timescale(4) then EPT: 32 or 64 bits
    if b.len() < 20 {
        return;
    }
    if b[0] == 0 {
        let ept = u32::from_be_bytes(b[12..16].try_into().unwrap_or_default());
        b[12..16].copy_from_slice(&ept.saturating_sub(shift).to_be_bytes());
    } else if b.len() >= 24 {
        let ept = u64::from_be_bytes(b[12..20].try_into().unwrap_or_default());
        b[12..20].copy_from_slice(&ept.saturating_sub(shift as u64).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    /// A trun (flags: data offset, sample size, composition offset) with these offsets.
    fn trun(offsets: &[u32]) -> Vec<u8> {
        let mut b = vec![0, 0, 0x0a, 0x01];
        b.extend_from_slice(&(offsets.len() as u32).to_be_bytes());
        b.extend_from_slice(&100u32.to_be_bytes());
        for o in offsets {
            b.extend_from_slice(&500u32.to_be_bytes()); // size
            b.extend_from_slice(&o.to_be_bytes());
        }
        bx(b"trun", &b)
    }

    fn segment(offsets: &[u32], mdat: usize) -> Vec<u8> {
        let traf = bx(b"traf", &[bx(b"tfdt", &[0; 8]), trun(offsets)].concat());
        let moof = bx(b"moof", &[bx(b"mfhd", &[0; 8]), traf].concat());
        let mut sidx = vec![0u8; 24];
        sidx[12..16].copy_from_slice(&2048u32.to_be_bytes());
        [
            bx(b"styp", b"msdhcmfs"),
            bx(b"sidx", &sidx),
            moof,
            bx(b"mdat", &vec![7u8; mdat]),
        ]
        .concat()
    }

    fn offsets_of(seg: &[u8]) -> (u8, Vec<i32>) {
        let i = seg.windows(4).position(|w| w == b"trun").unwrap() + 4;
        let t = &seg[i..];
        let (_, n, first, record, cto_at) = trun_layout(t).unwrap();
        let v = (0..n)
            .map(|k| read_offset(t, first + k * record + cto_at) as i32)
            .collect();
        (t[0], v)
    }

    fn run(input: &[u8], chunk: usize) -> (Vec<u8>, u32) {
        let mut n = Normalizer::default();
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = input.chunks(chunk).collect();
        for (i, c) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            if let Some(b) = n.push(Some(Bytes::copy_from_slice(c)), last) {
                out.extend_from_slice(&b);
            }
        }
        (out, n.rewritten)
    }

    #[test]
    fn first_sample_is_presented_at_its_decode_time() {
        let seg = segment(&[2048, 5120, 1024, 2048], 5000);
        for chunk in [1, 7, 64, 1000, seg.len()] {
            let (out, rewritten) = run(&seg, chunk);
            assert_eq!(out.len(), seg.len(), "chunk {chunk}: same length");
            assert_eq!(rewritten, 1);
            assert_eq!(
                offsets_of(&out),
                (1, vec![0, 3072, -1024, 0]),
                "chunk {chunk}"
            );
            let sidx = out.windows(4).position(|w| w == b"sidx").unwrap() + 4;
            assert_eq!(
                u32::from_be_bytes(out[sidx + 12..sidx + 16].try_into().unwrap()),
                0,
                "sidx earliest presentation time moves with the fragment"
            );
            // everything but the trun and sidx is byte-identical (mdat untouched)
            assert_eq!(out[out.len() - 5000..], seg[seg.len() - 5000..]);
        }
    }

    #[test]
    fn already_normal_media_and_other_bodies_pass_unchanged() {
        let seg = segment(&[0, 3072, 1024], 300);
        let (out, rewritten) = run(&seg, 13);
        assert_eq!((out.as_slice(), rewritten), (seg.as_slice(), 0));
        // MPEG-TS, an init segment, junk, a truncated fragment
        let ts: Vec<u8> = (0..1880)
            .map(|i| if i % 188 == 0 { 0x47 } else { 1 })
            .collect();
        let init = [bx(b"ftyp", b"iso6mp41"), bx(b"moov", &[0; 40])].concat();
        let truncated = seg[..seg.len() / 2].to_vec();
        for body in [ts, init, truncated, b"#EXTM3U\n".to_vec(), vec![0, 0, 0, 0]] {
            let (out, rewritten) = run(&body, 5);
            assert_eq!(out, body);
            assert_eq!(rewritten, 0);
        }
    }

    #[test]
    fn malformed_runs_are_left_alone() {
        // a trun whose sample count runs past its box
        let mut seg = segment(&[2048, 1024], 10);
        let i = seg.windows(4).position(|w| w == b"trun").unwrap() + 4;
        seg[i + 4..i + 8].copy_from_slice(&1000u32.to_be_bytes());
        let (out, rewritten) = run(&seg, 9);
        assert_eq!((out, rewritten), (seg, 0));
    }

    #[test]
    fn the_sample_media_is_normalized() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../samples/media/ads/ad15/cmaf");
        let video = std::fs::read(dir.join("v0/seg_000.m4s")).unwrap();
        let (out, rewritten) = run(&video, 1500);
        assert_eq!((out.len(), rewritten), (video.len(), 1));
        let (version, offsets) = offsets_of(&out);
        assert_eq!((version, offsets[0]), (1, 0));
        // audio has no composition offsets: untouched
        let audio = std::fs::read(dir.join("a0/seg_000.m4s")).unwrap();
        assert_eq!(run(&audio, 1500), (audio, 0));
    }
}
