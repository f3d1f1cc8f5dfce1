//! Node configuration: a TOML file, `--config key=value` overrides, then command-line flags.
//!
//! Every key that maps to a protocol value is optional: unset means "the network's default",
//! taken from [`ProtoConfig::for_network`] (one source of truth). Keys for the I/O runtime default
//! to [`ShardConfig::default`]. [`default_toml`] prints every key with its default and a comment;
//! keys whose default depends on the network are printed commented out.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::io::ShardConfig;
use crate::proto::config::ProtoConfig;
use crate::types::Network;

/// What failed while loading or checking a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The TOML text does not parse.
    #[error("config {source_name} is not valid TOML: {message}")]
    Syntax {
        /// The file name, or `override` for a `key=value` argument.
        source_name: String,
        /// The parser's message.
        message: String,
    },
    /// A `--config` override is not of the form `section.key=value`.
    #[error("config override {0:?} is not of the form section.key=value")]
    OverrideForm(String),
    /// A key that the configuration does not have.
    #[error("unknown config key `{0}`")]
    UnknownKey(String),
    /// A key whose value has the wrong type or is out of range.
    #[error("config key `{key}`: {message}")]
    BadValue {
        /// The dotted key.
        key: String,
        /// What was expected.
        message: String,
    },
    /// More than one configuration file was given.
    #[error("only one config file may be given ({0} and {1})")]
    TwoFiles(String, String),
    /// An RPC or metrics address that is not loopback, without `allow_remote = true`.
    #[error(
        "config key `{key}`: {addr} is not a loopback address; set `{section}.allow_remote = true` to allow it"
    )]
    RemoteBind {
        /// The dotted key.
        key: String,
        /// The section (`rpc` or `metrics`).
        section: String,
        /// The address.
        addr: SocketAddr,
    },
}

/// The `[node]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// The network.
    #[serde(with = "network_serde")]
    pub network: Network,
    /// Data directory; unset: `$HOME/.nanopeer/<network>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_path: Option<PathBuf>,
    /// Peering listen address; unset: `[::]:<network port>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Number of shards; 0: one per available core, less one for the crawler (at least 1).
    pub shards: usize,
    /// Cores to pin shards to (shard i on `shard_cores[i % len]`); empty: no pinning.
    pub shard_cores: Vec<usize>,
    /// Core to pin the crawler thread to; unset: not pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crawler_core: Option<usize>,
    /// Preconfigured peers (`HOST:PORT`); unset: the network's list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<String>>,
    /// Accept private-range addresses as peers; unset: the network's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_local_peers: Option<bool>,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            network: Network::Live,
            data_path: None,
            listen: None,
            shards: 0,
            shard_cores: Vec::new(),
            crawler_core: None,
            peers: None,
            allow_local_peers: None,
        }
    }
}

/// The `[limits]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Channels + attempts per IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_peers_per_ip: Option<u32>,
    /// Channels + attempts per subnetwork.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_peers_per_subnetwork: Option<u32>,
    /// Outstanding syn cookies per IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cookies_per_ip: Option<u32>,
    /// Outstanding syn cookies in all, per shard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cookies: Option<usize>,
    /// Most inbound channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_channels: Option<usize>,
    /// Most outbound channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_outbound_channels: Option<usize>,
    /// Invalid signatures a channel may send in a burst (one more is forgiven per second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_invalid_signatures: Option<u32>,
    /// Signature checks a channel may cause per second (bursts of twice as many).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_per_sec: Option<u32>,
    /// Most inbound connections per shard (handshaking and realtime).
    pub max_connections_per_shard: usize,
    /// Most outbound connections per shard (connecting, handshaking and realtime).
    pub max_outbound_per_shard: usize,
    /// Send queue cap per connection, in messages.
    pub send_queue_messages: usize,
    /// Send queue cap per connection, in bytes.
    pub send_queue_bytes: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let io = ShardConfig::default();
        LimitsSection {
            max_peers_per_ip: None,
            max_peers_per_subnetwork: None,
            max_cookies_per_ip: None,
            max_cookies: None,
            max_channels: None,
            max_outbound_channels: None,
            max_invalid_signatures: None,
            verify_per_sec: None,
            max_connections_per_shard: io.max_connections,
            max_outbound_per_shard: io.max_outbound,
            send_queue_messages: io.send_queue_messages,
            send_queue_bytes: io.send_queue_bytes,
        }
    }
}

