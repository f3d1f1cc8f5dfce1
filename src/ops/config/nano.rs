//! nano-node's configuration, as a nano-node operator left it: `config-node.toml` and
//! `config-rpc.toml` in the data directory, and nano-node's dotted keys in `--config
//! key=value`. The keys whose meaning matches one of nanopeer's are mapped onto it
//! ([`mapped_keys`]); every other key is recorded in a [`NanoReport`] (logged once at
//! start-up) and ignored. A mapped key with a value nanopeer cannot use is a
//! [`ConfigError::NanoValue`] naming the file (or the override) and the key.
//!
//! nano-node serves RPC only when `config-node.toml` says `[rpc] enable = true`; then the
//! address and port come from `config-rpc.toml` (nano-node's defaults: `::1` and the network's
//! RPC port). Without it, `config-rpc.toml` only contributes `enable_control`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::types::Network;

use super::error::ConfigError;

/// nano-node's node configuration file, in the data directory.
pub const NODE_FILE: &str = "config-node.toml";
/// nano-node's RPC configuration file, in the data directory.
pub const RPC_FILE: &str = "config-rpc.toml";

/// Where an ignored key was found.
const OVERRIDE_ORIGIN: &str = "--config";

/// What a mapped nano-node key sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The port of `node.listen` (its address is kept; unset: `[::]`).
    PeeringPort,
    /// `node.peers`, each entry normalized to `HOST:PORT` (a bare host: the network's port).
    Peers,
    /// A boolean key, as is.
    Bool(&'static str, &'static str),
    /// An integer key in `min..=max`, multiplied by `scale` (seconds → milliseconds).
    Int {
        section: &'static str,
        key: &'static str,
        min: u64,
        max: u64,
        scale: u64,
    },
    /// An amount in raw (a decimal string or an integer), as a decimal string.
    Raw(&'static str, &'static str),
    /// `[rpc] enable`: on, `rpc.address` is `config-rpc.toml`'s address and port; off, unset.
    RpcEnable,
    /// `config-rpc.toml` `address`: the RPC bind address.
    RpcAddress,
    /// `config-rpc.toml` `port`: the RPC port.
    RpcPort,
}

const U32: u64 = u32::MAX as u64;
const USIZE: u64 = 1 << 32;
const SECS: u64 = u64::MAX / 1000;

const fn int(section: &'static str, key: &'static str, min: u64, max: u64, scale: u64) -> Target {
    Target::Int {
        section,
        key,
        min,
        max,
        scale,
    }
}

/// One mapped key: nano-node's dotted key, what it sets, and that in words.
type Mapping = (&'static str, Target, &'static str);

/// The `config-node.toml` keys nanopeer maps (dotted, as in `--config`).
const NODE_MAP: &[Mapping] = &[
    (
        "node.peering_port",
        Target::PeeringPort,
        "node.listen (port)",
    ),
    ("node.preconfigured_peers", Target::Peers, "node.peers"),
    (
        "node.allow_local_peers",
        Target::Bool("node", "allow_local_peers"),
        "node.allow_local_peers",
    ),
    (
        "node.online_weight_minimum",
        Target::Raw("rep_crawler", "online_weight_minimum"),
        "rep_crawler.online_weight_minimum",
    ),
    (
        "node.network.max_peers_per_ip",
        int("limits", "max_peers_per_ip", 0, U32, 1),
        "limits.max_peers_per_ip",
    ),
    (
        "node.network.max_peers_per_subnetwork",
        int("limits", "max_peers_per_subnetwork", 0, U32, 1),
        "limits.max_peers_per_subnetwork",
    ),
    (
        "node.tcp.max_inbound_connections",
        int("limits", "max_channels", 0, USIZE, 1),
        "limits.max_channels",
    ),
    (
        "node.tcp.max_outbound_connections",
        int("limits", "max_outbound_channels", 0, USIZE, 1),
        "limits.max_outbound_channels",
    ),
    (
        "node.tcp.connect_timeout",
        int("timing", "connect_timeout_ms", 1, SECS, 1000),
        "timing.connect_timeout_ms (s → ms)",
    ),
    (
        "node.tcp.handshake_timeout",
        int("timing", "handshake_timeout_ms", 1, SECS, 1000),
        "timing.handshake_timeout_ms (s → ms)",
    ),
    (
        "node.rep_crawler.query_timeout",
        int("rep_crawler", "query_timeout_ms", 1, u64::MAX, 1),
        "rep_crawler.query_timeout_ms",
    ),
    (
        "rpc.enable",
        Target::RpcEnable,
        "rpc.address (config-rpc.toml's address and port)",
    ),
];

