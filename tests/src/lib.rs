//! Harness for end-to-end tests: real `manifold` and `manifold-origin` processes on 127.0.0.1
//! with ephemeral ports, killed when dropped. Build the binaries first (`cargo build
//! --workspace`); the test command does.

pub mod browser;
pub mod dash_player;
mod recording_origin;

pub use recording_origin::{Recorded, RecordingOrigin};

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/<name>`, next to the running test binary (`target/<profile>/deps/..`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` before the end-to-end tests",
        path.display()
    );
    path
}

/// Where process logs go, so a failing test can be diagnosed.
fn log_file(name: &str) -> std::fs::File {
    let dir = bin("manifold").parent().unwrap().join("e2e-logs");
    std::fs::create_dir_all(&dir).expect("log dir");
    let path = dir.join(format!("{name}-{}.log", std::process::id()));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file")
}

/// A free loopback port (bound, read back, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_for_port(addr: SocketAddr, child: &mut Child, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited with {status} before listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on {addr} within 20 s")
}

/// The origin simulator.
pub struct Origin {
    child: Child,
    pub addr: SocketAddr,
}

impl Origin {
    /// A live channel `elapsed` s in with a `window`-segment window and a break of `len` s
    /// every `every` s from `first` s (2 s segments).
    pub fn live(elapsed: u64, window: u64, first: u64, every: u64, len: u64) -> Result<Origin> {
        let args = [
            ("--elapsed", elapsed),
            ("--window", window),
            ("--ad-first", first),
            ("--ad-every", every),
            ("--ad-duration", len),
        ]
        .map(|(k, v)| [k.to_string(), v.to_string()]);
        let args: Vec<&str> = args.iter().flatten().map(String::as_str).collect();
        Origin::start(&args)
    }