/// The `[timing]` section; every value in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimingSection {
    /// Keepalive period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_period_ms: Option<u64>,
    /// Socket idle timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Handshake deadline after connecting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_timeout_ms: Option<u64>,
    /// Outbound connect timeout.
    pub connect_timeout_ms: u64,
    /// Cleanup (purge) period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_period_ms: Option<u64>,
    /// Channels silent (nothing sent) for longer are purged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_cutoff_ms: Option<u64>,
    /// Syn cookie lifetime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syn_cookie_cutoff_ms: Option<u64>,
    /// Pacing between reachout attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge_period_ms: Option<u64>,
    /// A reachout to one endpoint is not repeated within this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reachout_cutoff_ms: Option<u64>,
    /// Peer store flush interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_store_interval_ms: Option<u64>,
    /// Telemetry broadcast period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_period_ms: Option<u64>,
    /// Telemetry entries are stale after this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_cache_cutoff_ms: Option<u64>,
}

impl Default for TimingSection {
    fn default() -> Self {
        TimingSection {
            keepalive_period_ms: None,
            idle_timeout_ms: None,
            handshake_timeout_ms: None,
            connect_timeout_ms: ShardConfig::default().connect_timeout.as_millis() as u64,
            cleanup_period_ms: None,
            cleanup_cutoff_ms: None,
            syn_cookie_cutoff_ms: None,
            merge_period_ms: None,
            reachout_cutoff_ms: None,
            peer_store_interval_ms: None,
            telemetry_period_ms: None,
            telemetry_cache_cutoff_ms: None,
        }
    }
}

/// The `[verify]` section: batch signature verification on each shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifySection {
    /// A batch is verified once it holds this many signatures.
    pub batch_max: usize,
    /// …or once its oldest entry waited this long (µs).
    pub batch_delay_us: u64,
}

impl Default for VerifySection {
    fn default() -> Self {
        VerifySection {
            batch_max: 64,
            batch_delay_us: 200,
        }
    }
}

/// The `[io]` section: the io_uring runtime of each shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IoSection {
    /// Submission queue entries per ring.
    pub ring_entries: u32,
    /// Receive buffers in the provided buffer ring (a power of two ≤ 32768).
    pub recv_buffers: u16,
    /// Size of each receive buffer, bytes.
    pub recv_buffer_size: u32,
    /// `listen(2)` backlog.
    pub backlog: i32,
    /// Capacity of each shard's command queue.
    pub command_queue: usize,
    /// Dialed sockets hold the ACK of the SYN-ACK for the first data segment.
    pub delayed_connect_ack: bool,
}

impl Default for IoSection {
    fn default() -> Self {
        let io = ShardConfig::default();
        IoSection {
            ring_entries: io.ring_entries,
            recv_buffers: io.recv_buffers,
            recv_buffer_size: io.recv_buffer_size,
            backlog: io.backlog,
            command_queue: io.command_queue,
            delayed_connect_ack: io.delayed_connect_ack,
        }
    }
}

/// The `[rep_crawler]` section: representative crawler and online weight.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepCrawlerSection {
    /// Crawl interval once known rep weight is sufficient.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normal_interval_ms: Option<u64>,
    /// Crawl interval while known rep weight is insufficient.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_interval_ms: Option<u64>,
    /// A query expires after this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_timeout_ms: Option<u64>,
    /// A new channel's first query goes out with the shard's keepalive_self.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_on_up: Option<bool>,
    /// Most channels queried per round.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_targets: Option<usize>,
    /// Floor of the online weight, raw (a decimal string: TOML integers stop at 2^63).
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_u128_string")]
    pub online_weight_minimum: Option<u128>,
    /// Online-weight samples kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_weight_max_samples: Option<usize>,
    /// Period between online-weight samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_weight_sample_ms: Option<u64>,
    /// File of representative weights (account → raw); unset: the network's defaults (live:
    /// the built-in snapshot; beta: none; dev and test: genesis holds all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights_file: Option<PathBuf>,
}

/// The `[rpc]` and `[metrics]` sections: an HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// `ADDR:PORT`, or a bare `PORT` (bound on 127.0.0.1); unset: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Allow a non-loopback address.
    pub allow_remote: bool,
}

/// The whole node configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// `[node]`.
    pub node: NodeSection,
    /// `[limits]`.
    pub limits: LimitsSection,
    /// `[timing]`.
    pub timing: TimingSection,
    /// `[verify]`.
    pub verify: VerifySection,
    /// `[io]`.
    pub io: IoSection,
    /// `[rep_crawler]`.
    pub rep_crawler: RepCrawlerSection,
    /// `[rpc]`.
    pub rpc: ServerSection,
    /// `[metrics]`.
    pub metrics: ServerSection,
}

