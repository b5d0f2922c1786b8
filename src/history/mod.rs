//! The history of runs: every finished run kept in an embedded store, and what the status page,
//! badges and `/api/v1/scenarios/{name}/runs|uptime|latency` read back from it.
//!
//! This file is the contract between the store (which writes runs as an observer of the runtime)
//! and its readers (the web API, the status page): readers see only [`HistoryRead`], so a page can
//! be tested against a fake and the store can change its tables without touching them.
//!
//! Times are Unix milliseconds (UTC); durations are seconds as `f64`, as in the metrics.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub mod badge;
pub mod flags;
pub mod metrics;
pub mod reader;
pub mod recent;
pub mod record;
mod row_cache;
pub mod schema;
pub mod sketch;
pub mod store;
#[cfg(test)]
mod tests;
pub mod writer;

pub use metrics::HistoryMetrics;
pub use store::{open, History, HistoryObserver};

/// Now, in Unix milliseconds: the wall clock in production, a fake one in tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(crate::time::now_ms)
}

/// How the store batches and keeps runs.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Runs and minute rollups older than this go (hour rollups: at least 31 days).
    pub retention: Duration,
    /// Bytes of data beyond which the oldest runs go; 0 = no limit.
    pub max_size: u64,
    /// A batch is written at most this long after its first run arrived: what `kill -9` can
    /// lose. 2 s rather than 1 s: each batch rewrites the minute rows of every scenario it
    /// touches, so at one run a second per scenario a 2 s batch writes half as many.
    pub flush_interval: Duration,
    /// A batch is written as soon as it has this many runs. Large enough that a batch holds a
    /// second's runs at 10,000 scenarios every second: each batch rewrites the minute rows of
    /// every scenario it touches, so a batch cut at half a second writes them twice as often.
    pub max_batch: usize,
    /// Runs waiting to be written; beyond, runs are dropped (and counted), never waited for.
    pub queue: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention: Duration::from_secs(14 * 86_400),
            max_size: 2 << 30,
            flush_interval: Duration::from_secs(2),
            max_batch: 20_000,
            queue: 50_000,
        }
    }
}

/// One finished run, as the API and pages list it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunRow {
    /// The store's id for the run (`/api/v1/scenarios/{name}/runs/{id}`), increasing with time.
    pub id: i64,
    pub scenario: String,
    pub region: String,
    /// When the run started.
    pub started_ms: i64,
    pub duration_s: f64,
    pub success: bool,
    /// The first failing step's name and the reason label (`timeout`, `connect`…), on failure.
    pub failed_step: Option<String>,
    pub reason: Option<String>,
    /// The failure's message, redacted as the API shows it.
    pub error: Option<String>,
    pub steps: Vec<StepRow>,
    /// Whether the full trace was kept (every failure, a sample of successes).
    pub has_trace: bool,
}

/// One step of a kept run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepRow {
    pub name: String,
    pub kind: String,
    pub success: bool,
    pub duration_s: f64,
    /// Phase name → seconds (`resolve`, `connect`, `tls`, `processing`, `transfer`, frames…).
    pub phases: Vec<(String, f64)>,
    /// Runs once per connection life (a persistent session's setup, in a run that connected),
    /// not every interval: the writer does not keep its rollup rows cached for the next run.
    #[serde(skip)]
    pub once: bool,
}

/// Which runs a listing wants; newest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFilter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// `Some(true)`: successes only; `Some(false)`: failures only.
    pub success: Option<bool>,
    /// Only runs with an id below this one (the next page).
    pub before_id: Option<i64>,
    pub limit: usize,
}

/// Uptime over a window ending now.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Uptime {
    pub window_s: u64,
    pub runs: u64,
    pub failures: u64,
    /// `None` when there was no run in the window.
    pub ratio: Option<f64>,
}

/// One slot of an uptime strip (e.g. one of 90 over the last 90 minutes or days).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Slot {
    pub start_ms: i64,
    pub end_ms: i64,
    pub runs: u64,
    pub failures: u64,
    /// Mean run duration in the slot.
    pub mean_duration_s: Option<f64>,
    /// The last failure's reason in the slot, for the tooltip.
    pub last_reason: Option<String>,
}

/// A point of a latency series (a whole run's duration, or one step's).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencyPoint {
    pub t_ms: i64,
    pub count: u64,
    pub p50_s: f64,
    pub p95_s: f64,
}

/// A failing interval: from the first failing run to the first passing one after it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Incident {
    pub from_ms: i64,
    /// `None` while still failing.
    pub to_ms: Option<i64>,
    pub failed_runs: u64,
    pub first_reason: Option<String>,
}

/// What readers may ask of the history. Calls may block on disk: call from `spawn_blocking`.
pub trait HistoryRead: Send + Sync {
    fn runs(&self, scenario: &str, filter: &RunFilter) -> Vec<RunRow>;
    /// One run and its kept trace (the `RunReport` as the API renders it), if kept.
    fn run(&self, scenario: &str, id: i64) -> Option<(RunRow, Option<serde_json::Value>)>;
    fn uptime(&self, scenario: &str, window: Duration) -> Uptime;
    /// `slots` equal slots covering `span` up to now, oldest first.
    fn strip(&self, scenario: &str, slots: usize, span: Duration) -> Vec<Slot>;
    /// The run's (`step: None`) or one step's latency from `from_ms` to now in `bucket`s.
    fn latency(
        &self,
        scenario: &str,
        step: Option<&str>,
        from_ms: i64,
        bucket: Duration,
    ) -> Vec<LatencyPoint>;
    /// Failing intervals since `from_ms`, newest first.
    fn incidents(&self, scenario: &str, from_ms: i64, limit: usize) -> Vec<Incident>;

    /// True for the in-memory history of the last runs ([`recent::Recent`]), which pages label
    /// as such: its uptime covers only what is kept, and it keeps no traces.
    fn memory_only(&self) -> bool {
        false
    }
}
