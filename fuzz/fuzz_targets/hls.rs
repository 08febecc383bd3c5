//! HLS: parse → plugin plan (checked by `apply`) → stitch → serialize, as the proxy does for
//! a personalized master or media playlist. Whatever the origin sends must give a manifest
//! or an error; a stitched media playlist must parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifold::apply::{self, RenditionWant};
use manifold::parse::{parse, Parsed};
use manifold::plugin::bindings::{Edit, UriRewrite};
use manifold::route::Class;
use manifold::session::SessionState;
use manifold::ssai::{self, Media};
use manifold_fuzz::{block_on, media_edits, pick, policies, Catalog};

fuzz_target!(|data: &[u8]| {
    let pick = pick(data);
    let (_kind, parsed) = parse(Class::HlsPlaylist, data);
    match &parsed {
        Parsed::HlsMaster { playlist, .. } => {
            let mut edits = vec![Edit::RewriteUri(UriRewrite {
                index: 0,
                uri: "v0.m3u8?x=1".into(),
            })];
            if pick & 1 == 1 {
                edits.push(Edit::DropVariant(0));
                edits.push(Edit::DropRendition(0));
            }
            if let Ok(out) = apply::hls_master(playlist, &edits) {
                let mut buf = Vec::new();
                let _ = out.write_to(&mut buf);
            }
        }
        Parsed::HlsMedia { playlist, view } => {
            let edits = media_edits(
                pick,
                &view.view.breaks,
                view.view.segments.len(),
                !view.view.live,
            );
            let Ok(plan) = apply::media_plan(view, &edits) else {
                return;
            };
            let media = Media {
                playlist,
                view,
                body: data,
            };
            let policies = policies(pick);
            let catalog = Catalog::get();
            let mut state = SessionState::default();
            // twice: the second pass sees the first one's records, as a reload does
            for _ in 0..2 {
                let Ok(recs) = block_on(ssai::propose(&media, &plan, &state, catalog, &policies))
                else {
                    return;
                };
                for (id, r) in recs {
                    state.breaks.entry(id).or_insert(r);
                }
                for (id, f) in ssai::observe(&media, &state.breaks, &state.facts) {
                    state.facts.insert(id, f);
                }
                let want = RenditionWant {
                    audio_only: pick & 64 != 0,
                    ..RenditionWant::default()
                };
                if let Ok(out) = block_on(ssai::render(
                    &media,
                    &plan,
                    &state.breaks,
                    &state.facts,
                    catalog,
                    want,
                    &policies,
                )) {
                    assert!(
                        m3u8_rs::parse_playlist_res(&out).is_ok(),
                        "stitched playlist does not parse:\n{}",
                        String::from_utf8_lossy(&out)
                    );
                }
            }
        }
        _ => {}
    }
});
