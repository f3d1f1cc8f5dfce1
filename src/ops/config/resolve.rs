//! What a configuration means on its network: the network's defaults for unset keys (the
//! protocol values from [`ProtoConfig::for_network`], the preconfigured peers, the listen
//! port, the data directory, the shard count), and its translation into the settings the node
//! runs with: [`ProtoConfig`] for the protocol cores and [`ShardConfig`] for the io shards.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::io::ShardConfig;
use crate::proto::config::ProtoConfig;
use crate::types::Network;

use super::schema::NodeConfig;

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

    /// `verify.batch_delay_us` as a [`Duration`]: how long a batch's oldest entry may wait
    /// before the batch is verified.
    pub fn batch_delay(&self) -> Duration {
        Duration::from_micros(self.verify.batch_delay_us)
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
}
