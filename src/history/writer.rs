//! The store's one writer: a batch of records becomes one transaction — the runs, the minute and
//! hour rollup rows they touch, the incidents they open or close — so a crash loses the batch
//! whole or not at all, and the rollups always agree with the runs. Retention runs here too.
//!
//! The rollup rows of open minutes and hours are cached in memory with their full state, so a
//! batch rewrites each touched row once instead of reading it back; a failed commit drops the
//! caches (they are reloaded from disk on next touch).
//!
//! Minute rows are written by every batch that touches them (readers see the open minute).
//! Hour rows are not: readers take an hour's row only once the hour is over (the open hour,
//! and the one just ended while its row is not written yet, are read from their minute rows,
//! see `reader::covering`), so an hour row is written once, by the first batch after its hour
//! ends (or the minute's retention pass, when no run comes) — instead of by every batch, which
//! halves the rows a batch writes. A row no run added to for over a minute, or of a step that
//! runs once per connection, is written earlier and leaves the cache ([`idle`]); a run that
//! comes later reads it back. Until a row is
//! wholly written it is listed in `open_hours` (readers take a listed hour from its minute
//! rows); a writer that starts (after a crash or `kill -9`) or loses its caches rebuilds every
//! listed row from its minute rows — sketches merge exactly, so the rebuilt row is the one that
//! would have been written.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};

use super::record::{encode_steps, Record};
use super::row_cache::{RollKey, Row, RowCache};
use super::schema::{HOUR_MS, MINUTE_MS};
use super::sketch::Sketch;
use super::{Clock, StoreOptions};

/// Hour rows are kept at least this long, so 30-day uptime stays answerable.
pub const MIN_HOUR_RETENTION_MS: i64 = 31 * 86_400_000;

/// A scenario's incident state: the open incident's id while failing.
#[derive(Clone, Copy, Debug, Default)]
struct IncidentState {
    open: Option<i64>,
}

pub struct Writer {
    conn: Connection,
    clock: Clock,
    opts: StoreOptions,
    c: Caches,
}

/// What the writer keeps in memory between batches.
struct Caches {
    scenario_ids: HashMap<Arc<str>, i64>,
    rows: RowCache,
    /// How many rows are dirty.
    dirty: usize,
    incidents: HashMap<i64, IncidentState>,
    /// Step names by the index keys carry (`""` first), and the index of each.
    names: Vec<Arc<str>>,
    name_ids: HashMap<Arc<str>, u32>,
    /// The newest moment of the batch being written (see [`due`]).
    horizon: i64,
    /// The minute of `horizon`, as rows note when they were last touched.
    minute: u32,
    /// `open_hours` may list rows that are not in `rows`: read them back before the next batch.
    repair: bool,
}

impl Default for Caches {
    fn default() -> Self {
        Caches {
            scenario_ids: HashMap::new(),
            rows: RowCache::default(),
            dirty: 0,
            incidents: HashMap::new(),
            names: vec![Arc::from("")],
            name_ids: HashMap::from([(Arc::from(""), 0)]),
            horizon: i64::MIN,
            minute: 0,
            repair: true,
        }
    }
}

/// A row no run added to for over a minute: the open hour's row of a step that runs only now
/// and then (a persistent session's setup steps run once per connection) or of a scenario with
/// a long interval. It is written and leaves the cache rather than wait there for its hour to
/// end: memory held for every such row of every scenario, against one read if it is added to
/// again.
///
/// A row last added to by a step that runs once per connection is idle at once.
fn idle(c: &Row, minute: u32) -> bool {
    c.once || minute > c.touched.saturating_add(1)
}

/// How long a row stays cached after its bucket ended, for runs that started in it and are
/// written late (a long run, a batch still filling): later ones read it back from disk.
const LATE_MS: i64 = 10_000;

/// Whether a dirty row is written by a batch whose newest moment is `horizon`: minute rows
/// always, hour rows once their hour is over.
fn due(key: &RollKey, horizon: i64) -> bool {
    !key.hour || key.start + HOUR_MS <= horizon
}

