//! The store's own series: whether it is writing, what it wrote, dropped and failed to write.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone)]
pub struct HistoryMetrics {
    /// 1 while the store writes, 0 when off (not configured, cannot open, or failing writes).
    pub up: Gauge,
    pub runs_written: Counter,
    /// Runs not stored: the queue was full, or their batch failed to write.
    pub dropped_runs: Counter,
    pub write_errors: Counter,
    pub pruned_runs: Counter,
    pub size_bytes: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub queue_length: Gauge,
    pub flush_seconds: Histogram,
}

const FLUSH_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

impl HistoryMetrics {
    pub fn register(r: &mut Registry) -> HistoryMetrics {
        let m = HistoryMetrics {
            up: Gauge::default(),
            runs_written: Counter::default(),
            dropped_runs: Counter::default(),
            write_errors: Counter::default(),
            pruned_runs: Counter::default(),
            size_bytes: Gauge::default(),
            queue_length: Gauge::default(),
            flush_seconds: Histogram::new(FLUSH_BUCKETS.iter().copied()),
        };
        r.register("sonde_history_up", "1 while the history store writes runs, 0 when history is off (disabled, cannot open its folder, or writes failing: full disk, read-only folder)", m.up.clone());
        r.register(
            "sonde_history_runs_written",
            "Runs written to the history store",
            m.runs_written.clone(),
        );
        r.register("sonde_history_dropped_runs", "Runs not kept in the history: the write queue was full, or their batch could not be written", m.dropped_runs.clone());
        r.register(
            "sonde_history_write_errors",
            "Batches the history store failed to write",
            m.write_errors.clone(),
        );
        r.register(
            "sonde_history_pruned_runs",
            "Runs removed by retention (age or size)",
            m.pruned_runs.clone(),
        );
        r.register(
            "sonde_history_size_bytes",
            "Bytes the history store's data takes (pages in use)",
            m.size_bytes.clone(),
        );
        r.register(
            "sonde_history_queue_length",
            "Runs waiting to be written",
            m.queue_length.clone(),
        );
        r.register(
            "sonde_history_flush_seconds",
            "Time to write one batch of runs",
            m.flush_seconds.clone(),
        );
        m
    }
}
