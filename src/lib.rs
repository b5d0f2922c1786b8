//! sonde: active synthetic probing. Scenario files in, Prometheus metrics out.
//!
//! - [`config`] reads scenario files (YAML), reports every error with its location, and
//!   produces a [`scenario::Config`]: scenarios with their probe requests built.
//! - [`engine`] runs one scenario once and produces a step-by-step trace.
//! - [`scheduler`] runs every scenario on its interval, never overlapping itself.
//! - [`metrics`] and [`web`] expose the results; [`serve`] ties them together with reloads and
//!   signals.
//! - [`cli`] is the command line.

pub mod blackbox;
pub mod cli;
pub mod config;
pub mod default_config;
pub mod engine;
pub mod hash;
pub mod metrics;
pub mod scenario;
pub mod scheduler;
pub mod serve;
pub mod web;
