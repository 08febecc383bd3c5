//! MPEG-TS splices without an audio hole: the first segment of each creative stitched into a
//! TS stream has its audio start at its video's decode time, silent AAC frames in front.
//!
//! Why: segmenters that cut TS at the keyframe's decode time (ffmpeg's hls muxer among them)
//! leave each content segment's audio ending one B-frame delay before its video (the rest is
//! at the start of the next segment). A player that lines the creative's first video frame up
//! with the content's last one (Shaka does, at a discontinuity) then finds ~0.2 s of no audio
//! before the creative's: it stalls and jumps the gap. A creative encoded like the content has
//! the same delay, so starting its audio at its video's decode time closes the hole exactly.
//! hls.js fills such gaps itself and plays either form.
//!
//! Only AAC-LC in ADTS (stream type 0x0F) is extended; anything else passes unchanged. The
//! stitcher marks which segment URIs get this (`mf_lead=1`: first segment of a creative).

use bytes::{Bytes, BytesMut};

const PACKET: usize = 188;
/// A segment larger than this is passed unchanged (it is held whole to be rewritten).
pub const MAX_SEGMENT: usize = 16 << 20;

/// Silent AAC-LC raw data blocks (one per channel configuration 1 and 2), as decoders accept.
const SILENT_MONO: [u8; 6] = [0x00, 0xc8, 0x00, 0x80, 0x23, 0x80];
const SILENT_STEREO: [u8; 9] = [0x21, 0x00, 0x49, 0x90, 0x02, 0x19, 0x00, 0x23, 0x80];

/// Collects a segment body, then rewrites it.
#[derive(Debug, Default)]
pub struct Leader {
    held: BytesMut,
    too_big: bool,
    /// Silent frames added (for tests and logs).
    pub added: usize,
}

impl Leader {
    /// Feeds a chunk; returns what can be sent on (nothing until the end, then everything).
    pub fn push(&mut self, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
        if let Some(c) = chunk {
            if self.too_big {
                return Some(c);
            }
            self.held.extend_from_slice(&c);
            if self.held.len() > MAX_SEGMENT {
                self.too_big = true;
                return Some(self.held.split().freeze());
            }
        }
        if !end || self.too_big {
            return None;
        }
        let body = self.held.split().freeze();
        match lead_audio(&body) {
            Some((out, n)) => {
                self.added = n;
                Some(Bytes::from(out))
            }
            None => (!body.is_empty()).then_some(body),
        }
    }
}

struct Packet<'a> {
    pid: u16,
    start: bool,
    cc: u8,
    /// Payload after the header and any adaptation field.
    payload: &'a [u8],
}

fn packet(p: &[u8]) -> Option<Packet<'_>> {
    if p.len() != PACKET || p[0] != 0x47 {
        return None;
    }
    let pid = (((p[1] & 0x1f) as u16) << 8) | p[2] as u16;
    let start = p[1] & 0x40 != 0;
    let afc = (p[3] >> 4) & 0x3;
    let cc = p[3] & 0x0f;
    let mut at = 4;
    if afc & 0x2 != 0 {
        at += 1 + *p.get(4)? as usize;
    }
    let payload = if afc & 0x1 != 0 && at <= PACKET {
        &p[at..]
    } else {
        &[][..]
    };
    Some(Packet {
        pid,
        start,
        cc,
        payload,
    })
}

/// `(PMT pid)` from a PAT section payload (pointer field first).
fn pat_pmt(payload: &[u8]) -> Option<u16> {
    let s = payload.get(1 + *payload.first()? as usize..)?;
    if s.first() != Some(&0x00) || s.len() < 12 {
        return None;
    }
    let len = (((s[1] & 0x0f) as usize) << 8) | s[2] as usize;
    let end = (3 + len).min(s.len()).saturating_sub(4);
    let mut at = 8;
    while at + 4 <= end {
        let program = u16::from_be_bytes([s[at], s[at + 1]]);
        let pid = (((s[at + 2] & 0x1f) as u16) << 8) | s[at + 3] as u16;
        if program != 0 {
            return Some(pid);
        }
        at += 4;
    }
    None
}

/// `(video pid, ADTS AAC pid)` from a PMT section payload.
fn pmt_streams(payload: &[u8]) -> Option<(u16, u16)> {
    let s = payload.get(1 + *payload.first()? as usize..)?;
    if s.first() != Some(&0x02) || s.len() < 12 {
        return None;
    }
    let len = (((s[1] & 0x0f) as usize) << 8) | s[2] as usize;
    let end = (3 + len).min(s.len()).saturating_sub(4);
    let info = (((s[10] & 0x0f) as usize) << 8) | s[11] as usize;
    let mut at = 12 + info;
    let (mut video, mut audio) = (None, None);
    while at + 5 <= end {
        let kind = s[at];
        let pid = (((s[at + 1] & 0x1f) as u16) << 8) | s[at + 2] as u16;
        let es_len = (((s[at + 3] & 0x0f) as usize) << 8) | s[at + 4] as usize;
        match kind {
            0x1b | 0x24 => video = video.or(Some(pid)),
            0x0f => audio = audio.or(Some(pid)),
            _ => {}
        }
        at += 5 + es_len;
    }
    Some((video?, audio?))
}

