//! What a guided session's player fetches itself: the asset list of a break (HLS
//! Interstitials), each ad's playlists, and the pod MPD of a DASH break. All are read back
//! from the session's record of the break (the decision stitched mode would stitch, made
//! once per session and break, on whichever node saw it first), so every node answers the
//! same. Ad segments are the creative's, under the session and with the slot they play, so
//! they come from the segment cache and fire the session's beacons as in stitched mode.

use crate::ads::{join, Resolver};
use crate::creatives::Packaging;
use crate::guided::{self, Asked, Asset};
use crate::manifest_cache::ManifestCache;
use crate::parse::Parsed;
use crate::route::Route;
use crate::session::{BreakRecord, SessionStore};
use bytes::Bytes;
use std::fmt::Write;
use std::sync::Arc;

/// A guided resource, or why not.
pub struct Answer {
    pub content_type: &'static str,
    pub body: Bytes,
}

/// A refusal: status, `Cache-Status` detail and the message.
pub struct Refused {
    pub status: u16,
    pub detail: &'static str,
    pub text: String,
}

fn refused(status: u16, detail: &'static str, text: impl Into<String>) -> Refused {
    Refused {
        status,
        detail,
        text: text.into(),
    }
}

/// How long players may keep a guided resource: the record it is made of never changes.
pub const CACHE_CONTROL: &str = "private, max-age=300";

/// What answering needs of the proxy.
pub struct Assets<'a> {
    /// `scheme://host` the request came to: asset URIs are absolute.
    pub origin: &'a str,
    pub route: &'a Route,
    pub store: &'a dyn SessionStore,
    pub manifests: &'a ManifestCache,
    /// The verified session and its URL prefix.
    pub sid: &'a str,
    pub prefix: &'a str,
}

