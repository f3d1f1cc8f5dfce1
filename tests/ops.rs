//! The operator surface: configuration loading and defaults, the HTTP server with JSON RPC in
//! nano-node's shapes, and the Prometheus text at /metrics.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use nanopeer::counters::Samples;
use nanopeer::io::Counters;
use nanopeer::node::BatchMetrics;
use nanopeer::ops::cli::{Cli, Command, RunArgs};
use nanopeer::ops::config::{
    ConfigError, NodeConfig, all_keys, default_toml, keys_without_default,
};
use nanopeer::ops::http::{HttpServer, ServerOptions};
use nanopeer::ops::metrics::{Histogram, MetricsSnapshot, parse_text};
use nanopeer::ops::rpc::{
    NodeApi, PeerInfo, QuorumInfo, RepPeer, StatEntry, StatsInfo, VersionInfo,
};
use nanopeer::proto::config::ProtoConfig;
use nanopeer::proto::stats::ShardStats;
use nanopeer::types::{BlockHash, Network, PublicKey, Signature};
use nanopeer::wire::TelemetryData;
use serde_json::{Value, json};

// ---------------------------------------------------------------- configuration

/// Uncomments `# key = value` lines of keys that have a default (network-dependent ones).
fn uncomment(doc: &str) -> String {
    let no_default = keys_without_default();
    let mut section = String::new();
    doc.lines()
        .map(|l| {
            if let Some(s) = l.strip_prefix('[') {
                section = s.trim_end_matches(']').to_string();
            }
            match l.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") => {
                    let key = rest.split(" = ").next().unwrap();
                    if key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        && !no_default.contains(&format!("{section}.{key}"))
                    {
                        return rest.to_string();
                    }
                    l.to_string()
                }
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn default_document_parses_back_to_the_defaults_on_every_network() {
    for n in Network::ALL {
        let doc = default_toml(n);
        let parsed = NodeConfig::from_toml_str(&doc).unwrap();
        assert_eq!(parsed, NodeConfig::for_network(n), "{n}");
        assert_eq!(parsed.proto_config(), ProtoConfig::for_network(n), "{n}");

        // every key is printed once, as `key =` or `# key =`
        let mut printed = BTreeSet::new();
        let mut section = String::new();
        for l in doc.lines() {
            if let Some(s) = l.strip_prefix('[') {
                section = s.trim_end_matches(']').to_string();
                continue;
            }
            let l = l.strip_prefix("# ").unwrap_or(l);
            if let Some((key, _)) = l.split_once(" = ")
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                assert!(printed.insert(format!("{section}.{key}")), "{key} twice");
            }
        }
        assert_eq!(printed, all_keys(), "{n}");

        // uncommenting the network defaults pins the same values
        let pinned = NodeConfig::from_toml_str(&uncomment(&doc)).unwrap();
        assert_ne!(pinned, parsed, "uncommenting must set keys");
        assert_eq!(pinned.resolved(), parsed.resolved(), "{n}");
        assert_eq!(pinned.proto_config(), ProtoConfig::for_network(n));
        assert_eq!(pinned.shard_config().ring_entries, 4096);
    }
    // the dev document differs from live where the spec tables differ
    assert!(default_toml(Network::Dev).contains("# keepalive_period_ms = 1000"));
    assert!(default_toml(Network::Live).contains("# keepalive_period_ms = 15000"));
    assert!(default_toml(Network::Live).contains("# peers = [\"peering.nano.org:7075\"]"));
}

fn run_args(argv: &[&str]) -> RunArgs {
    let mut full = vec!["nanopeer", "run"];
    full.extend_from_slice(argv);
    match Cli::try_parse_from(full).unwrap().command {
        Command::Run(a) => a,
        other => panic!("not run: {other:?}"),
    }
}

#[test]
fn file_then_overrides_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nanopeer.toml");
    std::fs::write(
        &file,
        "[node]\nnetwork = \"dev\"\nshards = 2\n[verify]\nbatch_max = 16\nbatch_delay_us = 50\n\
         [timing]\nkeepalive_period_ms = 700\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();

    // file alone
    let c = run_args(&["--config", f]).load_config().unwrap();
    assert_eq!(c.node.network, Network::Dev);
    assert_eq!(c.node.shards, 2);
    assert_eq!(c.verify.batch_max, 16);
    assert_eq!(c.proto_config().keepalive_period_ms, 700);
    // a network default where the file says nothing
    assert_eq!(c.proto_config().max_peers_per_ip, 256);
    assert_eq!(c.listen_addr(), "[::]:44000".parse().unwrap());

    // overrides after the file, in order
    let c = run_args(&[
        "--config",
        f,
        "--config",
        "verify.batch_max=32",
        "--config",
        "node.shards=3",
        "--config",
        "node.shards=5",
        "--config",
        "node.peers=[\"127.0.0.1:44001\"]",
        "--config",
        "node.data_path=/tmp/np data",
    ])
    .load_config()
    .unwrap();
    assert_eq!(c.verify.batch_max, 32);
    assert_eq!(c.verify.batch_delay_us, 50);
    assert_eq!(c.node.shards, 5);
    assert_eq!(c.peers(), vec!["127.0.0.1:44001".to_string()]);
    assert_eq!(c.data_path(), std::path::PathBuf::from("/tmp/np data"));

    // flags win over both
    let c = run_args(&[
        "--config",
        "node.shards=3",
        "--config",
        f,
        "--shards",
        "4",
        "--network",
        "beta",
        "--listen",
        "127.0.0.1:54001",
        "--peer",
        "[::1]:7000",
        "--peer",
        "localhost:7001",
        "--rpc",
        "7076",
        "--metrics",
        "[::1]:9100",
    ])
    .load_config()
    .unwrap();
    assert_eq!(c.node.shards, 4);
    assert_eq!(c.node.network, Network::Beta);
    assert_eq!(c.proto_config().listen_port, 54001);
    assert_eq!(c.proto_config().keepalive_period_ms, 700, "file value kept");
    assert_eq!(c.peers(), vec!["[::1]:7000", "localhost:7001"]);
    assert_eq!(
        c.rpc_addr().unwrap(),
        Some("127.0.0.1:7076".parse().unwrap())
    );
    assert_eq!(
        c.metrics_addr().unwrap(),
        Some("[::1]:9100".parse().unwrap())
    );
    assert_eq!(
        c.shard_config().listen,
        Some("127.0.0.1:54001".parse().unwrap())
    );

    // an unquoted scalar for a string key is taken as text
    let c = run_args(&[
        "--config",
        "rpc.address=7077",
        "--config",
        "metrics.address=[::1]:9",
    ])
    .load_config()
    .unwrap();
    assert_eq!(
        c.rpc_addr().unwrap(),
        Some("127.0.0.1:7077".parse().unwrap())
    );
    assert_eq!(c.metrics_addr().unwrap(), Some("[::1]:9".parse().unwrap()));

    // no flags: live, everything off
    let c = run_args(&[]).load_config().unwrap();
    assert_eq!(c, NodeConfig::for_network(Network::Live));
    assert_eq!(c.rpc_addr().unwrap(), None);
    assert_eq!(c.peers(), vec!["peering.nano.org:7075"]);
}

#[test]
fn unknown_keys_and_bad_types_are_named() {
    let err = |argv: &[&str]| run_args(argv).load_config().unwrap_err();
    assert_eq!(
        err(&["--config", "verify.batch_maxx=1"]),
        ConfigError::UnknownKey("verify.batch_maxx".into())
    );
    assert_eq!(
        err(&["--config", "nothing.here=1"]),
        ConfigError::UnknownKey("nothing.here".into())
    );
    match err(&["--config", "verify.batch_max=lots"]) {
        ConfigError::BadValue { key, message } => {
            assert_eq!(key, "verify.batch_max");
            assert!(message.contains("expected usize"), "{message}");
        }
        e => panic!("{e:?}"),
    }
    match err(&["--config", "node.allow_local_peers=3"]) {
        ConfigError::BadValue { key, message } => {
            assert_eq!(key, "node.allow_local_peers");
            assert!(message.contains("bool"), "{message}");
        }
        e => panic!("{e:?}"),
    }
    match err(&["--config", "io.recv_buffers=1000"]) {
        ConfigError::BadValue { key, .. } => assert_eq!(key, "io.recv_buffers"),
        e => panic!("{e:?}"),
    }
    match err(&["--config", "verify.batch_max=0"]) {
        ConfigError::BadValue { key, .. } => assert_eq!(key, "verify.batch_max"),
        e => panic!("{e:?}"),
    }
    match err(&["--config", "node.peers=[\"nohost\"]"]) {
        ConfigError::BadValue { key, .. } => assert_eq!(key, "node.peers"),
        e => panic!("{e:?}"),
    }
    assert!(matches!(
        err(&["--rpc", "0.0.0.0:7076"]),
        ConfigError::RemoteBind { .. }
    ));
    assert!(
        run_args(&["--rpc", "0.0.0.0:7076", "--config", "rpc.allow_remote=true"])
            .load_config()
            .is_ok()
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[limits]\nmax_peers_per_ip = 4\nmax_peer_per_ip = 5\n",
    )
    .unwrap();
    assert_eq!(
        err(&["--config", bad.to_str().unwrap()]),
        ConfigError::UnknownKey("limits.max_peer_per_ip".into())
    );
    std::fs::write(&bad, "[timing]\nkeepalive_period_ms = \"soon\"\n").unwrap();
    match err(&["--config", bad.to_str().unwrap()]) {
        ConfigError::BadValue { key, message } => {
            assert_eq!(key, "timing.keepalive_period_ms");
            assert!(message.contains("u64"), "{message}");
        }
        e => panic!("{e:?}"),
    }
    std::fs::write(&bad, "network = \"dev\"\n").unwrap();
    assert_eq!(
        err(&["--config", bad.to_str().unwrap()]),
        ConfigError::UnknownKey("network".into())
    );
    std::fs::write(&bad, "[node\n").unwrap();
    assert!(matches!(
        err(&["--config", bad.to_str().unwrap()]),
        ConfigError::Syntax { .. }
    ));
    assert!(matches!(
        err(&["--config", "/nonexistent/x.toml"]),
        ConfigError::Read { .. }
    ));
    assert!(matches!(
        err(&["--config", "a.toml", "--config", "b.toml"]),
        ConfigError::TwoFiles(..)
    ));
    // the message names the key
    let text = err(&["--config", "verify.batch_max=lots"]).to_string();
    assert!(text.contains("verify.batch_max"), "{text}");
}

#[test]
fn online_weight_minimum_is_a_decimal_string() {
    let c = NodeConfig::from_toml_str(
        "[rep_crawler]\nonline_weight_minimum = \"340282366920938463463374607431768211455\"\n",
    )
    .unwrap();
    assert_eq!(c.proto_config().online_weight_minimum, u128::MAX);
    assert!(NodeConfig::from_toml_str("[rep_crawler]\nonline_weight_minimum = \"-1\"\n").is_err());
}

// ---------------------------------------------------------------- fake node

struct Fake {
    keepalives: Mutex<Vec<SocketAddr>>,
}

fn key(b: u8) -> PublicKey {
    PublicKey([b; 32])
}

fn node_key() -> PublicKey {
    // nano-docs' node_id example
    let mut k = [0u8; 32];
    hex::decode_to_slice(
        "78B11E1777B8E7DF9090004376C3EDE008E84680A497C0805F68CA5928626E1C",
        &mut k,
    )
    .unwrap();
    PublicKey(k)
}

fn telemetry(peers: u32) -> TelemetryData {
    TelemetryData {
        signature: Signature([0xAB; 64]),
        node_id: key(7),
        block_count: 5,
        cemented_count: 4,
        account_count: 3,
        peer_count: peers,
        protocol_version: 0x15,
        uptime: 100,
        genesis_block: BlockHash([0x99; 32]),
        major_version: 1,
        timestamp: 1_700_000_000_000,
        active_difficulty: 0xfffffff800000000,
        ..TelemetryData::default()
    }
}

impl NodeApi for Fake {
    fn peers(&self) -> Vec<PeerInfo> {
        vec![
            PeerInfo {
                endpoint: "[::1]:44002".parse().unwrap(),
                protocol_version: 0x15,
                node_id: None,
                peering: "[::1]:44002".parse().unwrap(),
            },
            PeerInfo {
                endpoint: "127.0.0.1:50123".parse().unwrap(),
                protocol_version: 0x14,
                node_id: Some(node_key()),
                peering: "127.0.0.1:44001".parse().unwrap(),
            },
        ]
    }
    fn node_id(&self) -> PublicKey {
        node_key()
    }
    fn keepalive(&self, addr: SocketAddr) -> Result<(), String> {
        if addr.port() == 1 {
            return Err("refused".into());
        }
        self.keepalives.lock().unwrap().push(addr);
        Ok(())
    }
    fn stats(&self) -> StatsInfo {
        StatsInfo {
            entries: vec![StatEntry {
                stat_type: "message".into(),
                detail: "keepalive".into(),
                dir: "in".into(),
                value: 42,
            }],
            duration_seconds: 9,
        }
    }
    fn version(&self) -> VersionInfo {
        VersionInfo {
            store_version: 1,
            protocol_version: 0x15,
            node_vendor: "nanopeer 0.1.0".into(),
            store_vendor: "redb 4".into(),
            network: Network::Dev,
            network_identifier: BlockHash([0x99; 32]),
            build_info: "test".into(),
        }
    }
    fn representatives_online(&self) -> Vec<(PublicKey, u128)> {
        vec![(key(1), 10u128.pow(36)), (key(2), u128::MAX)]
    }
    fn quorum(&self) -> QuorumInfo {
        QuorumInfo {
            quorum_delta: 67,
            online_weight_quorum_percent: 67,
            online_weight_minimum: 6 * 10u128.pow(37),
            online_stake_total: 100,
            trended_stake_total: 90,
            peers_stake_total: 50,
            peers: vec![RepPeer {
                account: key(1),
                endpoint: "127.0.0.1:44001".parse().unwrap(),
                weight: 50,
            }],
        }
    }
    fn local_telemetry(&self) -> TelemetryData {
        telemetry(2)
    }
    fn telemetry(&self) -> Vec<(SocketAddr, TelemetryData)> {
        vec![("127.0.0.1:44001".parse().unwrap(), telemetry(8))]
    }
    fn peering_port(&self) -> u16 {
        44000
    }
    fn metrics(&self) -> MetricsSnapshot {
        let mut h = Histogram::batch_sizes();
        h.observe(64.0);
        h.observe(3.0);
        let mut proto = ShardStats::default();
        proto.messages_in[0x02] = 3;
        proto.messages_out[0x0a] = 2;
        proto.handshake.ok = 1;
        proto.handshake.invalid_signature = 2;
        let mut batch = BatchMetrics::default();
        batch.verifier.failed_batches = 1;
        let io = Counters {
            buf_ring_exhausted: 5,
            ..Counters::default()
        };
        let mut counters = Samples::default();
        counters.add_set(&proto, &[]);
        counters.add_set(&batch, &[]);
        counters.add_set(&io, &[("shard", "0")]);
        MetricsSnapshot {
            counters,
            verify_batch_sizes: h,
            channels: 2,
            cookies: 1,
            uptime_seconds: 3,
            store_ok: true,
            ..MetricsSnapshot::default()
        }
    }
}

fn server(options: ServerOptions) -> (HttpServer, Arc<Fake>) {
    let fake = Arc::new(Fake {
        keepalives: Mutex::new(Vec::new()),
    });
    let s = HttpServer::start("127.0.0.1:0".parse().unwrap(), fake.clone(), options).unwrap();
    (s, fake)
}

/// Sends raw bytes, returns (status, headers, body).
fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8(out[..end].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head, out[end + 4..].to_vec())
}

