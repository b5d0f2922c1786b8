//! The latency histogram of every scenario and step series: the same exposition as
//! prometheus-client's `Histogram` with [`LATENCY_BUCKETS`], as plain counts.
//!
//! prometheus-client's histogram keeps its upper bounds beside the counts in a `Vec` of its own
//! and an inline state for native histograms sonde never uses: about 480 bytes in two
//! allocations. With ten series of it per scenario, 10,000 persistent sessions paid ~3 KB each.
//! Here the bounds are the shared constant and the counts a fixed array, kept inline in the
//! scenario's cells (`super::series`) under the scenario's one lock.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::LATENCY_BUCKETS;

/// Buckets: [`LATENCY_BUCKETS`] and `+Inf`.
const N: usize = LATENCY_BUCKETS.len() + 1;

/// What one observation changes. Whoever holds it keeps it under one lock with the rest of the
/// scenario, so a scrape never sees a count without its sum (prometheus-client's histogram
/// holds a lock the same way).
#[derive(Debug, Default, Clone)]
pub(super) struct Counts {
    sum: f64,
    /// Per bucket, not cumulative (the encoder adds them up, as for prometheus-client's own);
    /// the count is their sum, not kept beside them.
    buckets: Buckets,
}

/// Bucket counts in 32 bits until one would pass `u32::MAX`, then in 64 (boxed): nine
/// histograms of every persistent session held 1 KB of high halves that stay zero for
/// decades at any sane interval, and a count that wraps would read as a counter reset.
#[derive(Debug, Clone)]
enum Buckets {
    Narrow([u32; N]),
    Wide(Box<[u64; N]>),
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets::Narrow([0; N])
    }
}

impl Buckets {
    fn add_one(&mut self, i: usize) {
        match self {
            Buckets::Narrow(b) => match b[i].checked_add(1) {
                Some(n) => b[i] = n,
                None => {
                    let mut wide = Box::new(b.map(u64::from));
                    wide[i] += 1;
                    *self = Buckets::Wide(wide);
                }
            },
            Buckets::Wide(b) => b[i] += 1,
        }
    }

    fn get(&self, i: usize) -> u64 {
        match self {
            Buckets::Narrow(b) => u64::from(b[i]),
            Buckets::Wide(b) => b[i],
        }
    }
}

impl Counts {
    pub(super) fn observe(&mut self, v: f64) {
        self.sum += v;
        // As prometheus-client: the first bucket whose bound is >= v; NaN goes to +Inf.
        let i = if v.is_nan() {
            N - 1
        } else {
            LATENCY_BUCKETS
                .iter()
                .position(|b| *b >= v)
                .unwrap_or(N - 1)
        };
        self.buckets.add_one(i);
    }
}

impl TypedMetric for Counts {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Counts {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut b = [(f64::INFINITY, 0u64); N];
        for (i, slot) in b.iter_mut().enumerate() {
            *slot = (
                LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY),
                self.buckets.get(i),
            );
        }
        let count = b.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum, count, &b, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    use super::*;

    /// The same observations through prometheus-client's histogram and this one render the
    /// same exposition, in both text formats (the metric contract does not move).
    #[test]
    fn renders_as_prometheus_clients_histogram() {
        let values = [
            0.0,
            0.0004,
            0.0005,
            0.0007,
            0.003,
            0.04,
            0.3,
            0.99,
            1.0,
            7.0,
            29.9,
            30.0,
            31.0,
            1e9,
            f64::NAN,
        ];
        let render = |ours: bool, open: bool| {
            let mut r = Registry::default();
            let labels = vec![("scenario", "s"), ("step", "a")];
            if ours {
                let mut c = Counts::default();
                values.iter().for_each(|v| c.observe(*v));
                let f =
                    Family::<Vec<(&str, &str)>, Counts, _>::new_with_constructor(move || c.clone());
                drop(f.get_or_create(&labels));
                r.register("x_seconds", "help", f);
            } else {
                let f = Family::<Vec<(&str, &str)>, Histogram>::new_with_constructor(|| {
                    Histogram::new(LATENCY_BUCKETS.iter().copied())
                });
                let h = f.get_or_create_owned(&labels);
                values.iter().for_each(|v| h.observe(*v));
                r.register("x_seconds", "help", f);
            }
            let mut out = String::new();
            if open {
                prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
            } else {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
            }
            out
        };
        for open in [true, false] {
            let (theirs, ours) = (render(false, open), render(true, open));
            let first = ours.lines().find(|l| l.contains(r#"le="0.0005""#));
            assert!(first.is_some_and(|l| l.ends_with("} 3")), "{ours}");
            assert_eq!(ours, theirs);
        }
    }

    /// Inline in every step of every scenario: its size is paid ~100,000 times over.
    #[test]
    fn counts_stay_small() {
        assert!(
            std::mem::size_of::<Counts>() <= 80,
            "{}",
            std::mem::size_of::<Counts>()
        );
    }

    /// A bucket at `u32::MAX` goes on counting in 64 bits, the other buckets kept.
    #[test]
    fn a_full_bucket_widens_instead_of_wrapping() {
        let mut c = Counts::default();
        c.observe(0.0003);
        c.observe(20.0);
        if let Buckets::Narrow(b) = &mut c.buckets {
            b[0] = u32::MAX;
        }
        c.observe(0.0001);
        c.observe(0.0002);
        assert!(matches!(c.buckets, Buckets::Wide(_)));
        assert_eq!(c.buckets.get(0), u64::from(u32::MAX) + 2);
        assert_eq!(c.buckets.get(N - 2), 1);
        let count: u64 = (0..N).map(|i| c.buckets.get(i)).sum();
        assert_eq!(count, u64::from(u32::MAX) + 3);
    }
}
