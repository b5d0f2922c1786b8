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
use crate::scheduler::{Scheduler, DEFAULT_MAX_CONCURRENT_RUNS};
use crate::serve::{App, ConfigSource, Reload};

/// Exit code: invalid configuration or bad usage.
pub const EXIT_USAGE: u8 = 2;

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
    /// Run scenario files once as a CI smoke test (not available in this version yet).
    Run(NotYet),
    /// Run one blackbox_exporter-style probe from the shell (not available in this version yet).
    Probe(NotYet),
    /// Print a Prometheus rule file generated from the scenarios' `alert:` blocks.
    Rules(RulesArgs),
    /// Print the JSON Schema of the scenario format (not available in this version yet).
    Schema(NotYet),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Scenario file or folder (every *.yaml/*.yml below it); repeatable. Default: ./sonde.yaml
    /// if present, else a built-in configuration that probes sonde itself.
    #[arg(short = 'c', long = "config", value_name = "PATH")]
    pub config: Vec<PathBuf>,

    /// Address for the web endpoints (/metrics, /-/healthy, /api/v1/scenarios…).
    #[arg(long, default_value = "127.0.0.1:9115", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// This agent's region: the `region` label of every series, and the selector for scenarios'
    /// `regions:` lists.
    #[arg(long, value_name = "NAME", value_parser = crate::agent::parse_region)]
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

/// Arguments of a verb that is not available yet: accepted so `--help` lists the verb, refused
/// with a clear message.
#[derive(Args, Debug)]
pub struct NotYet {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check(args) => check(args),
        Command::Run(_) => not_yet("run"),
        Command::Probe(_) => not_yet("probe"),
        Command::Rules(args) => rules(args),
        Command::Schema(_) => not_yet("schema"),
    }
}

fn not_yet(verb: &str) -> ExitCode {
    eprintln!(
        "sonde {verb}: not available in this version yet. Available now: `sonde serve`, `sonde check` and `sonde rules`."
    );
    ExitCode::from(EXIT_USAGE)
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// `sonde check`: every error of every file, then a one-line summary.
fn check(args: CheckArgs) -> ExitCode {
    let opts = LoadOptions {
        region: args.region,
    };
    match config::load_paths(&args.paths, &opts) {
        Ok(cfg) => {
            println!(
                "ok: {} scenario{} in {} file{}",
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
    let (region, shard) = crate::agent::effective(args.region.clone(), &args.agent, &initial);
    opts.region = region.clone();
    let metrics = Metrics::new();
    let alerts = crate::alert::Alerts::start(
        metrics.alerts.clone(),
        initial.agent.alerting.clone(),
        region.clone(),
        &format!("http://{listen}"),
    );
    if initial.agent.alerting.is_none()
        && initial
            .scenarios
            .iter()
            .any(|s| s.alert.as_ref().is_some_and(|a| a.notify.is_some()))
    {
        tracing::warn!("scenarios name notifiers in alert.notify, but no agent settings document has `alerting:`; those notifications go nowhere");
    }
    let scheduler = Scheduler::new(metrics.clone(), region, args.max_concurrent_runs)
        .with_shard(shard)
        .with_alerts(alerts);
    let n = initial.scenarios.len();
    let app = App::new(metrics, scheduler, source, opts, initial);
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
