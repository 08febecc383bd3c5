//! Fills every SCTE-35 break with an ad pod; the host pads the rest of the break with slate.
//! The pod comes from the host's ad decision (`decide-ads`) or, with `pod=ad10,ad15` in the
//! config, from the config (each ad as long as its creative: `ad10` → 10 s).
use manifold_plugin_sdk::*;

struct Scte35Breaks;

fn pod(b: &AdBreak, config: &str) -> Vec<Ad> {
    let fixed = config::list(config, "pod");
    if fixed.is_empty() {
        return host::decide_ads(b);
    }
    let mut left = b.duration;
    let mut ads = Vec::new();
    for creative in fixed {
        let secs: f64 = creative
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap_or(0.0);
        if secs > 0.0 && secs <= left + 0.001 {
            left -= secs;
            ads.push(Ad::new(creative, secs));
        }
    }
    ads
}

fn fill(breaks: &[AdBreak], config: &str) -> Vec<Edit> {
    breaks
        .iter()
        .map(|b| {
            Edit::FillBreak(Fill {
                break_id: b.id.clone(),
                pod: pod(b, config),
            })
        })
        .collect()
}

impl Plugin for Scte35Breaks {
    fn hls_media(m: HlsMedia, _v: Viewer, config: String) -> Result<Vec<Edit>, String> {
        Ok(fill(&m.breaks, &config))
    }

    fn dash_mpd(m: DashMpd, _v: Viewer, config: String) -> Result<Vec<Edit>, String> {
        Ok(fill(&m.breaks, &config))
    }
}

plugin!(Scte35Breaks);