/// What a prune removed.
#[derive(Debug, Default, PartialEq)]
pub struct Pruned {
    pub runs: u64,
    pub rollups: u64,
}

impl Writer {
    pub fn new(conn: Connection, clock: Clock, opts: StoreOptions) -> Writer {
        Writer {
            conn,
            clock,
            opts,
            c: Caches::default(),
        }
    }

    /// Write `batch` in one transaction. On error nothing of it is kept.
    pub fn write(&mut self, batch: &[Record]) -> rusqlite::Result<()> {
        let res = self.write_inner(batch);
        if res.is_err() {
            self.forget();
        }
        res
    }

    /// Drop every cache: after a failed commit they may hold what is not on disk.
    fn forget(&mut self) {
        self.c = Caches::default();
    }

    fn write_inner(&mut self, batch: &[Record]) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        // The batch's newest moment: the clock, or a run that started later (a fake clock, or
        // runs written in bulk, as `history_fill` does).
        let now = (self.clock)();
        let horizon = batch.iter().map(|r| r.started_ms).fold(now, i64::max);
        self.c.horizon = horizon;
        self.c.minute = u32::try_from(horizon.div_euclid(MINUTE_MS)).unwrap_or(0);
        if self.c.repair {
            self.c.reload_open_hours(&tx)?;
        }
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO runs(scenario_id, region, started_ms, duration_s, success, \
                 failed_step, reason, error, steps, trace) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
            )?;
            for r in batch {
                let sid = scenario_id(&tx, &mut self.c.scenario_ids, &r.scenario)?;
                insert.execute(params![
                    sid,
                    &*r.region,
                    r.started_ms,
                    r.duration_s,
                    r.success,
                    r.failed_step,
                    r.reason,
                    r.error,
                    encode_steps(&r.steps),
                    r.trace,
                ])?;
                self.c.fold(&tx, sid, r)?;
                self.c.incident(&tx, sid, r)?;
            }
        }
        let written = self.c.write_due(&tx, horizon)?;
        tx.commit()?;
        for key in &written {
            self.c.clean(key);
        }
        self.c.evict_closed_rows(now);
        Ok(())
    }

    /// Rows in the cache (tests: what the writer holds).
    #[cfg(test)]
    pub fn cached_rows(&self) -> usize {
        self.c.rows.len()
    }

    /// Whether rows wait in memory to be written (an idle writer still writes them when due).
    pub fn pending(&self) -> bool {
        self.c.dirty > 0 || self.c.repair
    }

    /// Retention (after writing the rows that fell due): by age (runs and minute rows older than the retention, hour rows older than
    /// the longer of it and 31 days, closed incidents likewise), then by size (the oldest runs,
    /// a tenth of their time span at a time, until the store fits).
    pub fn prune(&mut self) -> rusqlite::Result<Pruned> {
        // Hour rows whose hour ended since the last batch (no run came since) are written now.
        if self.pending() {
            self.write(&[])?;
        }
        let now = (self.clock)();
        let keep_ms = self.opts.retention.as_millis() as i64;
        let cutoff = now - keep_ms;
        let long_cutoff = now - keep_ms.max(MIN_HOUR_RETENTION_MS);
        let mut pruned = Pruned::default();
        let tx = self.conn.unchecked_transaction()?;
        for sid in scenario_ids(&tx)? {
            pruned.runs += tx
                .prepare_cached("DELETE FROM runs WHERE scenario_id=?1 AND started_ms<?2")?
                .execute(params![sid, cutoff])? as u64;
            pruned.rollups += tx
                .prepare_cached(
                    "DELETE FROM rollups WHERE scenario_id=?1 AND res=?2 AND start_ms<?3",
                )?
                .execute(params![sid, MINUTE_MS, cutoff])? as u64;
            pruned.rollups += tx
                .prepare_cached(
                    "DELETE FROM rollups WHERE scenario_id=?1 AND res=?2 AND start_ms<?3",
                )?
                .execute(params![sid, HOUR_MS, long_cutoff])? as u64;
        }
        tx.execute(
            "DELETE FROM incidents WHERE to_ms IS NOT NULL AND to_ms<?1",
            [long_cutoff],
        )?;
        tx.commit()?;
        // Rows not yet written stay: they are the only copy of what they hold.
        self.c.rows.retain(|_, c| c.dirty);
        pruned.runs += self.prune_to_size()?;
        Ok(pruned)
    }

    /// Bytes the store's data takes (pages in use, the WAL aside).
    pub fn used_bytes(&self) -> rusqlite::Result<u64> {
        let q = |p: &str| -> rusqlite::Result<i64> {
            self.conn
                .query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
        };
        let used = q("page_count")? - q("freelist_count")?;
        Ok((used.max(0) * q("page_size")?) as u64)
    }

    /// Drop the oldest runs until the data fits in 90 % of the limit, assuming runs arrive at
    /// an even rate (so a few rounds suffice); every delete goes through the per-scenario index.
    fn prune_to_size(&mut self) -> rusqlite::Result<u64> {
        let max = self.opts.max_size;
        let mut removed = 0;
        for _ in 0..10 {
            let used = self.used_bytes()?;
            if max == 0 || used <= max {
                break;
            }
            let lo: Option<i64> = self.conn.query_row(
                "SELECT MIN((SELECT MIN(started_ms) FROM runs WHERE scenario_id=s.id)) \
                 FROM scenarios s",
                [],
                |r| r.get(0),
            )?;
            let Some(lo) = lo else {
                break;
            };
            let hi = (self.clock)().max(lo + 1);
            let frac = ((used as f64 - 0.9 * max as f64) / used as f64).clamp(0.02, 1.0);
            let cut = lo + (((hi - lo) as f64 * frac) as i64).max(1);
            let tx = self.conn.unchecked_transaction()?;
            for sid in scenario_ids(&tx)? {
                removed += tx
                    .prepare_cached("DELETE FROM runs WHERE scenario_id=?1 AND started_ms<?2")?
                    .execute(params![sid, cut])? as u64;
            }
            tx.commit()?;
        }
        self.conn.execute_batch("PRAGMA incremental_vacuum;")?;
        Ok(removed)
    }
}

