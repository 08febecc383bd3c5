//! Step 2 for LL-HLS playlists (RFC 8216bis §6.2.5.2): blocking reloads and delta updates.
//!
//! Pass-through, a reload waiting for `_HLS_msn`/`_HLS_part` is the newest playlist seen if
//! that already holds what it asks for, else the origin's answer to exactly that request,
//! which every viewer waiting for the same part shares ([`ManifestCache::get_blocking`]): the
//! origin sees about one request per part and rendition. Personalized, the numbers are the
//! session's, not the origin's: each origin part that comes out is personalized until the
//! session's playlist holds what the reload asks for; the origin requests are the same shared
//! ones. A delta update (`_HLS_skip`) goes to the origin pass-through; a session's playlist is
//! made whole each time and offers none.

use super::*;
use crate::manifest_cache::{with_query, Lookup, Manifest, ManifestCache};
use crate::origin::OriginError;
use manifold_ssai::low_latency::{self, Blocking, Progress};

/// A reload is held at most three target durations (the spec's bound for a server).
const TARGETS_HELD: u32 = 3;

/// The manifest a playlist request starts from: for a blocking reload of a tenant that does
/// not personalize, the one that answers it; otherwise the cached or newest playlist.
pub(super) async fn first(
    manifests: &ManifestCache,
    route: &Route,
    personalizes: bool,
) -> Result<(Arc<Manifest>, Lookup), Arc<OriginError>> {
    if personalizes {
        return plain(manifests, route).await;
    }
    let mut asked;
    let route = match &route.skip {
        Some(v) => {
            asked = route.clone();
            let pair = format!("_HLS_skip={v}");
            asked.origin_path = with_query(&route.origin_path, &pair);
            asked.key_path = with_query(&route.key_path, &pair);
            &asked
        }
        None => route,
    };
    match route.blocking {
        Some(b) => manifests.get_blocking(route, b).await,
        None => plain(manifests, route).await,
    }
}

/// A playlist without directives: the newest one a reload fetched while it is fresh (no
/// origin request of its own then), else the cached or fetched one.
async fn plain(
    manifests: &ManifestCache,
    route: &Route,
) -> Result<(Arc<Manifest>, Lookup), Arc<OriginError>> {
    if let Some(m) = manifests.newer(route, None) {
        if m.fetched.elapsed() < m.ttl {
            return Ok((m, Lookup::Hit));
        }
    }
    let got = manifests.get(route).await?;
    Ok(newest(manifests, route, got))
}

/// A newer playlist than the cached one, if a blocking reload fetched one since.
fn newest(
    manifests: &ManifestCache,
    route: &Route,
    (m, lookup): (Arc<Manifest>, Lookup),
) -> (Arc<Manifest>, Lookup) {
    if m.progress.is_none() {
        return (m, lookup);
    }
    match manifests.newer(route, m.progress) {
        Some(n) => (n, Lookup::Hit),
        None => (m, lookup),
    }
}

/// What to do with a session's playlist made for a blocking reload.
pub(super) enum Next {
    /// It answers (or nothing more can be waited for): serve it.
    Serve,
    /// Asks for more than two segments past it: 400.
    TooFar(String),
    /// Wait for the origin's next part and personalize again.
    Wait(Blocking),
}

/// Where a reload stands: the session playlist made from `m` (`out`) against what it asks.
pub(super) fn next(m: &Manifest, out: &[u8], b: Blocking, held: Duration) -> Next {
    let (Some(origin), Some(at)) = (m.progress, Progress::of(out)) else {
        return Next::Serve;
    };
    if at.serves(b) || held >= hold_limit(m) {
        return Next::Serve;
    }
    if b.msn > at.end + 2 {
        return Next::TooFar(format!(
            "_HLS_msn={} is more than two segments past this playlist's {}",
            b.msn, at.end
        ));
    }
    Next::Wait(origin.next())
}

fn hold_limit(m: &Manifest) -> Duration {
    match m.kind {
        crate::parse::ManifestKind::HlsMedia { target, .. } => target * TARGETS_HELD,
        _ => Duration::ZERO,
    }
}

/// A session's LL-HLS playlist as it goes out: no delta updates offered; at an ad break's
/// edge no parts (ad segments are whole); rendition reports where it stands.
pub(super) fn finish(m: &Manifest, out: Bytes) -> Bytes {
    if m.progress.is_none() {
        return out;
    }
    let mut text = low_latency::without_skip(&out);
    if let Some(at) = Progress::of(&text) {
        if at.parts == 0 && at.last_parts == 0 {
            text = low_latency::without_parts(&text);
        }
        text = low_latency::reports_at(&text, at);
    }
    Bytes::from(text)
}
