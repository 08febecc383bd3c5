//! A tenant's ad catalog: its creatives from the config, the host's pick of ads for a break,
//! and the caches of what each creative resolved to (its segments, per rendition and prefix).
//! Where creatives are fetched and matched is [`crate::ads`].

use crate::config::CreativeConfig;
use crate::creatives::{AdMedia, Packaging, RenditionWant};
use crate::ledger::DecidedAd;
use crate::stitch_dash::DashCreative;
use crate::types::AdBreak;
use std::sync::Arc;
use std::time::Duration;

/// The tenant's creatives, from its config.
pub struct AdCatalog {
    /// Whose it is (for metrics).
    tenant_id: String,
    creatives: Vec<CreativeConfig>,
    /// Resolved creative media, per creative, packaging, rendition choice and URL prefix.
    resolved: moka::sync::Cache<(String, Packaging, RenditionWant, String), Arc<AdMedia>>,
    /// Checked reference timing per creative and packaging.
    references: moka::sync::Cache<(String, Packaging), Arc<AdMedia>>,
    /// DASH packaging per creative and URL prefix.
    dash: moka::sync::Cache<(String, String), Arc<DashCreative>>,
}

impl AdCatalog {
    pub fn new(tenant_id: &str, creatives: Vec<CreativeConfig>) -> Self {
        AdCatalog {
            tenant_id: tenant_id.to_string(),
            creatives,
            resolved: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            references: moka::sync::Cache::builder()
                .max_capacity(1_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            dash: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// Resolved creative media, per creative, packaging, rendition choice and URL prefix.
    pub fn resolved(
        &self,
    ) -> &moka::sync::Cache<(String, Packaging, RenditionWant, String), Arc<AdMedia>> {
        &self.resolved
    }

    /// Checked reference timing per creative and packaging.
    pub fn references(&self) -> &moka::sync::Cache<(String, Packaging), Arc<AdMedia>> {
        &self.references
    }

    /// DASH packaging per creative and URL prefix.
    pub fn dash_packaging(&self) -> &moka::sync::Cache<(String, String), Arc<DashCreative>> {
        &self.dash
    }

    pub fn slate(&self) -> Option<&CreativeConfig> {
        self.creatives.iter().find(|c| c.slate)
    }

    /// Longest creatives first while they fit the break; deterministic for a given break.
    pub fn pick(&self, brk: &AdBreak) -> Vec<DecidedAd> {
        let mut ads: Vec<&CreativeConfig> = self.creatives.iter().filter(|c| !c.slate).collect();
        ads.sort_by(|a, b| b.duration.total_cmp(&a.duration).then(a.name.cmp(&b.name)));
        let mut left = brk.duration;
        let mut pod = Vec::new();
        while let Some(c) = ads.iter().find(|c| c.duration <= left + 0.001) {
            pod.push(DecidedAd {
                id: format!("{}-{}-{}", brk.id, pod.len(), c.name),
                creative: c.name.clone(),
                duration: c.duration,
                tracking: Default::default(),
            });
            left -= c.duration;
            if pod.len() >= 32 {
                break;
            }
        }
        pod
    }

    /// The catalog creative a VAST media file URL points at (`.../ads/ad15/hls/master.m3u8`).
    pub fn creative_for_url(&self, url: &str) -> Option<&str> {
        let path = url
            .split("://")
            .nth(1)
            .map_or(url, |rest| &rest[rest.find('/').unwrap_or(rest.len())..]);
        let path = path.split('?').next().unwrap_or(path);
        self.creatives
            .iter()
            .find(|c| {
                [&c.hls, &c.hls_fmp4]
                    .into_iter()
                    .flatten()
                    .any(|p| path.ends_with(p.as_str()))
            })
            .map(|c| c.name.as_str())
    }

    pub fn creative(&self, name: &str) -> Option<&CreativeConfig> {
        self.creatives.iter().find(|c| c.name == name)
    }
}
