//! The sans-IO wire codec (spec §2–4): the 8-byte header, every message, the block and
//! vote encodings, and the TCP deframer. No sockets, clocks or threads.
//!
//! # Receiving
//!
//! ```
//! use nanopeer::types::Network;
//! use nanopeer::wire::{Deframer, Message, Outcome};
//!
//! let mut deframer = Deframer::new(Network::Live);
//! let bytes = Message::TelemetryReq.encode(Network::Live);
//! let mut got = Vec::new();
//! // Each received buffer, once, in order; split anywhere.
//! let result = deframer.feed(&bytes, |header, payload| {
//!     match Message::decode(&header, payload) {
//!         Ok(message) => got.push(message),
//!         Err(e) => assert_eq!(e.outcome(), Outcome::DropMessage), // drop, read on
//!     }
//! });
//! assert!(result.is_ok()); // Err(_) means: close the connection
//! assert_eq!(got, vec![Message::TelemetryReq]);
//! ```
//!
//! # Errors and what they cost (§2.7)
//!
//! Every failure is a [`DecodeError`]; [`DecodeError::outcome`] says what to do.
//!
//! | Error | Display prefix | [`Outcome`] |
//! |---|---|---|
//! | [`HeaderTooShort`](DecodeError::HeaderTooShort), [`WrongNetwork`](DecodeError::WrongNetwork), [`VersionTooOld`](DecodeError::VersionTooOld), [`UnknownMessageType`](DecodeError::UnknownMessageType), [`PayloadTooLarge`](DecodeError::PayloadTooLarge) | `header: ` | [`CloseConnection`](Outcome::CloseConnection): the stream can no longer be framed |
//! | [`PayloadTooShort`](DecodeError::PayloadTooShort), [`TrailingBytes`](DecodeError::TrailingBytes), [`NotABlock`](DecodeError::NotABlock), [`ConfirmReqPairs`](DecodeError::ConfirmReqPairs), [`EmptyHandshake`](DecodeError::EmptyHandshake), [`TelemetryTooShort`](DecodeError::TelemetryTooShort), [`BulkPullExtended`](DecodeError::BulkPullExtended), [`AscPullType`](DecodeError::AscPullType) | `payload: ` | [`DropMessage`](Outcome::DropMessage): skip this message, keep the connection |
//!
//! Header checks run in the order of §2.7: network, `version_using ≥ 0x14` (`version_max`
//! and `version_min` are not checked), message type, payload length ≤ 66 560. The payload
//! length comes from the header alone (§2.6), so a bad payload never desynchronises the
//! stream: the [`Deframer`] hands out the frame and only [`Message::decode`] rejects it.
//! Payloads must be consumed exactly; unknown trailing data is kept only where §2.7
//! allows it (telemetry_ack beyond 202 bytes, asc_pull bodies).
//!
//! # Sending
//!
//! [`Message::encode`] / [`Message::encode_into`] write header (versions 0x15/0x15/0x14)
//! and payload, with the extensions nano-node senders use: not_a_block and v1/v2 counts
//! for confirm_*, the C++ flag rule for node_id_handshake, size for telemetry_ack.
//!
//! # Allocation
//!
//! Decoding keepalive, publish, node_id_handshake, telemetry_req, bulk_* and frontier_req
//! never allocates; telemetry_ack only for unknown trailing data; confirm_req and
//! confirm_ack allocate their entry list once ([`VoteView`] reads a vote without
//! allocating); asc_pull_* copy their body.

pub mod block;
mod bootstrap;
mod confirm;
mod deframer;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod header;
mod keepalive;
mod message;
mod protocol;
mod publish;
mod reader;
mod telemetry;
pub mod vote;

pub use block::{Block, BlockType, ChangeBlock, OpenBlock, ReceiveBlock, SendBlock, StateBlock};
pub use bootstrap::{AscPull, AscPullType, BulkPull, BulkPullAccount, FrontierReq};
pub use confirm::{ConfirmAck, ConfirmReq, HashRoot, VOTE_FIXED_LEN, VoteView};
pub use deframer::{Deframer, SPILL_RETAIN};
pub use error::{DecodeError, Outcome};
pub use handshake::{
    HandshakeQuery, HandshakeResponse, MAX_HANDSHAKE_PAYLOAD, NodeIdHandshake, QUERY_LEN,
    RESPONSE_V1_LEN, RESPONSE_V2_LEN, ResponseV2, SignedData,
};
pub use header::{
    Extensions, HEADER_LEN, Header, MAX_PAYLOAD, MIN_VERSION_USING, MessageType, VERSION_MAX,
    VERSION_MIN, VERSION_USING,
};
pub use keepalive::{EMPTY_PEER, KEEPALIVE_LEN, KEEPALIVE_PEERS, Keepalive};
pub use message::{Message, decode_message};
pub use publish::Publish;
pub use telemetry::{
    TELEMETRY_LEN, TELEMETRY_MAX_LEN, TELEMETRY_SIGNED_FROM, TelemetryAck, TelemetryData,
};
pub use vote::Vote;
