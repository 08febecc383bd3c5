//! The sample media in memory: the content loop and the ad creatives, each packaged as MPEG-TS
//! (muxed audio) and CMAF (demuxed), with the timing the playlists and MPDs are built from.

use super::mp4::{self, FragInfo, InitInfo};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::Path;

/// Everything the simulator serves, loaded once at start-up (a few MB).
pub struct Library {
    /// The live/VOD content, segmented at the configured target duration.
    pub content: Package,
    /// Ad creatives and the slate, by name (`ad10`, `ad15`, `ad30`, `slate`).
    pub ads: BTreeMap<String, Package>,
}

impl Library {
    /// Loads `media/content/{segment_secs}s` and every `media/ads/*`.
    pub fn load(media: &Path, segment_secs: u32) -> Result<Library> {
        let content_dir = media.join(format!("content/{segment_secs}s"));
        let content = Package::load(&content_dir)
            .with_context(|| format!("loading content from {}", content_dir.display()))?;
        for r in &content.ts {
            for (i, s) in r.segments.iter().enumerate() {
                if (s.duration - segment_secs as f64).abs() > 0.001 {
                    bail!(
                        "content segment {} of {} lasts {} s, not {segment_secs} s",
                        i,
                        r.id,
                        s.duration
                    );
                }
            }
        }
        let mut ads = BTreeMap::new();
        let ads_dir = media.join("ads");
        let entries = std::fs::read_dir(&ads_dir)
            .with_context(|| format!("reading {}", ads_dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let pkg = Package::load(&entry.path())
                .with_context(|| format!("loading ad {}", entry.path().display()))?;
            ads.insert(name, pkg);
        }
        Ok(Library { content, ads })
    }
}

/// One piece of media in both packagings.
pub struct Package {
    /// Muxed audio+video variants `v0..`, lowest bandwidth first.
    pub ts: Vec<TsRendition>,
    /// Demuxed video renditions `v0..`, then the audio rendition `a0`.
    pub cmaf: Vec<CmafRendition>,
    /// Length of the piece (video), seconds.
    pub duration: f64,
}

impl Package {
    fn load(dir: &Path) -> Result<Package> {
        let mut ts = Vec::new();
        let mut cmaf = Vec::new();
        for id in rendition_dirs(&dir.join("cmaf"))? {
            cmaf.push(CmafRendition::load(&dir.join("cmaf").join(&id), &id)?);
        }
        let video = cmaf
            .iter()
            .find(|r| r.is_video())
            .context("no CMAF video rendition")?;
        let duration = video.segments.iter().map(|s| s.seconds).sum::<f64>();
        // the loop length every track is re-timed against: whole video frames, exact
        for r in &mut cmaf {
            r.set_loop(duration)?;
        }
        let audio_codec = cmaf
            .iter()
            .find(|r| !r.is_video())
            .map(|r| r.info.codec.clone());
        for id in rendition_dirs(&dir.join("ts"))? {
            let video = cmaf
                .iter()
                .find(|r| r.id == id)
                .with_context(|| format!("TS rendition {id} has no CMAF twin"))?;
            let mut codecs = video.info.codec.clone();
            if let Some(a) = &audio_codec {
                codecs = format!("{codecs},{a}");
            }
            ts.push(TsRendition::load(
                &dir.join("ts").join(&id),
                &id,
                video.info.width,
                video.info.height,
                codecs,
            )?);
        }
        if ts.is_empty() {
            bail!("no TS renditions in {}", dir.display());
        }
        Ok(Package { ts, cmaf, duration })
    }

    pub fn cmaf(&self, id: &str) -> Option<&CmafRendition> {
        self.cmaf.iter().find(|r| r.id == id)
    }

    pub fn ts(&self, id: &str) -> Option<&TsRendition> {
        self.ts.iter().find(|r| r.id == id)
    }

    pub fn video(&self) -> impl Iterator<Item = &CmafRendition> {
        self.cmaf.iter().filter(|r| r.is_video())
    }

    pub fn audio(&self) -> Option<&CmafRendition> {
        self.cmaf.iter().find(|r| !r.is_video())
    }
}

fn rendition_dirs(dir: &Path) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            ids.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

/// The segment files and EXTINF durations listed by an ffmpeg-written `index.m3u8`.
fn read_index(dir: &Path) -> Result<Vec<(Bytes, f64)>> {
    let path = dir.join("index.m3u8");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let mut duration = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            let secs = rest.split(',').next().unwrap_or_default();
            duration = Some(
                secs.parse::<f64>()
                    .with_context(|| format!("bad EXTINF {line:?} in {}", path.display()))?,
            );
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let d = duration
                .take()
                .with_context(|| format!("{line} has no EXTINF"))?;
            let file = dir.join(line.trim());
            let data =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            out.push((Bytes::from(data), d));
        }
    }
    if out.is_empty() {
        bail!("{} lists no segments", path.display());
    }
    Ok(out)
}

/// Peak and average bits per second over a rendition's segments.
fn bandwidth<'a>(segments: impl Iterator<Item = (usize, f64)> + 'a) -> (u64, u64) {
    let (mut peak, mut bytes, mut secs) = (0f64, 0f64, 0f64);
    for (len, d) in segments {
        if d > 0.0 {
            peak = peak.max(len as f64 * 8.0 / d);
        }
        bytes += len as f64;
        secs += d;
    }
    let avg = if secs > 0.0 { bytes * 8.0 / secs } else { 0.0 };
    (peak.ceil() as u64, avg.ceil() as u64)
}

pub struct TsSegment {
    pub data: Bytes,
    pub duration: f64,
}

