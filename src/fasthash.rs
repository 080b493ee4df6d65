//! A small, fast, non-cryptographic hasher for the maps built while loading a config (names,
//! ARNs, execution-name prefixes: 100,000s of short keys a load).
//!
//! std's SipHash resists collision floods from untrusted input; these keys come from the
//! operator's own file (or the account's instance ids), and SipHash was a fifth of the load time
//! at 100,000 targets. The mixing is the multiply-rotate scheme of rustc's `FxHasher`.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-and-rotate hasher, eight bytes a step.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = self.hash.wrapping_add(word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
        // The length separates "ab" + "c" from "a" + "bc" in composite keys.
        self.add(bytes.len() as u64);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // hashbrown takes the bucket from the low bits and the tag from the top ones: spread both.
        self.hash.rotate_left(26)
    }
}

/// Builds [`FastHasher`]s.
pub type FastBuild = BuildHasherDefault<FastHasher>;
/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, FastBuild>;
/// A `HashSet` with [`FastHasher`].
pub type FastSet<K> = HashSet<K, FastBuild>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn equal_keys_hash_alike_and_near_keys_apart() {
        let b = FastBuild::default();
        let h = |s: &str| b.hash_one(s);
        assert_eq!(
            h("arn:aws:ec2:us-east-1:1:instance/i-1"),
            h("arn:aws:ec2:us-east-1:1:instance/i-1")
        );
        // Keys that differ in one late byte, or only in length, land apart.
        let keys: Vec<String> = (0..10_000).map(|i| format!("t{i:06}")).collect();
        let mut hashes: Vec<u64> = keys.iter().map(|k| h(k)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), keys.len());
        assert_ne!(h("ab"), h("ab\0"));
        // Composite keys: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(b.hash_one(("ab", "c")), b.hash_one(("a", "bc")));
    }

    #[test]
    fn buckets_of_similar_names_are_spread() {
        // The low 10 bits (a 1,024-bucket table) of 100,000 sequential names cover every bucket
        // about evenly: no bucket gets more than four times its share.
        let b = FastBuild::default();
        let mut buckets = [0u32; 1024];
        for i in 0..100_000 {
            buckets[(b.hash_one(format!("t{i:06}")) & 1023) as usize] += 1;
        }
        let share = 100_000 / 1024;
        assert!(
            buckets.iter().all(|&n| n > 0 && n < 4 * share),
            "{buckets:?}"
        );
    }
}
