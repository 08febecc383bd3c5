//! Plays a pre-roll pod before the content: `pod=ad10,ad15` in the config (default `ad10`).
//! Viewers with `?preroll=0` skip it.
use manifold_plugin_sdk::*;

struct Preroll;

fn preroll(v: &Viewer, config: &str) -> Result<Vec<Edit>, String> {
    if v.query("preroll") == Some("0") {
        return Ok(vec![]);
    }
    let mut names = config::list(config, "pod");
    if names.is_empty() {
        names.push("ad10");
    }
    let pod = names
        .iter()
        .map(|n| {
            Ad::new(
                n,
                n.trim_start_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .unwrap_or(10.0),
            )
        })
        .collect();
    Ok(vec![Edit::Preroll(pod)])
}

impl Plugin for Preroll {
    fn hls_media(_m: HlsMedia, v: Viewer, config: String) -> Result<Vec<Edit>, String> {
        preroll(&v, &config)
    }

    fn dash_mpd(_m: DashMpd, v: Viewer, config: String) -> Result<Vec<Edit>, String> {
        preroll(&v, &config)
    }
}

plugin!(Preroll);