/// One documented key.
struct KeyDoc {
    section: &'static str,
    key: &'static str,
    doc: &'static str,
    /// For keys without a default: an example value (TOML) printed commented out.
    example: Option<&'static str>,
}

const fn k(section: &'static str, key: &'static str, doc: &'static str) -> KeyDoc {
    KeyDoc {
        section,
        key,
        doc,
        example: None,
    }
}

const fn kx(
    section: &'static str,
    key: &'static str,
    doc: &'static str,
    example: &'static str,
) -> KeyDoc {
    KeyDoc {
        section,
        key,
        doc,
        example: Some(example),
    }
}

/// The section names, in print order.
const SECTIONS: [&str; 8] = [
    "node",
    "limits",
    "timing",
    "verify",
    "io",
    "rep_crawler",
    "rpc",
    "metrics",
];

/// Every key, in print order.
const KEYS: &[KeyDoc] = &[
    k("node", "network", "Network: live, beta, dev or test."),
    kx(
        "node",
        "data_path",
        "Data directory (peer store, node ID key). Unset: $HOME/.nanopeer/<network>.",
        "\"/var/lib/nanopeer\"",
    ),
    k(
        "node",
        "listen",
        "Peering listen address (every shard binds it with SO_REUSEPORT).",
    ),
    k(
        "node",
        "shards",
        "Number of shards (one thread and ring each). 0: one per core, less one for the crawler.",
    ),
    k(
        "node",
        "shard_cores",
        "Cores to pin shards to (shard i on shard_cores[i % len]). Empty: no pinning.",
    ),
    kx(
        "node",
        "crawler_core",
        "Core to pin the crawler thread to. Unset: not pinned.",
        "0",
    ),
    k(
        "node",
        "peers",
        "Preconfigured peers (HOST:PORT), resolved and dialed when rep weight is insufficient.",
    ),
    k(
        "node",
        "allow_local_peers",
        "Accept private-range addresses (10/8, 192.168/16, fc00::/7 …) as peers.",
    ),
    k(
        "limits",
        "max_peers_per_ip",
        "Channels + connection attempts per IP (IPv4 address or IPv6 /48).",
    ),
    k(
        "limits",
        "max_peers_per_subnetwork",
        "Channels + connection attempts per subnetwork (IPv4 /24, IPv6 /32).",
    ),
    k(
        "limits",
        "max_cookies_per_ip",
        "Outstanding handshake syn cookies per IP.",
    ),
    k(
        "limits",
        "max_cookies",
        "Outstanding handshake syn cookies in all, per shard.",
    ),
    k(
        "limits",
        "max_channels",
        "Most inbound channels (peers that dialed us).",
    ),
    k(
        "limits",
        "max_outbound_channels",
        "Most outbound channels (peers we dialed); inbound peers never take these places.",
    ),
    k(
        "limits",
        "max_invalid_signatures",
        "Invalid signatures (votes, blocks, telemetry) a channel may send in a burst, one more \
         forgiven per second; past it the peer is cut and its IP excluded.",
    ),
    k(
        "limits",
        "verify_per_sec",
        "Signature checks a channel may cause per second (bursts of twice as many); past it \
         the peer is cut and its IP excluded.",
    ),
    k(
        "limits",
        "max_connections_per_shard",
        "Most inbound connections per shard, handshaking and realtime; when full, a new one \
         evicts an unverified one.",
    ),
    k(
        "limits",
        "max_outbound_per_shard",
        "Most outbound connections per shard (slots inbound connections cannot take).",
    ),
    k(
        "limits",
        "send_queue_messages",
        "Send queue cap per connection, in messages.",
    ),
    k(
        "limits",
        "send_queue_bytes",
        "Send queue cap per connection, in unsent bytes.",
    ),
    k("timing", "keepalive_period_ms", "Keepalive period (ms)."),
    k(
        "timing",
        "idle_timeout_ms",
        "Socket idle timeout, and the header wait before the handshake (ms).",
    ),
    k(
        "timing",
        "handshake_timeout_ms",
        "Time allowed for a handshake after connecting (ms).",
    ),
    k(
        "timing",
        "connect_timeout_ms",
        "Outbound connect timeout (ms).",
    ),
    k(
        "timing",
        "cleanup_period_ms",
        "How often silent channels are purged (ms).",
    ),
    k(
        "timing",
        "cleanup_cutoff_ms",
        "Channels with nothing sent for this long are purged (ms).",
    ),
    k(
        "timing",
        "syn_cookie_cutoff_ms",
        "Syn cookie lifetime (ms).",
    ),
    k(
        "timing",
        "merge_period_ms",
        "Pacing between reachout attempts (ms).",
    ),
    k(
        "timing",
        "reachout_cutoff_ms",
        "A reachout to the same endpoint is not repeated within this time (ms).",
    ),
    k(
        "timing",
        "peer_store_interval_ms",
        "Peer store flush interval (ms).",
    ),
    k(
        "timing",
        "telemetry_period_ms",
        "Telemetry broadcast period (ms).",
    ),
    k(
        "timing",
        "telemetry_cache_cutoff_ms",
        "Received telemetry is stale after this (ms).",
    ),
    k(
        "verify",
        "batch_max",
        "Signatures per verification batch: a batch is verified once this full.",
    ),
    k(
        "verify",
        "batch_delay_us",
        "…or once its oldest signature waited this long (µs).",
    ),
    k(
        "io",
        "ring_entries",
        "io_uring submission queue entries per shard.",
    ),
    k(
        "io",
        "recv_buffers",
        "Receive buffers in each shard's provided buffer ring (a power of two ≤ 32768).",
    ),
    k(
        "io",
        "recv_buffer_size",
        "Size of each receive buffer (bytes).",
    ),
    k("io", "backlog", "listen(2) backlog."),
    k(
        "io",
        "command_queue",
        "Capacity of each shard's cross-thread command queue.",
    ),
    k(
        "io",
        "delayed_connect_ack",
        "Dialed sockets send the ACK of the SYN-ACK with the first data (TCP_QUICKACK off).",
    ),
    k(
        "rep_crawler",
        "normal_interval_ms",
        "Crawl interval once known representative weight is sufficient (ms).",
    ),
    k(
        "rep_crawler",
        "warmup_interval_ms",
        "Crawl interval while known representative weight is insufficient (ms).",
    ),
    k(
        "rep_crawler",
        "query_timeout_ms",
        "A representative query expires after this (ms).",
    ),
    k(
        "rep_crawler",
        "query_on_up",
        "A new channel's first representative query is sent by its shard, in the same segment as keepalive_self (false: the crawler sends it a moment later).",
    ),
    k(
        "rep_crawler",
        "max_targets",
        "Most channels queried per crawl round.",
    ),
    k(
        "rep_crawler",
        "online_weight_minimum",
        "Floor of the online weight, in raw, as a decimal string.",
    ),
    k(
        "rep_crawler",
        "online_weight_max_samples",
        "Online-weight samples kept.",
    ),
    k(
        "rep_crawler",
        "online_weight_sample_ms",
        "Period between online-weight samples (ms).",
    ),
    kx(
        "rep_crawler",
        "weights_file",
        "Representative weights (account, raw weight per line). Unset: built-in snapshot (live).",
        "\"rep_weights.txt\"",
    ),
    kx(
        "rpc",
        "address",
        "JSON RPC over HTTP: ADDR:PORT, or PORT for 127.0.0.1. Unset: off.",
        "\"127.0.0.1:7076\"",
    ),
    k(
        "rpc",
        "allow_remote",
        "Allow a non-loopback RPC address (the RPC has no authentication).",
    ),
    kx(
        "metrics",
        "address",
        "Prometheus text at /metrics: ADDR:PORT, or PORT for 127.0.0.1. Unset: off.",
        "\"127.0.0.1:9100\"",
    ),
    k(
        "metrics",
        "allow_remote",
        "Allow a non-loopback metrics address.",
    ),
];

