//! One live playlist's outage record: what the last good playlist held, and the playlist that
//! goes on with slate after it, or the content back after the slate.

use super::*;

/// What the renditions of one stream (those one master lists) share in an outage. Players
/// align renditions by media sequence number, so the slate starts, grows and ends at the same
/// numbers in each: a video rendition that went back to content one segment before its audio
/// would leave the two a segment apart for good.
pub(super) struct Shared {
    /// The first content segment the slate stands in for.
    pub(super) start: u64,
    /// When the slate starts (the end of the segment before), wall clock.
    pub(super) t0: SystemTime,
    /// The first rendition's slate, which counts the entries for all: renditions' slates
    /// differ by milliseconds, enough to put their counts one apart near an entry's end.
    pub(super) grid: Slate,
    /// Entries shown so far (never fewer on a later playlist).
    pub(super) shown: AtomicU64,
    /// Set when the origin is back: the slate's length for good.
    pub(super) end: OnceLock<u64>,
}

impl Shared {
    /// Entries the clock says are out at `now`.
    pub(super) fn due_at(&self, now: SystemTime) -> u64 {
        let elapsed = now.duration_since(self.t0).unwrap_or_default();
        self.grid.ended_by(elapsed.min(MAX_SLATE).as_secs_f64())
    }

    /// Entries to show at `now`: never fewer than were shown, and no more once it ended.
    pub(super) fn due(&self, now: SystemTime) -> u64 {
        if let Some(n) = self.end.get() {
            return *n;
        }
        let n = self.due_at(now);
        self.shown.fetch_max(n, Ordering::Relaxed).max(n)
    }

    /// The origin is back with a playlist whose live edge is before segment `edge`: the slate
    /// ends there (it stood in for what the origin could not serve), and never before what
    /// viewers were shown. The first rendition to see the origin back decides for all.
    pub(super) fn end_at(&self, edge: u64, now: SystemTime) -> u64 {
        *self.end.get_or_init(|| {
            let edge = edge.saturating_sub(self.start);
            self.shown
                .load(Ordering::Relaxed)
                .max(self.due_at(now).min(edge))
        })
    }
}

/// One outage of one rendition: where the slate starts, and how much of it was shown.
pub struct Record {
    /// The last good playlist, up to the stream's slate start.
    pub(super) base: MediaPlaylist,
    /// Its last segment's number: slate entry `j` stands in for content segment
    /// `last_seq + 1 + j`.
    pub(super) last_seq: u64,
    /// Entries before the stream's slate start: a last good copy older than the other
    /// renditions' cannot show what it does not have (0 but in that case).
    pub(super) lead: u64,
    /// Its date-time at the slate's start, if the playlist carries them.
    pub(super) pdt0: Option<DateTime<FixedOffset>>,
    pub(super) slate: Slate,
    /// How slate URIs are written: relative to the playlist's directory.
    pub(super) dir: String,
    /// The stream's outage.
    pub(super) shared: Arc<Shared>,
    /// Discontinuity tags the origin put on segments numbered past `last_seq` (what the
    /// slate replaced, and where the content resumes), as far as playlists have shown them.
    pub(super) origin_discs: parking_lot::Mutex<BTreeMap<u64, bool>>,
}

impl Record {
    /// The record of a rendition whose last good copy is `base`, joining the stream's outage
    /// if another rendition started it (and it has not ended).
    pub(super) fn new(
        base: &MediaPlaylist,
        fetched: SystemTime,
        slate: Slate,
        dir: &str,
        stream: Option<Arc<Shared>>,
    ) -> Option<Record> {
        let mut base = base.clone();
        let stream = stream.filter(|s| s.end.get().is_none() && base.media_sequence < s.start);
        if let Some(s) = &stream {
            // what the other renditions replace with slate, this one does too
            let keep = (s.start - base.media_sequence).min(base.segments.len() as u64);
            base.segments.truncate(keep as usize);
        }
        let last = base.segments.last()?;
        let last_seq = base.media_sequence + base.segments.len() as u64 - 1;
        let pdt_end = last.program_date_time.and_then(|p| {
            p.checked_add_signed(chrono::Duration::milliseconds(
                (last.duration as f64 * 1000.0) as i64,
            ))
        });
        let shared = match stream {
            Some(s) => s,
            None => {
                // when that segment ended by its date-time, kept within two target durations
                // of when the playlist was fetched (the origin's clock may not be ours)
                let slack = Duration::from_secs(base.target_duration.clamp(1, 86_400) * 2);
                let earliest = fetched.checked_sub(slack).unwrap_or(fetched);
                let t0 = pdt_end
                    .map(|p| {
                        SystemTime::UNIX_EPOCH
                            + Duration::from_millis(p.timestamp_millis().max(0) as u64)
                    })
                    .map_or(fetched, |t| t.clamp(earliest, fetched));
                Arc::new(Shared {
                    start: last_seq + 1,
                    t0,
                    grid: slate.clone(),
                    shown: AtomicU64::new(0),
                    end: OnceLock::new(),
                })
            }
        };
        Some(Record {
            lead: shared.start.saturating_sub(last_seq + 1),
            base,
            last_seq,
            pdt0: pdt_end,
            slate,
            dir: dir.to_string(),
            shared,
            origin_discs: parking_lot::Mutex::new(BTreeMap::new()),
        })
    }

