//! Just enough ISO-BMFF to describe and re-time the sample CMAF files: the track timescale, size
//! and codec of an init segment, and where a media segment keeps its decode time (`tfdt`) and
//! earliest presentation time (`sidx`) so the looped live timeline can be rewritten per request.

use anyhow::{bail, Context, Result};

/// One box: its type, where its payload starts and where it ends.
#[derive(Debug, Clone, Copy)]
struct BoxRef {
    kind: [u8; 4],
    body: usize,
    end: usize,
}

fn read_u32(buf: &[u8], at: usize) -> Result<u32> {
    let b = buf.get(at..at + 4).context("truncated box field")?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u64(buf: &[u8], at: usize) -> Result<u64> {
    let b = buf.get(at..at + 8).context("truncated box field")?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_be_bytes(a))
}

/// The boxes directly inside `buf[from..to]`.
fn children(buf: &[u8], from: usize, to: usize) -> Result<Vec<BoxRef>> {
    let mut out = Vec::new();
    let mut at = from;
    while at + 8 <= to {
        let size32 = read_u32(buf, at)? as usize;
        let mut kind = [0u8; 4];
        kind.copy_from_slice(&buf[at + 4..at + 8]);
        let (size, header) = match size32 {
            0 => (to - at, 8),
            1 => (read_u64(buf, at + 8)? as usize, 16),
            n => (n, 8),
        };
        if size < header || at + size > to {
            bail!(
                "box {} at {at} overruns its parent",
                String::from_utf8_lossy(&kind)
            );
        }
        out.push(BoxRef {
            kind,
            body: at + header,
            end: at + size,
        });
        at += size;
    }
    Ok(out)
}

/// Depth-first search for the first box of a type along a path of container types.
fn find_path(buf: &[u8], path: &[&[u8; 4]]) -> Result<Option<BoxRef>> {
    let mut scope = (0, buf.len());
    let mut found = None;
    for kind in path {
        let hit = children(buf, scope.0, scope.1)?
            .into_iter()
            .find(|b| &b.kind == *kind);
        match hit {
            Some(b) => {
                scope = (b.body, b.end);
                found = Some(b);
            }
            None => return Ok(None),
        }
    }
    Ok(found)
}

/// What a player needs to know about one track, read from its init segment.
#[derive(Debug, Clone)]
pub struct InitInfo {
    pub timescale: u32,
    pub width: u32,
    pub height: u32,
    /// RFC 6381 codec string (`avc1.4d401e`, `mp4a.40.2`).
    pub codec: String,
}

pub fn read_init(buf: &[u8]) -> Result<InitInfo> {
    let mdhd = find_path(buf, &[b"moov", b"trak", b"mdia", b"mdhd"])?.context("no mdhd box")?;
    let version = *buf.get(mdhd.body).context("empty mdhd")?;
    let timescale = if version == 1 {
        read_u32(buf, mdhd.body + 20)?
    } else {
        read_u32(buf, mdhd.body + 12)?
    };
    let tkhd = find_path(buf, &[b"moov", b"trak", b"tkhd"])?.context("no tkhd box")?;
    // width and height are the last two 16.16 fixed-point fields of tkhd
    let width = read_u32(buf, tkhd.end - 8)? >> 16;
    let height = read_u32(buf, tkhd.end - 4)? >> 16;
    let codec = if let Some(at) = find_bytes(buf, b"avcC") {
        // avcC payload: configurationVersion, profile, compatibility, level
        let p = buf.get(at + 5..at + 8).context("truncated avcC")?;
        format!("avc1.{:02x}{:02x}{:02x}", p[0], p[1], p[2])
    } else if find_bytes(buf, b"mp4a").is_some() {
        "mp4a.40.2".to_string()
    } else {
        bail!("init segment has neither avc1 nor mp4a sample entries");
    };
    Ok(InitInfo {
        timescale,
        width,
        height,
        codec,
    })
}

fn find_bytes(buf: &[u8], needle: &[u8]) -> Option<usize> {
    buf.windows(needle.len()).position(|w| w == needle)
}

/// Where one media segment stores its timing, so it can be rewritten without parsing again.
#[derive(Debug, Clone, Copy)]
pub struct FragInfo {
    /// Base media decode time as encoded.
    pub tfdt: u64,
    tfdt_at: usize,
    tfdt_v1: bool,
    /// `sidx` earliest presentation time: offset, 64-bit, value.
    sidx: Option<(usize, bool, u64)>,
}

