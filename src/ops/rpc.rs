//! JSON RPC in nano-node's shapes, dispatched against [`NodeApi`], which the node implements.
//!
//! Requests are JSON objects `{"action": …, …}`; responses follow nano-node's
//! `json_handler.cpp` (V27 / HEAD): every number is a decimal string, endpoints are printed
//! IPv6-mapped (`[::ffff:127.0.0.1]:7075`), hashes and keys upper-case hex. Failures are
//! `{"error": "…"}` with nano-node's messages (`Unknown command`, `Unable to parse JSON`,
//! `Invalid port`, …). Differences from nano-node, on purpose:
//! - `node_id` never returns the private key (nano-node's docs still show `private`; HEAD
//!   omits it as well).
//! - empty lists and maps are `[]` / `{}`, not boost's `""`.
//! - `stats` supports `"type": "counters"` only; times are UTC, not local time.
//! - `keepalive` takes an IP address, not a host name (no DNS on the RPC thread).
//! - `telemetry` without `raw` returns the local node's telemetry, as HEAD does (the docs
//!   describe a network average that HEAD no longer computes).
//! - `node_id` is not behind `enable_control` (nano-node gates it because it returns the
//!   private key; this one never does).
//!
//! **Control.** Actions that change the node's state ([`CONTROL_ACTIONS`]: `keepalive`, which
//! makes the node dial) answer `{"error": "RPC control is disabled"}` unless the server was
//! started with control enabled (`rpc.enable_control`, off by default, as nano-node's
//! `enable_control`).

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use serde_json::{Map, Value, json};

use crate::crypto::{decode_account, encode_account, encode_node_id};
use crate::ops::metrics::MetricsSnapshot;
use crate::types::{BlockHash, Network, PublicKey};
use crate::wire::TelemetryData;

/// One channel, as `peers` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The remote endpoint of the connection.
    pub endpoint: SocketAddr,
    /// The `version_using` the peer sent in its handshake; the value `peers` prints per
    /// endpoint.
    pub protocol_version: u8,
    /// The peer's node ID, once the handshake has completed.
    pub node_id: Option<PublicKey>,
    /// Where the peer listens (from its keepalive_self, else the remote endpoint).
    pub peering: SocketAddr,
}

/// What `version` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Schema version of the data store.
    pub store_version: u32,
    /// Protocol version we speak (0x15).
    pub protocol_version: u8,
    /// e.g. `nanopeer 0.1.0`.
    pub node_vendor: String,
    /// e.g. `redb 4`.
    pub store_vendor: String,
    /// The network, printed by [`Network::name`] (`live`, `beta`, `dev`, `test`).
    pub network: Network,
    /// The network's genesis block hash.
    pub network_identifier: BlockHash,
    /// Free-form build description.
    pub build_info: String,
}

/// A representative reached through a channel (`confirmation_quorum` with `peer_details`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepPeer {
    /// The representative's account.
    pub account: PublicKey,
    /// The channel's remote endpoint.
    pub endpoint: SocketAddr,
    /// Its voting weight, raw.
    pub weight: u128,
}

/// What `confirmation_quorum` reports (all weights in raw).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuorumInfo {
    /// Weight needed for quorum.
    pub quorum_delta: u128,
    /// Quorum percentage (67).
    pub online_weight_quorum_percent: u8,
    /// Configured floor of the online weight.
    pub online_weight_minimum: u128,
    /// Weight seen voting recently.
    pub online_stake_total: u128,
    /// Median of the stored online-weight samples.
    pub trended_stake_total: u128,
    /// Weight of representatives reached through our channels.
    pub peers_stake_total: u128,
    /// Those representatives; printed only with `peer_details`.
    pub peers: Vec<RepPeer>,
}

/// One counter of `stats` (`"type": "counters"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatEntry {
    /// Stat type (`message`, `handshake`, `tcp_listener_rejected`, …).
    pub stat_type: String,
    /// Detail (`keepalive`, `ok`, `max_per_ip`, …; `all` for totals).
    pub detail: String,
    /// `in` or `out`.
    pub dir: String,
    /// The row's value: a counter since node start, or a gauge for a few rows
    /// (`thread_progress_age_ms`); printed as a decimal string.
    pub value: u64,
}