/// The preconfigured peers of a network (§7.6), dialed on the default port.
pub fn preconfigured_peers(network: Network) -> Vec<String> {
    let host = match network {
        Network::Live => "peering.nano.org",
        Network::Beta => "peering-beta.nano.org",
        Network::Test => "peering-test.nano.org",
        Network::Dev => return Vec::new(),
    };
    vec![format!("{host}:{}", network.default_port())]
}

impl NodeConfig {
    /// The defaults on `network`: every network-dependent key unset.
    pub fn for_network(network: Network) -> NodeConfig {
        let mut c = NodeConfig::default();
        c.node.network = network;
        c
    }

    /// Parses TOML text (checking keys and types), without overrides.
    pub fn from_toml_str(text: &str) -> Result<NodeConfig, ConfigError> {
        let table = parse_table(text, "text")?;
        from_table(table)
    }

    /// Loads `file` (if any), then applies `overrides` (`section.key=value`, in order), checks
    /// keys, types and ranges.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<NodeConfig, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                parse_table(&text, &path.display().to_string())?
            }
            None => toml::Table::new(),
        };
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        from_table(table)
    }

    /// Checks ranges and addresses that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::BadValue {
            key: key.to_string(),
            message,
        };
        let max = crate::crypto::MAX_BATCH;
        if self.verify.batch_max == 0 || self.verify.batch_max > max {
            return Err(bad(
                "verify.batch_max",
                format!("expected an integer in 1..={max}"),
            ));
        }
        if self.node.shards > 1024 {
            return Err(bad("node.shards", "expected an integer in 0..=1024".into()));
        }
        if let Some(peers) = &self.node.peers {
            for p in peers {
                split_host_port(p).ok_or_else(|| {
                    bad(
                        "node.peers",
                        format!("{p:?} is not HOST:PORT with a port in 1..=65535"),
                    )
                })?;
            }
        }
        let io = &self.io;
        if !io.recv_buffers.is_power_of_two() || io.recv_buffers > 32768 {
            return Err(bad(
                "io.recv_buffers",
                "expected a power of two ≤ 32768".into(),
            ));
        }
        if io.recv_buffer_size == 0 || io.recv_buffer_size > (1 << 24) {
            return Err(bad(
                "io.recv_buffer_size",
                "expected an integer in 1..=16777216".into(),
            ));
        }
        if !(8..=32768).contains(&io.ring_entries) {
            return Err(bad(
                "io.ring_entries",
                "expected an integer in 8..=32768".into(),
            ));
        }
        if io.backlog <= 0 {
            return Err(bad("io.backlog", "expected a positive integer".into()));
        }
        if io.command_queue == 0 {
            return Err(bad(
                "io.command_queue",
                "expected a positive integer".into(),
            ));
        }
        let l = &self.limits;
        for (key, v) in [
            (
                "limits.max_connections_per_shard",
                l.max_connections_per_shard,
            ),
            ("limits.max_outbound_per_shard", l.max_outbound_per_shard),
            ("limits.send_queue_messages", l.send_queue_messages),
            ("limits.send_queue_bytes", l.send_queue_bytes),
        ] {
            if v == 0 {
                return Err(bad(key, "expected a positive integer".into()));
            }
        }
        if l.max_connections_per_shard > (1 << 20) {
            return Err(bad(
                "limits.max_connections_per_shard",
                "expected an integer in 1..=1048576".into(),
            ));
        }
        if l.max_outbound_per_shard > (1 << 20) {
            return Err(bad(
                "limits.max_outbound_per_shard",
                "expected an integer in 1..=1048576".into(),
            ));
        }
        self.rpc_addr()?;
        self.metrics_addr()?;
        Ok(())
    }

    /// The protocol settings: the network's defaults with every set key applied.
    pub fn proto_config(&self) -> ProtoConfig {
        let mut p = ProtoConfig::for_network(self.node.network);
        p.listen_port = self.listen_addr().port();
        let l = &self.limits;
        let t = &self.timing;
        let r = &self.rep_crawler;
        macro_rules! set {
            ($($src:expr => $dst:ident),* $(,)?) => { $( if let Some(v) = $src { p.$dst = v; } )* };
        }
        set! {
            self.node.allow_local_peers => allow_local_peers,
            l.max_peers_per_ip => max_peers_per_ip,
            l.max_peers_per_subnetwork => max_peers_per_subnetwork,
            l.max_cookies_per_ip => max_cookies_per_ip,
            l.max_cookies => max_cookies,
            l.max_channels => max_channels,
            l.max_outbound_channels => max_outbound_channels,
            l.max_invalid_signatures => max_invalid_signatures,
            l.verify_per_sec => verify_per_sec,
            t.keepalive_period_ms => keepalive_period_ms,
            t.idle_timeout_ms => idle_timeout_ms,
            t.handshake_timeout_ms => handshake_timeout_ms,
            t.cleanup_period_ms => cleanup_period_ms,
            t.cleanup_cutoff_ms => cleanup_cutoff_ms,
            t.syn_cookie_cutoff_ms => syn_cookie_cutoff_ms,
            t.merge_period_ms => merge_period_ms,
            t.reachout_cutoff_ms => reachout_cutoff_ms,
            t.peer_store_interval_ms => peer_store_interval_ms,
            t.telemetry_period_ms => telemetry_period_ms,
            t.telemetry_cache_cutoff_ms => telemetry_cache_cutoff_ms,
            r.normal_interval_ms => rep_crawler_normal_ms,
            r.warmup_interval_ms => rep_crawler_warmup_ms,
            r.query_timeout_ms => rep_query_timeout_ms,
            r.query_on_up => query_on_up,
            r.max_targets => rep_crawler_max_targets,
            r.online_weight_minimum => online_weight_minimum,
            r.online_weight_max_samples => online_weight_max_samples,
            r.online_weight_sample_ms => online_weight_sample_ms,
        }
        p
    }

    /// The shard runtime settings (listen address, pinning, rings, buffers, queues).
    pub fn shard_config(&self) -> ShardConfig {
        let d = ShardConfig::default();
        ShardConfig {
            listen: Some(self.listen_addr()),
            backlog: self.io.backlog,
            cores: self.node.shard_cores.clone(),
            ring_entries: self.io.ring_entries,
            recv_buffers: self.io.recv_buffers,
            recv_buffer_size: self.io.recv_buffer_size,
            max_connections: self.limits.max_connections_per_shard,
            max_outbound: self.limits.max_outbound_per_shard,
            send_queue_messages: self.limits.send_queue_messages,
            send_queue_bytes: self.limits.send_queue_bytes,
            connect_timeout: Duration::from_millis(self.timing.connect_timeout_ms),
            command_queue: self.io.command_queue,
            delayed_connect_ack: self.io.delayed_connect_ack,
            ..d
        }
    }

    /// The peering listen address: `node.listen`, or `[::]:<network port>`.
    pub fn listen_addr(&self) -> SocketAddr {
        self.node.listen.unwrap_or_else(|| {
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                self.node.network.default_port(),
            )
        })
    }

    /// The data directory: `node.data_path`, or `$HOME/.nanopeer/<network>`
    /// (`./.nanopeer/<network>` without `HOME`).
    pub fn data_path(&self) -> PathBuf {
        if let Some(p) = &self.node.data_path {
            return p.clone();
        }
        let base = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        base.join(".nanopeer").join(self.node.network.name())
    }

    /// The preconfigured peers (`HOST:PORT`): `node.peers`, or the network's list.
    pub fn peers(&self) -> Vec<String> {
        self.node
            .peers
            .clone()
            .unwrap_or_else(|| preconfigured_peers(self.node.network))
    }

    /// The number of shards to run: `node.shards`, or (0) the available cores less one, at least 1.
    pub fn shard_count(&self) -> usize {
        if self.node.shards > 0 {
            return self.node.shards;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.saturating_sub(1).max(1)
    }

    /// Verification batch flush delay.
    pub fn batch_delay(&self) -> Duration {
        Duration::from_micros(self.verify.batch_delay_us)
    }

    /// The RPC listen address, if enabled.
    pub fn rpc_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        server_addr(&self.rpc, "rpc")
    }

    /// The metrics listen address, if enabled.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        server_addr(&self.metrics, "metrics")
    }

    /// This configuration with every network-dependent key set to its value on this network.
    pub fn resolved(&self) -> NodeConfig {
        let p = self.proto_config();
        let mut c = self.clone();
        c.node.listen = Some(self.listen_addr());
        c.node.peers = Some(self.peers());
        c.node.allow_local_peers = Some(p.allow_local_peers);
        let l = &mut c.limits;
        l.max_peers_per_ip = Some(p.max_peers_per_ip);
        l.max_peers_per_subnetwork = Some(p.max_peers_per_subnetwork);
        l.max_cookies_per_ip = Some(p.max_cookies_per_ip);
        l.max_cookies = Some(p.max_cookies);
        l.max_channels = Some(p.max_channels);
        l.max_outbound_channels = Some(p.max_outbound_channels);
        l.max_invalid_signatures = Some(p.max_invalid_signatures);
        l.verify_per_sec = Some(p.verify_per_sec);
        let t = &mut c.timing;
        t.keepalive_period_ms = Some(p.keepalive_period_ms);
        t.idle_timeout_ms = Some(p.idle_timeout_ms);
        t.handshake_timeout_ms = Some(p.handshake_timeout_ms);
        t.cleanup_period_ms = Some(p.cleanup_period_ms);
        t.cleanup_cutoff_ms = Some(p.cleanup_cutoff_ms);
        t.syn_cookie_cutoff_ms = Some(p.syn_cookie_cutoff_ms);
        t.merge_period_ms = Some(p.merge_period_ms);
        t.reachout_cutoff_ms = Some(p.reachout_cutoff_ms);
        t.peer_store_interval_ms = Some(p.peer_store_interval_ms);
        t.telemetry_period_ms = Some(p.telemetry_period_ms);
        t.telemetry_cache_cutoff_ms = Some(p.telemetry_cache_cutoff_ms);
        let r = &mut c.rep_crawler;
        r.normal_interval_ms = Some(p.rep_crawler_normal_ms);
        r.warmup_interval_ms = Some(p.rep_crawler_warmup_ms);
        r.query_timeout_ms = Some(p.rep_query_timeout_ms);
        r.query_on_up = Some(p.query_on_up);
        r.max_targets = Some(p.rep_crawler_max_targets);
        r.online_weight_minimum = Some(p.online_weight_minimum);
        r.online_weight_max_samples = Some(p.online_weight_max_samples);
        r.online_weight_sample_ms = Some(p.online_weight_sample_ms);
        c
    }

    /// This configuration as TOML (only the keys that are set).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// The default configuration for `network` as a commented TOML document with every key.
