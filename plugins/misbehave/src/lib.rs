//! A plugin that misbehaves on purpose, for the containment tests and benchmarks.
//! Config `mode=`: `noop` (no edits), `loop`, `memory`, `trap`, `stack`, `huge`, `invalid`,
//! `kv` (counts calls in the tenant's key-value store), `log`, `viewer` (media playlists get
//! `#EXT-X-VIEWER-HEADERS:name=value;...`, the viewer context's headers, for the tests),
//! `alias` (a plan of 25 tags whose text all points at one 4 MiB buffer: 100 MB for a host
//! that lifts it whole), `decide` (asks `decide-ads` for fresh made-up breaks, forever;
//! with `ids=input`, for the input's own breaks over and over).
use manifold_plugin_sdk::*;

struct Misbehave;

#[inline(never)]
#[allow(unconditional_recursion)] // on purpose: a stack overflow
fn recurse(n: u64, buf: &mut [u8; 256]) -> u64 {
    buf[(n % 256) as usize] = n as u8;
    let mut local = [0u8; 256];
    local.copy_from_slice(buf);
    recurse(n + 1, &mut local) + local[3] as u64
}

/// `n` tags whose lines all alias one `len`-byte buffer. Rust strings cannot share a buffer,
/// the canonical ABI can: each is lowered as (pointer, length) into the same memory. The
/// export's post-return would free the buffer once per alias: a host that refuses the lift
/// never runs it, and every instance is thrown away after its call anyway.
fn aliased_plan(n: usize, len: usize) -> Vec<Edit> {
    let mut text = vec![b'A'; len];
    text[..8].copy_from_slice(b"#EXT-X-A");
    let buf: &'static mut [u8] = Box::leak(text.into_boxed_slice());
    (0..n)
        .map(|_| {
            // SAFETY: see above; the bytes are ASCII, so every alias is valid UTF-8
            let line = unsafe { String::from_raw_parts(buf.as_mut_ptr(), len, len) };
            Edit::AddTag(Tag {
                before_segment: 0,
                line,
            })
        })
        .collect()
}

fn act(
    config: &str,
    segments: u32,
    breaks: &[AdBreak],
    viewer: &Viewer,
) -> Result<Vec<Edit>, String> {
    match config::get(config, "mode").unwrap_or("noop") {
        "noop" => Ok(vec![]),
        "viewer" if segments > 0 => Ok(vec![Edit::AddTag(Tag {
            before_segment: 0,
            line: format!(
                "#EXT-X-VIEWER-HEADERS:{}",
                viewer
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(";")
            ),
        })]),
        "viewer" => Ok(vec![]),
        "loop" => {
            let mut x: u64 = 1;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "trap" => panic!("misbehave: trap on purpose"),
        "stack" => {
            let mut buf = [0u8; 256];
            Ok(vec![Edit::AddTag(Tag {
                before_segment: 0,
                line: format!("#EXT-X-N:{}", recurse(0, &mut buf)),
            })])
        }
        "huge" => Ok((0..2_000_000u32)
            .map(|i| {
                Edit::AddTag(Tag {
                    before_segment: i % segments.max(1),
                    line: "#EXT-X-HUGE".into(),
                })
            })
            .collect()),
        "invalid" => Ok(vec![
            Edit::DropVariant(9999),
            Edit::AddTag(Tag {
                before_segment: 0,
                line: "#EXT-X-MEDIA-SEQUENCE:0".into(),
            }),
        ]),
        "kv" => {
            let n = host::kv_get("calls")
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            host::kv_set("calls", n.to_string().as_bytes())?;
            Ok(vec![Edit::AddTag(Tag {
                before_segment: 0,
                line: format!("#EXT-X-CALLS:{n}"),
            })])
        }
        "log" => {
            log::info("hello from misbehave");
            Ok(vec![])
        }
        "alias" => Ok(aliased_plan(25, 4 << 20)),
        "decide" => {
            let input = config::get(config, "ids") == Some("input") && !breaks.is_empty();
            let mut n = 0usize;
            loop {
                let b = match input {
                    true => breaks[n % breaks.len()].clone(),
                    false => AdBreak {
                        id: format!("made-up-{n}"),
                        start: 0.0,
                        duration: 3600.0,
                        first_segment: None,
                        scte35: None,
                    },
                };
                std::hint::black_box(host::decide_ads(&b));
                n += 1;
            }
        }
        other => Err(format!("unknown mode {other}")),
    }
}

impl Plugin for Misbehave {
    fn hls_master(m: HlsMaster, v: Viewer, config: String) -> Result<Vec<Edit>, String> {
        if config::get(&config, "mode") == Some("viewer") {
            return Ok(vec![]); // masters take no tags
        }
        act(&config, m.variants.len() as u32, &[], &v)
    }
    fn hls_media(m: HlsMedia, v: Viewer, config: String) -> Result<Vec<Edit>, String> {
        act(&config, m.segments.len() as u32, &m.breaks, &v)
    }
    fn dash_mpd(m: DashMpd, v: Viewer, config: String) -> Result<Vec<Edit>, String> {
        if config::get(&config, "mode") == Some("viewer") {
            return Ok(vec![]);
        }
        act(&config, 1, &m.breaks, &v)
    }
}

plugin!(Misbehave);
