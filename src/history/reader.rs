//! [`HistoryRead`] over the store: listings from the runs table, uptime, strips and latency from
//! the rollup rows (hour rows where a question is coarse enough, minute rows otherwise), so a
//! 30-day view reads ~720 rows, not millions of runs.
//!
//! Windows are counted in whole rollup rows: a row belongs to the window or slot its start falls
//! in (so a window's edges are exact to the minute).

use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::record::decode_steps;
use super::schema::{HOUR_MS, MINUTE_MS};
use super::sketch::Sketch;
use super::{Clock, HistoryRead, Incident, LatencyPoint, RunFilter, RunRow, Slot, Uptime};

/// Readers share a few connections (WAL: each reads the last committed batch, none blocks the
/// writer); a question takes the first free one.
pub struct Reader {
    conns: Vec<Mutex<Connection>>,
    next: std::sync::atomic::AtomicUsize,
    clock: Clock,
}

/// At most this many points or slots in one answer.
pub const MAX_POINTS: usize = 5_000;

pub(super) fn sketch_of(r: &Row<'_>) -> rusqlite::Result<Sketch> {
    let mut s = Sketch {
        count: r.get::<_, i64>(0)? as u64,
        failures: r.get::<_, i64>(1)? as u64,
        sum_s: r.get(2)?,
        max_s: r.get(3)?,
        hist: Vec::new(),
        last_reason: r.get(5)?,
    };
    s.set_hist_bytes(&r.get::<_, Vec<u8>>(4)?);
    Ok(s)
}

const RUN_COLUMNS: &str =
    "id, region, started_ms, duration_s, success, failed_step, reason, error, steps, trace IS NOT NULL";

fn run_of(scenario: &str, r: &Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        scenario: scenario.to_string(),
        region: r.get(1)?,
        started_ms: r.get(2)?,
        duration_s: r.get(3)?,
        success: r.get(4)?,
        failed_step: r.get(5)?,
        reason: r.get(6)?,
        error: r.get(7)?,
        steps: decode_steps(&r.get::<_, String>(8)?),
        has_trace: r.get(9)?,
    })
}

impl Reader {
    pub fn new(conn: Connection, clock: Clock) -> Reader {
        Self::pool(vec![conn], clock)
    }

    /// A reader over several connections to the same store.
    pub fn pool(conns: Vec<Connection>, clock: Clock) -> Reader {
        assert!(!conns.is_empty(), "a reader needs a connection");
        Reader {
            conns: conns.into_iter().map(Mutex::new).collect(),
            next: Default::default(),
            clock,
        }
    }

    fn with<T: Default>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> T {
        let free = self.conns.iter().find_map(|c| c.try_lock().ok());
        let conn = free.unwrap_or_else(|| {
            let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.conns[i % self.conns.len()]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        });
        match f(&conn) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!("history read failed: {e}");
                T::default()
            }
        }
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }
}

fn sid(c: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached("SELECT id FROM scenarios WHERE name=?1")?
        .query_row([name], |r| r.get(0))
        .optional()
}

/// Rollup rows of one resolution starting in `[from, to)`.
pub(super) fn rows(
    c: &Connection,
    sid: i64,
    res: i64,
    step: &str,
    from: i64,
    to: i64,
    out: &mut Vec<(i64, Sketch)>,
) -> rusqlite::Result<()> {
    let mut st = c.prepare_cached(
        "SELECT count, failures, sum_s, max_s, hist, last_reason, start_ms FROM rollups \
         WHERE scenario_id=?1 AND res=?2 AND step=?3 AND start_ms>=?4 AND start_ms<?5 \
         ORDER BY start_ms",
    )?;
    let it = st.query_map(params![sid, res, step, from, to], |r| {
        Ok((r.get::<_, i64>(6)?, sketch_of(r)?))
    })?;
    for row in it {
        out.push(row?);
    }
    Ok(())
}