fn post(addr: SocketAddr, body: &str) -> (u16, Value) {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, head, body) = raw(addr, req.as_bytes());
    assert!(head.contains("Content-Type: application/json"), "{head}");
    (status, serde_json::from_slice(&body).unwrap())
}

fn rpc(addr: SocketAddr, request: Value) -> Value {
    let (status, v) = post(addr, &request.to_string());
    assert_eq!(status, 200);
    v
}

#[test]
fn rpc_actions_have_nano_node_shapes() {
    let (s, fake) = server(ServerOptions {
        enable_control: true,
        ..ServerOptions::default()
    });
    let a = s.local_addr();

    // peers: endpoint → version, sorted by endpoint, IPv4 printed IPv6-mapped
    assert_eq!(
        rpc(a, json!({"action": "peers"})),
        json!({"peers": {"[::1]:44002": "21", "[::ffff:127.0.0.1]:50123": "20"}})
    );
    let v = rpc(a, json!({"action": "peers", "peer_details": "true"}));
    assert_eq!(
        v["peers"]["[::ffff:127.0.0.1]:50123"],
        json!({
            "protocol_version": "20",
            "node_id": "node_1y7j5rdqhg99uyab1145gu3yur1ax35a3b6qr417yt8cd6n86uiw3d4whty3",
            "type": "tcp",
            "peering": "[::ffff:127.0.0.1]:44001",
        })
    );
    assert_eq!(v["peers"]["[::1]:44002"]["node_id"], "");
    let keys: Vec<&String> = v["peers"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["[::1]:44002", "[::ffff:127.0.0.1]:50123"]);

    // node_id: never the private key
    assert_eq!(
        rpc(a, json!({"action": "node_id"})),
        json!({
            "public": "78B11E1777B8E7DF9090004376C3EDE008E84680A497C0805F68CA5928626E1C",
            "as_account": "nano_1y7j5rdqhg99uyab1145gu3yur1ax35a3b6qr417yt8cd6n86uiw3d4whty3",
            "node_id": "node_1y7j5rdqhg99uyab1145gu3yur1ax35a3b6qr417yt8cd6n86uiw3d4whty3",
        })
    );

    // keepalive dials the address
    assert_eq!(
        rpc(
            a,
            json!({"action": "keepalive", "address": "::ffff:127.0.0.1", "port": "44001"})
        ),
        json!({"started": "1"})
    );
    assert_eq!(
        rpc(
            a,
            json!({"action": "keepalive", "address": "::1", "port": 44003})
        ),
        json!({"started": "1"})
    );
    assert_eq!(
        *fake.keepalives.lock().unwrap(),
        vec![
            "[::ffff:127.0.0.1]:44001".parse::<SocketAddr>().unwrap(),
            "[::1]:44003".parse().unwrap()
        ]
    );
    assert_eq!(
        rpc(
            a,
            json!({"action": "keepalive", "address": "::1", "port": "x"})
        ),
        json!({"error": "Invalid port"})
    );
    assert_eq!(
        rpc(
            a,
            json!({"action": "keepalive", "address": "no.where", "port": "1"})
        ),
        json!({"error": "Invalid IP address"})
    );
    assert_eq!(
        rpc(
            a,
            json!({"action": "keepalive", "address": "::1", "port": "1"})
        ),
        json!({"error": "refused"})
    );

    // stats counters
    let v = rpc(a, json!({"action": "stats", "type": "counters"}));
    assert_eq!(v["type"], "counters");
    assert_eq!(v["stat_duration_seconds"], "9");
    let created = v["created"].as_str().unwrap();
    assert_eq!(created.len(), "2018.03.29 01:46:36".len(), "{created}");
    let e = &v["entries"][0];
    assert_eq!(
        (&e["type"], &e["detail"], &e["dir"], &e["value"]),
        (
            &json!("message"),
            &json!("keepalive"),
            &json!("in"),
            &json!("42")
        )
    );
    assert_eq!(e["time"].as_str().unwrap().len(), 8);
    assert_eq!(
        rpc(a, json!({"action": "stats"})),
        json!({"error": "Invalid or missing type argument"})
    );

    // version
    assert_eq!(
        rpc(a, json!({"action": "version"})),
        json!({
            "rpc_version": "1",
            "store_version": "1",
            "protocol_version": "21",
            "node_vendor": "nanopeer 0.1.0",
            "store_vendor": "redb 4",
            "network": "dev",
            "network_identifier": "99".repeat(32),
            "build_info": "test",
        })
    );

    // representatives_online, plain and with weight
    let acct1 = nanopeer::crypto::encode_account(&key(1));
    let acct2 = nanopeer::crypto::encode_account(&key(2));
    assert_eq!(
        rpc(a, json!({"action": "representatives_online"})),
        json!({"representatives": [acct1, acct2]})
    );
    assert_eq!(
        rpc(
            a,
            json!({"action": "representatives_online", "weight": "true"})
        ),
        json!({"representatives": {
            acct1.clone(): {"weight": "1000000000000000000000000000000000000"},
            acct2.clone(): {"weight": u128::MAX.to_string()},
        }})
    );
    assert_eq!(
        rpc(
            a,
            json!({"action": "representatives_online", "accounts": [acct2.clone()]})
        ),
        json!({"representatives": [acct2]})
    );
    assert_eq!(
        rpc(
            a,
            json!({"action": "representatives_online", "accounts": ["nano_x"]})
        ),
        json!({"error": "Bad account number"})
    );

    // confirmation_quorum
    let q = json!({
        "quorum_delta": "67",
        "online_weight_quorum_percent": "67",
        "online_weight_minimum": "60000000000000000000000000000000000000",
        "online_stake_total": "100",
        "trended_stake_total": "90",
        "peers_stake_total": "50",
    });
    assert_eq!(rpc(a, json!({"action": "confirmation_quorum"})), q);
    let v = rpc(
        a,
        json!({"action": "confirmation_quorum", "peer_details": true}),
    );
    assert_eq!(
        v["peers"],
        json!([{"account": acct1, "ip": "[::ffff:127.0.0.1]:44001", "weight": "50"}])
    );

    // telemetry: local by default, per peer with raw, one peer by address
    let local = rpc(a, json!({"action": "telemetry"}));
    assert_eq!(local["peer_count"], "2");
    assert_eq!(local["protocol_version"], "21");
    assert_eq!(local["active_difficulty"], "fffffff800000000");
    assert_eq!(local["timestamp"], "1700000000000");
    assert_eq!(local["genesis_block"], "99".repeat(32));
    assert_eq!(local["signature"], "AB".repeat(64));
    assert_eq!(
        local["node_id"],
        nanopeer::crypto::encode_node_id(&key(7)).as_str()
    );
    let fields: Vec<&String> = local.as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        [
            "block_count",
            "cemented_count",
            "unchecked_count",
            "account_count",
            "bandwidth_cap",
            "peer_count",
            "protocol_version",
            "uptime",
            "genesis_block",
            "major_version",
            "minor_version",
            "patch_version",
            "pre_release_version",
            "maker",
            "timestamp",
            "active_difficulty",
            "node_id",
            "signature"
        ]
    );
    let raw_t = rpc(a, json!({"action": "telemetry", "raw": "true"}));
    let m = &raw_t["metrics"][0];
    assert_eq!(m["peer_count"], "8");
    assert_eq!(m["address"], "::ffff:127.0.0.1");
    assert_eq!(m["port"], "44001");
    let one = rpc(
        a,
        json!({"action": "telemetry", "address": "127.0.0.1", "port": "44001"}),
    );
    assert_eq!(one["peer_count"], "8");
    let me = rpc(
        a,
        json!({"action": "telemetry", "address": "::1", "port": "44000"}),
    );
    assert_eq!(me["peer_count"], "2");
    assert_eq!(
        rpc(
            a,
            json!({"action": "telemetry", "address": "127.0.0.2", "port": "44001"})
        ),
        json!({"error": "Peer not found"})
    );
    assert_eq!(
        rpc(a, json!({"action": "telemetry", "address": "127.0.0.1"})),
        json!({"error": "Both port and address required"})
    );

    // errors
    assert_eq!(
        rpc(a, json!({"action": "wallet_create"})),
        json!({"error": "Unknown command"})
    );
    assert_eq!(rpc(a, json!({})), json!({"error": "Unknown command"}));
    let (status, v) = post(a, "{\"action\": ");
    assert_eq!((status, v), (200, json!({"error": "Unable to parse JSON"})));
    let (_, v) = post(a, "[1,2]");
    assert_eq!(v, json!({"error": "Unable to parse JSON"}));
    s.stop();
}

