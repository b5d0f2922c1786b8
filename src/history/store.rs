//! The store as the runtime sees it: an [`Observer`] whose scenario watchers turn each finished
//! run into a [`Record`] and hand it to a bounded queue — never waiting: a full queue drops the
//! run and counts it — and one thread that drains the queue into the [`Writer`] in batches.
//!
//! Writes that fail (full disk, a folder turned read-only) turn the history off: the batch is
//! dropped and counted, `sonde_history_up` goes to 0, one line is logged; the next batch tries
//! again, and a success turns it back on (one more line). Probing never stops for the store.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

use super::metrics::HistoryMetrics;
use super::reader::Reader;
use super::record::{Record, TracePolicy};
use super::schema::{self, FolderLock, OpenError};
use super::writer::Writer;
use super::{Clock, StoreOptions};
use crate::config::scenario::Scenario;
use crate::engine::RunReport;
use crate::runtime::observer::{Observer, ScenarioObserver};

enum Msg {
    Run(Box<Record>),
    /// Write what is queued, then stop and say so.
    Close(std::sync::mpsc::Sender<()>),
}

/// The watchers' side of the queue to the writer: bounded by a count, not by a buffer made up
/// front. `sync_channel(50,000)` reserved its 50,000 slots (1.2 MB a process) for a queue that
/// holds a batch's worth (2 s of runs) when the writer keeps up; this one allocates as it
/// fills and gives back as it drains.
#[derive(Clone)]
struct Queue {
    tx: Sender<Msg>,
    /// Runs sent and not yet taken by the writer: `sonde_history_queue_length` itself, which
    /// the writer lowers as it takes them.
    queued: Gauge,
    cap: i64,
}

impl Queue {
    /// Queue `rec` unless `cap` runs already wait; false when it is dropped.
    fn push(&self, rec: Record) -> bool {
        if self.queued.inc() >= self.cap {
            self.queued.dec();
            return false;
        }
        if self.tx.send(Msg::Run(Box::new(rec))).is_err() {
            self.queued.dec();
            return false;
        }
        true
    }
}

/// An open store: its reader (for the web) and its writing side (an observer of runs).
pub struct History {
    pub reader: Arc<Reader>,
    pub observer: Arc<HistoryObserver>,
}

/// Open the store in `folder` and start its writer thread.
pub fn open(
    folder: &Path,
    opts: StoreOptions,
    region: &str,
    metrics: HistoryMetrics,
    clock: Clock,
) -> Result<History, OpenError> {
    let lock = schema::lock_folder(folder)?;
    let conn = schema::open_writer(folder)?;
    let conns = (0..READERS)
        .map(|_| schema::open_reader(folder))
        .collect::<Result<Vec<_>, _>>()?;
    let reader = Reader::pool(conns, clock.clone());
    let (tx, rx) = channel();
    let queue = Queue {
        tx,
        queued: metrics.queue_length.clone(),
        cap: i64::try_from(opts.queue.max(1)).unwrap_or(i64::MAX),
    };
    let writer = Writer::new(conn, clock, opts.clone());
    if let Ok(b) = writer.used_bytes() {
        metrics.size_bytes.set(b as i64);
    }
    metrics.up.set(1);
    let m = metrics.clone();
    let thread = std::thread::Builder::new()
        .name("sonde-history".into())
        .spawn(move || write_loop(writer, rx, opts, m, lock))
        .map_err(|e| OpenError(format!("cannot start the history writer: {e}")))?;
    Ok(History {
        reader: Arc::new(reader),
        observer: Arc::new(HistoryObserver {
            queue,
            region: Arc::from(region),
            metrics,
            overflowed: Arc::new(AtomicBool::new(false)),
            thread: Mutex::new(Some(thread)),
        }),
    })
}

/// Connections for readers: pages asked at once read in parallel.
const READERS: usize = 4;

