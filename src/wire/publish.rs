//! publish (§4.2) and the block encodings: fields in order, balances big-endian, legacy
//! work little-endian, state work big-endian.

use super::block::{Block, BlockType, ChangeBlock, OpenBlock, ReceiveBlock, SendBlock, StateBlock};
use super::error::DecodeError;
use super::header::{Extensions, MessageType};
use super::reader::Reader;
use crate::types::{Amount, BlockHash, PublicKey, Signature};

/// A publish message: one block, and whether the sender originated it (ext bit 2, V27+).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// The block; its type travels in header ext bits 8–11, not in the payload (§4.2).
    pub block: Block,
    /// Ext bit 2 (V27+): the sender created or first broadcast the block; older nodes
    /// ignore it.
    pub originator: bool,
}

impl Publish {
    /// Header extensions: block type in bits 8–11, originator in bit 2.
    pub fn extensions(&self) -> Extensions {
        Extensions(0)
            .with_block_type(self.block.block_type())
            .with(Extensions::ORIGINATOR, self.originator)
    }

    #[inline]
    pub(crate) fn decode_payload(ext: Extensions, payload: &[u8]) -> Result<Publish, DecodeError> {
        let block = Block::decode(ext.block_type_bits(), payload)?;
        Ok(Publish {
            block,
            originator: ext.originator(),
        })
    }
}

impl Block {
    /// Serialized size without a type prefix.
    pub fn wire_len(&self) -> usize {
        self.block_type().wire_len()
    }

    /// Appends the block's wire bytes (no type prefix).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Block::Send(b) => {
                out.extend_from_slice(&b.previous.0);
                out.extend_from_slice(&b.destination.0);
                out.extend_from_slice(&b.balance.to_be_bytes());
                out.extend_from_slice(&b.signature.0);
                out.extend_from_slice(&b.work.to_le_bytes());
            }
            Block::Receive(b) => {
                out.extend_from_slice(&b.previous.0);
                out.extend_from_slice(&b.source.0);
                out.extend_from_slice(&b.signature.0);
                out.extend_from_slice(&b.work.to_le_bytes());
            }
            Block::Open(b) => {
                out.extend_from_slice(&b.source.0);
                out.extend_from_slice(&b.representative.0);
                out.extend_from_slice(&b.account.0);
                out.extend_from_slice(&b.signature.0);
                out.extend_from_slice(&b.work.to_le_bytes());
            }
            Block::Change(b) => {
                out.extend_from_slice(&b.previous.0);
                out.extend_from_slice(&b.representative.0);
                out.extend_from_slice(&b.signature.0);
                out.extend_from_slice(&b.work.to_le_bytes());
            }
            Block::State(b) => {
                out.extend_from_slice(&b.account.0);
                out.extend_from_slice(&b.previous.0);
                out.extend_from_slice(&b.representative.0);
                out.extend_from_slice(&b.balance.to_be_bytes());
                out.extend_from_slice(&b.link.0);
                out.extend_from_slice(&b.signature.0);
                out.extend_from_slice(&b.work.to_be_bytes());
            }
        }
    }

    /// Decodes a block of type byte `block_type` that fills `bytes` exactly. A type byte
    /// that is not a block (0, 1, > 6) gives [`DecodeError::NotABlock`].
    #[inline]
    pub fn decode(block_type: u8, bytes: &[u8]) -> Result<Block, DecodeError> {
        let t = match BlockType::from_u8(block_type) {
            Some(t) if t.wire_len() > 0 => t,
            _ => return Err(DecodeError::NotABlock(block_type)),
        };
        let mt = MessageType::Publish;
        if bytes.len() < t.wire_len() {
            return Err(DecodeError::PayloadTooShort {
                message_type: mt,
                expected: t.wire_len(),
                got: bytes.len(),
            });
        }
        let mut r = Reader::new(mt, bytes);
        let block = match t {
            BlockType::Send => Block::Send(SendBlock {
                previous: BlockHash(r.array()?),
                destination: PublicKey(r.array()?),
                balance: Amount(r.u128_be()?),
                signature: Signature(r.array()?),
                work: r.u64_le()?,
            }),
            BlockType::Receive => Block::Receive(ReceiveBlock {
                previous: BlockHash(r.array()?),
                source: BlockHash(r.array()?),
                signature: Signature(r.array()?),
                work: r.u64_le()?,
            }),
            BlockType::Open => Block::Open(OpenBlock {
                source: BlockHash(r.array()?),
                representative: PublicKey(r.array()?),
                account: PublicKey(r.array()?),
                signature: Signature(r.array()?),
                work: r.u64_le()?,
            }),
            BlockType::Change => Block::Change(ChangeBlock {
                previous: BlockHash(r.array()?),
                representative: PublicKey(r.array()?),
                signature: Signature(r.array()?),
                work: r.u64_le()?,
            }),
            BlockType::State => Block::State(StateBlock {
                account: PublicKey(r.array()?),
                previous: BlockHash(r.array()?),
                representative: PublicKey(r.array()?),
                balance: Amount(r.u128_be()?),
                link: BlockHash(r.array()?),
                signature: Signature(r.array()?),
                work: r.u64_be()?,
            }),
            BlockType::Invalid | BlockType::NotABlock => {
                return Err(DecodeError::NotABlock(block_type));
            }
        };
        r.finish()?;
        Ok(block)
    }
}
