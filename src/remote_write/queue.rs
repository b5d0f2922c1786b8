//! The bounded sample queue between sampling and sending.
//!
//! Memory is bounded in samples: when the receiver is away longer than the queue covers, the
//! oldest samples are dropped (and counted), so the newest data arrives first once it is back.
//! The batch being sent stays in the queue until its fate is known, and may itself be dropped
//! meanwhile; the accounting keeps `enqueued = sent + failed + dropped + queued` exact:
//! a sample dropped while its batch was in flight counts as sent if that attempt succeeds, as
//! failed if it was rejected, and as dropped if the attempt is to be retried (it will not be).
//!
//! A failed attempt is retried with the same samples, never with newer ones added: the receiver
//! may have stored the batch and only its answer was lost (a 503 from a server shutting down, a
//! cut connection, a timeout). Resent unchanged, the batch is the same samples (series, timestamp,
//! value) the receiver already holds, which Prometheus-compatible stores take as duplicates, so
//! nothing is stored twice. A batch grown with newer samples could instead be refused as a whole
//! (Prometheus answers 400 "out of order" when a request repeats an older sample of a series it
//! has newer ones of), and the new samples in it would be lost.

use std::collections::VecDeque;
use std::sync::Arc;

use super::expo::Labels;

/// One sample waiting to be sent.
#[derive(Clone, Debug)]
pub struct Queued {
    seq: u64,
    pub series: Arc<Labels>,
    pub value: f64,
    pub timestamp_ms: i64,
}

#[derive(Debug)]
pub struct Queue {
    buf: VecDeque<Queued>,
    capacity: usize,
    next_seq: u64,
    /// Sequence numbers of the batch being sent (inclusive).
    inflight: Option<(u64, u64)>,
    /// Samples of the in-flight batch dropped from `buf` since it was taken.
    dropped_inflight: u64,
    /// After a failed attempt, the last sequence number of that batch: the next batch is the
    /// same samples (those the full queue has not dropped meanwhile), nothing newer.
    retry_until: Option<u64>,
}

/// What one call changed, for the counters.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
}

