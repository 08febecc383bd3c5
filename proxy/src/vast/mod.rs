//! Ad decisions from a tenant's VAST ad server (VAST 2, 3 and 4).
//!
//! One decision per break: the tenant's URL template is expanded for the viewer and the break,
//! the response is parsed, Wrappers are followed (at most [`MAX_WRAPPER_DEPTH`] of them, the
//! wrapped ads of a pod concurrently) with their impressions and trackers merged into the ads
//! they lead to, and every ad is mapped by its media files to a creative of the tenant's
//! catalog (ads with no such creative are skipped). Each request has the tenant's per-request
//! timeout and the whole decision its budget. Any failure (timeout, HTTP error, malformed or
//! empty document, chain too deep) is logged with the tenant and the break and gives an empty
//! pod: the stitcher fills the break with slate.

use crate::catalog::AdCatalog;
use crate::config::AdServerConfig;
use crate::egress::Egress;
use crate::plugin::bindings::{AdDecider, DeviceClass, Viewer};
use crate::session::DecidedAd;
use crate::types::AdBreak;
use async_trait::async_trait;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use quick_xml::events::{BytesStart, Event};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Wrappers followed before the inline ad (the VAST spec asks players for at least 5).
pub const MAX_WRAPPER_DEPTH: u32 = 7;
/// Largest VAST document read.
const MAX_BODY: usize = 1 << 20;
/// Ads kept from one decision, and pod or backup ads considered per document.
const MAX_ADS: usize = 32;
/// Requests one decision may make (wrappers of a pod fan out).
const MAX_FETCHES: u32 = 64;
/// Beacon URLs kept per event of an ad (wrappers add theirs).
const MAX_URLS_PER_EVENT: usize = 16;
/// XML nesting and element count accepted, so hostile documents stay cheap.
const MAX_XML_DEPTH: usize = 64;
const MAX_XML_ELEMENTS: usize = 50_000;
/// Tracking events the beacon firer knows (`crate::tracking`); others are not kept.
const EVENTS: [&str; 5] = [
    "start",
    "firstQuartile",
    "midpoint",
    "thirdQuartile",
    "complete",
];

mod chain;
mod document;
use chain::*;
pub use document::*;