///
/// Keys whose default depends on the network are printed commented out (`# key = value`,
/// showing the value on `network`), so the document parses back to
/// [`NodeConfig::for_network`]; uncomment a line to pin the value. Keys without a default
/// (off unless set) are commented out with an example value.
pub fn default_toml(network: Network) -> String {
    let resolved = |n: Network| -> toml::Table {
        let mut c = NodeConfig::for_network(n).resolved();
        c.node.network = network;
        toml::Table::try_from(&c).unwrap_or_default()
    };
    let mine = resolved(network);
    let others: Vec<toml::Table> = Network::ALL.iter().map(|&n| resolved(n)).collect();
    let plain = toml::Table::try_from(NodeConfig::for_network(network)).unwrap_or_default();
    let mut out = String::new();
    out.push_str(&format!(
        "# nanopeer configuration: every key with its default on the {network} network.\n\
         # Lines starting with `# key =` have no fixed default: either the value shown is the\n\
         # {network} network's (it follows `node.network` while commented out), or the feature\n\
         # is off unless the key is set. Override any key with `--config section.key=value`.\n"
    ));
    for section in SECTIONS {
        out.push_str(&format!("\n[{section}]\n"));
        for kd in KEYS.iter().filter(|kd| kd.section == section) {
            let get = |t: &toml::Table| -> Option<toml::Value> {
                t.get(section)?.as_table()?.get(kd.key).cloned()
            };
            for line in kd.doc.lines() {
                out.push_str(&format!("# {line}\n"));
            }
            let set_in_plain = get(&plain).is_some();
            match (get(&mine), kd.example) {
                (Some(v), _) if set_in_plain => {
                    out.push_str(&format!("{} = {}\n", kd.key, value_text(&v)));
                }
                (Some(v), _) => {
                    let varies = others.iter().any(|o| get(o).as_ref() != Some(&v));
                    let note = if varies { "network default" } else { "default" };
                    out.push_str(&format!("# {} = {}    # {note}\n", kd.key, value_text(&v)));
                }
                (None, Some(ex)) => {
                    out.push_str(&format!(
                        "# {} = {ex}    # example; unset by default\n",
                        kd.key
                    ));
                }
                (None, None) => {}
            }
        }
    }
    out
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => toml::Value::String(s.clone()).to_string(),
        other => other.to_string(),
    }
}

