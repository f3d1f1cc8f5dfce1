//! The TOML schema: one struct per section with its serde form (unknown keys refused), the
//! fixed defaults (those of the I/O runtime come from [`ShardConfig::default`]), and the
//! whole [`NodeConfig`]. A key whose default depends on the network is an `Option`, unset
//! by default.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::io::ShardConfig;
use crate::types::Network;

/// The `[node]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// `live` (default), `beta`, `dev` or `test`; every unset network-dependent key takes
    /// this network's value.
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
    /// Keepalive period; unset: 15 000 (dev: 1 000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_period_ms: Option<u64>,
    /// Socket idle timeout, also the header wait before the handshake; unset: 120 000
    /// (dev: 15 000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Handshake deadline after connecting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_timeout_ms: Option<u64>,
    /// Outbound connect timeout; default: the io runtime's (10 000), on every network.
    pub connect_timeout_ms: u64,
    /// How often channels silent past `cleanup_cutoff_ms` are purged; unset: 5 000
    /// (dev: 1 000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_period_ms: Option<u64>,
    /// Channels silent (nothing sent) for longer are purged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_cutoff_ms: Option<u64>,
    /// Syn cookie lifetime; unset: 5 000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syn_cookie_cutoff_ms: Option<u64>,
    /// Pacing between reachout attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge_period_ms: Option<u64>,
    /// A reachout to one endpoint is not repeated within this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reachout_cutoff_ms: Option<u64>,
    /// Peer store flush interval; unset: 15 000 (dev: 1 000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_store_interval_ms: Option<u64>,
    /// Telemetry broadcast period; unset: 60 000 (dev: 500).
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
    /// `listen(2)` backlog of each shard's listener; must be positive.
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
    /// Allow a non-loopback `address`; without it one fails with
    /// [`ConfigError::RemoteBind`](super::ConfigError::RemoteBind).
    pub allow_remote: bool,
    /// Allow RPC actions that change the node's state (keepalive), like nano-node's
    /// enable_control. A key of `[rpc]` only (`metrics.enable_control` is refused as unknown),
    /// written out only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_control: bool,
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

impl NodeConfig {
    /// This configuration as TOML (only the keys that are set).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
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
