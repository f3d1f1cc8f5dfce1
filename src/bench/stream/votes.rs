//! Votes of the streams: the confirm_ack layout (§4.4) patched in place, and the pool of
//! pre-signed votes ([`VotePool`]) the streaming peers send.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::pool::{Slot, StreamMix, streams};
use crate::crypto::{KeyPair, vote_hash};
use crate::types::{BlockHash, Network, PublicKey, Signature};
use crate::wire::vote::FINAL_TIMESTAMP;
use crate::wire::{ConfirmAck, HEADER_LEN, Message, VOTE_FIXED_LEN, Vote};

/// Offsets in an encoded confirm_ack (§4.4): header, account, signature, timestamp, hashes.
const ACCOUNT_AT: usize = HEADER_LEN;
const SIGNATURE_AT: usize = HEADER_LEN + 32;
const TIMESTAMP_AT: usize = HEADER_LEN + 96;
const HASHES_AT: usize = HEADER_LEN + VOTE_FIXED_LEN;

/// An encoded confirm_ack by `account` with `hashes` zero hashes, a zero signature and
/// timestamp: the template [`set_vote`] and [`vote_hashes_mut`] patch.
pub(super) fn vote_template(network: Network, account: PublicKey, hashes: usize) -> Vec<u8> {
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
    bytes
}

/// The hashes of an encoded confirm_ack.
pub(super) fn vote_hashes_mut(t: &mut [u8]) -> &mut [u8] {
    &mut t[HASHES_AT..]
}

