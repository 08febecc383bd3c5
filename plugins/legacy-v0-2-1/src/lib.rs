//! A plugin of `manifold:plugin@0.2.1` as published (`wit/0.2.1/`), the `session-plugin`
//! world before `low-latency`: it fills every break with `ad10` when the session is stitched
//! and `ad15` when it is guided. The host must keep loading and running it unchanged.

wit_bindgen::generate!({
    path: "../../wit/0.2.1",
    world: "session-plugin",
});

use manifold::plugin::types::{Ad, AdBreak, Fill, Insertion};

struct Legacy;

impl Guest for Legacy {
    fn hls_master(
        _master: HlsMaster,
        _viewer: Viewer,
        _session: Session,
        _config: String,
    ) -> Result<Vec<Edit>, String> {
        Ok(Vec::new())
    }

    fn hls_media(
        media: HlsMedia,
        _viewer: Viewer,
        session: Session,
        _config: String,
    ) -> Result<Vec<Edit>, String> {
        Ok(media.breaks.iter().map(|b| fill(b, &session)).collect())
    }

    fn dash_mpd(
        mpd: DashMpd,
        _viewer: Viewer,
        session: Session,
        _config: String,
    ) -> Result<Vec<Edit>, String> {
        Ok(mpd.breaks.iter().map(|b| fill(b, &session)).collect())
    }
}

fn fill(b: &AdBreak, session: &Session) -> Edit {
    let creative = match session.insertion {
        Insertion::Stitched => "ad10",
        Insertion::Guided => "ad15",
    };
    Edit::FillBreak(Fill {
        break_id: b.id.clone(),
        pod: vec![Ad {
            id: creative.into(),
            creative: creative.into(),
            duration: 10.0,
        }],
    })
}

export!(Legacy);
