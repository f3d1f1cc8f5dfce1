//! The crypto ceilings: how many handshakes, votes or blocks one core could serve if crypto
//! were all it did. Each runs on the calling thread, on inputs made before the clock starts.
//!
//! - **Handshakes** ([`crypto_ceiling_per_sec`]): per handshake one side signs once (its
//!   response) and verifies once (the peer's response, a key never seen before). Each
//!   iteration signs a 96-byte v2 handshake payload and pushes the signature with its public
//!   key into a batch verifier (n = 64); the key is decompressed at every push, as for a new
//!   peer. Keys come from a pool of distinct keys.
//! - **Votes** ([`vote_ceiling_per_sec`]): the votes of a [`VotePool`] signed by the same
//!   representatives with the same hashes per vote as the measured stream (so the same key
//!   mix): per vote its digest (the vote hash of its hashes and timestamp) and a push into a
//!   batch verifier of the node's batch size, the representative's key decompressed once (as
//!   the node's key cache holds it). The representatives are drawn at random per vote
//!   ([`RepTurns::Random`](super::stream::RepTurns::Random)) in the stream and the sample alike, so the node's batches, however
//!   it interleaves the channels, hold the same mix of keys as the ceiling's.
//! - **Blocks** ([`publish_ceiling_per_sec`]): per state block the work check against the
//!   network's entry threshold, the block hash and a single verification with the block's
//!   own key, decompressed fresh (every block of a publish stream has a new account).

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::stream::{VotePool, state_blocks};
use crate::crypto::{BatchVerifier, KeyPair, VerifyingKey, WorkThresholds, vote_hash_of_bytes};
use crate::types::Network;
use crate::wire::Block;

/// Batch size of the verification.
pub const CEILING_BATCH: usize = 64;
/// Distinct keys cycled through.
const KEY_POOL: usize = 1024;

/// Handshakes per second one core sustains on crypto alone (one sign plus one batch-verify of
/// a fresh key each), measured for about `duration` (at least one batch) on this thread.
/// Returns 0 if a signature fails to verify (a broken crypto build).
pub fn crypto_ceiling_per_sec(duration: Duration) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(0x6e61_6e6f_7065_6572);
    let keys: Vec<KeyPair> = (0..KEY_POOL).map(|_| KeyPair::generate(&mut rng)).collect();
    let mut batch = BatchVerifier::new(CEILING_BATCH);
    let mut msg = [0u8; 96];
    let mut done: u64 = 0;
    let start = Instant::now();
    loop {
        for _ in 0..CEILING_BATCH {
            let key = &keys[(done as usize) % KEY_POOL];
            msg[..8].copy_from_slice(&done.to_le_bytes());
            let sig = key.sign(&msg);
            // Cannot fail: the batch is flushed whenever it holds CEILING_BATCH items.
            let _ = batch.push(&key.public(), &msg, &sig);
            done += 1;
        }
        if !batch.verify(&mut rng).iter().all(|&ok| ok) {
            return 0.0;
        }
        let elapsed = start.elapsed();
        if elapsed >= duration {
            return done as f64 / elapsed.as_secs_f64();
        }
    }
}

/// Runs `step` (one unit of work, returning how many items it did, 0 on a wrong result)
/// until `duration` has passed (at least once), and returns items per second.
fn rate(duration: Duration, mut step: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut done = 0usize;
    loop {
        let n = step();
        if n == 0 {
            return 0.0;
        }
        done += n;
        let elapsed = start.elapsed();
        if elapsed >= duration {
            return done as f64 / elapsed.as_secs_f64();
        }
    }
}

