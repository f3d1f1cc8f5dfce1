//! The node: io_uring shards running the protocol cores, the crawler thread, the peer store.
//!
//! [`Node::start`] checks io_uring, opens the data directory (peer store, node key), loads
//! the representative weights, builds the shared state (channel map, duplicate filter,
//! exclusion list), binds one SO_REUSEPORT listener per shard on the listen address, spawns
//! the shards on them and the crawler thread, which dials the stored peers first and then the
//! preconfigured ones. [`Node`] is the handle the CLI, the RPC server and the tests use;
//! [`Node::stop`] flushes the live peers to the store and joins every thread.
//! [`run_until_signal`] is the daemon: start, wait for SIGTERM or SIGINT (or a thread's
//! death), stop.
//!
//! By job: `start` (start-up and wiring), this file (the [`Node`] handle, its queries and its
//! stop), `stats` ([`NodeStats`]), `options` ([`NodeOptions`] and the defaults), `error`
//! ([`NodeError`]); the threads' own code is in `shard`, `crawler` and `health`, the RPC view
//! in `api`, the descriptor budget in [`fds`].
//!
//! **Limits.** Before anything else, `start` raises the soft open-file limit to the hard one
//! and fits the per-shard connection caps into it (module [`fds`]): caps that do not fit are
//! lowered with a warning; a limit too small for even a minimal configuration is
//! [`NodeError::OpenFileLimit`].
//!
//! **Thread health.** A shard or crawler thread that panics is logged (error, with the
//! thread's name) and reported by [`Node::failed_thread`]; a dead shard's channels leave the
//! channel map at once (its sockets closed with it), so its peers can reconnect through the
//! other shards. The node does not restart the thread: the daemon ([`run_until_signal`],
//! `nanopeer run`) stops and exits with a non-zero status for its supervisor to restart it. Each
//! thread's last progress is in [`Node::threads`], and a watchdog warns about a thread that
//! has work but makes no progress for [`NodeOptions::stall_warning`].

mod crawler;
mod error;
pub mod fds;
mod health;
mod options;
mod shard;
mod start;
mod stats;

pub use crawler::{CrawlerStatus, CrawlerThreadStats, PeerTelemetry, resolve_peer};
pub use error::NodeError;
pub use fds::{FdFit, OpenFiles, fds_needed, fit_connections};
pub use health::{DEFAULT_STALL_WARNING, ThreadFailure, ThreadHealth};
pub use options::{NodeOptions, default_preconfigured_peers, default_shard_count};
pub use shard::{
    AdaptiveBatch, BATCH_BUCKETS, BatchMetrics, QueueStats, ShardMetrics, batch_bucket,
};
pub use stats::NodeStats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::bounded;
use parking_lot::{Mutex, RwLock};

use crate::channels::{ChannelMap, Direction};
use crate::counters::CounterSet;
use crate::endpoint::Endpoint;
use crate::io::{Counters, Fault, ShardHandle};

use crate::proto::config::ProtoConfig;
use crate::proto::events::ShardCommand;
use crate::proto::identity::NodeIdentity;
use crate::proto::repcrawler::RepStatus;
use crate::proto::stats::ShardStats;
use crate::proto::telemetry::local_telemetry;
use crate::types::{Network, PublicKey};
use crate::wire::TelemetryData;

use self::crawler::{Control, recv_within, wall_ms};
use self::health::{CrawlerLife, Health, Watchdog};

/// How long [`Node::stop`] waits for the crawler's final flush.
const STOP_CRAWLER_WAIT: Duration = Duration::from_secs(2);
/// How long [`Node::keepalive`] waits for the crawler's answer.
const CONTROL_WAIT: Duration = Duration::from_secs(2);

/// One connected peer, as [`Node::peers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The remote endpoint of the connection.
    pub endpoint: SocketAddr,
    /// The peer's node id.
    pub node_id: PublicKey,
    /// The protocol version of the channel.
    pub protocol_version: u8,
    /// Where the peer listens (keepalive slot 0; else the remote endpoint).
    pub peering_endpoint: SocketAddr,
    /// The shard that owns the connection.
    pub shard: u16,
    /// Who dialed.
    pub direction: Direction,
}