/// The rollup rows covering `[from, to)`: hour rows for whole hours inside it when `hours`,
/// minute rows for the rest; by start. The writer writes an hour's row at its first batch after
/// the hour ends, so the hour just ended may have none yet: then its minute rows answer. It
/// may also have one written early (the row was idle) and added to since, which `open_hours`
/// still lists: its minute rows answer then too.
pub(super) fn covering(
    c: &Connection,
    sid: i64,
    step: &str,
    from: i64,
    to: i64,
    hours: bool,
) -> rusqlite::Result<Vec<(i64, Sketch)>> {
    let mut out = Vec::new();
    let h0 = from.div_euclid(HOUR_MS) * HOUR_MS + if from % HOUR_MS == 0 { 0 } else { HOUR_MS };
    let h1 = to.div_euclid(HOUR_MS) * HOUR_MS;
    if hours && h1 > h0 {
        rows(c, sid, MINUTE_MS, step, from, h0, &mut out)?;
        rows(c, sid, HOUR_MS, step, h0, h1, &mut out)?;
        let last = h1 - HOUR_MS;
        let have_last = out.last().map(|(start, _)| *start) == Some(last);
        if have_last && listed_open(c, sid, step, last)? {
            out.pop();
        }
        if out.last().map(|(start, _)| *start) != Some(last) {
            rows(c, sid, MINUTE_MS, step, last, h1, &mut out)?;
        }
        rows(c, sid, MINUTE_MS, step, h1, to, &mut out)?;
    } else {
        rows(c, sid, MINUTE_MS, step, from, to, &mut out)?;
    }
    Ok(out)
}

/// Whether the writer holds the hour row at `start` in memory, not (wholly) written yet.
fn listed_open(c: &Connection, sid: i64, step: &str, start: i64) -> rusqlite::Result<bool> {
    c.prepare_cached(
        "SELECT EXISTS(SELECT 1 FROM open_hours WHERE scenario_id=?1 AND step=?2 AND start_ms=?3)",
    )?
    .query_row(params![sid, step, start], |r| r.get(0))
}

