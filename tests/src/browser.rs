//! Real players in a real browser: `tests/browser/run.mjs` plays streams with hls.js and
//! Shaka Player (npm, pinned in `tests/browser/package.json`) in Debian's headless Chromium,
//! and reports what each player saw. The test command's set-up installs all of it.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Seconds after the first frame that count as start-up for stalls.
pub const STARTUP: f64 = 5.0;

/// A player: `hls` (hls.js) or `shaka`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Player {
    HlsJs,
    Shaka,
}

impl Player {
    fn id(self) -> &'static str {
        match self {
            Player::HlsJs => "hls",
            Player::Shaka => "shaka",
        }
    }
}

/// One stream to play.
#[derive(Debug, Clone)]
pub struct Stream {
    pub name: String,
    pub player: Player,
    pub url: String,
    pub seconds: u32,
    /// Player options merged into its config (e.g. CMCD on).
    pub config: Value,
}

impl Stream {
    pub fn new(player: Player, url: impl Into<String>, seconds: u32) -> Stream {
        let url = url.into();
        Stream {
            name: format!("{} {}", player.id(), url),
            player,
            url,
            seconds,
            config: Value::Null,
        }
    }

    pub fn with_config(mut self, config: Value) -> Stream {
        self.config = config;
        self
    }
}

fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/browser"))
}

