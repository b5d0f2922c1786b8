//! Configuration loading: scenario files (YAML, format v1 — `docs/scenario-format.md`) in, a checked
//! [`Config`] with every probe request built out, or every error of every file, each located.
//!
//! How a file goes through:
//! 1. [`locate`] indexes the positions of every key and value by path (serde_norway has no
//!    spans), and finds duplicate keys;
//! 2. serde_norway parses the text into a `Value` (its syntax errors carry their location);
//! 3. [`compile`] takes the top-level form apart and types each scenario's own keys, then each
//!    step separately, through [`deser`], which reports every structural error and rewrites
//!    serde's messages; [`template`] renders `{{ … }}` into step strings first;
//! 4. each step kind's builder in [`kinds`] (one file per kind, one line in its table), with
//!    [`expect`], [`flow`] and [`steps`], checks values and builds the `sonde_probes` requests,
//!    sharing resolvers and TLS clients through [`build`];
//! 5. [`redact`] keeps a secrets-free copy for `/config` and the fingerprint.
//!
//! Errors display as `file:line:column: what is wrong — what was expected`. File-level
//! problems with no position (a path that does not exist, a file that cannot be read, a folder
//! without YAML files) display as `path: what is wrong — what was expected` and have
//! `line == 0`.

pub mod agent;
pub mod alert;
pub mod blackbox;
pub(crate) mod build;
mod compile;
mod conn_names;
pub(crate) mod deser;
pub(crate) mod error;
mod expect;
mod flow;
pub mod funcs;
pub(crate) mod groups;
pub(crate) mod kinds;
pub mod limits;
pub(crate) mod locate;
pub mod matcher;
pub(crate) mod model;
mod packed;
pub(crate) mod probe_settings;
/// Protobuf without codegen (`proto_file`), public for the fuzz targets.
pub use probe_settings::protobuf;
pub(crate) mod redact;
pub mod scenario;
pub(crate) mod step;
pub(crate) mod steps;
pub(crate) mod suggest;
mod taint;
pub(crate) mod targets;
mod template;
pub mod trust;
pub(crate) mod units;
pub mod web;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use redact::{MIN_SECRET_LEN, REDACTED};
pub use suggest::hint;

pub use crate::config::scenario::Config;

/// How to load.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The agent's region: available to templates as `region` (using `region` without one is an
    /// error) and part of every fingerprint.
    pub region: Option<String>,
    /// `sonde run --var NAME=VALUE`: replace (or define) scenario vars, in every scenario.
    pub vars: Vec<(String, String)>,
    /// `--config.file-root`: the folder `file()` may read below, instead of each scenario
    /// file's own folder ([`trust`]).
    pub file_root: Option<PathBuf>,
    /// `--config.remote-env`: the environment variables templates of documents loaded from a
    /// URL may read ([`trust`]).
    pub remote_env: Vec<String>,
    /// File size and scenario count bounds ([`limits`]).
    pub limits: limits::Limits,
}

/// How deep folders are searched for YAML files (guards against symlink loops).
const MAX_DEPTH: usize = 32;

fn file_error(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        message: message.into(),
    }
}

/// An I/O error in words, without Rust's " (os error N)" suffix.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let mut s = e.to_string();
    if let Some(cut) = s.find(" (os error") {
        s.truncate(cut);
    }
    s
}

fn is_yaml(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml")
    )
}

fn collect_yaml(dir: &Path, depth: usize, out: &mut Vec<PathBuf>, errors: &mut Vec<ConfigError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(file_error(
                dir,
                format!(
                    "cannot read this folder: {} — expected a readable folder",
                    io_reason(&e)
                ),
            ));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            if depth < MAX_DEPTH {
                collect_yaml(&p, depth + 1, out, errors);
            }
        } else if is_yaml(&p) {
            out.push(p);
        }
    }
}

/// One `-c` input: a file or folder on disk, or a document already fetched (a URL's body).
#[derive(Clone, Debug)]
pub enum Input {
    Path(PathBuf),
    /// `origin` names it in errors; relative file paths in it are relative to the current folder.
    Text {
        origin: String,
        text: String,
    },
}

/// What a load produced: scenarios, and the blackbox modules of any blackbox_exporter
/// configuration files among the inputs (`None` when there was none).
#[derive(Default)]
pub struct Loaded {
    pub config: Config,
    pub modules: Option<crate::config::blackbox::module::Modules>,
}