fn read_ts(b: &[u8]) -> u64 {
    (((b[0] as u64 >> 1) & 0x07) << 30)
        | ((b[1] as u64) << 22)
        | (((b[2] as u64) >> 1) << 15)
        | ((b[3] as u64) << 7)
        | ((b[4] as u64) >> 1)
}

fn write_ts(marker: u8, v: u64) -> [u8; 5] {
    let v = v & ((1 << 33) - 1);
    [
        (marker << 4) | (((v >> 30) as u8 & 0x07) << 1) | 1,
        (v >> 22) as u8,
        (((v >> 15) as u8) << 1) | 1,
        (v >> 7) as u8,
        ((v as u8) << 1) | 1,
    ]
}

/// `(PTS, DTS, PES payload offset)` of a PES packet starting in `payload`.
fn pes_times(payload: &[u8]) -> Option<(u64, u64, usize)> {
    if payload.len() < 14 || payload[..3] != [0, 0, 1] {
        return None;
    }
    let flags = payload[7] >> 6;
    let header_len = payload[8] as usize;
    if flags & 0x2 == 0 {
        return None;
    }
    let pts = read_ts(&payload[9..14]);
    let dts = if flags == 0x3 && payload.len() >= 19 {
        read_ts(&payload[14..19])
    } else {
        pts
    };
    Some((pts, dts, 9 + header_len))
}