fn parse_table(text: &str, source_name: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            source_name: source_name.to_string(),
            message: e.message().to_string(),
        })
}

/// Parses a `section.key=value` override into the table. The value is TOML (`16`, `true`,
/// `["a:1"]`, `"text"`); text that is not valid TOML is taken as a string.
fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), ConfigError> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| ConfigError::OverrideForm(arg.to_string()))?;
    let key = key.trim();
    let value = value.trim();
    let (section, name) = key
        .split_once('.')
        .ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
    if !KEYS
        .iter()
        .any(|kd| kd.section == section && kd.key == name)
    {
        return Err(ConfigError::UnknownKey(key.to_string()));
    }
    let text = toml::Value::String(value.to_string());
    let parsed = match format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
    {
        // `rpc.address=7076`: a string key given an unquoted scalar takes it as text
        Some(v)
            if check_key(section, name, &v).is_err() && check_key(section, name, &text).is_ok() =>
        {
            text
        }
        Some(v) => v,
        None => text,
    };
    let sec = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let sec = sec.as_table_mut().ok_or_else(|| ConfigError::BadValue {
        key: section.to_string(),
        message: "expected a table".into(),
    })?;
    sec.insert(name.to_string(), parsed);
    Ok(())
}

/// Checks every key and its type one by one (so errors name the key), then deserializes.
fn from_table(table: toml::Table) -> Result<NodeConfig, ConfigError> {
    for (section, value) in &table {
        if !SECTIONS.contains(&section.as_str()) {
            return Err(ConfigError::UnknownKey(section.clone()));
        }
        let sec = value.as_table().ok_or_else(|| ConfigError::BadValue {
            key: section.clone(),
            message: "expected a table".into(),
        })?;
        for (key, v) in sec {
            let dotted = format!("{section}.{key}");
            if !KEYS.iter().any(|kd| kd.section == section && kd.key == key) {
                return Err(ConfigError::UnknownKey(dotted));
            }
            check_key(section, key, v).map_err(|message| ConfigError::BadValue {
                key: dotted,
                message,
            })?;
        }
    }
    let config = NodeConfig::deserialize(table).map_err(|e| ConfigError::BadValue {
        key: "(config)".into(),
        message: e.to_string(),
    })?;
    config.validate()?;
    Ok(config)
}

