//! Online weight and the quorum delta (§8 online_reps).
//!
//! Representatives are observed when they answer the rep crawler with a valid vote; the online
//! weight is the sum of the weights of those observed within the last `weight_period` (300 s).
//! Every 300 s the online weight is sampled (and persisted by the store); the trended weight is
//! the median of the samples together with `online_weight_minimum`, and the quorum delta is 67 %
//! of max(online, trended, minimum).

use std::collections::HashMap;

use crate::types::PublicKey;

/// `online_weight_minimum`: 60 000 × 10^33 raw = 6×10^37 raw (60 million nano).
pub const ONLINE_WEIGHT_MINIMUM: u128 = 60_000 * 10u128.pow(33);

/// `online_weight_quorum`: percent of the online weight that makes quorum.
pub const ONLINE_WEIGHT_QUORUM_PERCENT: u128 = 67;

/// How long an observed representative counts as online (`weight_period`, 300 s).
pub const WEIGHT_PERIOD_MS: u64 = 300_000;

/// Representatives seen online recently, with their weights.
#[derive(Debug, Clone)]
pub struct OnlineReps {
    seen: HashMap<PublicKey, u64>,
    samples: Vec<u128>,
    max_samples: usize,
    minimum: u128,
    period_ms: u64,
}

impl OnlineReps {
    /// An empty set with the given `online_weight_minimum` and sample cap
    /// (4032 on live and test, 288 otherwise).
    pub fn new(minimum: u128, max_samples: usize) -> OnlineReps {
        OnlineReps {
            seen: HashMap::new(),
            samples: Vec::new(),
            max_samples: max_samples.max(1),
            minimum,
            period_ms: WEIGHT_PERIOD_MS,
        }
    }

    /// Loads persisted samples (oldest first), keeping the newest `max_samples`.
    pub fn with_samples(mut self, samples: Vec<u128>) -> OnlineReps {
        self.samples = samples;
        let excess = self.samples.len().saturating_sub(self.max_samples);
        self.samples.drain(..excess);
        self
    }

    /// Marks `rep` online at `now_ms`.
    pub fn observe(&mut self, rep: PublicKey, now_ms: u64) {
        self.seen.insert(rep, now_ms);
    }

    /// Forgets representatives not seen within the weight period.
    pub fn trim(&mut self, now_ms: u64) {
        let period = self.period_ms;
        self.seen
            .retain(|_, &mut t| now_ms.saturating_sub(t) <= period);
    }

    /// Representatives currently online.
    pub fn reps(&self) -> impl Iterator<Item = &PublicKey> {
        self.seen.keys()
    }

    /// Σ weight of the representatives seen within the weight period.
    pub fn online(&self, now_ms: u64, weight: impl Fn(&PublicKey) -> u128) -> u128 {
        self.seen
            .iter()
            .filter(|&(_, &t)| now_ms.saturating_sub(t) <= self.period_ms)
            .fold(0u128, |acc, (rep, _)| acc.saturating_add(weight(rep)))
    }

    /// Records a sample of the online weight; returns it (for the store to persist).
    pub fn sample(&mut self, online: u128) -> u128 {
        self.samples.push(online);
        if self.samples.len() > self.max_samples {
            self.samples.remove(0);
        }
        online
    }

    /// Median of the stored samples together with the minimum.
    pub fn trended(&self) -> u128 {
        let mut all = self.samples.clone();
        all.push(self.minimum);
        all.sort_unstable();
        all[all.len() / 2]
    }

    /// The quorum delta: 67 % of max(online, trended, minimum).
    pub fn delta(&self, online: u128) -> u128 {
        let base = online.max(self.trended()).max(self.minimum);
        // base / 100 * 67 would lose precision; base * 67 could overflow for huge weights
        (base / 100) * ONLINE_WEIGHT_QUORUM_PERCENT
            + (base % 100) * ONLINE_WEIGHT_QUORUM_PERCENT / 100
    }

    /// The `online_weight_minimum` in force.
    pub fn minimum(&self) -> u128 {
        self.minimum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(b: u8) -> PublicKey {
        PublicKey([b; 32])
    }

    #[test]
    fn delta_is_67_percent_of_the_largest() {
        let o = OnlineReps::new(ONLINE_WEIGHT_MINIMUM, 288);
        // nothing online: the minimum rules
        assert_eq!(o.delta(0), ONLINE_WEIGHT_MINIMUM / 100 * 67);
        assert_eq!(o.delta(0), 402 * 10u128.pow(35));
        // more online than the minimum
        assert_eq!(
            o.delta(u128::MAX),
            u128::MAX / 100 * 67 + (u128::MAX % 100) * 67 / 100
        );
    }

    #[test]
    fn online_counts_only_recent_reps() {
        let mut o = OnlineReps::new(0, 288);
        o.observe(rep(1), 0);
        o.observe(rep(2), 200_000);
        let w = |r: &PublicKey| r.0[0] as u128 * 10;
        assert_eq!(o.online(250_000, w), 30);
        assert_eq!(o.online(400_000, w), 20);
        o.trim(400_000);
        assert_eq!(o.reps().count(), 1);
    }

    #[test]
    fn trended_is_the_median_with_the_minimum() {
        let mut o = OnlineReps::new(100, 3);
        assert_eq!(o.trended(), 100);
        o.sample(300);
        o.sample(500);
        // {100, 300, 500} → 300
        assert_eq!(o.trended(), 300);
        o.sample(700);
        o.sample(900);
        // samples capped at 3: {500, 700, 900} + 100 → upper median 700
        assert_eq!(o.trended(), 700);
        assert_eq!(o.delta(0), 469);
    }
}
