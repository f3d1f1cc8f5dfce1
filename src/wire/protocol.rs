//! The protocol's numbers and message types (§2.3, §2.4, §2.6), below the header codec and
//! its errors: both name them.

use std::fmt;

/// Bytes in a header.
pub const HEADER_LEN: usize = 8;
/// Largest payload accepted, `1024 * 65` bytes (§2.6).
pub const MAX_PAYLOAD: usize = 66_560;
/// `version_max` we send.
pub const VERSION_MAX: u8 = 0x15;
/// `version_using` we send.
pub const VERSION_USING: u8 = 0x15;
/// `version_min` we send.
pub const VERSION_MIN: u8 = 0x14;
/// Lowest `version_using` we accept; `version_max`/`version_min` are not checked (§2.3).
pub const MIN_VERSION_USING: u8 = 0x14;

/// A valid message type (§2.4). 0x00 (invalid), 0x01 (not_a_type), 0x09 (deleted) and
/// anything above 0x0f are not types: decoding them gives
/// [`DecodeError::UnknownMessageType`](super::error::DecodeError::UnknownMessageType).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MessageType {
    /// 0x02: up to 8 peer endpoints.
    Keepalive = 0x02,
    /// 0x03: one block.
    Publish = 0x03,
    /// 0x04: hash/root pairs to vote on.
    ConfirmReq = 0x04,
    /// 0x05: a vote.
    ConfirmAck = 0x05,
    /// 0x06: bootstrap pull.
    BulkPull = 0x06,
    /// 0x07: bootstrap push.
    BulkPush = 0x07,
    /// 0x08: bootstrap frontier request.
    FrontierReq = 0x08,
    /// 0x0a: node-id handshake.
    NodeIdHandshake = 0x0a,
    /// 0x0b: bootstrap pull of one account's pending entries.
    BulkPullAccount = 0x0b,
    /// 0x0c: telemetry request.
    TelemetryReq = 0x0c,
    /// 0x0d: telemetry answer.
    TelemetryAck = 0x0d,
    /// 0x0e: ascending bootstrap request.
    AscPullReq = 0x0e,
    /// 0x0f: ascending bootstrap answer.
    AscPullAck = 0x0f,
}

impl MessageType {
    /// Every valid type, in wire order.
    pub const ALL: [MessageType; 13] = [
        MessageType::Keepalive,
        MessageType::Publish,
        MessageType::ConfirmReq,
        MessageType::ConfirmAck,
        MessageType::BulkPull,
        MessageType::BulkPush,
        MessageType::FrontierReq,
        MessageType::NodeIdHandshake,
        MessageType::BulkPullAccount,
        MessageType::TelemetryReq,
        MessageType::TelemetryAck,
        MessageType::AscPullReq,
        MessageType::AscPullAck,
    ];

    /// The type with this byte, if it is a valid type.
    pub const fn from_u8(b: u8) -> Option<MessageType> {
        Some(match b {
            0x02 => MessageType::Keepalive,
            0x03 => MessageType::Publish,
            0x04 => MessageType::ConfirmReq,
            0x05 => MessageType::ConfirmAck,
            0x06 => MessageType::BulkPull,
            0x07 => MessageType::BulkPush,
            0x08 => MessageType::FrontierReq,
            0x0a => MessageType::NodeIdHandshake,
            0x0b => MessageType::BulkPullAccount,
            0x0c => MessageType::TelemetryReq,
            0x0d => MessageType::TelemetryAck,
            0x0e => MessageType::AscPullReq,
            0x0f => MessageType::AscPullAck,
            _ => return None,
        })
    }

    /// The type byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The snake_case name used by nano-node (`confirm_ack`, …).
    pub const fn name(self) -> &'static str {
        match self {
            MessageType::Keepalive => "keepalive",
            MessageType::Publish => "publish",
            MessageType::ConfirmReq => "confirm_req",
            MessageType::ConfirmAck => "confirm_ack",
            MessageType::BulkPull => "bulk_pull",
            MessageType::BulkPush => "bulk_push",
            MessageType::FrontierReq => "frontier_req",
            MessageType::NodeIdHandshake => "node_id_handshake",
            MessageType::BulkPullAccount => "bulk_pull_account",
            MessageType::TelemetryReq => "telemetry_req",
            MessageType::TelemetryAck => "telemetry_ack",
            MessageType::AscPullReq => "asc_pull_req",
            MessageType::AscPullAck => "asc_pull_ack",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Payload bytes of a keepalive.
pub const KEEPALIVE_LEN: usize = 144;
