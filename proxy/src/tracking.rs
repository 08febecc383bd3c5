//! Ad tracking: impression and quartile beacons fired server-side when the viewer actually
//! fetches the ad segment at that position (once per session, across nodes: the session store
//! marks each beacon), in the background with retries; never on the request's path.

use crate::egress::Egress;
use crate::route::Tenant;
use crate::session::{SessionKeys, SessionStore};
use std::sync::Arc;
use std::time::Duration;

pub struct Beacons {
    store: Arc<dyn SessionStore>,
    keys: SessionKeys,
}

const ATTEMPTS: u32 = 3;
/// Per beacon request.
const TIMEOUT: Duration = Duration::from_secs(2);

impl Beacons {
    pub fn new(store: Arc<dyn SessionStore>, keys: SessionKeys) -> Self {
        Beacons { store, keys }
    }

    /// A viewer fetched slot `slot` of break `break_id`: fire what is due there. Beacon URLs
    /// come from ad server answers: they go through the tenant's `egress` (public
    /// destinations, plus the tenant's own ad server).
    pub fn on_ad_segment(&self, tenant: &Tenant, token: &str, break_id: &str, slot: u32) {
        let Some(sid) = self.keys.verify(&tenant.id, token) else {
            return;
        };
        let (store, egress) = (self.store.clone(), tenant.egress.clone());
        let (tenant, break_id) = (tenant.id.clone(), break_id.to_string());
        tokio::spawn(async move {
            if let Err(e) = fire_due(&store, &egress, &tenant, &sid, &break_id, slot).await {
                tracing::warn!(tenant = %tenant, error = %e, "beacons not fired");
            }
        });
    }
}

async fn fire_due(
    store: &Arc<dyn SessionStore>,
    egress: &Egress,
    tenant: &str,
    sid: &str,
    break_id: &str,
    slot: u32,
) -> Result<(), String> {
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
}
