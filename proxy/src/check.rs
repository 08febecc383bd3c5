//! `manifold plugin check FILE.wasm`: validates a component against the plugin world, runs it
//! on the sample manifests (parse → plugin → apply → serialize) and prints what it did and how
//! long it took.

use crate::creatives::{Creatives, RenditionWant};
use crate::master::Master;
use crate::parse::{parse, Parsed};
use crate::pipeline::{self, Context, Failed, Format, Scratch};
use crate::plugin::bindings::{AdDecider, DeviceClass, Viewer};
use crate::plugin::kv::KvStore;
use crate::plugin::{CallEnv, Capabilities, EngineOptions, PluginEngine, Wire};
use crate::route::Class;
use crate::session::{DecidedAd, SessionState};
use crate::ssai::{Media, Policies};
use crate::ssai_dash::DashMedia;
use crate::synthetic::Synthetic;
use crate::types::{AdBreak, Edit};
use async_trait::async_trait;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct CheckOptions {
    pub wasm: PathBuf,
    pub samples: PathBuf,
    pub config: String,
    pub capabilities: Vec<String>,
    pub deadline: Duration,
    pub device: DeviceClass,
    pub query: Vec<(String, String)>,
    pub runs: usize,
}

/// Stand-in ad decision: `ad10`s while they fit.
struct SyntheticDecider;

#[async_trait]
impl AdDecider for SyntheticDecider {
    async fn decide(
        &self,
        _t: &str,
        _s: Option<&str>,
        brk: &AdBreak,
        _v: &Viewer,
    ) -> Vec<DecidedAd> {
        (0..(brk.duration / 10.0).floor() as usize)
            .map(|i| DecidedAd {
                id: format!("{}-{i}", brk.id),
                creative: "ad10".into(),
                duration: 10.0,
                tracking: Default::default(),
            })
            .collect()
    }
}

/// Plan, lay out and stitch a media playlist for a throwaway session.
/// The plan run as the proxy runs it, for a session of its own that sees everything first.
async fn stateless<F: Format>(
    format: &F,
    edits: &[Edit],
    creatives: &dyn Creatives,
) -> Result<F::Out, Failed> {
    let policies = Policies::default();
    let cx = Context {
        creatives,
        policies: &policies,
        want: RenditionWant::default(),
        prefix: "/t/~s",
        now_ms: 0,
    };
    pipeline::run(format, edits, SessionState::default(), &Scratch, &cx).await
}

