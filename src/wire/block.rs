//! The five block kinds carried by `publish` (§4.2). This file holds the values; the codec
//! lives beside it and the hashes, signatures and work checks in [`crate::crypto`].

use crate::types::{Amount, BlockHash, PublicKey, Signature};

/// The block type byte (§3), also carried in header extension bits 8–11.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlockType {
    /// 0: never valid.
    Invalid = 0,
    /// 1: "no block here" (confirm_req / confirm_ack headers).
    NotABlock = 1,
    /// 2: legacy send.
    Send = 2,
    /// 3: legacy receive.
    Receive = 3,
    /// 4: legacy open.
    Open = 4,
    /// 5: legacy change.
    Change = 5,
    /// 6: state block.
    State = 6,
}

impl BlockType {
    /// The type with this byte, if any (0..=6).
    pub const fn from_u8(b: u8) -> Option<BlockType> {
        Some(match b {
            0 => BlockType::Invalid,
            1 => BlockType::NotABlock,
            2 => BlockType::Send,
            3 => BlockType::Receive,
            4 => BlockType::Open,
            5 => BlockType::Change,
            6 => BlockType::State,
            _ => return None,
        })
    }

    /// Serialized size of a block of this type without a type prefix (§4.2); 0 for
    /// `Invalid` and `NotABlock`.
    pub const fn wire_len(self) -> usize {
        match self {
            BlockType::Invalid | BlockType::NotABlock => 0,
            BlockType::Send => 152,
            BlockType::Receive | BlockType::Change => 136,
            BlockType::Open => 168,
            BlockType::State => 216,
        }
    }
}

/// A legacy send block (152 bytes on the wire, work little-endian).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendBlock {
    /// Hash of the previous block of the account.
    pub previous: BlockHash,
    /// Destination account.
    pub destination: PublicKey,
    /// Balance after the send.
    pub balance: Amount,
    /// Signature by the account over the block hash.
    pub signature: Signature,
    /// Proof of work nonce.
    pub work: u64,
}

/// A legacy receive block (136 bytes, work LE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiveBlock {
    /// Hash of the previous block of the account.
    pub previous: BlockHash,
    /// Hash of the send block being received.
    pub source: BlockHash,
    /// Signature by the account over the block hash.
    pub signature: Signature,
    /// Proof of work nonce.
    pub work: u64,
}

/// A legacy open block (168 bytes, work LE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenBlock {
    /// Hash of the send block being received.
    pub source: BlockHash,
    /// Representative chosen by the account.
    pub representative: PublicKey,
    /// The account being opened.
    pub account: PublicKey,
    /// Signature by the account over the block hash.
    pub signature: Signature,
    /// Proof of work nonce.
    pub work: u64,
}

/// A legacy change block (136 bytes, work LE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeBlock {
    /// Hash of the previous block of the account.
    pub previous: BlockHash,
    /// New representative.
    pub representative: PublicKey,
    /// Signature by the account over the block hash.
    pub signature: Signature,
    /// Proof of work nonce.
    pub work: u64,
}

/// A state block (216 bytes, work **big-endian**).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateBlock {
    /// The account this block belongs to.
    pub account: PublicKey,
    /// Hash of the previous block (zero for the first block).
    pub previous: BlockHash,
    /// Representative after this block.
    pub representative: PublicKey,
    /// Balance after this block.
    pub balance: Amount,
    /// Link: destination account, source hash or epoch marker.
    pub link: BlockHash,
    /// Signature over the block hash.
    pub signature: Signature,
    /// Proof of work nonce.
    pub work: u64,
}

/// Any block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Block {
    /// Legacy send.
    Send(SendBlock),
    /// Legacy receive.
    Receive(ReceiveBlock),
    /// Legacy open.
    Open(OpenBlock),
    /// Legacy change.
    Change(ChangeBlock),
    /// State block.
    State(StateBlock),
}

impl Block {
    /// The type byte of this block.
    pub fn block_type(&self) -> BlockType {
        match self {
            Block::Send(_) => BlockType::Send,
            Block::Receive(_) => BlockType::Receive,
            Block::Open(_) => BlockType::Open,
            Block::Change(_) => BlockType::Change,
            Block::State(_) => BlockType::State,
        }
    }

    /// The root used for PoW and confirm_req (§4.2): open → account; state → previous if
    /// non-zero, else account; send, receive, change → previous.
    pub fn root(&self) -> BlockHash {
        match self {
            Block::Send(b) => b.previous,
            Block::Receive(b) => b.previous,
            Block::Open(b) => BlockHash(b.account.0),
            Block::Change(b) => b.previous,
            Block::State(b) if b.previous.is_zero() => BlockHash(b.account.0),
            Block::State(b) => b.previous,
        }
    }

    /// Signature over the block hash (§4.2), whatever the kind; checked by
    /// [`verify_block_signature`](crate::crypto::verify_block_signature).
    pub fn signature(&self) -> &Signature {
        match self {
            Block::Send(b) => &b.signature,
            Block::Receive(b) => &b.signature,
            Block::Open(b) => &b.signature,
            Block::Change(b) => &b.signature,
            Block::State(b) => &b.signature,
        }
    }

    /// The proof-of-work nonce, whatever the kind (decoded from LE for legacy blocks, BE for
    /// state blocks); [`Block::work_value`] scores it against the root.
    pub fn work(&self) -> u64 {
        match self {
            Block::Send(b) => b.work,
            Block::Receive(b) => b.work,
            Block::Open(b) => b.work,
            Block::Change(b) => b.work,
            Block::State(b) => b.work,
        }
    }

    /// The account whose key signs this block, when the block names it (open and state);
    /// legacy send, receive and change blocks need the ledger to know it.
    pub fn signing_account(&self) -> Option<PublicKey> {
        match self {
            Block::Open(b) => Some(b.account),
            Block::State(b) => Some(b.account),
            _ => None,
        }
    }
}
