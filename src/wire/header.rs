//! The 8-byte message header (§2): network, versions, type, extensions, payload length.

use std::fmt;

use super::block::BlockType;
use super::error::DecodeError;
use crate::types::Network;

pub use super::protocol::{
    HEADER_LEN, KEEPALIVE_LEN, MAX_PAYLOAD, MIN_VERSION_USING, MessageType, VERSION_MAX,
    VERSION_MIN, VERSION_USING,
};

/// The 16-bit extensions field (§2.5), little-endian on the wire. Which accessors apply
/// depends on the message type; the raw bits are always kept.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Extensions(pub u16);

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Extensions({:#06x})", self.0)
    }
}

impl Extensions {
    /// publish, confirm_req, confirm_ack: block type, bits 8–11.
    pub const BLOCK_TYPE_MASK: u16 = 0x0F00;
    /// publish: the sender originated the block (bit 2).
    pub const ORIGINATOR: u16 = 0x0004;
    /// confirm_req/ack: v1 count (1..15), bits 12–15, used when [`Self::CONFIRM_V2`] is clear.
    pub const COUNT_MASK: u16 = 0xF000;
    /// confirm_req/ack: low nibble of the v2 count, bits 4–7.
    pub const COUNT_V2_LOW_MASK: u16 = 0x00F0;
    /// confirm_req/ack: the count uses the v2 split field (bit 0).
    pub const CONFIRM_V2: u16 = 0x0001;
    /// confirm_ack: the vote is a rebroadcast (bit 2).
    pub const REBROADCASTED: u16 = 0x0004;
    /// node_id_handshake: a query (cookie) is present (bit 0).
    pub const QUERY: u16 = 0x0001;
    /// node_id_handshake: a response is present (bit 1).
    pub const RESPONSE: u16 = 0x0002;
    /// node_id_handshake: v2 (bit 2); query only: "I support v2", with a response: the
    /// response uses the v2 layout.
    pub const HANDSHAKE_V2: u16 = 0x0004;
    /// telemetry_ack: payload size, bits 0–9.
    pub const TELEMETRY_SIZE_MASK: u16 = 0x03FF;
    /// bulk_pull: 8 bytes of extended parameters with a count follow (bit 0).
    pub const BULK_PULL_COUNT_PRESENT: u16 = 0x0001;
    /// bulk_pull: ascending order (bit 1).
    pub const BULK_PULL_ASCENDING: u16 = 0x0002;
    /// frontier_req: only confirmed frontiers (bit 1).
    pub const FRONTIER_ONLY_CONFIRMED: u16 = 0x0002;

    /// The raw value.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// True when every bit of `mask` is set.
    pub const fn has(self, mask: u16) -> bool {
        self.0 & mask == mask
    }

    /// These extensions with the bits of `mask` set or cleared.
    pub const fn with(self, mask: u16, on: bool) -> Extensions {
        Extensions(if on { self.0 | mask } else { self.0 & !mask })
    }

    /// Raw block type nibble, bits 8–11 (publish, confirm_*).
    pub const fn block_type_bits(self) -> u8 {
        ((self.0 & Self::BLOCK_TYPE_MASK) >> 8) as u8
    }

    /// The block type of bits 8–11, if it is one.
    pub const fn block_type(self) -> Option<BlockType> {
        BlockType::from_u8(self.block_type_bits())
    }

    /// These extensions with bits 8–11 set to `t`.
    pub const fn with_block_type(self, t: BlockType) -> Extensions {
        Extensions((self.0 & !Self::BLOCK_TYPE_MASK) | ((t as u16) << 8))
    }

    /// publish: the sender originated the block (bit 2, V27+).
    pub const fn originator(self) -> bool {
        self.has(Self::ORIGINATOR)
    }

    /// confirm_req/ack: the count uses the v2 split field.
    pub const fn confirm_v2(self) -> bool {
        self.has(Self::CONFIRM_V2)
    }

    /// confirm_req/ack: the v1 count, bits 12–15.
    pub const fn count_v1(self) -> u8 {
        (self.0 >> 12) as u8
    }

    /// confirm_req/ack: the v2 count, `(bits 12–15) << 4 | bits 4–7`.
    pub const fn count_v2(self) -> u8 {
        (((self.0 >> 12) as u8) << 4) | (((self.0 & Self::COUNT_V2_LOW_MASK) >> 4) as u8)
    }

    /// confirm_req/ack: the entry count, v2 if bit 0 is set, v1 otherwise.
    pub const fn confirm_count(self) -> u8 {
        if self.confirm_v2() {
            self.count_v2()
        } else {
            self.count_v1()
        }
    }