/// Load files and folders (every `*.yaml`/`*.yml` below a folder, recursively, in sorted
/// order). Scenario names must be unique across everything loaded; so must module names across
/// blackbox configuration files. A file whose top level has `modules:` is a blackbox_exporter
/// configuration; a file whose only top-level key is `agent:` holds agent settings; every other
/// file is a scenario file.
pub fn load_all(paths: &[PathBuf], opts: &LoadOptions) -> Result<Loaded, Vec<ConfigError>> {
    let inputs: Vec<Input> = paths.iter().cloned().map(Input::Path).collect();
    load_inputs(&inputs, opts)
}

/// Load files and folders like [`load_all`], keeping only the scenarios (blackbox modules in
/// them are checked, then dropped).
pub fn load_paths(paths: &[PathBuf], opts: &LoadOptions) -> Result<Config, Vec<ConfigError>> {
    load_all(paths, opts).map(|l| l.config)
}

/// One document to load: where it came from (for messages), the folder its relative paths
/// start from, its text, and what it may reach.
type Doc = (String, PathBuf, String, trust::Trust);

/// Load inputs in order. Agent settings documents ([`agent`]) are read first: their `region`
/// (unless `opts` has one, from the command line) renders the scenarios' templates.
pub fn load_inputs(inputs: &[Input], opts: &LoadOptions) -> Result<Loaded, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let files = yaml_files(inputs, &mut errors);
    let docs = documents(&files, inputs, opts, &mut errors);
    let mut config = Config::default();
    let scenario_docs = agent_settings_first(docs, &mut config, &mut errors);
    let mut opts = opts.clone();
    if opts.region.is_none() {
        opts.region = config.agent.region.clone();
    }
    let modules = compile_documents(scenario_docs, &opts, &mut config, &mut errors);
    if errors.is_empty() {
        errors = alert::check_notify_names(&config);
    }
    if errors.is_empty() {
        Ok(Loaded { config, modules })
    } else {
        Err(errors)
    }
}

/// The files the path inputs name (every YAML file below a folder), each once.
fn yaml_files(inputs: &[Input], errors: &mut Vec<ConfigError>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for input in inputs {
        let p = match input {
            Input::Path(p) => p,
            Input::Text { .. } => continue,
        };
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                let before = files.len();
                collect_yaml(p, 0, &mut files, errors);
                if files.len() == before {
                    errors.push(file_error(
                        p,
                        "no *.yaml or *.yml file in this folder — expected scenario files",
                    ));
                }
            }
            Ok(_) => files.push(p.clone()),
            Err(e) => errors.push(file_error(
                p,
                format!(
                    "cannot read: {} — expected a scenario file or a folder of them",
                    io_reason(&e)
                ),
            )),
        }
    }
    // The same file named twice (or a file and its folder) is loaded once.
    let mut seen = HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    files
}

/// Files read (within the size cap) and text inputs, each with its trust; documents over the
/// size or nesting limits, or remote ones naming files, are refused before any YAML parser
/// sees them (the parsers are slow on hostile nesting).
fn documents(
    files: &[PathBuf],
    inputs: &[Input],
    opts: &LoadOptions,
    errors: &mut Vec<ConfigError>,
) -> Vec<Doc> {
    let mut docs: Vec<Doc> = Vec::new();
    let local = trust::Trust::Local {
        root: opts.file_root.clone(),
    };
    for f in files {
        match limits::read_file(f, opts.limits.max_file_bytes) {
            Ok(text) => docs.push((
                f.display().to_string(),
                f.parent().unwrap_or(Path::new("")).to_path_buf(),
                text,
                local.clone(),
            )),
            Err(e) => errors.push(e),
        }
    }
    for input in inputs {
        if let Input::Text { origin, text } = input {
            let remote = trust::Trust::Remote {
                origin: origin.clone(),
                env: opts.remote_env.clone(),
            };
            docs.push((origin.clone(), PathBuf::new(), text.clone(), remote));
        }
    }
    docs.retain(|(name, _, text, trust)| {
        if let Err(e) = limits::check_document(name, text, &opts.limits) {
            errors.push(e);
            return false;
        }
        if matches!(trust, trust::Trust::Remote { .. }) {
            let refused = trust::remote_file_keys(name, text);
            if !refused.is_empty() {
                errors.extend(refused);
                return false;
            }
        }
        true
    });
    docs
}

