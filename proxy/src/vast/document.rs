//! Reading a VAST document (2, 3 and 4): a bounded XML tree, then its ads (inline or
//! wrapper), their media files, durations, impressions and tracking events, in play order.

use super::*;

/// Why a decision (or one wrapped ad of it) produced no ads.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VastError {
    #[error("{url}: no answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: response larger than {MAX_BODY} bytes")]
    TooLarge { url: String },
    #[error("{url}: not an http(s) URL")]
    BadUrl { url: String },
    #[error("{url}: refused: {why}")]
    Refused { url: String, why: String },
    #[error("malformed VAST: {0}")]
    Malformed(String),
    #[error("no ads in the VAST response")]
    Empty,
    #[error("no ad of the VAST response has a creative in the tenant's catalog")]
    NoPlayable,
    #[error("wrapper chain longer than {MAX_WRAPPER_DEPTH}")]
    TooDeep,
    #[error("wrapper forbids further wrappers (followAdditionalWrappers=false)")]
    WrapperForbidden,
    #[error("more than {MAX_FETCHES} ad server requests for one break")]
    TooManyFetches,
    #[error("decision budget of {0:?} exhausted")]
    Budget(Duration),
}

/// One `<Ad>` of a VAST document, as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VastAd {
    pub id: String,
    /// Position in the pod; `None` for a standalone ad.
    pub sequence: Option<u32>,
    pub impressions: Vec<String>,
    /// Linear tracking URLs by event (the events the beacon firer knows).
    pub tracking: BTreeMap<String, Vec<String>>,
    pub kind: AdKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AdKind {
    InLine {
        /// `(url, MIME type)` of each `<MediaFile>`.
        media: Vec<(String, String)>,
        /// `<Duration>` of the linear creative, seconds.
        duration: Option<f64>,
    },
    Wrapper {
        tag_uri: String,
        /// `followAdditionalWrappers` (default true).
        follow_wrappers: bool,
        /// `allowMultipleAds`, when given.
        allow_multiple: Option<bool>,
    },
}

impl Default for AdKind {
    fn default() -> Self {
        AdKind::InLine {
            media: Vec::new(),
            duration: None,
        }
    }
}

/// A minimal element tree: local names (namespaces ignored), attributes, text with CDATA and
/// entities resolved.
#[derive(Debug, Default)]
pub(super) struct Node {
    pub(super) name: String,
    pub(super) attrs: Vec<(String, String)>,
    pub(super) text: String,
    pub(super) children: Vec<Node>,
}

impl Node {
    pub(super) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    }

    pub(super) fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub(super) fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub(super) fn text(&self) -> &str {
        self.text.trim()
    }
}

pub(super) fn element(e: &BytesStart<'_>) -> Result<Node, String> {
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map(|v| v.into_owned())
            .unwrap_or_else(|_| a.value.to_string());
        attrs.push((a.key.local_name().as_ref().to_string(), value));
    }
    Ok(Node {
        name: e.local_name().as_ref().to_string(),
        attrs,
        ..Node::default()
    })
}

/// The document's root element (what follows it is ignored).
pub(super) fn tree(xml: &str) -> Result<Node, String> {
    let mut reader = quick_xml::Reader::from_str(xml.trim_start_matches('\u{feff}'));
    let mut stack: Vec<Node> = Vec::new();
    let mut elements = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.error_position()))?;
        let (node, closes) = match event {
            Event::Start(e) => (Some(element(&e)?), false),
            Event::Empty(e) => (Some(element(&e)?), true),
            Event::End(_) => (None, true),
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
                continue;
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.into_inner());
                }
                continue;
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => top.text.push(c),
                        _ => match quick_xml::escape::resolve_predefined_entity(&r) {
                            Some(s) => top.text.push_str(s),
                            // an entity we do not know: keep it as written
                            None => top.text.push_str(&format!("&{};", &*r)),
                        },
                    }
                }
                continue;
            }
            Event::Eof => {
                return Err(match stack.last() {
                    Some(open) => format!("document ends inside <{}>", open.name),
                    None => "no root element".into(),
                })
            }
            _ => continue,
        };
        if let Some(n) = node {
            elements += 1;
            if elements > MAX_XML_ELEMENTS || stack.len() >= MAX_XML_DEPTH {
                return Err("document too large or too deeply nested".into());
            }
            stack.push(n);
        }
        if closes {
            let Some(done) = stack.pop() else {
                return Err("unbalanced end tag".into());
            };
            match stack.last_mut() {
                Some(parent) => parent.children.push(done),
                None => return Ok(done),
            }
        }
    }
}

