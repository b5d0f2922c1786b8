//! The command line: `sonde serve | check | run | probe | rules | schema`.
//!
//! Exit codes are part of the contract: 0 all passed / ok, 1 a check failed, 2 bad usage or
//! invalid configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, LoadOptions};
use crate::default_config;
use crate::metrics::Metrics;
use crate::runtime::scheduler::{Scheduler, DEFAULT_MAX_CONCURRENT_RUNS};
use crate::serve::{App, ConfigSource, Reload};

/// Exit code: invalid configuration or bad usage.
pub use crate::exit::EXIT_USAGE;

#[derive(Parser, Debug)]
#[command(
    name = "sonde",
    version,
    about = "Active synthetic probing: scenario files in, Prometheus metrics out",
    long_about = "sonde runs checks (HTTP, TCP, DNS, ICMP, TLS) on a schedule and exposes their \
success and latency as Prometheus metrics.\n\nStart with `sonde serve` (it probes itself until \
you give it scenario files with -c), then `sonde check FILES` to validate your own.",
    after_help = "Exit codes: 0 ok, 1 a check failed, 2 bad usage or invalid configuration.\n\
Documentation: README.md; the file format is shown by `sonde serve` at GET /config."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log level: error, warn, info, debug, trace (RUST_LOG overrides).
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run scenarios on their schedules and serve /metrics, /api/v1/scenarios and more.
    Serve(ServeArgs),
    /// Validate scenario files and folders: report every error in every file (exit 0 or 2).
    Check(CheckArgs),
    /// Run scenario files once as a CI smoke test: exit 0 when all passed, 1 when any failed,
    /// 2 on bad usage or invalid configuration (nothing runs).
    Run(crate::run::RunArgs),
    /// Run one blackbox_exporter-style probe from the shell and print its metrics (or, with
    /// --debug, the whole trace). Exit 0 when the probe succeeded, 1 when it failed.
    Probe(ProbeArgs),
    /// Print a Prometheus rule file generated from the scenarios' `alert:` blocks.
    Rules(RulesArgs),
    /// Print the JSON Schema of scenario files, for editors (YAML language server, IntelliJ).
    Schema(crate::schema::SchemaArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Scenario file or folder (every *.yaml/*.yml below it), or a blackbox_exporter
    /// configuration (`modules:`) for /probe; repeatable. Default: ./sonde.yaml if present, else
    /// a built-in configuration that probes sonde itself.
    #[arg(
        short = 'c',
        long = "config",
        visible_alias = "config.file",
        value_name = "PATH"
    )]
    pub config: Vec<PathBuf>,

    /// Address for the web endpoints (/metrics, /probe, /-/healthy, /api/v1/scenarios…).
    /// blackbox_exporter's `:9115` (every interface) is accepted too.
    #[arg(
        long,
        visible_alias = "web.listen-address",
        default_value = "127.0.0.1:9115",
        value_name = "ADDR",
        value_parser = parse_listen
    )]
    pub listen: SocketAddr,

    /// Seconds subtracted from Prometheus' scrape timeout (X-Prometheus-Scrape-Timeout-Seconds)
    /// to give a /probe its deadline, as blackbox_exporter's flag.
    #[arg(long = "timeout-offset", default_value_t = 0.5, value_name = "SECONDS")]
    pub timeout_offset: f64,

    /// Validate the configuration and exit: 0 when valid, 2 otherwise (blackbox_exporter's
    /// --config.check).
    #[arg(long = "config.check")]
    pub config_check: bool,

    /// Only probe targets whose host matches: a CIDR (10.0.0.0/8, ::1/128) or a host glob
    /// (*.example.com); repeatable. Others get 403. Default: any target (as blackbox_exporter).
    #[arg(long = "probe.allow-target", value_name = "CIDR|GLOB", value_parser = parse_allow)]
    pub allow_target: Vec<crate::blackbox::safety::Allow>,

    /// At most this many /probe requests at once; beyond, 503. Default: no limit (as
    /// blackbox_exporter).
    #[arg(long = "probe.max-concurrent", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub probe_max_concurrent: Option<u32>,

    /// This agent's region: the `region` label of every series, and the selector for scenarios'
    /// `regions:` lists.
    #[arg(long, value_name = "NAME", value_parser = crate::names::parse_region)]
    pub region: Option<String>,

    /// At most this many scenario runs at once; further due runs wait (and show as scheduler
    /// lag).
    #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT_RUNS, value_name = "N")]
    pub max_concurrent_runs: usize,

    #[command(flatten)]
    pub agent: crate::agent::AgentFlags,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Scenario files or folders.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Region to render `{{ region }}` with.
    #[arg(long, value_name = "NAME")]
    pub region: Option<String>,
}

#[derive(Args, Debug)]
pub struct RulesArgs {
    /// Scenario files or folders (an agent settings document among them supplies alert defaults).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The module to run (default http_2xx, as /probe).
    #[arg(long, short = 'm', default_value = "http_2xx", value_name = "MODULE")]
    pub module: String,

    /// What to probe, as /probe's `target` (a URL, host:port, host…).
    #[arg(value_name = "TARGET")]
    pub target: String,

    /// A blackbox_exporter configuration file with the module. Default: blackbox_exporter's
    /// example modules (http_2xx, http_post_2xx, tcp_connect, icmp, …).
    #[arg(long, short = 'c', visible_alias = "config.file", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the trace (log, metrics, module) instead of the metrics, as /probe?debug=true.
    #[arg(long)]
    pub debug: bool,

    /// /probe's `hostname` parameter: the Host header (http) or TLS server name (tcp).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Deadline of the probe. Default: the module's timeout, else 10s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    // Go's ":9115" means every interface.
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse().map_err(|_| {
        format!("{s:?} is not an address — expected host:port like 127.0.0.1:9115 or :9115")
    })
}

fn parse_allow(s: &str) -> Result<crate::blackbox::safety::Allow, String> {
    s.parse()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check(args) => check(args),
        Command::Run(args) => crate::run::main(args),
        Command::Probe(args) => probe(args),
        Command::Rules(args) => rules(args),
        Command::Schema(args) => crate::schema::main(args),
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::redact::Redacting(std::io::stderr))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// `sonde check`: every error of every file, then a one-line summary.
fn check(args: CheckArgs) -> ExitCode {
    let opts = LoadOptions {
        region: args.region,
        ..Default::default()
    };
    match config::load_all(&args.paths, &opts) {
        Ok(loaded) => {
            let cfg = &loaded.config;
            let modules = match &loaded.modules {
                Some(m) => format!(", {} blackbox module{}", m.len(), plural(m.len())),
                None => String::new(),
            };
            println!(
                "ok: {} scenario{}{modules} in {} file{}",
                cfg.scenarios.len(),
                plural(cfg.scenarios.len()),
                cfg.sources.len(),
                plural(cfg.sources.len())
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            report_errors(&errors);
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `sonde rules`: the rule file on stdout (exit 0), or the configuration's errors (exit 2).
fn rules(args: RulesArgs) -> ExitCode {
    match config::load_paths(&args.paths, &LoadOptions::default()) {
        Ok(cfg) => match crate::alert::rules::generate(&cfg) {
            Some(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("sonde rules: no scenario has an `alert:` block — expected at least one, e.g. `alert: {{after: 3, severity: page}}`");
                ExitCode::from(EXIT_USAGE)
            }
        },
        Err(errors) => {
            report_errors(&errors);
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn report_errors(errors: &[config::ConfigError]) {
    for e in errors {
        eprintln!("{e}");
    }
    let files: std::collections::BTreeSet<&str> = errors.iter().map(|e| e.file.as_str()).collect();
    eprintln!(
        "{} error{} in {} file{}",
        errors.len(),
        plural(errors.len()),
        files.len(),
        plural(files.len())
    );
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Which configuration `serve` runs; `listen` is the address actually bound.
fn config_source(args: &ServeArgs, listen: SocketAddr) -> ConfigSource {
    if !args.config.is_empty() {
        return ConfigSource::Paths(args.config.clone());
    }
    let local = Path::new("sonde.yaml");
    if local.is_file() {
        return ConfigSource::Paths(vec![local.to_path_buf()]);
    }
    let icmp = match sonde_probes::icmp::permission_check() {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!("the built-in configuration leaves out its ICMP check: {why}");
            false
        }
    };
    ConfigSource::BuiltIn(default_config::builtin(listen, icmp))
}

fn serve(args: ServeArgs) -> ExitCode {
    if args.config_check {
        return config_check(&args);
    }
    raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sonde: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve_async(args))
}

/// `serve --config.check`: load the configuration as serve would, report, exit 0 or 2.
fn config_check(args: &ServeArgs) -> ExitCode {
    let source = config_source(args, args.listen);
    let opts = LoadOptions {
        region: args.region.clone(),
        ..Default::default()
    };
    match source.load(&opts) {
        Ok(loaded) => {
            println!(
                "config ok: {} scenario(s), {} blackbox module(s)",
                loaded.config.scenarios.len(),
                loaded.modules.as_ref().map(|m| m.len()).unwrap_or(0)
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            report_errors(&errors);
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `sonde probe`: one probe, as `/probe` would run it.
fn probe(args: ProbeArgs) -> ExitCode {
    let modules = match &args.config {
        None => crate::config::blackbox::builtin_modules(),
        Some(path) => match config::load_all(std::slice::from_ref(path), &LoadOptions::default()) {
            Ok(l) => match l.modules {
                Some(m) => m,
                None => {
                    eprintln!(
                        "sonde probe: {} has no `modules:` — expected a blackbox_exporter configuration file",
                        path.display()
                    );
                    return ExitCode::from(EXIT_USAGE);
                }
            },
            Err(errors) => {
                report_errors(&errors);
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    let Some(module) = modules.get(&args.module).cloned() else {
        let known: Vec<&str> = modules.keys().map(String::as_str).collect();
        eprintln!(
            "sonde probe: unknown module {:?} — expected one of: {}",
            args.module,
            known.join(", ")
        );
        return ExitCode::from(EXIT_USAGE);
    };
    let timeout = args
        .timeout
        .or(module.timeout)
        .unwrap_or(std::time::Duration::from_secs(10));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sonde: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = runtime.block_on(crate::blackbox::handler::run(
        &module,
        &args.target,
        args.hostname.as_deref(),
        timeout,
        args.debug,
    ));
    let report = match res {
        Ok(r) => r,
        Err(crate::blackbox::handler::BadRequest(msg)) => {
            eprintln!("sonde probe: {msg}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let metrics = report.registry.render();
    if args.debug {
        print!(
            "{}",
            crate::blackbox::debug::render(&report.log, &metrics, &module.shown)
        );
    } else {
        print!("{metrics}");
    }
    if report.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn serve_async(args: ServeArgs) -> ExitCode {
    // Bind first: the built-in configuration probes the address actually bound (`--listen
    // 127.0.0.1:0` picks a port).
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sonde: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let listen = listener.local_addr().unwrap_or(args.listen);
    let source = match crate::agent::url_source(&args.config, &args.agent) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            eprintln!("sonde: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        None => config_source(&args, listen),
    };
    let mut opts = LoadOptions {
        region: args.region.clone(),
        ..Default::default()
    };
    let initial = {
        let (source, opts) = (source.clone(), opts.clone());
        match tokio::task::spawn_blocking(move || source.load(&opts)).await {
            Ok(Ok(c)) => c,
            Ok(Err(errors)) => {
                report_errors(&errors);
                eprintln!("sonde: refusing to start with an invalid configuration");
                return ExitCode::from(EXIT_USAGE);
            }
            Err(e) => {
                eprintln!("sonde: the configuration loader crashed: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let (region, shard) =
        crate::agent::effective(args.region.clone(), &args.agent, &initial.config);
    opts.region = region.clone();
    let metrics = Metrics::new();
    let alerts = crate::alert::Alerts::start(
        metrics.alerts.clone(),
        initial.config.agent.alerting.clone(),
        region.clone(),
        &format!("http://{listen}"),
    );
    if initial.config.agent.alerting.is_none()
        && initial
            .config
            .scenarios
            .iter()
            .any(|s| s.alert.as_ref().is_some_and(|a| a.notify.is_some()))
    {
        tracing::warn!("scenarios name notifiers in alert.notify, but no agent settings document has `alerting:`; those notifications go nowhere");
    }
    let scheduler = Scheduler::new(metrics.clone(), region, args.max_concurrent_runs)
        .with_shard(shard)
        .with_alerts(alerts);
    let n = initial.config.scenarios.len();
    let blackbox = crate::blackbox::Blackbox::new(
        args.timeout_offset,
        crate::blackbox::safety::Safety::new(
            args.allow_target.clone(),
            args.probe_max_concurrent.map(|n| n as usize),
        ),
    );
    let app = App::new(metrics, scheduler, source, opts, initial, blackbox);
    tracing::info!(
        listen = %listen,
        config = %app.source.describe(),
        scenarios = n,
        "sonde {} serving",
        env!("CARGO_PKG_VERSION")
    );

    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(handle_signals(app.clone(), shutdown.clone()));
    let agent = crate::agent::start(app.clone(), shutdown.clone());
    let server = axum::serve(listener, crate::web::router(app.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let mut web = tokio::spawn(std::future::IntoFuture::into_future(server));
    // Scheduling stops at the signal, not once the web server has drained: a client holding a
    // connection open must neither keep probes running nor keep sonde from exiting.
    // (Biased: the web server also ends at the signal, which is then no failure.)
    let failed = tokio::select! {
        biased;
        _ = shutdown.cancelled() => None,
        r = &mut web => Some(r),
    };
    app.set_not_ready();
    tracing::info!("stopped scheduling; waiting for runs in flight to finish");
    app.scheduler.shutdown().await;
    app.scheduler.alerts().finish(WEB_DRAIN_GRACE).await;
    agent.finish().await;
    if let Some(r) = failed {
        let why = match r {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(())) => "stopped unexpectedly".into(),
            Err(e) => e.to_string(),
        };
        eprintln!("sonde: web server failed: {why}");
        return ExitCode::FAILURE;
    }
    if tokio::time::timeout(WEB_DRAIN_GRACE, web).await.is_err() {
        tracing::warn!(
            "a client still holds a connection to the web endpoints; exiting without it"
        );
    }
    tracing::info!("bye");
    ExitCode::SUCCESS
}

/// How long, once runs in flight have finished, requests still being served may take.
const WEB_DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// SIGHUP reloads; SIGTERM and SIGINT shut down.
async fn handle_signals(app: Arc<App>, shutdown: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; use POST /-/reload to reload");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                if let Reload::Rejected(_) = app.reload().await {
                    // Already logged by reload().
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down (a second SIGTERM or SIGINT exits at once)");
    shutdown.cancel();
    // Runs in flight may take up to their timeout; an impatient operator can cut that short.
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("sonde: second signal: exiting without waiting for runs in flight");
    std::process::exit(1);
}

/// Raise the soft file-descriptor limit to the hard one: every in-flight probe holds a socket,
/// and the common default soft limit of 1024 is far below what thousands of scenarios need. (Go
/// programs such as blackbox_exporter get the same from the Go runtime.)
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::debug!("could not raise the file descriptor limit");
            }
        }
    }
}
