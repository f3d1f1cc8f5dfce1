//! Peer exclusion (§7.5): IP addresses that misbehaved (today: a telemetry genesis mismatch)
//! are refused for a while. The first offence only records a score; from the second on, the
//! address is excluded for 1 h, and beyond that for 2·score hours.
//!
//! Keyed by IP address, not port (IPv4 as v4-mapped IPv6). At most [`CAPACITY`] entries; when
//! full, the entry with the soonest expiry is evicted. Time comes in as `now_ms`.

use crate::endpoint::canonical_ip;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr};

/// The default capacity: at most this many addresses are remembered.
pub const CAPACITY: usize = 5000;
/// An address is excluded only once its score reaches this.
pub const SCORE_LIMIT: u64 = 2;
/// The base exclusion time, 1 hour, in milliseconds.
pub const EXCLUDE_TIME_MS: u64 = 3_600_000;
/// An expired entry is forgotten `EXCLUDE_REMOVE_MS · score` after its exclusion ends (24 h).
pub const EXCLUDE_REMOVE_MS: u64 = 24 * 3_600_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    score: u64,
    until_ms: u64,
}

/// The set of excluded peer addresses. Not synchronised: wrap it in a lock to share it.
#[derive(Debug)]
pub struct PeerExclusion {
    entries: HashMap<Ipv6Addr, Entry>,
    by_expiry: BTreeSet<(u64, Ipv6Addr)>,
    capacity: usize,
}

impl Default for PeerExclusion {
    fn default() -> Self {
        PeerExclusion::new()
    }
}

impl PeerExclusion {
    /// An empty set with the default capacity of 5000.
    pub fn new() -> Self {
        PeerExclusion::with_capacity(CAPACITY)
    }

    /// An empty set holding at most `capacity` addresses (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        PeerExclusion {
            entries: HashMap::new(),
            by_expiry: BTreeSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records an offence by `ip` at `now_ms` and returns its new score. A new address gets
    /// score 1 and an expiry 1 h ahead (not yet excluded); at score 2 the exclusion lasts 1 h,
    /// above 2 it lasts 2·score hours. When a new address finds the set full, the entry that
    /// expires soonest is evicted first.
    pub fn add(&mut self, ip: impl Into<IpAddr>, now_ms: u64) -> u64 {
        let ip = canonical_ip(ip.into());
        if let Some(entry) = self.entries.get_mut(&ip) {
            self.by_expiry.remove(&(entry.until_ms, ip));
            entry.score = entry.score.saturating_add(1);
            let hours = if entry.score <= SCORE_LIMIT {
                1
            } else {
                entry.score.saturating_mul(2)
            };
            entry.until_ms = now_ms.saturating_add(EXCLUDE_TIME_MS.saturating_mul(hours));
            self.by_expiry.insert((entry.until_ms, ip));
            return entry.score;
        }
        while self.entries.len() >= self.capacity {
            let Some(first) = self.by_expiry.pop_first() else {
                break;
            };
            self.entries.remove(&first.1);
        }
        let until_ms = now_ms.saturating_add(EXCLUDE_TIME_MS);
        self.entries.insert(ip, Entry { score: 1, until_ms });
        self.by_expiry.insert((until_ms, ip));
        1
    }

    /// True when `ip` is excluded at `now_ms`: score at least 2 and the exclusion not over.
    pub fn check(&self, ip: impl Into<IpAddr>, now_ms: u64) -> bool {
        let ip = canonical_ip(ip.into());
        self.entries
            .get(&ip)
            .is_some_and(|e| e.score >= SCORE_LIMIT && e.until_ms > now_ms)
    }

    /// The current score of `ip` (0 when unknown).
    pub fn score(&self, ip: impl Into<IpAddr>) -> u64 {
        let ip = canonical_ip(ip.into());
        self.entries.get(&ip).map_or(0, |e| e.score)
    }

    /// When the exclusion of `ip` ends, in ms, if the address is known.
    pub fn until(&self, ip: impl Into<IpAddr>) -> Option<u64> {
        let ip = canonical_ip(ip.into());
        self.entries.get(&ip).map(|e| e.until_ms)
    }

    /// Forgets `ip`; true if it was known.
    pub fn remove(&mut self, ip: impl Into<IpAddr>) -> bool {
        let ip = canonical_ip(ip.into());
        match self.entries.remove(&ip) {
            Some(e) => {
                self.by_expiry.remove(&(e.until_ms, ip));
                true
            }
            None => false,
        }
    }

    /// Forgets entries whose exclusion ended more than 24 h · score ago; returns how many.
    pub fn purge(&mut self, now_ms: u64) -> usize {
        let before = self.entries.len();
        let by_expiry = &mut self.by_expiry;
        self.entries.retain(|ip, e| {
            let forget_at = e
                .until_ms
                .saturating_add(EXCLUDE_REMOVE_MS.saturating_mul(e.score));
            let keep = forget_at >= now_ms;
            if !keep {
                by_expiry.remove(&(e.until_ms, *ip));
            }
            keep
        });
        before - self.entries.len()
    }

