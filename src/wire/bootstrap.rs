//! Bootstrap requests (§4.7): bulk_pull, frontier_req, bulk_pull_account (bulk_push has no
//! payload), and the ascending-bootstrap asc_pull_req / asc_pull_ack, decoded to their
//! type and id with the rest kept raw, so a stream can skip them.

use super::error::DecodeError;
use super::header::{Extensions, MessageType};
use super::reader::Reader;
use crate::types::{Amount, BlockHash, PublicKey};

/// bulk_pull: blocks of an account (or from a hash) down to `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BulkPull {
    /// Account or block hash to start from.
    pub start: BlockHash,
    /// Hash to stop at (zero: to the open block).
    pub end: BlockHash,
    /// Block limit, sent in 8 extended-parameter bytes when present (ext bit 0).
    pub count: Option<u32>,
    /// Ascending order (ext bit 1).
    pub ascending: bool,
}

impl BulkPull {
    /// Header extensions: count present and ascending bits.
    pub fn extensions(&self) -> Extensions {
        Extensions(0)
            .with(Extensions::BULK_PULL_COUNT_PRESENT, self.count.is_some())
            .with(Extensions::BULK_PULL_ASCENDING, self.ascending)
    }

    pub(crate) fn payload_len(&self) -> usize {
        if self.count.is_some() { 72 } else { 64 }
    }

    pub(crate) fn encode_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.start.0);
        out.extend_from_slice(&self.end.0);
        if let Some(c) = self.count {
            out.push(0);
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&[0, 0, 0]);
        }
    }

    /// The 3 bytes after the count are ignored, as nano-node does.
    #[inline]
    pub(crate) fn decode_payload(ext: Extensions, payload: &[u8]) -> Result<BulkPull, DecodeError> {
        let mut r = Reader::new(MessageType::BulkPull, payload);
        let start = BlockHash(r.array()?);
        let end = BlockHash(r.array()?);
        let count = if ext.bulk_pull_count_present() {
            let first = r.u8()?;
            if first != 0 {
                return Err(DecodeError::BulkPullExtended(first));
            }
            let c = r.u32_le()?;
            let _reserved = r.array::<3>()?;
            Some(c)
        } else {
            None
        };
        r.finish()?;
        Ok(BulkPull {
            start,
            end,
            count,
            ascending: ext.bulk_pull_ascending(),
        })
    }
}

/// frontier_req: frontiers from `start` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrontierReq {
    /// First account.
    pub start: PublicKey,
    /// Maximum age in seconds (LE).
    pub age: u32,
    /// Maximum count (LE; 0xFFFFFFFF = no limit).
    pub count: u32,
    /// Only confirmed frontiers (ext bit 1).
    pub only_confirmed: bool,
}

impl FrontierReq {
    /// Header extensions: the only-confirmed bit.
    pub fn extensions(&self) -> Extensions {
        Extensions(0).with(Extensions::FRONTIER_ONLY_CONFIRMED, self.only_confirmed)
    }

    pub(crate) fn encode_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.start.0);
        out.extend_from_slice(&self.age.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
    }

    #[inline]
    pub(crate) fn decode_payload(
        ext: Extensions,
        payload: &[u8],
    ) -> Result<FrontierReq, DecodeError> {
        let mut r = Reader::new(MessageType::FrontierReq, payload);
        let m = FrontierReq {
            start: PublicKey(r.array()?),
            age: r.u32_le()?,
            count: r.u32_le()?,
            only_confirmed: ext.frontier_only_confirmed(),
        };
        r.finish()?;
        Ok(m)
    }
}

/// bulk_pull_account: pending entries of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BulkPullAccount {
    /// Account whose pending entries are asked for.
    pub account: PublicKey,
    /// Smallest amount of interest (BE).
    pub minimum_amount: Amount,
    /// 0 = hash+amount, 1 = address only, 2 = hash+amount+address (kept raw).
    pub flags: u8,
}

impl BulkPullAccount {
    pub(crate) fn encode_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.account.0);
        out.extend_from_slice(&self.minimum_amount.to_be_bytes());
        out.push(self.flags);
    }

    #[inline]
    pub(crate) fn decode_payload(payload: &[u8]) -> Result<BulkPullAccount, DecodeError> {
        let mut r = Reader::new(MessageType::BulkPullAccount, payload);
        let m = BulkPullAccount {
            account: PublicKey(r.array()?),
            minimum_amount: Amount(r.u128_be()?),
            flags: r.u8()?,
        };
        r.finish()?;
        Ok(m)
    }
}

/// The pull type of an asc_pull_req / asc_pull_ack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AscPullType {
    /// 1: blocks.
    Blocks = 1,
    /// 2: account info.
    AccountInfo = 2,
    /// 3: frontiers (V26+).
    Frontiers = 3,
}

impl AscPullType {
    /// The type with this byte, if any.
    pub const fn from_u8(b: u8) -> Option<AscPullType> {
        match b {
            1 => Some(AscPullType::Blocks),
            2 => Some(AscPullType::AccountInfo),
            3 => Some(AscPullType::Frontiers),
            _ => None,
        }
    }
}

/// asc_pull_req or asc_pull_ack: type, id (BE) and the type's payload, kept raw (it may
/// carry unknown trailing data, §2.7).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AscPull {
    /// The leading type byte; any byte other than 1–3 fails decoding with
    /// [`DecodeError::AscPullType`](super::DecodeError::AscPullType).
    pub kind: AscPullType,
    /// Request id, echoed by the ack.
    pub id: u64,
    /// The bytes after type and id; [`Message::encode`](super::Message::encode) writes at
    /// most 65 535 of them (the ext field is the length).
    pub body: Vec<u8>,
}

impl AscPull {
    fn body_len(&self) -> usize {
        self.body.len().min(u16::MAX as usize)
    }

    /// Header extensions: the body length.
    pub fn extensions(&self) -> Extensions {
        Extensions(self.body_len() as u16)
    }

    pub(crate) fn payload_len(&self) -> usize {
        9 + self.body_len()
    }

    pub(crate) fn encode_payload(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.body[..self.body_len()]);
    }

    #[inline]
    pub(crate) fn decode_payload(mt: MessageType, payload: &[u8]) -> Result<AscPull, DecodeError> {
        let mut r = Reader::new(mt, payload);
        let kind = r.u8()?;
        let Some(kind) = AscPullType::from_u8(kind) else {
            return Err(DecodeError::AscPullType {
                message_type: mt,
                kind,
            });
        };
        let id = r.u64_be()?;
        Ok(AscPull {
            kind,
            id,
            body: r.rest().to_vec(),
        })
    }
}
