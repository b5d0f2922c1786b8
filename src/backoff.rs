//! Exponential backoff between attempts, shared by everything that retries: alert deliveries,
//! remote_write pushes, a persistent session's setup.

use std::time::Duration;

/// Pauses of `first`, then doubled after every failure up to `cap`; back to `first` on success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
    last: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            next: first,
            last: Duration::ZERO,
        }
    }

    /// The pause to take after a failure now, without counting it.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// A failure: the pause to take before the next attempt (the next one will be longer).
    pub fn failed(&mut self) -> Duration {
        self.last = self.next;
        self.next = (self.next * 2).min(self.cap);
        self.last
    }

    /// A success: the next failure starts over from `first`.
    pub fn reset(&mut self) {
        self.next = self.first;
        self.last = Duration::ZERO;
    }

    /// The pause the last failure asked for (zero after a success).
    pub fn last(&self) -> Duration {
        self.last
    }

    /// Change the longest pause (a session's is its interval, which a reload may change).
    pub fn set_cap(&mut self, cap: Duration) {
        self.cap = cap;
        self.next = self.next.min(cap.max(self.first));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(5));
        assert_eq!(b.peek(), s(1));
        let taken: Vec<_> = (0..5).map(|_| b.failed()).collect();
        assert_eq!(taken, [s(1), s(2), s(4), s(5), s(5)]);
        assert_eq!(b.last(), s(5));
        b.reset();
        assert_eq!((b.failed(), b.last()), (s(1), s(1)));
    }

    #[test]
    fn the_first_pause_is_kept_even_above_a_smaller_cap() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(1000), ms(500));
        assert_eq!(
            [b.failed(), b.failed(), b.failed()],
            [ms(1000), ms(500), ms(500)]
        );
    }
}
