//! The node: io_uring shards running the protocol cores, the crawler thread, the peer store.
//!
//! [`Node::start`] checks io_uring, opens the data directory (peer store, node key), loads
//! the representative weights, builds the shared state (channel map, duplicate filter,
//! exclusion list), spawns the shards (one SO_REUSEPORT listener each) and the crawler thread,
//! which dials the stored peers first and then the preconfigured ones. [`Node`] is the handle
//! the CLI, the RPC server and the tests use; [`Node::stop`] flushes the live peers to the store
//! and joins every thread. [`run_until_signal`] is the daemon: start, wait for SIGTERM or
//! SIGINT (or a thread's death), stop.
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

mod api;
mod crawler;
pub mod fds;
mod health;
mod shard;

pub use api::{STORE_VERSION, SharedNode};
pub use crawler::{CrawlerStatus, CrawlerThreadStats, PeerTelemetry, resolve_peer};
pub use fds::{FdFit, OpenFiles, fds_needed, fit_connections};
pub use health::{DEFAULT_STALL_WARNING, ThreadFailure, ThreadHealth};
pub use shard::{AdaptiveBatch, BATCH_BUCKETS, BatchMetrics, ShardMetrics, batch_bucket};

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, unbounded};
use parking_lot::{Mutex, RwLock};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::channels::{ChannelLimits, ChannelMap, Direction};
use crate::io::{self, Counters, Fault, IoError, ShardConfig, ShardExit, ShardHandle};
use crate::proto::addr::{canonical, to_socket_addr};
use crate::proto::config::ProtoConfig;
use crate::proto::crawler::{CrawlerCore, CrawlerSetup};
use crate::proto::events::{CrawlerEvent, ShardCommand};
use crate::proto::exclusion::PeerExclusion;
use crate::proto::filter::{DEFAULT_CUTOFF_MS, DEFAULT_SLOTS, DuplicateFilter};
use crate::proto::identity::NodeIdentity;
use crate::proto::reachout::MergeRefusal;
use crate::proto::repcrawler::{QueryBoard, RepStatus};
use crate::proto::shard::{ShardShared, ShardStats};
use crate::proto::telemetry::{local_telemetry, telemetry_ack_bytes};
use crate::proto::weights::{RepWeights, WeightsError};
use crate::store::{PeerStore, StoreError, ensure_data_dir, load_or_create_node_key};
use crate::types::{Network, PublicKey};
use crate::wire::TelemetryData;

use self::crawler::{Control, CrawlerThread, recv_within, wall_ms};
use self::health::{CrawlerLife, Health, Watchdog};
use self::shard::{NodeShard, ShardSetup};

/// How long [`Node::stop`] waits for the crawler's final flush.
const STOP_CRAWLER_WAIT: Duration = Duration::from_secs(2);
/// How long [`Node::keepalive`] waits for the crawler's answer.
const CONTROL_WAIT: Duration = Duration::from_secs(2);

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
    /// The open-file limit cannot hold even a minimal configuration ([`fds`]).
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

/// The preconfigured peers of a network (§7.6): dev none, live `peering.nano.org:7075`, beta
/// `peering-beta.nano.org:54000`, test `peering-test.nano.org:17075`.
pub fn default_preconfigured_peers(network: Network) -> Vec<String> {
    match network {
        Network::Dev => Vec::new(),
        Network::Live => vec!["peering.nano.org:7075".into()],
        Network::Beta => vec!["peering-beta.nano.org:54000".into()],
        Network::Test => vec!["peering-test.nano.org:17075".into()],
    }
}

/// The default shard count: one per core but one (left for the crawler), at least 1.
pub fn default_shard_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1)
}