/// A running node. Dropping it stops it (as [`Node::stop`], ignoring errors).
pub struct Node {
    identity: Arc<NodeIdentity>,
    network: Network,
    started: Instant,
    config: ProtoConfig,
    local_addr: SocketAddr,
    data_path: PathBuf,
    channels: Arc<ChannelMap>,
    shards: Vec<ShardHandle<ShardCommand>>,
    metrics: Vec<Arc<Mutex<ShardMetrics>>>,
    shard_tids: Arc<Mutex<Vec<u32>>>,
    status: Arc<RwLock<CrawlerStatus>>,
    control: crossbeam::channel::Sender<Control>,
    crawler: Option<JoinHandle<()>>,
    crawler_life: Arc<CrawlerLife>,
    health: Arc<Health>,
    watchdog: Watchdog,
    open_files: OpenFiles,
    stopped: bool,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("network", &self.network)
            .field("node_id", &self.identity.node_id_text())
            .field("local_addr", &self.local_addr)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Our node id.
    pub fn node_id(&self) -> PublicKey {
        self.identity.node_id()
    }

    /// Our node id as `node_…` text.
    pub fn node_id_text(&self) -> &str {
        self.identity.node_id_text()
    }

    /// The network.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The address the shards listen on (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The data directory.
    pub fn data_path(&self) -> &std::path::Path {
        &self.data_path
    }

    /// Time since [`Node::start`] began.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The protocol settings in effect (`listen_port` is the bound port, the online-weight
    /// minimum override applied).
    pub fn proto_config(&self) -> &ProtoConfig {
        &self.config
    }

    /// Our telemetry as we broadcast it now (signed; peer count = channels, uptime, wall time).
    pub fn local_telemetry(&self) -> TelemetryData {
        local_telemetry(
            &self.identity,
            self.network,
            u32::try_from(self.channels.len()).unwrap_or(u32::MAX),
            self.uptime().as_secs(),
            wall_ms(),
        )
    }

    /// Each shard's io counters (as last published), by shard index.
    pub fn shard_counters(&self) -> Vec<Counters> {
        self.shards.iter().map(|h| h.counters()).collect()
    }

    /// The kernel thread ids of the shard threads, by shard index (0 where unknown); for
    /// per-thread CPU accounting (`nanopeer bench`).
    pub fn shard_thread_ids(&self) -> Vec<u32> {
        self.shard_tids.lock().clone()
    }