    /// Entries to show at `now`.
    pub(super) fn due(&self, now: SystemTime) -> u64 {
        self.lead + self.shared.due(now)
    }

    /// The slate's length once the origin is back.
    pub(super) fn end(&self) -> Option<u64> {
        self.shared.end.get().map(|n| self.lead + n)
    }

    /// The origin is back with `p`: the slate's length for good (see [`Shared::end_at`]).
    pub(super) fn end_at(&self, p: &MediaPlaylist, now: SystemTime) -> u64 {
        let edge = p.media_sequence + p.segments.len() as u64;
        self.lead + self.shared.end_at(edge, now)
    }

    pub(super) fn fmp4(&self) -> bool {
        self.base.segments.iter().any(|s| s.map.is_some())
    }

    /// Slate entry `j` as a playlist segment.
    pub(super) fn slate_segment(&self, j: u64) -> MediaSegment {
        let (e, lap, at) = self.slate.entry(j);
        // always the joined form (even of one segment): served from the pinned copy
        let mut uri = format!(
            "{}?{CAT_PARAM}={}",
            relative(&self.dir, &e.path),
            e.extra.join(",")
        );
        let starts = j == 0 || lap;
        if starts && !self.fmp4() && e.path.ends_with(".ts") {
            // its audio leads to its video's decode time, like any creative's first segment
            let sep = if uri.contains('?') { '&' } else { '?' };
            uri.push_str(&format!("{sep}{}=1", crate::route::LEAD_PARAM));
        }
        let unencrypted = self.base.segments.iter().any(|s| {
            s.key
                .as_ref()
                .is_some_and(|k| k.method != m3u8_rs::KeyMethod::None)
        });
        MediaSegment {
            uri,
            duration: e.duration as f32,
            discontinuity: starts,
            map: (starts && self.fmp4())
                .then_some(self.slate.map.as_ref())
                .flatten()
                .map(|m| m3u8_rs::Map {
                    uri: format!("{}?{CAT_PARAM}=", relative(&self.dir, m)),
                    ..Default::default()
                }),
            key: (starts && unencrypted).then(|| m3u8_rs::Key {
                method: m3u8_rs::KeyMethod::None,
                ..Default::default()
            }),
            program_date_time: self.pdt0.and_then(|p| {
                p.checked_add_signed(chrono::Duration::milliseconds((at * 1000.0) as i64))
            }),
            ..Default::default()
        }
    }

    /// The playlist while the origin is down: the last good one's segments, then `n` slate
    /// entries, the window sliding by one segment per entry.
    pub fn during(&self, n: u64) -> MediaPlaylist {
        let mut out = self.base.clone();
        let w = out.segments.len() as u64;
        // n entries in, n out: the window keeps its length; only what stays is built
        let base_gone = n.min(w) as usize;
        let slate_gone = n.saturating_sub(w);
        let c = self.slate.entries.len() as u64;
        let discs_gone = out.segments[..base_gone]
            .iter()
            .filter(|s| s.discontinuity)
            .count() as u64
            + slate_gone.div_ceil(c);
        let content_map = self.content_map();
        out.segments.drain(..base_gone);
        out.segments
            .extend((slate_gone..n).map(|j| self.slate_segment(j)));
        out.media_sequence = self.base.media_sequence + n;
        out.discontinuity_sequence = self.base.discontinuity_sequence + discs_gone;
        self.fix_first(&mut out, content_map);
        out.target_duration = self.target(&out);
        out.end_list = false;
        out
    }