/// What `stats` reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsInfo {
    /// The rows, in the order `stats` prints them (one counter may add several).
    pub entries: Vec<StatEntry>,
    /// Seconds since the counters started (node start).
    pub duration_seconds: u64,
}

/// The node as the RPC and metrics server see it. Every method is called from an HTTP worker
/// thread and must not block for long.
pub trait NodeApi: Send + Sync {
    /// Open channels (handshake done); `peers` sorts them by endpoint.
    fn peers(&self) -> Vec<PeerInfo>;
    /// Our node ID public key (never the private key).
    fn node_id(&self) -> PublicKey;
    /// Starts a connection (reachout) to `addr`; `Err` says why it was refused.
    fn keepalive(&self, addr: SocketAddr) -> Result<(), String>;
    /// The counter rows `stats` prints; local only, nothing of it goes on the wire.
    fn stats(&self) -> StatsInfo;
    /// What `version` prints.
    fn version(&self) -> VersionInfo;
    /// Representatives seen online, with their weight in raw.
    fn representatives_online(&self) -> Vec<(PublicKey, u128)>;
    /// What `confirmation_quorum` prints.
    fn quorum(&self) -> QuorumInfo;
    /// Our own telemetry (as we would broadcast it).
    fn local_telemetry(&self) -> TelemetryData;
    /// Telemetry received from peers, by the peer's endpoint.
    fn telemetry(&self) -> Vec<(SocketAddr, TelemetryData)>;
    /// Our peering port (a `telemetry` request for a loopback address on it is local).
    fn peering_port(&self) -> u16;
    /// Counters for `/metrics`.
    fn metrics(&self) -> MetricsSnapshot;
}

/// The actions [`dispatch`] knows.
pub const ACTIONS: [&str; 8] = [
    "confirmation_quorum",
    "keepalive",
    "node_id",
    "peers",
    "representatives_online",
    "stats",
    "telemetry",
    "version",
];

/// The actions that change the node's state, refused unless control is enabled.
pub const CONTROL_ACTIONS: [&str; 1] = ["keepalive"];

/// nano-node's answer to a control action while control is disabled.
pub const CONTROL_DISABLED: &str = "RPC control is disabled";

/// Handles one request body; always returns a JSON object (`{"error": …}` on failure).
/// `enable_control`: whether [`CONTROL_ACTIONS`] may run.
pub fn handle(api: &dyn NodeApi, body: &[u8], enable_control: bool) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(req)) => dispatch(api, &req, enable_control),
        _ => error("Unable to parse JSON"),
    }
}

/// Dispatches a parsed request object by its `action`; a [`CONTROL_ACTIONS`] member only with
/// `enable_control`, else [`CONTROL_DISABLED`].
pub fn dispatch(api: &dyn NodeApi, req: &Map<String, Value>, enable_control: bool) -> Value {
    let Some(action) = req.get("action").and_then(Value::as_str) else {
        return error("Unknown command");
    };
    if !enable_control && CONTROL_ACTIONS.contains(&action) {
        return error(CONTROL_DISABLED);
    }
    let r = match action {
        "peers" => peers(api, req),
        "node_id" => Ok(node_id(api)),
        "keepalive" => keepalive(api, req),
        "stats" => stats(api, req),
        "version" => Ok(version(api)),
        "representatives_online" => representatives_online(api, req),
        "confirmation_quorum" => confirmation_quorum(api, req),
        "telemetry" => telemetry(api, req),
        _ => Err("Unknown command".to_string()),
    };
    r.unwrap_or_else(|e| error(&e))
}

fn error(msg: &str) -> Value {
    json!({ "error": msg })
}

/// An endpoint as nano-node prints it: IPv4 addresses IPv6-mapped, `[addr]:port`.
pub fn endpoint_text(addr: SocketAddr) -> String {
    v6(addr).to_string()
}

fn v6(addr: SocketAddr) -> SocketAddrV6 {
    match addr {
        SocketAddr::V4(a) => SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0),
        SocketAddr::V6(a) => SocketAddrV6::new(*a.ip(), a.port(), 0, 0),
    }
}

/// A boolean option as nano-node reads it: absent is false; `true`/`false`, `"true"`/`"false"`,
/// `"1"`/`"0"`.
fn flag(req: &Map<String, Value>, name: &str) -> Result<bool, String> {
    match req.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" || s == "1" => Ok(true),
        Some(Value::String(s)) if s == "false" || s == "0" => Ok(false),
        Some(_) => Err(format!("Invalid value for {name}")),
    }
}

