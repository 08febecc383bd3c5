//! Following one decision's wrapper chains (concurrently for a pod, within the fetch and
//! depth limits) and mapping each inline ad to a creative of the tenant's catalog.

use super::*;

/// An ad ready to play: its catalog creative and every beacon of its wrapper chain.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Resolved {
    pub(super) id: String,
    pub(super) creative: String,
    pub(super) duration: f64,
    pub(super) impressions: Vec<String>,
    pub(super) tracking: BTreeMap<String, Vec<String>>,
}

impl Resolved {
    /// Adds a wrapper's beacons: they fire along with the wrapped ad's own.
    pub(super) fn merge(&mut self, wrapper: &VastAd) {
        for u in &wrapper.impressions {
            push_capped(&mut self.impressions, u);
        }
        for (event, urls) in &wrapper.tracking {
            let list = self.tracking.entry(event.clone()).or_default();
            for u in urls {
                push_capped(list, u);
            }
        }
    }
}

/// What one decision needs, shared by its concurrent wrapper fetches.
pub(super) struct Ctx {
    pub(super) egress: Arc<Egress>,
    pub(super) catalog: Arc<AdCatalog>,
    pub(super) timeout: Duration,
    pub(super) headers: reqwest::header::HeaderMap,
    pub(super) tenant: String,
    pub(super) break_id: String,
    pub(super) fetches: AtomicU32,
}