/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How often the writer takes what arrived while a batch is open. Runs are not handed over one
/// by one: a writer asleep on the queue would be woken by every run (a system call on the
/// probe's thread and a context switch each, ~40 % of the store's CPU at 2,000 runs a second),
/// so after a batch's first run it sleeps and takes the queue's contents this often.
const TICK: Duration = Duration::from_millis(50);

fn write_loop(
    mut writer: Writer,
    rx: Receiver<Msg>,
    opts: StoreOptions,
    metrics: HistoryMetrics,
    _lock: FolderLock,
) {
    // Grown as batches need: reserved up front, `max_batch` (20,000) records of ~170 bytes
    // were 3.4 MB per process whatever the run rate (a batch of 2 s at 1,000 runs/s is 2,000).
    let mut batch: Vec<Record> = Vec::new();
    let mut last_prune: Option<Instant> = None;
    let mut health = Health { up: true };
    loop {
        // Idle: sleep until a run arrives (one wake-up per batch, not per run).
        let mut closing = match rx.recv_timeout(PRUNE_EVERY) {
            Ok(Msg::Run(r)) => {
                metrics.queue_length.dec();
                batch.push(*r);
                None
            }
            Ok(Msg::Close(ack)) => Some(Some(ack)),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(None),
        };
        if !batch.is_empty() && closing.is_none() {
            closing = collect(&rx, &mut batch, &opts, &metrics);
        }
        if closing.is_some() {
            // Whatever is still queued goes in the last batch.
            while let Ok(Msg::Run(r)) = rx.try_recv() {
                metrics.queue_length.dec();
                batch.push(*r);
            }
        }
        flush(&mut writer, &mut batch, &metrics, &mut health);
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            prune(&mut writer, &metrics, &mut health);
        }
        if let Some(ack) = closing {
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
            return;
        }
    }
}

