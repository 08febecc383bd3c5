//! Server-guided ad insertion for DASH (6th edition, alternative MPDs): a guided session's
//! MPD keeps its content and announces each pod as an `urn:mpeg:dash:event:alternativeMPD`
//! event whose presentation is the pod's own MPD, under the session
//! ([`crate::guided::pod_mpd_path`]); optionally, `urn:mpeg:dash:event:callback:2015`
//! events carry the ads' impression URLs for players that report tracking themselves.
//!
//! dash-mpd-core has no type for an event's `InsertPresentation` child, so the events are
//! written as XML into the serialized MPD ([`DashOut`]'s `Display`).

use crate::guided::{self, Asset};
use crate::ledger::{BreakFacts, BreakRecord};
use crate::policy::{DashGuided, Guided};
use dash_mpd_core::MPD;
use std::fmt::Write;

/// A personalized MPD and the guided events to write into it.
#[derive(Debug, Clone)]
pub struct DashOut {
    pub mpd: MPD,
    pub events: Vec<DashEvent>,
}

impl From<MPD> for DashOut {
    fn from(mpd: MPD) -> DashOut {
        DashOut {
            mpd,
            events: Vec::new(),
        }
    }
}

/// An event stream announcing one pod, in the period (by id) it starts in.
#[derive(Debug, Clone, PartialEq)]
pub struct DashEvent {
    pub period: Option<String>,
    pub xml: String,
}

/// How early a player may fetch a pod's MPD before its event starts.
const RESOLVE_AHEAD_MS: u64 = 10_000;

const INSERT: &str = "urn:mpeg:dash:event:alternativeMPD:insert:2025";
const REPLACE: &str = "urn:mpeg:dash:event:alternativeMPD:replace:2025";
const CALLBACK: &str = "urn:mpeg:dash:event:callback:2015";

fn attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn ms(secs: f64) -> u64 {
    (secs.max(0.0) * 1000.0).round() as u64
}

/// A recorded pod as the session's MPD announces it.
pub struct Announced<'a> {
    pub key: &'a str,
    pub rec: &'a BreakRecord,
    pub facts: Option<&'a BreakFacts>,
    /// An inserted pod (pre-roll, VOD mid-roll) rather than a break's replacement.
    pub insert: bool,
    /// The period it starts in: id and start (MPD time).
    pub period: (Option<String>, f64),
    /// The pod MPD's URI (the session prefix included).
    pub uri: String,
}

impl Announced<'_> {
    /// The alternative-MPD event (and, with `callbacks`, the ads' impression callbacks).
    pub fn events(&self, policy: &Guided) -> Vec<DashEvent> {
        let start = self.rec.start_time.unwrap_or_default();
        let at = ms(start - self.period.1);
        let ads: f64 = guided::assets(self.rec).iter().map(|a| a.duration).sum();
        let content = self.facts.and_then(|f| f.secs).unwrap_or(self.rec.duration);
        // an inserted pod pauses the content and resumes it where it paused; a replacing
        // one covers as much content as its ads last (the rest of a longer break plays)
        let (scheme, element, duration, back) = match (self.insert, policy.dash) {
            (true, _) => (INSERT, "InsertPresentation", 0, 0),
            (false, DashGuided::Insert) => {
                let d = ms(ads.min(content));
                (INSERT, "InsertPresentation", d, d)
            }
            (false, DashGuided::Replace) => {
                let d = ms(ads.min(content));
                (REPLACE, "ReplacePresentation", d, d)
            }
        };
        // limited to the range it replaces (an early end: to what the break had)
        let limit = (!self.insert && (policy.playout_limit || content + 0.5 < ads))
            .then(|| ms(ads.min(content)));
        let mut xml = format!(
            "<EventStream schemeIdUri=\"{scheme}\" timescale=\"1000\"><Event id=\"{}\" presentationTime=\"{at}\" duration=\"{duration}\"><{element} uri=\"{}\" returnOffset=\"{back}\" earliestResolutionTimeOffset=\"{RESOLVE_AHEAD_MS}\"",
            attr(&guided::interstitial_id(self.key)),
            attr(&self.uri),
        );
        if let Some(l) = limit {
            let _ = write!(xml, " maxDuration=\"{l}\"");
        }
        if policy.restrict_skip || policy.restrict_jump {
            xml.push_str(" noJump=\"1\"");
        }
        let _ = write!(xml, "/></Event></EventStream>");
        let mut out = vec![DashEvent {
            period: self.period.0.clone(),
            xml,
        }];
        if policy.callbacks {
            out.extend(self.callbacks(at));
        }
        out
    }

    /// `callback:2015` events: each ad's impression URLs, at the ad's start.
    fn callbacks(&self, at: u64) -> Option<DashEvent> {
        let mut events = String::new();
        for Asset { ad, offset, .. } in guided::assets(self.rec) {
            let Some(d) = self.rec.ads.get(ad as usize) else {
                continue;
            };
            for (k, url) in d
                .tracking
                .get("impression")
                .into_iter()
                .flatten()
                .enumerate()
            {
                let _ = write!(
                    events,
                    "<Event id=\"{}-{ad}-{k}\" presentationTime=\"{}\">{}</Event>",
                    attr(&guided::interstitial_id(self.key)),
                    at + ms(offset),
                    attr(url)
                );
            }
        }
        (!events.is_empty()).then(|| DashEvent {
            period: self.period.0.clone(),
            xml: format!(
                "<EventStream schemeIdUri=\"{CALLBACK}\" value=\"1\" timescale=\"1000\">{events}</EventStream>"
            ),
        })
    }
}

impl std::fmt::Display for DashOut {
    /// The MPD as XML, each event stream written into its period (before its first
    /// adaptation set, where the schema puts event streams).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut xml = self.mpd.to_string();
        for e in &self.events {
            let Some(at) = insertion_point(&xml, e.period.as_deref()) else {
                continue;
            };
            xml.insert_str(at, &e.xml);
        }
        f.write_str(&xml)
    }
}

/// Where an event stream goes: before the first `<AdaptationSet` of the period with `id`
/// (the first period without one).
fn insertion_point(xml: &str, id: Option<&str>) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = xml[from..].find("<Period") {
        let start = from + i;
        let open_end = start + xml[start..].find('>')?;
        let tag = &xml[start..open_end];
        let matches = match id {
            Some(id) => tag.contains(&format!("id=\"{}\"", attr(id))),
            None => true,
        };
        if matches {
            let close = xml[open_end..].find("</Period>").map(|c| open_end + c);
            let set = xml[open_end..].find("<AdaptationSet").map(|a| open_end + a);
            return match (set, close) {
                (Some(s), Some(c)) if s < c => Some(s),
                (_, Some(c)) => Some(c),
                (Some(s), None) => Some(s),
                (None, None) => None,
            };
        }
        from = open_end;
    }
    None
}

#[cfg(test)]
mod tests;
