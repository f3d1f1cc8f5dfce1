//! The node's error: why it could not start (each variant names what failed: io_uring, the
//! data directory, the weights file, the listen address, a thread, the open-file limit), or
//! why it failed while running.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::io::IoError;
use crate::proto::reachout::MergeRefusal;
use crate::proto::weights::WeightsError;
use crate::store::StoreError;

use super::ThreadFailure;

/// Why the node could not start, or failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// io_uring (or a feature the shards need) is unavailable.
    #[error("io_uring is not usable here: {0}")]
    IoUnavailable(#[source] IoError),
    /// The data directory, peer store or node key (the message names the file).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The representative weights file could not be loaded.
    #[error("cannot load representative weights from {path}: {source}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// The cause.
        source: WeightsError,
    },
    /// The shards could not start (bind, ring setup, pinning).
    #[error("cannot start shards listening on {addr}: {source}")]
    Shards {
        /// The listen address.
        addr: SocketAddr,
        /// The cause.
        source: IoError,
    },
    /// A shard thread ended with an error.
    #[error("shard {index} failed: {source}")]
    ShardFailed {
        /// The shard.
        index: usize,
        /// The cause.
        source: IoError,
    },
    /// A thread could not be spawned.
    #[error("cannot spawn the {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The operating system's random source failed.
    #[error("cannot seed the random generator from the OS: {0}")]
    Random(String),
    /// An option is inconsistent.
    #[error("invalid node option: {0}")]
    Config(String),
    /// `keepalive(addr)` was refused by the reachout rules (§7.4).
    #[error("peer {addr} not dialed: {reason:?}")]
    Refused {
        /// The address.
        addr: SocketAddr,
        /// The rule that refused it.
        reason: MergeRefusal,
    },
    /// The crawler thread is not running (stopped or crashed).
    #[error("the crawler thread is not running")]
    CrawlerGone,
    /// The crawler thread panicked.
    #[error("the crawler thread panicked")]
    CrawlerPanicked,
    /// Installing the SIGTERM/SIGINT handlers failed.
    #[error("cannot install signal handlers: {0}")]
    Signal(#[source] std::io::Error),
    /// The open-file limit cannot hold even a minimal configuration ([`fds`](super::fds)).
    #[error(
        "the open-file limit ({soft}, hard {hard}) is below the {minimum} descriptors that \
         {shards} shard(s) need at the least ({shards} × ({per_shard} connections + {per_fixed}) \
         + {reserve} reserved); raise it (ulimit -n, systemd LimitNOFILE=) or use fewer shards"
    )]
    OpenFileLimit {
        /// The soft limit in force (after trying to raise it to the hard one).
        soft: u64,
        /// The hard limit.
        hard: u64,
        /// Shards configured.
        shards: usize,
        /// Connection slots per shard of the minimal configuration.
        per_shard: usize,
        /// Descriptors each shard holds besides its connections.
        per_fixed: u64,
        /// Descriptors reserved besides the shards.
        reserve: u64,
        /// Descriptors the minimal configuration needs.
        minimum: u64,
    },
    /// A node thread ended while the node was running (it panicked or failed).
    #[error("{0}")]
    ThreadDied(ThreadFailure),
    /// No thread of that name (fault injection).
    #[error("no thread named {0:?}")]
    NoSuchThread(String),
}