/// `HH:MM:SS[.mmm]` in seconds.
pub(super) fn clock(s: &str) -> Option<f64> {
    let mut parts = s.trim().split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let h: f64 = h.parse::<u32>().ok()?.into();
    let m: f64 = m.parse::<u32>().ok()?.into();
    let sec: f64 = sec.parse().ok()?;
    let total = h * 3600.0 + m * 60.0 + sec;
    (total.is_finite() && total >= 0.0).then_some(total)
}

pub(super) fn push_capped(list: &mut Vec<String>, url: &str) {
    let url = url.trim();
    if !url.is_empty() && list.len() < MAX_URLS_PER_EVENT {
        list.push(url.to_string());
    }
}

/// The ads of a VAST document in document order.
pub fn parse(xml: &str) -> Result<Vec<VastAd>, VastError> {
    let root = tree(xml).map_err(VastError::Malformed)?;
    if root.name != "VAST" {
        return Err(VastError::Malformed(format!(
            "root element is <{}>, not <VAST>",
            root.name
        )));
    }
    let mut ads = Vec::new();
    for ad in root.children("Ad") {
        let (body, inline) = match (ad.child("InLine"), ad.child("Wrapper")) {
            (Some(b), _) => (b, true),
            (None, Some(b)) => (b, false),
            _ => continue,
        };
        let mut parsed = VastAd {
            id: ad.attr("id").unwrap_or_default().to_string(),
            sequence: ad.attr("sequence").and_then(|s| s.parse().ok()),
            ..VastAd::default()
        };
        for i in body.children("Impression") {
            push_capped(&mut parsed.impressions, i.text());
        }
        let linear = body
            .children("Creatives")
            .flat_map(|c| c.children("Creative"))
            .find_map(|c| c.child("Linear"));
        for t in linear
            .into_iter()
            .flat_map(|l| l.children("TrackingEvents"))
            .flat_map(|t| t.children("Tracking"))
        {
            if let Some(event) = t.attr("event").filter(|e| EVENTS.contains(e)) {
                push_capped(parsed.tracking.entry(event.into()).or_default(), t.text());
            }
        }
        parsed.kind = if inline {
            AdKind::InLine {
                media: linear
                    .into_iter()
                    .flat_map(|l| l.children("MediaFiles"))
                    .flat_map(|m| m.children("MediaFile"))
                    .filter(|m| !m.text().is_empty())
                    .map(|m| {
                        let mime = m.attr("type").unwrap_or_default().to_string();
                        (m.text().to_string(), mime)
                    })
                    .collect(),
                duration: linear
                    .and_then(|l| l.child("Duration"))
                    .and_then(|d| clock(d.text())),
            }
        } else {
            let Some(tag_uri) = body
                .child("VASTAdTagURI")
                .map(|t| t.text())
                .filter(|t| !t.is_empty())
            else {
                continue; // a wrapper leading nowhere
            };
            let flag = |name: &str| body.attr(name).map(|v| v == "true" || v == "1");
            AdKind::Wrapper {
                tag_uri: tag_uri.to_string(),
                follow_wrappers: flag("followAdditionalWrappers").unwrap_or(true),
                allow_multiple: flag("allowMultipleAds"),
            }
        };
        ads.push(parsed);
    }
    Ok(ads)
}

/// Ads in play order, and the standalone ads that stand in for pod ads that cannot play:
/// a pod (ads with `sequence`) plays in sequence order; without a pod, every ad plays in
/// document order (VAST 2 has no pods).
pub(super) fn play_order(ads: Vec<VastAd>) -> (Vec<VastAd>, Vec<VastAd>) {
    let (mut pod, standalone): (Vec<VastAd>, Vec<VastAd>) =
        ads.into_iter().partition(|a| a.sequence.is_some());
    if pod.is_empty() {
        let mut plays = standalone;
        plays.truncate(MAX_ADS);
        return (plays, Vec::new());
    }
    pod.sort_by_key(|a| a.sequence);
    pod.truncate(MAX_ADS);
    let mut backups = standalone;
    backups.truncate(MAX_ADS);
    (pod, backups)
}
