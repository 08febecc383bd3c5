//! A tenant's ads at work: the catalog's ad decision (for plugins granted `ads`), and where
//! each creative's segments are, fetched from the tenant's origin through the manifest cache
//! and matched to the content rendition.

use crate::catalog::AdCatalog;
use crate::config::CreativeConfig;
use crate::creatives::{AdMedia, Creatives, Packaging, RenditionWant};
use crate::manifest_cache::ManifestCache;
use crate::parse::Parsed;
use crate::plugin::bindings::{AdDecider, Viewer};
use crate::route::{Class, Route, Tenant};
use crate::session::DecidedAd;
use crate::stitch_dash::DashCreative;
use crate::types::AdBreak;
use async_trait::async_trait;
use std::sync::Arc;

impl AdCatalog {
    /// Creatives for a request that reached the proxy under `prefix` (`/tenant` or empty).
    pub fn resolver<'a>(
        &'a self,
        tenant: &'a Arc<Tenant>,
        manifests: &'a ManifestCache,
        prefix: &'a str,
    ) -> Resolver<'a> {
        Resolver {
            catalog: self,
            tenant,
            manifests,
            prefix,
        }
    }
}

#[async_trait]
impl AdDecider for AdCatalog {
    async fn decide(
        &self,
        _tenant: &str,
        _session: Option<&str>,
        brk: &AdBreak,
        _viewer: &Viewer,
    ) -> Vec<DecidedAd> {
        let pod = self.pick(brk);
        let outcome = if pod.is_empty() { "slate" } else { "filled" };
        crate::metrics::METRICS
            .ad_decisions
            .with_label_values(&[self.tenant_id(), outcome])
            .inc();
        pod
    }
}

/// Looks creatives up through the manifest cache (so their playlists are fetched once).
pub struct Resolver<'a> {
    catalog: &'a AdCatalog,
    /// Whose origin serves the creatives.
    tenant: &'a Arc<Tenant>,
    manifests: &'a ManifestCache,
    prefix: &'a str,
}