impl Queue {
    pub fn new(capacity: usize) -> Queue {
        Queue {
            buf: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 0,
            inflight: None,
            dropped_inflight: 0,
            retry_until: None,
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Append samples, dropping the oldest beyond capacity; returns those now counted dropped.
    pub fn push(
        &mut self,
        samples: impl IntoIterator<Item = (Arc<Labels>, f64)>,
        timestamp_ms: i64,
    ) -> Counts {
        let mut c = Counts::default();
        for (series, value) in samples {
            self.buf.push_back(Queued {
                seq: self.next_seq,
                series,
                value,
                timestamp_ms,
            });
            self.next_seq += 1;
            if self.buf.len() > self.capacity {
                let old = self.buf.pop_front().expect("over capacity, so not empty");
                match self.inflight {
                    Some((lo, hi)) if (lo..=hi).contains(&old.seq) => self.dropped_inflight += 1,
                    _ => c.dropped += 1,
                }
            }
        }
        c
    }

    /// The oldest `max` samples, as the batch to send now; after a failed attempt, what is left
    /// of that attempt's batch (see the module's doc).
    pub fn take_batch(&mut self, max: usize) -> Vec<Queued> {
        let until = self.retry_until.unwrap_or(u64::MAX);
        let mut batch: Vec<Queued> = self
            .buf
            .iter()
            .take(max)
            .take_while(|q| q.seq <= until)
            .cloned()
            .collect();
        if batch.is_empty() && self.retry_until.take().is_some() {
            // The full queue dropped the whole failed batch: start afresh.
            batch = self.buf.iter().take(max).cloned().collect();
        }
        self.inflight = match (batch.first(), batch.last()) {
            (Some(a), Some(b)) => Some((a.seq, b.seq)),
            _ => None,
        };
        self.dropped_inflight = 0;
        batch
    }

    /// The in-flight batch of `n` samples was accepted.
    pub fn delivered(&mut self, n: usize) -> Counts {
        self.settle();
        Counts {
            sent: n as u64,
            ..Default::default()
        }
    }

    /// The in-flight batch of `n` samples was refused for good (a 4xx): not retried.
    pub fn rejected(&mut self, n: usize) -> Counts {
        self.settle();
        Counts {
            failed: n as u64,
            ..Default::default()
        }
    }

    /// The attempt failed and will be retried with what is in the queue then.
    pub fn retry(&mut self) -> Counts {
        if let Some((_, hi)) = self.inflight.take() {
            self.retry_until = Some(hi);
        }
        Counts {
            dropped: std::mem::take(&mut self.dropped_inflight),
            ..Default::default()
        }
    }

    fn settle(&mut self) {
        self.retry_until = None;
        if let Some((_, hi)) = self.inflight.take() {
            while self.buf.front().is_some_and(|q| q.seq <= hi) {
                self.buf.pop_front();
            }
        }
        self.dropped_inflight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(n: usize) -> Vec<(Arc<Labels>, f64)> {
        let s = Arc::new(vec![("__name__".to_string(), "x".to_string())]);
        (0..n).map(|i| (s.clone(), i as f64)).collect()
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_them() {
        let mut q = Queue::new(5);
        assert_eq!(q.push(samples(3), 1).dropped, 0);
        assert_eq!(q.push(samples(4), 2).dropped, 2);
        assert_eq!(q.len(), 5);
        let b = q.take_batch(10);
        // The two oldest of the first push went; the third remains first.
        assert_eq!((b[0].value, b[0].timestamp_ms), (2.0, 1));
        assert_eq!(b.len(), 5);
    }

    /// A retried batch is the failed one again — the same samples, nothing newer added — less
    /// what the full queue dropped meanwhile; once delivered, batches take the newest again.
    #[test]
    fn a_retry_resends_the_failed_batch_without_newer_samples() {
        let mut q = Queue::new(6);
        q.push(samples(2), 1);
        let first = q.take_batch(10);
        assert_eq!(first.len(), 2);
        q.push(samples(2), 2);
        assert_eq!(q.retry(), Counts::default());
        let again = q.take_batch(10);
        let key = |b: &[Queued]| -> Vec<(f64, i64)> {
            b.iter().map(|s| (s.value, s.timestamp_ms)).collect()
        };
        assert_eq!(key(&again), key(&first));
        // Failing again while the queue overflows: the oldest of the batch go, counted dropped
        // at the retry, and the rest is still the next batch, alone.
        q.push(samples(3), 3);
        assert_eq!(q.retry().dropped, 1);
        let third = q.take_batch(10);
        assert_eq!(key(&third), vec![(1.0, 1)]);
        // The whole failed batch dropped: the next batch starts from the oldest left.
        q.push(samples(6), 4);
        assert_eq!(q.retry().dropped, 1);
        let fourth = q.take_batch(10);
        assert_eq!(fourth.len(), 6);
        assert!(fourth.iter().all(|s| s.timestamp_ms == 4));
        assert_eq!(q.delivered(fourth.len()).sent, 6);
        // Delivered: no retry pending, the next batch takes whatever is queued.
        q.push(samples(2), 5);
        assert_eq!(q.take_batch(10).len(), 2);
    }

    /// enqueued = sent + failed + dropped + queued, whatever happens to the in-flight batch.
    #[test]
    fn accounting_stays_exact_around_an_in_flight_batch() {
        let mut q = Queue::new(4);
        let mut total = Counts::default();
        let add = |t: &mut Counts, c: Counts| {
            t.sent += c.sent;
            t.failed += c.failed;
            t.dropped += c.dropped;
        };
        add(&mut total, q.push(samples(4), 1));
        let b = q.take_batch(3);
        // While in flight, 3 new samples push the 3 oldest out, all of them in the batch.
        add(&mut total, q.push(samples(3), 2));
        assert_eq!(total.dropped, 0, "in-flight drops are not counted yet");
        add(&mut total, q.retry());
        assert_eq!(total.dropped, 3);
        let b2 = q.take_batch(2);
        add(&mut total, q.push(samples(1), 3));
        add(&mut total, q.delivered(b2.len()));
        add(&mut total, q.push(samples(1), 4));
        let b3 = q.take_batch(10);
        add(&mut total, q.rejected(b3.len()));
        let enqueued = 4 + 3 + 1 + 1;
        assert_eq!(
            total.sent + total.failed + total.dropped + q.len() as u64,
            enqueued,
            "{total:?} queued {}",
            q.len()
        );
        assert!(q.is_empty());
        assert_eq!(b.len(), 3);
    }
}
