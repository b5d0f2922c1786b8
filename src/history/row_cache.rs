//! The writer's cached rollup rows, grouped by scenario.
//!
//! A persistent session keeps ~10–15 rows cached (the open hour's row of every step it ran,
//! setup included, and the open minute's). In one hash table keyed by row, each cost a 40-byte
//! entry in a table kept at most 7/8 full and doubled (up to 80 bytes) plus a boxed sketch: ~180
//! bytes a row, 10,000 sessions times. Grouped, a scenario's rows sit inline in one vector
//! (~104 bytes a row) under one table entry; a batch touches the rows of a run's scenario only,
//! found by a scan of that scenario's few rows.

use std::collections::HashMap;

use super::schema::{HOUR_MS, MINUTE_MS};
use super::sketch::Sketch;

/// A rollup row's key: scenario, start, step (an index into the writer's step names; 0 is `""`,
/// the whole run) and resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct RollKey {
    pub sid: i64,
    pub start: i64,
    pub step: u32,
    pub hour: bool,
}

impl RollKey {
    /// The row's resolution in milliseconds.
    pub fn res(&self) -> i64 {
        if self.hour {
            HOUR_MS
        } else {
            MINUTE_MS
        }
    }
}

/// A cached row: its key without the scenario, its state and its sketch.
#[derive(Debug)]
pub(super) struct Row {
    start: i64,
    step: u32,
    hour: bool,
    /// Changed since last written.
    pub dirty: bool,
    /// The minute of the last batch that added to the row.
    pub touched: u32,
    /// Last added to by a step that runs once per connection: idle at once.
    pub once: bool,
    pub sketch: Sketch,
}

impl Row {
    pub fn new(key: RollKey, touched: u32, sketch: Sketch) -> Row {
        Row {
            start: key.start,
            step: key.step,
            hour: key.hour,
            dirty: true,
            touched,
            once: false,
            sketch,
        }
    }

    fn is(&self, key: &RollKey) -> bool {
        self.start == key.start && self.step == key.step && self.hour == key.hour
    }

    fn key(&self, sid: i64) -> RollKey {
        RollKey {
            sid,
            start: self.start,
            step: self.step,
            hour: self.hour,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct RowCache {
    by_scenario: HashMap<i64, Vec<Row>>,
}

impl RowCache {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_scenario.values().map(Vec::len).sum()
    }

    pub fn get_mut(&mut self, key: &RollKey) -> Option<&mut Row> {
        let rows = self.by_scenario.get_mut(&key.sid)?;
        rows.iter_mut().find(|r| r.is(key))
    }

    pub fn contains(&self, key: &RollKey) -> bool {
        self.by_scenario
            .get(&key.sid)
            .is_some_and(|rows| rows.iter().any(|r| r.is(key)))
    }

    /// Add a row the cache does not hold.
    pub fn insert(&mut self, sid: i64, row: Row) -> &mut Row {
        let rows = self.by_scenario.entry(sid).or_default();
        // Growing by a quarter, not doubling: a scenario's rows stay for the hour, and a
        // doubled vector's unused half would too.
        if rows.len() == rows.capacity() {
            rows.reserve_exact((rows.len() / 4).max(1));
        }
        rows.push(row);
        rows.last_mut().expect("just pushed")
    }

    pub fn iter(&self) -> impl Iterator<Item = (RollKey, &Row)> {
        self.by_scenario
            .iter()
            .flat_map(|(sid, rows)| rows.iter().map(move |r| (r.key(*sid), r)))
    }

    /// Keep the rows `keep` says to; a scenario's vector gives back room it no longer needs.
    pub fn retain(&mut self, mut keep: impl FnMut(&RollKey, &Row) -> bool) {
        self.by_scenario.retain(|sid, rows| {
            rows.retain(|r| keep(&r.key(*sid), r));
            if rows.capacity() > 2 * rows.len() + 2 {
                rows.shrink_to_fit();
            }
            !rows.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sid: i64, start: i64, step: u32, hour: bool) -> RollKey {
        RollKey {
            sid,
            start,
            step,
            hour,
        }
    }

    #[test]
    fn rows_are_found_by_their_whole_key_and_retained_by_it() {
        let mut c = RowCache::default();
        let keys = [
            key(1, 0, 0, false),
            key(1, 0, 0, true),
            key(1, 60, 2, false),
        ];
        for (i, k) in keys.iter().enumerate() {
            assert!(!c.contains(k));
            c.insert(k.sid, Row::new(*k, i as u32, Sketch::default()));
        }
        c.insert(2, Row::new(key(2, 0, 0, false), 9, Sketch::default()));
        assert_eq!(c.len(), 4);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(c.get_mut(k).map(|r| r.touched), Some(i as u32));
        }
        assert!(c.get_mut(&key(3, 0, 0, false)).is_none());
        c.retain(|k, _| k.hour || k.sid == 2);
        assert_eq!(c.len(), 2);
        let mut left: Vec<RollKey> = c.iter().map(|(k, _)| k).collect();
        left.sort_by_key(|k| k.sid);
        assert_eq!(left, [key(1, 0, 0, true), key(2, 0, 0, false)]);
        c.retain(|_, _| false);
        assert_eq!((c.len(), c.by_scenario.len()), (0, 0));
    }
}