/// The `config-rpc.toml` keys nanopeer maps.
const RPC_MAP: &[Mapping] = &[
    ("address", Target::RpcAddress, "rpc.address (address)"),
    ("port", Target::RpcPort, "rpc.address (port)"),
    (
        "enable_control",
        Target::Bool("rpc", "enable_control"),
        "rpc.enable_control",
    ),
];

/// The keys nanopeer maps, `(file, nano-node key, nanopeer key)`, for documentation.
pub fn mapped_keys() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    let node = NODE_MAP.iter().map(|(k, _, to)| (NODE_FILE, *k, *to));
    let rpc = RPC_MAP.iter().map(|(k, _, to)| (RPC_FILE, *k, *to));
    node.chain(rpc)
}

fn find(map: &[Mapping], key: &str) -> Option<Target> {
    map.iter().find(|(k, _, _)| *k == key).map(|(_, t, _)| *t)
}

fn node_target(key: &str) -> Option<Target> {
    find(NODE_MAP, key)
}

fn rpc_target(key: &str) -> Option<Target> {
    find(RPC_MAP, key)
}

/// nano-node's `[node]` keys that are not tables (from its `node_config`), for telling a
/// nano-node key in an override (ignored) from a typo (refused). Keys under a `[node.*]`
/// table (`node.websocket.enable`) and under `[rpc.child_process]` / `[opencl]` are always
/// nano-node's: nanopeer's sections have no sub-tables.
const NANO_NODE_SCALARS: &[&str] = &[
    "bootstrap_fraction_numerator",
    "receive_minimum",
    "representative_vote_weight_minimum",
    "password_fanout",
    "io_threads",
    "network_threads",
    "work_threads",
    "background_threads",
    "signature_checker_threads",
    "enable_voting",
    "bootstrap_connections",
    "bootstrap_connections_max",
    "bootstrap_initiator_threads",
    "bootstrap_serving_threads",
    "bootstrap_frontier_request_count",
    "block_processor_batch_max_time",
    "vote_minimum",
    "vote_generator_delay",
    "vote_generator_threshold",
    "unchecked_cutoff_time",
    "tcp_io_timeout",
    "pow_sleep_interval",
    "external_address",
    "external_port",
    "tcp_incoming_connections_max",
    "use_memory_pools",
    "bandwidth_limit",
    "bandwidth_limit_burst_ratio",
    "bootstrap_bandwidth_limit",
    "bootstrap_bandwidth_burst_ratio",
    "confirming_set_batch_time",
    "backup_before_upgrade",
    "max_work_generate_multiplier",
    "max_queued_requests",
    "request_aggregator_threads",
    "max_unchecked_blocks",
    "rep_crawler_weight_minimum",
    "enable_upnp",
    "frontiers_confirmation",
    "work_peers",
    "preconfigured_representatives",
    "backlog_scan_batch_size",
    "backlog_scan_frequency",
];

/// Whether `key` (dotted) is one of nano-node's that nanopeer does not map.
fn is_nano_node_key(key: &str) -> bool {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return false;
    }
    match parts.as_slice() {
        ["node", _, _, ..] => true,
        ["node", name] => NANO_NODE_SCALARS.contains(name),
        ["rpc", "enable_sign_hash"] => true,
        ["rpc", "child_process", ..] => true,
        ["opencl", ..] => parts.len() >= 2,
        _ => false,
    }
}

/// A nano-node key nanopeer does not use, and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    /// `config-node.toml`, `config-rpc.toml` or `--config`.
    pub origin: String,
    /// The dotted key (`node.enable_voting`, `max_request_size`).
    pub key: String,
}

