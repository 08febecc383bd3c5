//! LL-HLS viewers: the next blocking reload, as hls.js asks it, and when the part it asked for
//! was out (its segment's program date-time plus the parts up to it), to time the answer.

use manifold_ssai::low_latency::{Blocking, Progress};
use url::Url;

/// What hls.js asks next: the part after the last one listed, or the next segment whole
/// when the edge lists no parts.
pub(super) fn next_of(p: Progress) -> Blocking {
    match (p.parts, p.last_parts) {
        (0, 0) => Blocking {
            msn: p.end,
            part: None,
        },
        (n, _) => Blocking {
            msn: p.end,
            part: Some(n),
        },
    }
}

/// `url` without delivery directives, then with `b`'s.
pub(super) fn with(url: &Url, b: Option<Blocking>) -> Url {
    let mut u = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("_HLS_"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.set_query(None);
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        if let Some(b) = b {
            q.append_pair("_HLS_msn", &b.msn.to_string());
            if let Some(p) = b.part {
                q.append_pair("_HLS_part", &p.to_string());
            }
        }
    }
    if u.query() == Some("") {
        u.set_query(None);
    }
    u
}

/// When what `b` asks for was out (Unix ms), read from a playlist that holds it.
pub(super) fn out_at(text: &str, b: Blocking) -> Option<i64> {
    let mut msn: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))?
        .trim()
        .parse()
        .ok()?;
    let (mut pdt, mut parts, mut covered) = (None::<i64>, 0u64, 0f64);
    let mut want = b;
    for l in text.lines() {
        if let Some(t) = l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = humantime::parse_rfc3339_weak(t.trim_end_matches('Z').trim())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as i64);
        } else if let Some(rest) = l.strip_prefix("#EXT-X-PART:") {
            let d: f64 = rest
                .split(',')
                .find_map(|a| a.strip_prefix("DURATION="))?
                .parse()
                .ok()?;
            covered += d;
            parts += 1;
            if msn == want.msn && want.part == Some(parts - 1) {
                return Some(pdt? + (covered * 1000.0).round() as i64);
            }
        } else if let Some(rest) = l.strip_prefix("#EXTINF:") {
            covered = rest.split(',').next()?.parse().ok()?;
        } else if !l.starts_with('#') && !l.is_empty() {
            if msn == want.msn {
                match want.part {
                    // a part index past the segment's last: the next segment's part 0
                    Some(_) => {
                        want = Blocking {
                            msn: msn + 1,
                            part: Some(0),
                        }
                    }
                    None => return Some(pdt? + (covered * 1000.0).round() as i64),
                }
            }
            msn += 1;
            parts = 0;
            covered = 0.0;
            pdt = None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_of_parts_and_segments() {
        let text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n\
            #EXT-X-PART:DURATION=0.5,URI=\"a\"\n#EXT-X-PART:DURATION=0.5,URI=\"b\"\n\
            #EXTINF:1.0,\n7.m4s\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:01.000Z\n\
            #EXT-X-PART:DURATION=0.5,URI=\"c\"\n";
        let t0 = 1_767_225_600_000i64;
        let at = |msn, part| out_at(text, Blocking { msn, part });
        assert_eq!(at(7, Some(1)), Some(t0 + 1000));
        assert_eq!(at(7, None), Some(t0 + 1000));
        assert_eq!(at(8, Some(0)), Some(t0 + 1500));
        assert_eq!(
            at(7, Some(2)),
            Some(t0 + 1500),
            "past the last part: the next one's first"
        );
        assert_eq!(at(8, Some(1)), None);
        let u = Url::parse("http://h/p.m3u8?mf_v=a&_HLS_msn=3").unwrap();
        let b = Blocking {
            msn: 9,
            part: Some(1),
        };
        assert_eq!(
            with(&u, Some(b)).as_str(),
            "http://h/p.m3u8?mf_v=a&_HLS_msn=9&_HLS_part=1"
        );
        assert_eq!(
            with(&Url::parse("http://h/p?_HLS_msn=1").unwrap(), None).as_str(),
            "http://h/p"
        );
    }
}
