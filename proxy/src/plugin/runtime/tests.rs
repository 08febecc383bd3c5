use super::*;
use std::path::Path;

/// A sample plugin built by `scripts/build-plugins.sh` (the test command runs it first).
pub fn plugin_wasm(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../target/wasm32-wasip2/release/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{path}: {e}: build the plugins first (scripts/build-plugins.sh)")
    })
}

pub fn engine(dir: &Path) -> PluginEngine {
    PluginEngine::new(&EngineOptions {
        artifacts_dir: dir.to_path_buf(),
        max_instances: 8,
        max_memory: 64 << 20,
        loaded_capacity: 16,
    })
    .unwrap()
}

pub fn viewer() -> Viewer {
    Viewer::anonymous("t")
}

pub fn media() -> HlsMedia {
    HlsMedia {
        target_duration: 2,
        media_sequence: 0,
        discontinuity_sequence: 0,
        live: true,
        segments: vec![],
        breaks: vec![],
    }
}

pub(super) fn env(deadline_ms: u64) -> CallEnv {
    CallEnv {
        tenant: "t".into(),
        caps: Capabilities::default(),
        kv: None,
        ads: None,
        deadline: Duration::from_millis(deadline_ms),
        memory: 16 << 20,
        share: Arc::new(Semaphore::new(8)),
        cpu: Arc::new(Semaphore::new(8)),
        demoted: Arc::default(),
    }
}

async fn run(
    e: &PluginEngine,
    p: &LoadedPlugin,
    mode: &str,
    env: &CallEnv,
) -> Result<Vec<crate::types::Edit>, PluginFailure> {
    e.call(
        p,
        Input::HlsMedia(&media(), None, None),
        &viewer(),
        &format!("mode={mode}"),
        env,
        None,
    )
    .await
}

#[tokio::test]
async fn misbehaving_plugins_fail_with_the_right_kind() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = e.load(&plugin_wasm("misbehave")).unwrap();
    assert!(run(&e, &p, "noop", &env(100)).await.unwrap().is_empty());
    let kind = |r: Result<Vec<crate::types::Edit>, PluginFailure>| r.unwrap_err().kind;
    let started = Instant::now();
    assert_eq!(
        kind(run(&e, &p, "loop", &env(20)).await),
        FailureKind::Deadline
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "deadline enforced"
    );
    assert_eq!(
        kind(run(&e, &p, "memory", &env(1000)).await),
        FailureKind::Memory
    );
    assert_eq!(
        kind(run(&e, &p, "trap", &env(100)).await),
        FailureKind::Trap
    );
    assert_eq!(
        kind(run(&e, &p, "stack", &env(1000)).await),
        FailureKind::Trap
    );
    let huge = run(&e, &p, "huge", &env(2000)).await.unwrap_err();
    assert!(
        matches!(huge.kind, FailureKind::Memory | FailureKind::InvalidPlan),
        "{huge}"
    );
    assert_eq!(
        kind(run(&e, &p, "nonsense", &env(100)).await),
        FailureKind::PluginError
    );
    // a denied capability traps
    assert_eq!(kind(run(&e, &p, "log", &env(100)).await), FailureKind::Trap);
    // and the engine still serves normal calls afterwards
    assert!(run(&e, &p, "noop", &env(100)).await.is_ok());
}

#[tokio::test]
async fn an_aliased_plan_is_refused_before_the_host_lifts_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = e.load(&plugin_wasm("misbehave")).unwrap();
    // 25 tags aliasing one 4 MiB buffer: 100 MB if lifted whole, 4 MiB of guest memory
    let f = run(&e, &p, "alias", &env(2000)).await.unwrap_err();
    assert_eq!(f.kind, FailureKind::InvalidPlan, "{f}");
    assert!(f.message.contains("bytes at once"), "{f}");
    // a plan at its limits still fits the lift budget
    assert!(lift_budget() < 8 << 20, "{}", lift_budget());
    assert!(run(&e, &p, "noop", &env(100)).await.is_ok());
}

/// Counts decisions; `hang` never answers.
struct Decider {
    calls: std::sync::atomic::AtomicUsize,
    hang: bool,
}

#[async_trait::async_trait]
impl AdDecider for Decider {
    async fn decide(
        &self,
        _t: &str,
        _s: Option<&str>,
        brk: &crate::types::AdBreak,
        _v: &Viewer,
    ) -> Vec<crate::session::DecidedAd> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.hang {
            std::future::pending::<()>().await;
        }
        vec![crate::session::DecidedAd {
            id: format!("{}-0", brk.id),
            creative: "ad10".into(),
            duration: brk.duration.min(10.0),
            tracking: Default::default(),
        }]
    }
}

