//! Per-channel misbehaviour budgets: how many invalid signatures and how much verification
//! work one peer may cost us before it is cut off.
//!
//! A signature check is the most expensive thing a peer can make us do (≈ 20–30 µs of a core
//! each). Duplicate filtering and batching make honest traffic cheap, but a peer that streams
//! votes with wrong signatures, or simply more signed messages than any honest peer sends,
//! would otherwise be verified for as long as it likes. Each channel therefore carries two
//! token buckets ([`Budget`]):
//! - **invalid signatures** (votes, blocks, telemetry): a burst of
//!   [`ProtoConfig::max_invalid_signatures`], one token back per second. An honest node
//!   practically never relays a bad signature (nodes verify before relaying).
//! - **verification work**: [`ProtoConfig::verify_per_sec`] checks per second, bursts of
//!   twice as many.
//!
//! A peer that empties either bucket is disconnected and its IP excluded (the peer exclusion of
//! §7.5, at once rather than on its second offence), each cause counted. Handshakes are outside
//! these buckets: a bad handshake signature closes its connection at once, and the per-IP
//! cookie and admission limits bound how many a source can have in flight.
//!
//! [`ProtoConfig::max_invalid_signatures`]: super::config::ProtoConfig::max_invalid_signatures
//! [`ProtoConfig::verify_per_sec`]: super::config::ProtoConfig::verify_per_sec

/// A token bucket over milliseconds: `burst` tokens, refilled at `per_sec` tokens per second.
/// Tokens are kept in thousandths so that slow refill rates stay exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    milli: u64,
    burst_milli: u64,
    per_sec: u64,
    at_ms: u64,
}

impl Budget {
    /// A full bucket of `burst` tokens at `now_ms`, refilled at `per_sec` a second.
    pub fn new(burst: u32, per_sec: u32, now_ms: u64) -> Budget {
        let burst_milli = u64::from(burst) * 1000;
        Budget {
            milli: burst_milli,
            burst_milli,
            per_sec: u64::from(per_sec),
            at_ms: now_ms,
        }
    }

    /// Takes `n` tokens at `now_ms`. False when the bucket cannot pay (the tokens it has are
    /// kept): the peer is over its budget.
    pub fn take(&mut self, n: u32, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        if elapsed > 0 {
            // per_sec tokens per 1000 ms = per_sec milli-tokens per ms.
            self.milli = self
                .milli
                .saturating_add(elapsed.saturating_mul(self.per_sec))
                .min(self.burst_milli);
            self.at_ms = now_ms;
        }
        let cost = u64::from(n) * 1000;
        if self.milli >= cost {
            self.milli -= cost;
            true
        } else {
            false
        }
    }

    /// Whole tokens left (after the refill up to the last `take`).
    pub fn tokens(&self) -> u64 {
        self.milli / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_second() {
        let mut b = Budget::new(16, 1, 0);
        for _ in 0..16 {
            assert!(b.take(1, 0));
        }
        assert!(!b.take(1, 0), "the 17th at once is over the budget");
        assert!(!b.take(1, 999), "not quite a second later");
        assert!(b.take(1, 1000), "one token back per second");
        assert!(!b.take(1, 1000));
        // A long pause refills to the burst, no more.
        assert!(b.take(16, 1_000_000));
        assert!(!b.take(1, 1_000_000));
    }

    #[test]
    fn fast_rates_and_time_going_backwards() {
        let mut b = Budget::new(20_000, 10_000, 5);
        assert!(b.take(20_000, 5));
        assert!(!b.take(1, 5));
        assert!(b.take(10, 6), "10 000/s = 10 per ms");
        assert!(!b.take(1, 6));
        assert!(!b.take(1, 3), "an older time refills nothing");
        assert_eq!(b.tokens(), 0);
        let mut zero = Budget::new(0, 0, 0);
        assert!(!zero.take(1, u64::MAX));
        assert!(zero.take(0, 0));
    }
}