/// Merge the agent settings documents into `config`; the others are returned, in order.
fn agent_settings_first(
    docs: Vec<Doc>,
    config: &mut Config,
    errors: &mut Vec<ConfigError>,
) -> Vec<Doc> {
    let mut scenario_docs = Vec::new();
    for (name, dir, text, trust) in docs {
        if agent::is_agent_document(&text) {
            let merged =
                agent::parse(&name, &dir, &text).and_then(|a| agent::merge(&mut config.agent, a));
            if let Err(e) = merged {
                errors.push(e);
            }
            config.sources.push(name);
        } else {
            scenario_docs.push((name, dir, text, trust));
        }
    }
    scenario_docs
}

/// Scenario files into `config.scenarios`, blackbox files into the modules returned (if any).
fn compile_documents(
    docs: Vec<Doc>,
    opts: &LoadOptions,
    config: &mut Config,
    errors: &mut Vec<ConfigError>,
) -> Option<crate::config::blackbox::module::Modules> {
    let mut loader = compile::Loader::new(opts);
    let mut modules: Option<crate::config::blackbox::module::Modules> = None;
    for (name, dir, text, trust) in docs {
        match blackbox_top(&text) {
            Some(top) => {
                let modules = modules.get_or_insert_with(Default::default);
                errors.extend(load_blackbox(&name, &dir, &text, top, modules));
            }
            None => {
                loader.set_trust(trust);
                let fe = loader.file(&name, &dir, &text, &mut config.scenarios);
                errors.extend(fe.into_errors());
            }
        }
        if config.scenarios.len() > opts.limits.max_scenarios {
            errors.push(limits::too_many_scenarios(&name, opts.limits.max_scenarios));
            break;
        }
        config.sources.push(name);
    }
    modules
}

/// The parsed top level of `text` when it is a blackbox_exporter configuration (a mapping with
/// `modules:`); `None` for anything else, which the scenario loader reports on.
fn blackbox_top(text: &str) -> Option<serde_norway::Value> {
    let mut v: serde_norway::Value = serde_norway::from_str(text).ok()?;
    // Merge keys (`<<: *base`), which Go's yaml.v3 applies too; a broken one is left for the
    // scenario loader to report (it applies them the same way).
    v.apply_merge().ok()?;
    match &v {
        serde_norway::Value::Mapping(m) if crate::config::blackbox::is_blackbox(m) => Some(v),
        _ => None,
    }
}

fn load_blackbox(
    name: &str,
    dir: &Path,
    text: &str,
    top: serde_norway::Value,
    modules: &mut crate::config::blackbox::module::Modules,
) -> Vec<ConfigError> {
    let mut errors = error::FileErrors::new(name);
    let index = locate::PosIndex::build(text);
    if index.report_duplicates(&mut errors) {
        return errors.into_errors();
    }
    crate::config::blackbox::load_file(top, dir, &index, &mut errors, modules);
    errors.into_errors()
}

/// Load a blackbox configuration from a string (the built-in modules); `origin` names it in
/// errors.
pub fn load_blackbox_str(
    origin: &str,
    text: &str,
    modules: &mut crate::config::blackbox::module::Modules,
) -> Vec<ConfigError> {
    match blackbox_top(text) {
        Some(top) => load_blackbox(origin, Path::new(""), text, top, modules),
        None => vec![ConfigError {
            file: origin.to_string(),
            line: 0,
            column: 0,
            message: "not a blackbox configuration — expected `modules:`".into(),
        }],
    }
}

/// Load one document from a string; `origin` names it in errors (e.g. `<built-in>`). Relative
/// file paths in it are relative to the current folder.
pub fn load_str(origin: &str, text: &str, opts: &LoadOptions) -> Result<Config, Vec<ConfigError>> {
    limits::check_document(origin, text, &opts.limits).map_err(|e| vec![e])?;
    let mut loader = compile::Loader::new(opts);
    loader.set_trust(trust::Trust::Local {
        root: opts.file_root.clone(),
    });
    let mut config = Config::default();
    let errors = loader.file(origin, Path::new(""), text, &mut config.scenarios);
    config.sources.push(origin.to_string());
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors.into_errors())
    }
}