fn scenario_ids(c: &Connection) -> rusqlite::Result<Vec<i64>> {
    let mut st = c.prepare_cached("SELECT id FROM scenarios")?;
    let rows = st.query_map([], |r| r.get(0))?;
    rows.collect()
}

impl Caches {
    /// Add the run and each of its steps to their minute and hour rows.
    fn fold(&mut self, tx: &Connection, sid: i64, r: &Record) -> rusqlite::Result<()> {
        for (hour, res) in [(false, MINUTE_MS), (true, HOUR_MS)] {
            let start = r.started_ms.div_euclid(res) * res;
            let at = |step| RollKey {
                sid,
                start,
                step,
                hour,
            };
            self.row(tx, at(0), false)?
                .add(r.duration_s, r.success, r.reason);
            for s in &r.steps {
                let reason = if s.success { None } else { r.reason };
                let key = at(self.step_id(&s.name));
                self.row(tx, key, s.once)?
                    .add(s.duration_s, s.success, reason);
            }
        }
        Ok(())
    }

    /// The index of a step name in `names` (added on first sight): keys are made for every
    /// step of every run, without an allocation each.
    fn step_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 step names");
        let n: Arc<str> = Arc::from(name);
        self.names.push(n.clone());
        self.name_ids.insert(n, id);
        id
    }

    /// The cached row for `key` (read from disk on first touch), marked dirty. An hour row
    /// that is not due yet is listed in `open_hours` (in this batch's transaction) when it
    /// enters the cache, so a crash before it is written leaves a note to rebuild it.
    ///
    /// The row of a step that runs `once` per connection life is [`idle`] at once: it is
    /// written by this batch and leaves the cache, instead of waiting a minute or two for the
    /// next run that will not come (ten rows per session, while 10,000 sessions connect).
    fn row(&mut self, tx: &Connection, key: RollKey, once: bool) -> rusqlite::Result<&mut Sketch> {
        let open = !due(&key, self.horizon);
        // Looked up twice on a hit: returning the first borrow from the match would keep
        // `self.rows` borrowed for the miss as well.
        if self.rows.contains(&key) {
            let c = self.rows.get_mut(&key).expect("just found");
            c.touched = self.minute;
            c.once = once;
            if !c.dirty {
                c.dirty = true;
                self.dirty += 1;
            }
            return Ok(&mut c.sketch);
        }
        let name = &self.names[key.step as usize];
        let s = if key.hour {
            let s = match load_row(tx, &key, name)? {
                Some(s) => s,
                None => hour_from_minutes(tx, &key, name)?,
            };
            if open {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO open_hours(scenario_id, step, start_ms) \
                     VALUES (?1,?2,?3)",
                )?
                .execute(params![key.sid, &**name, key.start])?;
            }
            s
        } else {
            load_row(tx, &key, name)?.unwrap_or_default()
        };
        self.dirty += 1;
        let c = self.rows.insert(key.sid, Row::new(key, self.minute, s));
        c.once = once;
        Ok(&mut c.sketch)
    }

    /// Mark the row of `key` written.
    fn clean(&mut self, key: &RollKey) {
        if let Some(c) = self.rows.get_mut(key).filter(|c| c.dirty) {
            c.dirty = false;
            self.dirty -= 1;
        }
    }

    /// Write the dirty rows that are due or idle; hour rows written leave `open_hours`. Returns
    /// the keys written, to be marked clean once the transaction commits.
    fn write_due(&self, tx: &Connection, horizon: i64) -> rusqlite::Result<Vec<RollKey>> {
        let mut upsert = tx.prepare_cached(
            "INSERT OR REPLACE INTO rollups(scenario_id, res, step, start_ms, count, failures, \
             sum_s, max_s, hist, last_reason) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
        )?;
        let mut unlist = tx.prepare_cached(
            "DELETE FROM open_hours WHERE scenario_id=?1 AND step=?2 AND start_ms=?3",
        )?;
        let mut written = Vec::new();
        let mut due_rows: Vec<(RollKey, &Row)> = self
            .rows
            .iter()
            .filter(|(k, c)| c.dirty && (due(k, horizon) || idle(c, self.minute)))
            .collect();
        // In the table's key order (scenario, resolution, step name, start): the cache holds
        // rows in hash order, and upserts in that order walk the B-tree at random, each from
        // its root to another leaf. In key order, consecutive upserts share their path and
        // mostly their leaf, so the page cache need hold little more than one path.
        due_rows.sort_unstable_by(|(a, _), (b, _)| {
            (a.sid, a.hour, &*self.names[a.step as usize], a.start).cmp(&(
                b.sid,
                b.hour,
                &*self.names[b.step as usize],
                b.start,
            ))
        });
        for (key, c) in due_rows {
            let name = &*self.names[key.step as usize];
            let s = &c.sketch;
            if s.count == 0 {
                // Nothing to write (an open hour whose minute rows are gone): only unlisted.
                if key.hour {
                    unlist.execute(params![key.sid, name, key.start])?;
                }
                written.push(key);
                continue;
            }
            upsert.execute(params![
                key.sid,
                key.res(),
                name,
                key.start,
                s.count as i64,
                s.failures as i64,
                s.sum_s,
                s.max_s,
                s.hist_bytes(),
                s.last_reason,
            ])?;
            if key.hour {
                unlist.execute(params![key.sid, name, key.start])?;
            }
            written.push(key);
        }
        Ok(written)
    }

    /// Read back the rows `open_hours` lists that the cache lacks (after a start or a failed
    /// commit), rebuilt from their minute rows, as dirty rows to be written when due.
    fn reload_open_hours(&mut self, tx: &Connection) -> rusqlite::Result<()> {
        let listed: Vec<(i64, String, i64)> = {
            let mut st = tx.prepare_cached("SELECT scenario_id, step, start_ms FROM open_hours")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (sid, step, start) in listed {
            let key = RollKey {
                sid,
                start,
                step: self.step_id(&step),
                hour: true,
            };
            if self.rows.contains(&key) {
                continue;
            }
            let s = hour_from_minutes(tx, &key, &step)?;
            self.rows.insert(sid, Row::new(key, self.minute, s));
            self.dirty += 1;
        }
        self.repair = false;
        Ok(())
    }

    /// Forget cached rows that are written, once their bucket ended [`LATE_MS`] ago or they
    /// are [`idle`] (a late run reads its row back from disk).
    fn evict_closed_rows(&mut self, now: i64) {
        let minute = self.minute;
        self.rows
            .retain(|k, c| c.dirty || (k.start + k.res() + LATE_MS > now && !idle(c, minute)));
    }

    /// Open an incident on a failure after a success (or the first run), count failures while
    /// it is open, close it at the next success.
    fn incident(&mut self, tx: &Connection, sid: i64, r: &Record) -> rusqlite::Result<()> {
        let state = match self.incidents.get(&sid) {
            Some(s) => *s,
            None => IncidentState {
                open: tx
                    .prepare_cached(
                        "SELECT id FROM incidents WHERE scenario_id=?1 AND to_ms IS NULL \
                         ORDER BY from_ms DESC LIMIT 1",
                    )?
                    .query_row([sid], |row| row.get(0))
                    .optional()?,
            },
        };
        let next = match (state.open, r.success) {
            (None, true) => state,
            (Some(id), true) => {
                tx.prepare_cached("UPDATE incidents SET to_ms=?2 WHERE id=?1")?
                    .execute(params![id, r.started_ms])?;
                IncidentState { open: None }
            }
            (Some(id), false) => {
                tx.prepare_cached("UPDATE incidents SET failed_runs=failed_runs+1 WHERE id=?1")?
                    .execute([id])?;
                state
            }
            (None, false) => {
                tx.prepare_cached(
                    "INSERT INTO incidents(scenario_id, from_ms, failed_runs, first_reason) \
                     VALUES (?1, ?2, 1, ?3)",
                )?
                .execute(params![sid, r.started_ms, r.reason])?;
                IncidentState {
                    open: Some(tx.last_insert_rowid()),
                }
            }
        };
        self.incidents.insert(sid, next);
        Ok(())
    }
}