#[test]
fn http_limits_paths_and_metrics() {
    let (s, _) = server(ServerOptions {
        max_body: 1024,
        ..ServerOptions::default()
    });
    let a = s.local_addr();

    // oversize body: refused from the header, before reading it
    let big = "x".repeat(2000);
    let req = format!(
        "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{big}",
        big.len()
    );
    assert_eq!(raw(a, req.as_bytes()).0, 413);
    // a body at the limit is read
    let body = format!("{{\"action\":\"version\",\"pad\":\"{}\"}}", "y".repeat(980));
    assert!(body.len() <= 1024);
    assert_eq!(post(a, &body).1["rpc_version"], "1");
    // oversize head
    let req = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "h".repeat(10_000));
    assert_eq!(raw(a, req.as_bytes()).0, 431);
    // POST without a length, chunked, garbage
    assert_eq!(raw(a, b"POST / HTTP/1.1\r\n\r\n").0, 411);
    assert_eq!(
        raw(
            a,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        .0,
        501
    );
    assert_eq!(raw(a, b"hello\r\n\r\n").0, 400);
    // paths and methods
    assert_eq!(
        raw(a, b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n").0,
        404
    );
    assert_eq!(raw(a, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").0, 405);
    assert_eq!(
        raw(a, b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n").0,
        405
    );

    // metrics
    let (status, head, body) = raw(a, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let text = String::from_utf8(body).unwrap();
    let samples = parse_text(&text).unwrap();
    let value = |name: &str, label: Option<(&str, &str)>| {
        samples
            .iter()
            .find(|x| x.name == name && label.is_none_or(|(k, v)| x.label(k) == Some(v)))
            .map(|x| x.value)
    };
    assert_eq!(
        value("nanopeer_messages_total", Some(("type", "keepalive"))),
        Some(3.0)
    );
    assert_eq!(
        value(
            "nanopeer_handshakes_total",
            Some(("outcome", "invalid_signature"))
        ),
        Some(2.0)
    );
    assert_eq!(value("nanopeer_verify_batch_size_count", None), Some(2.0));
    assert_eq!(value("nanopeer_verify_fallbacks_total", None), Some(1.0));
    assert_eq!(value("nanopeer_channels", None), Some(2.0));
    assert_eq!(value("nanopeer_cookies", None), Some(1.0));
    assert_eq!(
        value("nanopeer_buffer_ring_exhausted_total", Some(("shard", "0"))),
        Some(5.0)
    );
    s.stop();

    // a metrics-only server does not answer RPC
    let (s, _) = server(ServerOptions {
        rpc: false,
        ..ServerOptions::default()
    });
    let req = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}";
    assert_eq!(raw(s.local_addr(), req).0, 404);
    assert_eq!(raw(s.local_addr(), b"GET /metrics HTTP/1.0\r\n\r\n").0, 200);
}

#[test]
fn connection_cap_and_prompt_stop() {
    let (s, _) = server(ServerOptions {
        max_connections: 1,
        read_timeout: Duration::from_secs(30),
        ..ServerOptions::default()
    });
    let a = s.local_addr();
    // one idle connection holds the only slot
    let idle = TcpStream::connect(a).unwrap();
    let t0 = Instant::now();
    while s.active_connections() == 0 && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(s.active_connections(), 1);
    assert_eq!(raw(a, b"GET /metrics HTTP/1.1\r\n\r\n").0, 503);

    // stop returns promptly although a connection is mid-request, and closes it
    let t = Instant::now();
    s.stop();
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
    let mut idle = idle;
    idle.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = Vec::new();
    let _ = idle.read_to_end(&mut buf);
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 503"));
    // nothing listens any more
    assert!(TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_err());
}

#[test]
fn slow_request_times_out() {
    let (s, _) = server(ServerOptions {
        read_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    });
    let t = Instant::now();
    let (status, _, _) = raw(
        s.local_addr(),
        b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n{",
    );
    assert_eq!(status, 408);
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn expect_100_continue_is_answered() {
    let (s, _) = server(ServerOptions::default());
    let body = r#"{"action":"version"}"#;
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    c.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(body.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(out.contains("\"rpc_version\":\"1\""), "{out}");
}
