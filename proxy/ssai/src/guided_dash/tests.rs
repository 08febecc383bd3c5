use super::*;
use crate::ledger::{DecidedAd, Slot};
use std::collections::BTreeMap;

fn slot(creative: &str, index: u32, offset: f64, ad: Option<u32>) -> Slot {
    Slot {
        creative: creative.into(),
        index,
        duration: 2.0,
        offset,
        disc: index == 0,
        ad,
        events: Vec::new(),
    }
}

/// A 10 s break: ad4 (two 2 s segments, ad 0), then slate.
fn record() -> BreakRecord {
    BreakRecord {
        start_seq: 0,
        start_time: Some(130.0),
        start_ms: None,
        duration: 10.0,
        joined_mid: false,
        content: false,
        slots: vec![
            slot("ad4", 0, 0.0, Some(0)),
            slot("ad4", 1, 2.0, Some(0)),
            slot("slate", 0, 4.0, None),
        ],
        ads: vec![DecidedAd {
            id: "a".into(),
            creative: "ad4".into(),
            duration: 4.0,
            tracking: BTreeMap::from([(
                "impression".to_string(),
                vec!["https://ads.example/i?a=1&b=2".to_string()],
            )]),
        }],
    }
}

fn announced<'a>(
    rec: &'a BreakRecord,
    facts: Option<&'a BreakFacts>,
    insert: bool,
) -> Announced<'a> {
    Announced {
        key: "dash:1000",
        rec,
        facts,
        insert,
        period: (Some("0".into()), 100.0),
        uri: "http://edge/t/~s/~guided/dash/x/pod.mpd".into(),
    }
}

#[test]
fn a_replacing_pod_covers_its_ads_and_returns_after_them() {
    let rec = record();
    let policy = Guided {
        playout_limit: false,
        ..Guided::default()
    };
    let e = announced(&rec, None, false).events(&policy);
    assert_eq!(e.len(), 1);
    let x = &e[0].xml;
    assert!(
        x.contains("schemeIdUri=\"urn:mpeg:dash:event:alternativeMPD:insert:2025\""),
        "{x}"
    );
    // 30 s into period 0 (which starts at 100 s); the range is the ads' 4 s, not the break's
    assert!(
        x.contains("presentationTime=\"30000\" duration=\"4000\""),
        "{x}"
    );
    assert!(x.contains("returnOffset=\"4000\""), "{x}");
    assert!(
        x.contains("uri=\"http://edge/t/~s/~guided/dash/x/pod.mpd\""),
        "{x}"
    );
    assert!(!x.contains("maxDuration"), "{x}");
    assert_eq!(e[0].period.as_deref(), Some("0"));
    // replace, with the playout limited, and an early end (3 s of content) limiting it more
    let policy = Guided {
        dash: DashGuided::Replace,
        ..Guided::default()
    };
    let x = &announced(&rec, None, false).events(&policy)[0].xml;
    assert!(
        x.contains("alternativeMPD:replace:2025") && x.contains("<ReplacePresentation "),
        "{x}"
    );
    assert!(x.contains("maxDuration=\"4000\""), "{x}");
    let early = BreakFacts {
        secs: Some(3.0),
        ..Default::default()
    };
    let x = &announced(&rec, Some(&early), false).events(&policy)[0].xml;
    assert!(
        x.contains("duration=\"3000\"") && x.contains("maxDuration=\"3000\""),
        "{x}"
    );
}

#[test]
fn an_inserted_pod_pauses_the_content_and_callbacks_carry_impressions() {
    let rec = record();
    let policy = Guided {
        callbacks: true,
        ..Guided::default()
    };
    let e = announced(&rec, None, true).events(&policy);
    assert!(e[0].xml.contains("duration=\"0\"") && e[0].xml.contains("returnOffset=\"0\""));
    assert_eq!(e.len(), 2, "the pod and its callbacks");
    let cb = &e[1].xml;
    assert!(cb.contains("urn:mpeg:dash:event:callback:2015"), "{cb}");
    // the URL escaped for XML, at the ad's start
    assert!(
        cb.contains(">https://ads.example/i?a=1&amp;b=2</Event>"),
        "{cb}"
    );
    assert!(cb.contains("presentationTime=\"30000\""), "{cb}");
}

#[test]
fn event_streams_go_into_their_period_before_its_adaptation_sets() {
    let xml = "<MPD><Period id=\"0\"><BaseURL>b/</BaseURL><AdaptationSet id=\"1\"/></Period><Period id=\"0~x\"><AdaptationSet id=\"1\"/></Period></MPD>";
    let at = insertion_point(xml, Some("0~x")).unwrap();
    assert!(xml[at..].starts_with("<AdaptationSet id=\"1\"/></Period></MPD>"));
    let at = insertion_point(xml, Some("0")).unwrap();
    assert!(xml[..at].ends_with("<BaseURL>b/</BaseURL>"));
    assert_eq!(insertion_point(xml, Some("nope")), None);
    let empty = "<MPD><Period id=\"p\"></Period></MPD>";
    let at = insertion_point(empty, None).unwrap();
    assert!(empty[at..].starts_with("</Period>"));
}
