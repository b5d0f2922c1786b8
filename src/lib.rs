//! sonde: active synthetic probing. Scenario files in, Prometheus metrics out.
//!
//! - [`config`] reads scenario files (YAML), reports every error with its location, and
//!   produces a [`scenario::Config`]: scenarios with their probe requests built.
//! - [`engine`] runs one scenario once and produces a step-by-step trace.
//! - [`scheduler`] runs every scenario on its interval, never overlapping itself.
//! - [`metrics`] and [`web`] expose the results; [`serve`] ties them together with reloads and
//!   signals.
//! - [`cli`] is the command line; [`run`] is `sonde run`, the CI runner.
//! - Many agents: [`agent`] (region, shard, what runs beside the scheduler), [`shard`],
//!   [`source`] (configuration URLs, file watching) and [`remote_write`] (push).
//! - [`alert`]: alerts from scenario `alert:` blocks to Alertmanager and chat notifiers, and
//!   `sonde rules`.

pub mod agent;
pub mod alert;
pub mod backoff;
pub mod blackbox;
pub mod cli;
pub mod cli_docs;
pub mod closed_pipe;
pub mod config;
pub mod config_flags;
pub mod default_config;
pub mod demo;
pub mod engine;
pub mod error_chain;
pub mod exit;
pub mod hash;
pub mod history;
pub mod intern;
pub mod logging;
pub mod memory_hint;
pub mod metrics;
pub mod names;
pub mod process_metrics;
pub mod redact;
pub mod remote_write;
pub mod run;
pub mod runtime;
pub mod schema;
pub mod serve;
pub mod shard;
pub mod shard_auto;
pub mod source;
pub mod status;
pub mod time;
pub mod web;
pub mod web_server;
