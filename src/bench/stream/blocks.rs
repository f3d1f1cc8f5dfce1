//! Blocks of the streams: state blocks with valid work and signatures, each from an account
//! of its own, pre-built before a run ([`BlockPool`]); [`state_blocks`] makes them.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::pool::{Slot, StreamMix, streams};
use crate::crypto::{KeyPair, WorkThresholds, epoch_link, work_value};
use crate::types::{Amount, BlockHash, Network, PublicKey, Signature};
use crate::wire::{Block, HEADER_LEN, Message, Publish, StateBlock};

/// Bytes of a state block on the wire (§4.2).
pub const STATE_BLOCK_LEN: usize = 216;

/// Most work attempts one block may need on average (the network's entry threshold); the
/// live and beta thresholds need far more, so only the dev network can be streamed.
pub const MAX_WORK_TRIES: u64 = 4096;

/// Average work attempts per block at `network`'s entry threshold.
pub fn work_tries(network: Network) -> u64 {
    let t = WorkThresholds::for_network(network).entry();
    u64::MAX / (u64::MAX - t).max(1)
}

/// A work nonce whose value over `root` passes (`pass`) or fails the entry `threshold`.
fn find_work(root: &BlockHash, threshold: u64, pass: bool, rng: &mut ChaCha8Rng) -> u64 {
    let mut w: u64 = rng.random();
    while (work_value(root, w) >= threshold) != pass {
        w = w.wrapping_add(1);
    }
    w
}

/// A random 32-byte value that is none of the epoch links (so the node checks the account's
/// own signature) and not zero (so the root is `previous`).
fn random_hash(rng: &mut ChaCha8Rng) -> BlockHash {
    loop {
        let mut h = [0u8; 32];
        rng.fill_bytes(&mut h);
        let h = BlockHash(h);
        if !h.is_zero() && h != epoch_link(1) && h != epoch_link(2) {
            return h;
        }
    }
}

/// `n` state blocks for `network`, each by a fresh account, with random previous,
/// representative, balance and link, work at the entry threshold and the account's
/// signature. With `bad_sig` the signature is the account's over another message; with
/// `bad_work` the work falls short of the threshold.
pub fn state_blocks(
    network: Network,
    n: usize,
    bad_sig: bool,
    bad_work: bool,
    rng: &mut ChaCha8Rng,
) -> Vec<Block> {
    let threshold = WorkThresholds::for_network(network).entry();
    (0..n)
        .map(|_| {
            let key = KeyPair::from_private(rng.random());
            let previous = random_hash(rng);
            let mut b = StateBlock {
                account: key.public(),
                previous,
                representative: PublicKey(random_hash(rng).0),
                balance: Amount(rng.random()),
                link: random_hash(rng),
                signature: Signature([0; 64]),
                work: find_work(&previous, threshold, !bad_work, rng),
            };
            let hash = Block::State(b.clone()).hash();
            b.signature = if bad_sig {
                key.sign(b"not this block")
            } else {
                key.sign(&hash.0)
            };
            Block::State(b)
        })
        .collect()
}

/// Pre-built publish payloads (state blocks) dealt to the channels of a stream. Every block
/// is distinct (its own account) except the duplicates, which repeat a valid one.
#[derive(Debug, Clone)]
pub struct BlockPool {
    /// What the pool holds (valid, bad signatures, bad work, duplicates).
    pub mix: StreamMix,
    /// Per channel, its blocks' payloads back to back ([`STATE_BLOCK_LEN`] bytes each).
    channels: Vec<Vec<u8>>,
}

