//! What a node is started with: [`NodeOptions`] and the defaults that depend on the network
//! (listen port, preconfigured peers, protocol settings) or on the machine (shard count).

use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::io::ShardConfig;
use crate::proto::config::ProtoConfig;
use crate::proto::filter::DEFAULT_SLOTS;
use crate::types::Network;

use super::DEFAULT_STALL_WARNING;

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

/// Everything [`Node::start`](super::Node::start) needs. [`NodeOptions::new`] gives the
/// defaults of a network.
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