impl Assets<'_> {
    pub async fn answer(&self, asked: Asked, query: Option<&str>) -> Result<Answer, Refused> {
        let id = match &asked {
            Asked::AssetList { id, .. }
            | Asked::AssetMaster { id, .. }
            | Asked::AssetRendition { id, .. }
            | Asked::PodMpd { id } => id.clone(),
        };
        let rec = self.record(&id).await?;
        match asked {
            Asked::AssetList { pack, id } => self.asset_list(pack, &id, &rec, query),
            Asked::AssetMaster { pack, id, ad } => {
                let asset = asset(&rec, &id, ad)?;
                self.asset_master(pack, &asset).await
            }
            Asked::AssetRendition {
                pack,
                id,
                ad,
                rendition,
            } => {
                let asset = asset(&rec, &id, ad)?;
                self.asset_rendition(pack, &id, &rec, &asset, rendition)
                    .await
            }
            Asked::PodMpd { id } => self.pod_mpd(&id, &rec).await,
        }
    }

    async fn record(&self, id: &str) -> Result<Arc<BreakRecord>, Refused> {
        match self.store.get_break(self.sid, id).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(refused(
                404,
                "no-break",
                format!("this session has no break {id:?}"),
            )),
            Err(e) => Err(refused(503, "session-store", e.to_string())),
        }
    }

    fn resolver(&self) -> Result<Resolver<'_>, Refused> {
        let tenant = &self.route.tenant;
        let catalog = tenant
            .catalog
            .as_ref()
            .ok_or_else(|| refused(404, "no-catalog", "this tenant has no ad catalog"))?;
        Ok(catalog.resolver(tenant, self.manifests, self.prefix))
    }

    /// `{"ASSETS":[{"URI","DURATION"}]}`: the whole pod, from the break's start, also for a
    /// viewer who joins `_HLS_start_offset` seconds into it. Players place an asset list at
    /// the break's start and skip, by the assets' durations, what has passed (hls.js seeks
    /// to the offset, Shaka skips the assets that ended before it and seeks into the next):
    /// a list cut to what is left would be placed at the break's start all the same, and
    /// play the wrong ads, or none.
    fn asset_list(
        &self,
        pack: Packaging,
        id: &str,
        rec: &BreakRecord,
        query: Option<&str>,
    ) -> Result<Answer, Refused> {
        let mut offset = None;
        for (k, v) in query
            .unwrap_or_default()
            .split('&')
            .filter_map(|p| p.split_once('='))
        {
            match k {
                "_HLS_start_offset" => {
                    let o = v
                        .parse::<f64>()
                        .ok()
                        .filter(|o| o.is_finite() && *o >= 0.0)
                        .ok_or_else(|| {
                            refused(400, "bad-offset", format!("_HLS_start_offset={v:?}"))
                        })?;
                    offset = Some(o);
                }
                "_HLS_primary_id" => {
                    // the player's playback id: the session in the URL already says whose
                    tracing::debug!(primary = %v, break_id = %id, "asset list");
                }
                _ => {}
            }
        }
        if let Some(o) = offset {
            tracing::debug!(offset = o, break_id = %id, "asset list for a viewer joining mid-break");
        }
        let assets = guided::assets(rec);
        let mut list = Vec::with_capacity(assets.len());
        for a in &assets {
            let path = guided::asset_path(pack, id, a.ad)
                .ok_or_else(|| refused(404, "no-break", "break id too long"))?;
            list.push(serde_json::json!({
                "URI": format!("{}{}{path}", self.origin, self.prefix),
                "DURATION": (a.duration * 1000.0).round() / 1000.0,
            }));
        }
        let mut body = serde_json::json!({ "ASSETS": list });
        if self.route.tenant.policies.guided.client_tracking {
            body["X-AD-CREATIVE-SIGNALING"] = signaling(rec, &assets);
        }
        Ok(Answer {
            content_type: "application/json",
            body: Bytes::from(body.to_string()),
        })
    }

    /// The creative's multivariant playlist, its renditions renamed to this ad's (`{r}.m3u8`
    /// beside it).
    async fn asset_master(&self, pack: Packaging, asset: &Asset) -> Result<Answer, Refused> {
        let (_, m) = self
            .resolver()?
            .creative_master(&asset.creative, pack)
            .await
            .map_err(|e| refused(502, "creative", e))?;
        let Parsed::HlsMaster { playlist, .. } = &m.parsed else {
            return Err(refused(
                502,
                "creative",
                "the creative has no master playlist",
            ));
        };
        let out = renamed(playlist);
        let mut buf = Vec::with_capacity(m.body.len() + 64);
        let _ = out.write_to(&mut buf);
        Ok(Answer {
            content_type: "application/vnd.apple.mpegurl",
            body: Bytes::from(buf),
        })
    }

    /// One rendition of an ad: the creative's segments the session's slots play, each with
    /// its slot (for beacons), as VOD.
    async fn asset_rendition(
        &self,
        pack: Packaging,
        id: &str,
        rec: &BreakRecord,
        asset: &Asset,
        rendition: usize,
    ) -> Result<Answer, Refused> {
        let resolver = self.resolver()?;
        let bad = |e: String| refused(502, "creative", e);
        let (master_path, m) = resolver
            .creative_master(&asset.creative, pack)
            .await
            .map_err(bad)?;
        let Parsed::HlsMaster { playlist, .. } = &m.parsed else {
            return Err(bad("the creative has no master playlist".into()));
        };
        let Some(uri) = renditions(playlist).nth(rendition) else {
            return Err(refused(
                404,
                "no-rendition",
                format!("no rendition {rendition}"),
            ));
        };
        let media_path =
            join(&master_path, uri).ok_or_else(|| bad(format!("{uri:?} leaves the origin")))?;
        let media = resolver.playlist(&media_path).await.map_err(bad)?;
        let Parsed::HlsMedia { playlist: pl, .. } = &media.parsed else {
            return Err(bad(format!("{media_path} is not a media playlist")));
        };
        let to_viewer = |u: &str| {
            join(&media_path, u)
                .map(|p| format!("{}{p}", self.prefix))
                .ok_or_else(|| bad(format!("segment URI {u:?} leaves the origin")))
        };
        let target = asset
            .slots
            .iter()
            .map(|&i| rec.slots[i].duration.ceil() as u64)
            .max()
            .unwrap_or(1)
            .max(1);
        let mut out = format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        );
        if let Some(map) = pl.segments.iter().find_map(|s| s.map.as_ref()) {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", to_viewer(&map.uri)?);
        }
        let tracking = self.route.tenant.policies.tracking;
        for (k, &i) in asset.slots.iter().enumerate() {
            let slot = &rec.slots[i];
            let seg = pl
                .segments
                .get(slot.index as usize)
                .ok_or_else(|| bad(format!("{media_path} has no segment {}", slot.index)))?;
            let tracked = tracking.then_some((id, i));
            let uri = crate::stitch::ad_segment_uri(&to_viewer(&seg.uri)?, tracked, k == 0);
            let _ = write!(out, "#EXTINF:{:.3},\n{uri}\n", slot.duration);
        }
        out.push_str("#EXT-X-ENDLIST\n");
        Ok(Answer {
            content_type: "application/vnd.apple.mpegurl",
            body: Bytes::from(out),
        })
    }

    /// A DASH break's pod as a static MPD: the creatives' periods as stitching would cut
    /// them, their segments under the session with their slots (for beacons).
    async fn pod_mpd(&self, key: &str, rec: &BreakRecord) -> Result<Answer, Refused> {
        use crate::creatives::Creatives;
        let resolver = self.resolver()?;
        let mut creatives = std::collections::BTreeMap::new();
        for s in rec.slots.iter().filter(|s| s.ad.is_some()) {
            if !creatives.contains_key(&s.creative) {
                let c = resolver
                    .dash(&s.creative)
                    .await
                    .map_err(|e| refused(502, "creative", e))?;
                creatives.insert(s.creative.clone(), c);
            }
        }
        let tracking = self.route.tenant.policies.tracking;
        let mpd = crate::stitch_dash::pod_mpd(key, &rec.slots, &creatives, tracking)
            .map_err(|e| refused(404, "no-ads", e))?;
        let xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{mpd}\n");
        Ok(Answer {
            content_type: "application/dash+xml",
            body: Bytes::from(xml),
        })
    }
}

