//! The load generator: simulated peers on their own io_uring threads (the [`crate::io`]
//! runtime, one ring per thread, no listener).
//!
//! Each simulated peer takes a node key of its own from the thread's key pool (a key is never
//! used by two connections at once), binds its socket to its own source address in
//! 127.0.0.0/8 (so per-IP and per-subnet limits of the target see many peers, each /24
//! different from the next), dials the target and runs the initiator side of the v2 handshake
//! (§6.2):
//!
//! 1. → node_id_handshake query (ext 0x0005) with a fresh cookie;
//! 2. ← query + v2 response (ext 0x0007): the genesis must be the network's; the signature over
//!    cookie ‖ salt ‖ genesis is queued for batch verification (unless `verify_node` is off);
//! 3. → our v2 response (ext 0x0006, signed with the peer's key) and a keepalive (144 bytes);
//! 4. ← the node's first post-handshake message (its keepalive_self, §6.2 step 5), which shows
//!    it created the channel.
//!
//! The handshake counts once step 4 has happened and the node's signature verified; the
//! latency runs from the dial to that moment. Then the peer closes (or, with `hold`, keeps the
//! channel open until the run ends). Anything else is a [`Failure`], by reason.
//!
//! The load threads' own CPU time is measured (`/proc` schedstat), so the report can show
//! whether the generator, not the target, was the bottleneck.
//!
//! Layout: `config.rs` ([`LoadConfig`], the source addresses), `peers.rs` (one load thread's
//! simulated peers: the handshake state machine), `keys.rs` (a thread's pool of node keys),
//! `driver.rs` ([`run`]: starts the threads, reports progress, adds up), `report.rs`
//! ([`LoadReport`], [`Failure`], [`Snapshot`]).

mod config;
mod driver;
mod keys;
mod peers;
mod report;

pub use config::{LoadConfig, LoadError, source_ip};
pub use driver::{run, run_counted};
pub use report::{BadSigCounts, Failure, LoadReport, SATURATION_WARN, Snapshot};