/// Votes per second one core verifies, for about `duration`: the votes of `sample` (its
/// representatives taking turns, as in the stream), each digested and pushed into a batch
/// verifier flushed every `batch` votes. Returns 0 if a vote fails to verify (the sample
/// must hold valid votes only) or the sample is empty.
pub fn vote_ceiling_per_sec(duration: Duration, sample: &VotePool, batch: usize) -> f64 {
    let keys: Vec<Option<VerifyingKey>> =
        sample.reps.iter().map(VerifyingKey::from_public).collect();
    let votes: Vec<(usize, Vec<u8>, u64, crate::types::Signature)> = (0..sample.channels())
        .flat_map(|c| (0..sample.len_of(c)).map(move |i| (c, i)))
        .map(|(c, i)| {
            let v = sample.vote(c, i);
            let rep = sample
                .reps
                .iter()
                .position(|r| *r == v.account)
                .unwrap_or(0);
            let bytes = v.hashes.iter().flat_map(|h| h.0).collect();
            (rep, bytes, v.timestamp, v.signature)
        })
        .collect();
    if votes.is_empty() || keys.iter().any(Option::is_none) {
        return 0.0;
    }
    let batch = batch.clamp(1, crate::crypto::MAX_BATCH);
    let mut verifier = BatchVerifier::new(batch);
    let mut rng = ChaCha8Rng::seed_from_u64(0x766f_7465);
    let mut next = 0usize;
    rate(duration, || {
        for _ in 0..batch {
            let (rep, hashes, ts, sig) = &votes[next % votes.len()];
            next += 1;
            let digest = vote_hash_of_bytes(hashes, *ts);
            if let Some(k) = &keys[*rep] {
                // Cannot fail: the batch is flushed whenever it holds `batch` items.
                let _ = verifier.push_key(k, &digest.0, sig);
            }
        }
        if verifier.verify(&mut rng).iter().all(|&ok| ok) {
            batch
        } else {
            0
        }
    })
}

/// Blocks per second one core checks, for about `duration`: per state block (each by a
/// fresh account, made before the clock starts) the work check at `network`'s entry
/// threshold, the block hash and a single verification with the account's key decompressed
/// anew. Returns 0 if a block fails either check (a broken build).
pub fn publish_ceiling_per_sec(duration: Duration, network: Network) -> f64 {
    const BLOCKS: usize = 1024;
    let mut rng = ChaCha8Rng::seed_from_u64(0x626c_6f63_6b73);
    let blocks = state_blocks(network, BLOCKS, false, false, &mut rng);
    let thresholds = WorkThresholds::for_network(network);
    let mut next = 0usize;
    rate(duration, || {
        let b = &blocks[next % BLOCKS];
        next += 1;
        let Block::State(s) = b else {
            return 0;
        };
        let ok = thresholds.validate_entry(b)
            && VerifyingKey::from_public(&s.account)
                .is_some_and(|k| k.verify(&b.hash().0, &s.signature));
        usize::from(ok)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stream::RepTurns;

    #[test]
    fn ceiling_is_positive_and_plausible() {
        let c = crypto_ceiling_per_sec(Duration::from_millis(50));
        // At opt-level 1 for the crate and 3 for dalek: far above 100/s, far below 10^6/s.
        assert!(c > 100.0 && c < 1e6, "{c}");
    }

    #[test]
    fn vote_and_block_ceilings_are_positive_and_plausible() {
        let reps: Vec<KeyPair> = (1..=4).map(|i| KeyPair::from_private([i; 32])).collect();
        let mix = crate::bench::stream::StreamMix {
            valid: 64,
            ..Default::default()
        };
        let sample = VotePool::sign(&reps, RepTurns::Random, 1, mix, 2, 1);
        let d = Duration::from_millis(50);
        for batch in [1, 16, 64] {
            let v = vote_ceiling_per_sec(d, &sample, batch);
            assert!(v > 100.0 && v < 1e7, "batch {batch}: {v}");
        }
        let bad = crate::bench::stream::StreamMix {
            bad_sigs: 8,
            ..Default::default()
        };
        let wrong = VotePool::sign(&reps, RepTurns::Random, 1, bad, 2, 1);
        assert_eq!(
            vote_ceiling_per_sec(d, &wrong, 8),
            0.0,
            "a bad vote is noticed"
        );
        let b = publish_ceiling_per_sec(d, Network::Dev);
        assert!(b > 100.0 && b < 1e7, "{b}");
    }
}