impl HistoryRead for Reader {
    fn runs(&self, scenario: &str, f: &RunFilter) -> Vec<RunRow> {
        self.with(|c| {
            let Some(sid) = sid(c, scenario)? else {
                return Ok(Vec::new());
            };
            // The page cursor: runs before the given one in (start, id) order.
            let cursor: (i64, i64) = match f.before_id {
                None => (i64::MAX, i64::MAX),
                Some(b) => c
                    .prepare_cached("SELECT started_ms FROM runs WHERE id=?1 AND scenario_id=?2")?
                    .query_row(params![b, sid], |r| r.get(0))
                    .optional()?
                    .map_or((i64::MAX, b), |s| (s, b)),
            };
            let mut st = c.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE scenario_id=?1 AND started_ms>=?2 \
                 AND started_ms<?3 AND started_ms<=?4 AND (started_ms<?4 OR id<?5) \
                 AND (?6 IS NULL OR success=?6) ORDER BY started_ms DESC, id DESC LIMIT ?7"
            ))?;
            let it = st.query_map(
                params![
                    sid,
                    f.from_ms.unwrap_or(i64::MIN),
                    f.to_ms.unwrap_or(i64::MAX),
                    cursor.0,
                    cursor.1,
                    f.success,
                    f.limit.clamp(1, 10_000) as i64,
                ],
                |r| run_of(scenario, r),
            )?;
            it.collect()
        })
    }

    fn run(&self, scenario: &str, id: i64) -> Option<(RunRow, Option<serde_json::Value>)> {
        self.with(|c| {
            let Some(sid) = sid(c, scenario)? else {
                return Ok(None);
            };
            c.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS}, trace FROM runs WHERE id=?1 AND scenario_id=?2"
            ))?
            .query_row(params![id, sid], |r| {
                let trace: Option<String> = r.get(10)?;
                Ok((
                    run_of(scenario, r)?,
                    trace.and_then(|t| serde_json::from_str(&t).ok()),
                ))
            })
            .optional()
        })
    }

    fn uptime(&self, scenario: &str, window: Duration) -> Uptime {
        let now = self.now();
        let window_ms = window.as_millis() as i64;
        let mut up = self.with(|c| {
            let Some(sid) = sid(c, scenario)? else {
                return Ok(Uptime::default());
            };
            let mut total = Sketch::default();
            for (_, s) in covering(c, sid, "", now - window_ms, now + 1, true)? {
                total.merge(&s);
            }
            Ok(Uptime {
                window_s: 0,
                runs: total.count,
                failures: total.failures,
                ratio: (total.count > 0)
                    .then(|| (total.count - total.failures) as f64 / total.count as f64),
            })
        });
        up.window_s = window.as_secs();
        up
    }

    fn strip(&self, scenario: &str, slots: usize, span: Duration) -> Vec<Slot> {
        let now = self.now();
        let slots = slots.clamp(1, MAX_POINTS);
        let span_ms = (span.as_millis() as i64).max(slots as i64);
        let width = span_ms / slots as i64;
        // The last slot reaches up to now, included.
        let from = now - width * slots as i64;
        let mut acc = vec![Sketch::default(); slots];
        self.with(|c| {
            if let Some(sid) = sid(c, scenario)? {
                for (start, s) in covering(c, sid, "", from, now + 1, width >= HOUR_MS)? {
                    let i = ((start.max(from) - from) / width).clamp(0, slots as i64 - 1);
                    acc[i as usize].merge(&s);
                }
            }
            Ok(())
        });
        acc.into_iter()
            .enumerate()
            .map(|(i, s)| Slot {
                start_ms: from + i as i64 * width,
                end_ms: from + (i as i64 + 1) * width,
                runs: s.count,
                failures: s.failures,
                mean_duration_s: s.mean(),
                last_reason: s.last_reason,
            })
            .collect()
    }

    fn latency(
        &self,
        scenario: &str,
        step: Option<&str>,
        from_ms: i64,
        bucket: Duration,
    ) -> Vec<LatencyPoint> {
        let now = self.now();
        let bucket = (bucket.as_millis() as i64).max(MINUTE_MS);
        // No more than MAX_POINTS buckets: a far `from` is brought closer.
        let from_ms = from_ms.max(now - bucket * MAX_POINTS as i64);
        self.with(|c| {
            let Some(sid) = sid(c, scenario)? else {
                return Ok(Vec::new());
            };
            let mut points: Vec<(i64, Sketch)> = Vec::new();
            let hours = bucket % HOUR_MS == 0;
            for (start, s) in covering(c, sid, step.unwrap_or(""), from_ms, now + 1, hours)? {
                let t = start.div_euclid(bucket) * bucket;
                match points.last_mut() {
                    Some((lt, acc)) if *lt == t => acc.merge(&s),
                    _ => points.push((t, s)),
                }
            }
            Ok(points
                .into_iter()
                .map(|(t, s)| LatencyPoint {
                    t_ms: t,
                    count: s.count,
                    p50_s: s.quantile(0.5),
                    p95_s: s.quantile(0.95),
                })
                .collect())
        })
    }

    fn incidents(&self, scenario: &str, from_ms: i64, limit: usize) -> Vec<Incident> {
        self.with(|c| {
            let Some(sid) = sid(c, scenario)? else {
                return Ok(Vec::new());
            };
            let mut st = c.prepare_cached(
                "SELECT from_ms, to_ms, failed_runs, first_reason FROM incidents \
                 WHERE scenario_id=?1 AND (to_ms IS NULL OR to_ms>=?2) \
                 ORDER BY from_ms DESC LIMIT ?3",
            )?;
            let it = st.query_map(params![sid, from_ms, limit.clamp(1, 10_000) as i64], |r| {
                Ok(Incident {
                    from_ms: r.get(0)?,
                    to_ms: r.get(1)?,
                    failed_runs: r.get::<_, i64>(2)? as u64,
                    first_reason: r.get(3)?,
                })
            })?;
            it.collect()
        })
    }
}
