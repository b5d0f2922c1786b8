//! The bounded queue a long-lived connection's task fills and its handles drain (MQTT messages;
//! byte frames have their packed [`crate::frame_inbox`]): when full the oldest item is dropped and counted, so a
//! noisy peer costs a fixed amount of memory, and once drained the queue gives its slots back so
//! an idle connection costs nothing.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// When a queued item arrived, as nanoseconds after its connection opened: 8 bytes where an
/// `Instant` takes 16. A connection no step reads keeps a full inbox for its whole life, so
/// every byte of a slot is paid `limit` times per connection.
#[derive(Clone, Copy)]
pub(crate) struct Arrival(u64);

impl Arrival {
    pub(crate) fn new(opened: Instant, at: Instant) -> Self {
        let after = at.saturating_duration_since(opened);
        Arrival(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX))
    }

    pub(crate) fn instant(self, opened: Instant) -> Instant {
        opened + Duration::from_nanos(self.0)
    }

    pub(crate) fn as_nanos(self) -> u64 {
        self.0
    }

    pub(crate) fn from_nanos(n: u64) -> Self {
        Arrival(n)
    }
}

pub(crate) struct Inbox<T>(Mutex<Queue<T>>);

struct Queue<T> {
    items: VecDeque<T>,
    limit: usize,
    dropped: u64,
}

impl<T> Inbox<T> {
    /// An inbox keeping at most `limit` items (at least one).
    pub(crate) fn new(limit: usize) -> Self {
        Inbox(Mutex::new(Queue {
            items: VecDeque::new(),
            limit: limit.max(1),
            dropped: 0,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `item`, dropping (and counting) the oldest when full.
    pub(crate) fn push(&self, item: T) {
        let mut q = self.lock();
        if q.items.len() >= q.limit {
            q.items.pop_front();
            q.dropped += 1;
        }
        q.items.push_back(item);
    }

    pub(crate) fn pop(&self) -> Option<T> {
        let mut q = self.lock();
        let item = q.items.pop_front();
        // A burst grew the queue; once drained, give its slots back.
        if q.items.is_empty() && q.items.capacity() > 8 {
            q.items = VecDeque::new();
        }
        item
    }

    /// Items dropped because the inbox was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_inbox_drops_the_oldest_and_counts_it() {
        let inbox = Inbox::new(2);
        for i in 0..5 {
            inbox.push(i);
        }
        assert_eq!(inbox.dropped(), 3);
        assert_eq!(inbox.pop(), Some(3));
        assert_eq!(inbox.pop(), Some(4));
        assert_eq!(inbox.pop(), None);
    }
}
