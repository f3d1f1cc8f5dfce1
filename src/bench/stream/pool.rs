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

/// The send order of `mix`'s messages: the valid ones in order, each other kind spread evenly
/// among them (a duplicate right after the message it copies). Message `p` of the order goes
/// to channel `p mod channels`.
pub(super) fn layout(mix: &StreamMix) -> Vec<Slot> {
    let valid = mix.valid as u64;
    // (place, kind rank, slot): valid message g at place g; extra k of n after place
    // ⌊(k+1)·valid/(n+1)⌋ − 1, so they spread over the stream and never lead it
    let at = |k: usize, n: usize| ((k as u64 + 1) * valid / (n as u64 + 1)).saturating_sub(1);
    let mut keyed: Vec<(u64, u8, Slot)> = Vec::with_capacity(mix.total());
    keyed.extend((0..mix.valid).map(|g| (g as u64, 0, Slot::Valid(g as u32))));
    keyed.extend((0..mix.bad_sigs).map(|k| (at(k, mix.bad_sigs), 1, Slot::BadSig(k as u32))));
    keyed.extend((0..mix.bad_work).map(|k| (at(k, mix.bad_work), 2, Slot::BadWork(k as u32))));
    if valid > 0 {
        keyed.extend((0..mix.duplicates).map(|k| {
            let g = at(k, mix.duplicates).min(valid - 1);
            (g, 3, Slot::Dup(g as u32))
        }));
    }
    keyed.sort_by_key(|&(place, rank, _)| (place, rank));
    keyed.into_iter().map(|(_, _, s)| s).collect()
}

/// Splits `order` over `channels` channels: message `p` to channel `p mod channels`.
pub(super) fn deal<T: Copy>(order: &[T], channels: usize) -> Vec<Vec<T>> {
    let channels = channels.max(1);
    let mut out: Vec<Vec<T>> = (0..channels)
        .map(|_| Vec::with_capacity(order.len() / channels + 1))
        .collect();
    for (p, item) in order.iter().enumerate() {
        out[p % channels].push(*item);
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
    fn layout_spreads_the_extras_and_keeps_every_message() {
        let mix = StreamMix {
            valid: 100,
            bad_sigs: 4,
            duplicates: 3,
            bad_work: 2,
        };
        let order = layout(&mix);
        assert_eq!(order.len(), mix.total());
        let valid: Vec<u32> = order
            .iter()
            .filter_map(|s| match s {
                Slot::Valid(g) => Some(*g),
                _ => None,
            })
            .collect();
        assert_eq!(valid, (0..100).collect::<Vec<_>>(), "valid ones in order");
        for (p, s) in order.iter().enumerate() {
            if let Slot::Dup(g) = s {
                let orig = order.iter().position(|x| *x == Slot::Valid(*g)).unwrap();
                assert!(orig < p, "a duplicate comes after its original");
            }
        }
        let first_extra = order.iter().position(|s| !matches!(s, Slot::Valid(_)));
        assert!(
            first_extra.unwrap() > 10,
            "extras spread, not bunched at the start"
        );
        let bad: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Slot::BadSig(_)))
            .map(|(p, _)| p)
            .collect();
        assert_eq!(bad.len(), 4);
        assert!(bad.windows(2).all(|w| w[1] - w[0] > 10), "{bad:?}");
        // duplicates with no valid message have nothing to copy
        let none = layout(&StreamMix {
            valid: 0,
            bad_sigs: 2,
            duplicates: 5,
            bad_work: 0,
        });
        assert_eq!(none, vec![Slot::BadSig(0), Slot::BadSig(1)]);
        let dealt = deal(&order, 3);
        assert_eq!(dealt.iter().map(Vec::len).sum::<usize>(), order.len());
        assert_eq!(dealt[1][0], order[1]);
        assert_eq!(dealt[0][1], order[3]);
    }
}