fn edit_summary(edits: &[Edit]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for e in edits {
        let name = crate::apply::edit_name(e);
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(n, c)| format!("{c} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The call environment and viewer a check runs the plugin with: the granted capabilities,
/// a small kv store, the synthetic ad decider, the deadline and device asked for.
fn stand_ins(opts: &CheckOptions) -> Result<(CallEnv, Viewer), String> {
    let caps = Capabilities::parse(&opts.capabilities)?;
    let env = CallEnv {
        tenant: "check".into(),
        caps,
        kv: caps.kv.then(|| Arc::new(KvStore::new(64 * 1024))),
        ads: Some(Arc::new(SyntheticDecider)),
        deadline: opts.deadline,
        memory: 16 << 20,
        share: Arc::new(tokio::sync::Semaphore::new(4)),
        cpu: Arc::new(tokio::sync::Semaphore::new(4)),
        demoted: Default::default(),
    };
    let viewer = Viewer {
        tenant: "check".into(),
        session_id: Some("check-session".into()),
        query: opts.query.clone(),
        headers: vec![],
        user_agent: Some("manifold-plugin-check".into()),
        device: opts.device,
        client_ip: Some("127.0.0.1".into()),
        country: None,
        cmcd: vec![],
    };
    Ok((env, viewer))
}

/// The plugin's edits applied to a sample as the proxy would, without a session: the size of
/// the manifest they make.
async fn apply(parsed: &Parsed, body: &[u8], edits: &[Edit]) -> Result<usize, Failed> {
    match parsed {
        Parsed::HlsMaster { playlist, .. } => {
            stateless(&Master { playlist }, edits, &Synthetic::default())
                .await
                .map(|m| {
                    let mut b = Vec::new();
                    let _ = m.write_to(&mut b);
                    b.len()
                })
        }
        Parsed::HlsMedia { playlist, view } => {
            let media = Media {
                playlist,
                view,
                body,
            };
            stateless(&media, edits, &Synthetic::default())
                .await
                .map(|b| b.len())
        }
        Parsed::Dash { mpd, view, .. } => {
            let creatives = match mpd.periods.first() {
                Some(p) => Synthetic::shaped_like(p.clone()),
                None => Synthetic::default(),
            };
            stateless(&DashMedia { mpd, view }, edits, &creatives)
                .await
                .map(|m| m.to_string().len())
        }
        Parsed::None => Ok(0),
    }
}

/// Runs the check; the report, and whether every sample ran cleanly. `Err` if the file is
/// not a plugin component at all.
pub async fn run(opts: &CheckOptions) -> Result<(String, bool), String> {
    // Long: the report's lines in print order, one per sample, as each sample runs.
    let wasm = std::fs::read(&opts.wasm).map_err(|e| format!("{}: {e}", opts.wasm.display()))?;
    let artifacts = tempfile::tempdir().map_err(|e| e.to_string())?;
    let engine = PluginEngine::new(&EngineOptions {
        artifacts_dir: artifacts.path().to_path_buf(),
        max_instances: 4,
        max_memory: 64 << 20,
        loaded_capacity: 4,
    })
    .map_err(|e| e.to_string())?;
    let plugin = engine.load(&wasm).map_err(|e| e.to_string())?;
    let (env, viewer) = stand_ins(opts)?;
    let missing = plugin.ungranted(env.caps);
    if !missing.is_empty() {
        let e = crate::plugin::runtime::LoadError::Ungranted(missing.join(", "));
        return Err(format!("{e} (here: --capabilities)"));
    }
    let mut report = String::new();
    let _ = writeln!(
        report,
        "component  {}  {} bytes  world {}  compiled and validated in {:.1} ms",
        plugin.digest,
        plugin.wasm_bytes,
        plugin.world(),
        plugin.load_time.as_secs_f64() * 1000.0
    );
    let _ = writeln!(
        report,
        "\n{:<30} {:<16} {:<26} {:>12} {:>10} {:>10}",
        "sample", "result", "edits", "plugin p50", "apply", "bytes"
    );
    let mut samples: Vec<PathBuf> = std::fs::read_dir(&opts.samples)
        .map_err(|e| format!("{}: {e}", opts.samples.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "m3u8" || x == "mpd"))
        .collect();
    samples.sort();
    let mut all_ok = true;
    for path in &samples {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let body = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let class = Class::of(&name);
        let (_, parsed) = parse(class, &body);
        let Some(wire) = Wire::of(&parsed) else {
            let _ = writeln!(report, "{name:<30} {:<16}", "does not parse");
            continue;
        };
        let mut times = Vec::with_capacity(opts.runs);
        let mut last = None;
        for _ in 0..opts.runs.max(1) {
            let t = Instant::now();
            let r = engine
                .call(&plugin, wire.input(), &viewer, &opts.config, &env, None)
                .await;
            times.push(t.elapsed().as_micros() as u64);
            let failed = r.is_err();
            last = Some(r);
            if failed {
                break;
            }
        }
        let Some(result) = last else { continue };
        times.sort_unstable();
        let p50 = format!("{} µs", percentile(&times, 0.5));
        match result {
            Err(f) => {
                all_ok = false;
                let _ = writeln!(
                    report,
                    "{name:<30} {:<16} {}",
                    format!("FAIL {}", f.kind.as_str()),
                    f.message
                );
            }
            Ok(edits) => {
                let t = Instant::now();
                let applied = apply(&parsed, &body, &edits).await;
                let apply_us = format!("{} µs", t.elapsed().as_micros());
                match applied {
                    Ok(bytes) => {
                        let _ = writeln!(
                            report,
                            "{name:<30} {:<16} {:<26} {p50:>12} {apply_us:>10} {bytes:>10}",
                            "ok",
                            edit_summary(&edits)
                        );
                    }
                    Err(e) => {
                        all_ok = false;
                        let _ = writeln!(
                            report,
                            "{name:<30} {:<16} {}: {e}",
                            "FAIL invalid-plan",
                            edit_summary(&edits)
                        );
                    }
                }
            }
        }
    }
    let _ =
        writeln!(
        report,
        "\n{} ({} runs per sample, deadline {:?}; ads and creatives are synthetic: adN lasts N s)",
        if all_ok { "all samples ok" } else { "some samples FAILED" },
        opts.runs,
        opts.deadline
    );
    Ok((report, all_ok))
}

/// Where the sample manifests are, relative to the source tree.
pub fn default_samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/manifests")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(wasm: &str, config: &str) -> CheckOptions {
        CheckOptions {
            wasm: PathBuf::from(format!(
                "{}/../target/wasm32-wasip2/release/{wasm}.wasm",
                env!("CARGO_MANIFEST_DIR")
            )),
            samples: default_samples(),
            config: config.into(),
            capabilities: vec![],
            deadline: Duration::from_millis(200),
            device: DeviceClass::Mobile,
            query: vec![],
            runs: 3,
        }
    }

    #[tokio::test]
    async fn sample_plugins_pass_and_misbehaving_ones_are_reported() {
        let (report, ok) = run(&opts("scte35_breaks", "pod=ad10,ad15")).await.unwrap();
        assert!(ok, "{report}");
        assert!(
            report.contains("hls-live-break.m3u8") && report.contains("1 fill-break"),
            "{report}"
        );
        let mut with_ads = opts("scte35_breaks", "");
        with_ads.capabilities = vec!["ads".into()];
        let (report, ok) = run(&with_ads).await.unwrap();
        assert!(ok, "{report}");
        let (report, ok) = run(&opts("scte35_breaks", "")).await.unwrap();
        assert!(
            !ok && report.contains("capability `ads` not granted"),
            "{report}"
        );
        let (report, ok) = run(&opts("variant_filter", "mobile=108")).await.unwrap();
        assert!(ok, "{report}");
        assert!(report.contains("2 drop-variant"), "{report}");
        let (report, ok) = run(&opts("misbehave", "mode=loop")).await.unwrap();
        assert!(!ok);
        assert!(report.contains("FAIL deadline"), "{report}");
        let (report, ok) = run(&opts("misbehave", "mode=invalid")).await.unwrap();
        assert!(!ok);
        assert!(report.contains("FAIL invalid-plan"), "{report}");
        let mut o = opts("misbehave", "");
        o.wasm = PathBuf::from("/nonexistent.wasm");
        assert!(run(&o).await.is_err());
    }
}