    /// These extensions carrying count `n` as senders do: v1 below 16, v2 (bit 0 set) from 16.
    pub const fn with_confirm_count(self, n: u8) -> Extensions {
        let cleared = self.0 & !(Self::COUNT_MASK | Self::COUNT_V2_LOW_MASK | Self::CONFIRM_V2);
        if n < 16 {
            Extensions(cleared | ((n as u16) << 12))
        } else {
            let hi = (n >> 4) as u16;
            let lo = (n & 0x0F) as u16;
            Extensions(cleared | Self::CONFIRM_V2 | (hi << 12) | (lo << 4))
        }
    }

    /// confirm_ack: the vote is a rebroadcast (bit 2, V27+).
    pub const fn rebroadcasted(self) -> bool {
        self.has(Self::REBROADCASTED)
    }

    /// node_id_handshake: query present.
    pub const fn query(self) -> bool {
        self.has(Self::QUERY)
    }

    /// node_id_handshake: response present.
    pub const fn response(self) -> bool {
        self.has(Self::RESPONSE)
    }

    /// node_id_handshake: bit 2, whose meaning depends on whether a response is present
    /// (see [`Self::HANDSHAKE_V2`]).
    pub const fn handshake_v2(self) -> bool {
        self.has(Self::HANDSHAKE_V2)
    }

    /// telemetry_ack: payload size (0 = empty).
    pub const fn telemetry_size(self) -> u16 {
        self.0 & Self::TELEMETRY_SIZE_MASK
    }

    /// bulk_pull: a count follows in 8 extended-parameter bytes.
    pub const fn bulk_pull_count_present(self) -> bool {
        self.has(Self::BULK_PULL_COUNT_PRESENT)
    }

    /// bulk_pull: ascending order.
    pub const fn bulk_pull_ascending(self) -> bool {
        self.has(Self::BULK_PULL_ASCENDING)
    }

    /// frontier_req: only confirmed frontiers.
    pub const fn frontier_only_confirmed(self) -> bool {
        self.has(Self::FRONTIER_ONLY_CONFIRMED)
    }

    /// asc_pull_req/ack: payload length after the 9-byte type+id prefix (the whole field).
    pub const fn asc_pull_len(self) -> u16 {
        self.0
    }
}

/// A header that passed the checks of §2.7 for our network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The network (equal to ours after decoding).
    pub network: Network,
    /// Highest version the sender speaks (not checked).
    pub version_max: u8,
    /// Version the sender uses (at least [`MIN_VERSION_USING`] after decoding).
    pub version_using: u8,
    /// Lowest version the sender accepts (not checked).
    pub version_min: u8,
    /// Byte 5 (§2.4); with `extensions` it fixes [`payload_len`](Self::payload_len).
    pub message_type: MessageType,
    /// Bytes 6–7, LE (§2.5); which bits mean what depends on `message_type`.
    pub extensions: Extensions,
}

impl Header {
    /// A header as we send it: versions 0x15/0x15/0x14.
    pub const fn new(
        network: Network,
        message_type: MessageType,
        extensions: Extensions,
    ) -> Header {
        Header {
            network,
            version_max: VERSION_MAX,
            version_using: VERSION_USING,
            version_min: VERSION_MIN,
            message_type,
            extensions,
        }
    }

    /// The 8 wire bytes: network BE, versions, type, extensions LE.
    pub const fn encode(&self) -> [u8; HEADER_LEN] {
        let n = self.network.id().to_be_bytes();
        let e = self.extensions.0.to_le_bytes();
        [
            n[0],
            n[1],
            self.version_max,
            self.version_using,
            self.version_min,
            self.message_type as u8,
            e[0],
            e[1],
        ]
    }

    /// Decodes and validates a header for `network` with the default limit [`MAX_PAYLOAD`].
    pub fn decode(bytes: &[u8; HEADER_LEN], network: Network) -> Result<Header, DecodeError> {
        Self::decode_with_limit(bytes, network, MAX_PAYLOAD)
    }

    /// Decodes and validates a header in the order of §2.7: network, `version_using`,
    /// type, then payload length ≤ `max_payload`.
    ///
    /// With the encodings of §2.6 no valid header computes more than 65 544 bytes
    /// (asc_pull with ext 0xFFFF), so the length check only fires for a limit below that.
    #[inline]
    pub fn decode_with_limit(
        bytes: &[u8; HEADER_LEN],
        network: Network,
        max_payload: usize,
    ) -> Result<Header, DecodeError> {
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        if id != network.id() {
            return Err(DecodeError::WrongNetwork {
                got: id,
                expected: network,
            });
        }
        let version_using = bytes[3];
        if version_using < MIN_VERSION_USING {
            return Err(DecodeError::VersionTooOld { version_using });
        }
        let Some(message_type) = MessageType::from_u8(bytes[5]) else {
            return Err(DecodeError::UnknownMessageType(bytes[5]));
        };
        let header = Header {
            network,
            version_max: bytes[2],
            version_using,
            version_min: bytes[4],
            message_type,
            extensions: Extensions(u16::from_le_bytes([bytes[6], bytes[7]])),
        };
        let len = header.payload_len();
        if len > max_payload {
            return Err(DecodeError::PayloadTooLarge {
                len,
                max: max_payload,
            });
        }
        Ok(header)
    }