/// The id of scenario `name`, added on first sight.
fn scenario_id(
    tx: &Connection,
    cache: &mut HashMap<Arc<str>, i64>,
    name: &Arc<str>,
) -> rusqlite::Result<i64> {
    if let Some(id) = cache.get(name) {
        return Ok(*id);
    }
    tx.prepare_cached("INSERT OR IGNORE INTO scenarios(name) VALUES (?1)")?
        .execute([&**name])?;
    let id: i64 = tx
        .prepare_cached("SELECT id FROM scenarios WHERE name=?1")?
        .query_row([&**name], |r| r.get(0))?;
    cache.insert(name.clone(), id);
    Ok(id)
}

/// The row of `key` (whose step is named `step`) on disk.
fn load_row(tx: &Connection, key: &RollKey, step: &str) -> rusqlite::Result<Option<Sketch>> {
    tx.prepare_cached(
        "SELECT count, failures, sum_s, max_s, hist, last_reason FROM rollups \
         WHERE scenario_id=?1 AND res=?2 AND step=?3 AND start_ms=?4",
    )?
    .query_row(
        params![key.sid, key.res(), step, key.start],
        super::reader::sketch_of,
    )
    .optional()
}

/// An hour row as the sum of its minute rows on disk (an hour row not written yet).
fn hour_from_minutes(tx: &Connection, key: &RollKey, step: &str) -> rusqlite::Result<Sketch> {
    let mut total = Sketch::default();
    let mut minutes = Vec::new();
    super::reader::rows(
        tx,
        key.sid,
        MINUTE_MS,
        step,
        key.start,
        key.start + HOUR_MS,
        &mut minutes,
    )?;
    for (_, s) in &minutes {
        total.merge(s);
    }
    Ok(total)
}
