//! The store on a fake clock: rollups, strips, latency, incidents and retention are exact;
//! restarts keep everything; a full store turns history off without touching the caller.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::reader::Reader;
use super::record::Record;
use super::schema::{self, HOUR_MS, MINUTE_MS};
use super::writer::Writer;
use super::*;

/// 2026-01-01T00:00:00Z: whole hours and days, so window edges are easy to reason about.
const T0: i64 = 1_767_225_600_000;
const DAY_MS: i64 = 86_400_000;

struct Fake {
    now: Arc<AtomicI64>,
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            now: Arc::new(AtomicI64::new(T0)),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn clock(&self) -> Clock {
        let now = self.now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    }

    fn set(&self, t: i64) {
        self.now.store(t, Ordering::SeqCst);
    }

    fn writer(&self, opts: StoreOptions) -> Writer {
        Writer::new(
            schema::open_writer(self.dir.path()).unwrap(),
            self.clock(),
            opts,
        )
    }

    fn reader(&self) -> Reader {
        Reader::new(schema::open_reader(self.dir.path()).unwrap(), self.clock())
    }
}

fn rec(scenario: &str, started_ms: i64, duration_s: f64, success: bool) -> Record {
    Record {
        scenario: Arc::from(scenario),
        region: Arc::from("eu"),
        started_ms,
        duration_s,
        success,
        failed_step: (!success).then(|| "get".to_string()),
        reason: (!success).then_some("timeout"),
        error: (!success).then(|| "deadline exceeded".to_string()),
        steps: vec![StepRow {
            name: "get".into(),
            kind: "http".into(),
            success,
            duration_s: duration_s / 2.0,
            phases: vec![("connect".into(), 0.001)],
            once: false,
        }],
        trace: (!success).then(|| r#"{"scenario":"x"}"#.to_string()),
    }
}

#[test]
fn uptime_strip_and_latency_are_exact() {
    let f = Fake::new();
    let mut w = f.writer(StoreOptions::default());
    // Three hours of one run a minute: 0.1 s when passing; every 10th minute fails in 2 s.
    let mut batch = Vec::new();
    for m in 0..180 {
        let fail = m % 10 == 9;
        batch.push(rec(
            "a",
            T0 + m * MINUTE_MS + 500,
            if fail { 2.0 } else { 0.1 },
            !fail,
        ));
    }
    w.write(&batch).unwrap();
    f.set(T0 + 3 * HOUR_MS);
    let r = f.reader();

    let up = r.uptime("a", Duration::from_secs(3 * 3600));
    assert_eq!((up.runs, up.failures), (180, 18));
    assert_eq!(up.ratio, Some(162.0 / 180.0));
    // The last hour only (minute rows 120..180).
    let up = r.uptime("a", Duration::from_secs(3600));
    assert_eq!((up.runs, up.failures), (60, 6));
    assert_eq!(r.uptime("nope", Duration::from_secs(3600)).ratio, None);

    // 18 slots of 10 minutes: each has 10 runs, the last of which failed.
    let strip = r.strip("a", 18, Duration::from_secs(3 * 3600));
    assert_eq!(strip.len(), 18);
    for s in &strip {
        assert_eq!((s.runs, s.failures), (10, 1), "{s:?}");
        assert_eq!(s.last_reason.as_deref(), Some("timeout"));
        assert_eq!(s.end_ms - s.start_ms, 10 * MINUTE_MS);
    }
    assert!((strip[0].mean_duration_s.unwrap() - 0.29).abs() < 1e-9);

    // Hourly latency (from hour rows): p50 is the passing duration (within its sketch bucket:
    // at most 26 % above), p95 the failing one (the maximum, exact).
    let pts = r.latency("a", None, T0, Duration::from_secs(3600));
    assert_eq!(pts.len(), 3);
    assert_eq!(pts[0].t_ms, T0);
    assert_eq!(pts[0].count, 60);
    assert!((0.1..=0.126).contains(&pts[0].p50_s), "{:?}", pts[0]);
    assert_eq!(pts[0].p95_s, 2.0);
    // One step's series, by minute.
    let pts = r.latency("a", Some("get"), T0, Duration::from_secs(60));
    assert_eq!(pts.len(), 180);
    assert_eq!(pts[0].p50_s, 0.05);
    assert_eq!(pts[9].p50_s, 1.0);
    assert!(r
        .latency("a", Some("nope"), T0, Duration::from_secs(60))
        .is_empty());
}

#[test]
fn hour_rows_answer_long_windows_like_minute_rows() {
    let f = Fake::new();
    let mut w = f.writer(StoreOptions::default());
    let batch: Vec<Record> = (0..48 * 6)
        .map(|i| rec("a", T0 + i * 10 * MINUTE_MS, 0.2, i % 7 != 0))
        .collect();
    w.write(&batch).unwrap();
    f.set(T0 + 2 * DAY_MS);
    let r = f.reader();
    let day = r.uptime("a", Duration::from_secs(86_400));
    let two = r.uptime("a", Duration::from_secs(2 * 86_400));
    assert_eq!(two.runs, 288);
    assert_eq!(two.failures, (0..288).filter(|i| i % 7 == 0).count() as u64);
    assert_eq!(
        day.failures,
        (144..288).filter(|i| i % 7 == 0).count() as u64
    );
    // A 30-slot strip of 30 days (slots of a day, read from hour rows).
    let strip = r.strip("a", 30, Duration::from_secs(30 * 86_400));
    assert_eq!(strip.iter().map(|s| s.runs).sum::<u64>(), 288);
}

/// Rows of `res` on disk, and the hour rows listed as not written yet.
fn rollup_rows(f: &Fake, res: i64) -> (i64, i64) {
    let c = rusqlite::Connection::open(schema::db_path(f.dir.path())).unwrap();
    let n = |sql: &str, p: &[i64]| -> i64 {
        c.query_row(sql, rusqlite::params_from_iter(p), |r| r.get(0))
            .unwrap()
    };
    (
        n("SELECT COUNT(*) FROM rollups WHERE res=?1", &[res]),
        n("SELECT COUNT(*) FROM open_hours", &[]),
    )
}

#[test]
fn hour_rows_are_written_when_their_hour_ends_and_rebuilt_after_a_crash() {
    let f = Fake::new();
    let mut w = f.writer(StoreOptions::default());
    // Half an hour, one run a minute, every third failing.
    let first: Vec<Record> = (0..30)
        .map(|m| rec("a", T0 + m * MINUTE_MS, 0.1, m % 3 != 0))
        .collect();
    f.set(T0 + 30 * MINUTE_MS);
    w.write(&first).unwrap();
    // The open hour's rows (run and step) are in memory and listed, not written.
    assert_eq!(rollup_rows(&f, HOUR_MS), (0, 2));
    // The open hour is read from its minute rows meanwhile.
    let up = f.reader().uptime("a", Duration::from_secs(3600));
    assert_eq!((up.runs, up.failures), (30, 10));
    // kill -9: the writer's memory is gone. A new writer rebuilds the listed rows from the
    // minute rows and goes on adding to them.
    drop(w);
    let mut w = f.writer(StoreOptions::default());
    let second: Vec<Record> = (30..60)
        .map(|m| rec("a", T0 + m * MINUTE_MS, 0.1, m % 3 != 0))
        .collect();
    f.set(T0 + 45 * MINUTE_MS);
    w.write(&second[..15]).unwrap();
    f.set(T0 + 59 * MINUTE_MS + 1);
    w.write(&second[15..]).unwrap();
    assert_eq!(rollup_rows(&f, HOUR_MS), (0, 2));
    // The first batch after the hour writes its rows (and unlists them).
    f.set(T0 + HOUR_MS);
    w.write(&[]).unwrap();
    assert_eq!(rollup_rows(&f, HOUR_MS), (2, 0));
    f.set(T0 + 3 * HOUR_MS);
    let r = f.reader();
    let up = r.uptime("a", Duration::from_secs(3 * 3600));
    assert_eq!((up.runs, up.failures), (60, 20));
    let pts = r.latency("a", Some("get"), T0, Duration::from_secs(3600));
    assert_eq!(pts.len(), 1);
    assert_eq!(pts[0].count, 60);

    // A crash after the hour ended, before any batch wrote its row: the next writer writes it
    // even when no run of that hour comes again (here: an idle batch).
    let third: Vec<Record> = (0..10)
        .map(|m| rec("a", T0 + 3 * HOUR_MS + m * MINUTE_MS, 0.2, m != 4))
        .collect();
    f.set(T0 + 3 * HOUR_MS + 10 * MINUTE_MS);
    w.write(&third).unwrap();
    drop(w);
    // Meanwhile readers take the hour just ended, which has no row yet, from its minute rows.
    f.set(T0 + 4 * HOUR_MS + MINUTE_MS);
    assert_eq!(rollup_rows(&f, HOUR_MS), (2, 2));
    let up = r.uptime("a", Duration::from_secs(2 * 3600));
    assert_eq!((up.runs, up.failures), (10, 1));
    f.set(T0 + 5 * HOUR_MS);
    let mut w = f.writer(StoreOptions::default());
    assert!(w.pending());
    w.write(&[]).unwrap();
    assert_eq!(rollup_rows(&f, HOUR_MS), (4, 0));
    let up = r.uptime("a", Duration::from_secs(2 * 3600));
    assert_eq!((up.runs, up.failures), (10, 1));
    let strip = r.strip("a", 5, Duration::from_secs(5 * 3600));
    assert_eq!(
        strip.iter().map(|s| s.runs).collect::<Vec<_>>(),
        [60, 0, 0, 10, 0]
    );
}

/// The open hour's rows of a scenario no run added to for over a minute are written and leave
/// the writer's memory (a persistent session's setup steps run once per connection); a later
/// run of the same hour reads them back and adds to them, and rows of minutes that ended are
/// dropped once written.
#[test]
fn idle_hour_rows_are_written_early_and_read_back() {
    let f = Fake::new();
    let mut w = f.writer(StoreOptions::default());
    f.set(T0 + MINUTE_MS + 1_000);
    w.write(&[rec("a", T0 + MINUTE_MS, 0.1, true)]).unwrap();
    // Run and step rows: minute and hour, all cached; the hour rows listed, not written.
    assert_eq!((w.cached_rows(), rollup_rows(&f, HOUR_MS)), (4, (0, 2)));
    f.set(T0 + 2 * MINUTE_MS + 30_000);
    w.write(&[rec("b", T0 + 2 * MINUTE_MS, 0.1, true)]).unwrap();
    // a's minute ended over ten seconds ago: its minute rows are written and gone.
    assert_eq!((w.cached_rows(), rollup_rows(&f, HOUR_MS)), (6, (0, 4)));
    f.set(T0 + 3 * MINUTE_MS + 30_000);
    w.write(&[rec("b", T0 + 3 * MINUTE_MS, 0.1, true)]).unwrap();
    // a is idle: its hour rows are written and unlisted; b's stay.
    assert_eq!((w.cached_rows(), rollup_rows(&f, HOUR_MS)), (4, (2, 2)));
    f.set(T0 + 10 * MINUTE_MS + 1_000);
    w.write(&[rec("a", T0 + 10 * MINUTE_MS, 0.3, false)])
        .unwrap();
    // The hour is over and its row not rewritten yet: the early row on disk holds one run of
    // two, and is listed again, so readers take the hour from its minute rows.
    f.set(T0 + HOUR_MS + 1);
    let up = f.reader().uptime("a", Duration::from_secs(2 * 3600));
    assert_eq!((up.runs, up.failures), (2, 1));
    w.write(&[]).unwrap();
    assert_eq!(rollup_rows(&f, HOUR_MS), (4, 0));
    f.set(T0 + 3 * HOUR_MS);
    let r = f.reader();
    let pts = r.latency("a", None, T0, Duration::from_secs(3600));
    assert_eq!((pts.len(), pts[0].count), (1, 2));
    let up = r.uptime("a", Duration::from_secs(3 * 3600));
    assert_eq!((up.runs, up.failures), (2, 1));
}

/// A persistent session's setup steps run once per connection: their rows are written by the
/// batch that brings them and leave the cache, and a reconnect in the same hour adds to them.
#[test]
fn rows_of_steps_that_run_once_leave_the_cache_at_once() {
    let f = Fake::new();
    let mut w = f.writer(StoreOptions::default());
    let session_run = |at: i64, setup: bool| {
        let mut r = rec("a", at, 0.1, true);
        if setup {
            r.steps.insert(
                0,
                StepRow {
                    name: "login".into(),
                    kind: "tcp.send".into(),
                    success: true,
                    duration_s: 0.02,
                    phases: Vec::new(),
                    once: true,
                },
            );
        }
        r
    };
    f.set(T0 + MINUTE_MS + 1_000);
    w.write(&[session_run(T0 + MINUTE_MS, true)]).unwrap();
    // Run and `get` rows cached (minute and hour); login's two rows written and gone, its hour
    // row not listed as open.
    assert_eq!(w.cached_rows(), 4);
    let login = |f: &Fake, res: i64| -> i64 {
        rusqlite::Connection::open(schema::db_path(f.dir.path()))
            .unwrap()
            .query_row(
                "SELECT COALESCE(SUM(count), 0) FROM rollups WHERE step='login' AND res=?1",
                [res],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!((login(&f, MINUTE_MS), login(&f, HOUR_MS)), (1, 1));
    f.set(T0 + 5 * MINUTE_MS + 1_000);
    w.write(&[session_run(T0 + 5 * MINUTE_MS, true)]).unwrap();
    assert_eq!(
        login(&f, HOUR_MS),
        2,
        "the reconnect's login adds to the row read back"
    );
    f.set(T0 + 3 * HOUR_MS);
    let pts = f
        .reader()
        .latency("a", Some("login"), T0, Duration::from_secs(3600));
    assert_eq!((pts.len(), pts[0].count), (1, 2));
}

#[test]
fn runs_page_newest_first_and_filter() {
    let f = Fake::new();
    let mut w = f.writer(StoreOptions::default());
    let batch: Vec<Record> = (0..25)
        .map(|i| rec("a", T0 + i * 1000, 0.1, i % 5 != 0))
        .chain([rec("b", T0, 0.1, true)])
        .collect();
    w.write(&batch).unwrap();
    let r = f.reader();
    let page1 = r.runs(
        "a",
        &RunFilter {
            limit: 10,
            ..Default::default()
        },
    );
    assert_eq!(page1.len(), 10);
    assert_eq!(page1[0].started_ms, T0 + 24_000);
    assert!(page1.windows(2).all(|p| p[0].started_ms > p[1].started_ms));
    let page2 = r.runs(
        "a",
        &RunFilter {
            limit: 10,
            before_id: Some(page1[9].id),
            ..Default::default()
        },
    );
    assert_eq!(page2[0].started_ms, T0 + 14_000);
    let failures = r.runs(
        "a",
        &RunFilter {
            limit: 100,
            success: Some(false),
            ..Default::default()
        },
    );
    assert_eq!(failures.len(), 5);
    assert!(failures.iter().all(|r| !r.success && r.has_trace));
    assert_eq!(failures[0].reason.as_deref(), Some("timeout"));
    assert_eq!(failures[0].steps[0].phases[0].0, "connect");
    let ranged = r.runs(
        "a",
        &RunFilter {
            limit: 100,
            from_ms: Some(T0 + 5_000),
            to_ms: Some(T0 + 10_000),
            ..Default::default()
        },
    );
    assert_eq!(ranged.len(), 5);
    let (row, trace) = r.run("a", failures[0].id).unwrap();
    assert_eq!(row, failures[0]);
    assert_eq!(trace.unwrap()["scenario"], "x");
    // A run id of another scenario is not this one's.
    assert!(r.run("b", failures[0].id).is_none());
}

#[test]
fn incidents_open_count_and_close() {
    let f = Fake::new();
    let mut w = f.writer(StoreOptions::default());
    let seq = [true, false, false, true, true, false];
    let batch: Vec<Record> = seq
        .iter()
        .enumerate()
        .map(|(i, ok)| rec("a", T0 + i as i64 * 1000, 0.1, *ok))
        .collect();
    // In two batches: the open incident is found again after the writer restarts.
    w.write(&batch[..2]).unwrap();
    drop(w);
    let mut w = f.writer(StoreOptions::default());
    w.write(&batch[2..]).unwrap();
    let inc = f.reader().incidents("a", 0, 10);
    assert_eq!(inc.len(), 2);
    assert_eq!(inc[0].from_ms, T0 + 5000);
    assert_eq!(inc[0].to_ms, None);
    assert_eq!(inc[1].from_ms, T0 + 1000);
    assert_eq!(inc[1].to_ms, Some(T0 + 3000));
    assert_eq!(inc[1].failed_runs, 2);
    assert_eq!(inc[1].first_reason.as_deref(), Some("timeout"));
}

#[test]
fn retention_by_age_is_exact() {
    let f = Fake::new();
    let opts = StoreOptions {
        retention: Duration::from_secs(14 * 86_400),
        ..Default::default()
    };
    let mut w = f.writer(opts);
    // One run a day for 40 days, at noon.
    let batch: Vec<Record> = (0..40)
        .map(|d| rec("a", T0 + d * DAY_MS + DAY_MS / 2, 0.1, true))
        .collect();
    w.write(&batch).unwrap();
    // Now: day 40, 00:00. Runs from day 26 00:00 on stay (days 26..39: 14 runs).
    f.set(T0 + 40 * DAY_MS);
    let pruned = w.prune().unwrap();
    assert_eq!(pruned.runs, 26);
    let r = f.reader();
    let runs = r.runs(
        "a",
        &RunFilter {
            limit: 100,
            ..Default::default()
        },
    );
    assert_eq!(runs.len(), 14);
    assert_eq!(
        runs.last().unwrap().started_ms,
        T0 + 26 * DAY_MS + DAY_MS / 2
    );
    // Minute rows follow the runs; hour rows stay 31 days, so the 30-day uptime still counts
    // 30 runs (days 10..39) though only 14 raw runs remain.
    assert_eq!(r.uptime("a", Duration::from_secs(30 * 86_400)).runs, 30);
    assert_eq!(r.uptime("a", Duration::from_secs(20 * 86_400)).runs, 20);
    let minute_rows: i64 = rusqlite::Connection::open(schema::db_path(f.dir.path()))
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM rollups WHERE res=?1",
            [MINUTE_MS],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        minute_rows,
        14 * 2,
        "minute rows (run and step) older than the retention go"
    );
    // A day later, one more run has aged out.
    f.set(T0 + 41 * DAY_MS);
    assert_eq!(w.prune().unwrap().runs, 1);
}

#[test]
fn retention_by_size_drops_the_oldest_runs() {
    let f = Fake::new();
    let mut w = f.writer(StoreOptions {
        max_size: 0,
        ..Default::default()
    });
    let big = "x".repeat(2000);
    let batch: Vec<Record> = (0..2000)
        .map(|i| {
            let mut r = rec("a", T0 + i * 1000, 0.1, false);
            r.trace = Some(big.clone());
            r
        })
        .collect();
    w.write(&batch).unwrap();
    let before = w.used_bytes().unwrap();
    assert!(before > 4_000_000, "{before}");
    drop(w);
    let max = 1_000_000;
    let mut w = f.writer(StoreOptions {
        max_size: max,
        ..Default::default()
    });
    f.set(T0 + 2000 * 1000);
    let pruned = w.prune().unwrap();
    assert!(
        w.used_bytes().unwrap() <= max,
        "{}",
        w.used_bytes().unwrap()
    );
    let left = f.reader().runs(
        "a",
        &RunFilter {
            limit: 10_000,
            ..Default::default()
        },
    );
    assert_eq!(left.len() as u64 + pruned.runs, 2000);
    // The newest survive.
    assert_eq!(left[0].started_ms, T0 + 1_999_000);
    // Rollups are kept: uptime still knows every run.
    let up = f.reader().uptime("a", Duration::from_secs(3600));
    assert_eq!(up.runs, 2000);
}

#[test]
fn history_survives_reopening() {
    let f = Fake::new();
    let mut w = f.writer(StoreOptions::default());
    w.write(&[rec("a", T0, 0.1, true), rec("a", T0 + 1, 0.1, false)])
        .unwrap();
    drop(w);
    let mut w = f.writer(StoreOptions::default());
    // The same minute's rollup row, continued from disk after the restart.
    w.write(&[rec("a", T0 + 2, 0.1, true)]).unwrap();
    f.set(T0 + MINUTE_MS);
    let r = f.reader();
    assert_eq!(
        r.runs(
            "a",
            &RunFilter {
                limit: 10,
                ..Default::default()
            }
        )
        .len(),
        3
    );
    let up = r.uptime("a", Duration::from_secs(3600));
    assert_eq!((up.runs, up.failures), (3, 1));
}

#[test]
fn a_full_store_fails_the_batch_whole_and_recovers() {
    let f = Fake::new();
    let mut w = f.writer(StoreOptions::default());
    w.write(&[rec("a", T0, 0.1, true)]).unwrap();
    // SQLite's own "database or disk is full" (SQLITE_FULL), as on a full file system.
    let conn = rusqlite::Connection::open(schema::db_path(f.dir.path())).unwrap();
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    drop(conn);
    let mut w2 = Writer::new(
        {
            let c = schema::open_writer(f.dir.path()).unwrap();
            c.query_row(&format!("PRAGMA max_page_count={pages}"), [], |_| Ok(()))
                .unwrap();
            c
        },
        f.clock(),
        StoreOptions::default(),
    );
    drop(w);
    let big: Vec<Record> = (0..500)
        .map(|i| {
            let mut r = rec("a", T0 + i, 0.1, false);
            r.trace = Some("y".repeat(4000));
            r
        })
        .collect();
    let e = w2.write(&big).unwrap_err();
    assert!(e.to_string().contains("full"), "{e}");
    // Nothing of the failed batch is kept, and the rollups still agree with the runs.
    let r = f.reader();
    assert_eq!(
        r.runs(
            "a",
            &RunFilter {
                limit: 1000,
                ..Default::default()
            }
        )
        .len(),
        1
    );
    // Room again: the next batch is written, rollups rebuilt from disk, not from the lost one.
    let mut w3 = f.writer(StoreOptions::default());
    w3.write(&[rec("a", T0 + 1000, 0.1, true)]).unwrap();
    f.set(T0 + MINUTE_MS);
    let up = r.uptime("a", Duration::from_secs(3600));
    assert_eq!((up.runs, up.failures), (2, 0));
}

#[test]
fn store_thread_writes_batches_and_counts() {
    let f = Fake::new();
    let mut reg = prometheus_client::registry::Registry::default();
    let metrics = HistoryMetrics::register(&mut reg);
    let h = open(
        f.dir.path(),
        StoreOptions {
            flush_interval: Duration::from_millis(50),
            ..Default::default()
        },
        "eu",
        metrics.clone(),
        f.clock(),
    )
    .unwrap();
    // A second store on the same folder is refused (the folder lock), not shared.
    let second = open(
        f.dir.path(),
        StoreOptions::default(),
        "eu",
        metrics.clone(),
        f.clock(),
    );
    assert!(second.is_err());
    let tx = h.observer.sender_for_tests();
    for i in 0..100 {
        tx(rec("a", T0 + i, 0.1, true));
    }
    h.observer.close(Duration::from_secs(10));
    assert_eq!(metrics.runs_written.get(), 100);
    assert_eq!(metrics.up.get(), 1);
    assert_eq!(
        h.reader
            .runs(
                "a",
                &RunFilter {
                    limit: 1000,
                    ..Default::default()
                }
            )
            .len(),
        100
    );
}

/// A run whose steps `login` (0.1 s) and `send` (0.3 s, only in odd minutes) both pass.
fn two_steps(started_ms: i64) -> Record {
    let step = |name: &str, duration_s| StepRow {
        name: name.into(),
        kind: "tcp.send".into(),
        success: true,
        duration_s,
        phases: Vec::new(),
        once: false,
    };
    let mut r = rec("a", started_ms, 0.5, true);
    r.steps = vec![step("login", 0.1)];
    if (started_ms / MINUTE_MS) % 2 == 1 {
        r.steps.push(step("send", 0.3));
    }
    r
}

/// The writer keys its cached rows by a step number of its own: each step's minute and hour
/// rows stay its own, also after a restart, where the new writer numbers the step names in
/// the order it reads them back from `open_hours`.
#[test]
fn each_step_keeps_its_rows_across_a_restart() {
    let f = Fake::new();
    let mut w = f.writer(StoreOptions::default());
    f.set(T0 + 20 * MINUTE_MS);
    let runs: Vec<Record> = (0..20).map(|m| two_steps(T0 + m * MINUTE_MS)).collect();
    w.write(&runs).unwrap();
    drop(w);
    let mut w = f.writer(StoreOptions::default());
    // This writer meets `send` first (an odd minute).
    let runs: Vec<Record> = (21..61).map(|m| two_steps(T0 + m * MINUTE_MS)).collect();
    f.set(T0 + 61 * MINUTE_MS);
    w.write(&runs).unwrap();
    let r = f.reader();
    let count_p50 = |step, bucket: u64| {
        r.latency("a", step, T0, Duration::from_secs(bucket))
            .first()
            .map(|p| (p.count, p.p50_s))
    };
    // Hour rows (the first hour's, written by the batch after it ended).
    assert_eq!(count_p50(Some("login"), 3600), Some((59, 0.1)));
    assert_eq!(count_p50(Some("send"), 3600), Some((30, 0.3)));
    assert_eq!(count_p50(None, 3600), Some((59, 0.5)));
    // Minute rows.
    assert_eq!(count_p50(Some("send"), 60), Some((1, 0.3)));
    assert_eq!(count_p50(Some("login"), 60), Some((1, 0.1)));
    // Only the second hour's rows wait (its one run, at minute 60), until that hour ends.
    assert!(w.pending());
    f.set(T0 + 2 * HOUR_MS);
    w.write(&[]).unwrap();
    assert!(!w.pending());
    // The first hour: run, login, send; the second: run, login.
    assert_eq!(rollup_rows(&f, HOUR_MS), (5, 0));
}