    /// The number of remembered addresses.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The maximum number of remembered addresses.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const H: u64 = EXCLUDE_TIME_MS;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn first_offence_does_not_block() {
        let mut ex = PeerExclusion::new();
        let a = ip("1.2.3.4");
        assert!(!ex.check(a, 0));
        assert_eq!(ex.add(a, 1000), 1);
        assert!(!ex.check(a, 1000));
        assert_eq!(ex.until(a), Some(1000 + H));
        assert_eq!(ex.score(a), 1);
    }

    #[test]
    fn scores_and_durations() {
        let mut ex = PeerExclusion::new();
        let a = ip("1.2.3.4");
        ex.add(a, 0);
        // Second offence: excluded for one hour.
        assert_eq!(ex.add(a, 10), 2);
        assert_eq!(ex.until(a), Some(10 + H));
        assert!(ex.check(a, 10));
        assert!(ex.check(a, 10 + H - 1));
        assert!(!ex.check(a, 10 + H));
        // Third offence: 2·3 = 6 hours.
        assert_eq!(ex.add(a, 20), 3);
        assert_eq!(ex.until(a), Some(20 + 6 * H));
        assert!(ex.check(a, 20 + 6 * H - 1));
        assert!(!ex.check(a, 20 + 6 * H));
        // Fourth: 8 hours.
        assert_eq!(ex.add(a, 30), 4);
        assert_eq!(ex.until(a), Some(30 + 8 * H));
    }

    #[test]
    fn keyed_by_ip_in_canonical_form() {
        let mut ex = PeerExclusion::new();
        let v4 = Ipv4Addr::new(5, 6, 7, 8);
        ex.add(v4, 0);
        ex.add(v4.to_ipv6_mapped(), 0);
        assert_eq!(ex.score(v4), 2);
        assert!(ex.check(IpAddr::V4(v4), 1));
        assert!(!ex.check(ip("5.6.7.9"), 1));
        // IPv6 is per address, not per /48.
        ex.add(ip("2001:db8::1"), 0);
        ex.add(ip("2001:db8::1"), 0);
        assert!(ex.check(ip("2001:db8::1"), 1));
        assert!(!ex.check(ip("2001:db8::2"), 1));
        assert!(ex.remove(v4));
        assert!(!ex.check(v4, 1));
        assert!(!ex.remove(v4));
    }

    #[test]
    fn capacity_evicts_soonest_expiry() {
        let mut ex = PeerExclusion::with_capacity(3);
        let a = ip("1.0.0.1");
        let b = ip("1.0.0.2");
        let c = ip("1.0.0.3");
        ex.add(a, 0);
        ex.add(a, 0); // a: until 1 h
        ex.add(a, 0); // a: until 6 h
        ex.add(b, 100); // b: until 1 h + 100
        ex.add(c, 50); // c: until 1 h + 50 (soonest)
        assert_eq!(ex.len(), 3);
        let d = ip("1.0.0.4");
        ex.add(d, 200);
        assert_eq!(ex.len(), 3);
        assert_eq!(ex.score(c), 0, "soonest expiry evicted");
        assert_eq!(ex.score(a), 3);
        assert_eq!(ex.score(b), 1);
        assert_eq!(ex.score(d), 1);
        // Re-adding a known address never evicts.
        ex.add(b, 300);
        assert_eq!(ex.len(), 3);
        assert_eq!(PeerExclusion::new().capacity(), 5000);
    }

    #[test]
    fn default_capacity_is_bounded() {
        let mut ex = PeerExclusion::new();
        for i in 0..(CAPACITY as u32 + 100) {
            ex.add(Ipv4Addr::from_bits(0x0b00_0000 + i), u64::from(i));
        }
        assert_eq!(ex.len(), CAPACITY);
        // The earliest (soonest expiry) were evicted.
        assert_eq!(ex.score(Ipv4Addr::from_bits(0x0b00_0000)), 0);
        assert_eq!(
            ex.score(Ipv4Addr::from_bits(0x0b00_0000 + CAPACITY as u32 + 99)),
            1
        );
    }

    #[test]
    fn purge_forgets_long_expired() {
        let mut ex = PeerExclusion::new();
        let a = ip("1.2.3.4");
        let b = ip("1.2.3.5");
        ex.add(a, 0); // until 1 h, forget after 1 h + 24 h
        ex.add(b, 0);
        ex.add(b, 0); // score 2: forget after 1 h + 48 h
        assert_eq!(ex.purge(H + 24 * H), 0);
        assert_eq!(ex.purge(H + 24 * H + 1), 1);
        assert_eq!(ex.score(a), 0);
        assert_eq!(ex.score(b), 2);
        assert_eq!(ex.purge(H + 48 * H + 1), 1);
        assert!(ex.is_empty());
        // The expiry index stays consistent: adding after purge works with capacity 1.
        let mut one = PeerExclusion::with_capacity(1);
        one.add(a, 0);
        one.purge(100 * H);
        one.add(b, 100 * H);
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn huge_scores_saturate() {
        let mut ex = PeerExclusion::new();
        let a = ip("9.9.9.9");
        for _ in 0..10 {
            ex.add(a, u64::MAX - 5);
        }
        assert!(ex.check(a, u64::MAX - 1));
        assert_eq!(ex.until(a), Some(u64::MAX));
    }
}
