//! A plugin of the `scoped-plugin` world: it imports the `kv` and `log` interfaces only, so a
//! tenant must grant both for it to deploy. On an HLS master it counts the tenant's requests
//! in kv and drops the top variant on every other one (a visible sign the store works).

wit_bindgen::generate!({
    path: "../../wit",
    world: "scoped-plugin",
});

use manifold::plugin::{kv, log};

struct ScopedKv;

impl Guest for ScopedKv {
    fn hls_master(
        master: HlsMaster,
        _viewer: Viewer,
        _config: String,
    ) -> Result<Vec<Edit>, String> {
        let n = kv::get("requests")
            .and_then(|v| v.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        kv::set("requests", &(n + 1).to_le_bytes())?;
        log::log(log::Level::Debug, &format!("master request {n}"));
        let top = master.variants.iter().max_by_key(|v| v.bandwidth);
        Ok(match top {
            Some(v) if n % 2 == 1 && master.variants.len() > 1 => vec![Edit::DropVariant(v.index)],
            _ => Vec::new(),
        })
    }

    fn hls_media(_media: HlsMedia, _viewer: Viewer, _config: String) -> Result<Vec<Edit>, String> {
        Ok(Vec::new())
    }

    fn dash_mpd(_mpd: DashMpd, _viewer: Viewer, _config: String) -> Result<Vec<Edit>, String> {
        Ok(Vec::new())
    }
}

export!(ScopedKv);