/// Everything [`Node::start`] needs. [`NodeOptions::new`] gives the defaults of a network.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The network.
    pub network: Network,
    /// The data directory (peer store, node key); created if missing.
    pub data_path: PathBuf,
    /// Where to listen (every shard binds it with SO_REUSEPORT). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Number of shards; `None` = [`default_shard_count`].
    pub shards: Option<usize>,
    /// Peers dialed at start after the stored ones, as `host[:port]` (no port = the network's
    /// default port); `None` = [`default_preconfigured_peers`].
    pub preconfigured_peers: Option<Vec<String>>,
    /// A verify batch is flushed when it holds this many requests.
    pub batch_max: usize,
    /// … or this long after its first request (µs).
    pub batch_delay_us: u64,
    /// Protocol settings; `network` must match, `listen_port` is replaced by the bound port.
    pub proto: ProtoConfig,
    /// io settings of each shard (`listen` is not used: the node binds [`NodeOptions::listen`];
    /// `cores`, if empty, from `pin_cores`).
    pub io: ShardConfig,
    /// Representative weights file (`<account> <raw>` lines); `None` = the network's defaults.
    pub weights_file: Option<PathBuf>,
    /// Overrides `proto.online_weight_minimum` (raw).
    pub online_weight_minimum: Option<u128>,
    /// Pin shard `i` to core `i` (and the crawler to the last core), unless `io.cores` or
    /// `crawler_core` say otherwise.
    pub pin_cores: bool,
    /// Core to pin the crawler thread to (wins over `pin_cores`).
    pub crawler_core: Option<usize>,
    /// Slots of the duplicate filter (16 bytes each).
    pub filter_slots: usize,
    /// Capacity of the shard → crawler event queue.
    pub event_queue: usize,
    /// Decompressed public keys cached per shard.
    pub key_cache: usize,
    /// A thread with work (a shard with connections or queued commands; the crawler) that
    /// shows no progress this long is logged as stalled (default [`DEFAULT_STALL_WARNING`]).
    pub stall_warning: Duration,
}

impl NodeOptions {
    /// The defaults of `network`: listen on `[::]` at the network's default port, shards
    /// [`default_shard_count`], the network's preconfigured peers, batches of 64 or 200 µs.
    pub fn new(network: Network, data_path: impl Into<PathBuf>) -> NodeOptions {
        NodeOptions {
            network,
            data_path: data_path.into(),
            listen: SocketAddr::from((Ipv6Addr::UNSPECIFIED, network.default_port())),
            shards: None,
            preconfigured_peers: None,
            batch_max: 64,
            batch_delay_us: 200,
            proto: ProtoConfig::for_network(network),
            io: ShardConfig::default(),
            weights_file: None,
            online_weight_minimum: None,
            pin_cores: false,
            crawler_core: None,
            filter_slots: DEFAULT_SLOTS,
            event_queue: 65_536,
            key_cache: 4096,
            stall_warning: DEFAULT_STALL_WARNING,
        }
    }
}

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

/// Counters of the whole node.
#[derive(Debug, Clone)]
pub struct NodeStats {
    /// The protocol cores' counters, summed over the shards.
    pub proto: ShardStats,
    /// The io counters, summed over the shards.
    pub io: Counters,
    /// The batch verifiers' counters, summed over the shards.
    pub batch: BatchMetrics,
    /// Events handed to the crawler.
    pub events_sent: u64,
    /// Events dropped (crawler queue full).
    pub events_dropped: u64,
    /// ChannelUp/ChannelDown dropped (queue and backlog full).
    pub lifecycle_dropped: u64,
    /// Channels in the channel map.
    pub channels: usize,
    /// Per shard, as published.
    pub shards: Vec<ShardMetrics>,
    /// The crawler (as last published).
    pub crawler: CrawlerStatus,
    /// Each thread's health (shards in order, then the crawler), now.
    pub threads: Vec<ThreadHealth>,
    /// The open-file limit and the descriptor budget of the caps in force.
    pub open_files: OpenFiles,
}