/// Sets the account, signature and timestamp of an encoded confirm_ack.
pub(super) fn set_vote(t: &mut [u8], account: &PublicKey, signature: &Signature, timestamp: u64) {
    t[ACCOUNT_AT..ACCOUNT_AT + 32].copy_from_slice(&account.0);
    t[SIGNATURE_AT..SIGNATURE_AT + 64].copy_from_slice(&signature.0);
    t[TIMESTAMP_AT..TIMESTAMP_AT + 8].copy_from_slice(&timestamp.to_le_bytes());
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The block hashes of pool vote `content` (derived, so the pool stores only signatures).
fn pool_hashes(seed: u64, content: u64, out: &mut [u8]) {
    let mut st = seed ^ content.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    for chunk in out.chunks_mut(8) {
        let v = splitmix(&mut st).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// The timestamp of pool vote `content`: every fourth a final vote, the others packed
/// milliseconds with duration 9 (8192 ms), as HEAD's vote generator makes them (§4.4).
fn pool_timestamp(base_ms: u64, content: u64) -> u64 {
    if content % 4 == 3 {
        FINAL_TIMESTAMP
    } else {
        ((base_ms + content) << 4) | 9
    }
}

pub(super) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Which representative signs which vote of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepTurns {
    /// Valid vote `g` by representative `g mod reps`: with as many representatives as
    /// channels, each channel carries one representative's votes (the floods' honest
    /// voters).
    RoundRobin,
    /// Each vote by a representative drawn at random (seeded, so reproducible within the
    /// pool): however a node interleaves the channels, its verify batches hold the same mix
    /// of keys as a batch of consecutive votes (what the vote ceiling verifies).
    Random,
}

/// One vote of the pool: its signer, the content index its hashes and timestamp derive from,
/// and its signature.
#[derive(Debug, Clone, Copy)]
struct VoteItem {
    signature: Signature,
    rep: u32,
    content: u32,
}

/// Pre-signed votes dealt to the channels of a stream, each signed by one of the
/// representatives as [`RepTurns`] says. Every vote has its own payload (hashes and timestamp) except the
/// duplicates, so the duplicate filter passes each other vote once.
#[derive(Debug, Clone)]
pub struct VotePool {
    /// The representatives' accounts (the voting keys).
    pub reps: Vec<PublicKey>,
    /// Hashes per vote.
    pub hashes: usize,
    /// What the pool holds (valid, bad signatures, duplicates).
    pub mix: StreamMix,
    seed: u64,
    base_ms: u64,
    channels: Vec<Vec<VoteItem>>,
}

impl VotePool {
    /// Signs the votes of `mix` (its `bad_work` is ignored) by `reps` taking `turns`,
    /// `hashes` hashes each, on `threads` threads (each signature ~16 µs), and deals them to
    /// `channels` channels. A bad-signature vote is signed by its representative over another
    /// message (well formed, so only the full equation rejects it). With no representative
    /// the pool is empty.
    pub fn sign(
        reps: &[KeyPair],
        turns: RepTurns,
        channels: usize,
        mix: StreamMix,
        hashes: usize,
        threads: usize,
    ) -> VotePool {
        let mut mix = StreamMix { bad_work: 0, ..mix };
        if reps.is_empty() {
            mix = StreamMix::default();
        }
        if mix.valid == 0 {
            mix.duplicates = 0;
        }
        let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
        let seed: u64 = rng.random();
        let base_ms = now_unix_ms();
        let r = reps.len().max(1);
        let rep_of = move |g: u64| match turns {
            RepTurns::RoundRobin => (g % r as u64) as u32,
            RepTurns::Random => {
                let mut st = seed.rotate_left(17) ^ g;
                (splitmix(&mut st) % r as u64) as u32
            }
        };
        let mut valid = vec![Signature([0; 64]); mix.valid];
        let chunk = mix.valid.div_ceil(threads.max(1)).max(1);
        std::thread::scope(|s| {
            for (c, part) in valid.chunks_mut(chunk).enumerate() {
                s.spawn(move || {
                    let mut hs = vec![0u8; 32 * hashes];
                    let mut list = vec![BlockHash([0; 32]); hashes];
                    for (k, sig) in part.iter_mut().enumerate() {
                        let g = (c * chunk + k) as u64;
                        pool_hashes(seed, g, &mut hs);
                        for (h, b) in list.iter_mut().zip(hs.chunks(32)) {
                            h.0.copy_from_slice(b);
                        }
                        let ts = pool_timestamp(base_ms, g);
                        *sig = reps[rep_of(g) as usize].sign(&vote_hash(&list, ts).0);
                    }
                });
            }
        });
        let wrong: Vec<Signature> = reps
            .iter()
            .take(mix.bad_sigs)
            .map(|k| k.sign(b"not this vote"))
            .collect();
        let item = |slot: Slot| match slot {
            Slot::Valid(g) | Slot::Dup(g) => VoteItem {
                signature: valid[g as usize],
                rep: rep_of(u64::from(g)),
                content: g,
            },
            // fresh contents after the valid ones', so each payload is distinct
            Slot::BadSig(k) | Slot::BadWork(k) => VoteItem {
                signature: wrong[k as usize % r],
                rep: k % r as u32,
                content: mix.valid as u32 + k,
            },
        };
        let channels: Vec<Vec<VoteItem>> = streams(&mix, channels)
            .into_iter()
            .map(|slots| slots.into_iter().map(item).collect())
            .collect();
        VotePool {
            reps: reps.iter().map(KeyPair::public).collect(),
            hashes,
            mix,
            seed,
            base_ms,
            channels,
        }
    }

    /// Channels the votes are dealt to.
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// Votes of channel `channel`.
    pub fn len_of(&self, channel: usize) -> usize {
        self.channels.get(channel).map_or(0, Vec::len)
    }

    /// Votes in all.
    pub fn len(&self) -> usize {
        self.channels.iter().map(Vec::len).sum()
    }

    /// True when no channel has a vote.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory held by the pool's votes, bytes (part of the RSS).
    pub fn bytes(&self) -> usize {
        self.len() * std::mem::size_of::<VoteItem>()
    }

    /// A confirm_ack of this pool's size, framed for `network`.
    pub(super) fn template(&self, network: Network) -> Vec<u8> {
        let account = self.reps.first().copied().unwrap_or(PublicKey([0; 32]));
        vote_template(network, account, self.hashes)
    }

    /// Encodes vote `index` of `channel` into `t` (account, hashes, timestamp, signature).
    pub(super) fn fill(&self, channel: usize, index: usize, t: &mut [u8]) {
        let v = &self.channels[channel][index];
        pool_hashes(self.seed, u64::from(v.content), vote_hashes_mut(t));
        let ts = pool_timestamp(self.base_ms, u64::from(v.content));
        set_vote(t, &self.reps[v.rep as usize], &v.signature, ts);
    }

    /// Vote `index` of `channel` as the node decodes it.
    pub fn vote(&self, channel: usize, index: usize) -> Vote {
        let v = &self.channels[channel][index];
        let mut hs = vec![0u8; 32 * self.hashes];
        pool_hashes(self.seed, u64::from(v.content), &mut hs);
        Vote {
            account: self.reps[v.rep as usize],
            signature: v.signature,
            timestamp: pool_timestamp(self.base_ms, u64::from(v.content)),
            hashes: hs
                .chunks(32)
                .map(|c| BlockHash(c.try_into().unwrap_or([0; 32])))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Header, MessageType, VoteView};

    fn decode(t: &[u8]) -> Vote {
        let (header, payload) = t.split_at(HEADER_LEN);
        let header = Header::decode(header.try_into().unwrap(), Network::Dev).unwrap();
        assert_eq!(header.message_type, MessageType::ConfirmAck);
        VoteView::new(header.extensions, payload).unwrap().to_vote()
    }

    #[test]
    fn pool_votes_verify_and_are_distinct_but_the_bad_and_duplicate_ones() {
        let reps: Vec<KeyPair> = (1..=3).map(|i| KeyPair::from_private([i; 32])).collect();
        let mix = StreamMix {
            valid: 20,
            bad_sigs: 2,
            duplicates: 3,
            bad_work: 7,
        };
        let pool = VotePool::sign(&reps, RepTurns::Random, 2, mix, 12, 2);
        assert_eq!(pool.mix.bad_work, 0, "votes have no work");
        assert_eq!(pool.len(), 25);
        assert!(
            pool.len_of(0) >= 11 && pool.len_of(1) >= 11,
            "both channels get votes"
        );
        let mut t = pool.template(Network::Dev);
        let (mut payloads, mut bad, mut dups, mut signers) = (
            std::collections::HashSet::new(),
            0,
            0,
            std::collections::HashSet::new(),
        );
        for c in 0..2 {
            for i in 0..pool.len_of(c) {
                pool.fill(c, i, &mut t);
                let vote = decode(&t);
                assert_eq!(vote, pool.vote(c, i));
                assert_eq!(vote.hashes.len(), 12);
                signers.insert(vote.account);
                if !vote.verify() {
                    bad += 1;
                    let key = reps.iter().find(|k| k.public() == vote.account).unwrap();
                    assert_eq!(vote.signature, key.sign(b"not this vote"), "well formed");
                }
                if !payloads.insert(t[HEADER_LEN..].to_vec()) {
                    dups += 1;
                }
            }
        }
        assert_eq!((bad, dups), (2, 3));
        assert_eq!(signers.len(), 3, "every representative signs");
        assert!(VotePool::sign(&[], RepTurns::Random, 1, mix, 1, 1).is_empty());
    }

    #[test]
    fn every_fourth_vote_is_final_and_the_reps_take_turns_or_are_drawn() {
        let reps: Vec<KeyPair> = (1..=4).map(|i| KeyPair::from_private([i; 32])).collect();
        let mix = StreamMix {
            valid: 8,
            ..StreamMix::default()
        };
        let pool = VotePool::sign(&reps, RepTurns::RoundRobin, 1, mix, 1, 1);
        for i in 0..8 {
            let v = pool.vote(0, i);
            assert!(v.verify());
            assert_eq!(v.is_final(), i % 4 == 3);
            assert_eq!(v.account, reps[i % 4].public());
        }
        // round robin with one representative per channel: each channel is one voter's
        let mix = StreamMix {
            valid: 12,
            ..StreamMix::default()
        };
        let per_channel = VotePool::sign(&reps[..3], RepTurns::RoundRobin, 3, mix, 1, 1);
        for (c, rep) in reps.iter().take(3).enumerate() {
            assert!((0..4).all(|i| per_channel.vote(c, i).account == rep.public()));
        }
        // random turns: 64 votes of 16 representatives use most of them, none of them all
        let reps: Vec<KeyPair> = (1..=16).map(|i| KeyPair::from_private([i; 32])).collect();
        let mix = StreamMix {
            valid: 64,
            ..StreamMix::default()
        };
        let random = VotePool::sign(&reps, RepTurns::Random, 1, mix, 1, 2);
        let mut n = std::collections::HashMap::new();
        for i in 0..64 {
            let v = random.vote(0, i);
            assert!(v.verify());
            *n.entry(v.account).or_insert(0) += 1;
        }
        assert!(n.len() >= 10 && n.values().all(|&k| k < 20), "{n:?}");
    }

    #[test]
    fn attacker_votes_are_well_formed_but_wrong() {
        let key = KeyPair::from_private([3; 32]);
        let sig = key.sign(b"not this vote");
        let mut t = vote_template(Network::Dev, key.public(), 4);
        vote_hashes_mut(&mut t).fill(0xab);
        set_vote(&mut t, &key.public(), &sig, (now_unix_ms() << 4) | 9);
        let vote = decode(&t);
        assert_eq!(vote.account, key.public());
        assert!(!vote.verify());
        assert!(crate::crypto::verify(
            b"not this vote",
            &vote.signature,
            &vote.account
        ));
    }
}
