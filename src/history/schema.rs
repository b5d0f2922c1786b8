//! The store's file: `history.db` (SQLite in WAL mode) in the storage folder, with a `lock`
//! file beside it so two sonde processes never write one store.
//!
//! WAL: a commit is one append to the log, readers never block the writer, and a process killed
//! mid-write (`kill -9`) leaves the last committed batch intact — the half-written one is rolled
//! back when the file is next opened. `synchronous=NORMAL` syncs at checkpoints only: a power
//! cut may lose the last batches, never the file.
//!
//! `open_hours` lists the hour rollup rows the writer holds in memory and has not wholly written
//! (an hour row is written once its hour is over, or earlier while no run adds to it, see
//! `writer`): after a crash they are rebuilt from their minute rows, which every batch writes,
//! and readers take a listed hour from its minute rows.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// Resolution of the rollup rows, in milliseconds.
pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scenarios(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS runs(
    id INTEGER PRIMARY KEY,
    scenario_id INTEGER NOT NULL,
    region TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    success INTEGER NOT NULL,
    failed_step TEXT,
    reason TEXT,
    error TEXT,
    steps TEXT NOT NULL,
    trace TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_scenario ON runs(scenario_id, started_ms);
CREATE TABLE IF NOT EXISTS rollups(
    scenario_id INTEGER NOT NULL,
    res INTEGER NOT NULL,
    step TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    count INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    sum_s REAL NOT NULL,
    max_s REAL NOT NULL,
    hist BLOB NOT NULL,
    last_reason TEXT,
    PRIMARY KEY(scenario_id, res, step, start_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS incidents(
    id INTEGER PRIMARY KEY,
    scenario_id INTEGER NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER,
    failed_runs INTEGER NOT NULL,
    first_reason TEXT
);
CREATE INDEX IF NOT EXISTS incidents_by_scenario ON incidents(scenario_id, from_ms);
CREATE TABLE IF NOT EXISTS open_hours(
    scenario_id INTEGER NOT NULL,
    step TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    PRIMARY KEY(scenario_id, step, start_ms)
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', '1');
";

/// The database file in a storage folder.
pub fn db_path(folder: &Path) -> PathBuf {
    folder.join("history.db")
}

/// Why the store could not open: said once in the log, and the history is off.
#[derive(Debug)]
pub struct OpenError(pub String);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The folder's exclusive lock, held while the store is open.
pub struct FolderLock {
    _file: File,
}

/// Create the folder if needed and take its lock: a second sonde on the same folder gets
/// history off, not a store written by two processes.
pub fn lock_folder(folder: &Path) -> Result<FolderLock, OpenError> {
    std::fs::create_dir_all(folder)
        .map_err(|e| OpenError(format!("cannot create {}: {e}", folder.display())))?;
    let path = folder.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| OpenError(format!("cannot open {}: {e}", path.display())))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(OpenError(format!(
            "{} is in use by another sonde process ({})",
            folder.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(FolderLock { _file: file })
}

/// Open (creating if needed) the database for writing.
pub fn open_writer(folder: &Path) -> Result<Connection, OpenError> {
    let path = db_path(folder);
    let fail = |e: rusqlite::Error| OpenError(format!("cannot open {}: {e}", path.display()));
    let conn = Connection::open(&path).map_err(fail)?;
    // Incremental vacuum lets size-based retention give pages back to the file system; it only
    // takes effect on a new file (before the first table).
    conn.execute_batch(
        "PRAGMA auto_vacuum=INCREMENTAL;
         PRAGMA journal_mode=WAL;
         PRAGMA synchronous=NORMAL;
         PRAGMA busy_timeout=5000;",
    )
    .map_err(fail)?;
    conn.execute_batch(SCHEMA).map_err(fail)?;
    // A batch touches a row (and an index entry) per scenario, spread over the B-trees: a page
    // cache saves re-reading pages every batch. 4 MiB, not 32 or 8: the cache is live heap for
    // the process's life (32 MiB was ~6.5 KB of every session at 5,000 sessions a process,
    // bench/im-results.md), a miss is one read from the kernel's page cache, and the rollup
    // rows are written in key order (`Writer::write_due`), so consecutive writes share their
    // pages: 4 MiB sorted costs no more CPU than 8 MiB unsorted did (bench/history.sh). No map
    // for the writer: every page it touched through one stayed in the process's RSS
    // (file-backed, ~6 KB per session at 9,900 WebSocket sessions with the smaller cache).
    conn.execute_batch("PRAGMA cache_size=-4096; PRAGMA mmap_size=0;")
        .map_err(fail)?;
    // A read-only folder or file shows here, not at open.
    conn.execute_batch("BEGIN IMMEDIATE; UPDATE meta SET value=value WHERE key='schema'; COMMIT;")
        .map_err(fail)?;
    Ok(conn)
}

/// A second connection for readers (WAL: they see the last committed batch and never block the
/// writer).
pub fn open_reader(folder: &Path) -> Result<Connection, OpenError> {
    let path = db_path(folder);
    let fail = |e: rusqlite::Error| OpenError(format!("cannot open {}: {e}", path.display()));
    let conn = Connection::open(&path).map_err(fail)?;
    conn.execute_batch(
        "PRAGMA busy_timeout=5000; PRAGMA query_only=1; PRAGMA mmap_size=268435456;",
    )
    .map_err(fail)?;
    Ok(conn)
}
