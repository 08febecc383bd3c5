//! HLS: parse → plugin plan → the SSAI pipeline (`manifold_ssai::pipeline`) → serialize, as
//! the proxy does for a personalized master or media playlist. Whatever the origin sends must give a manifest
//! or an error; a stitched media playlist must parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifold_fuzz::{block_on, catalog, media_edits, pick, policies};
use manifold_ssai::asked::Class;
use manifold_ssai::creatives::RenditionWant;
use manifold_ssai::master::Master;
use manifold_ssai::parse::{parse, Parsed};
use manifold_ssai::pipeline::{self, Context, InMemory, Scratch};
use manifold_ssai::ssai::Media;
use manifold_ssai::types::{Edit, UriRewrite};

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
            let policies = policies(pick);
            let cx = Context {
                creatives: catalog(),
                policies: &policies,
                want: RenditionWant::default(),
            };
            let master = Master { playlist };
            let run = pipeline::run(&master, &edits, Default::default(), &Scratch, &cx);
            if let Ok(out) = block_on(run) {
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
            let media = Media {
                playlist,
                view,
                body: data,
            };
            let policies = policies(pick);
            let cx = Context {
                creatives: catalog(),
                policies: &policies,
                want: RenditionWant {
                    audio_only: pick & 64 != 0,
                    ..RenditionWant::default()
                },
            };
            let ledger = InMemory::default();
            // twice: the second pass sees the first one's records, as a reload does
            for _ in 0..2 {
                let run = pipeline::run(&media, &edits, ledger.state(), &ledger, &cx);
                if let Ok(out) = block_on(run) {
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
