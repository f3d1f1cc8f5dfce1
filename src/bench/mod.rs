//! `nanopeer bench`: a load generator of simulated peers, the crypto ceiling it is compared
//! against, and the report.
//!
//! - [`loadgen`]: simulated peers on their own io_uring threads; each dials the target from its
//!   own 127.x.y.z source address with its own node key, completes a v2 handshake, sends a
//!   keepalive and closes (or holds the channel). Throughput, failures by reason, latency and
//!   the load threads' own CPU use.
//! - [`attack`]: hostile traffic (`--attack KIND`) alongside an honest load, and the soak
//!   sampler (RSS, descriptors, connections over time).
//! - [`flood`] (inside [`attack`], re-exported here): `slot-flood` and `vote-flood`: more
//!   unverified connections than the cap, and invalid votes on authenticated channels, each
//!   against a clean phase of the same run.
//! - [`stream`]: peers on long-lived channels streaming pre-built votes or blocks (the floods'
//!   peers, and the `votes` and `publish` workloads').
//! - [`workload`]: `bench --workload votes|publish`: the streams measured by what the node
//!   verified (its own counters), against a verify ceiling of the same key mix and batch.
//! - [`ceiling`]: one core's handshake, vote or block rate on crypto alone, measured by the
//!   same binary in the same run.
//! - [`report`]: the JSON object, the terminal table and the live progress bar.
//! - [`hist`]: a log-linear latency histogram (p50/p99 within ~1.6 %).
//! - [`setup`]: the plan of a run, core placement, the bench node's options and limits.
//! - [`inprocess`]: one measured run against a fresh in-process node (as `bench` and every
//!   `tune` point run it) and its outcome.
//! - [`error`]: what stops `bench` or `tune` before it reports.
//! - [`cli`]: `nanopeer bench` (an in-process node, `--target`, `--attack`, `--soak`).
//! - [`tune`]: `nanopeer tune`: the shard × batch sweep, its outputs and the recommendation.
//! - [`tune_files`]: tune's CSV, JSON and plot, rewritten after every point; `--plot-from`.
//! - [`tune_stream`]: `nanopeer tune --workload votes|publish`: the same sweep of a realtime
//!   workload.
//! - [`svg`]: the hand-written line chart of `tune.svg`.

pub mod attack;
pub mod ceiling;
pub mod cli;
pub mod error;
pub mod hist;
pub mod inprocess;
pub mod loadgen;
pub mod report;
pub mod setup;
pub mod stream;
pub mod svg;
pub mod tune;
pub mod tune_files;
pub mod tune_stream;
pub mod workload;

pub use attack::flood;
pub use attack::{
    AttackConfig, AttackError, AttackKind, AttackReport, SoakSample, run_attack, run_soak,
};
pub use ceiling::crypto_ceiling_per_sec;
// The OS-level CPU clock lives in `crate::io::cpu`; tests/loadgen.rs reads it from here.
pub use crate::io::cpu::process_cpu_time;
pub use attack::flood::{
    FloodCounts, FloodPeers, FloodReport, FloodRunner, FloodSource, run_flood,
};
pub use hist::{AtomicHistogram, LatencyHistogram};
pub use loadgen::{
    BadSigCounts, Failure, LoadConfig, LoadError, LoadReport, Snapshot, run, run_counted, source_ip,
};
pub use report::{BenchReport, Progress, efficiency};
