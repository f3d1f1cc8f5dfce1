//! # nanopeer
//!
//! The peering layer of a Nano node, built as an io_uring message processor for Linux servers.
//! It finds peers, authenticates them with the `node_id_handshake`, keeps them with keepalives,
//! finds representatives with the rep crawler and remembers peers across restarts. It speaks the
//! wire protocol of today's reference node (protocol 0x15, minimum 0x14, v2 handshake, TCP).
//!
//! ```text
//!               ┌──────────── shard 0 (pinned core 0) ─────────────┐
//!  TCP peers ──►│ io_uring: multishot accept + multishot recv      │
//!  (SO_REUSEPORT│  into a provided buffer ring → deframer          │
//!   listener    │  → proto core (handshake, keepalive, votes)      │──┐ verify requests
//!   per shard)  │  → batch verifier (flush at N or T µs)           │  │ stay on the shard
//!               │  → sends (owned buffers, linked timeouts)        │  │
//!               └──────────────────────────────────────────────────┘  │
//!               ┌──────────── shard k … (same) ────────────────────┐  │
//!               └──────────────────────────────────────────────────┘  │
//!                      ▲ commands (bounded queue + eventfd wake)       ▼
//!               ┌──────────── crawler core ────────────────────────┐  ┌───────────────────────┐
//!               │ keepalive fan-out ⌈0.75√N⌉, keepalive_self,       │  │ channel map (shared,  │
//!               │ reachout/merge_peer, rep crawler, online weight,  │◄►│ lock-free reads):     │
//!               │ cleanup/purge, syn-cookie purge, peer store flush,│  │ endpoint → channel,   │
//!               │ preconfigured peers (DNS), RPC + metrics server   │  │ node_id, per-IP and   │
//!               └──────────────────────────────────────────────────┘  │ per-subnet counts     │
//!                                                                      └───────────────────────┘
//! ```
//!
//! Modules:
//! - [`types`]: networks, hashes, keys, signatures, amounts.
//! - [`wire`]: the sans-IO codec (header, every message, blocks, TCP deframer).
//! - [`io`]: the io_uring runtime (shards, buffer rings, command queues); the only `unsafe`.
//! - [`crypto`]: Ed25519-Blake2b keys, signing, single and batch verification, hashes, PoW,
//!   account and node-id text.
//! - [`store`]: the data directory: peer store and online-weight samples (redb), node ID key.
//! - [`channels`]: the shared channel map and its admission limits.
//! - [`proto`]: the sans-IO peering logic (cookies, handshake, keepalive, rep crawler).
//!
//! `wire`, `crypto` and `proto` never open a socket, read a clock or spawn a thread.
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod bench;
pub mod channels;
pub mod counters;
pub mod crypto;
pub mod endpoint;
pub mod io;
pub mod node;
pub mod ops;
pub mod proto;
pub mod store;
pub mod types;
pub mod wire;
