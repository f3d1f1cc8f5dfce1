//! The duplicate filter for `publish` and `confirm_ack` payloads (§2.7).
//!
//! A SipHash digest of the **payload bytes only** (header excluded) goes into one of a fixed
//! number of slots (1 048 576 by default, 16 bytes each); a payload whose digest sits in its slot
//! and is younger than the cutoff (60 s) is a duplicate. The filter is shared by every shard:
//! slots are plain atomics, so checking costs one hash and two atomic loads, with no lock. Races
//! between threads can at worst let one copy of a duplicate through; they never mark a new payload
//! as a duplicate (that takes a 64-bit digest collision).

use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};

use siphasher::sip::SipHasher13;

/// Default number of slots (`duplicate_filter_size`).
pub const DEFAULT_SLOTS: usize = 1 << 20;

/// Default age after which a slot no longer counts (`duplicate_filter_cutoff`, 60 s).
pub const DEFAULT_CUTOFF_MS: u64 = 60_000;

/// A fixed-size, lock-free duplicate filter.
pub struct DuplicateFilter {
    digests: Box<[AtomicU64]>,
    stamps: Box<[AtomicU64]>,
    key: (u64, u64),
    cutoff_ms: u64,
}

impl std::fmt::Debug for DuplicateFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuplicateFilter")
            .field("slots", &self.digests.len())
            .field("cutoff_ms", &self.cutoff_ms)
            .finish()
    }
}

impl DuplicateFilter {
    /// A filter with `slots` slots (at least 1), keyed with `key` (pick it at random per node so
    /// that peers cannot aim collisions), forgetting entries after `cutoff_ms`.
    pub fn new(slots: usize, key: [u8; 16], cutoff_ms: u64) -> DuplicateFilter {
        let slots = slots.max(1);
        let k0 = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
        let k1 = u64::from_le_bytes(key[8..].try_into().expect("8 bytes"));
        DuplicateFilter {
            digests: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            stamps: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            key: (k0, k1),
            cutoff_ms,
        }
    }

    /// The digest of a payload.
    pub fn digest(&self, payload: &[u8]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write(payload);
        // 0 marks an empty slot
        h.finish().max(1)
    }

    /// Records `payload` and returns true when it was already seen within the cutoff.
    pub fn check_and_insert(&self, payload: &[u8], now_ms: u64) -> bool {
        let digest = self.digest(payload);
        let slot = (digest % self.digests.len() as u64) as usize;
        let seen = self.digests[slot].load(Ordering::Relaxed) == digest
            && now_ms.saturating_sub(self.stamps[slot].load(Ordering::Relaxed)) <= self.cutoff_ms;
        if !seen {
            self.stamps[slot].store(now_ms, Ordering::Relaxed);
            self.digests[slot].store(digest, Ordering::Relaxed);
        }
        seen
    }

    /// Forgets `payload` (for a message later found invalid, so that a corrected copy is not
    /// refused as a duplicate).
    pub fn clear(&self, payload: &[u8]) {
        let digest = self.digest(payload);
        let slot = (digest % self.digests.len() as u64) as usize;
        let _ =
            self.digests[slot].compare_exchange(digest, 0, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.digests.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_copy_is_a_duplicate_until_cutoff() {
        let f = DuplicateFilter::new(1024, [7; 16], 60_000);
        assert!(!f.check_and_insert(b"block", 1_000));
        assert!(f.check_and_insert(b"block", 2_000));
        assert!(!f.check_and_insert(b"other", 2_000));
        // past the cutoff the payload is new again
        assert!(!f.check_and_insert(b"block", 62_001));
        assert!(f.check_and_insert(b"block", 62_002));
    }

    #[test]
    fn clear_forgets() {
        let f = DuplicateFilter::new(1024, [1; 16], 60_000);
        assert!(!f.check_and_insert(b"x", 0));
        f.clear(b"x");
        assert!(!f.check_and_insert(b"x", 1));
    }

    #[test]
    fn keys_change_digests() {
        let a = DuplicateFilter::new(16, [1; 16], 1);
        let b = DuplicateFilter::new(16, [2; 16], 1);
        assert_ne!(a.digest(b"payload"), b.digest(b"payload"));
    }
}