/// Fill an open batch until it is full or `flush_interval` old, taking the queue's contents
/// every [`TICK`]. `Some` when the store is closing (with the ack to send, if any).
fn collect(
    rx: &Receiver<Msg>,
    batch: &mut Vec<Record>,
    opts: &StoreOptions,
    metrics: &HistoryMetrics,
) -> Option<Option<std::sync::mpsc::Sender<()>>> {
    let deadline = Instant::now() + opts.flush_interval;
    loop {
        while batch.len() < opts.max_batch {
            match rx.try_recv() {
                Ok(Msg::Run(r)) => {
                    metrics.queue_length.dec();
                    batch.push(*r);
                }
                Ok(Msg::Close(ack)) => return Some(Some(ack)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Some(None),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if batch.len() >= opts.max_batch || left.is_zero() {
            return None;
        }
        std::thread::sleep(left.min(TICK));
    }
}

/// Whether the last write worked, to log changes only.
struct Health {
    up: bool,
}

impl Health {
    fn failed(&mut self, metrics: &HistoryMetrics, what: &str, e: &rusqlite::Error) {
        metrics.write_errors.inc();
        metrics.up.set(0);
        if self.up {
            self.up = false;
            tracing::warn!(
                "history off: {what} failed ({e}); runs are still probed but not stored until a write succeeds (sonde_history_up)"
            );
        }
    }

    fn worked(&mut self, metrics: &HistoryMetrics) {
        metrics.up.set(1);
        if !self.up {
            self.up = true;
            tracing::info!("history back on: writes succeed again");
        }
    }
}

fn flush(writer: &mut Writer, batch: &mut Vec<Record>, metrics: &HistoryMetrics, h: &mut Health) {
    if batch.is_empty() {
        return;
    }
    let started = Instant::now();
    match writer.write(batch) {
        Ok(()) => {
            metrics.runs_written.inc_by(batch.len() as u64);
            h.worked(metrics);
        }
        Err(e) => {
            metrics.dropped_runs.inc_by(batch.len() as u64);
            h.failed(metrics, "writing runs", &e);
        }
    }
    metrics
        .flush_seconds
        .observe(started.elapsed().as_secs_f64());
    batch.clear();
}

fn prune(writer: &mut Writer, metrics: &HistoryMetrics, h: &mut Health) {
    match writer.prune() {
        Ok(p) => {
            metrics.pruned_runs.inc_by(p.runs);
        }
        Err(e) => h.failed(metrics, "retention", &e),
    }
    if let Ok(b) = writer.used_bytes() {
        metrics.size_bytes.set(b as i64);
    }
}

/// The writing side, one observer among the runtime's.
pub struct HistoryObserver {
    queue: Queue,
    region: Arc<str>,
    metrics: HistoryMetrics,
    overflowed: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl HistoryObserver {
    /// Write what is queued and stop the writer (at shutdown, after the last runs); gives up
    /// after `grace`. Call from a blocking context.
    pub fn close(&self, grace: Duration) {
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        let deadline = Instant::now() + grace;
        if self.queue.tx.send(Msg::Close(ack_tx)).is_err() {
            return;
        }
        if ack_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
        {
            let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
impl HistoryObserver {
    /// Queue records as watchers do, without a scenario.
    pub(super) fn sender_for_tests(&self) -> impl Fn(Record) {
        let queue = self.queue.clone();
        move |r| assert!(queue.push(r), "queued")
    }
}

impl Observer for HistoryObserver {
    fn watch(&self, scenario: &Arc<Scenario>) -> Box<dyn ScenarioObserver> {
        Box::new(Watch {
            scenario: scenario.clone(),
            name: Arc::from(scenario.name.as_str()),
            region: self.region.clone(),
            queue: self.queue.clone(),
            metrics: self.metrics.clone(),
            overflowed: self.overflowed.clone(),
            traces: TracePolicy::default(),
        })
    }
}

struct Watch {
    scenario: Arc<Scenario>,
    name: Arc<str>,
    region: Arc<str>,
    queue: Queue,
    metrics: HistoryMetrics,
    overflowed: Arc<AtomicBool>,
    traces: TracePolicy,
}

impl ScenarioObserver for Watch {
    fn run(&mut self, report: &RunReport, _current: bool) {
        let started_ms = super::record::started_ms(report);
        let keep = self.traces.keep(report.success(), started_ms);
        let rec = Record::from_report(
            &self.scenario,
            &self.name,
            &self.region,
            report,
            started_ms,
            keep,
        );
        if !self.queue.push(rec) {
            self.metrics.dropped_runs.inc();
            if !self.overflowed.swap(true, Ordering::Relaxed) {
                tracing::warn!("the history writer falls behind: runs are dropped from the history, not from probing (sonde_history_dropped_runs_total)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            scenario: Arc::from("s"),
            region: Arc::from("eu"),
            started_ms: 0,
            duration_s: 0.1,
            success: true,
            failed_step: None,
            reason: None,
            error: None,
            steps: Vec::new(),
            trace: None,
        }
    }

    /// The bound holds without a buffer made up front: past `cap` waiting runs a push is
    /// dropped, and what the writer takes makes room again.
    #[test]
    fn the_queue_drops_past_its_bound_and_makes_room_as_the_writer_takes() {
        let (tx, rx) = channel();
        let queue = Queue {
            tx,
            queued: Gauge::default(),
            cap: 2,
        };
        let taken = queue.queued.clone();
        assert!(queue.push(record()) && queue.push(record()));
        assert!(!queue.push(record()), "a third waiting run is dropped");
        assert!(matches!(rx.try_recv(), Ok(Msg::Run(_))));
        taken.dec();
        assert!(queue.push(record()), "room again once one is taken");
        assert_eq!(queue.queued.get(), 2);
        drop(rx);
        let before = queue.queued.get();
        taken.dec();
        assert!(!queue.push(record()), "no writer: dropped");
        assert_eq!(queue.queued.get(), before - 1);
    }
}