/// Adds `b`'s counters to `a`.
pub fn add_shard_stats(a: &mut ShardStats, b: &ShardStats) {
    for (x, y) in a.messages_in.iter_mut().zip(b.messages_in.iter()) {
        *x += y;
    }
    for (x, y) in a.messages_out.iter_mut().zip(b.messages_out.iter()) {
        *x += y;
    }
    a.bytes_in += b.bytes_in;
    a.bytes_out += b.bytes_out;
    let (h, g) = (&mut a.handshake, &b.handshake);
    h.ok += g.ok;
    h.own_node_id += g.own_node_id;
    h.invalid_genesis += g.invalid_genesis;
    h.missing_cookie += g.missing_cookie;
    h.invalid_signature += g.invalid_signature;
    h.protocol += g.protocol;
    h.cookie_limit += g.cookie_limit;
    h.max_per_ip += g.max_per_ip;
    h.max_per_subnet += g.max_per_subnet;
    h.duplicate_node_id += g.duplicate_node_id;
    h.not_a_peer += g.not_a_peer;
    h.excluded += g.excluded;
    h.channel_limit += g.channel_limit;
    let (p, q) = (&mut a.payload_errors, &b.payload_errors);
    p.too_short += q.too_short;
    p.trailing_bytes += q.trailing_bytes;
    p.not_a_block += q.not_a_block;
    p.confirm_req_pairs += q.confirm_req_pairs;
    p.empty_handshake += q.empty_handshake;
    p.telemetry_too_short += q.telemetry_too_short;
    p.bulk_pull_extended += q.bulk_pull_extended;
    p.asc_pull_type += q.asc_pull_type;
    p.other += q.other;
    let (c, d) = (&mut a.closes, &b.closes);
    c.header_error += d.header_error;
    c.handshake += d.handshake;
    c.message_before_handshake += d.message_before_handshake;
    c.bootstrap_not_served += d.bootstrap_not_served;
    c.timeout += d.timeout;
    c.purged += d.purged;
    c.excluded += d.excluded;
    c.requested += d.requested;
    c.evicted += d.evicted;
    c.replaced += d.replaced;
    a.channels_replaced += b.channels_replaced;
    c.misbehaviour += d.misbehaviour;
    let (x, y) = (&mut a.admission, &b.admission);
    x.max_per_ip += y.max_per_ip;
    x.max_per_subnetwork += y.max_per_subnetwork;
    x.excluded += y.excluded;
    x.full += y.full;
    x.evicted_unverified += y.evicted_unverified;
    x.evicted_channels += y.evicted_channels;
    x.oversize_before_handshake += y.oversize_before_handshake;
    let (x, y) = (&mut a.misbehaviour, &b.misbehaviour);
    x.invalid_signatures += y.invalid_signatures;
    x.verify_work += y.verify_work;
    x.verify_alone += y.verify_alone;
    a.closed_remotely += b.closed_remotely;
    a.connections += b.connections;
    a.duplicate_publish += b.duplicate_publish;
    a.duplicate_confirm_ack += b.duplicate_confirm_ack;
    a.insufficient_work += b.insufficient_work;
    a.invalid_block_signature += b.invalid_block_signature;
    a.votes_valid += b.votes_valid;
    a.invalid_vote_signature += b.invalid_vote_signature;
    a.zero_account_vote += b.zero_account_vote;
    a.telemetry_empty += b.telemetry_empty;
    a.telemetry_node_id_mismatch += b.telemetry_node_id_mismatch;
    a.invalid_telemetry_signature += b.invalid_telemetry_signature;
    a.genesis_mismatch += b.genesis_mismatch;
    a.confirm_req_ignored += b.confirm_req_ignored;
    a.realtime_ignored += b.realtime_ignored;
    a.handshake_ignored += b.handshake_ignored;
    a.verify_requests += b.verify_requests;
    a.verify_overflow += b.verify_overflow;
    a.verify_orphaned += b.verify_orphaned;
    a.held_dropped += b.held_dropped;
    a.send_to_closed += b.send_to_closed;
    a.queries_on_up += b.queries_on_up;
    a.dials += b.dials;
    a.dials_failed += b.dials_failed;
    a.cookies_purged += b.cookies_purged;
}

