//! The contract's versions: a component built for 0.2.0 runs unchanged, a 0.2.1 one is
//! given the session.

use super::tests::{engine, env, media, media_with_break, plugin_wasm, viewer};
use super::*;

#[tokio::test]
async fn a_plugin_built_for_0_2_0_loads_and_runs_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = e.load(&plugin_wasm("legacy_v0_2")).unwrap();
    assert_eq!(p.world(), "plugin");
    let m = media_with_break();
    let edits = e
        .call(&p, Input::HlsMedia(&m), &viewer(), "", &env(200), None)
        .await
        .unwrap();
    assert!(
        matches!(&edits[..], [crate::types::Edit::FillBreak(f)] if f.break_id == "b1" && f.pod[0].creative == "ad10"),
        "{edits:?}"
    );
}

#[tokio::test]
async fn a_0_2_1_plugin_learns_the_sessions_insertion_mode_from_its_input() {
    use crate::ledger::Insertion;
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = e.load(&plugin_wasm("preroll")).unwrap();
    assert_eq!(p.world(), "session-plugin");
    let store: Arc<dyn crate::session::SessionStore> = Arc::new(crate::session::MemoryStore::new(
        Duration::from_secs(60),
        10,
        1 << 20,
    ));
    let pod = |insertion: Insertion| {
        let (e, p, store) = (&e, &p, store.clone());
        async move {
            let session = crate::plugin::bindings::SessionCtx {
                id: "s1".into(),
                store,
                cached: Default::default(),
                viewer: viewer(),
                insertion,
            };
            let edits = e
                .call(
                    p,
                    Input::HlsMedia(&media()),
                    &viewer(),
                    "pod=ad10; guided_pod=ad15",
                    &env(200),
                    Some(session),
                )
                .await
                .unwrap();
            match &edits[..] {
                [crate::types::Edit::Preroll(pod)] => pod[0].creative.clone(),
                other => panic!("{other:?}"),
            }
        }
    };
    assert_eq!(pod(Insertion::Stitched).await, "ad10");
    assert_eq!(pod(Insertion::Guided).await, "ad15");
}