/// Decides after a round trip on a socket, as the VAST decider does.
struct NetDecider(std::net::SocketAddr);

#[async_trait::async_trait]
impl AdDecider for NetDecider {
    async fn decide(
        &self,
        _t: &str,
        _s: Option<&str>,
        brk: &crate::types::AdBreak,
        _v: &Viewer,
    ) -> Vec<crate::session::DecidedAd> {
        let connected = tokio::net::TcpStream::connect(self.0).await;
        assert!(connected.is_ok(), "{connected:?}");
        vec![crate::session::DecidedAd {
            id: format!("{}-0", brk.id),
            creative: "ad10".into(),
            duration: brk.duration.min(10.0),
            tracking: Default::default(),
        }]
    }
}

#[tokio::test(flavor = "current_thread")]
async fn host_calls_on_the_plugin_runtime_can_use_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(dir.path()));
    let p = e.load(&plugin_wasm("misbehave")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut env = env(2000);
    env.caps.ads = true;
    env.ads = Some(Arc::new(NetDecider(listener.local_addr().unwrap())));
    let f = e
        .call_isolated(
            &p,
            Arc::new(Held(media_with_break())),
            Arc::new(viewer()),
            "mode=decide;ids=input".into(),
            env,
            None,
        )
        .await
        .unwrap_err();
    // every decision made it (the cap ended the call), none failed in the host
    assert!(f.message.contains("new decisions"), "{f}");
}

pub(super) fn media_with_break() -> HlsMedia {
    let mut m = media();
    m.breaks = vec![super::super::bindings::AdBreak {
        id: "b1".into(),
        start: 0.0,
        duration: 30.0,
        first_segment: None,
        scte35: None,
    }];
    m
}

