//! The one error type of the codec and what a receiver does about each error (§2.7).

use super::protocol::{HEADER_LEN, MIN_VERSION_USING, MessageType};
use crate::types::Network;

/// What a TCP receiver does after a [`DecodeError`] (§2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The header is bad, so the stream can no longer be framed: close the connection.
    CloseConnection,
    /// Only this message's payload is bad: drop it, keep the connection and read on.
    DropMessage,
}

/// Why a header or a payload did not decode.
///
/// Header variants (`header: …`) map to [`Outcome::CloseConnection`], payload variants
/// (`payload: …`) to [`Outcome::DropMessage`]; see [`DecodeError::outcome`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer than 8 bytes where a header was expected.
    #[error("header: needs {HEADER_LEN} bytes, got {got}")]
    HeaderTooShort {
        /// Bytes present.
        got: usize,
    },
    /// The network id is not ours.
    #[error("header: wrong network {got:#06x} (expected {expected} {:#06x})", expected.id())]
    WrongNetwork {
        /// The id on the wire.
        got: u16,
        /// Our network.
        expected: Network,
    },
    /// `version_using` is below the minimum we accept.
    #[error("header: version_using {version_using:#04x} below minimum {MIN_VERSION_USING:#04x}")]
    VersionTooOld {
        /// The `version_using` byte on the wire.
        version_using: u8,
    },
    /// The message type byte is not one of the types of §2.4 (0x00, 0x01, 0x09, > 0x0f).
    #[error("header: unknown message type {0:#04x}")]
    UnknownMessageType(u8),
    /// The payload length computed from the header exceeds the limit.
    #[error("header: payload of {len} bytes exceeds the maximum {max}")]
    PayloadTooLarge {
        /// Payload length computed from the header.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The payload is shorter than its type (and header) require.
    #[error("payload: {message_type} needs {expected} bytes, got {got}")]
    PayloadTooShort {
        /// The message being decoded (publish also when [`Block::decode`](super::Block::decode)
        /// is called on its own).
        message_type: MessageType,
        /// Bytes required.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// Bytes left over after the payload (only where §2.7 requires exact consumption).
    #[error("payload: trailing bytes: {message_type} takes {expected} bytes, got {got}")]
    TrailingBytes {
        /// The message being decoded (publish also for a lone block).
        message_type: MessageType,
        /// Bytes the message takes.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// A publish header whose block type (ext bits 8–11) is not a block.
    #[error("payload: publish block type {0:#04x} is not a block")]
    NotABlock(u8),
    /// A confirm_req that is empty or holds all-zero hash/root pairs.
    #[error(
        "payload: confirm_req has {nonzero} non-zero hash/root pairs for a header count of {count}"
    )]
    ConfirmReqPairs {
        /// Count from the header.
        count: usize,
        /// Pairs that are not all zero.
        nonzero: usize,
    },
    /// A node_id_handshake with neither the query nor the response flag.
    #[error("payload: node_id_handshake has neither query nor response")]
    EmptyHandshake,
    /// A non-empty telemetry_ack shorter than the 202 bytes of §4.6.
    #[error("payload: telemetry_ack of {0} bytes is shorter than 202")]
    TelemetryTooShort(usize),
    /// bulk_pull extended parameters whose first byte is not zero.
    #[error("payload: bulk_pull extended parameters start with {0:#04x}, expected 0x00")]
    BulkPullExtended(u8),
    /// An asc_pull_req / asc_pull_ack whose type byte is not blocks, account_info or frontiers.
    #[error("payload: {message_type} has unknown pull type {kind:#04x}")]
    AscPullType {
        /// asc_pull_req or asc_pull_ack.
        message_type: MessageType,
        /// The type byte found (known ones are 1, 2 and 3).
        kind: u8,
    },
}

impl DecodeError {
    /// What the receiver must do: close the connection for header errors, drop the message
    /// for payload errors (§2.7).
    pub const fn outcome(&self) -> Outcome {
        match self {
            DecodeError::HeaderTooShort { .. }
            | DecodeError::WrongNetwork { .. }
            | DecodeError::VersionTooOld { .. }
            | DecodeError::UnknownMessageType(_)
            | DecodeError::PayloadTooLarge { .. } => Outcome::CloseConnection,
            DecodeError::PayloadTooShort { .. }
            | DecodeError::TrailingBytes { .. }
            | DecodeError::NotABlock(_)
            | DecodeError::ConfirmReqPairs { .. }
            | DecodeError::EmptyHandshake
            | DecodeError::TelemetryTooShort(_)
            | DecodeError::BulkPullExtended(_)
            | DecodeError::AscPullType { .. } => Outcome::DropMessage,
        }
    }

    /// Checks that a payload of `got` bytes is exactly `expected` long: shorter is
    /// [`PayloadTooShort`](DecodeError::PayloadTooShort), longer
    /// [`TrailingBytes`](DecodeError::TrailingBytes).
    #[inline]
    pub(crate) fn exact_len(
        message_type: MessageType,
        expected: usize,
        got: usize,
    ) -> Result<(), DecodeError> {
        if got == expected {
            Ok(())
        } else if got < expected {
            Err(DecodeError::PayloadTooShort {
                message_type,
                expected,
                got,
            })
        } else {
            Err(DecodeError::TrailingBytes {
                message_type,
                expected,
                got,
            })
        }
    }

    /// True when the connection must be closed ([`Outcome::CloseConnection`]).
    pub const fn is_fatal(&self) -> bool {
        matches!(self.outcome(), Outcome::CloseConnection)
    }
}
