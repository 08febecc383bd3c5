//! A tenant's slate for one rendition, as entries of about a target duration each.

use super::*;

/// One slate entry: a slate segment, or consecutive ones joined.
#[derive(Debug, Clone, PartialEq)]
pub struct SlateEntry {
    /// The first segment (a path under the tenant, as the viewer sees it).
    pub path: String,
    /// File names of the segments joined after it (same directory).
    pub extra: Vec<String>,
    pub duration: f64,
}

/// The slate, cut into entries of about the content's segment duration.
#[derive(Debug, Clone, PartialEq)]
pub struct Slate {
    pub entries: Vec<SlateEntry>,
    /// `EXT-X-MAP` (fMP4).
    pub map: Option<String>,
    pub(super) cycle: f64,
}

impl Slate {
    /// Joins `media`'s segments `round(target / segment)` at a time (only siblings; leftovers
    /// at the end of the slate are not used).
    pub fn from_media(media: &AdMedia, target: f64) -> Option<Slate> {
        let segs = &media.segments;
        let avg = segs.iter().map(|s| s.1).sum::<f64>() / segs.len().max(1) as f64;
        if !(avg > 0.0 && target > 0.0) {
            return None;
        }
        let per = ((target / avg).round() as usize).clamp(1, 16);
        let dir = |p: &str| p.rsplit_once('/').map(|(d, _)| d.to_string());
        let mut entries = Vec::new();
        for group in segs.chunks_exact(per) {
            let d = dir(&group[0].0)?;
            let mut extra = Vec::new();
            for (p, _) in &group[1..] {
                let (pd, name) = p.rsplit_once('/')?;
                if pd != d || name.contains('?') {
                    return Slate::from_media(media, avg); // not siblings: one at a time
                }
                extra.push(name.to_string());
            }
            entries.push(SlateEntry {
                path: group[0].0.clone(),
                extra,
                duration: group.iter().map(|s| s.1).sum(),
            });
        }
        let cycle = entries.iter().map(|e| e.duration).sum();
        (!entries.is_empty()).then_some(Slate {
            entries,
            map: media.map.clone(),
            cycle,
        })
    }

    /// Entry `j` of the endless slate, whether it starts a lap (a discontinuity), and when it
    /// starts (seconds from the outage's start).
    pub(super) fn entry(&self, j: u64) -> (&SlateEntry, bool, f64) {
        let c = self.entries.len() as u64;
        let k = (j % c) as usize;
        let within: f64 = self.entries[..k].iter().map(|e| e.duration).sum();
        (
            &self.entries[k],
            k == 0,
            (j / c) as f64 * self.cycle + within,
        )
    }

    /// Entries that have ended `elapsed` seconds into the outage.
    pub(super) fn ended_by(&self, elapsed: f64) -> u64 {
        if elapsed <= 0.0 || self.cycle <= 0.0 {
            return 0;
        }
        let laps = (elapsed / self.cycle).floor();
        let mut n = laps as u64 * self.entries.len() as u64;
        let mut t = laps * self.cycle;
        for e in &self.entries {
            t += e.duration;
            if t > elapsed + 1e-6 {
                break;
            }
            n += 1;
        }
        n
    }
}
