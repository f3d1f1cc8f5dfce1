//! Peers on long-lived authenticated channels streaming messages at a node: the shared
//! machinery of the floods (`bench --attack slot-flood|vote-flood`) and the realtime workloads
//! (`bench --workload votes|publish`).
//!
//! Each streaming peer dials the node from its own 127.x.y.z address with a node key of its
//! own, completes a real v2 handshake and, once the node's first channel message shows the
//! channel exists, sends its channel's share of a [`MessagePool`] in order, as fast as the
//! node reads (a send queue of at most 32 KiB) or paced. A pool is built before the run, so
//! the peers spend almost no CPU on it: pre-signed votes ([`VotePool`]: `reps` representative
//! keys taking turns, `hashes` hashes each) or pre-built state blocks ([`BlockPool`]: one
//! fresh account each, valid work for the network). Either can hold known numbers of
//! messages with wrong signatures, duplicates and (blocks) insufficient work
//! ([`StreamMix`]), so a run can check what the node counts.
//!
//! Layout: `runner.rs` ([`StreamRunner`]: starts the io threads, also of the floods' silent
//! and bad-voting peers; their counters), `handler.rs` (one io thread's peers: dial,
//! handshake, stream, reopen), `pool.rs` ([`MessagePool`], [`StreamMix`], the send order),
//! `votes.rs` (the confirm_ack layout, [`VotePool`]), `blocks.rs` ([`BlockPool`],
//! [`state_blocks`]), `source.rs` (the peers' addresses, [`FloodSource`]).

mod blocks;
mod handler;
mod pool;
mod runner;
pub(crate) mod source;
mod votes;

pub use blocks::{BlockPool, MAX_WORK_TRIES, STATE_BLOCK_LEN, state_blocks, work_tries};
pub use handler::REFUSED_WITHIN;
pub use pool::{MessagePool, StreamMix};
pub use runner::{StreamCounts, StreamOptions, StreamPeers, StreamRunner};
pub use source::{ATTACK_SUBNETS, FloodSource, HONEST_VOTER_OFFSET, stream_source_ip};
pub use votes::{RepTurns, VotePool};
