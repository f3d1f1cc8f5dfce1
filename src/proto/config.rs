//! Protocol constants and tunables per network (§6–9), in one value the shards and the crawler
//! share. Every duration is in milliseconds.

use crate::types::Network;

/// Protocol settings for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoConfig {
    /// The network this node is on.
    pub network: Network,
    /// Our listening (peering) port, advertised in keepalive_self slot 0.
    pub listen_port: u16,
    /// Whether private-range addresses are acceptable peers (§7.7).
    pub allow_local_peers: bool,
    /// Channels + attempts per IP (IPv4 address or IPv6 /48).
    pub max_peers_per_ip: u32,
    /// Channels + attempts per subnet (IPv4 /24, IPv6 /32).
    pub max_peers_per_subnetwork: u32,
    /// Outstanding syn cookies per IP.
    pub max_cookies_per_ip: u32,
    /// Outstanding syn cookies in all (per shard).
    pub max_cookies: usize,
    /// Syn cookie lifetime.
    pub syn_cookie_cutoff_ms: u64,
    /// Keepalive period.
    pub keepalive_period_ms: u64,
    /// Channels whose last send is older than this are purged.
    pub cleanup_cutoff_ms: u64,
    /// How often the cleanup (purge) runs.
    pub cleanup_period_ms: u64,
    /// Socket idle timeout (and the header wait before the handshake completes).
    pub idle_timeout_ms: u64,
    /// Time allowed for a handshake to complete after connecting.
    pub handshake_timeout_ms: u64,
    /// Pacing between reachout attempts.
    pub merge_period_ms: u64,
    /// A reachout to the same endpoint is not repeated within this time.
    pub reachout_cutoff_ms: u64,
    /// Peer store flush interval.
    pub peer_store_interval_ms: u64,
    /// Telemetry broadcast interval.
    pub telemetry_period_ms: u64,
    /// Telemetry entries are stale after this.
    pub telemetry_cache_cutoff_ms: u64,
    /// Rep crawler interval once weight is sufficient.
    pub rep_crawler_normal_ms: u64,
    /// Rep crawler interval while weight is insufficient.
    pub rep_crawler_warmup_ms: u64,
    /// A rep crawler query expires after this.
    pub rep_query_timeout_ms: u64,
    /// Most channels queried per rep crawler round.
    pub rep_crawler_max_targets: usize,
    /// `online_weight_minimum` in raw.
    pub online_weight_minimum: u128,
    /// Online-weight samples kept.
    pub online_weight_max_samples: usize,
    /// Period between online-weight samples.
    pub online_weight_sample_ms: u64,
    /// Most inbound channels (peers that dialed us).
    pub max_channels: usize,
    /// Most outbound channels (peers we dialed): a cap of their own, so inbound peers can
    /// never take the places of the peers we chose (§7.2: 2048 / 2048, dev 128 / 128).
    pub max_outbound_channels: usize,
    /// Invalid signatures (votes, blocks, telemetry) a channel may send in a burst; one more
    /// is forgiven per second. Past it the channel is closed and its IP excluded.
    pub max_invalid_signatures: u32,
    /// Signature checks one channel may cause per second, with bursts of twice as many. Past
    /// it the channel is closed and its IP excluded.
    pub verify_per_sec: u32,
    /// The shard sends the rep crawler's first confirm_req of a new channel right after
    /// keepalive_self (one segment), picked from the query board; off: the crawler sends it.
    pub query_on_up: bool,
}

impl ProtoConfig {
    /// The reference node's values for `network` (HEAD, §7.2–7.3, §8, §9).
    pub fn for_network(network: Network) -> ProtoConfig {
        let dev = network == Network::Dev;
        let local_net = matches!(network, Network::Dev | Network::Beta);
        ProtoConfig {
            network,
            listen_port: network.default_port(),
            allow_local_peers: local_net,
            max_peers_per_ip: if local_net { 256 } else { 4 },
            max_peers_per_subnetwork: if local_net { 256 * 4 } else { 16 },
            max_cookies_per_ip: if local_net { 256 } else { 4 },
            max_cookies: super::cookies::DEFAULT_MAX_COOKIES,
            syn_cookie_cutoff_ms: super::cookies::SYN_COOKIE_CUTOFF_MS,
            keepalive_period_ms: if dev { 1_000 } else { 15_000 },
            cleanup_cutoff_ms: if dev { 5_000 } else { 300_000 },
            cleanup_period_ms: if dev { 1_000 } else { 5_000 },
            idle_timeout_ms: if dev { 15_000 } else { 120_000 },
            handshake_timeout_ms: if dev { 5_000 } else { 15_000 },
            merge_period_ms: if dev { 10 } else { 250 },
            reachout_cutoff_ms: if dev { 5_000 } else { 300_000 },
            peer_store_interval_ms: if dev { 1_000 } else { 15_000 },
            telemetry_period_ms: if dev { 500 } else { 60_000 },
            telemetry_cache_cutoff_ms: if dev { 2_000 } else { 130_000 },
            rep_crawler_normal_ms: if dev { 500 } else { 7_000 },
            rep_crawler_warmup_ms: if dev { 500 } else { 3_000 },
            rep_query_timeout_ms: if dev { 1_000 } else { 60_000 },
            rep_crawler_max_targets: 160,
            online_weight_minimum: super::online::ONLINE_WEIGHT_MINIMUM,
            online_weight_max_samples: if matches!(network, Network::Live | Network::Test) {
                4032
            } else {
                288
            },
            online_weight_sample_ms: if dev { 1_000 } else { 300_000 },
            max_channels: if dev { 128 } else { 2048 },
            max_outbound_channels: if dev { 128 } else { 2048 },
            max_invalid_signatures: 16,
            verify_per_sec: 10_000,
            query_on_up: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_dev_follow_the_spec_tables() {
        let live = ProtoConfig::for_network(Network::Live);
        assert_eq!(live.listen_port, 7075);
        assert_eq!(live.max_peers_per_ip, 4);
        assert_eq!(live.max_peers_per_subnetwork, 16);
        assert_eq!(live.keepalive_period_ms, 15_000);
        assert_eq!(live.cleanup_cutoff_ms, 300_000);
        assert_eq!(live.online_weight_minimum, 6 * 10u128.pow(37));
        assert!(!live.allow_local_peers);
        let dev = ProtoConfig::for_network(Network::Dev);
        assert_eq!(dev.listen_port, 44000);
        assert_eq!(dev.keepalive_period_ms, 1_000);
        assert_eq!(dev.max_peers_per_ip, 256);
        assert_eq!(dev.peer_store_interval_ms, 1_000);
        assert!(dev.allow_local_peers);
    }
}
