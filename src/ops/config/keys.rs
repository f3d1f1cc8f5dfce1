//! The documented keys: every `section.key` with its one-line doc (and an example value for
//! keys that are off unless set), in print order. They decide which keys exist (a key not
//! listed is refused) and make [`default_toml`], the commented document of every default.

use std::collections::BTreeSet;

use crate::types::Network;

use super::schema::NodeConfig;

/// One documented key.
pub(super) struct KeyDoc {
    pub(super) section: &'static str,
    pub(super) key: &'static str,
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
pub(super) const SECTIONS: [&str; 8] = [
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
pub(super) const KEYS: &[KeyDoc] = &[
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
    k(
        "rpc",
        "enable_control",
        "Allow RPC actions that change the node's state, e.g. keepalive; like nano-node's \
         enable_control.",
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
        c.rpc.enable_control = true;
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
}
