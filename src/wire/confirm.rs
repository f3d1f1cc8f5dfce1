//! confirm_req (§4.3) and confirm_ack (§4.4).
//!
//! Both carry up to 255 entries and decode into a `Vec` (one allocation per message).
//! An inline array would cost 16 KiB (confirm_req) or 8 KiB (confirm_ack) in every
//! [`Message`](super::Message) value, copied on each move, to save an allocation that is
//! tiny next to the signature check a vote needs anyway. A borrowed, allocation-free view
//! of a received vote is [`VoteView`].

use super::block::BlockType;
use super::error::DecodeError;
use super::header::{Extensions, MessageType};
use super::reader::Reader;
use super::vote::{MAX_HASHES, Vote};
use crate::types::{BlockHash, PublicKey, Signature};

/// One confirm_req entry: a block hash and its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashRoot {
    /// Hash of the block a vote is asked for; a pair whose hash and root are both zero
    /// is skipped on receive (§4.3).
    pub hash: BlockHash,
    /// The block's root (§4.2).
    pub root: BlockHash,
}

/// A confirm_req: 1..=255 hash/root pairs, none all-zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfirmReq {
    /// The pairs; [`Message::encode`](super::Message::encode) writes at most the first 255.
    pub pairs: Vec<HashRoot>,
}

impl ConfirmReq {
    fn count(&self) -> u8 {
        self.pairs.len().min(MAX_HASHES) as u8
    }

    /// Header extensions: not_a_block, count v1 (< 16) or v2.
    pub fn extensions(&self) -> Extensions {
        Extensions(0)
            .with_block_type(BlockType::NotABlock)
            .with_confirm_count(self.count())
    }

    pub(crate) fn payload_len(&self) -> usize {
        self.count() as usize * 64
    }

    pub(crate) fn encode_payload(&self, out: &mut Vec<u8>) {
        for p in &self.pairs[..self.count() as usize] {
            out.extend_from_slice(&p.hash.0);
            out.extend_from_slice(&p.root.0);
        }
    }

    /// Decodes `count` pairs; all-zero pairs are skipped, and the message is invalid if
    /// none remain or fewer than `count` remain (§4.3).
    #[inline]
    pub(crate) fn decode_payload(
        ext: Extensions,
        payload: &[u8],
    ) -> Result<ConfirmReq, DecodeError> {
        let count = ext.confirm_count() as usize;
        let mut r = Reader::new(MessageType::ConfirmReq, payload);
        let mut pairs = Vec::with_capacity(count);
        for _ in 0..count {
            let hash = BlockHash(r.array()?);
            let root = BlockHash(r.array()?);
            if !(hash.is_zero() && root.is_zero()) {
                pairs.push(HashRoot { hash, root });
            }
        }
        r.finish()?;
        if pairs.is_empty() || pairs.len() != count {
            return Err(DecodeError::ConfirmReqPairs {
                count,
                nonzero: pairs.len(),
            });
        }
        Ok(ConfirmReq { pairs })
    }
}

/// A confirm_ack: a vote, and whether it is a rebroadcast (ext bit 2, V27+).
///
/// On receive the header's block-type bits are ignored (RsNano sends 0, nano-node 1;
/// §11a); we send not_a_block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfirmAck {
    /// The vote; [`Message::encode`](super::Message::encode) writes at most 255 hashes.
    pub vote: Vote,
    /// Ext bit 2 (V27+): the vote is a rebroadcast (§2.5); older nodes ignore it.
    pub rebroadcasted: bool,
}

/// Bytes of a vote before its hashes: account, signature, timestamp.
pub const VOTE_FIXED_LEN: usize = 104;

impl ConfirmAck {
    fn count(&self) -> u8 {
        self.vote.hashes.len().min(MAX_HASHES) as u8
    }

    /// Header extensions: not_a_block, count v1 (< 16) or v2, rebroadcasted bit.
    pub fn extensions(&self) -> Extensions {
        Extensions(0)
            .with_block_type(BlockType::NotABlock)
            .with_confirm_count(self.count())
            .with(Extensions::REBROADCASTED, self.rebroadcasted)
    }

    pub(crate) fn payload_len(&self) -> usize {
        VOTE_FIXED_LEN + self.count() as usize * 32
    }

    pub(crate) fn encode_payload(&self, out: &mut Vec<u8>) {
        let v = &self.vote;
        out.extend_from_slice(&v.account.0);
        out.extend_from_slice(&v.signature.0);
        out.extend_from_slice(&v.timestamp.to_le_bytes());
        for h in &v.hashes[..self.count() as usize] {
            out.extend_from_slice(&h.0);
        }
    }

    #[inline]
    pub(crate) fn decode_payload(
        ext: Extensions,
        payload: &[u8],
    ) -> Result<ConfirmAck, DecodeError> {
        let view = VoteView::new(ext, payload)?;
        Ok(ConfirmAck {
            vote: view.to_vote(),
            rebroadcasted: ext.rebroadcasted(),
        })
    }
}

/// A borrowed view of a received confirm_ack payload: no allocation, no copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoteView<'a> {
    fixed: &'a [u8; VOTE_FIXED_LEN],
    hashes: &'a [u8],
}

impl<'a> VoteView<'a> {
    /// Checks that `payload` is exactly a vote with the header's count of hashes.
    pub fn new(ext: Extensions, payload: &'a [u8]) -> Result<VoteView<'a>, DecodeError> {
        let expected = VOTE_FIXED_LEN + ext.confirm_count() as usize * 32;
        let mt = MessageType::ConfirmAck;
        DecodeError::exact_len(mt, expected, payload.len())?;
        match payload.split_first_chunk::<VOTE_FIXED_LEN>() {
            Some((fixed, hashes)) => Ok(VoteView { fixed, hashes }),
            None => Err(DecodeError::PayloadTooShort {
                message_type: mt,
                expected,
                got: payload.len(),
            }),
        }
    }

    /// The voting account.
    pub fn account(&self) -> PublicKey {
        let mut a = [0u8; 32];
        a.copy_from_slice(&self.fixed[..32]);
        PublicKey(a)
    }

    /// Signature by [`account`](Self::account) over the vote hash (§4.4), bytes 32..96.
    pub fn signature(&self) -> Signature {
        let mut s = [0u8; 64];
        s.copy_from_slice(&self.fixed[32..96]);
        Signature(s)
    }

    /// The timestamp (LE on the wire).
    pub fn timestamp(&self) -> u64 {
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.fixed[96..104]);
        u64::from_le_bytes(t)
    }

    /// Number of hashes: the header count (0..=255), checked by [`VoteView::new`].
    pub fn len(&self) -> usize {
        self.hashes.len() / 32
    }

    /// True when the vote carries no hash.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The hashes as one byte run (32 bytes each), as they enter the vote hash (§4.4).
    pub fn hash_bytes(&self) -> &'a [u8] {
        self.hashes
    }

    /// The block hashes voted for, each copied out of the payload (32 bytes apiece).
    pub fn hashes(&self) -> impl ExactSizeIterator<Item = BlockHash> + 'a {
        self.hashes.chunks_exact(32).map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            BlockHash(h)
        })
    }

    /// An owned [`Vote`].
    pub fn to_vote(&self) -> Vote {
        Vote {
            account: self.account(),
            signature: self.signature(),
            timestamp: self.timestamp(),
            hashes: self.hashes().collect(),
        }
    }
}
