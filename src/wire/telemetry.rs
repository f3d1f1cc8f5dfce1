//! telemetry_ack (§4.6): ext = payload size; 0 means empty, otherwise at least 202 bytes,
//! integers big-endian, unknown trailing data kept (and signed).

use super::error::DecodeError;
use super::header::{Extensions, MessageType};
use super::reader::Reader;
use crate::types::{BlockHash, PublicKey, Signature};

/// Bytes of the known telemetry fields.
pub const TELEMETRY_LEN: usize = 202;
/// Largest telemetry payload (the 10-bit size field).
pub const TELEMETRY_MAX_LEN: usize = Extensions::TELEMETRY_SIZE_MASK as usize;
/// Offset where the signed part of a telemetry payload starts.
pub const TELEMETRY_SIGNED_FROM: usize = 64;

/// A node's telemetry (§4.6).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TelemetryData {
    /// Signature by `node_id` over bytes 64..end.
    pub signature: Signature,
    /// The sender's node id.
    pub node_id: PublicKey,
    /// Blocks in the ledger.
    pub block_count: u64,
    /// Cemented blocks.
    pub cemented_count: u64,
    /// Unchecked blocks.
    pub unchecked_count: u64,
    /// Accounts in the sender's ledger.
    pub account_count: u64,
    /// Bandwidth limit in bytes/s (0 = unlimited).
    pub bandwidth_cap: u64,
    /// The sender's channel count (§9); the one 4-byte integer of the layout.
    pub peer_count: u32,
    /// The sender's protocol version (HEAD sends 0x15, §9).
    pub protocol_version: u8,
    /// Uptime in seconds.
    pub uptime: u64,
    /// The sender's genesis block hash; a receiver whose genesis differs excludes the
    /// peer (§9).
    pub genesis_block: BlockHash,
    /// Node major version.
    pub major_version: u8,
    /// Node minor version.
    pub minor_version: u8,
    /// Node patch version.
    pub patch_version: u8,
    /// Node pre-release version.
    pub pre_release_version: u8,
    /// Maker (0 = NF node, 1 = NF pruned node).
    pub maker: u8,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The sender's active work difficulty; HEAD sends its base threshold (§9).
    pub active_difficulty: u64,
    /// Bytes after the 202 known ones (future fields); kept and signed.
    /// [`Message::encode`](super::Message::encode) writes at most 821 of them (size ≤ 0x3FF).
    pub unknown_data: Vec<u8>,
}

impl TelemetryData {
    fn unknown_len(&self) -> usize {
        self.unknown_data
            .len()
            .min(TELEMETRY_MAX_LEN - TELEMETRY_LEN)
    }

    /// Payload size: 202 plus the (capped) unknown data.
    pub fn wire_len(&self) -> usize {
        TELEMETRY_LEN + self.unknown_len()
    }

    /// Appends the bytes the signature covers (payload bytes 64..end).
    pub fn signed_bytes_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.node_id.0);
        out.extend_from_slice(&self.block_count.to_be_bytes());
        out.extend_from_slice(&self.cemented_count.to_be_bytes());
        out.extend_from_slice(&self.unchecked_count.to_be_bytes());
        out.extend_from_slice(&self.account_count.to_be_bytes());
        out.extend_from_slice(&self.bandwidth_cap.to_be_bytes());
        out.extend_from_slice(&self.peer_count.to_be_bytes());
        out.push(self.protocol_version);
        out.extend_from_slice(&self.uptime.to_be_bytes());
        out.extend_from_slice(&self.genesis_block.0);
        out.push(self.major_version);
        out.push(self.minor_version);
        out.push(self.patch_version);
        out.push(self.pre_release_version);
        out.push(self.maker);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.active_difficulty.to_be_bytes());
        out.extend_from_slice(&self.unknown_data[..self.unknown_len()]);
    }

    /// The bytes the signature covers (payload bytes 64..end).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.wire_len() - TELEMETRY_SIGNED_FROM);
        self.signed_bytes_into(&mut v);
        v
    }

    /// The signed part of a received telemetry_ack payload, without re-encoding: bytes
    /// 64..end, or `None` for a payload too short to hold a signature.
    pub fn signed_region(payload: &[u8]) -> Option<&[u8]> {
        payload.get(TELEMETRY_SIGNED_FROM..)
    }

    pub(crate) fn encode_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.signature.0);
        self.signed_bytes_into(out);
    }

    #[inline]
    fn decode(payload: &[u8]) -> Result<TelemetryData, DecodeError> {
        if payload.len() < TELEMETRY_LEN {
            return Err(DecodeError::TelemetryTooShort(payload.len()));
        }
        let mut r = Reader::new(MessageType::TelemetryAck, payload);
        Ok(TelemetryData {
            signature: Signature(r.array()?),
            node_id: PublicKey(r.array()?),
            block_count: r.u64_be()?,
            cemented_count: r.u64_be()?,
            unchecked_count: r.u64_be()?,
            account_count: r.u64_be()?,
            bandwidth_cap: r.u64_be()?,
            peer_count: r.u32_be()?,
            protocol_version: r.u8()?,
            uptime: r.u64_be()?,
            genesis_block: BlockHash(r.array()?),
            major_version: r.u8()?,
            minor_version: r.u8()?,
            patch_version: r.u8()?,
            pre_release_version: r.u8()?,
            maker: r.u8()?,
            timestamp: r.u64_be()?,
            active_difficulty: r.u64_be()?,
            // Empty for HEAD's 202-byte payloads: `to_vec` of nothing does not allocate.
            unknown_data: r.rest().to_vec(),
        })
    }
}

