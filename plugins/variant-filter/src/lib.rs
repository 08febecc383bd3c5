//! Drops variants and representations above the viewer's device cap (e.g. mobile ≤ 720p).
//! Config: per-class caps in lines, `mobile=720; tablet=1080; tv=2160; desktop=2160`;
//! a `maxres` player param (`?maxres=480`) lowers the cap further.
use manifold_plugin_sdk::*;

struct VariantFilter;

fn cap(viewer: &Viewer, config: &str) -> Option<u32> {
    let class = match viewer.device {
        DeviceClass::Mobile => "mobile",
        DeviceClass::Tablet => "tablet",
        DeviceClass::Tv => "tv",
        DeviceClass::Desktop => "desktop",
        DeviceClass::Unknown => "unknown",
    };
    let by_device = config::number(config, class).map(|h| h as u32);
    let by_param = viewer.query("maxres").and_then(|v| v.parse().ok());
    by_device.into_iter().chain(by_param).min()
}

impl Plugin for VariantFilter {
    fn hls_master(m: HlsMaster, v: Viewer, config: String) -> Result<Vec<Edit>, String> {
        let Some(cap) = cap(&v, &config) else {
            return Ok(vec![]);
        };
        Ok(m.variants
            .iter()
            .filter(|x| x.resolution.is_some_and(|r| r.height > cap))
            .map(|x| Edit::DropVariant(x.index))
            .collect())
    }

    fn dash_mpd(mpd: DashMpd, v: Viewer, config: String) -> Result<Vec<Edit>, String> {
        let Some(cap) = cap(&v, &config) else {
            return Ok(vec![]);
        };
        Ok(mpd
            .periods
            .iter()
            .flat_map(|p| &p.adaptation_sets)
            .flat_map(|a| &a.representations)
            .filter(|r| r.height.is_some_and(|h| h > cap))
            .map(|r| Edit::DropRepresentation(r.id.clone()))
            .collect())
    }
}

plugin!(VariantFilter);