pub struct TsRendition {
    pub id: String,
    pub width: u32,
    pub height: u32,
    pub codecs: String,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub segments: Vec<TsSegment>,
}

impl TsRendition {
    fn load(dir: &Path, id: &str, width: u32, height: u32, codecs: String) -> Result<Self> {
        let segments: Vec<TsSegment> = read_index(dir)?
            .into_iter()
            .map(|(data, duration)| TsSegment { data, duration })
            .collect();
        let (bandwidth, average_bandwidth) =
            bandwidth(segments.iter().map(|s| (s.data.len(), s.duration)));
        Ok(TsRendition {
            id: id.to_string(),
            width,
            height,
            codecs,
            bandwidth,
            average_bandwidth,
            segments,
        })
    }
}

pub struct CmafSegment {
    pub data: Bytes,
    pub frag: FragInfo,
    /// Start relative to the first segment, in the track timescale.
    pub start: u64,
    /// Duration in the track timescale (the last one closes the loop exactly).
    pub duration: u64,
    pub seconds: f64,
}

pub struct CmafRendition {
    pub id: String,
    pub info: InitInfo,
    pub init: Bytes,
    pub segments: Vec<CmafSegment>,
    /// Loop length in the track timescale.
    pub loop_ticks: u64,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
}

impl CmafRendition {
    fn load(dir: &Path, id: &str) -> Result<Self> {
        let init_path = dir.join("init.mp4");
        let init = std::fs::read(&init_path)
            .with_context(|| format!("reading {}", init_path.display()))?;
        let info = mp4::read_init(&init).with_context(|| format!("{}", init_path.display()))?;
        let mut segments = Vec::new();
        for (data, seconds) in read_index(dir)? {
            let frag = mp4::read_fragment(&data).with_context(|| format!("segment of {id}"))?;
            segments.push(CmafSegment {
                data,
                frag,
                start: 0,
                duration: 0,
                seconds,
            });
        }
        let (bandwidth, average_bandwidth) =
            bandwidth(segments.iter().map(|s| (s.data.len(), s.seconds)));
        Ok(CmafRendition {
            id: id.to_string(),
            info,
            init: Bytes::from(init),
            segments,
            loop_ticks: 0,
            bandwidth,
            average_bandwidth,
        })
    }

    pub fn is_video(&self) -> bool {
        self.info.codec.starts_with("avc1")
    }

    /// Fixes the loop length and derives each segment's start and duration from decode times.
    fn set_loop(&mut self, seconds: f64) -> Result<()> {
        let ts = self.info.timescale as u64;
        self.loop_ticks = (seconds * ts as f64).round() as u64;
        let base = self.segments[0].frag.tfdt;
        let starts: Vec<u64> = self
            .segments
            .iter()
            .map(|s| s.frag.tfdt.saturating_sub(base))
            .collect();
        for (i, seg) in self.segments.iter_mut().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(self.loop_ticks);
            if end <= starts[i] {
                bail!("rendition {} segment {i} does not advance in time", self.id);
            }
            seg.start = starts[i];
            seg.duration = end - starts[i];
            seg.seconds = seg.duration as f64 / ts as f64;
        }
        Ok(())
    }

    /// Segment `n` of the endless loop, re-timed so decode time keeps increasing.
    pub fn looped_segment(&self, n: u64) -> Bytes {
        let len = self.segments.len() as u64;
        let seg = &self.segments[(n % len) as usize];
        let tfdt = (n / len) * self.loop_ticks + seg.start;
        Bytes::from(seg.frag.retime(&seg.data, tfdt))
    }

    /// Start (in timescale ticks) of looped segment `n`.
    pub fn looped_start(&self, n: u64) -> u64 {
        let len = self.segments.len() as u64;
        (n / len) * self.loop_ticks + self.segments[(n % len) as usize].start
    }

    /// Inverse of [`looped_start`](Self::looped_start): which segment starts at `ticks`.
    pub fn segment_at(&self, ticks: u64) -> Option<u64> {
        let len = self.segments.len() as u64;
        let (lap, rel) = (ticks / self.loop_ticks, ticks % self.loop_ticks);
        let k = self.segments.iter().position(|s| s.start == rel)? as u64;
        Some(lap * len + k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library() -> Library {
        let media = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/media"));
        Library::load(media, 2).unwrap()
    }

    #[test]
    fn loads_ladder_and_ads() {
        let lib = library();
        assert_eq!(lib.content.ts.len(), 3);
        assert_eq!(lib.content.cmaf.len(), 4);
        assert!((lib.content.duration - 24.0).abs() < 1e-9);
        assert!(lib.content.ts[0].bandwidth < lib.content.ts[2].bandwidth);
        for name in ["ad10", "ad15", "ad30", "slate"] {
            assert!(lib.ads.contains_key(name), "{name} missing");
        }
        assert!((lib.ads["ad15"].duration - 15.0).abs() < 1e-9);
    }

    #[test]
    fn looped_timeline_is_continuous_for_every_track() {
        let lib = library();
        for r in &lib.content.cmaf {
            let len = r.segments.len() as u64;
            for n in 0..3 * len {
                let k = (n % len) as usize;
                assert_eq!(
                    r.looped_start(n) + r.segments[k].duration,
                    r.looped_start(n + 1),
                    "{} gap after segment {n}",
                    r.id
                );
                assert_eq!(r.segment_at(r.looped_start(n)), Some(n));
                let seg = r.looped_segment(n);
                assert_eq!(mp4::read_fragment(&seg).unwrap().tfdt, r.looped_start(n));
            }
        }
    }
}
