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
//! Modules, from the bottom up (each imports only modules above it in this list):
//! - [`types`]: networks, hashes, keys, signatures, amounts.
//! - [`endpoint`]: a peer's endpoint in its one canonical form, and the per-IP / per-subnet
//!   keys.
//! - [`counters`]: the one counter schema (`counter_set!`): storage, summing, RPC rows and
//!   `/metrics` samples generated from each counter's declaration.
//! - [`wire`]: the sans-IO codec (header, every message, blocks, TCP deframer).
//! - [`io`]: the io_uring runtime (shards, buffer rings, command queues); the only `unsafe`.
//! - [`crypto`]: Ed25519-Blake2b keys, signing, single and batch verification, hashes, PoW,
//!   account and node-id text.
//! - [`store`]: the data directory: peer store and online-weight samples (redb), node ID key.
//! - [`channels`]: the shared channel map and its admission limits.
//! - [`proto`]: the sans-IO peering logic (cookies, handshake, keepalive, rep crawler).
//! - [`node`]: wiring: shards + crawler thread + store; start, stats, stop.
//! - [`bench`](mod@bench): the load generator and tuner behind `nanopeer bench` / `nanopeer tune`.
//! - [`ops`]: the operator's side: CLI, config file, logging, RPC and `/metrics` servers and
//!   the node as they see it.
//!
//! `wire`, `crypto` and `proto` never open a socket, read a clock or a file, or spawn a thread.
//!
//! ## Follow one handshake
//!
//! An inbound `node_id_handshake`, from the accept to the channel, passes five files:
//!
//! 1. `src/io/accept.rs`: the multishot accept completes; the handler screens the peer
//!    ([`io::Handler::screen_inbound`]) before it gets a slot or is read, then `on_accept`.
//!    Its bytes come the same way (`src/io/recv.rs`, `Handler::on_data`).
//! 2. `src/node/shard.rs`: the node's handler turns the socket address into an
//!    [`endpoint::Endpoint`] (the only conversion) and calls the core; it batches the
//!    signature checks the core asks for and answers each with `on_verified`.
//! 3. `src/proto/shard.rs`: [`proto::shard::ShardCore`] screens the peer (exclusion, per-IP and
//!    per-subnet counts, eviction when full), deframes, steps the connection's handshake with
//!    every frame before the channel exists and issues the signature check it names; once
//!    that verifies, it admits the peer (`proto/admission.rs`), sends keepalive_self and tells
//!    the crawler (`ChannelUp`).
//! 4. `src/proto/handshake.rs`: the [`proto::handshake::Handshake`] state machine answers the
//!    query with ours and a signed response, and checks the peer's response (node id,
//!    genesis, cookie) before naming the signature to verify.
//! 5. `src/channels/mod.rs`: [`channels::ChannelMap::try_insert_resolving`] makes the channel
//!    under the per-IP, per-subnet and total limits, settling a duplicate of the same node.
//!
//! On the way it calls into leaves: [`wire`] decodes the frame, `proto/checks.rs` issues the
//! check, [`crypto`] verifies the batch, [`proto::stats`] counts the outcome.
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
