//! Every message, with encoding to bytes and decoding from a header and its payload.

use super::bootstrap::{AscPull, BulkPull, BulkPullAccount, FrontierReq};
use super::confirm::{ConfirmAck, ConfirmReq};
use super::error::DecodeError;
use super::handshake::NodeIdHandshake;
use super::header::{Extensions, HEADER_LEN, Header, MessageType};
use super::keepalive::{KEEPALIVE_LEN, Keepalive};
use super::publish::Publish;
use super::telemetry::TelemetryAck;
use crate::types::Network;

/// Any message of §4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// 0x02.
    Keepalive(Keepalive),
    /// 0x03.
    Publish(Publish),
    /// 0x04.
    ConfirmReq(ConfirmReq),
    /// 0x05.
    ConfirmAck(ConfirmAck),
    /// 0x06.
    BulkPull(BulkPull),
    /// 0x07 (no payload).
    BulkPush,
    /// 0x08.
    FrontierReq(FrontierReq),
    /// 0x0a.
    NodeIdHandshake(NodeIdHandshake),
    /// 0x0b.
    BulkPullAccount(BulkPullAccount),
    /// 0x0c (no payload).
    TelemetryReq,
    /// 0x0d.
    TelemetryAck(TelemetryAck),
    /// 0x0e.
    AscPullReq(AscPull),
    /// 0x0f.
    AscPullAck(AscPull),
}