/// A telemetry_ack: empty (ext 0) or one node's telemetry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TelemetryAck {
    /// The telemetry; `None` for an empty ack.
    pub data: Option<TelemetryData>,
}

impl TelemetryAck {
    /// Header extensions: the payload size.
    pub fn extensions(&self) -> Extensions {
        Extensions(self.payload_len() as u16)
    }

    pub(crate) fn payload_len(&self) -> usize {
        self.data.as_ref().map_or(0, TelemetryData::wire_len)
    }

    pub(crate) fn encode_payload(&self, out: &mut Vec<u8>) {
        if let Some(d) = &self.data {
            d.encode_payload(out);
        }
    }

    #[inline]
    pub(crate) fn decode_payload(payload: &[u8]) -> Result<TelemetryAck, DecodeError> {
        if payload.is_empty() {
            return Ok(TelemetryAck { data: None });
        }
        TelemetryData::decode(payload).map(|d| TelemetryAck { data: Some(d) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_offsets_follow_the_wire_order() {
        // Each field a distinct value; check the §4.6 offsets, including the trap that
        // peer_count and protocol_version come before uptime.
        let d = TelemetryData {
            signature: Signature([0x11; 64]),
            node_id: PublicKey([0x22; 32]),
            block_count: 0x0102030405060708,
            cemented_count: 2,
            unchecked_count: 3,
            account_count: 4,
            bandwidth_cap: 5,
            peer_count: 0x0A0B0C0D,
            protocol_version: 0x15,
            uptime: 0x1112131415161718,
            genesis_block: BlockHash([0x33; 32]),
            major_version: 27,
            minor_version: 1,
            patch_version: 2,
            pre_release_version: 3,
            maker: 4,
            timestamp: 0x2122232425262728,
            active_difficulty: 0x3132333435363738,
            unknown_data: vec![0xEE, 0xFF],
        };
        let mut p = Vec::new();
        d.encode_payload(&mut p);
        assert_eq!(p.len(), 204);
        assert_eq!(&p[0..64], &[0x11; 64]);
        assert_eq!(&p[64..96], &[0x22; 32]);
        assert_eq!(&p[96..104], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(p[111], 2);
        assert_eq!(p[119], 3);
        assert_eq!(p[127], 4);
        assert_eq!(p[135], 5);
        assert_eq!(&p[136..140], &[0x0A, 0x0B, 0x0C, 0x0D]);
        assert_eq!(p[140], 0x15);
        assert_eq!(
            &p[141..149],
            &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]
        );
        assert_eq!(&p[149..181], &[0x33; 32]);
        assert_eq!(&p[181..186], &[27, 1, 2, 3, 4]);
        assert_eq!(
            &p[186..194],
            &[0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28]
        );
        assert_eq!(
            &p[194..202],
            &[0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38]
        );
        assert_eq!(&p[202..], &[0xEE, 0xFF]);
        assert_eq!(d.signed_bytes(), &p[64..]);
        assert_eq!(TelemetryData::decode(&p), Ok(d));
    }
}