/// Checks one value against the type of `section.key`.
fn check_key(section: &str, key: &str, v: &toml::Value) -> Result<(), String> {
    let mut one = toml::Table::new();
    one.insert(key.to_string(), v.clone());
    match section {
        "node" => check::<NodeSection>(one),
        "limits" => check::<LimitsSection>(one),
        "timing" => check::<TimingSection>(one),
        "verify" => check::<VerifySection>(one),
        "io" => check::<IoSection>(one),
        "rep_crawler" => check::<RepCrawlerSection>(one),
        _ => check::<ServerSection>(one),
    }
}

fn check<T: DeserializeOwned>(one: toml::Table) -> Result<(), String> {
    T::deserialize(one)
        .map(|_| ())
        .map_err(|e| e.message().trim().to_string())
}

/// `HOST:PORT` → (host, port); IPv6 hosts in brackets.
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    if host.is_empty() {
        return None;
    }
    Some((host, port))
}

/// Parses `ADDR:PORT`, or a bare `PORT` as 127.0.0.1:PORT.
pub fn parse_bind(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse().ok()
}

fn server_addr(s: &ServerSection, section: &str) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(text) = &s.address else {
        return Ok(None);
    };
    let key = format!("{section}.address");
    let addr = parse_bind(text).ok_or_else(|| ConfigError::BadValue {
        key: key.clone(),
        message: format!("{text:?} is not ADDR:PORT or PORT"),
    })?;
    if !addr.ip().is_loopback() && !s.allow_remote {
        return Err(ConfigError::RemoteBind {
            key,
            section: section.to_string(),
            addr,
        });
    }
    Ok(Some(addr))
}

