//! The crypto ceiling: how many handshakes one core could serve if crypto were all it did.
//!
//! Per handshake one side signs once (its response) and verifies once (the peer's response,
//! a key never seen before). The measurement runs on the calling thread: each iteration signs
//! a 96-byte v2 handshake payload and pushes the signature with its public key into a batch
//! verifier (n = 64); the key is decompressed at every push, as for a new peer. Keys come
//! from a pool of distinct keys generated before the clock starts.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::crypto::{BatchVerifier, KeyPair};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_is_positive_and_plausible() {
        let c = crypto_ceiling_per_sec(Duration::from_millis(50));
        // At opt-level 1 for the crate and 3 for dalek: far above 100/s, far below 10^6/s.
        assert!(c > 100.0 && c < 1e6, "{c}");
    }
}