    /// Payload length computed from the header alone (§2.6). A publish whose block type is
    /// not a block gives 0; decoding that payload then fails with
    /// [`DecodeError::NotABlock`].
    #[inline]
    pub const fn payload_len(&self) -> usize {
        let ext = self.extensions;
        match self.message_type {
            MessageType::Keepalive => KEEPALIVE_LEN,
            MessageType::Publish => match ext.block_type() {
                Some(t) => t.wire_len(),
                None => 0,
            },
            MessageType::ConfirmReq => ext.confirm_count() as usize * 64,
            MessageType::ConfirmAck => 104 + ext.confirm_count() as usize * 32,
            MessageType::BulkPull => {
                if ext.bulk_pull_count_present() {
                    72
                } else {
                    64
                }
            }
            MessageType::BulkPush | MessageType::TelemetryReq => 0,
            MessageType::FrontierReq => 40,
            MessageType::NodeIdHandshake => {
                let q = if ext.query() { 32 } else { 0 };
                let r = if !ext.response() {
                    0
                } else if ext.handshake_v2() {
                    160
                } else {
                    96
                };
                q + r
            }
            MessageType::BulkPullAccount => 49,
            MessageType::TelemetryAck => ext.telemetry_size() as usize,
            MessageType::AscPullReq | MessageType::AscPullAck => 9 + ext.asc_pull_len() as usize,
        }
    }

    /// Header plus payload length.
    pub const fn frame_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex8(s: &str) -> [u8; 8] {
        crate::types::hex_array::<8>(s).unwrap()
    }

    #[test]
    fn section_11_headers_encode_byte_exact() {
        let live = Network::Live;
        let h = |t, e| Header::new(live, t, Extensions(e)).encode();
        assert_eq!(h(MessageType::Keepalive, 0), hex8("5243151514020000"));
        assert_eq!(h(MessageType::TelemetryReq, 0), hex8("52431515140C0000"));
        assert_eq!(h(MessageType::TelemetryAck, 202), hex8("52431515140DCA00"));
        assert_eq!(h(MessageType::Publish, 0x0600), hex8("5243151514030006"));
        assert_eq!(h(MessageType::Publish, 0x0604), hex8("5243151514030406"));
    }

    #[test]
    fn v2_count_examples() {
        let base = Extensions(0).with_block_type(BlockType::NotABlock);
        assert_eq!(base.with_confirm_count(16).0, 0x1101);
        assert_eq!(base.with_confirm_count(255).0, 0xF1F1);
        assert_eq!(base.with_confirm_count(1).0, 0x1100);
        assert_eq!(base.with_confirm_count(15).0, 0xF100);
        assert_eq!(Extensions(0).with_confirm_count(0b0110_1001).0, 0x6091);
        assert_eq!(Extensions(0x6091).confirm_count(), 0b0110_1001);
        for n in 0..=255u8 {
            let e = base.with_confirm_count(n);
            assert_eq!(e.confirm_count(), n);
            assert_eq!(e.confirm_v2(), n >= 16);
            assert_eq!(e.block_type(), Some(BlockType::NotABlock));
        }
        // v1 ignores bits 4-7.
        assert_eq!(Extensions(0x30F0).confirm_count(), 3);
    }

    #[test]
    fn validation_order_network_first() {
        // Wrong network and old version and bad type: network wins.
        let e = Header::decode(&hex8("5241131314090000"), Network::Live).unwrap_err();
        assert!(matches!(e, DecodeError::WrongNetwork { got: 0x5241, .. }));
        // Old version and bad type: version wins.
        let e = Header::decode(&hex8("5243131314090000"), Network::Live).unwrap_err();
        assert_eq!(
            e,
            DecodeError::VersionTooOld {
                version_using: 0x13
            }
        );
        // version_max and version_min are not checked.
        let h = Header::decode(&hex8("5243001500020000"), Network::Live).unwrap();
        assert_eq!((h.version_max, h.version_min), (0, 0));
    }

