//! DASH: parse → plugin plan (drop a representation, fill breaks, pre-/mid-rolls) → periods
//! split and re-based → serialize, as the proxy does for a personalized MPD.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifold_fuzz::{block_on, catalog, media_edits, pick, policies};
use manifold_ssai::asked::Class;
use manifold_ssai::creatives::RenditionWant;
use manifold_ssai::parse::{parse, Parsed};
use manifold_ssai::pipeline::{self, Context, InMemory};
use manifold_ssai::ssai_dash::DashMedia;
use manifold_ssai::types::Edit;

fuzz_target!(|data: &[u8]| {
    let pick = pick(data);
    let (_kind, parsed) = parse(Class::DashManifest, data);
    let Parsed::Dash { mpd, view, .. } = &parsed else {
        return;
    };
    let mut edits = media_edits(pick, &view.breaks, 0, !view.dynamic);
    if pick & 1 == 1 {
        // the first representation id the view lists, if any
        if let Some(id) = view
            .periods
            .first()
            .and_then(|p| p.adaptation_sets.first())
            .and_then(|s| s.representations.first())
            .map(|r| r.id.clone())
        {
            edits.push(Edit::DropRepresentation(id));
        }
    }
    let media = DashMedia { mpd, view };
    let policies = policies(pick);
    let cx = Context {
        creatives: catalog(),
        policies: &policies,
        want: RenditionWant::default(),
    };
    let ledger = InMemory::default();
    // twice: the second pass sees the first one's records, as a reload does
    for _ in 0..2 {
        let run = pipeline::run(&media, &edits, ledger.state(), &ledger, &cx);
        if let Ok(out) = block_on(run) {
            let _ = out.to_string();
        }
    }
});