fn text_field(req: &Map<String, Value>, name: &str) -> Option<String> {
    match req.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_port(text: Option<String>) -> Result<u16, String> {
    text.and_then(|t| t.trim().parse::<u16>().ok())
        .filter(|&p| p != 0)
        .ok_or_else(|| "Invalid port".to_string())
}

fn parse_ip(text: Option<String>) -> Result<IpAddr, String> {
    text.and_then(|t| {
        let t = t.trim();
        let t = t
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(t);
        t.parse::<IpAddr>().ok()
    })
    .ok_or_else(|| "Invalid IP address".to_string())
}

fn peers(api: &dyn NodeApi, req: &Map<String, Value>) -> Result<Value, String> {
    let details = flag(req, "peer_details")?;
    let mut list = api.peers();
    list.sort_by_key(|p| v6(p.endpoint));
    let mut out = Map::new();
    for p in list {
        let v = if details {
            json!({
                "protocol_version": p.protocol_version.to_string(),
                "node_id": p.node_id.as_ref().map(encode_node_id).unwrap_or_default(),
                "type": "tcp",
                "peering": endpoint_text(p.peering),
            })
        } else {
            Value::String(p.protocol_version.to_string())
        };
        out.insert(endpoint_text(p.endpoint), v);
    }
    Ok(json!({ "peers": out }))
}

fn node_id(api: &dyn NodeApi) -> Value {
    let key = api.node_id();
    json!({
        "public": key.to_hex(),
        "as_account": encode_account(&key),
        "node_id": encode_node_id(&key),
    })
}

fn keepalive(api: &dyn NodeApi, req: &Map<String, Value>) -> Result<Value, String> {
    let ip = parse_ip(text_field(req, "address"))?;
    let port = parse_port(text_field(req, "port"))?;
    api.keepalive(SocketAddr::new(ip, port))?;
    Ok(json!({ "started": "1" }))
}

fn stats(api: &dyn NodeApi, req: &Map<String, Value>) -> Result<Value, String> {
    if req.get("type").and_then(Value::as_str) != Some("counters") {
        return Err("Invalid or missing type argument".into());
    }
    let s = api.stats();
    let (date, time) = utc_now_text();
    let entries: Vec<Value> = s
        .entries
        .iter()
        .map(|e| {
            json!({
                "time": time,
                "type": e.stat_type,
                "detail": e.detail,
                "dir": e.dir,
                "value": e.value.to_string(),
            })
        })
        .collect();
    Ok(json!({
        "type": "counters",
        "created": format!("{date} {time}"),
        "entries": entries,
        "stat_duration_seconds": s.duration_seconds.to_string(),
    }))
}

fn version(api: &dyn NodeApi) -> Value {
    let v = api.version();
    json!({
        "rpc_version": "1",
        "store_version": v.store_version.to_string(),
        "protocol_version": v.protocol_version.to_string(),
        "node_vendor": v.node_vendor,
        "store_vendor": v.store_vendor,
        "network": v.network.name(),
        "network_identifier": v.network_identifier.to_hex(),
        "build_info": v.build_info,
    })
}

fn representatives_online(api: &dyn NodeApi, req: &Map<String, Value>) -> Result<Value, String> {
    let weight = flag(req, "weight")?;
    let filter: Option<Vec<PublicKey>> = match req.get("accounts") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| {
                    v.as_str()
                        .and_then(|s| decode_account(s).ok())
                        .ok_or_else(|| "Bad account number".to_string())
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err("Bad account number".into()),
    };
    let reps = api
        .representatives_online()
        .into_iter()
        .filter(|(k, _)| filter.as_ref().is_none_or(|f| f.contains(k)));
    if weight {
        let mut m = Map::new();
        for (k, w) in reps {
            m.insert(encode_account(&k), json!({ "weight": w.to_string() }));
        }
        Ok(json!({ "representatives": m }))
    } else {
        let list: Vec<Value> = reps.map(|(k, _)| json!(encode_account(&k))).collect();
        Ok(json!({ "representatives": list }))
    }
}

fn confirmation_quorum(api: &dyn NodeApi, req: &Map<String, Value>) -> Result<Value, String> {
    let details = flag(req, "peer_details")?;
    let q = api.quorum();
    let mut out = json!({
        "quorum_delta": q.quorum_delta.to_string(),
        "online_weight_quorum_percent": q.online_weight_quorum_percent.to_string(),
        "online_weight_minimum": q.online_weight_minimum.to_string(),
        "online_stake_total": q.online_stake_total.to_string(),
        "trended_stake_total": q.trended_stake_total.to_string(),
        "peers_stake_total": q.peers_stake_total.to_string(),
    });
    if details {
        let peers: Vec<Value> = q
            .peers
            .iter()
            .map(|p| {
                json!({
                    "account": encode_account(&p.account),
                    "ip": endpoint_text(p.endpoint),
                    "weight": p.weight.to_string(),
                })
            })
            .collect();
        out["peers"] = Value::Array(peers);
    }
    Ok(out)
}

/// Telemetry in nano-node's JSON shape (`telemetry_data::serialize_json`).
pub fn telemetry_json(t: &TelemetryData) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), Value::String(v));
    };
    put("block_count", t.block_count.to_string());
    put("cemented_count", t.cemented_count.to_string());
    put("unchecked_count", t.unchecked_count.to_string());
    put("account_count", t.account_count.to_string());
    put("bandwidth_cap", t.bandwidth_cap.to_string());
    put("peer_count", t.peer_count.to_string());
    put("protocol_version", t.protocol_version.to_string());
    put("uptime", t.uptime.to_string());
    put("genesis_block", t.genesis_block.to_hex());
    put("major_version", t.major_version.to_string());
    put("minor_version", t.minor_version.to_string());
    put("patch_version", t.patch_version.to_string());
    put("pre_release_version", t.pre_release_version.to_string());
    put("maker", t.maker.to_string());
    put("timestamp", t.timestamp.to_string());
    put("active_difficulty", format!("{:016x}", t.active_difficulty));
    put("node_id", encode_node_id(&t.node_id));
    put("signature", t.signature.to_hex());
    m
}