    /// Starts `manifold-origin` with extra arguments (e.g. `--elapsed 60`).
    pub fn start(args: &[&str]) -> Result<Origin> {
        let mut child = Command::new(bin("manifold-origin"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log_file("origin"))
            .spawn()
            .context("spawning manifold-origin")?;
        let stdout = child.stdout.take().context("origin stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .with_context(|| format!("unexpected origin banner {line:?}"))?
            .parse()?;
        Ok(Origin { child, addr })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Origin requests for exactly this path so far.
    pub async fn count(&self, path: &str) -> Result<u64> {
        let v = self.counters(path).await?;
        Ok(v["by_path"][path].as_u64().unwrap_or(0))
    }

    /// The counters JSON, per-path entries limited to `prefix`.
    pub async fn counters(&self, prefix: &str) -> Result<serde_json::Value> {
        let body = reqwest::get(self.url(&format!("/_origin/counters?prefix={prefix}")))
            .await?
            .bytes()
            .await?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// Beacon hits on the simulator, by path.
    pub async fn beacons(&self) -> std::collections::BTreeMap<String, u64> {
        let c = self.counters("/beacon/").await.unwrap();
        c["by_path"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets the fault knobs (JSON as in `manifold_origin::control::Faults`).
    pub async fn set_faults(&self, faults: serde_json::Value) -> Result<()> {
        let resp = reqwest::Client::new()
            .put(self.url("/_origin/faults"))
            .body(faults.to_string())
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("setting faults: {}", resp.text().await?);
        }
        Ok(())
    }

    pub async fn clear_faults(&self) -> Result<()> {
        reqwest::Client::new()
            .delete(self.url("/_origin/faults"))
            .send()
            .await?;
        Ok(())
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The proxy, started from a config whose `[server]` section the harness writes.
/// How the harness starts a proxy.
pub struct Options<'a> {
    /// `server.shutdown_grace`.
    pub grace: &'a str,
    /// `plugins.max_instances`.
    pub max_instances: u32,
    /// Extra environment for the process.
    pub env: &'a [(&'a str, &'a str)],
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            grace: "1s",
            max_instances: 64,
            env: &[],
        }
    }
}

pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    config: tempfile::NamedTempFile,
    /// The `[server]` and `[plugins]` sections the harness wrote.
    head: String,
    plugins: tempfile::TempDir,
}

impl Proxy {
    /// Starts `manifold serve` with `tenants_toml` (cache and tenant sections) on a free port.
    /// Other top-level tables (`[cache]`, `[sessions]`) go before its first `[[tenants]]`.
    pub fn start(tenants_toml: &str) -> Result<Proxy> {
        Proxy::start_with_grace(tenants_toml, "1s")
    }

    /// As [`start`](Self::start), with `server.shutdown_grace` (e.g. `"10s"`).
    pub fn start_with_grace(tenants_toml: &str, grace: &str) -> Result<Proxy> {
        Proxy::start_with(
            tenants_toml,
            &Options {
                grace,
                ..Options::default()
            },
        )
    }

    /// As [`start`](Self::start), with harness options.
    pub fn start_with(tenants_toml: &str, opts: &Options) -> Result<Proxy> {
        let mut last = None;
        // a freed port can be taken by someone else before the proxy binds it: retry
        for _ in 0..3 {
            match Proxy::try_start(tenants_toml, opts) {
                Ok(p) => return Ok(p),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap())
    }

    fn try_start(tenants_toml: &str, opts: &Options) -> Result<Proxy> {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let config = tempfile::Builder::new().suffix(".toml").tempfile()?;
        let plugins = tempfile::tempdir()?;
        let head = format!(
            "[server]\nlisten = [\"{addr}\"]\nthreads = 2\nshutdown_grace = \"{}\"\n\
             upgrade_sock = \"{}\"\n\n\
             [plugins]\ndir = \"{}\"\nmax_instances = {}\n\n",
            opts.grace,
            plugins.path().join("upgrade.sock").display(),
            plugins.path().display(),
            opts.max_instances
        );
        std::fs::write(config.path(), format!("{head}{tenants_toml}"))?;
        let mut child = Proxy::spawn_env(config.path(), false, opts.env)?;
        if let Err(e) = wait_for_port(addr, &mut child, "manifold") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(Proxy {
            child,
            addr,
            config,
            head,
            plugins,
        })
    }

    fn spawn(config: &std::path::Path, upgrade: bool) -> Result<Child> {
        Proxy::spawn_env(config, upgrade, &[])
    }

    fn spawn_env(config: &std::path::Path, upgrade: bool, env: &[(&str, &str)]) -> Result<Child> {
        let mut cmd = Command::new(bin("manifold"));
        cmd.arg("serve").arg("--config").arg(config);
        cmd.envs(env.iter().copied());
        if upgrade {
            cmd.arg("--upgrade");
        }
        cmd.env("RUST_LOG", "info")
            .stdout(log_file("proxy"))
            .stderr(log_file("proxy"))
            .spawn()
            .context("spawning manifold")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the proxy process.
    pub fn signal(&self, signal: i32) -> Result<()> {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped)
        if unsafe { libc::kill(self.child.id() as i32, signal) } != 0 {
            bail!("kill: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Rewrites the config file with new tenant sections (same `[server]`/`[plugins]`), or
    /// with `raw` text as it is when `raw` is true; the caller sends SIGHUP.
    pub fn write_config(&self, tenants_toml: &str, raw: bool) -> Result<()> {
        let text = if raw {
            tenants_toml.to_string()
        } else {
            format!("{}{tenants_toml}", self.head)
        };
        std::fs::write(self.config.path(), text)?;
        Ok(())
    }

    /// New tenant sections, taken in by SIGHUP (the caller waits for them to show).
    pub fn reload(&self, tenants_toml: &str) -> Result<()> {
        self.write_config(tenants_toml, false)?;
        self.signal(libc::SIGHUP)
    }

    /// The exit status, once the process ends within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("manifold still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Zero-downtime binary upgrade: starts a new `manifold serve --upgrade` on the same
    /// config, waits until it asks for the listeners, sends this one SIGQUIT. Returns the
    /// old process (it drains and exits); the proxy is the new one from then on.
    pub fn upgrade(&mut self) -> Result<Child> {
        let sock = self.plugins.path().join("upgrade.sock");
        let _ = std::fs::remove_file(&sock);
        let mut new = Proxy::spawn(self.config.path(), true)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sock.exists() {
            if let Some(status) = new.try_wait()? {
                bail!("the new manifold exited with {status} before taking the listeners");
            }
            if Instant::now() > deadline {
                let _ = new.kill();
                bail!("the new manifold did not open {}", sock.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal(libc::SIGQUIT)?;
        Ok(std::mem::replace(&mut self.child, new))
    }

    /// A proxy with one tenant `t` in front of `origin`.
    pub fn for_origin(origin: &Origin) -> Result<Proxy> {
        Proxy::start(&format!(
            "[[tenants]]\nid = \"t\"\nhosts = [\"t.example\"]\norigin = \"http://{}\"\n",
            origin.addr
        ))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server` on a loopback port, without persistence, killed when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// On a free port.
    pub fn start() -> Result<Redis> {
        let mut last = None;
        // a freed port can be taken by someone else before redis binds it: retry
        for _ in 0..3 {
            match Redis::start_on(free_port()) {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap())
    }

    /// On this port (e.g. one a proxy was configured with while nothing listened there).
    pub fn start_on(port: u16) -> Result<Redis> {
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(tool("redis-server", "redis-server"))
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .arg("--dir")
            .arg(dir.path())
            .stdout(log_file("redis"))
            .stderr(log_file("redis"))
            .spawn()
            .context("spawning redis-server")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if let Err(e) = wait_for_port(addr, &mut child, "redis-server") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(Redis {
            child,
            port,
            _dir: dir,
        })
    }

    /// The URL for `[sessions] store`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sample plugin built by `scripts/build-plugins.sh`.
pub fn plugin(name: &str) -> PathBuf {
    let path = bin("manifold")
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins.sh first",
        path.display()
    );
    path
}

/// A `[[tenants]]` section for `origin` running the sample plugin `plugin_name`, with more
/// `[tenants.plugin]` lines.
pub fn plugin_tenant(id: &str, origin: &Origin, plugin_name: &str, plugin_toml: &str) -> String {
    format!(
        "[[tenants]]\nid = \"{id}\"\norigin = \"http://{}\"\n[tenants.plugin]\nfile = \"{}\"\n{plugin_toml}\n",
        origin.addr,
        plugin(plugin_name).display()
    )
}

/// Runs `manifold` with arguments to completion: (exit code, stdout, stderr).
pub fn run_manifold(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(bin("manifold")).args(args).output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A tenant's `[[tenants.creatives]]` for the simulator's creatives `names` (`adN` lasts N s,
/// `slate` 10 s and pads breaks): HLS (TS), and fMP4 HLS and DASH if asked.
pub fn creatives(names: &[&str], hls_fmp4: bool, dash: bool) -> String {
    let mut t = String::new();
    for name in names {
        let secs: u32 = name.trim_start_matches("ad").parse().unwrap_or(10);
        t += &format!(
            "[[tenants.creatives]]\nname = \"{name}\"\nduration = {secs}.0\n\
             hls = \"/ads/{name}/hls/master.m3u8\"\n"
        );
        if hls_fmp4 {
            t += &format!("hls_fmp4 = \"/ads/{name}/cmaf/master.m3u8\"\n");
        }
        if dash {
            t += &format!("dash = \"/ads/{name}/dash/manifest.mpd\"\n");
        }
        if *name == "slate" {
            t += "slate = true\n";
        }
    }
    t
}

/// Path of a Debian tool the tests need; a missing one fails with how to install it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: `apt-get install -y {package}` (scripts/test.sh does this)");
}

/// The demo's tenants (`samples/config/demo.toml` without its `[server]`, `[admin]` and
/// `[tls]` sections, which name fixed ports) in front of `origin`, with absolute plugin paths and each plugin's deadline set
/// to `deadline` (a debug build on a busy 2-core machine needs more than the default 10 ms).
pub fn demo_tenants(origin: &Origin, deadline: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/config/demo.toml");
    let text = std::fs::read_to_string(path).expect("samples/config/demo.toml");
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let table = line.trim_start().starts_with('[');
        if table {
            skipping = matches!(
                line.trim(),
                "[server]" | "[admin]" | "[tls]" | "[[tls.certificates]]"
            );
        }
        if skipping {
            continue;
        }
        let line = line.replace("http://127.0.0.1:9000", &format!("http://{}", origin.addr));
        let line = match line.split_once("../../target/wasm32-wasip2/release/") {
            Some((head, file)) => {
                let name = file.trim_end_matches('"').trim_end_matches(".wasm");
                format!("{head}{}\"", plugin(name).display())
            }
            None => line,
        };
        out.push_str(&line);
        out.push('\n');
        if line.trim() == "[tenants.plugin]" {
            out.push_str(&format!("deadline = \"{deadline}\"\n"));
        }
    }
    out
}
