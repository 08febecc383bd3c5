//! Server-guided ad insertion: a guided session's breaks are announced, not stitched. The
//! content stays in place; each break becomes an HLS Interstitial (`EXT-X-DATERANGE`,
//! `CLASS="com.apple.hls.interstitial"`) or a DASH alternative-MPD event, pointing at a
//! per-session, per-break asset list the player fetches itself. The ads are the ones the
//! session recorded for the break (the same decision stitched mode makes), so the asset list
//! is the ledger's record read back, on any node.
//!
//! This module holds what both formats and the proxy's endpoints share: the URL layout under
//! the session, the assets of a recorded break, and the HLS date-range lines.

use crate::creatives::Packaging;
use crate::ledger::{BreakFacts, BreakRecord, PREROLL, VOD_INSERT};
use crate::policy::{Guided, Resume};
use std::fmt::Write;

/// Where a session's guided URLs live, under its prefix.
pub const PATH: &str = "/~guided/";

/// Break ids are the origin's (any text): hex keeps them one path segment. Longer ids do not
/// get a URL (the route limits would refuse it anyway); such a break is not announced.
const MAX_ID: usize = 256;

fn pack_name(p: Packaging) -> &'static str {
    match p {
        Packaging::Ts => "ts",
        Packaging::Fmp4 => "fmp4",
        Packaging::Dash => "dash",
    }
}

fn pack_of(s: &str) -> Option<Packaging> {
    match s {
        "ts" => Some(Packaging::Ts),
        "fmp4" => Some(Packaging::Fmp4),
        "dash" => Some(Packaging::Dash),
        _ => None,
    }
}

fn dir(pack: Packaging, id: &str) -> Option<String> {
    (id.len() <= MAX_ID).then(|| format!("{PATH}{}/{}", pack_name(pack), hex::encode(id)))
}

/// The asset list of break `id` (HLS), relative to the session prefix.
pub fn asset_list_path(pack: Packaging, id: &str) -> Option<String> {
    dir(pack, id).map(|d| format!("{d}/assets.json"))
}

/// The multivariant playlist of ad `ad` of break `id`.
pub fn asset_path(pack: Packaging, id: &str, ad: u32) -> Option<String> {
    dir(pack, id).map(|d| format!("{d}/{ad}/master.m3u8"))
}

/// Rendition `r` (the creative's variants in order, then its alternatives) of that ad.
pub fn rendition_path(pack: Packaging, id: &str, ad: u32, r: usize) -> Option<String> {
    dir(pack, id).map(|d| format!("{d}/{ad}/{r}.m3u8"))
}

/// The pod of DASH break `id`, as a single-period MPD.
pub fn pod_mpd_path(id: &str) -> Option<String> {
    dir(Packaging::Dash, id).map(|d| format!("{d}/pod.mpd"))
}

/// What a guided URL asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Asked {
    AssetList {
        pack: Packaging,
        id: String,
    },
    AssetMaster {
        pack: Packaging,
        id: String,
        ad: u32,
    },
    AssetRendition {
        pack: Packaging,
        id: String,
        ad: u32,
        rendition: usize,
    },
    PodMpd {
        id: String,
    },
}

/// Parses a content path under the session (`/~guided/...`); `None` if it is not one.
pub fn parse(path: &str) -> Option<Result<Asked, String>> {
    let rest = path.strip_prefix(PATH)?;
    let bad = || Err(format!("no guided resource {path:?}"));
    let parts: Vec<&str> = rest.split('/').collect();
    let (Some(pack), Some(id)) = (parts.first().and_then(|p| pack_of(p)), parts.get(1)) else {
        return Some(bad());
    };
    let Some(id) = hex::decode(id)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|id| !id.is_empty() && id.len() <= MAX_ID)
    else {
        return Some(bad());
    };
    let asked = match (&parts[2..], pack) {
        (["assets.json"], Packaging::Ts | Packaging::Fmp4) => Asked::AssetList { pack, id },
        (["pod.mpd"], Packaging::Dash) => Asked::PodMpd { id },
        ([ad, file], Packaging::Ts | Packaging::Fmp4) => {
            let Ok(ad) = ad.parse::<u32>() else {
                return Some(bad());
            };
            match file.strip_suffix(".m3u8") {
                Some("master") => Asked::AssetMaster { pack, id, ad },
                Some(r) => match r.parse::<usize>() {
                    Ok(rendition) => Asked::AssetRendition {
                        pack,
                        id,
                        ad,
                        rendition,
                    },
                    Err(_) => return Some(bad()),
                },
                None => return Some(bad()),
            }
        }
        _ => return Some(bad()),
    };
    Some(Ok(asked))
}

/// One ad of a recorded break: its pod position, creative, where it starts in the break and
/// how long it plays (its slots: an overlong ad cut to the break plays only those).
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    pub ad: u32,
    pub creative: String,
    pub offset: f64,
    pub duration: f64,
    /// Indices into the record's slots, in order.
    pub slots: Vec<usize>,
}

/// The ads of a recorded break, in play order (slate padding is not an asset: the content
/// resumes instead).
pub fn assets(rec: &BreakRecord) -> Vec<Asset> {
    let mut out: Vec<Asset> = Vec::new();
    for (i, s) in rec.slots.iter().enumerate() {
        let Some(ad) = s.ad else { continue };
        match out.last_mut() {
            Some(a) if a.ad == ad && a.creative == s.creative => {
                a.duration += s.duration;
                a.slots.push(i);
            }
            _ => out.push(Asset {
                ad,
                creative: s.creative.clone(),
                offset: s.offset,
                duration: s.duration,
                slots: vec![i],
            }),
        }
    }
    out
}

