//! The simulator's control surface: request counters (to prove coalescing and offload) and
//! fault injection (to prove the proxy's behaviour when the origin misbehaves).

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Request classes, by path, as an edge proxy would see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    HlsPlaylist,
    DashManifest,
    Segment,
    Other,
}

impl Class {
    pub fn of(path: &str) -> Class {
        let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
        match ext {
            "m3u8" => Class::HlsPlaylist,
            "mpd" => Class::DashManifest,
            "ts" | "m4s" | "mp4" | "m4a" | "m4v" | "aac" | "vtt" | "cmfv" | "cmfa" => {
                Class::Segment
            }
            _ => Class::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    pub fn is_manifest(self) -> bool {
        matches!(self, Class::HlsPlaylist | Class::DashManifest)
    }
}

const CLASSES: [Class; 4] = [
    Class::HlsPlaylist,
    Class::DashManifest,
    Class::Segment,
    Class::Other,
];

/// Origin requests counted per class and per path.
#[derive(Default)]
pub struct Counters {
    by_class: [AtomicU64; 4],
    by_path: Mutex<BTreeMap<String, u64>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CountersView {
    pub total: u64,
    pub by_class: BTreeMap<String, u64>,
    pub by_path: BTreeMap<String, u64>,
}

impl Counters {
    pub fn record(&self, class: Class, path: &str) {
        self.by_class[class.index()].fetch_add(1, Ordering::Relaxed);
        *self.by_path.lock().entry(path.to_string()).or_default() += 1;
    }

    /// Totals, with per-path counts limited to paths under `prefix`.
    pub fn view(&self, prefix: &str) -> CountersView {
        let mut by_class = BTreeMap::new();
        let mut total = 0;
        for c in CLASSES {
            let n = self.by_class[c.index()].load(Ordering::Relaxed);
            total += n;
            let name = serde_json::to_value(c)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            by_class.insert(name, n);
        }
        let by_path = self
            .by_path
            .lock()
            .range(prefix.to_string()..)
            .take_while(|(p, _)| p.starts_with(prefix))
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        CountersView {
            total,
            by_class,
            by_path,
        }
    }

    pub fn reset(&self) {
        for c in &self.by_class {
            c.store(0, Ordering::Relaxed);
        }
        self.by_path.lock().clear();
    }
}

/// Faults applied to matching requests (all knobs off by default).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Delay before answering, milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// Answer with this status (e.g. 503) and a short body instead of the resource.
    #[serde(default)]
    pub status: Option<u16>,
    /// Announce the full `Content-Length`, send half the body, then drop the connection.
    #[serde(default)]
    pub truncate: bool,
    /// Replace manifest bodies with syntactically broken ones.
    #[serde(default)]
    pub malformed_manifest: bool,
    /// Only requests whose path starts with this.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Only requests of this class.
    #[serde(default)]
    pub class: Option<Class>,
    /// Only the next N matching requests, then the faults clear themselves.
    #[serde(default)]
    pub remaining: Option<u64>,
}

impl Faults {
    fn matches(&self, class: Class, path: &str) -> bool {
        self.path_prefix
            .as_deref()
            .is_none_or(|p| path.starts_with(p))
            && self.class.is_none_or(|c| c == class)
    }
}

/// The active fault set.
#[derive(Default)]
pub struct FaultSwitch(Mutex<Option<Faults>>);

impl FaultSwitch {
    pub fn set(&self, faults: Faults) {
        *self.0.lock() = Some(faults);
    }

    pub fn clear(&self) {
        *self.0.lock() = None;
    }

    pub fn current(&self) -> Option<Faults> {
        self.0.lock().clone()
    }

    /// The faults to apply to this request, consuming one use of a counted fault.
    pub fn take(&self, class: Class, path: &str) -> Option<Faults> {
        let mut guard = self.0.lock();
        let faults = guard.as_mut()?;
        if !faults.matches(class, path) {
            return None;
        }
        let applied = faults.clone();
        if let Some(n) = faults.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                *guard = None;
            }
        }
        Some(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_extension() {
        assert_eq!(Class::of("/live/hls/v0.m3u8"), Class::HlsPlaylist);
        assert_eq!(Class::of("/live/dash/manifest.mpd"), Class::DashManifest);
        assert_eq!(Class::of("/live/hls/v0/12.ts"), Class::Segment);
        assert_eq!(Class::of("/live/cmaf/a0/init.mp4"), Class::Segment);
        assert_eq!(Class::of("/favicon.ico"), Class::Other);
        assert_eq!(Class::of("/noext"), Class::Other);
    }

    #[test]
    fn counted_faults_clear_themselves() {
        let sw = FaultSwitch::default();
        sw.set(Faults {
            status: Some(503),
            class: Some(Class::Segment),
            remaining: Some(2),
            ..Faults::default()
        });
        assert!(sw.take(Class::HlsPlaylist, "/a.m3u8").is_none());
        assert!(sw.take(Class::Segment, "/a.ts").is_some());
        assert!(sw.take(Class::Segment, "/a.ts").is_some());
        assert!(sw.take(Class::Segment, "/a.ts").is_none());
        assert!(sw.current().is_none());
    }

    #[test]
    fn counters_filter_by_prefix() {
        let c = Counters::default();
        c.record(Class::Segment, "/live/hls/v0/1.ts");
        c.record(Class::Segment, "/live/hls/v0/1.ts");
        c.record(Class::HlsPlaylist, "/live/hls/v0.m3u8");
        let v = c.view("/live/hls/v0/");
        assert_eq!(v.total, 3);
        assert_eq!(v.by_class["segment"], 2);
        assert_eq!(v.by_path.len(), 1);
        assert_eq!(v.by_path["/live/hls/v0/1.ts"], 2);
    }
}
