//! The WASI a plugin's language runtime asks for, and the little of it Manifold gives:
//! wall and monotonic clocks (with the `clock` capability: a timer is a capability like the
//! wall clock), random numbers and seeds (fresh per call, so `Math.random()` in a QuickJS
//! plugin does not repeat across instances), an empty environment and argument list, and
//! stderr, whose lines go to the tenant's log (with `log`; discarded without it) and whose
//! last lines join a failed call's message (a Rust plugin's panic message is written there).
//! Everything else a component imports from WASI (files, sockets, stdout, exit...) stays a trap.
//! Defined per component, for the versions it imports (`wasi:clocks/wall-clock@0.2.x`).

use super::HostState;
use wasmtime::component::{
    Component, ComponentType, Linker, LinkerInstance, Lower, Resource, ResourceType,
};
use wasmtime::Engine;

/// Most random bytes one call of `get-random-bytes` returns (a runtime asks for a seed's worth).
const MAX_RANDOM_BYTES: u64 = 4096;

#[derive(ComponentType, Lower, Clone, Copy)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

/// Defines, in `linker`, the WASI functions Manifold gives for each WASI interface the
/// component imports; the rest are left to trap (`loading::trap_unknown_imports`).
pub fn link_subset(
    linker: &mut Linker<HostState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    let names: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    for name in names {
        let Some((iface, version)) = name.split_once('@') else {
            continue;
        };
        if !version.starts_with("0.2.") {
            continue;
        }
        type Define = fn(&mut LinkerInstance<'_, HostState>) -> wasmtime::Result<()>;
        let define: Define = match iface {
            "wasi:clocks/wall-clock" => wall_clock,
            "wasi:clocks/monotonic-clock" => monotonic_clock,
            "wasi:random/random" => |i| random(i, "get-random-bytes", "get-random-u64"),
            "wasi:random/insecure" => {
                |i| random(i, "get-insecure-random-bytes", "get-insecure-random-u64")
            }
            "wasi:random/insecure-seed" => {
                |i| i.func_wrap("insecure-seed", |_, (): ()| Ok(((u64s()?, u64s()?),)))
            }
            "wasi:cli/environment" => environment,
            "wasi:cli/stderr" => |i| {
                i.func_wrap("get-stderr", |_, (): ()| {
                    Ok((Resource::<Stderr>::new_own(0),))
                })
            },
            "wasi:io/streams" => stderr_stream,
            "wasi:io/poll" => ready_pollables,
            // left to trap (`loading::trap_unknown_imports`)
            _ => continue,
        };
        define(&mut linker.instance(&name)?)?;
    }
    Ok(())
}

fn clock_granted(s: &HostState) -> wasmtime::Result<()> {
    match s.clock.granted() {
        true => Ok(()),
        false => Err(super::denied("clock")),
    }
}

fn wall_clock(inst: &mut LinkerInstance<'_, HostState>) -> wasmtime::Result<()> {
    inst.func_wrap("now", |s, (): ()| {
        clock_granted(s.data())?;
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok((Datetime {
            seconds: d.as_secs(),
            nanoseconds: d.subsec_nanos(),
        },))
    })?;
    inst.func_wrap("resolution", |s, (): ()| {
        clock_granted(s.data())?;
        Ok((Datetime {
            seconds: 0,
            nanoseconds: 1_000,
        },))
    })
}

fn monotonic_clock(inst: &mut LinkerInstance<'_, HostState>) -> wasmtime::Result<()> {
    inst.func_wrap("now", |s, (): ()| {
        clock_granted(s.data())?;
        Ok((monotonic_ns(),))
    })?;
    inst.func_wrap("resolution", |s, (): ()| {
        clock_granted(s.data())?;
        Ok((1_000u64,))
    })
}

/// Nanoseconds since this process first asked.
fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

fn random(
    inst: &mut LinkerInstance<'_, HostState>,
    bytes: &str,
    u64_name: &str,
) -> wasmtime::Result<()> {
    inst.func_wrap(bytes, |_, (len,): (u64,)| {
        if len > MAX_RANDOM_BYTES {
            wasmtime::bail!("{len} random bytes asked for, at most {MAX_RANDOM_BYTES} per call");
        }
        let mut buf = vec![0u8; len as usize];
        getrandom::fill(&mut buf).map_err(|e| wasmtime::format_err!("random: {e}"))?;
        Ok((buf,))
    })?;
    inst.func_wrap(u64_name, |_, (): ()| Ok((u64s()?,)))
}

fn u64s() -> wasmtime::Result<u64> {
    getrandom::u64().map_err(|e| wasmtime::format_err!("random: {e}"))
}

fn environment(inst: &mut LinkerInstance<'_, HostState>) -> wasmtime::Result<()> {
    inst.func_wrap("get-environment", |_, (): ()| {
        Ok((Vec::<(String, String)>::new(),))
    })?;
    inst.func_wrap("get-arguments", |_, (): ()| Ok((Vec::<String>::new(),)))?;
    inst.func_wrap("initial-cwd", |_, (): ()| Ok((None::<String>,)))
}

/// The one output stream a plugin can get: its stderr (`get-stderr`; `get-stdout` traps).
/// Every WASI resource is the host type `()`, as `loading::trap_unknown_imports` defines
/// the ones not given here: each instance that names one (stdout, the terminals) must agree.
type Stderr = ();
/// `wasi:io/error`'s error, named by `stream-error` (never made: stderr writes do not fail).
type IoError = ();

#[derive(ComponentType, Lower)]
#[component(variant)]
#[allow(dead_code)] // the type the WIT names: stderr writes never fail
enum StreamError {
    #[component(name = "last-operation-failed")]
    LastOperationFailed(Resource<IoError>),
    #[component(name = "closed")]
    Closed,
}

/// `output-stream` as stderr: writes go to the call's [`super::stderr::Stderr`] (the other
/// streams' functions, such as splice and write-zeroes, stay traps; stdout is not given).
fn stderr_stream(inst: &mut LinkerInstance<'_, HostState>) -> wasmtime::Result<()> {
    type Done = Result<(), StreamError>;
    inst.resource("output-stream", ResourceType::host::<Stderr>(), |_, _| {
        Ok(())
    })?;
    inst.func_wrap(
        "[method]output-stream.check-write",
        |_, (_,): (Resource<Stderr>,)| Ok((Ok::<u64, StreamError>(4096),)),
    )?;
    for name in [
        "[method]output-stream.write",
        "[method]output-stream.blocking-write-and-flush",
    ] {
        inst.func_wrap(name, |mut s, (_, bytes): (Resource<Stderr>, Vec<u8>)| {
            s.data_mut().stderr.write(&bytes);
            Ok((Done::Ok(()),))
        })?;
    }
    // writes never wait, so stderr is always ready for more
    inst.func_wrap(
        "[method]output-stream.subscribe",
        |_, (_,): (Resource<Stderr>,)| Ok((Resource::<Pollable>::new_own(0),)),
    )?;
    for name in [
        "[method]output-stream.flush",
        "[method]output-stream.blocking-flush",
    ] {
        inst.func_wrap(name, |_, (_,): (Resource<Stderr>,)| Ok((Done::Ok(()),)))?;
    }
    Ok(())
}

/// `wasi:io/poll`'s pollable: the only ones a plugin can get are stderr's, always ready.
type Pollable = ();

fn ready_pollables(inst: &mut LinkerInstance<'_, HostState>) -> wasmtime::Result<()> {
    inst.resource("pollable", ResourceType::host::<Pollable>(), |_, _| Ok(()))?;
    inst.func_wrap(
        "[method]pollable.ready",
        |_, (_,): (Resource<Pollable>,)| Ok((true,)),
    )?;
    inst.func_wrap(
        "[method]pollable.block",
        |_, (_,): (Resource<Pollable>,)| Ok(()),
    )?;
    inst.func_wrap("poll", |_, (all,): (Vec<Resource<Pollable>>,)| {
        Ok(((0..all.len() as u32).collect::<Vec<u32>>(),))
    })
}
