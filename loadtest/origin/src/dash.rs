//! DASH MPDs (ISO/IEC 23009-1): live `dynamic` with `$Number$` or SegmentTimeline addressing,
//! VOD `static`, SCTE-35 breaks in an `EventStream` (SCTE 214).

use super::media::{CmafRendition, Package};
use super::schedule::{Break, Schedule};
use super::scte35;
use anyhow::Result;
use base64::Engine;
use std::fmt::Write;
use std::time::SystemTime;

/// How segments are addressed in a SegmentTemplate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `duration` + `$Number$`; SCTE-35 as `urn:scte:scte35:2014:xml+bin`.
    Number,
    /// `SegmentTimeline` + `$Time$`; SCTE-35 in the XML form `urn:scte:scte35:2013:xml`.
    Timeline,
}

/// Segments `first..end` of the package's timeline.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub first: u64,
    pub end: u64,
}

fn iso_duration(secs: f64) -> String {
    format!("PT{}S", (secs * 1000.0).round() / 1000.0)
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The live MPD at `now`: one period from the availability start, the published window.
pub fn live(
    pkg: &Package,
    s: &Schedule,
    now: SystemTime,
    addressing: Addressing,
) -> Result<String> {
    let window = s.live_window(now);
    let d = s.segment_secs;
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:scte35="http://www.scte.org/schemas/35/2016" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="dynamic" availabilityStartTime="{}" publishTime="{}" minimumUpdatePeriod="PT{d}S" minBufferTime="PT{d}S" timeShiftBufferDepth="PT{}S" suggestedPresentationDelay="PT{}S" maxSegmentDuration="PT{}S">
  <Period id="0" start="PT0S">
"#,
        time(s.epoch),
        time(now),
        s.window * d as u64,
        3 * d,
        d + 1,
    );
    let breaks = s.breaks_overlapping(window.start, window.end);
    write_events(&mut out, s, &breaks, addressing)?;
    let span = Span {
        first: window.start,
        end: window.end,
    };
    write_adaptation_sets(&mut out, pkg, d as f64, span, addressing);
    out.push_str("  </Period>\n</MPD>\n");
    Ok(out)
}

/// A VOD MPD over segments `0..segments` of the content, with the breaks that fall inside.
pub fn vod(pkg: &Package, s: &Schedule, segments: u64) -> Result<String> {
    let d = s.segment_secs;
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:scte35="http://www.scte.org/schemas/35/2016" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011,urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="{}" minBufferTime="PT{d}S" maxSegmentDuration="PT{}S">
  <Period id="0" start="PT0S">
"#,
        iso_duration((segments * d as u64) as f64),
        d + 1,
    );
    let breaks: Vec<Break> = s
        .breaks_overlapping(0, segments)
        .into_iter()
        .filter(|b| b.start + b.len <= segments)
        .collect();
    write_events(&mut out, s, &breaks, Addressing::Number)?;
    let span = Span {
        first: 0,
        end: segments,
    };
    write_adaptation_sets(&mut out, pkg, d as f64, span, Addressing::Number);
    out.push_str("  </Period>\n</MPD>\n");
    Ok(out)
}

/// A static MPD for one ad creative: exact SegmentTimeline, `$Number$` URLs from 0.
pub fn creative(pkg: &Package) -> String {
    let len = pkg.video().next().map(|r| r.segments.len()).unwrap_or(0) as u64;
    let nominal = pkg
        .video()
        .next()
        .and_then(|r| r.segments.first())
        .map(|s| s.seconds)
        .unwrap_or(2.0);
    let mut out = String::with_capacity(2048);
    let _ = write!(
        out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="{}" minBufferTime="PT2S">
  <Period id="0" start="PT0S">
"#,
        iso_duration(pkg.duration)
    );
    write_adaptation_sets(
        &mut out,
        pkg,
        nominal,
        Span { first: 0, end: len },
        Addressing::Number,
    );
    out.push_str("  </Period>\n</MPD>\n");
    out
}

