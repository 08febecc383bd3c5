//! Ad tracking: impression and quartile beacons fired server-side when the viewer actually
//! fetched the ad segment at that position: after the segment was served (2xx), and only if
//! the path is that slot's creative. Once per session, across nodes (the session store marks
//! each beacon), in the background with retries and bounded concurrency; never on the
//! request's path.

use crate::catalog::AdCatalog;
use crate::egress::Egress;
use crate::route::Tenant;
use crate::session::{SessionKeys, SessionState, SessionStore};
use std::sync::Arc;
use std::time::Duration;

pub struct Beacons {
    store: Arc<dyn SessionStore>,
    keys: SessionKeys,
    /// Beacon tasks running at once; past it a segment's beacons are dropped (and counted).
    inflight: Arc<tokio::sync::Semaphore>,
}

/// Beacon tasks at once (each fires a slot's few beacons, retried, within seconds).
const MAX_INFLIGHT: usize = 512;

const ATTEMPTS: u32 = 3;
/// Per beacon request.
const TIMEOUT: Duration = Duration::from_secs(2);

impl Beacons {
    pub fn new(store: Arc<dyn SessionStore>, keys: SessionKeys) -> Self {
        Beacons {
            store,
            keys,
            inflight: Arc::new(tokio::sync::Semaphore::new(MAX_INFLIGHT)),
        }
    }

    /// A viewer fetched slot `slot` of break `break_id`: fire what is due there. Beacon URLs
    /// come from ad server answers: they go through the tenant's `egress` (public
    /// destinations, plus the tenant's own ad server).
    ///
    /// `path` is the content path that was served: beacons fire only if it is a segment of
    /// the creative the session recorded at that slot.
    pub fn on_ad_segment(&self, tenant: &Tenant, served: Served<'_>) {
        let Some(catalog) = tenant.catalog.clone() else {
            return;
        };
        let Some(sid) = self.keys.verify(&tenant.id, served.token) else {
            return;
        };
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            crate::metrics::METRICS
                .beacons_dropped
                .with_label_values(&[&tenant.id])
                .inc();
            tracing::warn!(tenant = %tenant.id, "too many beacons in flight: dropped a segment's");
            return;
        };
        let (store, egress) = (self.store.clone(), tenant.egress.clone());
        let tenant = tenant.id.clone();
        let (path, break_id, slot) = (
            served.path.to_string(),
            served.break_id.to_string(),
            served.slot,
        );
        tokio::spawn(async move {
            let _permit = permit;
            let at = At {
                sid: &sid,
                break_id: &break_id,
                slot,
                path: &path,
            };
            if let Err(e) = fire_due(&store, &egress, &tenant, &catalog, at).await {
                tracing::warn!(tenant = %tenant, error = %e, "beacons not fired");
            }
        });
    }
}

/// An ad segment the proxy served: the viewer's session token, the slot its URI named, and
/// the content path served.
pub struct Served<'a> {
    pub token: &'a str,
    pub break_id: &'a str,
    pub slot: u32,
    pub path: &'a str,
}

struct At<'a> {
    sid: &'a str,
    break_id: &'a str,
    slot: u32,
    path: &'a str,
}

/// Whether `path` is a segment of `creative` (under one of its manifests' directories).
fn of_creative(catalog: &AdCatalog, creative: &str, path: &str) -> bool {
    let Some(c) = catalog.creative(creative) else {
        return false;
    };
    [&c.hls, &c.hls_fmp4, &c.dash]
        .into_iter()
        .flatten()
        .filter_map(|m| m.rfind('/').map(|i| &m[..=i]))
        .any(|dir| path.starts_with(dir))
}

async fn fire_due(
    store: &Arc<dyn SessionStore>,
    egress: &Egress,
    tenant: &str,
    catalog: &AdCatalog,
    at: At<'_>,
) -> Result<(), String> {
    let At {
        sid,
        break_id,
        slot,
        path,
    } = at;
    let rec = store
        .get_break(sid, break_id)
        .await
        .map_err(|e| e.to_string())?;
    let Some(rec) = rec else {
        return Ok(());
    };
    let Some(s) = rec.slots.get(slot as usize) else {
        return Ok(());
    };
    let Some(ad_index) = s.ad else {
        return Ok(());
    };
    if !of_creative(catalog, &s.creative, path) {
        // a viewer can put any path there: not worth more than a debug line
        tracing::debug!(tenant, path, creative = %s.creative, slot, "beacons not fired: not the slot's creative");
        return Ok(());
    }
    let Some(ad) = rec.ads.get(ad_index as usize) else {
        return Ok(());
    };
    for event in &s.events {
        let key = format!("{break_id}:{ad_index}:{event}");
        // once per session and event, whichever node sees the request
        if !store
            .mark_beacon(sid, &key)
            .await
            .map_err(|e| e.to_string())?
        {
            continue;
        }
        for url in ad.tracking.get(event).into_iter().flatten() {
            let url = expand(url);
            fire(egress, tenant, &url).await;
        }
    }
    Ok(())
}