pub fn read_fragment(buf: &[u8]) -> Result<FragInfo> {
    let tfdt = find_path(buf, &[b"moof", b"traf", b"tfdt"])?.context("no moof/traf/tfdt")?;
    let tfdt_v1 = *buf.get(tfdt.body).context("empty tfdt")? == 1;
    let tfdt_at = tfdt.body + 4;
    let value = if tfdt_v1 {
        read_u64(buf, tfdt_at)?
    } else {
        read_u32(buf, tfdt_at)? as u64
    };
    let sidx = match find_path(buf, &[b"sidx"])? {
        Some(s) => {
            let v1 = *buf.get(s.body).context("empty sidx")? == 1;
            // version/flags, reference_ID, timescale, then earliest_presentation_time
            let at = s.body + 12;
            let ept = if v1 {
                read_u64(buf, at)?
            } else {
                read_u32(buf, at)? as u64
            };
            Some((at, v1, ept))
        }
        None => None,
    };
    Ok(FragInfo {
        tfdt: value,
        tfdt_at,
        tfdt_v1,
        sidx,
    })
}

impl FragInfo {
    /// A copy of `buf` whose decode time is `new_tfdt` (the `sidx` moves by the same amount).
    pub fn retime(&self, buf: &[u8], new_tfdt: u64) -> Vec<u8> {
        let mut out = buf.to_vec();
        write_time(&mut out, self.tfdt_at, self.tfdt_v1, new_tfdt);
        if let Some((at, v1, ept)) = self.sidx {
            let shifted = ept.wrapping_add(new_tfdt.wrapping_sub(self.tfdt));
            write_time(&mut out, at, v1, shifted);
        }
        out
    }
}

fn write_time(buf: &mut [u8], at: usize, wide: bool, value: u64) {
    if wide {
        buf[at..at + 8].copy_from_slice(&value.to_be_bytes());
    } else {
        // 32-bit fields wrap like the encoder's own counters would
        buf[at..at + 4].copy_from_slice(&(value as u32).to_be_bytes());
    }
}

/// One part of a split fragment: a standalone `moof`+`mdat`, where it starts within the
/// fragment and how long it lasts (track ticks), and whether it starts on a sync sample.
#[derive(Debug, Clone)]
pub struct Piece {
    pub data: Vec<u8>,
    pub start: u64,
    pub duration: u64,
    pub independent: bool,
}

/// What a `trun` says of one sample, with the `tfhd` defaults filled in.
struct Sample {
    duration: u64,
    size: usize,
    flags: u32,
    /// The trun entry as encoded (copied into the part's trun).
    entry: std::ops::Range<usize>,
}

const NON_SYNC: u32 = 0x0001_0000;

/// Cuts a single-`traf` fragment (as ffmpeg writes CMAF) into parts at `bounds` (ticks from
/// the fragment's decode time, increasing): each part holds the samples that start before
/// its bound, the last one the rest. LL-HLS parts are exactly such standalone fragments.
pub fn split(buf: &[u8], bounds: &[u64]) -> Result<Vec<Piece>> {
    let top = children(buf, 0, buf.len())?;
    let moof = *top.iter().find(|b| &b.kind == b"moof").context("no moof")?;
    let moof_start = moof.body - 8;
    let in_moof = children(buf, moof.body, moof.end)?;
    let traf = *in_moof
        .iter()
        .find(|b| &b.kind == b"traf")
        .context("no traf")?;
    let in_traf = children(buf, traf.body, traf.end)?;
    let find = |k: &[u8; 4]| in_traf.iter().find(|b| &b.kind == k).copied();
    let tfhd = find(b"tfhd").context("no tfhd")?;
    let trun = find(b"trun").context("no trun")?;
    let tfdt = read_fragment(buf)?.tfdt;
    // tfhd: version/flags, track id, then the optional fields in flag order
    let tf_flags = read_u32(buf, tfhd.body)? & 0xff_ffff;
    if tf_flags & 0x1 != 0 {
        bail!("tfhd with an explicit base data offset");
    }
    let mut at = tfhd.body + 8;
    if tf_flags & 0x2 != 0 {
        at += 4;
    }
    let mut field = |flag: u32| -> Result<Option<u32>> {
        if tf_flags & flag == 0 {
            return Ok(None);
        }
        let v = read_u32(buf, at)?;
        at += 4;
        Ok(Some(v))
    };
    let (def_dur, def_size, def_flags) = (field(0x8)?, field(0x10)?, field(0x20)?);
    let head = read_u32(buf, trun.body)?;
    let (version, tr_flags) = (head >> 24, head & 0xff_ffff);
    let count = read_u32(buf, trun.body + 4)? as usize;
    let mut at = trun.body + 8;
    let data_offset = if tr_flags & 0x1 != 0 {
        at += 4;
        read_u32(buf, at - 4)? as usize
    } else {
        bail!("trun without a data offset");
    };
    let first_flags = if tr_flags & 0x4 != 0 {
        at += 4;
        Some(read_u32(buf, at - 4)?)
    } else {
        None
    };
    let per = [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|f| tr_flags & **f != 0)
        .count()
        * 4;
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let mut f = at;
        let mut next = |flag: u32, default: Option<u32>| -> Result<u32> {
            if tr_flags & flag != 0 {
                f += 4;
                read_u32(buf, f - 4)
            } else {
                default.context("sample field with neither a trun value nor a tfhd default")
            }
        };
        let duration = next(0x100, def_dur)? as u64;
        let size = next(0x200, def_size)? as usize;
        let flags = match (i, first_flags) {
            (0, Some(ff)) => {
                next(0x400, Some(ff))?;
                ff
            }
            _ => next(0x400, def_flags.or(Some(0)))?,
        };
        samples.push(Sample {
            duration,
            size,
            flags,
            entry: at..at + per,
        });
        at += per;
    }
    let mut data_at = moof_start + data_offset;
    let mut pieces = Vec::new();
    let mut t = 0u64;
    let mut i = 0usize;
    for b in 0..=bounds.len() {
        let bound = bounds.get(b).copied().unwrap_or(u64::MAX);
        let from = i;
        let start = t;
        while i < samples.len() && t < bound {
            t += samples[i].duration;
            i += 1;
        }
        if i == from {
            continue;
        }
        let bytes: usize = samples[from..i].iter().map(|s| s.size).sum();
        let media = buf
            .get(data_at..data_at + bytes)
            .context("samples overrun the mdat")?;
        data_at += bytes;
        pieces.push(Piece {
            data: fragment(
                buf,
                (tfhd, version, tr_flags),
                &samples[from..i],
                from == 0,
                tfdt + start,
                media,
            ),
            start,
            duration: t - start,
            independent: samples[from].flags & NON_SYNC == 0,
        });
    }
    Ok(pieces)
}

fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&((body.len() + 8) as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

/// A `moof` (mfhd, the original tfhd, a 64-bit tfdt, a trun of `samples`) and its `mdat`.
fn fragment(
    buf: &[u8],
    (tfhd, version, flags): (BoxRef, u32, u32),
    samples: &[Sample],
    first: bool,
    decode_time: u64,
    media: &[u8],
) -> Vec<u8> {
    // a later part's first sample takes the tfhd's default flags, not the fragment's first
    let flags = if first { flags } else { flags & !0x4 };
    let mut trun = Vec::new();
    trun.extend_from_slice(&((version << 24) | flags).to_be_bytes());
    trun.extend_from_slice(&(samples.len() as u32).to_be_bytes());
    let offset_at = trun.len();
    trun.extend_from_slice(&0u32.to_be_bytes());
    if flags & 0x4 != 0 {
        trun.extend_from_slice(&samples[0].flags.to_be_bytes());
    }
    for s in samples {
        trun.extend_from_slice(&buf[s.entry.clone()]);
    }
    let mut tfdt = vec![1, 0, 0, 0];
    tfdt.extend_from_slice(&decode_time.to_be_bytes());
    let mut traf = buf[tfhd.body - 8..tfhd.end].to_vec();
    traf.extend(boxed(b"tfdt", &tfdt));
    let trun_at = traf.len() + 8;
    traf.extend(boxed(b"trun", &trun));
    let mut moof_body = boxed(b"mfhd", &[0, 0, 0, 0, 0, 0, 0, 1]);
    let traf_at = moof_body.len();
    moof_body.extend(boxed(b"traf", &traf));
    let moof_len = moof_body.len() + 8;
    // data offset: from the moof's first byte to the mdat's payload
    let at = 8 + traf_at + 8 + trun_at + offset_at;
    moof_body[at - 8..at - 4].copy_from_slice(&((moof_len + 8) as u32).to_be_bytes());
    let mut out = boxed(b"moof", &moof_body);
    out.extend(boxed(b"mdat", media));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(path: &str) -> Vec<u8> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/media/");
        std::fs::read(format!("{root}{path}")).unwrap()
    }

    #[test]
    fn reads_sample_init_segments() {
        let v = read_init(&media("content/2s/cmaf/v1/init.mp4")).unwrap();
        assert_eq!((v.width, v.height), (320, 180));
        assert!(v.codec.starts_with("avc1.4d"), "{}", v.codec);
        let a = read_init(&media("content/2s/cmaf/a0/init.mp4")).unwrap();
        assert_eq!(a.timescale, 48000);
        assert_eq!(a.codec, "mp4a.40.2");
    }

    #[test]
    fn retime_rewrites_decode_time_and_round_trips() {
        let seg = media("content/2s/cmaf/v0/seg_001.m4s");
        let info = read_fragment(&seg).unwrap();
        let moved = info.retime(&seg, info.tfdt + 1_000_000_000_000);
        let again = read_fragment(&moved).unwrap();
        assert_eq!(again.tfdt, info.tfdt + 1_000_000_000_000);
        assert_eq!(moved.len(), seg.len());
    }

    #[test]
    fn rejects_garbage() {
        assert!(read_fragment(b"\0\0\0\x10moofxxxxxxxx").is_err());
        assert!(read_init(&[0u8; 3]).is_err());
    }
}
