//! `sonde serve`: load the configuration, schedule it, serve the web endpoints, reload on SIGHUP
//! or `POST /-/reload`, and shut down in order on SIGTERM/SIGINT:
//!
//! 1. bind the listener first (the built-in configuration probes the address actually bound);
//! 2. load the configuration (refuse to start on an invalid one);
//! 3. build the outputs — metrics, alerts, the log — and hand them to the scheduler as its
//!    observers ([`crate::runtime::observer`]);
//! 4. serve until a signal; then stop scheduling, wait for runs in flight, flush alerts and
//!    remote_write, and give the web server a short grace to drain.

mod app;
mod args;
mod signals;

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

pub use app::{App, AppParts, ConfigSource, Reload};
pub use args::ServeArgs;

use crate::alert::Alerts;
use crate::config::{self, LoadOptions, Loaded};
use crate::default_config;
use crate::exit::EXIT_USAGE;
use crate::metrics::{Metrics, RunMetrics};
use crate::runtime::log::RunLog;
use crate::runtime::observer::{Observer, Observers};
use crate::runtime::scheduler::Scheduler;

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

/// `sonde serve`: until SIGTERM/SIGINT (exit 0), or a failure to start (exit 1, or 2 for an
/// invalid configuration).
pub fn main(args: ServeArgs) -> ExitCode {
    if args.config_check {
        return config_check(&args);
    }
    signals::raise_fd_limit();
    let runtime = match crate::exit::runtime(&mut tokio::runtime::Builder::new_multi_thread()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(serve_async(args))
}

/// `serve --config.check`: load the configuration as serve would, report, exit 0 or 2.
fn config_check(args: &ServeArgs) -> ExitCode {
    let source = config_source(args, args.listen);
    let opts = args.config_flags.apply(LoadOptions {
        region: args.region.clone(),
        ..Default::default()
    });
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
            config::error::eprint_report(&errors);
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// How long, once runs in flight have finished, requests still being served may take.
const WEB_DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

async fn serve_async(args: ServeArgs) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sonde: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let public_listener = match args.status.public_listen {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("sonde: cannot listen on {addr} (--web.public-listen-address): {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let listen = listener.local_addr().unwrap_or(args.listen);
    let source = match crate::agent::url_source(
        &args.config,
        &args.agent,
        args.config_flags.max_file_bytes(),
    ) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            eprintln!("sonde: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        None => config_source(&args, listen),
    };
    let opts = args.config_flags.apply(LoadOptions {
        region: args.region.clone(),
        ..Default::default()
    });
    let initial = match initial_load(&source, &opts).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let _demo = crate::demo::beside_builtin(&source).await;
    let app = build_app(&args, listen, source, opts, initial);
    tracing::info!(
        listen = %listen,
        config = %app.source.describe(),
        scenarios = app.config().scenarios.len(),
        "sonde {} serving",
        env!("CARGO_PKG_VERSION")
    );
    let listeners = Listeners {
        admin: listener,
        public: public_listener,
    };
    run_until_shutdown(app, listeners, args.web.clone(), args.status.clone()).await
}

/// The first load, off the async workers. An invalid configuration is reported and refused.
async fn initial_load(source: &ConfigSource, opts: &LoadOptions) -> Result<Loaded, ExitCode> {
    let (source, opts) = (source.clone(), opts.clone());
    match tokio::task::spawn_blocking(move || source.load(&opts)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(errors)) => {
            config::error::eprint_report(&errors);
            eprintln!("sonde: refusing to start with an invalid configuration");
            Err(ExitCode::from(EXIT_USAGE))
        }
        Err(e) => {
            eprintln!("sonde: the configuration loader crashed: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// The outputs, the scheduler that feeds them, and the state the endpoints share.
fn build_app(
    args: &ServeArgs,
    listen: SocketAddr,
    source: ConfigSource,
    mut opts: LoadOptions,
    initial: Loaded,
) -> Arc<App> {
    let (region, shard) =
        crate::agent::effective(args.region.clone(), &args.agent, &initial.config);
    opts.region = region.clone();
    let metrics = Metrics::new();
    let alerts = Alerts::start(
        metrics.alerts.clone(),
        initial.config.agent.alerting.clone(),
        region.clone(),
        &format!("http://{listen}"),
    );
    warn_on_unrouted_notifiers(&initial);
    let history = open_history(&args.storage, region.as_deref(), &metrics);
    let mut observers: Vec<Arc<dyn Observer>> = vec![
        RunMetrics::new(metrics.clone(), region.clone()) as _,
        Arc::new(alerts.clone()) as _,
        Arc::new(RunLog) as _,
    ];
    observers.extend(history.as_ref().map(|h| h.observer.clone() as _));
    // Without the store, the status page reads the last runs kept in memory.
    let recent = (history.is_none() && args.status.recent_runs > 0)
        .then(|| crate::history::recent::Recent::new(args.status.recent_runs, region.clone()));
    if let Some(r) = &recent {
        observers.push(Arc::new(crate::history::recent::RecentObserver(r.clone())));
    }
    let observers: Observers = observers.into();
    let scheduler = Scheduler::new(observers, region, args.max_concurrent_runs).with_shard(shard);
    let blackbox = crate::blackbox::Blackbox::new(
        args.timeout_offset,
        crate::blackbox::safety::Safety::new(
            args.allow_target.clone(),
            args.probe_max_concurrent.map(|n| n as usize),
        )
        .listening_on(listen),
    );
    let parts = AppParts {
        metrics,
        scheduler,
        alerts,
        source,
        load_options: opts,
        blackbox,
        history: history.as_ref().map(|h| h.reader.clone() as _),
        history_writer: history.map(|h| h.observer),
    };
    let app = App::new(parts, initial);
    if let Some(r) = recent {
        app.set_recent(r);
    }
    app
}

/// The history store, or `None` (history off: turned off, or it cannot open — said once).
fn open_history(
    flags: &crate::history::flags::StorageFlags,
    region: Option<&str>,
    metrics: &Metrics,
) -> Option<crate::history::History> {
    let folder = flags.folder()?;
    match crate::history::open(
        &folder,
        flags.options(),
        region.unwrap_or(""),
        metrics.history.clone(),
        crate::history::system_clock(),
    ) {
        Ok(h) => {
            tracing::debug!(folder = %folder.display(), "history store open");
            Some(h)
        }
        Err(e) => {
            tracing::warn!("history off: {e}; probing goes on without it (sonde_history_up 0)");
            None
        }
    }
}

fn warn_on_unrouted_notifiers(initial: &Loaded) {
    let names_notifiers = initial
        .config
        .scenarios
        .iter()
        .any(|s| s.alert.as_ref().is_some_and(|a| a.notify.is_some()));
    if initial.config.agent.alerting.is_none() && names_notifiers {
        tracing::warn!("scenarios name notifiers in alert.notify, but no agent settings document has `alerting:`; those notifications go nowhere");
    }
}

/// Serve until a signal, then shut down in order. Scheduling stops at the signal, not once the
/// web server has drained: a client holding a connection open must neither keep probes running
/// nor keep sonde from exiting.
/// The admin listener (every endpoint) and the public status page's, if any.
struct Listeners {
    admin: tokio::net::TcpListener,
    public: Option<tokio::net::TcpListener>,
}

async fn run_until_shutdown(
    app: Arc<App>,
    listeners: Listeners,
    web_flags: crate::web_server::WebFlags,
    status: crate::status::StatusFlags,
) -> ExitCode {
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(signals::handle_signals(app.clone(), shutdown.clone()));
    let agent = crate::agent::start(app.clone(), shutdown.clone());
    if let Some(l) = listeners.public {
        tracing::info!(listen = ?l.local_addr().ok(), "public status page serving");
        // Same limits and counters as the admin listener; it ends with the shutdown signal.
        tokio::spawn(crate::web_server::serve(
            l,
            crate::status::public_router(app.clone(), &status),
            web_flags.clone(),
            app.metrics.web.clone(),
            shutdown.clone(),
        ));
    }
    let server = crate::web_server::serve(
        listeners.admin,
        crate::web::router(app.clone()).merge(crate::status::router(app.clone(), &status)),
        web_flags,
        app.metrics.web.clone(),
        shutdown.clone(),
    );
    let mut web = tokio::spawn(server);
    // Biased: the web server also ends at the signal, which is then no failure.
    let failed = tokio::select! {
        biased;
        _ = shutdown.cancelled() => None,
        r = &mut web => Some(r),
    };
    app.set_not_ready();
    tracing::info!("stopped scheduling; waiting for runs in flight to finish");
    app.scheduler.shutdown().await;
    app.alerts.finish(WEB_DRAIN_GRACE).await;
    if let Some(h) = app.history_writer.clone() {
        let _ = tokio::task::spawn_blocking(move || h.close(WEB_DRAIN_GRACE)).await;
    }
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
