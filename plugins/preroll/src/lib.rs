//! Plays a pre-roll pod before the content: `pod=ad10,ad15` in the config (default `ad10`).
//! Viewers with `?preroll=0` skip it. In VOD, `midroll=ad10` with `midroll_at=20` also plays a
//! mid-roll pod 20 s into the content. `guided_pod=ad15` plays another pre-roll pod to
//! server-guided sessions (the session is part of the plugin's input).
use manifold_plugin_sdk::*;

struct Preroll;

/// `adN` lasts N s.
fn pod_of(names: &[&str]) -> Vec<Ad> {
    names
        .iter()
        .map(|n| {
            Ad::new(
                n,
                n.trim_start_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .unwrap_or(10.0),
            )
        })
        .collect()
}

fn preroll(v: &Viewer, s: &Session, config: &str, live: bool) -> Result<Vec<Edit>, String> {
    if v.query("preroll") == Some("0") {
        return Ok(vec![]);
    }
    let guided = config::list(config, "guided_pod");
    let mut names = match s.insertion {
        Insertion::Guided if !guided.is_empty() => guided,
        _ => config::list(config, "pod"),
    };
    if names.is_empty() {
        names.push("ad10");
    }
    let mut edits = vec![Edit::Preroll(pod_of(&names))];
    let mid = config::list(config, "midroll");
    let at = config::get(config, "midroll_at").and_then(|a| a.parse::<f64>().ok());
    if let (false, false, Some(at)) = (live, mid.is_empty(), at) {
        edits.push(Edit::InsertPod(Insert {
            at,
            pod: pod_of(&mid),
        }));
    }
    Ok(edits)
}

impl Plugin for Preroll {
    fn hls_media_in_session(
        m: HlsMedia,
        v: Viewer,
        s: Session,
        config: String,
    ) -> Result<Vec<Edit>, String> {
        preroll(&v, &s, &config, m.live)
    }

    fn dash_mpd_in_session(
        m: DashMpd,
        v: Viewer,
        s: Session,
        config: String,
    ) -> Result<Vec<Edit>, String> {
        preroll(&v, &s, &config, m.dynamic)
    }
}

plugin!(Preroll);
