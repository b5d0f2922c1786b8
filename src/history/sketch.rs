//! The latency sketch of a rollup row: a fixed-bucket histogram (three buckets per doubling, from
//! 0.1 ms to ~100 s) with the count, failures, sum and maximum. Two sketches merge by adding, so
//! minute rows fold into hours and slots exactly; a quantile is the upper bound of its bucket
//! (at most 26 % above the truth), capped by the largest value seen — so a series of equal
//! durations reads back exactly.

/// Buckets per doubling of the duration.
const PER_DOUBLING: f64 = 3.0;
/// The first bucket's upper bound, in seconds.
const FIRST: f64 = 0.0001;
/// Buckets, the last one open-ended (everything above ~105 s).
pub const BUCKETS: usize = 62;

/// Upper bound of bucket `i` in seconds (`inf` for the last).
pub fn upper_bound(i: usize) -> f64 {
    if i + 1 >= BUCKETS {
        return f64::INFINITY;
    }
    FIRST * 2f64.powf(i as f64 / PER_DOUBLING)
}

/// The bucket of a duration in seconds.
pub fn bucket_of(secs: f64) -> usize {
    if secs.is_nan() || secs <= FIRST {
        return 0;
    }
    let i = ((secs / FIRST).log2() * PER_DOUBLING).ceil() as usize;
    // Rounding at an exact bound: the bound belongs to its own bucket.
    let i = if i > 0 && secs <= upper_bound(i - 1) {
        i - 1
    } else {
        i
    };
    i.min(BUCKETS - 1)
}

/// Runs (or steps) of one rollup row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sketch {
    pub count: u64,
    pub failures: u64,
    pub sum_s: f64,
    pub max_s: f64,
    /// Sparse: (bucket, count), sorted by bucket.
    pub hist: Vec<(u8, u32)>,
    /// The last failure's reason, for a strip's tooltip.
    pub last_reason: Option<String>,
}

impl Sketch {
    pub fn add(&mut self, secs: f64, success: bool, reason: Option<&str>) {
        let secs = if secs.is_finite() && secs > 0.0 {
            secs
        } else {
            0.0
        };
        self.count += 1;
        self.sum_s += secs;
        self.max_s = self.max_s.max(secs);
        if !success {
            self.failures += 1;
            if let Some(r) = reason {
                self.last_reason = Some(r.to_string());
            }
        }
        self.add_bucket(bucket_of(secs) as u8, 1);
    }

    fn add_bucket(&mut self, b: u8, n: u32) {
        match self.hist.binary_search_by_key(&b, |(k, _)| *k) {
            Ok(i) => self.hist[i].1 = self.hist[i].1.saturating_add(n),
            // One more slot, not twice as many: a row's buckets are set in its first runs, and
            // the open rows of every scenario stay cached for their hour.
            Err(i) => {
                self.hist.reserve_exact(1);
                self.hist.insert(i, (b, n));
            }
        }
    }

    /// `other` added in; its reason wins when it has one (it is the later of the two).
    pub fn merge(&mut self, other: &Sketch) {
        self.count += other.count;
        self.failures += other.failures;
        self.sum_s += other.sum_s;
        self.max_s = self.max_s.max(other.max_s);
        for &(b, n) in &other.hist {
            self.add_bucket(b, n);
        }
        if other.last_reason.is_some() {
            self.last_reason.clone_from(&other.last_reason);
        }
    }

    /// The `q` quantile (0–1): the upper bound of the bucket holding it, capped by the maximum.
    pub fn quantile(&self, q: f64) -> f64 {
        let total: u64 = self.hist.iter().map(|(_, n)| u64::from(*n)).sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for &(b, n) in &self.hist {
            seen += u64::from(n);
            if seen >= rank {
                return upper_bound(b as usize).min(self.max_s);
            }
        }
        self.max_s
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_s / self.count as f64)
    }

    /// The histogram as stored: 5 bytes a non-empty bucket (index, little-endian count).
    pub fn hist_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.hist.len() * 5);
        for &(b, n) in &self.hist {
            out.push(b);
            out.extend_from_slice(&n.to_le_bytes());
        }
        out
    }

    /// A histogram read back; a damaged blob reads as far as it is whole.
    pub fn set_hist_bytes(&mut self, bytes: &[u8]) {
        self.hist.clear();
        self.hist.reserve_exact(bytes.len() / 5);
        for c in bytes.chunks_exact(5) {
            let n = u32::from_le_bytes([c[1], c[2], c[3], c[4]]);
            self.add_bucket(c[0].min(BUCKETS as u8 - 1), n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bounds_belong_to_their_bucket() {
        for i in 0..BUCKETS - 1 {
            assert!(upper_bound(i) < upper_bound(i + 1));
            assert_eq!(bucket_of(upper_bound(i)), i, "bound of {i}");
            assert_eq!(bucket_of(upper_bound(i) * 1.0001), i + 1);
        }
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(1e9), BUCKETS - 1);
        assert_eq!(bucket_of(f64::NAN), 0);
    }

    #[test]
    fn quantiles_of_equal_values_are_exact_and_merge_adds() {
        let mut a = Sketch::default();
        for _ in 0..10 {
            a.add(0.1, true, None);
        }
        assert_eq!(a.quantile(0.5), 0.1);
        assert_eq!(a.quantile(0.95), 0.1);
        let mut b = Sketch::default();
        for _ in 0..90 {
            b.add(2.0, false, Some("timeout"));
        }
        a.merge(&b);
        assert_eq!((a.count, a.failures), (100, 90));
        assert_eq!(a.last_reason.as_deref(), Some("timeout"));
        // Rank 50 falls among the 2 s values: their bucket's bound, capped by the max.
        assert_eq!(a.quantile(0.5), 2.0);
        // Now that the row also holds larger values, 0.1 s reads as its bucket's bound.
        let p05 = a.quantile(0.05);
        assert!((0.1..=0.1 * 1.26).contains(&p05), "{p05}");
        let mut c = Sketch::default();
        c.set_hist_bytes(&a.hist_bytes());
        assert_eq!(c.hist, a.hist);
    }

    #[test]
    fn quantile_error_is_bounded_by_the_bucket_width() {
        let mut s = Sketch::default();
        for i in 1..=1000 {
            s.add(i as f64 / 1000.0, true, None);
        }
        let p50 = s.quantile(0.5);
        assert!((0.5..=0.5 * 1.26).contains(&p50), "{p50}");
    }
}
