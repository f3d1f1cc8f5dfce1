//! Votes of the floods: the confirm_ack layout (§4.4) patched in place, and the honest voters'
//! pool of pre-signed valid votes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::crypto::{KeyPair, vote_hash};
use crate::types::{BlockHash, Network, PublicKey, Signature};
use crate::wire::vote::FINAL_TIMESTAMP;
use crate::wire::{ConfirmAck, HEADER_LEN, Message, VOTE_FIXED_LEN, Vote};

/// Offsets in an encoded confirm_ack (§4.4): header, account, signature, timestamp, hashes.
const ACCOUNT_AT: usize = HEADER_LEN;
const SIGNATURE_AT: usize = HEADER_LEN + 32;
const TIMESTAMP_AT: usize = HEADER_LEN + 96;
const HASHES_AT: usize = HEADER_LEN + VOTE_FIXED_LEN;

/// One encoded confirm_ack whose signature, timestamp and hashes are patched in place.
#[derive(Debug, Clone)]
pub(super) struct VoteTemplate {
    pub(super) bytes: Vec<u8>,
}

impl VoteTemplate {
    pub(super) fn new(network: Network, account: PublicKey, hashes: usize) -> VoteTemplate {
        let vote = Vote {
            account,
            signature: Signature([0; 64]),
            timestamp: 0,
            hashes: vec![BlockHash([0; 32]); hashes],
        };
        let bytes = Message::ConfirmAck(ConfirmAck {
            vote,
            rebroadcasted: false,
        })
        .encode(network);
        debug_assert_eq!(bytes.len(), HASHES_AT + 32 * hashes);
        debug_assert_eq!(&bytes[ACCOUNT_AT..ACCOUNT_AT + 32], &account.0);
        VoteTemplate { bytes }
    }

