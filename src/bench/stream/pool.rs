//! A pool of pre-built messages ([`MessagePool`]: votes or blocks), what it holds
//! ([`StreamMix`]) and the order its messages are sent in ([`layout`]).

use super::blocks::BlockPool;
use super::votes::VotePool;
use crate::types::Network;
use crate::wire::MessageType;

/// What a pool holds, message by message kind. Every message is distinct (a payload of its
/// own) except the duplicates, which repeat a valid one byte for byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamMix {
    /// Valid messages: a good signature (and, for blocks, enough work).
    pub valid: usize,
    /// Messages whose signature is well formed but wrong.
    pub bad_sigs: usize,
    /// Copies of valid messages (the duplicate filter should drop one of each pair).
    pub duplicates: usize,
    /// Blocks whose work is below the network's entry threshold (votes: always 0).
    pub bad_work: usize,
}

impl StreamMix {
    /// Messages in all.
    pub fn total(&self) -> usize {
        self.valid + self.bad_sigs + self.duplicates + self.bad_work
    }
}

/// One message of a stream, in send order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    /// Valid message `i` (0..valid).
    Valid(u32),
    /// Bad-signature message `i` (0..bad_sigs).
    BadSig(u32),
    /// Bad-work message `i` (0..bad_work).
    BadWork(u32),
    /// A copy of valid message `i`.
    Dup(u32),
}

/// The send order of every one of `channels` channels: `mix`'s valid messages in order, the
/// bad ones spread evenly among them, dealt in turn (message `p` of the whole order to
/// channel `p mod channels`); then each duplicate right after the message it copies, on that
/// message's channel, so the node checks the two one after the other (a duplicate filter of
/// fixed size could have forgotten an original checked long before).
pub(super) fn streams(mix: &StreamMix, channels: usize) -> Vec<Vec<Slot>> {
    let channels = channels.max(1);
    let valid = mix.valid as u64;
    // (place, kind rank, slot): valid message g at place g; extra k of n after place
    // ⌊(k+1)·valid/(n+1)⌋ − 1, so they spread over the stream and never lead it
    let at = |k: usize, n: usize| ((k as u64 + 1) * valid / (n as u64 + 1)).saturating_sub(1);
    let mut keyed: Vec<(u64, u8, Slot)> = Vec::with_capacity(mix.total());
    keyed.extend((0..mix.valid).map(|g| (g as u64, 0, Slot::Valid(g as u32))));
    keyed.extend((0..mix.bad_sigs).map(|k| (at(k, mix.bad_sigs), 1, Slot::BadSig(k as u32))));
    keyed.extend((0..mix.bad_work).map(|k| (at(k, mix.bad_work), 2, Slot::BadWork(k as u32))));
    keyed.sort_by_key(|&(place, rank, _)| (place, rank));
    let mut out: Vec<Vec<Slot>> = (0..channels)
        .map(|_| Vec::with_capacity(mix.total() / channels + 1))
        .collect();
    // where each valid message went: (channel, index)
    let mut home = vec![(0usize, 0usize); mix.valid];
    for (p, (_, _, slot)) in keyed.into_iter().enumerate() {
        let ch = &mut out[p % channels];
        if let Slot::Valid(g) = slot {
            home[g as usize] = (p % channels, ch.len());
        }
        ch.push(slot);
    }
    if valid == 0 {
        return out;
    }
    // duplicates, inserted from the back of each channel so the recorded indices hold
    let mut dups: Vec<(usize, usize, u32)> = (0..mix.duplicates)
        .map(|k| {
            let g = at(k, mix.duplicates).min(valid - 1) as u32;
            let (c, i) = home[g as usize];
            (c, i, g)
        })
        .collect();
    dups.sort_unstable_by(|a, b| b.cmp(a));
    for (c, i, g) in dups {
        out[c].insert(i + 1, Slot::Dup(g));
    }
    out
}

/// Pre-built messages for the channels of a stream: confirm_acks or publishes.
#[derive(Debug, Clone)]
pub enum MessagePool {
    /// Pre-signed votes.
    Votes(VotePool),
    /// Pre-built state blocks.
    Blocks(BlockPool),
}

