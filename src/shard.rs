//! `--shard I/N`: the agents of one region split its scenarios between them.
//!
//! Each scenario belongs to exactly one of the `N` shards, chosen by jump consistent hashing
//! (Lamping & Veach, 2014) of a stable hash of its name: every agent computes the same owner
//! without talking to the others, and growing from `N` to `N + 1` agents moves only the ~1/(N+1)
//! of the scenarios that the new shard takes (and none between the old shards), so adding an agent
//! does not reshuffle every scenario's series onto other hosts.
//!
//! Shards are numbered from 1 (`1/3`, `2/3`, `3/3`), as people count agents.

use std::fmt;
use std::str::FromStr;

/// This agent's share of the work: shard `index` (1-based) of `count`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// More shards than anyone runs agents in one region; keeps the number readable in messages.
pub const MAX_SHARDS: u32 = 10_000;

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let expected = "expected I/N with 1 ≤ I ≤ N, e.g. 2/3 for the second of three agents";
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a shard — {expected}"))?;
        let parse = |v: &str| v.trim().parse::<u32>().ok();
        let (Some(index), Some(count)) = (parse(i), parse(n)) else {
            return Err(format!("{s:?} is not a shard — {expected}"));
        };
        if count == 0 || count > MAX_SHARDS {
            return Err(format!(
                "{s:?}: the shard count must be 1 to {MAX_SHARDS} — {expected}"
            ));
        }
        if index == 0 || index > count {
            return Err(format!(
                "{s:?}: shards are numbered 1 to {count} — {expected}"
            ));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether this shard runs the scenario `name`; if not, which shard does, as a reason for
    /// `/api/v1/scenarios`.
    pub fn owns(&self, name: &str) -> Result<(), String> {
        let owner = shard_of(name, self.count);
        if owner == self.index {
            Ok(())
        } else {
            Err(format!(
                "shard {owner}/{n} runs it (this agent is shard {me}/{n})",
                n = self.count,
                me = self.index
            ))
        }
    }
}

/// Whether an agent with `shard` (none: the only agent) runs `name`.
pub fn owns(shard: Option<Shard>, name: &str) -> Result<(), String> {
    shard.map_or(Ok(()), |s| s.owns(name))
}

/// The shard (1..=count) that owns `name`.
pub fn shard_of(name: &str, count: u32) -> u32 {
    jump_hash(mix(crate::hash::stable_hash(name)), count.max(1)) + 1
}

/// splitmix64's finaliser: FNV-1a of similar names (`check-1`, `check-2`) differ in few bits;
/// jump hashing wants every bit of the key to matter.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Jump consistent hash: the bucket (0..buckets) of `key`. From the paper, verbatim.
fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("checkout-{i}")).collect()
    }

    #[test]
    fn shards_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!("2/3".parse(), Ok(Shard { index: 2, count: 3 }));
        assert_eq!("1/1".parse::<Shard>().unwrap().to_string(), "1/1");
        for bad in ["0/3", "4/3", "1/0", "x/3", "3", "1/3/4", "-1/3", "1/99999"] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains("expected I/N"), "{bad}: {e}");
        }
    }

    /// The property sharding exists for: with N agents, every scenario has exactly one owner.
    #[test]
    fn n_agents_together_own_every_scenario_exactly_once() {
        let names = names(5_000);
        for count in 1..=12 {
            let agents: Vec<Shard> = (1..=count).map(|index| Shard { index, count }).collect();
            let mut per_agent = vec![0usize; count as usize];
            for name in &names {
                let owners: Vec<u32> = agents
                    .iter()
                    .filter(|a| a.owns(name).is_ok())
                    .map(|a| a.index)
                    .collect();
                assert_eq!(owners.len(), 1, "{name} with {count} shards: {owners:?}");
                per_agent[owners[0] as usize - 1] += 1;
            }
            // And the work is split about evenly (each within ±25% of its fair share).
            let fair = names.len() as f64 / f64::from(count);
            for (i, n) in per_agent.iter().enumerate() {
                assert!(
                    (*n as f64 - fair).abs() < fair * 0.25,
                    "shard {}/{count} owns {n}, fair share {fair:.0}: {per_agent:?}",
                    i + 1
                );
            }
        }
    }

    /// Growing from N to N+1 agents moves about 1/(N+1) of the scenarios, all to the new shard;
    /// a modulo split would move about N/(N+1) of them.
    #[test]
    fn adding_an_agent_moves_few_scenarios_and_only_to_the_new_one() {
        let names = names(10_000);
        for n in 1..=9u32 {
            let moved: Vec<&String> = names
                .iter()
                .filter(|s| shard_of(s, n) != shard_of(s, n + 1))
                .collect();
            for s in &moved {
                assert_eq!(shard_of(s, n + 1), n + 1, "{s} moved between old shards");
            }
            let fraction = moved.len() as f64 / names.len() as f64;
            let ideal = 1.0 / f64::from(n + 1);
            eprintln!(
                "shards {n} -> {}: moved {fraction:.4} (ideal {ideal:.4})",
                n + 1
            );
            assert!(
                fraction > ideal * 0.7 && fraction < ideal * 1.3,
                "{n} -> {}: moved {fraction}, ideal {ideal}",
                n + 1
            );
        }
    }

    #[test]
    fn the_owner_of_a_name_never_changes() {
        // Pinned values: every agent, on every version, must compute the same owner, or agents
        // of mixed versions would run some scenarios twice and others never.
        let got: Vec<u32> = ["a", "checkout", "im-roundtrip", "team/login"]
            .iter()
            .map(|n| shard_of(n, 7))
            .collect();
        assert_eq!(got, PINNED);
    }
    const PINNED: [u32; 4] = [2, 1, 7, 3];
}
