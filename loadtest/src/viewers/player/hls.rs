//! An HLS viewer: the master, then a media track per rendition played at the live edge.

use super::*;

pub(super) async fn hls_viewer(sh: &Shared, id: u64, entry: Url, mut rng: Rng) {
    let mut stop = sh.stop.clone();
    // the master (or a media playlist given directly), retried until it works
    let (doc, url) = loop {
        if let Some(f) = sh.fetch_unrecorded(Kind::Master, &entry).await {
            match sh.hls.get(&f.body, parse_hls) {
                Ok((doc, _)) => {
                    let kind = match &*doc {
                        HlsDoc::Master(_) => Kind::Master,
                        HlsDoc::Media(_) => Kind::Playlist,
                    };
                    sh.record_ok(kind, &f);
                    break (doc, f.url);
                }
                Err(e) => {
                    sh.record_ok(Kind::Master, &f);
                    sh.parse_error(Kind::Master, &f.url, &e);
                }
            }
        }
        if sleep_or_stop(&mut stop, Instant::now() + RETRY).await {
            return;
        }
    };
    match &*doc {
        HlsDoc::Media(_) => {
            let mut track = HlsTrack::new(sh, url, None, 0, false);
            track.run(&mut rng).await;
        }
        HlsDoc::Master(m) => {
            let variants: Vec<Url> = m
                .variants
                .iter()
                .filter_map(|(uri, _, _)| url.join(uri).ok())
                .collect();
            if variants.is_empty() {
                sh.parse_error(Kind::Master, &url, "master playlist without variants");
                return;
            }
            let vi = (id % variants.len() as u64) as usize;
            let audio = m
                .audio_for(m.variants[vi].2.as_deref())
                .and_then(|u| url.join(u).ok());
            let mut video = HlsTrack::new(sh, variants[vi].clone(), Some(variants), vi, true);
            match audio {
                Some(a) => {
                    let mut audio = HlsTrack::new(sh, a, None, 0, false);
                    let mut arng = Rng::for_viewer(sh.opts.seed ^ 0xA0D1_0000, id);
                    tokio::join!(video.run(&mut rng), audio.run(&mut arng));
                }
                None => video.run(&mut rng).await,
            }
        }
    }
}

struct HlsTrack<'a> {
    sh: &'a Shared,
    url: Url,
    variants: Option<Vec<Url>>,
    variant: usize,
    /// Video follows ABR switches; audio stays.
    switches: bool,
    checkers: HashMap<String, HlsChecker>,
    last_seq: Option<u64>,
    last_body: u64,
    inits: Inits,
    /// Newest sequence number seen and when, for staleness without date-times.
    advanced: Option<(u64, Instant)>,
    downloaded: usize,
    /// LL-HLS: the blocking reload in flight, and the newest part fetched.
    asked: Option<manifold_ssai::low_latency::Blocking>,
    last_part: Option<String>,
}

impl<'a> HlsTrack<'a> {
    fn new(
        sh: &'a Shared,
        url: Url,
        variants: Option<Vec<Url>>,
        variant: usize,
        switches: bool,
    ) -> Self {
        HlsTrack {
            sh,
            url,
            variants,
            variant,
            switches,
            checkers: HashMap::new(),
            last_seq: None,
            last_body: 0,
            inits: Inits::default(),
            advanced: None,
            downloaded: 0,
            asked: None,
            last_part: None,
        }
    }