impl Message {
    /// The type this variant is sent as (header byte 5).
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Keepalive(_) => MessageType::Keepalive,
            Message::Publish(_) => MessageType::Publish,
            Message::ConfirmReq(_) => MessageType::ConfirmReq,
            Message::ConfirmAck(_) => MessageType::ConfirmAck,
            Message::BulkPull(_) => MessageType::BulkPull,
            Message::BulkPush => MessageType::BulkPush,
            Message::FrontierReq(_) => MessageType::FrontierReq,
            Message::NodeIdHandshake(_) => MessageType::NodeIdHandshake,
            Message::BulkPullAccount(_) => MessageType::BulkPullAccount,
            Message::TelemetryReq => MessageType::TelemetryReq,
            Message::TelemetryAck(_) => MessageType::TelemetryAck,
            Message::AscPullReq(_) => MessageType::AscPullReq,
            Message::AscPullAck(_) => MessageType::AscPullAck,
        }
    }

    /// The header extensions this message is sent with.
    pub fn extensions(&self) -> Extensions {
        match self {
            Message::Publish(m) => m.extensions(),
            Message::ConfirmReq(m) => m.extensions(),
            Message::ConfirmAck(m) => m.extensions(),
            Message::BulkPull(m) => m.extensions(),
            Message::FrontierReq(m) => m.extensions(),
            Message::NodeIdHandshake(m) => m.extensions(),
            Message::TelemetryAck(m) => m.extensions(),
            Message::AscPullReq(m) | Message::AscPullAck(m) => m.extensions(),
            Message::Keepalive(_)
            | Message::BulkPush
            | Message::BulkPullAccount(_)
            | Message::TelemetryReq => Extensions(0),
        }
    }

    /// The header this message is sent with on `network` (versions 0x15/0x15/0x14).
    pub fn header(&self, network: Network) -> Header {
        Header::new(network, self.message_type(), self.extensions())
    }

    /// Payload length when encoded (equal to `self.header(n).payload_len()`).
    pub fn payload_len(&self) -> usize {
        match self {
            Message::Keepalive(_) => KEEPALIVE_LEN,
            Message::Publish(m) => m.block.wire_len(),
            Message::ConfirmReq(m) => m.payload_len(),
            Message::ConfirmAck(m) => m.payload_len(),
            Message::BulkPull(m) => m.payload_len(),
            Message::BulkPush | Message::TelemetryReq => 0,
            Message::FrontierReq(_) => 40,
            Message::NodeIdHandshake(m) => m.payload_len(),
            Message::BulkPullAccount(_) => 49,
            Message::TelemetryAck(m) => m.payload_len(),
            Message::AscPullReq(m) | Message::AscPullAck(m) => m.payload_len(),
        }
    }

    /// Header plus payload length when encoded.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    /// Appends header and payload to `out`. Lists longer than the wire allows are cut:
    /// 255 confirm entries, 821 unknown telemetry bytes, 65 535 asc_pull body bytes.
    pub fn encode_into(&self, network: Network, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(&self.header(network).encode());
        self.encode_payload(out);
    }

    /// Header and payload as a new buffer.
    pub fn encode(&self, network: Network) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(network, &mut out);
        out
    }

    /// Appends the payload only.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Message::Keepalive(m) => m.encode_payload(out),
            Message::Publish(m) => m.block.encode_into(out),
            Message::ConfirmReq(m) => m.encode_payload(out),
            Message::ConfirmAck(m) => m.encode_payload(out),
            Message::BulkPull(m) => m.encode_payload(out),
            Message::BulkPush | Message::TelemetryReq => {}
            Message::FrontierReq(m) => m.encode_payload(out),
            Message::NodeIdHandshake(m) => m.encode_payload(out),
            Message::BulkPullAccount(m) => m.encode_payload(out),
            Message::TelemetryAck(m) => m.encode_payload(out),
            Message::AscPullReq(m) | Message::AscPullAck(m) => m.encode_payload(out),
        }
    }

    /// Decodes the payload of a validated header. The payload must be exactly
    /// `header.payload_len()` bytes (what the [`Deframer`](super::Deframer) yields);
    /// every error is a payload error ([`Outcome::DropMessage`](super::Outcome)).
    ///
    /// Allocates only for confirm_req / confirm_ack entries, non-empty telemetry unknown
    /// data and asc_pull bodies.
    #[inline]
    pub fn decode(header: &Header, payload: &[u8]) -> Result<Message, DecodeError> {
        let mt = header.message_type;
        let expected = header.payload_len();
        DecodeError::exact_len(mt, expected, payload.len())?;
        let ext = header.extensions;
        Ok(match mt {
            MessageType::Keepalive => Message::Keepalive(Keepalive::decode_payload(payload)?),
            MessageType::Publish => Message::Publish(Publish::decode_payload(ext, payload)?),
            MessageType::ConfirmReq => {
                Message::ConfirmReq(ConfirmReq::decode_payload(ext, payload)?)
            }
            MessageType::ConfirmAck => {
                Message::ConfirmAck(ConfirmAck::decode_payload(ext, payload)?)
            }
            MessageType::BulkPull => Message::BulkPull(BulkPull::decode_payload(ext, payload)?),
            MessageType::BulkPush => Message::BulkPush,
            MessageType::FrontierReq => {
                Message::FrontierReq(FrontierReq::decode_payload(ext, payload)?)
            }
            MessageType::NodeIdHandshake => {
                Message::NodeIdHandshake(NodeIdHandshake::decode_payload(ext, payload)?)
            }
            MessageType::BulkPullAccount => {
                Message::BulkPullAccount(BulkPullAccount::decode_payload(payload)?)
            }
            MessageType::TelemetryReq => Message::TelemetryReq,
            MessageType::TelemetryAck => {
                Message::TelemetryAck(TelemetryAck::decode_payload(payload)?)
            }
            MessageType::AscPullReq => Message::AscPullReq(AscPull::decode_payload(mt, payload)?),
            MessageType::AscPullAck => Message::AscPullAck(AscPull::decode_payload(mt, payload)?),
        })
    }
}

/// Decodes one whole message from `bytes`, which must hold exactly a header and its
/// payload (as `nanopeer decode` takes it). Header errors close a connection, payload
/// errors (including too few or too many bytes after the header) drop the message.
#[inline]
pub fn decode_message(bytes: &[u8], network: Network) -> Result<(Header, Message), DecodeError> {
    let Some((head, payload)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::HeaderTooShort { got: bytes.len() });
    };
    let header = Header::decode(head, network)?;
    let message = Message::decode(&header, payload)?;
    Ok((header, message))
}