/// VAST tracking macros the host fills in.
fn expand(url: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    url.replace(
        "[CACHEBUSTER]",
        &format!("{:08}", now.subsec_nanos() % 100_000_000),
    )
    .replace("[TIMESTAMP]", &now.as_millis().to_string())
}

async fn fire(egress: &Egress, tenant: &str, url: &str) {
    let target = url::Url::parse(url)
        .map_err(|e| e.to_string())
        .and_then(|u| egress.client_for(&u).map(|c| (c, u)));
    let (client, parsed) = match target {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(tenant, url, error = %e, "beacon refused");
            return;
        }
    };
    for attempt in 0..ATTEMPTS {
        match client.get(parsed.clone()).timeout(TIMEOUT).send().await {
            Ok(r) if r.status().is_success() || r.status().is_redirection() => return,
            Ok(r) if r.status().is_client_error() => {
                tracing::warn!(tenant, url, status = %r.status(), "beacon refused");
                return;
            }
            Ok(r) => tracing::debug!(tenant, url, status = %r.status(), attempt, "beacon failed"),
            Err(e) => tracing::debug!(tenant, url, error = %e, attempt, "beacon failed"),
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
    tracing::warn!(tenant, url, "beacon given up after {ATTEMPTS} attempts");
}

/// The session's ads as the client-side tracking JSON: breaks, ads, positions and beacons.
pub fn tracking_json(state: &SessionState) -> serde_json::Value {
    let breaks: Vec<serde_json::Value> = state
        .breaks
        .iter()
        .filter(|(_, r)| !r.content && !r.slots.is_empty())
        .map(|(id, r)| {
            let ads: Vec<serde_json::Value> = r
                .ads
                .iter()
                .enumerate()
                .filter_map(|(i, ad)| {
                    let slots: Vec<&crate::session::Slot> =
                        r.slots.iter().filter(|s| s.ad == Some(i as u32)).collect();
                    let first = slots.first()?;
                    Some(serde_json::json!({
                        "id": ad.id,
                        "creative": ad.creative,
                        "offset": first.offset,
                        "duration": slots.iter().map(|s| s.duration).sum::<f64>(),
                        "tracking": ad.tracking,
                    }))
                })
                .collect();
            serde_json::json!({
                "id": id,
                "media_sequence": r.start_seq,
                "duration": r.duration,
                "ads": ads,
            })
        })
        .collect();
    serde_json::json!({ "breaks": breaks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros_are_filled() {
        let u = expand("http://x/b?cb=[CACHEBUSTER]&t=[TIMESTAMP]");
        assert!(!u.contains('['), "{u}");
    }

    #[tokio::test]
    async fn beacons_into_the_proxys_network_are_not_fired() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hits = Arc::new(AtomicUsize::new(0));
        let internal = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let addr = internal.local_addr().unwrap();
        let counted = hits.clone();
        let app = axum::Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            async { "" }
        });
        tokio::spawn(async move { axum::serve(internal, app).await });
        let egress = Egress::public_only();
        fire(&egress, "t", &format!("http://{addr}/impression")).await;
        fire(&egress, "t", "http://169.254.169.254/latest/meta-data/").await;
        fire(&egress, "t", "file:///etc/passwd").await;
        assert_eq!(hits.load(Ordering::Relaxed), 0);
        // the tenant whose ad server that internal host is fires its beacons there
        let own = Egress::new(Some(&format!("http://{addr}/vast")), TIMEOUT).unwrap();
        fire(&own, "t", &format!("http://{addr}/impression")).await;
        assert_eq!(hits.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn tracking_json_lists_filled_breaks() {
        use crate::session::{BreakRecord, DecidedAd, Slot};
        let mut st = SessionState::default();
        let slot = |ad: Option<u32>, offset: f64| Slot {
            creative: "ad10".into(),
            index: 0,
            duration: 2.0,
            offset,
            disc: offset == 0.0,
            ad,
            events: vec![],
        };
        st.breaks.insert(
            "splice-1".into(),
            BreakRecord {
                start_seq: 40,
                start_time: None,
                start_ms: None,
                duration: 10.0,
                joined_mid: false,
                content: false,
                slots: vec![slot(Some(0), 0.0), slot(Some(0), 2.0), slot(None, 4.0)],
                ads: vec![DecidedAd {
                    id: "a1".into(),
                    creative: "ad10".into(),
                    duration: 4.0,
                    tracking: [("start".to_string(), vec!["http://x/start".to_string()])].into(),
                }],
            },
        );
        let j = tracking_json(&st);
        assert_eq!(j["breaks"][0]["ads"][0]["duration"], 4.0);
        assert_eq!(
            j["breaks"][0]["ads"][0]["tracking"]["start"][0],
            "http://x/start"
        );
        assert_eq!(j["breaks"][0]["media_sequence"], 40);
    }
}