    /// The connected peers (alive channels), ordered by endpoint.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut v: Vec<PeerInfo> = self
            .channels
            .snapshot()
            .into_iter()
            .filter(|c| c.is_alive())
            .map(|c| PeerInfo {
                endpoint: c.remote().to_socket_addr(),
                node_id: *c.node_id(),
                protocol_version: c.protocol_version(),
                peering_endpoint: c.peering_endpoint().to_socket_addr(),
                shard: c.shard(),
                direction: c.direction(),
            })
            .collect();
        v.sort_by_key(|p| p.endpoint);
        v
    }

    /// Asks the crawler to dial `addr` now (`merge_peer`, §7.4). Refused by the reachout rules
    /// (already connected, attempted recently, not a peer, limits): [`NodeError::Refused`].
    pub fn keepalive(&self, addr: SocketAddr) -> Result<(), NodeError> {
        let (tx, rx) = bounded(1);
        self.control
            .send(Control::MergePeer(Endpoint::from(addr), tx))
            .map_err(|_| NodeError::CrawlerGone)?;
        match recv_within(&rx, CONTROL_WAIT) {
            Some(Ok(_shard)) => Ok(()),
            Some(Err(reason)) => Err(NodeError::Refused { addr, reason }),
            None => Err(NodeError::CrawlerGone),
        }
    }

    /// Counters of the whole node (shards as last published, within ~100 ms).
    pub fn stats(&self) -> NodeStats {
        let mut proto = ShardStats::default();
        let mut io = Counters::default();
        let mut batch = BatchMetrics::default();
        let mut queue = QueueStats::default();
        let shards: Vec<ShardMetrics> = self.metrics.iter().map(|m| m.lock().clone()).collect();
        for m in &shards {
            proto.add(&m.proto);
            batch.add(&m.batch);
            queue.add(&m.queue);
        }
        for h in &self.shards {
            io.add(&h.counters());
        }
        NodeStats {
            proto,
            io,
            batch,
            queue,
            channels: self.channels.len(),
            shards,
            crawler: self.status.read().clone(),
            threads: self.threads(),
            open_files: self.open_files,
        }
    }

    /// Each thread's health now: the shards in order (`shard-0`, …), then `crawler`.
    pub fn threads(&self) -> Vec<ThreadHealth> {
        self.health.snapshot(Instant::now())
    }

    /// The first thread that ended while the node was running (a panic or a failed ring), if
    /// any. A node with a dead thread is only partly working: the daemon stops and exits
    /// non-zero for its supervisor to restart it.
    pub fn failed_thread(&self) -> Option<ThreadFailure> {
        self.health.failure()
    }

    /// The open-file limit as the node found and left it, and the descriptor budget of the
    /// connection caps in force.
    pub fn open_files(&self) -> OpenFiles {
        self.open_files
    }

    /// Makes thread `thread` (`shard-N` or `crawler`) suffer `fault` at its next loop turn:
    /// a panic or a stall. For tests of thread health; not for production use.
    #[doc(hidden)]
    pub fn inject_fault(&self, thread: &str, fault: Fault) -> Result<(), NodeError> {
        if thread == "crawler" {
            self.crawler_life.heartbeat.inject(fault);
            return Ok(());
        }
        let shard = thread
            .strip_prefix("shard-")
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| self.shards.get(i))
            .ok_or_else(|| NodeError::NoSuchThread(thread.to_string()))?;
        shard.inject_fault(fault);
        Ok(())
    }

    /// Representatives, online weight, trended weight and quorum delta (as last published).
    pub fn rep_status(&self) -> RepStatus {
        self.status.read().rep_status.clone()
    }

    /// Telemetry of the peers (as last published).
    pub fn telemetry(&self) -> Vec<PeerTelemetry> {
        self.status.read().telemetry.clone()
    }

    /// False while peer-store writes fail (the node keeps peering without persistence).
    pub fn store_ok(&self) -> bool {
        self.status.read().store_ok
    }

    /// Stops the node: the crawler writes the live peers to the peer store and exits, then the
    /// shards close every connection and exit; every thread is joined (bounded: about 4 s at
    /// worst, normally milliseconds).
    pub fn stop(mut self) -> Result<(), NodeError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), NodeError> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        self.health.stopping.store(true, Ordering::Release);
        self.watchdog.stop();
        let mut result = Ok(());
        let (tx, rx) = bounded(1);
        let asked = self.control.send(Control::Stop(tx)).is_ok();
        let flushed = asked && recv_within(&rx, STOP_CRAWLER_WAIT).is_some();
        if !flushed {
            tracing::warn!("the crawler did not confirm the final peer-store flush");
        }
        for s in &self.shards {
            s.stop();
        }
        for s in &self.shards {
            if let Err(source) = s.join()
                && result.is_ok()
            {
                result = Err(NodeError::ShardFailed {
                    index: s.index(),
                    source,
                });
            }
        }
        if let Some(h) = self.crawler.take() {
            // It has answered Stop (or is gone); a thread that did not answer is left
            // detached rather than blocking the stop.
            let ended = flushed || h.is_finished();
            let panicked = ended && (h.join().is_err() || self.crawler_life.panicked());
            if panicked && result.is_ok() {
                result = Err(NodeError::CrawlerPanicked);
            }
        }
        tracing::info!(
            node_id = self.identity.node_id_text(),
            "nanopeer node stopped"
        );
        result
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Makes SIGHUP set `flag` instead of its default action (end the process: a closed
/// terminal, or `systemctl reload` without `ExecReload`); [`log_hangup`] reports it from a
/// normal thread.
pub fn catch_hangup(flag: &Arc<AtomicBool>) -> std::io::Result<()> {
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(flag)).map(|_| ())
}

/// If SIGHUP arrived since the last call (`flag` set), clears `flag` and logs it at info:
/// nanopeer has no configuration reload, and logs go to stderr (no file to reopen).
pub fn log_hangup(flag: &AtomicBool) {
    if flag.swap(false, Ordering::Relaxed) {
        tracing::info!("SIGHUP received; nanopeer has no config reload, ignoring");
    }
}

/// Starts a node, waits for SIGTERM or SIGINT, and stops it; a node thread that dies stops
/// it too, with [`NodeError::ThreadDied`]. A second signal while stopping exits the process
/// at once. SIGHUP is logged and ignored.
pub fn run_until_signal(opts: NodeOptions) -> Result<(), NodeError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let term = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        // A second signal (flag already set) terminates the process.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&term))
            .map_err(NodeError::Signal)?;
        signal_hook::flag::register(sig, Arc::clone(&term)).map_err(NodeError::Signal)?;
    }
    let hangup = Arc::new(AtomicBool::new(false));
    catch_hangup(&hangup).map_err(NodeError::Signal)?;
    let node = Node::start(opts)?;
    while !term.load(Ordering::Relaxed) {
        log_hangup(&hangup);
        if let Some(failure) = node.failed_thread() {
            tracing::error!(thread = %failure.thread, "{failure}; stopping the node");
            let _ = node.stop();
            return Err(NodeError::ThreadDied(failure));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!("signal received, stopping");
    node.stop()
}