/// `base` resolved against a reference: absolute paths kept, relative ones joined.
pub(crate) fn join(base: &str, reference: &str) -> Option<String> {
    if reference.contains("://") {
        return None; // creatives must be served by the tenant's origin through the proxy
    }
    if reference.starts_with('/') {
        return Some(reference.to_string());
    }
    let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
    let mut parts: Vec<&str> = dir.split('/').collect();
    parts.pop(); // the empty piece after the last '/'
    for p in reference.split('/') {
        match p {
            ".." => {
                if parts.len() <= 1 {
                    return None;
                }
                parts.pop();
            }
            "." => {}
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

impl Resolver<'_> {
    /// A creative's master playlist in `packaging` (its path on the tenant's origin) and the
    /// playlist itself, through the manifest cache: what a guided session's asset playlists
    /// are made from.
    pub async fn creative_master(
        &self,
        creative: &str,
        packaging: Packaging,
    ) -> Result<(String, Arc<crate::manifest_cache::Manifest>), String> {
        let c = self
            .catalog
            .creative(creative)
            .ok_or_else(|| format!("no creative {creative:?} in the tenant's catalog"))?;
        let path = Self::master_path(c, packaging)?.to_string();
        let m = self.playlist(&path).await?;
        Ok((path, m))
    }

    fn master_path(c: &CreativeConfig, packaging: Packaging) -> Result<&str, String> {
        match packaging {
            Packaging::Ts => c.hls.as_deref(),
            Packaging::Fmp4 => c.hls_fmp4.as_deref(),
            Packaging::Dash => c.dash.as_deref(),
        }
        .ok_or_else(|| format!("creative {:?} has no {packaging:?} packaging", c.name))
    }

    /// Segment durations of every rendition of a creative; they must line up, so that every
    /// rendition of a viewer's stream gets the same ad timing.
    async fn check_renditions(
        &self,
        c: &CreativeConfig,
        packaging: Packaging,
    ) -> Result<AdMedia, String> {
        let master_path = Self::master_path(c, packaging)?;
        if packaging == Packaging::Dash {
            let (mpd, _) = self.mpd(master_path).await?;
            let timing = crate::stitch_dash::creative_timing(&mpd)
                .map_err(|e| format!("creative {:?}: {e}", c.name))?;
            return Ok(AdMedia {
                segments: timing.into_iter().map(|d| (String::new(), d)).collect(),
                map: None,
            });
        }
        let master = self.playlist(master_path).await?;
        let Parsed::HlsMaster { playlist, .. } = &master.parsed else {
            return Err(format!("{master_path} is not an HLS master playlist"));
        };
        let mut variants: Vec<&m3u8_rs::VariantStream> =
            playlist.variants.iter().filter(|v| !v.is_i_frame).collect();
        variants.sort_by_key(|v| v.bandwidth);
        let uris = variants
            .iter()
            .map(|v| v.uri.clone())
            .chain(playlist.alternatives.iter().filter_map(|a| a.uri.clone()));
        let mut reference: Option<AdMedia> = None;
        for uri in uris {
            let path = join(master_path, &uri)
                .ok_or_else(|| format!("creative URI {uri:?} leaves the origin"))?;
            let media = self.playlist(&path).await?;
            let Parsed::HlsMedia { playlist: m, .. } = &media.parsed else {
                return Err(format!("{path} is not an HLS media playlist"));
            };
            let segs: Vec<(String, f64)> = m
                .segments
                .iter()
                .map(|s| (s.uri.clone(), s.duration as f64))
                .collect();
            match &reference {
                None => {
                    reference = Some(AdMedia {
                        segments: segs,
                        map: None,
                    })
                }
                Some(r) => {
                    let lines_up = r.segments.len() == segs.len()
                        && r.segments
                            .iter()
                            .zip(&segs)
                            .all(|(a, b)| (a.1 - b.1).abs() < 0.1);
                    if !lines_up {
                        return Err(format!(
                            "renditions of creative {:?} do not line up ({path} differs)",
                            c.name
                        ));
                    }
                }
            }
        }
        reference.ok_or_else(|| format!("creative {:?} has no renditions", c.name))
    }

    /// A creative's MPD (through the manifest cache) and the directory its URLs resolve in.
    async fn mpd(&self, path: &str) -> Result<(dash_mpd_core::MPD, String), String> {
        let m = self.fetch(path, Class::DashManifest).await?;
        let Parsed::Dash { mpd, .. } = &m.parsed else {
            return Err(format!("{path} is not a DASH MPD"));
        };
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        Ok((mpd.as_ref().clone(), dir.to_string()))
    }

    /// An HLS playlist of the tenant's origin, through the manifest cache.
    pub async fn playlist(
        &self,
        path: &str,
    ) -> Result<Arc<crate::manifest_cache::Manifest>, String> {
        self.fetch(path, Class::HlsPlaylist).await
    }

    async fn fetch(
        &self,
        path: &str,
        class: Class,
    ) -> Result<Arc<crate::manifest_cache::Manifest>, String> {
        let origin_path = format!("{}{path}", self.tenant.origin.base_path);
        let route = Route {
            tenant: self.tenant.clone(),
            key_path: origin_path.clone(),
            origin_path,
            class,
            prefix: String::new(),
            hint: None,
            group: None,
            session: None,
            content_path: path.to_string(),
            ad_slot: None,
            lead: false,
            join: None,
            insertion: None,
            blocking: None,
            skip: None,
            bad_directive: None,
        };
        let (m, _) = self
            .manifests
            .get(&route)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        if m.status != http::StatusCode::OK {
            return Err(format!("{path}: origin answered {}", m.status));
        }
        Ok(m)
    }

    async fn resolve(
        &self,
        c: &CreativeConfig,
        packaging: Packaging,
        want: RenditionWant,
    ) -> Result<AdMedia, String> {
        let master_path = Self::master_path(c, packaging)?;
        let master = self.playlist(master_path).await?;
        let Parsed::HlsMaster { playlist, .. } = &master.parsed else {
            return Err(format!("{master_path} is not an HLS master playlist"));
        };
        let uri = if want.audio_only {
            playlist
                .alternatives
                .iter()
                .filter(|a| a.media_type == m3u8_rs::AlternativeMediaType::Audio)
                .max_by_key(|a| a.default)
                .and_then(|a| a.uri.clone())
                .ok_or_else(|| format!("creative {:?} has no audio rendition", c.name))?
        } else {
            let variants: Vec<&m3u8_rs::VariantStream> =
                playlist.variants.iter().filter(|v| !v.is_i_frame).collect();
            let by_height = want.height.and_then(|h| {
                variants
                    .iter()
                    .find(|v| v.resolution.is_some_and(|r| r.height == h as u64))
            });
            let by_bandwidth = || {
                let bw = want.bandwidth?;
                variants
                    .iter()
                    .filter(|v| v.bandwidth <= bw + bw / 10)
                    .max_by_key(|v| v.bandwidth)
            };
            by_height
                .or_else(by_bandwidth)
                .or_else(|| variants.iter().min_by_key(|v| v.bandwidth))
                .map(|v| v.uri.clone())
                .ok_or_else(|| format!("creative {:?} has no variants", c.name))?
        };
        let media_path = join(master_path, &uri)
            .ok_or_else(|| format!("creative URI {uri:?} leaves the origin"))?;
        let media = self.playlist(&media_path).await?;
        let Parsed::HlsMedia { playlist, .. } = &media.parsed else {
            return Err(format!("{media_path} is not an HLS media playlist"));
        };
        let to_viewer = |u: &str| {
            join(&media_path, u)
                .map(|p| format!("{}{p}", self.prefix))
                .ok_or_else(|| format!("segment URI {u:?} leaves the origin"))
        };
        let segments = playlist
            .segments
            .iter()
            .map(|s| Ok((to_viewer(&s.uri)?, s.duration as f64)))
            .collect::<Result<Vec<_>, String>>()?;
        if segments.is_empty() {
            return Err(format!("creative {:?} has no segments", c.name));
        }
        let map = playlist
            .segments
            .iter()
            .find_map(|s| s.map.as_ref())
            .map(|m| to_viewer(&m.uri))
            .transpose()?;
        Ok(AdMedia { segments, map })
    }
}

#[async_trait]
impl Creatives for Resolver<'_> {
    async fn media(
        &self,
        creative: &str,
        packaging: Packaging,
        want: RenditionWant,
    ) -> Result<Arc<AdMedia>, String> {
        let c = self
            .catalog
            .creative(creative)
            .ok_or_else(|| format!("no creative {creative:?} in the tenant's catalog"))?;
        let key = (
            creative.to_string(),
            packaging,
            want,
            self.prefix.to_string(),
        );
        if let Some(m) = self.catalog.resolved().get(&key) {
            return Ok(m);
        }
        let m = Arc::new(self.resolve(c, packaging, want).await?);
        self.catalog.resolved().insert(key, m.clone());
        Ok(m)
    }

    async fn reference(
        &self,
        creative: &str,
        packaging: Packaging,
    ) -> Result<Arc<AdMedia>, String> {
        let c = self
            .catalog
            .creative(creative)
            .ok_or_else(|| format!("no creative {creative:?} in the tenant's catalog"))?;
        let key = (creative.to_string(), packaging);
        if let Some(m) = self.catalog.references().get(&key) {
            return Ok(m);
        }
        let m = Arc::new(self.check_renditions(c, packaging).await?);
        self.catalog.references().insert(key, m.clone());
        Ok(m)
    }

    fn slate(&self) -> Option<&str> {
        self.catalog.slate().map(|c| c.name.as_str())
    }

    async fn dash(&self, creative: &str) -> Result<Arc<DashCreative>, String> {
        let key = (creative.to_string(), self.prefix.to_string());
        if let Some(d) = self.catalog.dash_packaging().get(&key) {
            return Ok(d);
        }
        let c = self
            .catalog
            .creative(creative)
            .ok_or_else(|| format!("no creative {creative:?} in the tenant's catalog"))?;
        let path = Self::master_path(c, Packaging::Dash)?;
        let (mpd, dir) = self.mpd(path).await?;
        let mut period = mpd
            .periods
            .into_iter()
            .next()
            .ok_or_else(|| format!("{path}: no period"))?;
        if period.BaseURL.iter().any(|b| b.base.contains("://"))
            || mpd.base_url.iter().any(|b| b.base.contains("://"))
        {
            return Err(format!(
                "{path}: creatives must be served by the tenant's origin"
            ));
        }
        period.BaseURL.clear();
        let d = Arc::new(DashCreative {
            base: format!("{}{dir}", self.prefix),
            period,
        });
        self.catalog.dash_packaging().insert(key, d.clone());
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_like_a_player_would() {
        assert_eq!(
            join("/ads/a/hls/master.m3u8", "v0.m3u8").as_deref(),
            Some("/ads/a/hls/v0.m3u8")
        );
        assert_eq!(
            join("/ads/a/hls/v0.m3u8", "v0/1.ts").as_deref(),
            Some("/ads/a/hls/v0/1.ts")
        );
        assert_eq!(
            join("/ads/a/hls/v0.m3u8", "../x.ts").as_deref(),
            Some("/ads/a/x.ts")
        );
        assert_eq!(join("/a.m3u8", "/abs/x.ts").as_deref(), Some("/abs/x.ts"));
        assert_eq!(join("/a.m3u8", "../../x.ts"), None);
        assert_eq!(join("/a.m3u8", "https://elsewhere/x.ts"), None);
    }

    #[test]
    fn decides_longest_first_that_fit() {
        let c = |name: &str, duration: f64, slate: bool| CreativeConfig {
            name: name.into(),
            duration,
            hls: Some(format!("/ads/{name}/hls/master.m3u8")),
            hls_fmp4: None,
            dash: None,
            slate,
        };
        let cat = AdCatalog::new(
            "t",
            vec![
                c("ad10", 10.0, false),
                c("ad15", 15.0, false),
                c("ad30", 30.0, false),
                c("slate", 10.0, true),
            ],
        );
        let brk = |d: f64| AdBreak {
            id: "b".into(),
            start: 0.0,
            duration: d,
            first_segment: None,
            scte35: None,
        };
        let names = |d: f64| {
            cat.pick(&brk(d))
                .into_iter()
                .map(|a| a.creative)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(30.0), vec!["ad30"]);
        assert_eq!(names(25.0), vec!["ad15", "ad10"]);
        assert_eq!(names(60.0), vec!["ad30", "ad30"]);
        assert!(names(5.0).is_empty());
    }
}