/// What nano-node's configuration contributed: the files read and the keys ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NanoReport {
    /// The nano-node files read from the data directory.
    pub files: Vec<PathBuf>,
    /// nano-node keys nanopeer does not use, in the order found.
    pub ignored: Vec<IgnoredKey>,
}

impl NanoReport {
    /// Whether nothing of nano-node's was seen.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.ignored.is_empty()
    }

    /// The files read, comma-separated.
    pub fn files_text(&self) -> String {
        let names: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        names.join(", ")
    }

    /// The ignored keys by origin: `config-node.toml: node.a, node.b; --config: node.c`.
    pub fn ignored_text(&self) -> String {
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for k in &self.ignored {
            match groups.iter_mut().find(|(o, _)| *o == k.origin) {
                Some((_, keys)) => keys.push(&k.key),
                None => groups.push((&k.origin, vec![&k.key])),
            }
        }
        let parts: Vec<String> = groups
            .iter()
            .map(|(o, keys)| format!("{o}: {}", keys.join(", ")))
            .collect();
        parts.join("; ")
    }
}

impl fmt::Display for NanoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "files read: ")?;
        if self.files.is_empty() {
            write!(f, "none")?;
        } else {
            write!(f, "{}", self.files_text())?;
        }
        if !self.ignored.is_empty() {
            write!(f, "; ignored keys: {}", self.ignored_text())?;
        }
        Ok(())
    }
}

/// Maps nano-node keys onto a nanopeer configuration table; holds what it saw.
#[derive(Debug, Clone)]
pub(super) struct NanoMapper {
    network: Network,
    /// Where RPC binds when `[rpc] enable = true`: `config-rpc.toml`'s address and port.
    rpc_bind: SocketAddr,
    /// The file `rpc_bind`'s address came from, if one did.
    rpc_address_origin: Option<String>,
    /// What was read and ignored.
    pub(super) report: NanoReport,
}

/// nano-node's default RPC port of `network`.
pub fn default_rpc_port(network: Network) -> u16 {
    match network {
        Network::Live => 7076,
        Network::Beta => 55000,
        Network::Dev => 45000,
        Network::Test => 17076,
    }
}