fn add_counters(a: &mut Counters, b: &Counters) {
    a.accepted += b.accepted;
    a.rejected_cap += b.rejected_cap;
    a.refused += b.refused;
    a.evicted += b.evicted;
    a.accept_errors += b.accept_errors;
    a.connects_ok += b.connects_ok;
    a.connects_failed += b.connects_failed;
    a.recv_completions += b.recv_completions;
    a.recv_bytes += b.recv_bytes;
    a.recv_rearms += b.recv_rearms;
    a.buf_ring_exhausted += b.buf_ring_exhausted;
    a.send_messages += b.send_messages;
    a.sends += b.sends;
    a.send_bytes += b.send_bytes;
    a.partial_sends += b.partial_sends;
    a.send_queue_drops += b.send_queue_drops;
    a.closed_peer += b.closed_peer;
    a.closed_recv_error += b.closed_recv_error;
    a.closed_send_error += b.closed_send_error;
    a.closed_send_queue_full += b.closed_send_queue_full;
    a.closed_deadline += b.closed_deadline;
    a.closed_local += b.closed_local;
    a.closed_evicted += b.closed_evicted;
    a.closed_shutdown += b.closed_shutdown;
    a.live_connections += b.live_connections;
    a.commands += b.commands;
    a.loop_turns += b.loop_turns;
    a.sq_full_submits += b.sq_full_submits;
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
    /// Starts a node (see the [module docs](self)). Every failure names what failed: the
    /// missing io_uring feature, the data directory or file, the listen address.
    pub fn start(opts: NodeOptions) -> Result<Node, NodeError> {
        let epoch = Instant::now();
        let network = opts.network;
        if opts.proto.network != network {
            return Err(NodeError::Config(format!(
                "protocol settings are for the {} network, the node is on {}",
                opts.proto.network.name(),
                network.name()
            )));
        }
        if opts.batch_max == 0 {
            return Err(NodeError::Config("batch_max must be at least 1".into()));
        }
        let shard_count = opts.shards.unwrap_or_else(default_shard_count).max(1);
        if shard_count > usize::from(u16::MAX) {
            return Err(NodeError::Config("too many shards".into()));
        }
        // First, so that a limit too small is reported before anything is opened. Here rather
        // than in the CLI: every embedder (bench, tests) gets caps that fit its limit.
        // The per-shard total is both caps (inbound and outbound); a lowered total is split
        // between them in their configured proportion.
        let open_files = fds::apply_open_file_limit(
            shard_count,
            opts.io.max_connections + opts.io.max_outbound,
        )?;
        // A file-size limit (or a full quota) must fail the peer-store write, which the crawler
        // reports while the node keeps peering, not kill the whole process with SIGXFSZ.
        if let Err(e) = crate::io::ignore_file_size_signal() {
            tracing::warn!(error = %e, "cannot ignore SIGXFSZ; a file-size limit would stop the node");
        }
        io::probe().map_err(NodeError::IoUnavailable)?;
        ensure_data_dir(&opts.data_path)?;
        let store = PeerStore::open(&opts.data_path)?;
        let mut master =
            ChaCha20Rng::try_from_os_rng().map_err(|e| NodeError::Random(e.to_string()))?;
        let key = load_or_create_node_key(&opts.data_path, &mut master)?;
        let identity = Arc::new(NodeIdentity::from_secret(&key.secret));
        if key.created {
            tracing::info!(path = %key.path.display(), "created a new node ID key");
        }
        let weights = match &opts.weights_file {
            Some(path) => RepWeights::load(path).map_err(|source| NodeError::Weights {
                path: path.clone(),
                source,
            })?,
            None => RepWeights::defaults(network),
        };
        let mut config = opts.proto.clone();
        if let Some(m) = opts.online_weight_minimum {
            config.online_weight_minimum = m;
        }
        let channels = Arc::new(ChannelMap::new(ChannelLimits {
            max_peers_per_ip: config.max_peers_per_ip as usize,
            max_peers_per_subnetwork: config.max_peers_per_subnetwork as usize,
            max_channels: config.max_channels,
            max_outbound: config.max_outbound_channels,
            max_attempts: ChannelLimits::for_network(network).max_attempts,
        }));
        let filter = Arc::new(DuplicateFilter::new(
            opts.filter_slots,
            master.random(),
            DEFAULT_CUTOFF_MS,
        ));
        let exclusion = Arc::new(parking_lot::Mutex::new(PeerExclusion::new()));
        // The rep crawler publishes its query candidates here; shards pick a new channel's
        // first query from it.
        let query_board = Arc::new(QueryBoard::new(network));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

        // Shards. Every shard's listener is bound first, so the bound port (port 0 picks one)
        // is known before any shard starts and the protocol settings are built once with it.
        let (ev_tx, ev_rx) = bounded(opts.event_queue.max(1));
        let metrics: Vec<Arc<Mutex<ShardMetrics>>> = (0..shard_count)
            .map(|i| {
                Arc::new(Mutex::new(ShardMetrics {
                    shard: i,
                    ..ShardMetrics::default()
                }))
            })
            .collect();
        let seeds: Vec<[u8; 32]> = (0..shard_count).map(|_| master.random()).collect();
        let shard_tids = Arc::new(Mutex::new(vec![0u32; shard_count]));
        let mut io_cfg = opts.io.clone();
        (io_cfg.max_connections, io_cfg.max_outbound) = fds::scale_caps(
            open_files.per_shard,
            opts.io.max_connections,
            opts.io.max_outbound,
        );
        io_cfg.cores = if !opts.io.cores.is_empty() {
            opts.io.cores.clone()
        } else if opts.pin_cores {
            (0..shard_count.min(cores)).collect()
        } else {
            Vec::new()
        };
        let shards_error = |source: IoError| NodeError::Shards {
            addr: opts.listen,
            source,
        };
        io_cfg.validate().map_err(shards_error)?;
        let listeners = io::Listener::bind_group(opts.listen, io_cfg.backlog, shard_count)
            .map_err(shards_error)?;
        let local_addr = listeners
            .first()
            .map_or(opts.listen, io::Listener::local_addr);
        config.listen_port = local_addr.port();
        let shared = ShardShared {
            channels: Arc::clone(&channels),
            filter: Arc::clone(&filter),
            config: Arc::new(config.clone()),
            identity: Arc::clone(&identity),
            exclusion: Arc::clone(&exclusion),
            query_board: Arc::clone(&query_board),
        };
        let factory = {
            let metrics = metrics.clone();
            let batch_delay = Duration::from_micros(opts.batch_delay_us);
            let (batch_max, key_cache) = (opts.batch_max, opts.key_cache);
            let ev_tx = ev_tx.clone();
            let shard_tids = Arc::clone(&shard_tids);
            move |info: &io::ShardInfo| {
                // The factory runs on the shard's own thread.
                if let Some(t) = shard_tids.lock().get_mut(info.index) {
                    *t = crate::bench::current_thread_id().unwrap_or(0);
                }
                let setup = ShardSetup {
                    shared: shared.clone(),
                    epoch,
                    events: ev_tx.clone(),
                    batch_max,
                    batch_delay,
                    key_cache,
                };
                let seed = seeds.get(info.index).copied().unwrap_or([7; 32]);
                NodeShard::new(
                    info.index,
                    &setup,
                    ChaCha20Rng::from_seed(seed),
                    Arc::clone(&metrics[info.index.min(metrics.len() - 1)]),
                )
            }
        };
        let shards = io::spawn_shards_on(&io_cfg, listeners, factory).map_err(shards_error)?;
        for h in &shards {
            let (channels, events, index) = (Arc::clone(&channels), ev_tx.clone(), h.index());
            h.on_exit(move |exit| shard_exited(index, exit, &channels, &events));
        }
        drop(ev_tx);

        // The crawler.
        let stored: Vec<SocketAddrV6> = store
            .load(wall_ms())
            .into_iter()
            .map(|(ep, _)| ep)
            .collect();
        let stored_count = stored.len();
        let mut setup = CrawlerSetup::new(
            config.clone(),
            Arc::clone(&channels),
            Arc::clone(&exclusion),
            weights,
            shard_count as u16,
        );
        setup.stored_peers = stored;
        setup.online_samples = store.samples();
        setup.query_board = query_board;
        {
            let identity = Arc::clone(&identity);
            setup.telemetry = Some(Box::new(move |now_ms: u64, peers: usize| {
                telemetry_ack_bytes(
                    &identity,
                    network,
                    u32::try_from(peers).unwrap_or(u32::MAX),
                    now_ms / 1000,
                    wall_ms(),
                )
            }));
        }
        let core = CrawlerCore::new(setup);
        let status = Arc::new(RwLock::new(CrawlerStatus::of(&core, 0)));
        let (ctl_tx, ctl_rx) = unbounded();
        let crawler_life = Arc::new(CrawlerLife::default());
        let preconfigured = opts
            .preconfigured_peers
            .clone()
            .unwrap_or_else(|| default_preconfigured_peers(network));
        let thread = CrawlerThread {
            core,
            events: ev_rx,
            control: ctl_rx,
            control_tx: ctl_tx.clone(),
            shards: shards.clone(),
            channels: Arc::clone(&channels),
            store,
            status: Arc::clone(&status),
            epoch,
            rng: ChaCha20Rng::from_seed(master.random()),
            preconfigured: Arc::new(preconfigured),
            default_port: network.default_port(),
            max_samples: config.online_weight_max_samples,
            resolving: Arc::new(AtomicBool::new(false)),
            out: Vec::new(),
            stats: CrawlerThreadStats::default(),
            store_failed: false,
            heartbeat: Arc::clone(&crawler_life.heartbeat),
        };
        let pin = opts
            .crawler_core
            .or_else(|| opts.pin_cores.then(|| cores.saturating_sub(1)));
        let life = Arc::clone(&crawler_life);
        let spawned = std::thread::Builder::new()
            .name("crawler".into())
            .spawn(move || {
                if let Some(core) = pin
                    && let Err(e) = io::pin_current_thread(core)
                {
                    tracing::warn!(core, error = %e, "cannot pin the crawler thread");
                }
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| thread.run()));
                if let Err(payload) = run {
                    let message = io::panic_message(payload.as_ref());
                    tracing::error!(
                        thread = "crawler",
                        panic = %message,
                        "thread crawler panicked: {message}; no more keepalives, reachout or peer-store writes"
                    );
                    *life.panic.lock() = Some(message);
                }
                life.finished.store(true, Ordering::Release);
            });
        let stop_shards = |shards: &[ShardHandle<ShardCommand>]| {
            for s in shards {
                s.stop();
            }
            for s in shards {
                let _ = s.join();
            }
        };
        let crawler = match spawned {
            Ok(h) => h,
            Err(source) => {
                stop_shards(&shards);
                return Err(NodeError::Thread {
                    what: "crawler",
                    source,
                });
            }
        };
        let health = Arc::new(Health::new(
            &shards,
            Arc::clone(&crawler_life),
            opts.stall_warning,
        ));
        let watchdog = match Watchdog::spawn(Arc::clone(&health)) {
            Ok(w) => w,
            Err(source) => {
                health.stopping.store(true, Ordering::Release);
                let (tx, rx) = bounded(1);
                if ctl_tx.send(Control::Stop(tx)).is_ok() {
                    let _ = recv_within(&rx, STOP_CRAWLER_WAIT);
                }
                stop_shards(&shards);
                return Err(NodeError::Thread {
                    what: "watchdog",
                    source,
                });
            }
        };
        tracing::info!(
            network = network.name(),
            node_id = identity.node_id_text(),
            listen = %local_addr,
            shards = shard_count,
            data_path = %opts.data_path.display(),
            stored_peers = stored_count,
            "nanopeer node started"
        );
        Ok(Node {
            identity,
            network,
            started: epoch,
            config,
            local_addr,
            data_path: opts.data_path,
            channels,
            shards,
            metrics,
            shard_tids,
            status,
            control: ctl_tx,
            crawler: Some(crawler),
            crawler_life,
            health,
            watchdog,
            open_files,
            stopped: false,
        })
    }

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
                endpoint: to_socket_addr(c.remote()),
                node_id: *c.node_id(),
                protocol_version: c.protocol_version(),
                peering_endpoint: to_socket_addr(c.peering_endpoint()),
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
            .send(Control::MergePeer(canonical(addr), tx))
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
        let (mut sent, mut dropped, mut lifecycle_dropped) = (0, 0, 0);
        let shards: Vec<ShardMetrics> = self.metrics.iter().map(|m| m.lock().clone()).collect();
        for m in &shards {
            add_shard_stats(&mut proto, &m.proto);
            batch.add(&m.batch);
            sent += m.events_sent;
            dropped += m.events_dropped;
            lifecycle_dropped += m.lifecycle_dropped;
        }
        for h in &self.shards {
            add_counters(&mut io, &h.counters());
        }
        NodeStats {
            proto,
            io,
            batch,
            events_sent: sent,
            events_dropped: dropped,
            lifecycle_dropped,
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

/// What a node does when one of its shard threads ends: a shard that was not asked to stop
/// (a panic, a failed ring) leaves its channels in the map, so they are removed here (and the
/// crawler told), on the dying thread, right after its sockets were closed.
fn shard_exited(
    index: usize,
    exit: &ShardExit,
    channels: &ChannelMap,
    events: &crossbeam::channel::Sender<CrawlerEvent>,
) {
    let thread = format!("shard-{index}");
    match exit {
        ShardExit::Stopped => return,
        ShardExit::Failed(error) => {
            tracing::error!(thread = %thread, %error, "thread {thread} failed: {error}");
        }
        ShardExit::Panicked(message) => {
            tracing::error!(
                thread = %thread,
                panic = %message,
                "thread {thread} panicked: {message}; its connections are closed"
            );
        }
    }
    let gone = channels.remove_shard(u16::try_from(index).unwrap_or(u16::MAX));
    let removed = gone.len();
    for ch in gone {
        // Best effort: the crawler also re-synchronises with the map at each cleanup.
        let _ = events.try_send(CrawlerEvent::ChannelDown(ch));
    }
    if removed > 0 {
        tracing::warn!(
            thread = %thread,
            removed,
            "removed the {removed} channel(s) of the dead {thread} from the channel map"
        );
    }
}

/// Starts a node, waits for SIGTERM or SIGINT, and stops it; a node thread that dies stops
/// it too, with [`NodeError::ThreadDied`]. A second signal while stopping exits the process
/// at once.
pub fn run_until_signal(opts: NodeOptions) -> Result<(), NodeError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let term = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        // A second signal (flag already set) terminates the process.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&term))
            .map_err(NodeError::Signal)?;
        signal_hook::flag::register(sig, Arc::clone(&term)).map_err(NodeError::Signal)?;
    }
    let node = Node::start(opts)?;
    while !term.load(Ordering::Relaxed) {
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
