//! The threshold state machine of one scenario's alert: `after` consecutive failed runs fire it,
//! `resolve_after` consecutive passing runs resolve it. Anything in between (a lost packet, one
//! slow run) changes nothing, so a flapping target neither pages on every blip nor resolves on
//! every lucky run.

/// What a run did to the alert.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    None,
    Fire,
    Resolve,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Threshold {
    after: u32,
    resolve_after: u32,
    /// Consecutive failures (while not firing) or successes (while firing) so far.
    streak: u32,
    firing: bool,
}

impl Threshold {
    /// `after` and `resolve_after` of 0 are taken as 1 (the loader refuses 0).
    pub fn new(after: u32, resolve_after: u32) -> Self {
        Threshold {
            after: after.max(1),
            resolve_after: resolve_after.max(1),
            streak: 0,
            firing: false,
        }
    }

    pub fn firing(&self) -> bool {
        self.firing
    }

    /// Take one run's verdict (a timeout is a failure; a skipped tick is no run).
    pub fn observe(&mut self, success: bool) -> Transition {
        // The streak counts runs that push toward the other state; one that agrees with the
        // current state breaks it.
        if success != self.firing {
            self.streak = 0;
            return Transition::None;
        }
        self.streak += 1;
        let needed = if self.firing {
            self.resolve_after
        } else {
            self.after
        };
        if self.streak < needed {
            return Transition::None;
        }
        self.streak = 0;
        self.firing = !self.firing;
        if self.firing {
            Transition::Fire
        } else {
            Transition::Resolve
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `runs` ('x' failed, '.' passed); the transitions at each index.
    fn feed(t: &mut Threshold, runs: &str) -> Vec<(usize, Transition)> {
        runs.chars()
            .enumerate()
            .filter_map(|(i, c)| match t.observe(c == '.') {
                Transition::None => None,
                tr => Some((i, tr)),
            })
            .collect()
    }

    #[test]
    fn fires_on_exactly_the_after_th_consecutive_failure() {
        let mut t = Threshold::new(3, 2);
        assert_eq!(feed(&mut t, "xx"), vec![]);
        assert!(!t.firing());
        assert_eq!(feed(&mut t, "x"), vec![(0, Transition::Fire)]);
        assert!(t.firing());
        // More failures while firing: nothing new.
        assert_eq!(feed(&mut t, "xxxx"), vec![]);
    }

    #[test]
    fn resolves_on_exactly_the_resolve_after_th_consecutive_success() {
        let mut t = Threshold::new(3, 2);
        feed(&mut t, "xxx");
        assert_eq!(feed(&mut t, "."), vec![]);
        assert_eq!(feed(&mut t, "."), vec![(0, Transition::Resolve)]);
        assert!(!t.firing());
        assert_eq!(feed(&mut t, "...."), vec![]);
    }

    #[test]
    fn flapping_input_never_fires_nor_resolves_early() {
        let mut t = Threshold::new(3, 2);
        // Never three failures in a row: silent however long it flaps.
        assert_eq!(feed(&mut t, "xx.xx.x.xx.xx.x.xx."), vec![]);
        // Now three in a row: fires at the third.
        assert_eq!(feed(&mut t, "xxx"), vec![(2, Transition::Fire)]);
        // One success between failures never resolves (resolve_after 2).
        assert_eq!(feed(&mut t, ".x.x.x.x"), vec![]);
        assert!(t.firing());
        // Exact points over a mixed sequence: resolve at index 1, fire again at index 6.
        assert_eq!(
            feed(&mut t, "..xx.xxx"),
            vec![(1, Transition::Resolve), (7, Transition::Fire)]
        );
    }

    #[test]
    fn after_one_fires_at_the_first_failure_and_zero_is_taken_as_one() {
        let mut t = Threshold::new(1, 1);
        assert_eq!(
            feed(&mut t, ".x.x"),
            vec![
                (1, Transition::Fire),
                (2, Transition::Resolve),
                (3, Transition::Fire)
            ]
        );
        assert_eq!(Threshold::new(0, 0), Threshold::new(1, 1));
    }
}