type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Ctx {
    pub(super) async fn fetch(&self, url: &str) -> Result<String, VastError> {
        if self.fetches.fetch_add(1, Ordering::Relaxed) >= MAX_FETCHES {
            return Err(VastError::TooManyFetches);
        }
        let parsed = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| VastError::BadUrl { url: url.into() })?;
        // wrapper URLs come from ad server answers: never into the proxy's own network
        let client = self
            .egress
            .client_for(&parsed)
            .map_err(|why| VastError::Refused {
                url: url.into(),
                why,
            })?;
        let http = |e: reqwest::Error| VastError::Http {
            url: url.into(),
            message: e.to_string(),
        };
        let get = async {
            let mut resp = client
                .get(parsed)
                .headers(self.headers.clone())
                .send()
                .await
                .map_err(http)?;
            if !resp.status().is_success() {
                return Err(VastError::Status {
                    url: url.into(),
                    status: resp.status().as_u16(),
                });
            }
            let too_large = || VastError::TooLarge { url: url.into() };
            if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
                return Err(too_large());
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(http)? {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(String::from_utf8_lossy(&body).into_owned())
        };
        tokio::time::timeout(self.timeout, get)
            .await
            .map_err(|_| VastError::Timeout {
                url: url.into(),
                after: self.timeout,
            })?
    }

    /// The playable ads of the document at `url`, `depth` wrappers down.
    pub(super) fn document(
        self: Arc<Self>,
        url: String,
        depth: u32,
        may_wrap: bool,
    ) -> Pending<Result<Vec<Resolved>, VastError>> {
        Box::pin(async move {
            let body = self.fetch(&url).await?;
            let ads = parse(&body)?;
            if ads.is_empty() {
                return Err(VastError::Empty);
            }
            let (plays, backups) = play_order(ads);
            let n = plays.len();
            let mut results = self
                .resolve_all(plays.into_iter().chain(backups).collect(), depth, may_wrap)
                .await
                .into_iter();
            let mut played: Vec<Result<Vec<Resolved>, VastError>> =
                results.by_ref().take(n).collect();
            let mut spares = results.filter_map(Result::ok);
            for slot in played.iter_mut().filter(|s| s.is_err()) {
                match spares.next() {
                    Some(backup) => *slot = Ok(backup),
                    None => break,
                }
            }
            let mut out = Vec::new();
            let mut first_error = None;
            for (i, r) in played.into_iter().enumerate() {
                match r {
                    Ok(ads) => out.extend(ads),
                    Err(e) => {
                        tracing::debug!(
                            tenant = %self.tenant, break_id = %self.break_id, position = i,
                            reason = %e, "VAST ad skipped"
                        );
                        first_error.get_or_insert(e);
                    }
                }
            }
            if out.is_empty() {
                // nothing plays: the first reason is the decision's (logged once, by the caller)
                return Err(first_error.unwrap_or(VastError::NoPlayable));
            }
            if let Some(e) = first_error {
                tracing::warn!(
                    tenant = %self.tenant, break_id = %self.break_id, url = %url, reason = %e,
                    "VAST: some ads of the pod skipped"
                );
            }
            out.truncate(MAX_ADS);
            Ok(out)
        })
    }

    /// Resolves every ad, wrappers concurrently.
    pub(super) async fn resolve_all(
        self: &Arc<Self>,
        ads: Vec<VastAd>,
        depth: u32,
        may_wrap: bool,
    ) -> Vec<Result<Vec<Resolved>, VastError>> {
        let mut out: Vec<Result<Vec<Resolved>, VastError>> =
            vec![Err(VastError::NoPlayable); ads.len()];
        // dropped with this future when the budget runs out: pending fetches are aborted
        let mut wrapped = tokio::task::JoinSet::new();
        for (i, ad) in ads.into_iter().enumerate() {
            match &ad.kind {
                AdKind::InLine { media, duration } => {
                    out[i] = self
                        .playable(&ad, media, *duration)
                        .map(|a| vec![a])
                        .ok_or(VastError::NoPlayable);
                }
                AdKind::Wrapper { .. } => {
                    let ctx = self.clone();
                    wrapped.spawn(async move { (i, ctx.follow(ad, depth, may_wrap).await) });
                }
            }
        }
        while let Some(done) = wrapped.join_next().await {
            if let Ok((i, ads)) = done {
                out[i] = ads;
            }
        }
        out
    }

    pub(super) fn playable(
        &self,
        ad: &VastAd,
        media: &[(String, String)],
        duration: Option<f64>,
    ) -> Option<Resolved> {
        let Some(creative) = media
            .iter()
            .find_map(|(url, _)| self.catalog.creative_for_url(url))
            .and_then(|name| self.catalog.creative(name))
        else {
            tracing::debug!(
                tenant = %self.tenant, break_id = %self.break_id, ad = %ad.id,
                media = ?media.iter().map(|m| &m.0).collect::<Vec<_>>(),
                "VAST ad skipped: no catalog creative for its media files"
            );
            return None;
        };
        if duration.is_some_and(|d| (d - creative.duration).abs() > 1.0) {
            tracing::debug!(
                tenant = %self.tenant, ad = %ad.id, creative = %creative.name,
                vast_duration = ?duration, "VAST duration differs from the creative's"
            );
        }
        Some(Resolved {
            id: ad.id.clone(),
            creative: creative.name.clone(),
            // what plays is the creative's media, so its duration is what counts
            duration: creative.duration,
            impressions: ad.impressions.clone(),
            tracking: ad.tracking.clone(),
        })
    }

    /// The ads a wrapper leads to, with its beacons merged in.
    pub(super) async fn follow(
        self: Arc<Self>,
        wrapper: VastAd,
        depth: u32,
        may_wrap: bool,
    ) -> Result<Vec<Resolved>, VastError> {
        let AdKind::Wrapper {
            tag_uri,
            follow_wrappers,
            allow_multiple,
        } = &wrapper.kind
        else {
            return Err(VastError::NoPlayable);
        };
        let result = if !may_wrap {
            Err(VastError::WrapperForbidden)
        } else if depth >= MAX_WRAPPER_DEPTH {
            Err(VastError::TooDeep)
        } else {
            let url = expand(tag_uri, |_| None);
            self.clone()
                .document(url, depth + 1, *follow_wrappers)
                .await
        };
        let mut ads = result?;
        if *allow_multiple == Some(false) {
            ads.truncate(1);
        }
        for a in &mut ads {
            a.merge(&wrapper);
        }
        Ok(ads)
    }
}