/// Every documented key as `section.key` (for tests and completion).
pub fn all_keys() -> BTreeSet<String> {
    KEYS.iter()
        .map(|kd| format!("{}.{}", kd.section, kd.key))
        .collect()
}

/// Keys that have no default (off or unset unless given).
pub fn keys_without_default() -> BTreeSet<String> {
    KEYS.iter()
        .filter(|kd| kd.example.is_some())
        .map(|kd| format!("{}.{}", kd.section, kd.key))
        .collect()
}

mod network_serde {
    use crate::types::Network;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &Network, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(n.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Network, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

mod opt_u128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u128>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Int(u64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
        match Either::deserialize(d) {
            Ok(Either::Int(v)) => Ok(Some(v as u128)),
            Ok(Either::Text(s)) => s.trim().parse::<u128>().map(Some).map_err(|_| {
                serde::de::Error::custom(format!(
                    "expected a decimal string of raw (u128), found {s:?}"
                ))
            }),
            Err(_) => Err(serde::de::Error::custom(
                "expected a decimal string of raw (u128)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_serialized_key_is_documented() {
        // a config with every optional key set serializes exactly the documented keys
        let mut c = NodeConfig::for_network(Network::Live).resolved();
        c.node.data_path = Some("/x".into());
        c.node.crawler_core = Some(1);
        c.rep_crawler.weights_file = Some("w".into());
        c.rpc.address = Some("7076".into());
        c.metrics.address = Some("9100".into());
        let t = toml::Table::try_from(&c).unwrap();
        let mut keys = BTreeSet::new();
        for (s, v) in &t {
            for k in v.as_table().unwrap().keys() {
                keys.insert(format!("{s}.{k}"));
            }
        }
        assert_eq!(keys, all_keys());
    }

    #[test]
    fn host_port_and_bind() {
        assert_eq!(
            split_host_port("peering.nano.org:7075"),
            Some(("peering.nano.org", 7075))
        );
        assert_eq!(split_host_port("[::1]:7075"), Some(("::1", 7075)));
        assert_eq!(split_host_port("::1:7075"), None);
        assert_eq!(split_host_port("host:0"), None);
        assert_eq!(split_host_port(":7075"), None);
        assert_eq!(parse_bind("7076"), Some("127.0.0.1:7076".parse().unwrap()));
        assert_eq!(parse_bind("[::1]:1"), Some("[::1]:1".parse().unwrap()));
        assert_eq!(parse_bind("nope"), None);
    }
}
