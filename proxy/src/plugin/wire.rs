//! The boundary between the ad-insertion core's plain types ([`crate::types`]) and the
//! bindings generated from the WIT ([`super::bindings`]). A manifest's view is converted once
//! per origin fetch (it is cached with the manifest, [`Wire`]); a plan comes back by moving
//! its strings, not copying them. Every conversion names every field, so the compiler catches
//! a WIT change the core does not follow.

use super::bindings as w;
use super::bindings::session::manifold::plugin::low_latency::Edge as LiveEdge;
use crate::types as t;
use std::sync::{Arc, OnceLock};

/// A conversion between the twin types of the core and the bindings, by value (moves) or by
/// reference (clones).
pub trait Cv<T> {
    fn cv(self) -> T;
}

macro_rules! same {
    ($($ty:ty),*) => {$(
        impl Cv<$ty> for $ty { fn cv(self) -> $ty { self } }
        impl Cv<$ty> for &$ty { fn cv(self) -> $ty { self.clone() } }
    )*};
}
same!(u32, u64, i64, f64, bool, String);

impl<A: Cv<B>, B> Cv<Option<B>> for Option<A> {
    fn cv(self) -> Option<B> {
        self.map(Cv::cv)
    }
}
impl<'a, A, B> Cv<Option<B>> for &'a Option<A>
where
    &'a A: Cv<B>,
{
    fn cv(self) -> Option<B> {
        self.as_ref().map(Cv::cv)
    }
}
impl<A: Cv<B>, B> Cv<Vec<B>> for Vec<A> {
    fn cv(self) -> Vec<B> {
        self.into_iter().map(Cv::cv).collect()
    }
}
impl<'a, A, B> Cv<Vec<B>> for &'a Vec<A>
where
    &'a A: Cv<B>,
{
    fn cv(self) -> Vec<B> {
        self.iter().map(Cv::cv).collect()
    }
}

/// A record's conversion, both ways and both by value and by reference.
macro_rules! record {
    ($name:ident { $($f:ident),* $(,)? }) => {
        record!(@one t::$name => w::$name { $($f),* });
        record!(@one w::$name => t::$name { $($f),* });
    };
    (@one $a:path => $b:ident :: $name:ident { $($f:ident),* }) => {
        impl Cv<$b::$name> for $a {
            fn cv(self) -> $b::$name { $b::$name { $($f: self.$f.cv()),* } }
        }
        impl Cv<$b::$name> for &$a {
            fn cv(self) -> $b::$name { $b::$name { $($f: (&self.$f).cv()),* } }
        }
    };
}

record!(Resolution { width, height });
record!(Variant {
    index,
    uri,
    bandwidth,
    average_bandwidth,
    resolution,
    codecs,
    frame_rate,
    audio_group
});
record!(Rendition {
    index,
    kind,
    group_id,
    name,
    language,
    uri,
    is_default
});
record!(HlsMaster {
    variants,
    renditions
});
record!(Scte35 {
    splice_event_id,
    out_of_network,
    duration,
    pts
});
record!(AdBreak {
    id,
    start,
    duration,
    first_segment,
    scte35
});
record!(Segment {
    index,
    sequence,
    uri,
    duration,
    discontinuity,
    program_date_time
});
record!(HlsMedia {
    target_duration,
    media_sequence,
    discontinuity_sequence,
    live,
    segments,
    breaks
});
record!(Representation {
    id,
    bandwidth,
    width,
    height,
    codecs
});
record!(AdaptationSet {
    id,
    content_type,
    representations
});
record!(Period {
    id,
    start,
    adaptation_sets
});
record!(DashMpd {
    dynamic,
    periods,
    breaks
});
record!(Ad {
    id,
    creative,
    duration
});
record!(Fill { break_id, pod });
record!(Insert { at, pod });
record!(Tag {
    before_segment,
    line
});
record!(UriRewrite { index, uri });

/// The `low-latency` interface's records (0.2.2), host to guest only.
mod ll {
    use super::{t, Cv};
    use crate::plugin::bindings::session::manifold::plugin::low_latency as w;

    impl Cv<w::Part> for &t::Part {
        fn cv(self) -> w::Part {
            w::Part {
                segment: self.segment,
                uri: self.uri.clone(),
                duration: self.duration,
                independent: self.independent,
                gap: self.gap,
            }
        }
    }
    impl Cv<w::Edge> for &t::LiveEdge {
        fn cv(self) -> w::Edge {
            w::Edge {
                part_target: self.part_target,
                parts: (&self.parts).cv(),
                preload_hint: self.preload_hint.clone(),
                in_progress: self.in_progress,
            }
        }
    }
}

impl Cv<t::Edit> for w::Edit {
    fn cv(self) -> t::Edit {
        match self {
            w::Edit::DropVariant(i) => t::Edit::DropVariant(i),
            w::Edit::DropRendition(i) => t::Edit::DropRendition(i),
            w::Edit::DropRepresentation(id) => t::Edit::DropRepresentation(id),
            w::Edit::FillBreak(f) => t::Edit::FillBreak(f.cv()),
            w::Edit::Preroll(pod) => t::Edit::Preroll(pod.cv()),
            w::Edit::InsertPod(i) => t::Edit::InsertPod(i.cv()),
            w::Edit::AddTag(tag) => t::Edit::AddTag(tag.cv()),
            w::Edit::RewriteUri(r) => t::Edit::RewriteUri(r.cv()),
        }
    }
}