impl BlockPool {
    /// Makes the blocks of `mix` for `network` on `threads` threads and deals them to
    /// `channels` channels. Refuses a network whose work threshold needs more than
    /// [`MAX_WORK_TRIES`] attempts per block.
    pub fn build(
        network: Network,
        channels: usize,
        mix: StreamMix,
        threads: usize,
    ) -> Result<BlockPool, String> {
        let tries = work_tries(network);
        if tries > MAX_WORK_TRIES {
            return Err(format!(
                "the {} network's work threshold takes about {tries} attempts per block: \
                 publish streams run on the dev network",
                network.name()
            ));
        }
        let mut mix = mix;
        if mix.valid == 0 {
            mix.duplicates = 0;
        }
        let threads = threads.max(1);
        let chunk = mix.valid.div_ceil(threads).max(1);
        let parts: Vec<Vec<Block>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..mix.valid.div_ceil(chunk))
                .map(|c| {
                    let n = chunk.min(mix.valid - c * chunk);
                    s.spawn(move || {
                        let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
                        state_blocks(network, n, false, false, &mut rng)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let valid: Vec<Block> = parts.into_iter().flatten().collect();
        let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
        let bad_sigs = state_blocks(network, mix.bad_sigs, true, false, &mut rng);
        let bad_work = state_blocks(network, mix.bad_work, false, true, &mut rng);
        let block = |slot: Slot| match slot {
            Slot::Valid(g) | Slot::Dup(g) => &valid[g as usize],
            Slot::BadSig(k) => &bad_sigs[k as usize],
            Slot::BadWork(k) => &bad_work[k as usize],
        };
        let channels = streams(&mix, channels)
            .into_iter()
            .map(|slots| {
                let mut bytes = Vec::with_capacity(slots.len() * STATE_BLOCK_LEN);
                for s in slots {
                    block(s).encode_into(&mut bytes);
                }
                bytes
            })
            .collect();
        Ok(BlockPool { mix, channels })
    }

    /// Channels the blocks are dealt to.
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// Blocks of channel `channel`.
    pub fn len_of(&self, channel: usize) -> usize {
        self.channels
            .get(channel)
            .map_or(0, |b| b.len() / STATE_BLOCK_LEN)
    }

    /// Memory held by the pool's blocks, bytes (part of the RSS).
    pub fn bytes(&self) -> usize {
        self.channels.iter().map(Vec::len).sum()
    }

    /// A publish of a state block, framed for `network`.
    pub(super) fn template(&self, network: Network) -> Vec<u8> {
        let block = Block::State(StateBlock {
            account: PublicKey([0; 32]),
            previous: BlockHash([0; 32]),
            representative: PublicKey([0; 32]),
            balance: Amount(0),
            link: BlockHash([0; 32]),
            signature: Signature([0; 64]),
            work: 0,
        });
        let t = Message::Publish(Publish {
            block,
            originator: false,
        })
        .encode(network);
        debug_assert_eq!(t.len(), HEADER_LEN + STATE_BLOCK_LEN);
        t
    }

    /// Writes block `index` of `channel` into `t`.
    pub(super) fn fill(&self, channel: usize, index: usize, t: &mut [u8]) {
        let at = index * STATE_BLOCK_LEN;
        t[HEADER_LEN..].copy_from_slice(&self.channels[channel][at..at + STATE_BLOCK_LEN]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::verify_block_signature;
    use crate::wire::{Header, MessageType};

    #[test]
    fn pool_blocks_pass_or_fail_as_made() {
        let mix = StreamMix {
            valid: 12,
            bad_sigs: 2,
            duplicates: 3,
            bad_work: 4,
        };
        let pool = BlockPool::build(Network::Dev, 3, mix, 2).unwrap();
        assert_eq!(pool.mix, mix);
        let th = WorkThresholds::for_network(Network::Dev);
        let mut t = pool.template(Network::Dev);
        let (mut good, mut bad_sig, mut bad_work) = (0, 0, 0);
        let mut seen = std::collections::HashSet::new();
        let mut dups = 0;
        for c in 0..3 {
            for i in 0..pool.len_of(c) {
                pool.fill(c, i, &mut t);
                let (h, payload) = t.split_at(HEADER_LEN);
                let h = Header::decode(h.try_into().unwrap(), Network::Dev).unwrap();
                assert_eq!(h.message_type, MessageType::Publish);
                let Ok(Message::Publish(p)) = Message::decode(&h, payload) else {
                    panic!("not a publish");
                };
                if !seen.insert(payload.to_vec()) {
                    dups += 1;
                }
                match (
                    th.validate_entry(&p.block),
                    verify_block_signature(&p.block, Network::Dev),
                ) {
                    (true, Some(true)) => good += 1,
                    (true, Some(false)) => bad_sig += 1,
                    (false, Some(true)) => bad_work += 1,
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!((good, bad_sig, bad_work, dups), (15, 2, 4, 3));
        assert!(work_tries(Network::Dev) <= 16);
        assert!(BlockPool::build(Network::Live, 1, mix, 1).is_err());
    }
}
