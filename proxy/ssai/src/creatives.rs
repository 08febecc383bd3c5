//! Where ad creatives come from: the packaging and rendition an ad must match, a creative's
//! segments, and the [`Creatives`] a tenant's catalog implements (in the proxy, `ads.rs`).

use crate::asked::VariantHint;
use crate::stitch_dash::DashCreative;
use async_trait::async_trait;
use std::sync::Arc;

/// How the content is packaged, so ads come in the same packaging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Packaging {
    Ts,
    Fmp4,
    /// DASH periods (CMAF segments addressed by the creative's MPD).
    Dash,
}

/// Which rendition of a creative fits the content rendition being personalized.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RenditionWant {
    pub audio_only: bool,
    pub bandwidth: Option<u64>,
    pub height: Option<u32>,
}

impl RenditionWant {
    /// The creative rendition for a content rendition, from its hint (none: the first).
    pub fn for_hint(hint: Option<VariantHint>) -> Self {
        match hint {
            Some(VariantHint::Audio) => RenditionWant {
                audio_only: true,
                ..Default::default()
            },
            Some(VariantHint::Video { bandwidth, height }) => RenditionWant {
                audio_only: false,
                bandwidth: Some(bandwidth),
                height,
            },
            None => RenditionWant::default(),
        }
    }
}

/// A creative's segments for one rendition, with URIs the viewer can fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct AdMedia {
    pub segments: Vec<(String, f64)>,
    /// `EXT-X-MAP` URI for fMP4.
    pub map: Option<String>,
}

/// Finds ad creatives' media (the tenant's catalog, fetched through the manifest cache).
#[async_trait]
pub trait Creatives: Send + Sync {
    /// A creative's segments in the rendition matching `want`.
    async fn media(
        &self,
        creative: &str,
        packaging: Packaging,
        want: RenditionWant,
    ) -> Result<Arc<AdMedia>, String>;

    /// The timing every rendition of a creative shares (an error if its renditions differ).
    async fn reference(
        &self,
        creative: &str,
        packaging: Packaging,
    ) -> Result<Arc<AdMedia>, String> {
        self.media(creative, packaging, RenditionWant::default())
            .await
    }

    /// The slate creative that pads breaks, if the tenant has one.
    fn slate(&self) -> Option<&str>;

    /// A creative's DASH packaging (its period and where its URLs resolve for the viewer).
    async fn dash(&self, creative: &str) -> Result<Arc<DashCreative>, String> {
        Err(format!("creative {creative:?} has no DASH packaging"))
    }
}