impl Cv<w::Edit> for t::Edit {
    fn cv(self) -> w::Edit {
        match self {
            t::Edit::DropVariant(i) => w::Edit::DropVariant(i),
            t::Edit::DropRendition(i) => w::Edit::DropRendition(i),
            t::Edit::DropRepresentation(id) => w::Edit::DropRepresentation(id),
            t::Edit::FillBreak(f) => w::Edit::FillBreak(f.cv()),
            t::Edit::Preroll(pod) => w::Edit::Preroll(pod.cv()),
            t::Edit::InsertPod(i) => w::Edit::InsertPod(i.cv()),
            t::Edit::AddTag(tag) => w::Edit::AddTag(tag.cv()),
            t::Edit::RewriteUri(r) => w::Edit::RewriteUri(r.cv()),
        }
    }
}

/// A manifest's view in the bindings' types, ready to be lowered into a plugin: built once
/// per cached manifest, on its first plugin call.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    HlsMaster(w::HlsMaster),
    /// With its LL-HLS live edge, when it has one, and its form for components that read
    /// the segments on demand (built on the first such call).
    HlsMedia(w::HlsMedia, Option<Arc<LiveEdge>>, OnceLock<OnDemand>),
    DashMpd(w::DashMpd),
}

impl Wire {
    pub fn hls_master(v: &t::HlsMaster) -> Wire {
        Wire::HlsMaster(v.cv())
    }
    pub fn hls_media(v: &t::HlsMedia, edge: Option<&t::LiveEdge>) -> Wire {
        Wire::HlsMedia(v.cv(), edge.map(|e| Arc::new(e.cv())), OnceLock::new())
    }
    pub fn dash_mpd(v: &t::DashMpd) -> Wire {
        Wire::DashMpd(v.cv())
    }

    /// The wire form of a parsed manifest; `None` when it did not parse.
    pub fn of(parsed: &crate::parse::Parsed) -> Option<Wire> {
        use crate::parse::Parsed;
        match parsed {
            Parsed::HlsMaster { view, .. } => Some(Wire::hls_master(view)),
            Parsed::HlsMedia { view, .. } => Some(Wire::hls_media(&view.view, view.edge.as_ref())),
            Parsed::Dash { view, .. } => Some(Wire::dash_mpd(view)),
            Parsed::None => None,
        }
    }

    pub fn input(&self) -> super::Input<'_> {
        match self {
            Wire::HlsMaster(m) => super::Input::HlsMaster(m),
            Wire::HlsMedia(m, edge, lean) => super::Input::HlsMedia(m, edge.as_ref(), Some(lean)),
            Wire::DashMpd(m) => super::Input::DashMpd(m),
        }
    }
}

/// A media playlist as a component that reads its segments on demand gets it: without its
/// segments, which the host shares with the call instead (what `segments.range` answers). Built
/// once per cached manifest, so a call copies neither.
#[derive(Debug, Clone, PartialEq)]
pub struct OnDemand {
    pub lean: w::HlsMedia,
    pub segments: Arc<[w::Segment]>,
}

impl OnDemand {
    pub fn of(m: &w::HlsMedia) -> OnDemand {
        OnDemand {
            lean: w::HlsMedia {
                segments: Vec::new(),
                breaks: m.breaks.clone(),
                ..*m
            },
            segments: m.segments.as_slice().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_and_a_plan_cross_the_boundary_unchanged() {
        let m3u8 = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00Z\n\
            #EXT-X-CUE-OUT:4\n#EXTINF:2,\na.ts\n#EXT-X-CUE-IN\n#EXTINF:2,\nb.ts\n";
        let m = m3u8_rs::parse_media_playlist_res(m3u8.as_bytes()).unwrap();
        let view = crate::view::hls_media(&m).view;
        assert_eq!(view.breaks.len(), 1, "{view:?}");
        let wire: w::HlsMedia = (&view).cv();
        assert_eq!(wire.segments[0].sequence, 7);
        assert_eq!(wire.breaks[0].id, view.breaks[0].id);
        let back: t::HlsMedia = wire.cv();
        assert_eq!(back, view);

        let plan = vec![
            t::Edit::FillBreak(t::Fill {
                break_id: "b".into(),
                pod: vec![t::Ad {
                    id: "a".into(),
                    creative: "c".into(),
                    duration: 15.0,
                }],
            }),
            t::Edit::AddTag(t::Tag {
                before_segment: 1,
                line: "#EXT-X-X".into(),
            }),
            t::Edit::DropRepresentation("v1".into()),
        ];
        let wire: Vec<w::Edit> = plan.clone().cv();
        let back: Vec<t::Edit> = wire.cv();
        assert_eq!(back, plan);
    }
}
