//! FNV-1a, 64 bits: stable across runs, builds and machines (std's hasher is randomly keyed),
//! for scheduling offsets — every agent must derive the same slot from a scenario's name — and
//! configuration fingerprints. Not for anything an attacker chooses to collide.

/// The FNV-1a offset basis: the state before any byte.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continue an FNV-1a hash from state `h` over `bytes`.
pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// A scenario name's hash: its scheduling offset and shard. The same on every agent.
pub fn stable_hash(s: &str) -> u64 {
    fnv1a(FNV_OFFSET, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_test_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x85944171f73967e8);
    }
}