/// Plays every stream (up to `concurrency` pages at once) and returns each player's report.
/// `ignore_cert`: accept the tests' self-signed certificates.
pub fn play(streams: &[Stream], concurrency: usize, ignore_cert: bool) -> Result<Vec<Report>> {
    let modules = dir().join("node_modules");
    if !modules.join("playwright-core").exists() || !modules.join("hls.js").exists() {
        bail!(
            "{} is missing the players: run scripts/setup.sh (npm ci in tests/browser)",
            modules.display()
        );
    }
    crate::tool("chromium", "chromium");
    let spec = serde_json::json!({
        "concurrency": concurrency,
        "ignoreCertificateErrors": ignore_cert,
        "streams": streams.iter().map(|s| serde_json::json!({
            "name": s.name,
            "player": s.player.id(),
            "url": s.url,
            "seconds": s.seconds,
            "config": s.config,
        })).collect::<Vec<_>>(),
    });
    let file = tempfile::Builder::new().suffix(".json").tempfile()?;
    std::fs::write(file.path(), spec.to_string())?;
    let out = Command::new("node")
        .arg(dir().join("run.mjs"))
        .arg(file.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context("running node (scripts/setup.sh installs Node.js)")?;
    if !out.status.success() {
        bail!("tests/browser/run.mjs failed with {}", out.status);
    }
    // kept beside the process logs, to diagnose a failure after the fact
    let keep = crate::bin("manifold")
        .parent()
        .map(|d| d.join("e2e-logs"))
        .unwrap_or_default();
    let _ = std::fs::create_dir_all(&keep);
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _ = std::fs::write(
        keep.join(format!("browser-{}-{run}.json", std::process::id())),
        &out.stdout,
    );
    let v: Value = serde_json::from_slice(&out.stdout).context("run.mjs output")?;
    let results = v["results"].as_array().context("no results")?;
    Ok(results.iter().cloned().map(Report).collect())
}

/// What a player saw (the JSON `player.html` reports, with the page's HTTP failures).
#[derive(Debug, Clone)]
pub struct Report(pub Value);

impl Report {
    pub fn name(&self) -> &str {
        self.0["name"].as_str().unwrap_or("?")
    }

    fn list(&self, key: &str) -> Vec<Value> {
        self.0[key].as_array().cloned().unwrap_or_default()
    }

    pub fn started(&self) -> bool {
        self.0["startedAt"].is_number()
    }

    pub fn fatal(&self) -> Vec<Value> {
        self.list("fatal")
    }

    /// Stalls once playback has settled: from [`STARTUP`] seconds after it started (a player
    /// may pause once right after its first frame while its buffer fills).
    pub fn stalls(&self) -> Vec<Value> {
        let started = self.0["startedAt"].as_f64().unwrap_or(0.0);
        self.list("stalls")
            .into_iter()
            .filter(|s| s["t"].as_f64().unwrap_or(0.0) >= started + STARTUP)
            .collect()
    }

    /// Holes jumped once playback has settled, like [`stalls`](Self::stalls): at start-up
    /// hls.js may jump from 0 to where the first fragment's media begins (seen under load on
    /// a VOD stream without ads); splices come later than that.
    pub fn holes(&self) -> Vec<Value> {
        let started = self.0["startedAt"].as_f64().unwrap_or(0.0);
        self.list("holes")
            .into_iter()
            .filter(|s| s["t"].as_f64().unwrap_or(0.0) >= started + STARTUP)
            .collect()
    }

    /// Seconds of media played since playback started, and seconds of wall time since then.
    pub fn played(&self) -> (f64, f64) {
        (
            self.0["playedSeconds"].as_f64().unwrap_or(0.0),
            self.0["playingWall"].as_f64().unwrap_or(0.0),
        )
    }

    /// Seconds of ad segments the playhead went through.
    pub fn ad_seconds(&self) -> f64 {
        self.0["adSecondsPlayed"].as_f64().unwrap_or(0.0)
    }

    /// HTTP answers >= 400 and failed requests the page saw (aborted prefetches excluded).
    pub fn http_failures(&self) -> Vec<Value> {
        self.list("http")
            .into_iter()
            .filter(|h| h["failure"].as_str() != Some("net::ERR_ABORTED"))
            .collect()
    }

    /// Every check a viewer would notice: started, nothing fatal, no stall or hole after
    /// start-up, and played time at least 90 % of wall time. The report on failure.
    pub fn check_smooth(&self) -> Result<()> {
        let (played, wall) = self.played();
        let problems: Vec<String> = [
            (!self.started()).then(|| "never started".to_string()),
            (!self.fatal().is_empty()).then(|| format!("fatal errors {:?}", self.fatal())),
            (!self.stalls().is_empty()).then(|| format!("stalls {:?}", self.stalls())),
            (!self.holes().is_empty()).then(|| format!("buffer holes {:?}", self.holes())),
            (played < 0.9 * wall).then(|| format!("played {played:.1} s in {wall:.1} s")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if problems.is_empty() {
            return Ok(());
        }
        bail!("{}: {}\n{}", self.name(), problems.join("; "), self.brief())
    }

    /// The report without its bulkiest parts, for failure messages.
    pub fn brief(&self) -> String {
        let mut v = self.0.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("samples");
            if let Some(f) = o.get_mut("playedFrags").and_then(|f| f.as_array_mut()) {
                let n = f.len();
                f.drain(..n.saturating_sub(8));
            }
        }
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }
}

/// Drives the operator console through `tests/browser/console.mjs` with `spec` and returns
/// what each step saw.
pub fn drive_console(spec: &Value) -> Result<Value> {
    let modules = dir().join("node_modules");
    if !modules.join("playwright-core").exists() {
        bail!(
            "{} is missing playwright-core: run scripts/setup.sh (npm ci in tests/browser)",
            modules.display()
        );
    }
    crate::tool("chromium", "chromium");
    let file = tempfile::Builder::new().suffix(".json").tempfile()?;
    std::fs::write(file.path(), spec.to_string())?;
    let out = Command::new("node")
        .arg(dir().join("console.mjs"))
        .arg(file.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context("running node (scripts/setup.sh installs Node.js)")?;
    if !out.status.success() {
        bail!("tests/browser/console.mjs failed with {}", out.status);
    }
    serde_json::from_slice(&out.stdout).context("console.mjs output")
}

/// The players' files as the tests pin them (`node_modules` of `tests/browser`).
pub fn pinned_player(file: &str) -> PathBuf {
    dir().join("node_modules").join(file)
}