#[tokio::test]
async fn decide_ads_decides_only_the_inputs_breaks_a_few_times_within_a_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = e.load(&plugin_wasm("misbehave")).unwrap();
    let decider = Arc::new(Decider {
        calls: Default::default(),
        hang: false,
    });
    let mut env = env(2000);
    env.caps.ads = true;
    env.ads = Some(decider.clone());
    let call = |config: &'static str, env: CallEnv| {
        let (e, p) = (&e, &p);
        async move {
            let m = media_with_break();
            e.call(
                p,
                Input::HlsMedia(&m, None, None),
                &viewer(),
                config,
                &env,
                None,
            )
            .await
        }
    };
    // made-up break ids: the first one traps, nothing is decided
    let f = call("mode=decide", env.clone()).await.unwrap_err();
    assert_eq!(f.kind, FailureKind::Trap, "{f}");
    assert!(f.message.contains("not in the input"), "{f}");
    assert_eq!(decider.calls.load(Ordering::Relaxed), 0);
    // the input's own break, over and over: capped
    let f = call("mode=decide;ids=input", env.clone())
        .await
        .unwrap_err();
    assert!(f.message.contains("new decisions"), "{f}");
    assert_eq!(
        decider.calls.load(Ordering::Relaxed),
        super::super::capabilities::MAX_DECISIONS
    );
    // a decision that never answers: the call ends at its ceiling, host wait included
    let hang = Arc::new(Decider {
        calls: Default::default(),
        hang: true,
    });
    let mut env = env.clone();
    env.deadline = Duration::from_millis(50);
    env.ads = Some(hang);
    // (epochs cannot interrupt a host call: only the ceiling ends this one)
    let f = call("mode=decide;ids=input", env).await.unwrap_err();
    assert_eq!(f.kind, FailureKind::Deadline, "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_saturates_its_share_is_busy_and_no_other_tenant_is() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(dir.path())); // 8 instances
    let p = e.load(&plugin_wasm("misbehave")).unwrap();
    let mut attacker = env(400);
    attacker.tenant = "attacker".into();
    attacker.share = Arc::new(Semaphore::new(2));
    let mut victim = env(400);
    victim.tenant = "victim".into();
    victim.share = Arc::new(Semaphore::new(6));
    let spinners: Vec<_> = (0..12)
        .map(|_| {
            let (e, p, env) = (e.clone(), p.clone(), attacker.clone());
            tokio::spawn(async move { run(&e, &p, "loop", &env).await.unwrap_err().kind })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..6 {
        assert!(run(&e, &p, "noop", &victim).await.is_ok());
    }
    let mut kinds = Vec::new();
    for s in spinners {
        kinds.push(s.await.unwrap());
    }
    assert!(kinds.contains(&FailureKind::Busy), "{kinds:?}");
    assert!(kinds.contains(&FailureKind::Deadline), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_calls_execute_within_its_share_of_the_cores() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(dir.path()));
    let p = e.load(&plugin_wasm("misbehave")).unwrap();
    let mut spinner = env(600);
    spinner.cpu = Arc::new(Semaphore::new(1));
    let calls: Vec<_> = [600, 200]
        .into_iter()
        .map(|ms| {
            let (e, p) = (e.clone(), p.clone());
            let mut env = spinner.clone();
            env.deadline = Duration::from_millis(ms);
            tokio::spawn(async move {
                if ms == 200 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                run(&e, &p, "loop", &env).await.unwrap_err().kind
            })
        })
        .collect();
    let mut kinds = Vec::new();
    for c in calls {
        kinds.push(c.await.unwrap());
    }
    kinds.sort_by_key(|k| k.as_str());
    // one spun to its deadline on the tenant's one core; the other never got to run
    assert_eq!(kinds, [FailureKind::Busy, FailureKind::Deadline]);
    assert_eq!(spinner.cpu.available_permits(), 1, "the slot is given back");
}

struct Held(HlsMedia);
impl Subject for Held {
    fn input(&self) -> Option<Input<'_>> {
        Some(Input::HlsMedia(&self.0, None, None))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_long_call_demotes_its_tenant_and_quick_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(dir.path()));
    let p = e.load(&plugin_wasm("misbehave")).unwrap();
    let isolated = |mode: &str, env: &CallEnv| {
        e.call_isolated(
            &p,
            Arc::new(Held(media())),
            Arc::new(viewer()),
            format!("mode={mode}").into(),
            env.clone(),
            None,
        )
    };
    let (quick, spinner) = (env(100), env(100));
    for _ in 0..20 {
        assert!(isolated("noop", &quick).await.unwrap().is_empty());
    }
    assert!(!quick.demoted.active());
    let f = isolated("loop", &spinner).await.unwrap_err();
    assert_eq!(f.kind, FailureKind::Deadline);
    assert!(spinner.demoted.active());
    assert!(!quick.demoted.active());
    // a demoted tenant's calls still run, on the low-priority threads, and are counted
    let demoted = || {
        crate::metrics::METRICS
            .plugin_demoted_calls
            .with_label_values(&["t"])
            .get()
    };
    let before = demoted();
    assert!(isolated("noop", &spinner).await.unwrap().is_empty());
    assert_eq!(demoted(), before + 1);
}

#[test]
fn the_memory_cap_is_on_all_of_an_instances_memories() {
    use wasmtime::ResourceLimiter;
    let mut l = Limiter::new(10 << 20);
    assert!(l.memory_growing(0, 6 << 20, None).unwrap());
    // a second memory: together past the cap
    assert!(l.memory_growing(0, 6 << 20, None).is_err());
    assert!(l.memory_exceeded);
    let mut l = Limiter::new(10 << 20);
    assert!(l.memory_growing(0, 4 << 20, None).unwrap());
    assert!(l.memory_growing(0, 4 << 20, None).unwrap());
    // growing one of them counts the growth only
    assert!(l.memory_growing(4 << 20, 6 << 20, None).unwrap());
    assert!(l.memory_growing(6 << 20, 7 << 20, None).is_err());
}

/// A plugin of the WIT world with two memories of `pages` 64 KiB pages each (its
/// functions trap; only instantiation matters): the main module's, and a second core
/// module's (`split`) or the same module's (not `split`). No Rust toolchain emits one, an
/// attacker's hand-made binary would.
fn two_memories(pages: u32, split: bool) -> Vec<u8> {
    let wit = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit");
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_dir(wit).unwrap();
    let world = resolve.select_world(&[pkg], Some("plugin")).unwrap();
    let dummy =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    let text = wasmprinter::print_bytes(&dummy).unwrap();
    let one = "(memory (;0;) 0)";
    assert!(text.contains(one), "no memory where expected:\n{text}");
    let memories = match split {
        true => format!("(memory {pages})"),
        false => format!("(memory {pages}) (memory {pages})"),
    };
    let mut module = wat::parse_str(text.replacen(one, &memories, 1)).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .encode()
        .unwrap();
    if !split {
        return component;
    }
    // appended last, so no index the component already uses moves
    let text = wasmprinter::print_bytes(&component).unwrap();
    let body = text.trim_end().strip_suffix(')').unwrap();
    let extra =
        format!("(core module $extra (memory {pages})) (core instance (instantiate $extra)))");
    wat::parse_str(format!("{body}{extra}")).unwrap()
}

#[test]
fn two_memories_share_one_cap() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let env = env(100); // 16 MiB
                        // in two core modules, 2 x 5 MiB: within the cap
    let small = e.load(&two_memories(80, true)).unwrap();
    assert!(e.trial(&small, &env).is_ok());
    // 2 x 10 MiB: each within the cap, together past it
    let big = e.load(&two_memories(160, true)).unwrap();
    let err = e.trial(&big, &env).unwrap_err();
    assert!(
        matches!(err, LoadError::Trial(ref m) if m.contains("memory")),
        "{err}"
    );
    // two memories in one module are refused as they are loaded
    let err = e.load(&two_memories(1, false)).err().unwrap();
    assert!(
        matches!(err, LoadError::Invalid(ref m) if m.contains("memories count")),
        "{err}"
    );
}

