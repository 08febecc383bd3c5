//! DASH: parse → plugin plan (drop a representation, fill breaks, pre-/mid-rolls) → periods
//! split and re-based → serialize, as the proxy does for a personalized MPD.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifold::apply;
use manifold::parse::{parse, Parsed};
use manifold::plugin::bindings::Edit;
use manifold::route::Class;
use manifold::session::SessionState;
use manifold::ssai_dash::{self, DashMedia};
use manifold_fuzz::{block_on, media_edits, pick, policies, Catalog};

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
    let Ok((dropped, plan)) = apply::dash(mpd, view, &edits) else {
        return;
    };
    let media = DashMedia { mpd, view };
    let policies = policies(pick);
    let catalog = Catalog::get();
    let mut state = SessionState::default();
    for _ in 0..2 {
        let Ok(recs) = block_on(ssai_dash::propose(
            &media, &plan, &state, catalog, &policies,
        )) else {
            return;
        };
        for (id, r) in recs {
            state.breaks.entry(id).or_insert(r);
        }
        if let Ok(out) = block_on(ssai_dash::render(
            &media,
            dropped.clone(),
            &state.breaks,
            catalog,
            &policies,
        )) {
            let _ = out.to_string();
        }
    }
});