    async fn run(&mut self, rng: &mut Rng) {
        let sh = self.sh;
        let m = &sh.metrics;
        let mut stop = sh.stop.clone();
        let mut target = Duration::from_secs(2);
        loop {
            if *stop.borrow() {
                return;
            }
            let t0 = Instant::now();
            let Some(f) = sh.fetch(Kind::Playlist, &self.url).await else {
                if sleep_or_stop(&mut stop, t0 + target / 2).await {
                    return;
                }
                continue;
            };
            // reload from where a redirect led: the session
            self.url = super::ll::with(&f.url, None);
            let asked = self.asked.take();
            let (doc, body_hash) = match sh.hls.get(&f.body, parse_hls) {
                Ok(d) => d,
                Err(e) => {
                    sh.parse_error(Kind::Playlist, &self.url, &e);
                    if sleep_or_stop(&mut stop, t0 + target / 2).await {
                        return;
                    }
                    continue;
                }
            };
            let HlsDoc::Media(pl) = &*doc else {
                sh.parse_error(
                    Kind::Playlist,
                    &self.url,
                    "a master where a media playlist was expected",
                );
                if sleep_or_stop(&mut stop, t0 + target).await {
                    return;
                }
                continue;
            };
            target = Duration::from_secs_f64(pl.target_duration.clamp(0.5, 60.0));
            let changed = body_hash != self.last_body;
            self.last_body = body_hash;
            // consistency, per playlist of the session
            let checker = self
                .checkers
                .entry(self.url.path().to_string())
                .or_default();
            let v = checker.observe(pl);
            m.add(&m.counters.reloads_checked, 1);
            if !v.is_empty() {
                sh.violations(&self.url, v);
            }
            if pl.shows_break() {
                m.add(&m.counters.manifests_with_breaks, 1);
            }
            self.staleness(pl);
            // new segments, from the live edge on the first load
            let msn = pl.media_sequence;
            let len = pl.segments.len();
            let from = match self.last_seq {
                None if pl.end_list => 0,
                None => len.saturating_sub(sh.opts.live_edge_segments),
                Some(last) if last + 1 < msn => {
                    m.add(&m.counters.segments_skipped, msn - last - 1);
                    0
                }
                Some(last) => ((last + 1 - msn) as usize).min(len),
            };
            for (i, s) in pl.segments.iter().enumerate().skip(from) {
                if *stop.borrow() {
                    return;
                }
                if pl.end_list && self.downloaded >= sh.opts.live_edge_segments {
                    // VOD: one segment per its duration once the buffer is filled
                    let pace =
                        Instant::now() + Duration::from_secs_f64(s.duration.clamp(0.0, 60.0));
                    if sleep_or_stop(&mut stop, pace).await {
                        return;
                    }
                }
                self.download(s).await;
                self.last_seq = Some(msn + i as u64);
            }
            if pl.end_list {
                return;
            }
            if self.switches && rng.chance(sh.opts.abr_switch) {
                if let Some(vs) = &self.variants {
                    if vs.len() > 1 {
                        let step = 1 + rng.below(vs.len() as u64 - 1) as usize;
                        self.variant = (self.variant + step) % vs.len();
                        self.url = vs[self.variant].clone();
                        self.last_body = 0;
                        m.add(&m.counters.abr_switches, 1);
                    }
                }
            }
            // LL-HLS: the next reload blocks at the origin's pace, right away
            if let Some(p) = manifold_ssai::low_latency::Progress::of(&f.body) {
                let text = String::from_utf8_lossy(&f.body);
                if let Some(out) = asked.and_then(|b| super::ll::out_at(&text, b)) {
                    m.beyond(now_ms() - out);
                }
                self.newest_part(&text).await;
                let b = super::ll::next_of(p);
                self.asked = Some(b);
                self.url = super::ll::with(&self.url, Some(b));
                continue;
            }
            let wait = if changed { target } else { target / 2 };
            if sleep_or_stop(&mut stop, t0 + wait).await {
                return;
            }
        }
    }

    /// LL-HLS: the newest part listed, once (the parts a player at the edge plays).
    async fn newest_part(&mut self, text: &str) {
        let Some(uri) = text
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
            .filter_map(|a| a.split("URI=\"").nth(1)?.split('"').next())
            .next_back()
        else {
            return;
        };
        if self.last_part.as_deref() == Some(uri) {
            return;
        }
        self.last_part = Some(uri.to_string());
        if let Ok(u) = self.url.join(uri) {
            self.sh.fetch(Kind::Segment, &u).await;
        }
    }

    async fn download(&mut self, s: &SegmentFacts) {
        let sh = self.sh;
        if let Some(map) = &s.map {
            match self.url.join(map) {
                Ok(u) => {
                    if self.inits.first_time(&u) {
                        sh.fetch(Kind::Init, &u).await;
                    }
                }
                Err(e) => sh.parse_error(
                    Kind::Playlist,
                    &self.url,
                    &format!("bad EXT-X-MAP URI {map:?}: {e}"),
                ),
            }
        }
        match self.url.join(&s.uri) {
            Ok(u) => {
                if sh.fetch(Kind::Segment, &u).await.is_some() && s.is_ad {
                    sh.metrics.add(&sh.metrics.counters.ad_segments, 1);
                }
                self.downloaded += 1;
            }
            Err(e) => sh.parse_error(
                Kind::Playlist,
                &self.url,
                &format!("bad segment URI {:?}: {e}", s.uri),
            ),
        }
    }

    /// How far behind live the playlist is: now minus the end of its newest segment (by
    /// program date-time), else the time since the media sequence last advanced.
    fn staleness(&mut self, pl: &MediaFacts) {
        if pl.end_list {
            return;
        }
        let newest = pl.media_sequence + pl.segments.len() as u64;
        let now = Instant::now();
        match self.advanced {
            Some((n, _)) if n >= newest => {}
            _ => self.advanced = Some((newest, now)),
        }
        let behind = match pl
            .segments
            .last()
            .and_then(|s| s.pdt_ms.map(|t| (t, s.duration)))
        {
            Some((t, d)) => {
                let end = t + (d * 1000.0).round() as i64;
                Duration::from_millis((now_ms() - end).max(0) as u64)
            }
            None => match self.advanced {
                Some((_, at)) => now.duration_since(at),
                None => return,
            },
        };
        self.sh.metrics.staleness(behind);
    }
}