#[test]
fn a_plugin_that_cannot_start_under_the_tenants_limits_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = e.load(&plugin_wasm("misbehave")).unwrap();
    let mut env = env(100);
    assert!(e.trial(&p, &env).is_ok());
    // its initial memory alone is past this cap
    env.memory = 64 << 10;
    let err = e.trial(&p, &env).unwrap_err();
    assert!(
        matches!(err, LoadError::Trial(ref m) if m.contains("memory")),
        "{err}"
    );
}

#[tokio::test]
async fn granted_kv_persists_between_fresh_instances() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = e.load(&plugin_wasm("misbehave")).unwrap();
    let mut env = env(200);
    env.caps.kv = true;
    env.kv = Some(Arc::new(KvStore::new(1024)));
    for n in 1..=3 {
        let edits = run(&e, &p, "kv", &env).await.unwrap();
        assert!(
            matches!(&edits[0], crate::types::Edit::AddTag(t) if t.line == format!("#EXT-X-CALLS:{n}"))
        );
    }
}

#[test]
fn artifacts_make_a_second_engine_skip_compilation() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = plugin_wasm("variant_filter");
    let first = engine(dir.path()).load(&wasm).unwrap();
    assert!(!first.from_artifact);
    let second = engine(dir.path()).load(&wasm).unwrap();
    assert!(second.from_artifact);
    assert_eq!(first.digest, second.digest);
}

#[test]
fn refuses_what_is_not_a_plugin_component() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    assert!(matches!(e.load(b"not wasm"), Err(LoadError::Invalid(_))));
    // a core module
    assert!(matches!(
        e.load(b"\0asm\x01\0\0\0"),
        Err(LoadError::Invalid(_))
    ));
    // an empty component exports nothing of the world
    assert!(matches!(
        e.load(b"\0asm\x0d\0\x01\0"),
        Err(LoadError::World(_))
    ));
}

#[test]
fn a_scoped_plugin_imports_only_what_it_uses_and_needs_it_granted() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = e.load(&plugin_wasm("scoped_kv")).unwrap();
    assert_eq!(
        p.imports,
        Capabilities {
            kv: true,
            log: true,
            ..Capabilities::default()
        }
    );
    // a `plugin`-world component asks for nothing up front: its calls are checked instead
    let old = e.load(&plugin_wasm("misbehave")).unwrap();
    assert_eq!(old.imports, Capabilities::default());
    assert!(e.trial(&old, &env(200)).is_ok());

    let mut env = env(200);
    env.caps.log = true;
    let err = e.trial(&p, &env).unwrap_err();
    assert!(
        matches!(err, LoadError::Ungranted(ref m) if m == "kv"),
        "{err}"
    );
    assert!(err.to_string().contains("does not grant"), "{err}");
    env.caps.kv = true;
    env.kv = Some(Arc::new(KvStore::new(1024)));
    assert!(e.trial(&p, &env).is_ok());

    // granted, it runs through its own interfaces: every other request drops the top variant
    let variant = |index: u32, bandwidth: u64| crate::plugin::bindings::Variant {
        index,
        uri: format!("v{index}.m3u8"),
        bandwidth,
        average_bandwidth: None,
        resolution: None,
        codecs: None,
        frame_rate: None,
        audio_group: None,
    };
    let master = HlsMaster {
        variants: vec![variant(0, 100), variant(1, 300), variant(2, 200)],
        renditions: vec![],
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (viewer, mut dropped) = (viewer(), Vec::new());
    for _ in 0..4 {
        let call = e.call(&p, Input::HlsMaster(&master), &viewer, "", &env, None);
        dropped.push(rt.block_on(call).unwrap());
    }
    let top = vec![crate::types::Edit::DropVariant(1)];
    assert_eq!(dropped, [vec![], top.clone(), vec![], top]);
}