    #[test]
    fn every_type_byte() {
        for b in 0..=255u8 {
            let bytes = [0x52, 0x43, 0x15, 0x15, 0x14, b, 0, 0];
            let r = Header::decode(&bytes, Network::Live);
            let valid = matches!(b, 0x02..=0x08 | 0x0a..=0x0f);
            assert_eq!(r.is_ok(), valid, "type {b:#04x}");
            if let Ok(h) = r {
                assert_eq!(h.message_type.as_u8(), b);
                assert_eq!(h.encode(), bytes);
            } else {
                assert_eq!(r.unwrap_err(), DecodeError::UnknownMessageType(b));
            }
        }
    }

    #[test]
    fn payload_lengths() {
        let len = |t, e| Header::new(Network::Dev, t, Extensions(e)).payload_len();
        assert_eq!(len(MessageType::Keepalive, 0), 144);
        assert_eq!(len(MessageType::Publish, 0x0200), 152);
        assert_eq!(len(MessageType::Publish, 0x0300), 136);
        assert_eq!(len(MessageType::Publish, 0x0400), 168);
        assert_eq!(len(MessageType::Publish, 0x0500), 136);
        assert_eq!(len(MessageType::Publish, 0x0604), 216);
        assert_eq!(len(MessageType::Publish, 0x0100), 0);
        assert_eq!(len(MessageType::Publish, 0x0F00), 0);
        assert_eq!(len(MessageType::ConfirmReq, 0x1100), 64);
        assert_eq!(len(MessageType::ConfirmReq, 0xF1F1), 255 * 64);
        assert_eq!(len(MessageType::ConfirmAck, 0x0100), 104);
        assert_eq!(len(MessageType::ConfirmAck, 0x1000), 136);
        assert_eq!(len(MessageType::ConfirmAck, 0xF1F1), 104 + 255 * 32);
        assert_eq!(len(MessageType::NodeIdHandshake, 0x0005), 32);
        assert_eq!(len(MessageType::NodeIdHandshake, 0x0001), 32);
        assert_eq!(len(MessageType::NodeIdHandshake, 0x0002), 96);
        assert_eq!(len(MessageType::NodeIdHandshake, 0x0006), 160);
        assert_eq!(len(MessageType::NodeIdHandshake, 0x0003), 128);
        assert_eq!(len(MessageType::NodeIdHandshake, 0x0007), 192);
        assert_eq!(len(MessageType::NodeIdHandshake, 0x0000), 0);
        assert_eq!(len(MessageType::TelemetryReq, 0), 0);
        assert_eq!(len(MessageType::TelemetryAck, 0xFFFF), 0x3FF);
        assert_eq!(len(MessageType::TelemetryAck, 0x00CA), 202);
        assert_eq!(len(MessageType::BulkPull, 0), 64);
        assert_eq!(len(MessageType::BulkPull, 1), 72);
        assert_eq!(len(MessageType::BulkPush, 0), 0);
        assert_eq!(len(MessageType::FrontierReq, 2), 40);
        assert_eq!(len(MessageType::BulkPullAccount, 0), 49);
        assert_eq!(len(MessageType::AscPullReq, 0x0022), 43);
        assert_eq!(len(MessageType::AscPullAck, 0xFFFF), 65_544);
        // No header reaches the default maximum.
        for t in MessageType::ALL {
            for e in [0u16, 0xFFFF, 0xF1F1, 0x0FFF] {
                assert!(len(t, e) <= MAX_PAYLOAD);
            }
        }
    }

    #[test]
    fn limit_is_enforced_after_type() {
        let bytes = hex8("52431515140F2200"); // asc_pull_ack, 9 + 34 bytes
        assert!(Header::decode_with_limit(&bytes, Network::Live, 43).is_ok());
        assert_eq!(
            Header::decode_with_limit(&bytes, Network::Live, 42),
            Err(DecodeError::PayloadTooLarge { len: 43, max: 42 })
        );
    }

    #[test]
    fn error_texts() {
        let e = Header::decode(&hex8("5241151514020000"), Network::Live).unwrap_err();
        assert_eq!(
            e.to_string(),
            "header: wrong network 0x5241 (expected live 0x5243)"
        );
        let e = Header::decode(&hex8("5243151314020000"), Network::Live).unwrap_err();
        assert_eq!(
            e.to_string(),
            "header: version_using 0x13 below minimum 0x14"
        );
        let e = Header::decode(&hex8("5243151514090000"), Network::Live).unwrap_err();
        assert_eq!(e.to_string(), "header: unknown message type 0x09");
        let e = DecodeError::PayloadTooLarge {
            len: 70_000,
            max: MAX_PAYLOAD,
        };
        assert_eq!(
            e.to_string(),
            "header: payload of 70000 bytes exceeds the maximum 66560"
        );
    }
}
