//! `nanopeer run` as an operator runs it: the real binary in child processes on loopback (dev
//! network, one shard, data directories in temporary folders), driven over its JSON RPC and
//! `/metrics`, stopped with SIGTERM. Also [`node_options`], the config → node mapping.
//! Signals other than SIGTERM, the metrics page's format and hosts without IPv6 are in
//! `tests/process.rs`.
//!
//! The process tests run one at a time (a global lock) to keep timings sane on a loaded
//! machine. Every wait polls with a deadline; a failing test prints the child's log.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nanopeer::crypto::genesis_hash;
use nanopeer::endpoint::Endpoint;
use nanopeer::node::default_preconfigured_peers;
use nanopeer::ops::cli::{RunArgs, node_options};
use nanopeer::types::Network;
use serde_json::json;

mod common;
use common::proc::{BIN, EXIT_WITHIN, Proc, UP_WITHIN, free_port, http, metric, metrics, rpc};
use common::{serial, wait_until};

#[test]
fn fresh_node_serves_rpc_and_metrics_and_stops_on_sigterm() {
    let _g = serial();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut p = Proc::spawn(root.path(), "fresh", &data, &[]);
    let version = p.wait_up();
    assert_eq!(version["protocol_version"], "21");
    assert_eq!(version["network"], "dev");
    assert_eq!(
        version["network_identifier"],
        genesis_hash(Network::Dev).to_hex()
    );
    let id = rpc(p.rpc, json!({"action": "node_id"})).unwrap();
    let node_id = id["node_id"].as_str().unwrap().to_string();
    assert!(node_id.starts_with("node_"), "{id}");
    assert_eq!(id["public"].as_str().unwrap().len(), 64, "{id}");
    assert!(id.get("private").is_none(), "never the private key: {id}");
    assert!(p.peers().is_empty(), "a fresh dev node has no peers");
    let quorum = rpc(p.rpc, json!({"action": "confirmation_quorum"})).unwrap();
    assert_eq!(quorum["online_weight_quorum_percent"], "67", "{quorum}");
    let stats = rpc(p.rpc, json!({"action": "stats", "type": "counters"})).unwrap();
    let entries = stats["entries"].as_array().expect("stats entries");
    assert!(
        entries
            .iter()
            .any(|e| e["type"] == "handshake" && e["detail"] == "ok"),
        "{stats}"
    );

    let m = metrics(p.metrics);
    assert_eq!(metric(&m, "nanopeer_channels", &[]), Some(0.0));
    assert!(metric(&m, "nanopeer_uptime_seconds", &[]).is_some());
    assert!(metric(&m, "nanopeer_shard_live_connections", &[("shard", "0")]).is_some());
    // Each server serves only its own path.
    assert_eq!(http(p.rpc, "GET", "/metrics", "").map(|r| r.0), Some(404));
    assert_eq!(
        http(p.metrics, "POST", "/", r#"{"action":"version"}"#).map(|r| r.0),
        Some(404)
    );

    let (status, took) = p.terminate();
    assert_eq!(status.code(), Some(0), "{}", p.log_text());
    assert!(took < EXIT_WITHIN);
    let log = p.log_text();
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(data.join("node_id_private.key").is_file());
    assert!(data.join("peers.redb").is_file());

    // The node id survives a restart in the same data directory.
    let mut again = Proc::spawn(root.path(), "again", &data, &[]);
    again.wait_up();
    assert_eq!(again.node_id(), node_id);
    let (status, _) = again.terminate();
    assert_eq!(status.code(), Some(0), "{}", again.log_text());
}

#[test]
fn two_processes_peer_list_each_other_and_remember_each_other() {
    let _g = serial();
    let root = tempfile::tempdir().unwrap();
    // a allows RPC control (keepalive makes it dial); b does not
    let mut a = Proc::spawn_with(
        root.path(),
        "a",
        &root.path().join("a"),
        &[],
        &["--config", "rpc.enable_control=true"],
    );
    a.wait_up();
    let mut b = Proc::spawn(root.path(), "b", &root.path().join("b"), &[a.listen]);
    b.wait_up();
    let (id_a, id_b) = (a.node_id(), b.node_id());
    assert_ne!(id_a, id_b);
    let lists = |x: &Proc, other_id: &str, other_listen: SocketAddr| {
        let peering = nanopeer::ops::rpc::endpoint_text(other_listen);
        x.peers()
            .values()
            .any(|d| d["node_id"] == other_id && d["peering"] == peering.as_str())
    };
    assert!(
        wait_until(UP_WITHIN, || lists(&a, &id_b, b.listen)
            && lists(&b, &id_a, a.listen)),
        "a peers: {:?}\nb peers: {:?}\n--- a log\n{}\n--- b log\n{}",
        a.peers(),
        b.peers(),
        a.log_text(),
        b.log_text()
    );
    // b dialed a: the channel on b's side is to a's listen address.
    assert!(
        b.peers()
            .contains_key(&nanopeer::ops::rpc::endpoint_text(a.listen)),
        "{:?}",
        b.peers()
    );
    // keepalive over RPC: refused for a peer already connected, the reason in the error.
    let refused = rpc(
        a.rpc,
        json!({"action": "keepalive", "address": "127.0.0.1", "port": b.listen.port().to_string()}),
    )
    .unwrap();
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("Connected")),
        "{refused}"
    );
    // b, without control, refuses the action itself
    let keepalive_a =
        json!({"action": "keepalive", "address": "127.0.0.1", "port": a.listen.port().to_string()});
    assert_eq!(
        rpc(b.rpc, keepalive_a),
        Some(json!({"error": "RPC control is disabled"}))
    );
    // Telemetry broadcasts (every 0.5 s on dev) reach the other side, signed by a's node id.
    let telemetry_of_a = || {
        rpc(b.rpc, json!({"action": "telemetry", "raw": true}))
            .and_then(|v| v["metrics"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .any(|t| {
                t["node_id"] == id_a.as_str()
                    && t["genesis_block"] == genesis_hash(Network::Dev).to_hex()
            })
    };
    assert!(
        wait_until(Duration::from_secs(5), telemetry_of_a),
        "b has no telemetry from a"
    );
    for p in [&a, &b] {
        let ok = wait_until(Duration::from_secs(3), || {
            let m = metrics(p.metrics);
            metric(&m, "nanopeer_channels", &[]) == Some(1.0)
                && metric(&m, "nanopeer_handshakes_total", &[("outcome", "ok")])
                    .is_some_and(|v| v >= 1.0)
        });
        assert!(ok, "metrics: one channel, a successful handshake");
    }

    // b stops first, so a's channel to b is gone at a's stop-time flush: a remembers b only
    // through a periodic peer-store flush (every second on dev) while they were connected.
    // Wait for two more of a's flushes (the first could predate the channel).
    let f0 = a.stat("peer_history", "flush").expect("a's flush counter");
    assert!(
        wait_until(Duration::from_secs(5), || a
            .stat("peer_history", "flush")
            .is_some_and(|f| f >= f0 + 2)),
        "a's periodic peer-store flushes:\n{}",
        a.log_text()
    );
    for p in [&mut b, &mut a] {
        let (status, took) = p.terminate();
        assert_eq!(status.code(), Some(0), "{}", p.log_text());
        assert!(took < EXIT_WITHIN);
    }
    let a_stored = a.stored_peers();
    let b_stored = b.stored_peers();
    assert!(
        a_stored.contains(&Endpoint::from(b.listen)),
        "a's store {a_stored:?} lacks b {}",
        b.listen
    );
    assert!(
        b_stored.contains(&Endpoint::from(a.listen)),
        "b's store {b_stored:?} lacks a {}",
        a.listen
    );
}

fn run_expecting_failure(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run nanopeer");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_errors_exit_2_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (code, err) = run_expecting_failure(&[
        "--network",
        "dev",
        "--data-path",
        data,
        "--config",
        "verify.batch_max=0",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("verify.batch_max"), "{err}");
    let (code, err) = run_expecting_failure(&[
        "--network",
        "dev",
        "--data-path",
        data,
        "--rpc",
        "192.0.2.1:7076",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("rpc.address"), "{err}");
}

#[test]
fn unusable_data_path_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let port = free_port().to_string();
    let (code, err) = run_expecting_failure(&[
        "--network",
        "dev",
        "--shards",
        "1",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-path",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("nanopeer: cannot start the node"), "{err}");
    assert!(last.contains("not-a-dir"), "{err}");
}

#[test]
fn node_options_follow_the_config() {
    let args = RunArgs {
        network: Some(Network::Live),
        data_path: Some("/tmp/x".into()),
        ..RunArgs::default()
    };
    let o = node_options(&args.load_config().unwrap());
    assert_eq!(o.network, Network::Live);
    assert_eq!(o.data_path, PathBuf::from("/tmp/x"));
    assert_eq!(o.listen.port(), 7075);
    assert_eq!(
        o.preconfigured_peers,
        Some(default_preconfigured_peers(Network::Live))
    );
    assert_eq!(o.proto.network, Network::Live);

    let args = RunArgs {
        network: Some(Network::Dev),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        shards: Some(3),
        peers: vec!["127.0.0.1:5000".into()],
        config: vec![
            "verify.batch_max=32".into(),
            "verify.batch_delay_us=50".into(),
            "rep_crawler.online_weight_minimum=\"1000\"".into(),
            "node.shard_cores=[1]".into(),
            "node.crawler_core=0".into(),
            "io.recv_buffers=128".into(),
        ],
        ..RunArgs::default()
    };
    let o = node_options(&args.load_config().unwrap());
    assert_eq!(o.network, Network::Dev);
    assert_eq!(o.listen, "127.0.0.1:0".parse::<SocketAddr>().unwrap());
    assert_eq!(o.shards, Some(3));
    assert_eq!(
        o.preconfigured_peers,
        Some(vec!["127.0.0.1:5000".to_string()]),
        "--peer replaces the network's list"
    );
    assert_eq!((o.batch_max, o.batch_delay_us), (32, 50));
    assert_eq!(o.online_weight_minimum, Some(1000));
    assert_eq!(o.proto.online_weight_minimum, 1000);
    assert_eq!(o.io.cores, vec![1]);
    assert_eq!(o.crawler_core, Some(0));
    assert_eq!(o.io.recv_buffers, 128);
}
