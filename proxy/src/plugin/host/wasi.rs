//! The WASI a plugin's language runtime asks for, and the little of it Manifold gives:
//! wall and monotonic clocks (with the `clock` capability: a timer is a capability like the
//! wall clock), random numbers and seeds (fresh per call, so `Math.random()` in a QuickJS
//! plugin does not repeat across instances), and an empty environment and argument list.
//! Everything else a component imports from WASI (files, sockets, stdio, exit...) stays a trap.
//! Defined per component, for the versions it imports (`wasi:clocks/wall-clock@0.2.x`).

use super::HostState;
use wasmtime::component::{Component, ComponentType, Linker, LinkerInstance, Lower};
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
