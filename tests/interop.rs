//! Interop with a reference Nano node (RsNano or the C++ nano-node) on the **dev** network,
//! loopback only. Ignored by default because it needs that node running; see README "Interop with
//! a reference node" for how to start one (with the dev genesis key loaded as a representative).
//!
//! ```sh
//! NANOPEER_REF_PEER=127.0.0.1:44100 NANOPEER_REF_RPC=127.0.0.1:45100 \
//!   cargo test --release --test interop -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Checks, in one run: nanopeer dials the reference node and completes a v2 handshake; the
//! reference node dials nanopeer (RPC `keepalive`) and completes one too; each lists the other
//! (nanopeer's `peers()`, the reference's RPC `peers` with `peer_details`); keepalives flow both
//! ways; the channel outlives the idle cutoff without reconnecting; nanopeer's rep crawler finds
//! the genesis representative voting on the reference node (confirm_req → verified confirm_ack)
//! and reports quorum.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nanopeer::crypto::{decode_account, genesis_account};
use nanopeer::io::ShardConfig;
use nanopeer::node::{Node, NodeOptions};
use nanopeer::types::{Network, PublicKey};
use nanopeer::wire::MessageType;
use serde_json::{Value, json};

fn env_addr(name: &str) -> SocketAddr {
    let v = std::env::var(name).unwrap_or_else(|_| panic!("set {name} (see the file docs)"));
    let a: SocketAddr = v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}"));
    assert!(a.ip().is_loopback(), "{name} must be a loopback address");
    a
}

/// One JSON RPC call to the reference node.
fn rpc(addr: SocketAddr, body: Value) -> Value {
    let body = body.to_string();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("rpc connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("rpc response");
    let json = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("rpc {body}: {e}: {resp}"))
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// Node ids the reference node lists in RPC `peers` (with `peer_details`).
fn ref_peer_ids(rpc_addr: SocketAddr) -> Vec<PublicKey> {
    let v = rpc(rpc_addr, json!({"action": "peers", "peer_details": "true"}));
    let Some(peers) = v["peers"].as_object() else {
        return Vec::new();
    };
    peers
        .values()
        .filter_map(|p| p["node_id"].as_str())
        .filter_map(|t| decode_account(t).ok())
        .collect()
}

fn ref_node_id(rpc_addr: SocketAddr) -> PublicKey {
    let v = rpc(rpc_addr, json!({"action": "node_id"}));
    let text = v["node_id"].as_str().expect("node_id in RPC answer");
    decode_account(text).expect("node_ id text")
}

fn start(dir: &std::path::Path, peers: Vec<String>) -> Node {
    let mut o = NodeOptions::new(Network::Dev, dir);
    o.listen = "127.0.0.1:0".parse().unwrap();
    o.shards = Some(1);
    o.preconfigured_peers = Some(peers);
    o.io = ShardConfig {
        max_connections: 256,
        ..ShardConfig::default()
    };
    Node::start(o).expect("nanopeer starts")
}

#[test]
#[ignore = "needs a reference node: see the file docs"]
fn interop_with_reference_node() {
    let peer = env_addr("NANOPEER_REF_PEER");
    let ref_rpc = env_addr("NANOPEER_REF_RPC");
    let ref_id = ref_node_id(ref_rpc);
    println!("reference node id {}", ref_id.to_node_id());

    // 1. nanopeer dials the reference node.
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), vec![peer.to_string()]);
    let our_id = node.node_id();
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || node
            .peers()
            .iter()
            .any(|p| p.node_id == ref_id)),
        "nanopeer did not list the reference node: {:?}",
        node.peers()
    );
    println!("outbound handshake + channel in {:?}", t0.elapsed());
    assert!(
        wait_until(Duration::from_secs(10), || ref_peer_ids(ref_rpc)
            .contains(&our_id)),
        "the reference node does not list nanopeer"
    );

    // 2. keepalives both ways, and the rep crawler finds the genesis representative.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let st = node.rep_status();
            st.sufficient
                && st
                    .representatives
                    .iter()
                    .any(|r| r.account == genesis_account(Network::Dev))
        }),
        "rep crawler did not find the genesis representative: {:?}",
        node.rep_status()
    );
    // counters are published every ~100 ms: wait for them
    assert!(wait_until(Duration::from_secs(5), || {
        let s = node.stats().proto;
        s.messages_in[MessageType::ConfirmAck.as_u8() as usize] > 0
            && s.messages_in[MessageType::Keepalive.as_u8() as usize] > 0
            && s.messages_out[MessageType::Keepalive.as_u8() as usize] > 0
    }));
    let s = node.stats().proto;
    let ka_in = s.messages_in[MessageType::Keepalive.as_u8() as usize];
    let ka_out = s.messages_out[MessageType::Keepalive.as_u8() as usize];
    let acks_in = s.messages_in[MessageType::ConfirmAck.as_u8() as usize];
    println!("keepalive in {ka_in} out {ka_out}; confirm_ack in {acks_in}");
    assert!(ka_in > 0 && ka_out > 0, "keepalives flow both ways");
    assert!(acks_in > 0, "votes arrived");
    let st = node.rep_status();
    println!(
        "rep status: sufficient {} online {} delta {} reps {:?}",
        st.sufficient, st.online_weight, st.delta, st.representatives
    );

    // 3. The channel outlives the dev idle cutoff (15 s idle timeout, 5 s purge cutoff) without
    //    reconnecting: the same single handshake, still listed on both sides.
    std::thread::sleep(Duration::from_millis(300));
    let ok_before = node
        .stats()
        .proto
        .handshake
        .get(nanopeer::proto::events::HandshakeOutcome::Ok);
    std::thread::sleep(Duration::from_secs(20));
    assert!(node.peers().iter().any(|p| p.node_id == ref_id));
    assert!(ref_peer_ids(ref_rpc).contains(&our_id));
    let ok_after = node
        .stats()
        .proto
        .handshake
        .get(nanopeer::proto::events::HandshakeOutcome::Ok);
    assert_eq!(ok_before, ok_after, "no reconnect during the idle window");
    assert_eq!(ok_after, 1, "exactly one handshake");
    node.stop().expect("stop");

    // 4. The reference node dials nanopeer (RPC keepalive → its outbound handshake).
    let dir2 = tempfile::tempdir().unwrap();
    let node2 = start(dir2.path(), Vec::new());
    let port = node2.local_addr().port();
    let v = rpc(
        ref_rpc,
        json!({"action": "keepalive", "address": "127.0.0.1", "port": port.to_string()}),
    );
    println!("reference keepalive RPC: {v}");
    assert!(
        wait_until(Duration::from_secs(15), || node2
            .peers()
            .iter()
            .any(
                |p| p.node_id == ref_id && p.direction == nanopeer::channels::Direction::Inbound
            )),
        "the reference node did not complete an inbound handshake: {:?}",
        node2.peers()
    );
    assert!(wait_until(Duration::from_secs(10), || ref_peer_ids(
        ref_rpc
    )
    .contains(&node2.node_id())));
    println!("inbound handshake from the reference node: ok");
    node2.stop().expect("stop");
}
