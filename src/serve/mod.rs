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
pub mod exporter_flags;
mod signals;
mod socket_activation;

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
    let source = config_source(args, args.primary_listen());
    let opts = args.config_flags.apply(LoadOptions {
        region: args.region.clone(),
        ..Default::default()
    });
    let web = args.exporter.web_security().err().unwrap_or_default();
    match source.load(&opts) {
        Ok(loaded) if web.is_empty() => {
            println!(
                "config ok: {} scenario(s), {} blackbox module(s){}",
                loaded.config.scenarios.len(),
                loaded.modules.as_ref().map(|m| m.len()).unwrap_or(0),
                if args.exporter.web_config_file.is_some() {
                    ", web configuration ok"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        loaded => {
            let mut errors = loaded.err().unwrap_or_default();
            errors.extend(web);
            config::error::eprint_report(&errors);
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// How long, once runs in flight have finished, requests still being served may take.
const WEB_DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

async fn serve_async(args: ServeArgs) -> ExitCode {
    // Before anything listens: endpoints must never be served unprotected by mistake.
    let security = match args.exporter.web_security() {
        Ok(s) => s,
        Err(errors) => {
            config::error::eprint_report(&errors);
            eprintln!("sonde: refusing to start with an invalid web configuration");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (listeners, bound) = match listen(&args).await {
        Ok(l) => l,
        Err(why) => {
            eprintln!("sonde: {why}");
            return ExitCode::FAILURE;
        }
    };
    let listen = bound.first().copied().unwrap_or(args.primary_listen());
    let public_security = match args
        .status
        .public_config_file
        .clone()
        .map(crate::web_server::secure::WebSecurity::load)
        .transpose()
    {
        Ok(s) => s,
        Err(errors) => {
            config::error::eprint_report(&errors);
            eprintln!("sonde: refusing to start with an invalid public web configuration");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let public_listener = match args.status.public_listen {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some((l, public_security)),
            Err(e) => {
                eprintln!("sonde: cannot listen on {addr} (--web.public-listen-address): {e}");
                return ExitCode::FAILURE;
            }
        },
    };
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
    let (region, shard) =
        crate::agent::effective(args.region.clone(), &args.agent, &initial.config);
    let shard = match crate::agent::start_shard(shard, &args.agent).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sonde: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _demo = crate::demo::beside_builtin(&source).await;
    let tls = security.as_ref().is_some_and(|s| s.current().tls.is_some());
    let front = crate::web_server::front::Front {
        external_url: args.exporter.external_url(listen, tls),
        prefix: args.exporter.route_prefix(),
        security,
    };
    let agent = AgentParts {
        region,
        shard: shard.shard,
    };
    let app = build_app(
        &args,
        agent,
        &bound,
        &front.external_url,
        source,
        opts,
        initial,
    );
    let also: Vec<String> = bound.iter().skip(1).map(|a| a.to_string()).collect();
    tracing::info!(
        listen = %listen,
        also_listen = %also.join(","),
        tls,
        route_prefix = %front.prefix,
        config = %app.source.describe(),
        scenarios = app.config().scenarios.len(),
        "sonde {} serving",
        env!("CARGO_PKG_VERSION")
    );
    let listeners = Listeners {
        admin: listeners,
        public: public_listener,
    };
    let web = WebParts {
        flags: args.web.clone(),
        front,
        status: args.status.clone(),
    };
    run_until_shutdown(app, listeners, web, shard.follow).await
}

/// The admin listeners and their addresses: every `--listen` bound, or with
/// `--web.systemd-socket` the sockets systemd passed.
async fn listen(
    args: &ServeArgs,
) -> Result<(Vec<tokio::net::TcpListener>, Vec<SocketAddr>), String> {
    let mut listeners = Vec::new();
    if args.exporter.systemd_socket {
        for l in socket_activation::listeners()? {
            listeners.push(tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?);
        }
    } else {
        for addr in &args.listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            listeners.push(l);
        }
    }
    let bound = listeners
        .iter()
        .map(|l| l.local_addr().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    Ok((listeners, bound))
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

/// This agent's place among many: region and its share of the region's scenarios.
struct AgentParts {
    region: Option<String>,
    shard: Option<crate::shard::Shard>,
}

/// The outputs, the scheduler that feeds them, and the state the endpoints share.
fn build_app(
    args: &ServeArgs,
    agent: AgentParts,
    listen: &[SocketAddr],
    external_url: &str,
    source: ConfigSource,
    mut opts: LoadOptions,
    initial: Loaded,
) -> Arc<App> {
    let AgentParts { region, shard } = agent;
    opts.region = region.clone();
    let replica = args
        .replica
        .clone()
        .or_else(|| initial.config.agent.replica.clone());
    let metrics = Metrics::new();
    let alerts = Alerts::start(
        metrics.alerts.clone(),
        initial.config.agent.alerting.clone(),
        region.clone(),
        external_url,
    );
    warn_on_unrouted_notifiers(&initial);
    let history = open_history(&args.storage, region.as_deref(), &metrics);
    let mut observers: Vec<Arc<dyn Observer>> = vec![
        RunMetrics::with_replica(metrics.clone(), region.clone(), replica.clone()) as _,
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
    let scheduler = Scheduler::new(observers, region, args.max_concurrent_runs)
        .with_shard(shard)
        .with_replica(replica);
    // sonde never probes itself, on any of its addresses.
    let safety = listen.iter().fold(
        crate::blackbox::safety::Safety::new(
            args.allow_target.clone(),
            args.probe_max_concurrent.map(|n| n as usize),
        ),
        |s, a| s.listening_on(*a),
    );
    let blackbox = crate::blackbox::Blackbox::new(args.timeout_offset, safety)
        .with_history_limit(args.exporter.history_limit)
        .with_prober_log_level(args.exporter.log_prober);
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
/// The listeners: every listen address (every endpoint, behind the web configuration) and the
/// public status page's, if any (read-only, its own listener).
struct Listeners {
    admin: Vec<tokio::net::TcpListener>,
    /// With its own web configuration (`--web.public-config.file`), if any.
    public: Option<(
        tokio::net::TcpListener,
        Option<Arc<crate::web_server::secure::WebSecurity>>,
    )>,
}

/// How the endpoints are served: limits, the front (TLS, users, prefix), the status pages.
struct WebParts {
    flags: crate::web_server::WebFlags,
    front: crate::web_server::front::Front,
    status: crate::status::StatusFlags,
}

async fn run_until_shutdown(
    app: Arc<App>,
    listeners: Listeners,
    web: WebParts,
    follow: Option<crate::agent::ShardFollow>,
) -> ExitCode {
    let WebParts {
        flags: web_flags,
        front,
        status,
    } = web;
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(signals::handle_signals(app.clone(), shutdown.clone()));
    let agent = crate::agent::start(app.clone(), shutdown.clone(), follow);
    if let Some((l, security)) = listeners.public {
        tracing::info!(listen = ?l.local_addr().ok(), tls = security.as_ref().is_some_and(|s| s.current().tls.is_some()), "public status page serving");
        // Same limits and counters as the admin listeners; it ends with the shutdown signal. It
        // faces the internet read-only, behind its own web configuration (if any), never the
        // admin listeners' users.
        let public_front = crate::web_server::front::Front {
            external_url: front.external_url.clone(),
            prefix: "/".into(),
            security,
        };
        tokio::spawn(crate::web_server::serve_behind(
            l,
            crate::status::public_router(app.clone(), &status),
            web_flags.clone(),
            app.metrics.web.clone(),
            shutdown.clone(),
            Arc::new(public_front),
        ));
    }
    let router = crate::web::router(app.clone()).merge(crate::status::router_under(
        app.clone(),
        &status,
        &front.prefix,
    ));
    let front = Arc::new(front);
    // One server per listen address, all behind the same front; each has its own connection cap.
    let servers: Vec<_> = listeners
        .admin
        .into_iter()
        .map(|l| {
            tokio::spawn(crate::web_server::serve_behind(
                l,
                router.clone(),
                web_flags.clone(),
                app.metrics.web.clone(),
                shutdown.clone(),
                front.clone(),
            ))
        })
        .collect();
    let mut web = tokio::spawn(async move {
        for s in servers {
            s.await.map_err(std::io::Error::other)??;
        }
        Ok::<(), std::io::Error>(())
    });
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
