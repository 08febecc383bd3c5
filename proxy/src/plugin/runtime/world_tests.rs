//! The contract's versions: a component built for 0.2.0 runs unchanged, a 0.2.1 one is
//! given the session, a 0.2.2 one can read the live edge (and a 0.2.1 one runs without it), and
//! a 0.2.2 one still gets every segment in its input and calls `low-latency@0.2.2` on the
//! host's 0.2.3.

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
        .call(
            &p,
            Input::HlsMedia(&m, None, None),
            &viewer(),
            "",
            &env(200),
            None,
        )
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
                    Input::HlsMedia(&media(), None, None),
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

/// The LL-HLS playlist of the core's tests: parts of segments 11 and 12, 12 still being made.
const LL: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5\n\
#EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-MAP:URI=\"v0/init.mp4\"\n\
#EXTINF:2.0,\nv0/10.m4s\n\
#EXT-X-PART:DURATION=0.5,URI=\"v0/11.0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.5,URI=\"v0/11.1.m4s\"\n\
#EXT-X-PART:DURATION=0.5,URI=\"v0/11.2.m4s\"\n#EXT-X-PART:DURATION=0.5,URI=\"v0/11.3.m4s\"\n\
#EXTINF:2.0,\nv0/11.m4s\n\
#EXT-X-PART:DURATION=0.5,URI=\"v0/12.0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.5,URI=\"v0/12.1.m4s\"\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"v0/12.2.m4s\"\n";

fn wire_of(text: &str) -> crate::plugin::Wire {
    let (_, parsed) =
        crate::parse::parse(manifold_ssai::asked::Class::HlsPlaylist, text.as_bytes());
    crate::plugin::Wire::of(&parsed).expect("a media playlist")
}

#[tokio::test]
async fn a_0_2_2_plugin_reads_the_live_edge_of_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = e.load(&plugin_wasm("ll_edge")).unwrap();
    assert_eq!(p.world(), "session-plugin");
    let ll = wire_of(LL);
    let edits = e
        .call(&p, ll.input(), &viewer(), "", &env(200), None)
        .await
        .unwrap();
    let line = "#EXT-X-LL-EDGE:PARTS=6,INDEPENDENT=2,TARGET=0.5,LAST=\"v0/12.1.m4s\",\
        HINT=\"v0/12.2.m4s\",MAKING=YES";
    assert_eq!(
        edits,
        [crate::types::Edit::AddTag(crate::types::Tag {
            before_segment: 2,
            line: line.into()
        })]
    );
    // a playlist without parts has no live edge; nor does a call carry the last one's
    let plain = wire_of("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n");
    let edits = e
        .call(&p, plain.input(), &viewer(), "", &env(200), None)
        .await
        .unwrap();
    assert_eq!(edits, []);
}

#[tokio::test]
async fn a_plugin_built_for_0_2_1_runs_unchanged_on_an_ll_hls_input() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = e.load(&plugin_wasm("legacy_v0_2_1")).unwrap();
    assert_eq!(p.world(), "session-plugin");
    let with_break = LL.replace(
        "#EXT-X-PART:DURATION=0.5,URI=\"v0/12.0.m4s\"",
        "#EXT-X-CUE-OUT:DURATION=10\n#EXT-X-PART:DURATION=0.5,URI=\"v0/12.0.m4s\"",
    );
    let ll = wire_of(&with_break);
    let edits = e
        .call(&p, ll.input(), &viewer(), "", &env(200), None)
        .await
        .unwrap();
    assert!(
        matches!(&edits[..], [crate::types::Edit::FillBreak(f)] if f.pod[0].creative == "ad10"),
        "{edits:?}"
    );
}

#[tokio::test]
async fn a_plugin_built_for_0_2_2_still_gets_every_segment_in_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = e.load(&plugin_wasm("legacy_v0_2_2")).unwrap();
    assert_eq!(p.world(), "session-plugin");
    // it does not import `segments` (0.2.3): the host must not leave them out
    assert!(!p.segments_on_demand);
    let ll = wire_of(LL);
    let edits = e
        .call(&p, ll.input(), &viewer(), "", &env(200), None)
        .await
        .unwrap();
    let [crate::types::Edit::AddTag(t)] = &edits[..] else {
        panic!("{edits:?}")
    };
    let crate::plugin::Input::HlsMedia(m, Some(edge), _) = ll.input() else {
        panic!("an LL-HLS media playlist")
    };
    let want = format!(
        "#EXT-X-LEGACY-0-2-2:SEGMENTS={},LAST=\"{}\",PARTS={}",
        m.segments.len(),
        m.segments.last().unwrap().uri,
        edge.parts.len()
    );
    assert!(m.segments.len() >= 2, "{m:?}");
    assert_eq!(t.line, want);
}