    /// The playlist once the origin is back: `p` (the origin's) with the content the slate
    /// stood in for replaced by it. `None` once the slate has left the window; then the
    /// discontinuity sequence offset that stays is in [`Record::offset`].
    pub fn after(&self, p: &MediaPlaylist) -> Option<MediaPlaylist> {
        let n = self.end()?;
        let (l, r) = (self.last_seq, self.last_seq + 1 + n);
        let first = p.media_sequence;
        {
            let mut learned = self.origin_discs.lock();
            for (i, s) in p.segments.iter().enumerate() {
                let seq = first + i as u64;
                if seq > l && seq <= r {
                    learned.insert(seq, s.discontinuity);
                }
            }
        }
        if first > r || n == 0 {
            return None;
        }
        let content_map = self.content_map();
        let mut out = p.clone();
        out.segments.clear();
        for (i, s) in p.segments.iter().enumerate() {
            let seq = first + i as u64;
            if seq <= l {
                out.segments.push(s.clone());
            }
        }
        for j in 0..n {
            if l + 1 + j >= first {
                out.segments.push(self.slate_segment(j));
            }
        }
        for (i, s) in p.segments.iter().enumerate() {
            let seq = first + i as u64;
            if seq >= r {
                let mut s = s.clone();
                if seq == r {
                    s.discontinuity = true;
                    if s.map.is_none() {
                        s.map = content_map.clone();
                    }
                    if s.key.is_none() {
                        s.key = self.content_key();
                    }
                }
                out.segments.push(s);
            }
        }
        // what left the window before `first`: the slate's discontinuities came in, the
        // origin's on the content it replaced did not
        let ours_gone = (0..n)
            .filter(|&j| l + 1 + j < first && self.slate.entry(j).1 | (j == 0))
            .count() as i64;
        let gone_to = first.min(r).max(l + 1);
        let theirs_gone = self
            .origin_discs
            .lock()
            .range(l + 1..gone_to)
            .filter(|(_, d)| **d)
            .count() as i64;
        out.discontinuity_sequence =
            (p.discontinuity_sequence as i64 + ours_gone - theirs_gone).max(0) as u64;
        self.fix_first(&mut out, content_map);
        out.target_duration = self.target(&out);
        Some(out)
    }

    /// The discontinuity sequence offset left once the slate is out of the window: the
    /// discontinuities it added (each lap and the return to content) less those of the
    /// origin's segments it replaced.
    pub fn offset(&self) -> i64 {
        let n = self.end().unwrap_or(0);
        let (l, r) = (self.last_seq, self.last_seq + 1 + n);
        let laps = (0..n).filter(|&j| j == 0 || self.slate.entry(j).1).count() as i64;
        let discs = self.origin_discs.lock();
        let returned = i64::from(!discs.get(&r).copied().unwrap_or(false));
        let theirs = discs
            .range(l + 1..r.max(l + 1))
            .filter(|(_, d)| **d)
            .count() as i64;
        laps + returned - theirs
    }

    pub(super) fn content_map(&self) -> Option<m3u8_rs::Map> {
        self.base.segments.iter().rev().find_map(|s| s.map.clone())
    }

    pub(super) fn content_key(&self) -> Option<m3u8_rs::Key> {
        self.base.segments.iter().rev().find_map(|s| s.key.clone())
    }

    /// The first segment of a window carries the init (fMP4) and key in force there.
    pub(super) fn fix_first(&self, out: &mut MediaPlaylist, content_map: Option<m3u8_rs::Map>) {
        let Some(first) = out.segments.first_mut() else {
            return;
        };
        if self.fmp4() && first.map.is_none() {
            first.map = if first.uri.contains("ads/") || first.uri.contains(CAT_PARAM) {
                self.slate.map.as_ref().map(|m| m3u8_rs::Map {
                    uri: format!("{}?{CAT_PARAM}=", relative(&self.dir, m)),
                    ..Default::default()
                })
            } else {
                content_map
            };
        }
    }

    pub(super) fn target(&self, out: &MediaPlaylist) -> u64 {
        let longest = out
            .segments
            .iter()
            .map(|s| s.duration.round() as u64)
            .max()
            .unwrap_or(0);
        self.base.target_duration.max(longest)
    }
}

/// `to` (a path under the tenant) relative to directory `dir` (ending in `/`).
pub(super) fn relative(dir: &str, to: &str) -> String {
    let from: Vec<&str> = dir
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let target: Vec<&str> = to.trim_start_matches('/').split('/').collect();
    let common = from
        .iter()
        .zip(&target)
        .take_while(|(a, b)| a == b)
        .count()
        .min(target.len().saturating_sub(1));
    let mut out = "../".repeat(from.len() - common);
    out.push_str(&target[common..].join("/"));
    out
}