impl NanoMapper {
    /// A mapper with nothing read (RPC binds nano-node's default, `[::1]:<rpc port>`).
    pub(super) fn new(network: Network) -> NanoMapper {
        NanoMapper {
            network,
            rpc_bind: SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), default_rpc_port(network)),
            rpc_address_origin: None,
            report: NanoReport::default(),
        }
    }

    /// Reads `config-rpc.toml` then `config-node.toml` from `dir` (each if it exists) into a
    /// nanopeer table, the lowest configuration layer. The RPC file comes first: `[rpc]
    /// enable = true` in the node file binds its address and port.
    pub(super) fn read_data_dir(
        dir: &Path,
        network: Network,
    ) -> Result<(NanoMapper, toml::Table), ConfigError> {
        let mut mapper = NanoMapper::new(network);
        let mut table = toml::Table::new();
        for (name, targets) in [
            (RPC_FILE, rpc_target as fn(&str) -> Option<Target>),
            (NODE_FILE, node_target),
        ] {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let origin = path.display().to_string();
            let parsed = text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError::Syntax {
                    source_name: origin.clone(),
                    message: e.message().to_string(),
                })?;
            let mut leaves = Vec::new();
            flatten("", &parsed, &mut leaves);
            for (key, value) in leaves {
                match targets(&key) {
                    Some(t) => mapper.apply(&mut table, t, &key, &value, &origin)?,
                    None => mapper.report.ignored.push(IgnoredKey {
                        origin: name.to_string(),
                        key,
                    }),
                }
            }
            mapper.report.files.push(path);
        }
        Ok((mapper, table))
    }

    /// Applies an override `key=value` if `key` is nano-node's: mapped (true), or nano-node's
    /// and unused (recorded, true). `false`: not a nano-node key.
    pub(super) fn apply_override(
        &mut self,
        table: &mut toml::Table,
        key: &str,
        value: &str,
    ) -> Result<bool, ConfigError> {
        if let Some(t) = node_target(key) {
            let v = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_string()));
            self.apply(table, t, key, &v, OVERRIDE_ORIGIN)?;
            return Ok(true);
        }
        if is_nano_node_key(key) {
            self.report.ignored.push(IgnoredKey {
                origin: OVERRIDE_ORIGIN.to_string(),
                key: key.to_string(),
            });
            return Ok(true);
        }
        Ok(false)
    }

    /// `error` of the whole configuration, said in nano-node's terms when `config-rpc.toml`'s
    /// address is the non-loopback RPC address refused.
    pub(super) fn explain(&self, error: ConfigError) -> ConfigError {
        match (&error, &self.rpc_address_origin) {
            (ConfigError::RemoteBind { key, addr, .. }, Some(origin))
                if key == "rpc.address" && *addr == self.rpc_bind =>
            {
                ConfigError::NanoValue {
                    origin: origin.clone(),
                    key: "address".into(),
                    message: format!(
                        "{addr} is not a loopback address and nanopeer's RPC has no \
                         authentication; allow it with --config rpc.allow_remote=true"
                    ),
                }
            }
            _ => error,
        }
    }

    fn apply(
        &mut self,
        table: &mut toml::Table,
        target: Target,
        key: &str,
        v: &toml::Value,
        origin: &str,
    ) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::NanoValue {
            origin: origin.to_string(),
            key: key.to_string(),
            message,
        };
        match target {
            Target::PeeringPort => {
                let port = integer(v, 0, u16::MAX as u64).map_err(bad)? as u16;
                let ip = get(table, "node", "listen")
                    .and_then(|l| l.as_str()?.parse::<SocketAddr>().ok())
                    .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |l| l.ip());
                set(
                    table,
                    "node",
                    "listen",
                    SocketAddr::new(ip, port).to_string(),
                );
            }
            Target::Peers => {
                let list = v
                    .as_array()
                    .ok_or_else(|| bad("expected an array of strings".into()))?;
                let mut peers = Vec::with_capacity(list.len());
                for entry in list {
                    let text = entry
                        .as_str()
                        .ok_or_else(|| bad(format!("expected a string, found {entry}")))?;
                    let peer = normalize_peer(text, self.network.default_port()).ok_or_else(|| {
                        bad(format!(
                            "{text:?} is not HOST, HOST:PORT, IPv6 or [IPv6]:PORT with a port in 1..=65535"
                        ))
                    })?;
                    peers.push(toml::Value::String(peer));
                }
                set(table, "node", "peers", toml::Value::Array(peers));
            }
            Target::Bool(section, name) => {
                let b = v
                    .as_bool()
                    .ok_or_else(|| bad(format!("expected true or false, found {v}")))?;
                set(table, section, name, b);
            }
            Target::Int {
                section,
                key: name,
                min,
                max,
                scale,
            } => {
                let n = integer(v, min, max).map_err(bad)?;
                let scaled = n
                    .checked_mul(scale)
                    .ok_or_else(|| bad("too large".into()))?;
                let scaled = i64::try_from(scaled).map_err(|_| bad("too large".into()))?;
                set(table, section, name, scaled);
            }
            Target::Raw(section, name) => {
                let raw = match v {
                    toml::Value::String(s) => s.trim().parse::<u128>().ok(),
                    toml::Value::Integer(i) => u128::try_from(*i).ok(),
                    _ => None,
                }
                .ok_or_else(|| bad(format!("expected an amount in raw (decimal), found {v}")))?;
                set(table, section, name, raw.to_string());
            }
            Target::RpcEnable => {
                let on = v
                    .as_bool()
                    .ok_or_else(|| bad(format!("expected true or false, found {v}")))?;
                if on {
                    set(table, "rpc", "address", self.rpc_bind.to_string());
                } else if let Some(rpc) = table.get_mut("rpc").and_then(|s| s.as_table_mut()) {
                    rpc.remove("address");
                }
            }
            Target::RpcAddress => {
                let text = v
                    .as_str()
                    .ok_or_else(|| bad(format!("expected an IP address as a string, found {v}")))?;
                let trimmed = text.trim().trim_start_matches('[').trim_end_matches(']');
                let ip = trimmed
                    .parse::<IpAddr>()
                    .map_err(|_| bad(format!("{text:?} is not an IP address")))?;
                self.rpc_bind.set_ip(ip.to_canonical());
                self.rpc_address_origin = Some(origin.to_string());
            }
            Target::RpcPort => {
                let port = integer(v, 1, u16::MAX as u64).map_err(bad)?;
                self.rpc_bind.set_port(port as u16);
            }
        }
        Ok(())
    }
}