/// Characters kept as they are in macro values (RFC 3986 unreserved).
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Fills `[NAME]` macros: `value(NAME)` gives the (unencoded) value, or `None` to leave the
/// macro as written. `[CACHEBUSTER]` and `[TIMESTAMP]` are always filled.
pub fn expand(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        let Some(close) = tail.find(']') else {
            out.push_str(tail);
            return out;
        };
        let name = &tail[1..close];
        let v = match name {
            "CACHEBUSTER" => Some(format!("{:08}", now.subsec_nanos() % 100_000_000)),
            "TIMESTAMP" => Some(now.as_millis().to_string()),
            _ => value(name),
        };
        match v {
            Some(v) => {
                out.extend(utf8_percent_encode(&v, VALUE));
                rest = &tail[close + 1..];
            }
            None => {
                out.push('[');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn device_name(d: DeviceClass) -> &'static str {
    match d {
        DeviceClass::Unknown => "unknown",
        DeviceClass::Mobile => "mobile",
        DeviceClass::Tablet => "tablet",
        DeviceClass::Desktop => "desktop",
        DeviceClass::Tv => "tv",
    }
}

/// Decides breaks with the tenant's VAST ad server; the catalog maps media files to creatives.
pub struct VastDecider {
    cfg: AdServerConfig,
    catalog: Arc<AdCatalog>,
    egress: Arc<Egress>,
}

impl VastDecider {
    /// With its own egress (tests and tools; the proxy shares the tenant's, see
    /// [`VastDecider::with_egress`]).
    pub fn new(cfg: AdServerConfig, catalog: Arc<AdCatalog>) -> Result<Self, String> {
        let egress = Egress::new(Some(&cfg.url), cfg.timeout)?;
        Ok(Self::with_egress(cfg, catalog, egress))
    }

    /// `egress` trusts this ad server's host and port (the tenant's routing entry has it).
    pub fn with_egress(cfg: AdServerConfig, catalog: Arc<AdCatalog>, egress: Arc<Egress>) -> Self {
        VastDecider {
            cfg,
            catalog,
            egress,
        }
    }

    /// The ad server URL for a break: the template with the viewer's and break's values,
    /// percent-encoded (absent values are empty).
    pub fn request_url(&self, session: Option<&str>, brk: &AdBreak, viewer: &Viewer) -> String {
        expand(&self.cfg.url, |name| {
            Some(match name {
                "SESSION_ID" => session.unwrap_or_default().to_string(),
                "BREAK_ID" => brk.id.clone(),
                "DURATION" => {
                    let d = if brk.duration.is_finite() {
                        brk.duration.max(0.0)
                    } else {
                        0.0
                    };
                    ((d * 1000.0).round() / 1000.0).to_string()
                }
                "COUNTRY" => viewer.country.clone().unwrap_or_default(),
                "DEVICE" => device_name(viewer.device).to_string(),
                _ => {
                    let param = name.strip_prefix("PARAM:")?;
                    viewer
                        .query
                        .iter()
                        .find(|(k, _)| k == param)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                }
            })
        })
    }

    /// The pod for a break, or why there is none.
    pub async fn decide_pod(
        &self,
        tenant: &str,
        session: Option<&str>,
        brk: &AdBreak,
        viewer: &Viewer,
    ) -> Result<Vec<DecidedAd>, VastError> {
        // the ad server targets the device, not the proxy (IAB server-side headers)
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in [
            ("x-device-user-agent", viewer.user_agent.as_deref()),
            ("x-device-ip", viewer.client_ip.as_deref()),
        ] {
            if let Some(v) = value.and_then(|v| reqwest::header::HeaderValue::from_str(v).ok()) {
                headers.insert(name, v);
            }
        }
        let ctx = Arc::new(Ctx {
            egress: self.egress.clone(),
            catalog: self.catalog.clone(),
            timeout: self.cfg.timeout,
            headers,
            tenant: tenant.to_string(),
            break_id: brk.id.clone(),
            fetches: AtomicU32::new(0),
        });
        let url = self.request_url(session, brk, viewer);
        let ads = tokio::time::timeout(self.cfg.budget, ctx.document(url, 0, true))
            .await
            .map_err(|_| VastError::Budget(self.cfg.budget))??;
        Ok(ads
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                let mut tracking = a.tracking;
                if !a.impressions.is_empty() {
                    tracking.insert("impression".into(), a.impressions);
                }
                DecidedAd {
                    // unique within the decision: the stitcher finds trackers by id
                    id: format!("{}-{i}-{}", brk.id, ad_id(&a.id, &a.creative)),
                    creative: a.creative,
                    duration: a.duration,
                    tracking,
                }
            })
            .collect())
    }
}

/// The VAST ad id, reduced to characters that are safe anywhere, or the creative's name.
fn ad_id(vast_id: &str, creative: &str) -> String {
    let id: String = vast_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    if id.is_empty() {
        creative.to_string()
    } else {
        id
    }
}

#[async_trait]
impl AdDecider for VastDecider {
    async fn decide(
        &self,
        tenant: &str,
        session: Option<&str>,
        brk: &AdBreak,
        viewer: &Viewer,
    ) -> Vec<DecidedAd> {
        let decisions = &crate::metrics::METRICS.ad_decisions;
        match self.decide_pod(tenant, session, brk, viewer).await {
            Ok(ads) => {
                tracing::debug!(tenant, break_id = %brk.id, ads = ads.len(), "VAST decision");
                let outcome = if ads.is_empty() { "slate" } else { "filled" };
                decisions.with_label_values(&[tenant, outcome]).inc();
                ads
            }
            Err(e @ (VastError::Empty | VastError::NoPlayable)) => {
                tracing::info!(tenant, break_id = %brk.id, reason = %e, "VAST: no ads, slate");
                decisions.with_label_values(&[tenant, "slate"]).inc();
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(tenant, break_id = %brk.id, reason = %e, "VAST decision failed, slate");
                let outcome = match e {
                    VastError::Timeout { .. } | VastError::Budget(_) => "timeout",
                    _ => "error",
                };
                decisions.with_label_values(&[tenant, outcome]).inc();
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests;
