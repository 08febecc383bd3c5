//! Rendering a stitched playlist through m3u8-rs, for origin playlists whose text layout
//! could not be kept (the text splice in [`super`] is the fast path).

use super::*;

impl Stitch<'_> {
    pub(super) fn render_m3u8(&self, num: Numbering) -> Vec<u8> {
        let m = self.playlist;
        let seq0 = m.media_sequence;
        let returns = return_points(self.placed);
        let encrypted = m.segments.iter().any(|s| {
            s.key
                .as_ref()
                .is_some_and(|k| k.method != m3u8_rs::KeyMethod::None)
        });
        let strip = |tags: &mut Vec<m3u8_rs::ExtTag>, dr: &mut Option<m3u8_rs::DateRange>| {
            if self.markers == Markers::Strip {
                tags.retain(|t| !is_marker_line(format!("#EXT-{}", t.tag).as_bytes()));
                if dr.as_ref().is_some_and(|d| {
                    d.other_attributes
                        .as_ref()
                        .is_some_and(|o| o.keys().any(|k| k.starts_with("SCTE35")))
                }) {
                    *dr = None;
                }
            }
        };
        let mut segments = Vec::new();
        let mut map: Option<m3u8_rs::Map> = None;
        let mut key: Option<m3u8_rs::Key> = None;
        let mut in_ads = false;
        for item in self.items() {
            match item {
                Item::Slot { p, k, carries } => {
                    let slot = &p.slots[k];
                    let mut seg = MediaSegment {
                        uri: self.slot_uri(p, k),
                        duration: slot.duration as f32,
                        discontinuity: slot.disc,
                        map: Self::slot_map(p, k, segments.is_empty()).map(|u| m3u8_rs::Map {
                            uri: u.clone(),
                            ..Default::default()
                        }),
                        program_date_time: self.pdt_of(p, slot),
                        ..MediaSegment::empty()
                    };
                    if let Some(i) = carries {
                        let c = &m.segments[i];
                        map = c.map.clone().or(map);
                        key = c.key.clone().or(key);
                        seg.unknown_tags = c.unknown_tags.clone();
                        seg.daterange = c.daterange.clone();
                        strip(&mut seg.unknown_tags, &mut seg.daterange);
                    }
                    if encrypted && !in_ads {
                        seg.key = Some(m3u8_rs::Key {
                            method: m3u8_rs::KeyMethod::None,
                            ..Default::default()
                        });
                    }
                    in_ads = true;
                    segments.push(seg);
                }
                Item::Content(i) => {
                    let mut seg = m.segments[i].clone();
                    let n = seq0 + i as u64;
                    if in_ads || returns.contains(&n) {
                        seg.discontinuity = true;
                        if seg.map.is_none() {
                            seg.map = map.clone();
                        }
                        if seg.key.is_none() {
                            seg.key = key.clone();
                        }
                    }
                    in_ads = false;
                    map = seg.map.clone().or(map);
                    key = seg.key.clone().or(key);
                    strip(&mut seg.unknown_tags, &mut seg.daterange);
                    seg.unknown_tags.extend(self.edits.tags[i].iter().cloned());
                    if let Some(u) = &self.edits.uris[i] {
                        seg.uri = u.clone();
                    }
                    segments.push(seg);
                }
            }
        }
        if let Some(first) = segments.first_mut() {
            if first.program_date_time.is_none() {
                first.program_date_time = self
                    .first_pdt
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|t| t.fixed_offset());
            }
        }
        // the announcements, as tags of the segment they go before (m3u8-rs writes them
        // before it); unanchored ones on the first
        for a in self.announce {
            let Some((tag, rest)) = a.line.strip_prefix("#EXT-").and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let at = self.anchored(a).and_then(|n| {
                let uri = &m.segments.get((n - seq0) as usize)?.uri;
                segments.iter().position(|s| &s.uri == uri)
            });
            if let Some(seg) = segments.get_mut(at.unwrap_or(0)) {
                seg.unknown_tags.insert(
                    0,
                    m3u8_rs::ExtTag {
                        tag: tag.to_string(),
                        rest: Some(rest.to_string()),
                    },
                );
            }
        }
        let mut out = m.clone();
        out.segments = segments;
        out.media_sequence = num.media_sequence;
        out.discontinuity_sequence = num.discontinuity_sequence;
        if let Some(hold) = self.hold_back() {
            if !out.unknown_tags.iter().any(|t| t.tag == "X-SERVER-CONTROL") {
                out.unknown_tags.push(m3u8_rs::ExtTag {
                    tag: "X-SERVER-CONTROL".into(),
                    rest: Some(format!("HOLD-BACK={hold:.1}")),
                });
            }
        }
        if let Some(off) = self.start_offset {
            out.start = Some(m3u8_rs::Start {
                time_offset: -off,
                precise: None,
                other_attributes: Default::default(),
            });
        }
        let mut buf = Vec::new();
        let _ = out.write_to(&mut buf);
        buf
    }
}