/// A creative master's renditions as an ad's playlists number them (`{r}.m3u8`): its
/// variants (I-frame ones left out), then its alternatives that have a URI.
fn renditions(m: &m3u8_rs::MasterPlaylist) -> impl Iterator<Item = &str> {
    m.variants
        .iter()
        .filter(|v| !v.is_i_frame)
        .map(|v| v.uri.as_str())
        .chain(m.alternatives.iter().filter_map(|a| a.uri.as_deref()))
}

/// The creative's master with its renditions named as [`renditions`] numbers them.
fn renamed(master: &m3u8_rs::MasterPlaylist) -> m3u8_rs::MasterPlaylist {
    let mut out = master.clone();
    out.variants.retain(|v| !v.is_i_frame);
    let uris = out
        .variants
        .iter_mut()
        .map(|v| &mut v.uri)
        .chain(out.alternatives.iter_mut().filter_map(|a| a.uri.as_mut()));
    for (r, uri) in uris.enumerate() {
        *uri = format!("{r}.m3u8");
    }
    out
}

/// Ad `ad` of the recorded break.
fn asset(rec: &BreakRecord, id: &str, ad: u32) -> Result<Asset, Refused> {
    guided::assets(rec)
        .into_iter()
        .find(|a| a.ad == ad)
        .ok_or_else(|| refused(404, "no-ad", format!("break {id:?} has no ad {ad}")))
}

/// SVTA2053-2 creative signaling of the listed assets: each ad's tracking URLs by event, at
/// their offsets into the ad, for players that report tracking themselves.
fn signaling(rec: &BreakRecord, assets: &[Asset]) -> serde_json::Value {
    let start = assets.first().map_or(0.0, |a| a.offset);
    let payload: Vec<serde_json::Value> = assets
        .iter()
        .map(|a| {
            let decided = rec.ads.get(a.ad as usize);
            let at = |event: &str| match event {
                "firstQuartile" => a.duration * 0.25,
                "midpoint" => a.duration * 0.5,
                "thirdQuartile" => a.duration * 0.75,
                "complete" => a.duration,
                _ => 0.0,
            };
            let tracking: Vec<serde_json::Value> = decided
                .map(|d| {
                    d.tracking
                        .iter()
                        .map(|(event, urls)| {
                            serde_json::json!({
                                "type": event,
                                "offset": at(event),
                                "urls": urls,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            serde_json::json!({
                "type": "linear",
                "start": a.offset - start,
                "duration": a.duration,
                "identifiers": [{
                    "scheme": "urn:manifold:ad",
                    "value": decided.map_or(a.creative.as_str(), |d| d.id.as_str()),
                }],
                "tracking": tracking,
            })
        })
        .collect();
    serde_json::json!({
        "version": 2,
        "type": "pod",
        "payload": payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ads_renditions_are_numbered_alike_in_its_master_and_its_playlists() {
        // an I-frame variant and a captions rendition without a URI between audio ones
        let text = "#EXTM3U\n\
            #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"a0.m3u8\"\n\
            #EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"cc\",INSTREAM-ID=\"CC1\"\n\
            #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"fr\",URI=\"a1.m3u8\"\n\
            #EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=10,URI=\"i.m3u8\"\n\
            #EXT-X-STREAM-INF:BANDWIDTH=100,AUDIO=\"a\"\nv0.m3u8\n\
            #EXT-X-STREAM-INF:BANDWIDTH=200,AUDIO=\"a\"\nv1.m3u8\n";
        let Ok(m3u8_rs::Playlist::MasterPlaylist(m)) = m3u8_rs::parse_playlist_res(text.as_bytes())
        else {
            panic!("a master")
        };
        let out = renamed(&m);
        let named: Vec<String> = out
            .variants
            .iter()
            .map(|v| v.uri.clone())
            .chain(out.alternatives.iter().filter_map(|a| a.uri.clone()))
            .collect();
        assert_eq!(named, ["0.m3u8", "1.m3u8", "2.m3u8", "3.m3u8"]);
        let sources: Vec<&str> = renditions(&m).collect();
        assert_eq!(sources, ["v0.m3u8", "v1.m3u8", "a0.m3u8", "a1.m3u8"]);
    }
}
