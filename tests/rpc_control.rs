//! The guards of the HTTP servers: RPC control (`enable_control`: actions that change the
//! node's state are refused without it) and the Host check against DNS rebinding, on the RPC
//! and the metrics server alike.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nanopeer::ops::http::{HttpServer, ServerOptions};
use nanopeer::ops::metrics::{MetricsSnapshot, parse_text};
use nanopeer::ops::rpc::{CONTROL_DISABLED, NodeApi, PeerInfo, QuorumInfo, StatsInfo, VersionInfo};
use nanopeer::types::{BlockHash, Network, PublicKey};
use nanopeer::wire::TelemetryData;
use serde_json::{Value, json};

/// A node that records the keepalives it is asked for.
#[derive(Default)]
struct Recorder {
    keepalives: Mutex<Vec<SocketAddr>>,
}

impl NodeApi for Recorder {
    fn peers(&self) -> Vec<PeerInfo> {
        Vec::new()
    }
    fn node_id(&self) -> PublicKey {
        PublicKey([3; 32])
    }
    fn keepalive(&self, addr: SocketAddr) -> Result<(), String> {
        self.keepalives.lock().unwrap().push(addr);
        Ok(())
    }
    fn stats(&self) -> StatsInfo {
        StatsInfo::default()
    }
    fn version(&self) -> VersionInfo {
        VersionInfo {
            store_version: 1,
            protocol_version: 0x15,
            node_vendor: "nanopeer test".into(),
            store_vendor: "none".into(),
            network: Network::Dev,
            network_identifier: BlockHash([0; 32]),
            build_info: "test".into(),
        }
    }
    fn representatives_online(&self) -> Vec<(PublicKey, u128)> {
        Vec::new()
    }
    fn quorum(&self) -> QuorumInfo {
        QuorumInfo::default()
    }
    fn local_telemetry(&self) -> TelemetryData {
        TelemetryData::default()
    }
    fn telemetry(&self) -> Vec<(SocketAddr, TelemetryData)> {
        Vec::new()
    }
    fn peering_port(&self) -> u16 {
        44000
    }
    fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot::default()
    }
}

fn start(at: &str, options: ServerOptions) -> (HttpServer, Arc<Recorder>) {
    let node = Arc::new(Recorder::default());
    let server = HttpServer::start(at.parse().unwrap(), node.clone(), options).unwrap();
    (server, node)
}

/// Sends `request`; returns (status, content type, body).
fn send(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").expect("a response head");
    let status = head[9..12].parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_string();
    (status, ctype, body.to_string())
}

/// `POST /` with `Host: host` (`None`: no Host header, HTTP/1.1 unless `http10`).
fn post(addr: SocketAddr, host: Option<&str>, body: &Value) -> (u16, String, String) {
    let body = body.to_string();
    let host = host.map_or(String::new(), |h| format!("Host: {h}\r\n"));
    send(
        addr,
        &format!(
            "POST / HTTP/1.1\r\n{host}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn keepalive() -> Value {
    json!({"action": "keepalive", "address": "127.0.0.1", "port": "44001"})
}

#[test]
fn control_actions_are_refused_unless_control_is_enabled() {
    // default: off, like nano-node
    assert!(!ServerOptions::default().enable_control);
    let (s, node) = start("127.0.0.1:0", ServerOptions::default());
    let a = s.local_addr();
    let (status, ctype, body) = post(a, Some("localhost"), &keepalive());
    assert_eq!((status, ctype.as_str()), (200, "application/json"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, json!({"error": "RPC control is disabled"}));
    assert_eq!(v["error"], CONTROL_DISABLED);
    assert!(
        node.keepalives.lock().unwrap().is_empty(),
        "the node was not asked to dial"
    );
    // read-only actions still answer
    let (_, _, body) = post(a, Some("localhost"), &json!({"action": "version"}));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["rpc_version"],
        "1"
    );
    s.stop();

    let (s, node) = start(
        "127.0.0.1:0",
        ServerOptions {
            enable_control: true,
            ..ServerOptions::default()
        },
    );
    let (status, _, body) = post(s.local_addr(), Some("localhost"), &keepalive());
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"started": "1"})
    );
    assert_eq!(
        *node.keepalives.lock().unwrap(),
        vec!["127.0.0.1:44001".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn foreign_hosts_are_refused_on_rpc_and_metrics() {
    let (s, _) = start("127.0.0.1:0", ServerOptions::default());
    let a = s.local_addr();
    let version = json!({"action": "version"});
    let bound = a.to_string();
    let accepted = [
        "localhost",
        "localhost:7076",
        "127.0.0.1",
        bound.as_str(),
        "[::1]",
        "[::1]:7076",
    ];
    for host in accepted {
        let (status, _, body) = post(a, Some(host), &version);
        assert_eq!(status, 200, "{host}: {body}");
        let metrics = send(a, &format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        assert_eq!(metrics.0, 200, "{host}");
        parse_text(&metrics.2).unwrap();
    }
    let port = a.port();
    let rebound = format!("attacker.example:{port}");
    for host in [
        "attacker.example",
        rebound.as_str(),
        "127.0.0.2",
        "192.0.2.1",
        "localhost.attacker.example",
    ] {
        let (status, ctype, body) = post(a, Some(host), &version);
        assert_eq!(
            (status, ctype.as_str()),
            (403, "application/json"),
            "{host}"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"error": "Host not allowed"}),
            "{host}"
        );
        let (status, _, body) = send(a, &format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        assert_eq!(status, 403, "{host}: {body}");
        assert!(!body.contains("nanopeer_"), "{body}");
    }
    // HTTP/1.1 needs exactly one Host; HTTP/1.0 may omit it
    assert_eq!(post(a, None, &version).0, 400);
    let two = send(
        a,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nHost: attacker.example\r\n\r\n",
    );
    assert_eq!(two.0, 400);
    assert_eq!(send(a, "GET /metrics HTTP/1.0\r\n\r\n").0, 200);
    // a refused Host never reaches the node, control or not
    s.stop();
    let (s, node) = start(
        "127.0.0.1:0",
        ServerOptions {
            enable_control: true,
            ..ServerOptions::default()
        },
    );
    assert_eq!(
        post(s.local_addr(), Some("attacker.example"), &keepalive()).0,
        403
    );
    assert!(node.keepalives.lock().unwrap().is_empty());
}

#[test]
fn a_server_on_ipv6_loopback_accepts_its_own_address() {
    // skipped where the host has no IPv6 loopback
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        println!("skipped: no IPv6 loopback on this host");
        return;
    };
    drop(probe);
    let (s, _) = start("[::1]:0", ServerOptions::default());
    let a = s.local_addr();
    let host = a.to_string();
    assert_eq!(post(a, Some(&host), &json!({"action": "version"})).0, 200);
    assert_eq!(
        post(a, Some("localhost"), &json!({"action": "version"})).0,
        200
    );
    assert_eq!(
        post(a, Some("evil.example"), &json!({"action": "version"})).0,
        403
    );
}
