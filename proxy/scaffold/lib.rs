//! {{name}}: a Manifold manifest plugin. Drops variants above the viewer's `?maxres=` and fills
//! each ad break with the config's `pod=` creatives (`pod=ad10,ad15`: `adN` lasts N s).
//! Build: cargo build --release; check: manifold plugin check
//! target/wasm32-wasip2/release/{{crate}}.wasm
use manifold_plugin_sdk::*;

struct Template;

fn seconds(creative: &str) -> f64 {
    creative
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or(0.0)
}

fn fill(breaks: &[AdBreak], config: &str) -> Vec<Edit> {
    let names = config::list(config, "pod");
    breaks
        .iter()
        .map(|b| {
            let mut left = b.duration;
            let mut pod = Vec::new();
            for n in &names {
                let s = seconds(n);
                if s > 0.0 && s <= left + 0.001 {
                    left -= s;
                    pod.push(Ad::new(n, s));
                }
            }
            Edit::FillBreak(Fill {
                break_id: b.id.clone(),
                pod,
            })
        })
        .collect()
}

impl Plugin for Template {
    fn hls_master(m: HlsMaster, v: Viewer, _config: String) -> Result<Vec<Edit>, String> {
        let Some(max) = v.query("maxres").and_then(|m| m.parse::<u32>().ok()) else {
            return Ok(vec![]);
        };
        Ok(m.variants
            .iter()
            .filter(|x| x.resolution.is_some_and(|r| r.height > max))
            .map(|x| Edit::DropVariant(x.index))
            .collect())
    }

    fn hls_media(m: HlsMedia, _v: Viewer, config: String) -> Result<Vec<Edit>, String> {
        Ok(fill(&m.breaks, &config))
    }

    fn dash_mpd(m: DashMpd, _v: Viewer, config: String) -> Result<Vec<Edit>, String> {
        Ok(fill(&m.breaks, &config))
    }
}

plugin!(Template);