impl MessagePool {
    /// Channels the pool is dealt to.
    pub fn channels(&self) -> usize {
        match self {
            MessagePool::Votes(p) => p.channels(),
            MessagePool::Blocks(p) => p.channels(),
        }
    }

    /// Messages of channel `channel`.
    pub fn len_of(&self, channel: usize) -> usize {
        match self {
            MessagePool::Votes(p) => p.len_of(channel),
            MessagePool::Blocks(p) => p.len_of(channel),
        }
    }

    /// Messages in all.
    pub fn len(&self) -> usize {
        (0..self.channels()).map(|c| self.len_of(c)).sum()
    }

    /// True when no channel has a message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory the pool holds, bytes (part of the process's RSS).
    pub fn bytes(&self) -> usize {
        match self {
            MessagePool::Votes(p) => p.bytes(),
            MessagePool::Blocks(p) => p.bytes(),
        }
    }

    /// What the pool holds.
    pub fn mix(&self) -> StreamMix {
        match self {
            MessagePool::Votes(p) => p.mix,
            MessagePool::Blocks(p) => p.mix,
        }
    }

    /// The message type of the pool's messages.
    pub fn message_type(&self) -> MessageType {
        match self {
            MessagePool::Votes(_) => MessageType::ConfirmAck,
            MessagePool::Blocks(_) => MessageType::Publish,
        }
    }

    /// A message of the pool framed for `network`, to be patched by [`Self::fill`] (every
    /// message of a pool has the same length).
    pub(super) fn template(&self, network: Network) -> Vec<u8> {
        match self {
            MessagePool::Votes(p) => p.template(network),
            MessagePool::Blocks(p) => p.template(network),
        }
    }

    /// Writes message `index` of `channel` into `t` (made by [`Self::template`]).
    pub(super) fn fill(&self, channel: usize, index: usize, t: &mut [u8]) {
        match self {
            MessagePool::Votes(p) => p.fill(channel, index, t),
            MessagePool::Blocks(p) => p.fill(channel, index, t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_spread_the_extras_and_duplicates_follow_their_original() {
        let mix = StreamMix {
            valid: 100,
            bad_sigs: 4,
            duplicates: 3,
            bad_work: 2,
        };
        let chans = streams(&mix, 3);
        assert_eq!(chans.iter().map(Vec::len).sum::<usize>(), mix.total());
        let mut valid: Vec<u32> = chans
            .iter()
            .flatten()
            .filter_map(|s| match s {
                Slot::Valid(g) => Some(*g),
                _ => None,
            })
            .collect();
        valid.sort_unstable();
        assert_eq!(valid, (0..100).collect::<Vec<_>>(), "every valid one once");
        // dealt in turn: valid g in channel g mod 3 until the first extra
        assert_eq!(chans[1][0], Slot::Valid(1));
        assert_eq!(chans[0][1], Slot::Valid(3));
        let mut dups = 0;
        for ch in &chans {
            for (i, s) in ch.iter().enumerate() {
                if let Slot::Dup(g) = s {
                    dups += 1;
                    assert_eq!(ch[i - 1], Slot::Valid(*g), "right after its original");
                }
            }
        }
        assert_eq!(dups, 3);
        let order: Vec<Slot> = chans.concat();
        let first_extra = chans[0].iter().position(|s| !matches!(s, Slot::Valid(_)));
        assert!(
            first_extra.unwrap() > 3,
            "extras spread, not bunched at the start"
        );
        let bad: usize = order
            .iter()
            .filter(|s| matches!(s, Slot::BadSig(_)))
            .count();
        assert_eq!(bad, 4);
        // duplicates with no valid message have nothing to copy
        let none = streams(
            &StreamMix {
                valid: 0,
                bad_sigs: 2,
                duplicates: 5,
                bad_work: 0,
            },
            1,
        );
        assert_eq!(none, vec![vec![Slot::BadSig(0), Slot::BadSig(1)]]);
    }
}