/// The tags of a `probe_ts` call (plugins/ts-tests/probe.ts).
async fn probe(e: &PluginEngine, p: &LoadedPlugin, config: &str, env: &CallEnv) -> Vec<String> {
    let edits = e
        .call(
            p,
            Input::HlsMedia(&media(), None, None),
            &viewer(),
            config,
            env,
            None,
        )
        .await
        .unwrap_or_else(|f| panic!("{config}: {f:?}"));
    edits
        .into_iter()
        .map(|e| match e {
            crate::types::Edit::AddTag(t) => t.line,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_typescript_plugin_reads_the_segments_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let (ts, rust) = (
        e.load(&plugin_wasm("probe_ts")).unwrap(),
        e.load(&plugin_wasm("scte35_breaks")).unwrap(),
    );
    // the TypeScript SDK's world imports `segments`; a Rust plugin of session-plugin does not
    assert!(ts.segments_on_demand && !rust.segments_on_demand);
    assert_eq!(ts.world(), "lean-session-plugin");
    let mut m = media();
    m.segments = (0..5)
        .map(|i| crate::plugin::bindings::Segment {
            index: i,
            sequence: 100 + i as u64,
            uri: format!("s{i}.ts"),
            duration: 2.0,
            discontinuity: false,
            program_date_time: None,
        })
        .collect();
    let edits = e
        .call(
            &ts,
            Input::HlsMedia(&m, None, None),
            &viewer(),
            "segments=1",
            &env(2000),
            None,
        )
        .await
        .unwrap();
    // the record it got had none: every one of these came through `segments`
    let want = "#EXT-X-PROBE-SEGMENTS:5;s0.ts,s1.ts,s2.ts,s3.ts,s4.ts;103=s3.ts,104=s4.ts";
    let lines: Vec<_> = edits
        .into_iter()
        .map(|e| match e {
            crate::types::Edit::AddTag(t) => t.line,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(lines, [want]);
    // from a cached manifest, its on-demand form is built on the first call and kept
    let kept = std::sync::OnceLock::new();
    for _ in 0..2 {
        let input = Input::HlsMedia(&m, None, Some(&kept));
        let edits = e
            .call(&ts, input, &viewer(), "segments=1", &env(2000), None)
            .await
            .unwrap();
        assert!(matches!(&edits[..], [crate::types::Edit::AddTag(t)] if t.line == want));
    }
    let on_demand = kept.get().expect("kept for the next calls");
    assert_eq!(
        (on_demand.segments.len(), on_demand.lean.segments.len()),
        (5, 0)
    );
    // a master playlist has no segments to read
    let master = HlsMaster {
        variants: vec![],
        renditions: vec![],
    };
    let none = e
        .call(
            &ts,
            Input::HlsMaster(&master),
            &viewer(),
            "",
            &env(2000),
            None,
        )
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_typescript_plugin_gets_random_seeds_the_clock_when_granted_and_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = e.load(&plugin_wasm("probe_ts")).unwrap();
    let env = env(2000);
    // Math.random() is seeded per instance by the host, not frozen in the pre-initialized heap
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5 {
        let tags = probe(&e, &p, "", &env).await;
        assert_eq!(tags.len(), 1, "{tags:?}");
        assert!(seen.insert(tags[0].clone()), "a repeated random: {tags:?}");
    }
    // the clock is a capability: WASI's wall clock (Date.now) as much as the host's now-ms
    let denied = e
        .call(
            &p,
            Input::HlsMedia(&media(), None, None),
            &viewer(),
            "now=1",
            &env,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(denied.kind, FailureKind::Trap, "{denied:?}");
    assert!(denied.message.contains("clock"), "{denied:?}");
    let mut granted = env.clone();
    granted.caps.clock = true;
    let host_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let tags = probe(&e, &p, "now=1", &granted).await;
    let now = tags[1].strip_prefix("#EXT-X-PROBE-NOW:").unwrap();
    let (date, now_ms) = now.split_once(',').unwrap();
    for t in [date, now_ms] {
        let t: i64 = t.parse().unwrap();
        assert!((t - host_ms).abs() < 60_000, "{t} vs {host_ms}");
    }
    // console.log is the tenant's log: the `log` capability, like the SDK's log.info
    let quiet = e
        .call(
            &p,
            Input::HlsMedia(&media(), None, None),
            &viewer(),
            "console=1",
            &env,
            None,
        )
        .await
        .unwrap_err();
    assert!(quiet.message.contains("log"), "{quiet:?}");
    let mut logs = env.clone();
    logs.caps.log = true;
    assert_eq!(probe(&e, &p, "console=1", &logs).await.len(), 1);
    // thrown errors are the plugin's own error, never a trap
    for (how, msg) in [
        ("throw=error", "an Error from TypeScript"),
        ("throw=string", "a string from TypeScript"),
    ] {
        let f = e
            .call(
                &p,
                Input::HlsMedia(&media(), None, None),
                &viewer(),
                how,
                &env,
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(f.kind, FailureKind::PluginError, "{how}: {f:?}");
        assert!(f.message.contains(msg), "{how}: {f:?}");
    }
}

/// The TypeScript SDK reads numbers and config the way the Rust SDK does (`str::parse` of f64
/// and u32, `trim_start_matches` of non-digits, `config::get`), so a plugin ported between the
/// languages reads its config the same.
#[tokio::test]
async fn the_typescript_sdk_reads_numbers_and_config_as_rust_does() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = e.load(&plugin_wasm("probe_ts")).unwrap();
    let inputs = [
        "1",
        "+1.5",
        "-.5",
        "1.",
        ".",
        "",
        "e5",
        "1e5",
        "1E+5",
        "2e-1",
        "1e",
        "1e+",
        "inf",
        "-Infinity",
        "INF",
        "NaN",
        "+nan",
        "-nan",
        "nanx",
        "0x10",
        "1_0",
        "12abc",
        "+",
        "-",
        "4294967295",
        "4294967296",
        "-1",
        "+7",
        "007",
        "ad10",
        "ad-2.5",
        "x",
    ];
    let tags = probe(&e, &p, &format!("numbers={}", inputs.join("|")), &env(2000)).await;
    // JavaScript's way of printing a number, for the values above
    let js = |n: Option<f64>| match n {
        None => "null".to_string(),
        Some(f) if f.is_nan() => "NaN".to_string(),
        Some(f) if f.is_infinite() => if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string(),
        Some(f) => f.to_string(),
    };
    let want: Vec<String> = inputs
        .iter()
        .map(|n| {
            format!(
                "#EXT-X-PROBE-NUMBER:{n}={}/{}/{}",
                js(n.parse::<f64>().ok()),
                js(n.parse::<u32>().ok().map(f64::from)),
                n.trim_start_matches(|c: char| !c.is_ascii_digit())
            )
        })
        .collect();
    assert_eq!(tags, want);
    // `key=value` pairs split on `;` and newlines, keys and values trimmed, the first `=` splits
    let config = "keys=a,b, c ,d,e,f,gone; a = 1 ;b=x=y\n c=\n;d;e=last;;e=again\nf";
    let tags = probe(&e, &p, config, &env(2000)).await;
    let want = [
        "a=1",
        "b=x=y",
        "c=",
        "d=null",
        "e=last",
        "f=null",
        "gone=null",
    ];
    let want: Vec<String> = want
        .iter()
        .map(|w| format!("#EXT-X-PROBE-GET:{w}"))
        .collect();
    assert_eq!(tags, want);
}

/// A Rust plugin's panic message reaches its failure (it writes it to WASI stderr, which the
/// host keeps, and then traps), with or without the `log` capability.
#[tokio::test]
async fn a_panicking_plugin_fails_with_its_panic_message() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = e.load(&plugin_wasm("misbehave")).unwrap();
    let mut logs = env(1000);
    logs.caps.log = true;
    for env in [env(1000), logs] {
        let f = run(&e, &p, "trap", &env).await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Trap, "{f:?}");
        assert!(f.message.contains("misbehave: trap on purpose"), "{f:?}");
        assert!(f.message.contains("panicked at"), "{f:?}");
    }
    // a trap that writes nothing has no stderr part
    let f = run(&e, &p, "stack", &env(1000)).await.unwrap_err();
    assert!(!f.message.contains("stderr:"), "{f:?}");
}
