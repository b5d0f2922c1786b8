//! The command line: `sonde serve | check | run | probe | rules | schema | completions | man`.
//!
//! Exit codes are part of the contract: 0 all passed / ok, 1 a check failed, 2 bad usage or
//! invalid configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, LoadOptions};

/// Exit code: invalid configuration or bad usage.
pub use crate::exit::EXIT_USAGE;

#[derive(Parser, Debug)]
#[command(
    name = "sonde",
    version,
    long_version = concat!(
        env!("CARGO_PKG_VERSION"),
        " (revision ",
        env!("SONDE_REVISION"),
        ", rustc ",
        env!("SONDE_RUSTC_VERSION"),
        ")"
    ),
    propagate_version = true,
    about = "Active synthetic probing: scenario files in, Prometheus metrics out",
    long_about = "sonde runs checks (HTTP, TCP, DNS, ICMP, TLS) on a schedule and exposes their \
success and latency as Prometheus metrics.\n\nStart with `sonde serve` (it probes itself until \
you give it scenario files with -c), then `sonde check FILES` to validate your own.",
    after_help = "Exit codes: 0 ok, 1 a check failed, 2 bad usage or invalid configuration.\n\
Documentation: README.md; the scenario file format: docs/scenario-format.md (`sonde schema` \
prints it as a JSON Schema)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub log: crate::logging::LogFlags,

    /// Kernel timestamps for the phases that have them (README, "Latency you can trust"): on,
    /// or off to time every phase in user space (a kernel whose timestamps misbehave; or to
    /// measure what they cost).
    #[arg(
        long = "probe.kernel-timestamps",
        global = true,
        env = "SONDE_KERNEL_TIMESTAMPS",
        default_value = "on",
        value_name = "on|off"
    )]
    pub kernel_timestamps: OnOff,
}

/// A switch on the command line.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run scenarios on their schedules and serve /metrics, /api/v1/scenarios and more.
    Serve(Box<crate::serve::ServeArgs>),
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
    /// Serve the demo targets the shipped scenarios/ probe (HTTP, HTTPS, DNS, chat) on loopback;
    /// `sonde serve` without configuration starts them too.
    Demo(crate::demo::DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(crate::cli_docs::CompletionsArgs),
    /// Print the man page sonde(1), or write every page with --dir.
    Man(crate::cli_docs::ManArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Scenario files or folders.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Region to render `{{ region }}` with.
    #[arg(long, value_name = "NAME")]
    pub region: Option<String>,

    #[command(flatten)]
    pub config_flags: crate::config_flags::ConfigFlags,

    /// Also check this exporter-toolkit web configuration (`serve --web.config.file`): its
    /// keys, bcrypt hashes, and the certificate, key and CA files it names.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
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

pub fn main() -> ExitCode {
    crate::closed_pipe::exit_quietly_on_closed_pipe();
    let cli = Cli::parse();
    cli.log.init();
    // Before any runtime or probe: sockets keep what they were opened with.
    sonde_probes::kts::set_enabled(cli.kernel_timestamps == OnOff::On);
    match cli.command {
        Command::Serve(args) => crate::serve::main(*args),
        Command::Check(args) => check(args),
        Command::Run(args) => crate::run::main(args),
        Command::Probe(args) => probe(args),
        Command::Rules(args) => rules(args),
        Command::Schema(args) => crate::schema::main(args),
        Command::Demo(args) => crate::demo::main(args),
        Command::Completions(args) => crate::cli_docs::completions(args),
        Command::Man(args) => crate::cli_docs::man(args),
    }
}

/// `sonde check`: every error of every file, then a one-line summary.
fn check(args: CheckArgs) -> ExitCode {
    let opts = args.config_flags.apply(LoadOptions {
        region: args.region,
        ..Default::default()
    });
    let web = args
        .web_config_file
        .as_deref()
        .map(crate::serve::exporter_flags::check_web_config)
        .and_then(Result::err)
        .unwrap_or_default();
    match config::load_all(&args.paths, &opts) {
        Ok(loaded) if web.is_empty() => {
            let cfg = &loaded.config;
            let modules = match &loaded.modules {
                Some(m) => format!(
                    ", {} blackbox module{}",
                    m.len(),
                    config::error::plural(m.len())
                ),
                None => String::new(),
            };
            println!(
                "ok: {} scenario{}{modules} in {} file{}{}",
                cfg.scenarios.len(),
                config::error::plural(cfg.scenarios.len()),
                cfg.sources.len(),
                config::error::plural(cfg.sources.len()),
                if args.web_config_file.is_some() {
                    ", and the web configuration"
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
            config::error::eprint_report(&errors);
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
                config::error::eprint_report(&errors);
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
    let runtime = match crate::exit::runtime(&mut tokio::runtime::Builder::new_current_thread()) {
        Ok(r) => r,
        Err(code) => return code,
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
