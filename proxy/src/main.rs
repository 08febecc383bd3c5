//! The `manifold` command.

use clap::{Parser, Subcommand};
use manifold::config::Config;
use manifold::{demo, server};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// glibc malloc's arena locks showed up contended under load; mimalloc's thread-local heaps don't
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Manifold: a caching edge proxy for HLS and DASH that personalizes manifests per viewer.
#[derive(Parser, Debug)]
#[command(name = "manifold", version)]
struct Cli {
    /// Log as JSON lines instead of text (log level from RUST_LOG, default info).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy with a TOML config (listeners, cache sizes, tenants and their origins).
    /// An invalid config exits with status 2 and names the file, the field and the problem.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        /// Take the listeners over from a running manifold (zero-downtime binary upgrade):
        /// start this, then send the old process SIGQUIT. See docs/operations.md.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file and exit: 0 when valid, 2 (with the reason) when not.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Work with manifest plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Certificates for the HTTPS listeners.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Run the demo on loopback: the live origin simulator (looped sample channel with SCTE-35
    /// ad breaks) and the proxy with the sample config; prints the URLs to play.
    Demo {
        /// Proxy config; its first tenant's origin address is where the simulator listens.
        #[arg(long, default_value_os_t = demo::default_samples().join("config/demo.toml"))]
        config: PathBuf,
        /// Sample media for the simulator.
        #[arg(long, default_value_os_t = demo::default_samples().join("media"))]
        media: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TlsCommand {
    /// Write a self-signed certificate and key (PEM) for these names, valid 30 days: for
    /// tests and trials, not for viewers.
    SelfSigned {
        /// DNS names or IP addresses (comma-separated); the first is the subject.
        #[arg(long, value_delimiter = ',', required = true)]
        names: Vec<String>,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Validate a component against the plugin world (manifold:plugin@0.2.0), run it on the
    /// sample manifests and print its edits and timings. Exit 0: all ran cleanly; 1: some
    /// sample failed (trap, deadline, invalid plan...); 2: not a plugin component.
    Check {
        /// The component (`cargo build --release --target wasm32-wasip2`).
        wasm: PathBuf,
        /// The plugin config string, as a tenant would set it.
        #[arg(long, default_value = "")]
        config: String,
        /// Capabilities to grant: log, kv, ads, clock (comma-separated).
        #[arg(long, value_delimiter = ',')]
        capabilities: Vec<String>,
        /// Deadline per call.
        #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
        deadline: std::time::Duration,
        /// Viewer device class: unknown, mobile, tablet, desktop, tv.
        #[arg(long, default_value = "unknown")]
        device: String,
        /// Player query parameters, `key=value` (repeatable).
        #[arg(long = "query")]
        query: Vec<String>,
        /// Manifests to run it on.
        #[arg(long, default_value_os_t = manifold::check::default_samples())]
        samples: PathBuf,
        /// Calls per sample (for the timing).
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Make a plugin project in ./NAME that builds and passes `plugin check` as it is, with the
    /// SDK and the contract (wit/) in it.
    New {
        name: String,
        /// ts or rust.
        #[arg(long, default_value = "rust")]
        lang: manifold::scaffold::Lang,
        /// Where to make it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        // span fields (the request id) on every line
        fmt.json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        fmt.init();
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    manifold::load::load(path).map_err(|e| {
        eprintln!("manifold: invalid config: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    match cli.command {
        Command::Check { config } => match load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve { config, upgrade } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            run(&cfg, &config, upgrade)
        }
        Command::Plugin(PluginCommand::Check {
            wasm,
            config,
            capabilities,
            deadline,
            device,
            query,
            samples,
            runs,
        }) => {
            use manifold::plugin::bindings::DeviceClass;
            let device = match device.as_str() {
                "mobile" => DeviceClass::Mobile,
                "tablet" => DeviceClass::Tablet,
                "desktop" => DeviceClass::Desktop,
                "tv" => DeviceClass::Tv,
                _ => DeviceClass::Unknown,
            };
            let query = query
                .iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.clone(), String::new()),
                })
                .collect();
            let opts = manifold::check::CheckOptions {
                wasm,
                samples,
                config,
                capabilities,
                deadline,
                device,
                query,
                runs,
            };
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("manifold: {e}");
                    return ExitCode::from(1);
                }
            };
            match rt.block_on(manifold::check::run(&opts)) {
                Ok((report, ok)) => {
                    print!("{report}");
                    if ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("manifold: plugin check: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Plugin(PluginCommand::New { name, lang, dir }) => {
            match manifold::scaffold::new_plugin(&dir, &name, lang) {
                Ok(root) => {
                    println!("made {} (see its README.md to build it)", root.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("manifold: plugin new: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Tls(TlsCommand::SelfSigned { names, cert, key }) => {
            match manifold::tls::write_self_signed(&names, &cert, &key) {
                Ok(()) => {
                    println!("wrote {} and {}", cert.display(), key.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("manifold: tls self-signed: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Demo { config, media } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let origin = match demo::start_origin(&cfg, media) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("manifold: cannot start the demo origin: {e:#}");
                    return ExitCode::from(1);
                }
            };
            println!("{}", demo::banner(&cfg, origin));
            run(&cfg, &config, false)
        }
    }
}

fn run(cfg: &Config, path: &Path, upgrade: bool) -> ExitCode {
    let server = match server::build(cfg, path, upgrade) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("manifold: invalid config: {e}");
            return ExitCode::from(2);
        }
    };
    let tls = cfg
        .tls
        .as_ref()
        .map(|t| t.listen.clone())
        .unwrap_or_default();
    tracing::info!(listen = ?cfg.server.listen, https = ?tls, tenants = cfg.tenants.len(), "manifold starting");
    server.run_forever()
}