/// The segment with silent frames before its audio, so the audio starts at the video's first
/// decode time; `None` when nothing is to change (or it is not a TS segment we understand).
fn lead_audio(body: &[u8]) -> Option<(Vec<u8>, usize)> {
    // Long: one pass over the TS packets, PES headers found and audio timestamps rewritten in place.
    if body.len() < PACKET || body.len() % PACKET != 0 {
        return None;
    }
    let packets: Vec<&[u8]> = body.chunks(PACKET).collect();
    let mut pmt = None;
    let mut streams = None;
    let mut video_dts = None;
    let mut audio = None; // (index of the first audio packet, PTS, cc, ADTS header)
    for (i, p) in packets.iter().enumerate() {
        let pk = packet(p)?;
        if pk.pid == 0 && pk.start && pmt.is_none() {
            pmt = pat_pmt(pk.payload);
        } else if Some(pk.pid) == pmt && pk.start && streams.is_none() {
            streams = pmt_streams(pk.payload);
        } else if let Some((v, a)) = streams {
            if pk.pid == v && pk.start && video_dts.is_none() {
                video_dts = pes_times(pk.payload).map(|(_, dts, _)| dts);
            }
            if pk.pid == a && pk.start && audio.is_none() {
                let (pts, _, at) = pes_times(pk.payload)?;
                let adts = pk.payload.get(at..at + 7)?;
                if adts[0] != 0xff || adts[1] & 0xf6 != 0xf0 {
                    return None;
                }
                let mut h = [0u8; 7];
                h.copy_from_slice(adts);
                audio = Some((i, pts, pk.cc, h));
            }
        }
        if video_dts.is_some() && audio.is_some() {
            break;
        }
    }
    let (v, a) = streams?;
    let (first_audio, audio_pts, cc, adts) = audio?;
    let video_dts = video_dts?;
    // 90 kHz ticks of audio to add (PTS wrap ignored: segments do not straddle 26.5 h)
    let lead = audio_pts.checked_sub(video_dts)?;
    let profile = adts[2] >> 6; // object type - 1
    let freq = (adts[2] >> 2) & 0x0f;
    let channels = ((adts[2] & 0x01) << 2) | (adts[3] >> 6);
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let rate = *RATES.get(freq as usize)? as u64;
    let silent: &[u8] = match (profile, channels) {
        (1, 1) => &SILENT_MONO,
        (1, 2) => &SILENT_STEREO,
        _ => return None,
    };
    let frame = 1024 * 90_000 / rate; // ticks per AAC frame
    let frames = (lead / frame) as usize;
    if frames == 0 || frames > 64 {
        return None;
    }
    // one PES of `frames` ADTS frames, timed to end where the segment's audio begins
    let mut es = Vec::with_capacity(frames * (7 + silent.len()));
    for _ in 0..frames {
        let len = 7 + silent.len();
        let mut h = adts;
        h[1] |= 0x01; // protection absent: no CRC
        h[3] = (h[3] & 0xfc) | ((len >> 11) as u8 & 0x03);
        h[4] = (len >> 3) as u8;
        h[5] = ((len as u8 & 0x07) << 5) | 0x1f;
        h[6] = 0xfc;
        es.extend_from_slice(&h);
        es.extend_from_slice(silent);
    }
    let pts = audio_pts - frames as u64 * frame;
    let mut pes = vec![0, 0, 1, 0xc0];
    let pes_len = 3 + 5 + es.len();
    pes.extend_from_slice(&(pes_len.min(0xffff) as u16).to_be_bytes());
    pes.extend_from_slice(&[0x80, 0x80, 5]);
    pes.extend_from_slice(&write_ts(0x2, pts));
    pes.extend_from_slice(&es);
    // into TS packets on the audio pid, continuity counted back from the segment's first
    let chunks: Vec<&[u8]> = pes.chunks(PACKET - 4).collect();
    let n = chunks.len();
    let mut added = Vec::with_capacity(n * PACKET);
    for (k, chunk) in chunks.iter().enumerate() {
        let c = (cc as usize + 16 * n - (n - k)) % 16;
        let mut p = vec![
            0x47,
            (if k == 0 { 0x40 } else { 0 }) | ((a >> 8) as u8 & 0x1f),
            a as u8,
        ];
        let room = PACKET - 4;
        if chunk.len() == room {
            p.push(0x10 | c as u8);
        } else {
            // adaptation field stuffing fills the packet
            p.push(0x30 | c as u8);
            let stuff = room - chunk.len();
            p.push((stuff - 1) as u8);
            if stuff > 1 {
                p.push(0x00);
                p.extend(std::iter::repeat_n(0xff, stuff - 2));
            }
        }
        p.extend_from_slice(chunk);
        debug_assert_eq!(p.len(), PACKET);
        added.extend_from_slice(&p);
    }
    let _ = v;
    let mut out = Vec::with_capacity(body.len() + added.len());
    for (i, p) in packets.iter().enumerate() {
        if i == first_audio {
            out.extend_from_slice(&added);
        }
        out.extend_from_slice(p);
    }
    Some((out, frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(path: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../samples/media")
                .join(path),
        )
        .unwrap()
    }

    /// First (video DTS, audio PTS) and the audio packets' continuity counters.
    fn timing(body: &[u8]) -> (u64, u64, Vec<u8>) {
        let mut pmt = None;
        let mut streams = None;
        let (mut v, mut a, mut ccs) = (None, None, Vec::new());
        for p in body.chunks(PACKET) {
            let pk = packet(p).unwrap();
            if pk.pid == 0 && pk.start {
                pmt = pat_pmt(pk.payload);
            } else if Some(pk.pid) == pmt && pk.start {
                streams = pmt_streams(pk.payload);
            } else if let Some((vp, ap)) = streams {
                if pk.pid == vp && pk.start && v.is_none() {
                    v = pes_times(pk.payload).map(|t| t.1);
                }
                if pk.pid == ap {
                    ccs.push(pk.cc);
                    if pk.start && a.is_none() {
                        a = pes_times(pk.payload).map(|t| t.0);
                    }
                }
            }
        }
        (v.unwrap(), a.unwrap(), ccs)
    }

    #[test]
    fn audio_starts_at_the_video_decode_time() {
        let seg = sample("ads/ad15/ts/v1/seg_000.ts");
        let (v, a, _) = timing(&seg);
        assert!(
            a > v + 9000,
            "the sample's audio starts after its video decodes"
        );
        let mut l = Leader::default();
        let out = l.push(Some(Bytes::from(seg.clone())), true).unwrap();
        assert!(l.added >= 8, "{} frames", l.added);
        let (v2, a2, ccs) = timing(&out);
        assert_eq!(v2, v);
        assert!(
            a2 <= v + 1920 && a2 >= v,
            "audio now starts at {a2}, video decodes at {v}"
        );
        // continuity counters run on without a break into the original packets
        for w in ccs.windows(2) {
            assert_eq!((w[0] + 1) % 16, w[1], "{ccs:?}");
        }
        assert_eq!(out.len() % PACKET, 0);
        assert!(out.ends_with(&seg[seg.len() - 4 * PACKET..]));
        // already leading: unchanged
        let mut again = Leader::default();
        let same = again.push(Some(out.clone()), true).unwrap();
        assert_eq!((same, again.added), (out, 0));
    }

    #[test]
    fn anything_else_passes_unchanged() {
        let fmp4 = sample("ads/ad15/cmaf/v0/seg_000.m4s");
        let ts = sample("ads/ad15/ts/v0/seg_000.ts");
        for body in [fmp4, ts[..ts.len() - 10].to_vec(), b"#EXTM3U\n".to_vec()] {
            let mut l = Leader::default();
            let mut out = Vec::new();
            for c in body.chunks(1000) {
                if let Some(b) = l.push(Some(Bytes::copy_from_slice(c)), false) {
                    out.extend_from_slice(&b);
                }
            }
            if let Some(b) = l.push(None, true) {
                out.extend_from_slice(&b);
            }
            assert_eq!((out, l.added), (body, 0));
        }
    }
}