fn write_events(out: &mut String, s: &Schedule, breaks: &[Break], a: Addressing) -> Result<()> {
    if breaks.is_empty() {
        return Ok(());
    }
    let scheme = match a {
        Addressing::Number => "urn:scte:scte35:2014:xml+bin",
        Addressing::Timeline => "urn:scte:scte35:2013:xml",
    };
    let _ = writeln!(
        out,
        r#"    <EventStream schemeIdUri="{scheme}" timescale="90000">"#
    );
    for b in breaks {
        let start = b.start_secs(s) * 90_000;
        let dur = b.duration_secs(s) * 90_000;
        let id = scte35::event_id(b);
        let _ = write!(
            out,
            r#"      <Event presentationTime="{start}" duration="{dur}" id="{id}">"#
        );
        match a {
            Addressing::Number => {
                let bin = base64::engine::general_purpose::STANDARD
                    .encode(scte35::splice_insert(s, b, true)?);
                let _ = write!(
                    out,
                    "<scte35:Signal><scte35:Binary>{bin}</scte35:Binary></scte35:Signal>"
                );
            }
            Addressing::Timeline => {
                let _ = write!(
                    out,
                    r#"<scte35:SpliceInfoSection xmlns:scte35="http://www.scte.org/schemas/35/2014SCTE35.xsd" protocolVersion="0" ptsAdjustment="0" tier="4095"><scte35:SpliceInsert spliceEventId="{id}" spliceEventCancelIndicator="false" outOfNetworkIndicator="true" uniqueProgramId="0" availNum="0" availsExpected="0" spliceImmediateFlag="false"><scte35:Program><scte35:SpliceTime ptsTime="{}"/></scte35:Program><scte35:BreakDuration autoReturn="true" duration="{dur}"/></scte35:SpliceInsert></scte35:SpliceInfoSection>"#,
                    scte35::pts_ticks(b.start_secs(s))
                );
            }
        }
        out.push_str("</Event>\n");
    }
    out.push_str("    </EventStream>\n");
    Ok(())
}

fn write_adaptation_sets(out: &mut String, pkg: &Package, nominal: f64, span: Span, a: Addressing) {
    let video: Vec<&CmafRendition> = pkg.video().collect();
    if let Some(first) = video.first() {
        let (mw, mh) = video.iter().fold((0, 0), |(w, h), r| {
            (w.max(r.info.width), h.max(r.info.height))
        });
        let _ = writeln!(
            out,
            r#"    <AdaptationSet id="1" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1" maxWidth="{mw}" maxHeight="{mh}">"#
        );
        write_template(out, first, nominal, span, a);
        for r in &video {
            let _ = writeln!(
                out,
                r#"      <Representation id="{}" bandwidth="{}" width="{}" height="{}" codecs="{}"/>"#,
                r.id, r.bandwidth, r.info.width, r.info.height, r.info.codec
            );
        }
        out.push_str("    </AdaptationSet>\n");
    }
    if let Some(r) = pkg.audio() {
        let _ = writeln!(
            out,
            r#"    <AdaptationSet id="2" contentType="audio" mimeType="audio/mp4" lang="en" segmentAlignment="true" startWithSAP="1">"#
        );
        write_template(out, r, nominal, span, a);
        let _ = writeln!(
            out,
            r#"      <Representation id="{}" bandwidth="{}" codecs="{}" audioSamplingRate="{}">
        <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="1"/>
      </Representation>"#,
            r.id, r.bandwidth, r.info.codec, r.info.timescale
        );
        out.push_str("    </AdaptationSet>\n");
    }
}

fn write_template(out: &mut String, r: &CmafRendition, nominal: f64, span: Span, a: Addressing) {
    let ts = r.info.timescale;
    match a {
        Addressing::Number => {
            let _ = writeln!(
                out,
                r#"      <SegmentTemplate timescale="{ts}" duration="{}" startNumber="0" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s"/>"#,
                (nominal * ts as f64).round() as u64
            );
        }
        Addressing::Timeline => {
            let _ = write!(
                out,
                r#"      <SegmentTemplate timescale="{ts}" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/t$Time$.m4s">
        <SegmentTimeline>"#
            );
            write_timeline(out, r, span);
            out.push_str("</SegmentTimeline>\n      </SegmentTemplate>\n");
        }
    }
}

/// `<S t d r>` runs for segments `span.first..span.end`.
fn write_timeline(out: &mut String, r: &CmafRendition, span: Span) {
    let len = r.segments.len() as u64;
    let mut n = span.first;
    let mut first = true;
    while n < span.end {
        let d = r.segments[(n % len) as usize].duration;
        let mut repeat = 0;
        while n + repeat + 1 < span.end
            && r.segments[((n + repeat + 1) % len) as usize].duration == d
        {
            repeat += 1;
        }
        if first {
            let _ = write!(out, r#"<S t="{}" d="{d}""#, r.looped_start(n));
            first = false;
        } else {
            let _ = write!(out, r#"<S d="{d}""#);
        }
        if repeat > 0 {
            let _ = write!(out, r#" r="{repeat}""#);
        }
        out.push_str("/>");
        n += repeat + 1;
    }
}
