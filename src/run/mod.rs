//! `sonde run`: the scenario files the monitor uses, run once each as a CI smoke test.
//!
//! Teams deploy, then want the checks they already wrote for monitoring to gate the pipeline,
//! without writing them twice. So `run` loads files exactly as `serve` does (same loader, same
//! errors, exit 2 before anything runs when one is invalid), selects scenarios by tag and name,
//! runs each once — a persistent session runs setup, one round of steps, then teardown;
//! `interval` is ignored, `timeout` holds — and reports: human lines (live progress and colours
//! on a terminal), JUnit XML, a JSON trace, TAP 13. Exit 0 when every selected scenario passed
//! (flaky ones included), 1 when any failed, 2 on bad usage or invalid configuration.
//!
//! - [`select`]: `--tag`, `--name` and `--region` choose what runs;
//! - [`execute`]: parallelism, `--retries`, `--fail-fast`;
//! - [`vars`]: `--var` and `--env-file`;
//! - [`human`], [`junit`], [`json`], [`tap`]: the outputs.

pub mod execute;
pub mod human;
pub mod json;
pub mod junit;
pub mod select;
pub mod tap;
pub mod vars;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::config::{self, LoadOptions};

pub use execute::{Outcome, Verdict};

use crate::exit::{EXIT_FAILED, EXIT_USAGE};

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Scenario files or folders (every *.yaml/*.yml below a folder).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Run only scenarios with this tag; repeatable (any of them).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,

    /// Run only scenarios whose name matches this glob (`checkout-*`); repeatable (any of them).
    #[arg(long = "name", value_name = "GLOB")]
    pub names: Vec<String>,

    /// Set a scenario var, replacing the file's value (or defining it); repeatable.
    #[arg(long = "var", value_name = "K=V", value_parser = vars::parse_var)]
    pub vars: Vec<(String, String)>,

    /// Read environment variables (for `env.NAME`) from a dotenv file; repeatable, later files
    /// do not override earlier ones nor the real environment.
    #[arg(long = "env-file", value_name = "F")]
    pub env_files: Vec<PathBuf>,

    /// This run's region: renders `{{ region }}` and selects scenarios by their `regions:`.
    #[arg(long, value_name = "NAME", value_parser = crate::names::parse_region)]
    pub region: Option<String>,

    /// Scenarios run at once (a scenario's own steps stay sequential). Default: number of CPUs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub parallel: Option<u32>,

    /// Stop at the first failure: scenarios not started are skipped, those running are
    /// cancelled (their teardowns still run).
    #[arg(long)]
    pub fail_fast: bool,

    /// Run a failed scenario again up to N times; one that then passes is reported as flaky.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,

    /// Cap every scenario's deadline at this (e.g. 5s); a scenario's own shorter `timeout` holds.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,

    /// Write a JUnit XML report here (one testsuite per file, one testcase per scenario).
    #[arg(long, value_name = "F")]
    pub junit: Option<PathBuf>,

    /// Write a JSON report here, with every run's full trace (secrets redacted).
    #[arg(long, value_name = "F")]
    pub json: Option<PathBuf>,

    /// Print TAP 13 on stdout instead of the human lines (the summary goes to stderr).
    #[arg(long)]
    pub tap: bool,

    /// Print only failures and the summary.
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print every step with its duration.
    #[arg(long, short = 'v')]
    pub verbose: bool,

    #[command(flatten)]
    pub config_flags: crate::config_flags::ConfigFlags,
}

/// `sonde run`.
pub fn main(args: RunArgs) -> ExitCode {
    // The environment first: templates read it when the files load.
    if let Err(e) = vars::load_env_files(&args.env_files) {
        eprintln!("sonde run: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let opts = args.config_flags.apply(LoadOptions {
        region: args.region.clone(),
        vars: args.vars.clone(),
        ..Default::default()
    });
    let loaded = match config::load_all(&args.paths, &opts) {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "sonde run: {} error{} in the configuration; nothing ran",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let selection = match select::select(loaded.config.scenarios, &args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sonde run: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let scenarios = match args.timeout {
        Some(cap) => execute::cap_timeouts(selection, cap),
        None => selection,
    };
    let parallel = args.parallel.map(|n| n as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let style = human::Style::detect();
    let runtime = match crate::exit::runtime(
        tokio::runtime::Builder::new_multi_thread().worker_threads(parallel.clamp(1, 8)),
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let detail = if args.quiet {
        human::Detail::Quiet
    } else if args.verbose {
        human::Detail::Verbose
    } else {
        human::Detail::Normal
    };
    let progress = human::Progress::new(style, detail, args.tap);
    let plan = execute::Plan {
        parallel,
        retries: args.retries,
        fail_fast: args.fail_fast,
    };
    let started = std::time::Instant::now();
    let outcomes = runtime.block_on(execute::run_all(scenarios, plan, &progress));
    let wall = started.elapsed();
    progress.finish();

    let mut write_failed = false;
    if let Some(path) = &args.junit {
        if let Err(e) = std::fs::write(path, junit::render(&outcomes)) {
            eprintln!("sonde run: cannot write {}: {e}", path.display());
            write_failed = true;
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&json::render(&outcomes, wall))
            .unwrap_or_else(|_| "{}".into());
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("sonde run: cannot write {}: {e}", path.display());
            write_failed = true;
        }
    }
    let summary = human::summary_line(&outcomes);
    if args.tap {
        print!("{}", tap::render(&outcomes));
        eprintln!("{summary}");
    } else {
        print!("{}", human::render(&outcomes, &style));
        println!("{summary}");
    }
    if write_failed {
        return ExitCode::from(EXIT_USAGE);
    }
    if outcomes.iter().any(|o| o.verdict == Verdict::Failed) {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}