/// A TOML integer in `min..=max`.
fn integer(v: &toml::Value, min: u64, max: u64) -> Result<u64, String> {
    let n = v
        .as_integer()
        .ok_or_else(|| format!("expected an integer, found {v}"))?;
    u64::try_from(n)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("expected an integer in {min}..={max}, found {n}"))
}

fn get<'a>(table: &'a toml::Table, section: &str, key: &str) -> Option<&'a toml::Value> {
    table.get(section)?.as_table()?.get(key)
}

fn set(table: &mut toml::Table, section: &str, key: &str, value: impl Into<toml::Value>) {
    let sec = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !sec.is_table() {
        *sec = toml::Value::Table(toml::Table::new());
    }
    if let Some(t) = sec.as_table_mut() {
        t.insert(key.to_string(), value.into());
    }
}

/// Every non-table value of `table` with its dotted key.
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            other => out.push((key, other.clone())),
        }
    }
}

/// A nano-node preconfigured peer as `HOST:PORT`: a host name or IPv4 address, optionally
/// with `:PORT`; an IPv6 address bare, in brackets, or `[IPv6]:PORT`. Without a port: `port`.
/// IPv4-mapped IPv6 addresses become IPv4. `None`: not a peer address.
pub fn normalize_peer(entry: &str, port: u16) -> Option<String> {
    let s = entry.trim();
    let endpoint = |ip: IpAddr, port: u16| SocketAddr::new(ip.to_canonical(), port).to_string();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(endpoint(ip, port));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return (addr.port() != 0).then(|| endpoint(addr.ip(), addr.port()));
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| endpoint(ip.into(), port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok().filter(|&p| p != 0)?),
        None => (s, port),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with(['-', '.'])
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    host_ok.then(|| format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_in_nano_node_forms() {
        let n = |s: &str| normalize_peer(s, 7075);
        assert_eq!(
            n("peering.nano.org").as_deref(),
            Some("peering.nano.org:7075")
        );
        assert_eq!(
            n("peer.example:54000").as_deref(),
            Some("peer.example:54000")
        );
        assert_eq!(n("192.0.2.1").as_deref(), Some("192.0.2.1:7075"));
        assert_eq!(n("192.0.2.1:7").as_deref(), Some("192.0.2.1:7"));
        assert_eq!(n("::1").as_deref(), Some("[::1]:7075"));
        assert_eq!(n("[::1]").as_deref(), Some("[::1]:7075"));
        assert_eq!(n("[2001:db8::1]:9").as_deref(), Some("[2001:db8::1]:9"));
        assert_eq!(n("::ffff:127.0.0.1").as_deref(), Some("127.0.0.1:7075"));
        assert_eq!(n("[::ffff:127.0.0.1]:8").as_deref(), Some("127.0.0.1:8"));
        for bad in [
            "", "host:0", "host:x", ":7075", "a b", "[::1", "[nope]:1", "-x", "h:1:2",
        ] {
            assert_eq!(n(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn nano_node_keys_are_told_from_typos() {
        for k in [
            "node.enable_voting",
            "node.websocket.enable",
            "node.network.minimum_fanout",
            "rpc.enable_sign_hash",
            "rpc.child_process.enable",
            "opencl.enable",
        ] {
            assert!(is_nano_node_key(k), "{k}");
        }
        for k in [
            "node.shardz",
            "verify.x.y",
            "node..x",
            "opencl",
            "limits.bandwidth_limit",
        ] {
            assert!(!is_nano_node_key(k), "{k}");
        }
        // a mapped key is never also listed as ignored
        for (_, k, _) in mapped_keys() {
            assert!(
                !NANO_NODE_SCALARS.iter().any(|s| k == format!("node.{s}")),
                "{k}"
            );
        }
        assert_eq!(mapped_keys().count(), NODE_MAP.len() + RPC_MAP.len());
    }
}
