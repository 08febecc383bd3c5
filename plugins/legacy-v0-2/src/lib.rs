//! A plugin of `manifold:plugin@0.2.0` as published (`wit/0.2.0/`), untouched by later
//! versions of the contract: it fills every break with `ad10` and drops the top variant of
//! a master. The host must keep loading and running it unchanged.

wit_bindgen::generate!({
    path: "../../wit/0.2.0",
    world: "plugin",
});

use manifold::plugin::types::{Ad, AdBreak, Fill};

struct Legacy;

impl Guest for Legacy {
    fn hls_master(
        master: HlsMaster,
        _viewer: Viewer,
        _config: String,
    ) -> Result<Vec<Edit>, String> {
        let top = master.variants.iter().max_by_key(|v| v.bandwidth);
        Ok(match top {
            Some(v) if master.variants.len() > 1 => vec![Edit::DropVariant(v.index)],
            _ => Vec::new(),
        })
    }

    fn hls_media(media: HlsMedia, _viewer: Viewer, _config: String) -> Result<Vec<Edit>, String> {
        Ok(media.breaks.iter().map(fill).collect())
    }

    fn dash_mpd(mpd: DashMpd, _viewer: Viewer, _config: String) -> Result<Vec<Edit>, String> {
        Ok(mpd.breaks.iter().map(fill).collect())
    }
}

fn fill(b: &AdBreak) -> Edit {
    Edit::FillBreak(Fill {
        break_id: b.id.clone(),
        pod: vec![Ad {
            id: "ad10".into(),
            creative: "ad10".into(),
            duration: 10.0,
        }],
    })
}

export!(Legacy);
