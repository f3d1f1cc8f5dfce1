//! A log-linear histogram of latencies in microseconds: values below 64 are exact, above that
//! each power of two is split into 32 buckets, so a quantile is within about 1.6 % of the value.

use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-buckets per power of two (and the exact range is `0..2 * SUB`).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Powers of two covered above the exact range: up to 2^(SUB_BITS + 1 + GROUPS) µs (≈ 19 h).
const GROUPS: usize = 30;
/// Total buckets.
pub const BUCKETS: usize = (2 * SUB) as usize + GROUPS * SUB as usize;

/// The bucket of `v`.
fn bucket(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros(); // ≥ SUB_BITS + 1
    let group = (msb - SUB_BITS) as usize; // ≥ 1
    let sub = ((v >> (msb - SUB_BITS)) & (SUB - 1)) as usize;
    let idx = SUB as usize + group * SUB as usize + sub;
    idx.min(BUCKETS - 1)
}

/// The smallest value in bucket `i` (quantiles report the bucket midpoint).
fn bucket_low(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * SUB {
        return i;
    }
    let group = (i - SUB) / SUB; // ≥ 1
    let sub = (i - SUB) % SUB;
    (SUB + sub) << group
}

/// Width of bucket `i`.
fn bucket_width(i: usize) -> u64 {
    if (i as u64) < 2 * SUB {
        1
    } else {
        1 << ((i as u64 - SUB) / SUB)
    }
}

/// A latency histogram owned by one thread (or merged from several).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one value (µs).
    pub fn record(&mut self, us: u64) {
        self.counts[bucket(us)] += 1;
        self.total += 1;
        self.max = self.max.max(us);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The value below which a fraction `q` (0..=1) of the values lie: the midpoint of the
    /// bucket holding the ⌈q·n⌉-th value, never above the maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let mid = bucket_low(i) + (bucket_width(i) - 1) / 2;
                return mid.min(self.max);
            }
        }
        self.max
    }
}

/// A histogram one thread records into and others read (relaxed atomics; one `fetch_add`
/// per value).
#[derive(Debug)]
pub struct AtomicHistogram {
    counts: Box<[AtomicU64]>,
    max: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

impl AtomicHistogram {
    /// Records one value (µs).
    pub fn record(&self, us: u64) {
        self.counts[bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(us, Ordering::Relaxed);
    }

    /// A copy of the current counts.
    pub fn snapshot(&self) -> LatencyHistogram {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total = counts.iter().sum();
        LatencyHistogram {
            counts,
            total,
            max: self.max.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_cover_their_values() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 30, u64::MAX / 2, u64::MAX]) {
            let b = bucket(v);
            assert!(b >= last || v >= 1 << 30, "bucket order at {v}");
            last = b;
            if b < BUCKETS - 1 {
                assert!(
                    bucket_low(b) <= v && v < bucket_low(b) + bucket_width(b),
                    "{v}"
                );
            }
        }
    }

    #[test]
    fn quantiles_within_precision() {
        let mut h = LatencyHistogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.035, "p50 {p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.035, "p99 {p99}");
        assert_eq!(h.quantile(1.0), 10_000);
        assert_eq!(h.quantile(0.0), 1);
        assert_eq!(LatencyHistogram::new().quantile(0.5), 0);
        let a = AtomicHistogram::default();
        for v in [3, 3, 3, 1000] {
            a.record(v);
        }
        let s = a.snapshot();
        assert_eq!((s.count(), s.max(), s.quantile(0.5)), (4, 1000, 3));
        let mut m = s.clone();
        m.merge(&s);
        assert_eq!(m.count(), 8);
    }
}