/// How a recorded pod sits in the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Replaces a signalled break's content.
    Break,
    /// A pre-roll (`CUE="PRE"`).
    Pre,
    /// Inserted into VOD at a position (`CUE="POST"` at the end).
    Insert { post: bool },
}

pub fn kind_of(id: &str, post: bool) -> Kind {
    if id == PREROLL {
        Kind::Pre
    } else if id.starts_with(VOD_INSERT) {
        Kind::Insert { post }
    } else {
        Kind::Break
    }
}

/// One interstitial as announced in a playlist.
pub struct Interstitial<'a> {
    pub id: &'a str,
    pub kind: Kind,
    pub rec: &'a BreakRecord,
    pub facts: Option<&'a BreakFacts>,
    /// `START-DATE`, Unix ms.
    pub start_ms: i64,
    /// The asset list URI (the session prefix included).
    pub asset_list: String,
    pub live: bool,
}

/// The `ID` of a break's interstitial: stable for the session (the record id).
pub fn interstitial_id(id: &str) -> String {
    format!("mf-{id}")
}

/// Unix ms as an HLS date-time (RFC 3339, milliseconds, UTC).
pub(crate) fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A quoted attribute value may hold anything but `"` and line breaks.
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\n' && *c != '\r')
        .collect()
}

impl Interstitial<'_> {
    /// How long the break's content lasts: as seen when it ended, else as planned.
    fn content_secs(&self) -> (f64, bool) {
        match self.facts.and_then(|f| f.secs) {
            Some(s) => (s, true),
            None => (self.rec.duration, false),
        }
    }

    /// How long the pod's ads play (slate padding is not announced).
    fn ads_secs(&self) -> f64 {
        self.rec
            .slots
            .iter()
            .filter(|s| s.ad.is_some())
            .map(|s| s.duration)
            .sum()
    }

    fn pod_secs(&self) -> f64 {
        self.rec.slots.iter().map(|s| s.duration).sum()
    }

    /// The `EXT-X-DATERANGE` line.
    pub fn line(&self, policy: &Guided) -> String {
        let mut l = format!(
            "#EXT-X-DATERANGE:ID=\"{}\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"{}\"",
            quoted(&interstitial_id(self.id)),
            date(self.start_ms)
        );
        let (resume, limit) = match self.kind {
            Kind::Break => {
                // the range the ads replace: the content after them (the rest of a longer
                // break) plays, so players that resume at the range's end (Shaka, live)
                // and those that resume after what played (hls.js) land at the same place
                let (secs, ended) = self.content_secs();
                let replaced = self.ads_secs().min(secs);
                if ended {
                    let _ = write!(l, ",DURATION={replaced:.3}");
                } else {
                    let _ = write!(l, ",PLANNED-DURATION={replaced:.3}");
                }
                // the break ended before its ads did
                let early = ended && secs + 0.5 < self.ads_secs();
                let resume = match policy.resume {
                    Resume::Auto if self.live => None,
                    Resume::Auto => Some(replaced),
                    Resume::Break => Some(secs),
                    Resume::Zero => Some(0.0),
                };
                // the playout is limited to the range (an early end: to what the break had).
                // A pod without a limit, hls.js appends in place, and at a live break it
                // then waits for the primary's buffer to reach the break exactly, which
                // MPEG-TS never does (its audio ends a little before its video) and CMAF
                // not always: seconds of stall. Limited, it switches to the pod's own media
                // source, ready ahead
                let limit = (policy.playout_limit || early).then_some(replaced);
                (resume, limit)
            }
            Kind::Pre | Kind::Insert { .. } => {
                let _ = write!(l, ",DURATION={:.3}", self.pod_secs());
                let resume = match policy.resume {
                    Resume::Break => None,
                    Resume::Auto | Resume::Zero => Some(0.0),
                };
                (resume, policy.playout_limit.then(|| self.pod_secs()))
            }
        };
        let _ = write!(l, ",X-ASSET-LIST=\"{}\"", quoted(&self.asset_list));
        if let Some(r) = resume {
            let _ = write!(l, ",X-RESUME-OFFSET={r:.3}");
        }
        if let Some(p) = limit {
            let _ = write!(l, ",X-PLAYOUT-LIMIT={p:.3}");
        }
        let mut cue = Vec::new();
        match self.kind {
            Kind::Pre => cue.push("PRE"),
            Kind::Insert { post: true } => cue.push("POST"),
            _ => {}
        }
        if policy.once {
            cue.push("ONCE");
        }
        if !cue.is_empty() {
            let _ = write!(l, ",CUE=\"{}\"", cue.join(","));
        }
        let list = |a: bool, an: &'static str, b: bool, bn: &'static str| {
            [(a, an), (b, bn)]
                .into_iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| n)
                .collect::<Vec<_>>()
                .join(",")
        };
        let restrict = list(policy.restrict_skip, "SKIP", policy.restrict_jump, "JUMP");
        if !restrict.is_empty() {
            let _ = write!(l, ",X-RESTRICT=\"{restrict}\"");
        }
        let snap = list(policy.snap_out, "OUT", policy.snap_in, "IN");
        if !snap.is_empty() {
            let _ = write!(l, ",X-SNAP=\"{snap}\"");
        }
        l
    }
}

#[cfg(test)]
mod tests;