    pub(super) fn hashes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[HASHES_AT..]
    }

    pub(super) fn set(&mut self, signature: &Signature, timestamp: u64) {
        self.bytes[SIGNATURE_AT..SIGNATURE_AT + 64].copy_from_slice(&signature.0);
        self.bytes[TIMESTAMP_AT..TIMESTAMP_AT + 8].copy_from_slice(&timestamp.to_le_bytes());
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The block hashes of pool vote `index` (derived, so the pool stores only signatures).
fn pool_hashes(seed: u64, index: u64, out: &mut [u8]) {
    let mut st = seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    for chunk in out.chunks_mut(8) {
        let v = splitmix(&mut st).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// The timestamp of pool vote `index`: every fourth a final vote, the others packed
/// milliseconds with duration 9 (8192 ms), as HEAD's vote generator makes them (§4.4).
fn pool_timestamp(base_ms: u64, index: u64) -> u64 {
    if index % 4 == 3 {
        FINAL_TIMESTAMP
    } else {
        ((base_ms + index) << 4) | 9
    }
}

pub(super) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The valid votes of one honest voter: its representative key and one signature per vote.
#[derive(Debug, Clone)]
pub struct VoterPool {
    /// The voting account: a fresh random key made by [`VotePool::sign`], which signs every
    /// vote of this pool.
    pub account: PublicKey,
    seed: u64,
    base_ms: u64,
    signatures: Vec<Signature>,
}

impl VoterPool {
    /// Votes in the pool.
    pub fn len(&self) -> usize {
        self.signatures.len()
    }

    /// True for an empty pool.
    pub fn is_empty(&self) -> bool {
        self.signatures.is_empty()
    }

    /// Encodes vote `index` into `t` (hashes, timestamp, signature).
    pub(super) fn fill(&self, t: &mut VoteTemplate, index: usize) {
        pool_hashes(self.seed, index as u64, t.hashes_mut());
        t.set(
            &self.signatures[index],
            pool_timestamp(self.base_ms, index as u64),
        );
    }
}

/// Pre-signed valid votes of the honest voters: distinct payloads (distinct hashes and
/// timestamps), so the duplicate filter passes each once.
#[derive(Debug, Clone)]
pub struct VotePool {
    /// One pool per voter.
    pub voters: Vec<VoterPool>,
    /// Hashes per vote.
    pub hashes: usize,
}

impl VotePool {
    /// Signs `per_voter` votes for each of `voters` fresh representative keys, on `threads`
    /// threads (each signature ~16 µs).
    pub fn sign(voters: usize, per_voter: usize, hashes: usize, threads: usize) -> VotePool {
        let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
        let base_ms = now_unix_ms();
        let threads = threads.max(1);
        let pools = (0..voters)
            .map(|_| {
                let key = KeyPair::from_private(rng.random());
                let seed: u64 = rng.random();
                let mut signatures = vec![Signature([0; 64]); per_voter];
                let chunk = per_voter.div_ceil(threads).max(1);
                std::thread::scope(|s| {
                    for (c, part) in signatures.chunks_mut(chunk).enumerate() {
                        let key = &key;
                        s.spawn(move || {
                            let mut hs = vec![0u8; 32 * hashes];
                            let mut list = vec![BlockHash([0; 32]); hashes];
                            for (k, sig) in part.iter_mut().enumerate() {
                                let index = (c * chunk + k) as u64;
                                pool_hashes(seed, index, &mut hs);
                                for (h, b) in list.iter_mut().zip(hs.chunks(32)) {
                                    h.0.copy_from_slice(b);
                                }
                                let ts = pool_timestamp(base_ms, index);
                                *sig = key.sign(&vote_hash(&list, ts).0);
                            }
                        });
                    }
                });
                VoterPool {
                    account: key.public(),
                    seed,
                    base_ms,
                    signatures,
                }
            })
            .collect();
        VotePool {
            voters: pools,
            hashes,
        }
    }

    /// Votes in all.
    pub fn len(&self) -> usize {
        self.voters.iter().map(VoterPool::len).sum()
    }

    /// True when no voter has a vote.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory held by the signatures, bytes.
    pub fn bytes(&self) -> usize {
        self.len() * std::mem::size_of::<Signature>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{MessageType, VoteView};

    #[test]
    fn pool_votes_verify_and_are_distinct() {
        let pool = VotePool::sign(2, 6, 12, 2);
        assert_eq!(pool.len(), 12);
        let mut payloads = std::collections::HashSet::new();
        for vp in &pool.voters {
            let mut t = VoteTemplate::new(Network::Dev, vp.account, pool.hashes);
            for i in 0..vp.len() {
                vp.fill(&mut t, i);
                let (header, payload) = t.bytes.split_at(HEADER_LEN);
                let header =
                    crate::wire::Header::decode(header.try_into().unwrap(), Network::Dev).unwrap();
                assert_eq!(header.message_type, MessageType::ConfirmAck);
                let view = VoteView::new(header.extensions, payload).unwrap();
                assert_eq!(view.len(), 12);
                assert_eq!(view.account(), vp.account);
                let vote = view.to_vote();
                assert!(vote.verify(), "vote {i}");
                assert_eq!(vote.is_final(), i % 4 == 3);
                assert!(payloads.insert(payload.to_vec()), "duplicate payload");
            }
        }
    }

    #[test]
    fn attacker_votes_are_well_formed_but_wrong() {
        let key = KeyPair::from_private([3; 32]);
        let sig = key.sign(b"not this vote");
        let mut t = VoteTemplate::new(Network::Dev, key.public(), 4);
        t.hashes_mut().fill(0xab);
        t.set(&sig, (now_unix_ms() << 4) | 9);
        let (header, payload) = t.bytes.split_at(HEADER_LEN);
        let header = crate::wire::Header::decode(header.try_into().unwrap(), Network::Dev).unwrap();
        let vote = VoteView::new(header.extensions, payload).unwrap().to_vote();
        assert_eq!(vote.account, key.public());
        assert!(!vote.verify());
        assert!(crate::crypto::verify(
            b"not this vote",
            &vote.signature,
            &vote.account
        ));
    }
}