fn telemetry(api: &dyn NodeApi, req: &Map<String, Value>) -> Result<Value, String> {
    let address = text_field(req, "address");
    let port = text_field(req, "port");
    if address.is_some() || port.is_some() {
        if address.is_none() || port.is_none() {
            return Err("Both port and address required".into());
        }
        let port = parse_port(port)?;
        let ip = parse_ip(address)?;
        if ip.is_loopback() && port == api.peering_port() {
            return Ok(Value::Object(telemetry_json(&api.local_telemetry())));
        }
        let want = v6(SocketAddr::new(ip, port));
        return api
            .telemetry()
            .into_iter()
            .find(|(ep, _)| v6(*ep) == want)
            .map(|(_, t)| Value::Object(telemetry_json(&t)))
            .ok_or_else(|| "Peer not found".to_string());
    }
    if flag(req, "raw")? {
        let metrics: Vec<Value> = api
            .telemetry()
            .into_iter()
            .map(|(ep, t)| {
                let mut m = telemetry_json(&t);
                let ep = v6(ep);
                m.insert("address".into(), Value::String(ep.ip().to_string()));
                m.insert("port".into(), Value::String(ep.port().to_string()));
                Value::Object(m)
            })
            .collect();
        return Ok(json!({ "metrics": metrics }));
    }
    Ok(Value::Object(telemetry_json(&api.local_telemetry())))
}

/// Current UTC date `YYYY.MM.DD` and time `HH:MM:SS`, as nano-node's stats print them.
fn utc_now_text() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_text(secs)
}

/// `YYYY.MM.DD` and `HH:MM:SS` of a Unix time (UTC).
fn utc_text(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil-from-days (proleptic Gregorian), days since 1970-01-01
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}.{m:02}.{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_text(0), ("1970.01.01".into(), "00:00:00".into()));
        assert_eq!(
            utc_text(951_782_400 + 3_723),
            ("2000.02.29".into(), "01:02:03".into())
        );
        assert_eq!(
            utc_text(1_767_225_599),
            ("2025.12.31".into(), "23:59:59".into())
        );
    }

    #[test]
    fn endpoints_print_ipv6_mapped() {
        assert_eq!(
            endpoint_text("127.0.0.1:44001".parse().unwrap()),
            "[::ffff:127.0.0.1]:44001"
        );
        assert_eq!(endpoint_text("[::1]:7075".parse().unwrap()), "[::1]:7075");
    }
}
