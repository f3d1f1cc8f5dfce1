//! Whole nodes on loopback with real io_uring shards (dev network, one shard each, ephemeral
//! ports, data directories in temporary folders).
//!
//! Tests run one at a time (a global lock) to keep timings sane on a loaded 2-core machine.
//! Every wait polls with a deadline.

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use nanopeer::channels::Direction;
use nanopeer::crypto::{KeyPair, genesis_hash};
use nanopeer::node::{Node, NodeError, NodeOptions, NodeStats};
use nanopeer::types::{Cookie, Network, PublicKey};
use nanopeer::wire::{
    HandshakeResponse, Keepalive, Message, NodeIdHandshake, ResponseV2, decode_message,
};

mod common;
use common::{serial, wait_until};

fn opts(dir: &Path, peers: &[SocketAddr]) -> NodeOptions {
    let mut o = common::small_node(dir, 1, 256);
    o.preconfigured_peers = Some(peers.iter().map(|p| p.to_string()).collect());
    o
}

fn start(dir: &Path, peers: &[SocketAddr]) -> Node {
    Node::start(opts(dir, peers)).expect("node starts")
}

fn knows(node: &Node, id: &PublicKey) -> bool {
    node.peers().iter().any(|p| p.node_id == *id)
}

#[test]
fn two_nodes_handshake_and_list_each_other() {
    let _g = serial();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b = start(db.path(), &[]);
    let a = start(da.path(), &[b.local_addr()]);
    assert_ne!(a.node_id(), b.node_id());
    assert!(
        wait_until(Duration::from_secs(5), || knows(&a, &b.node_id())
            && knows(&b, &a.node_id())),
        "a: {:?}\nb: {:?}",
        a.peers(),
        b.peers()
    );
    let pa = a.peers();
    let pb = b.peers();
    assert_eq!(pa.len(), 1);
    assert_eq!(pb.len(), 1);
    assert_eq!(pa[0].direction, Direction::Outbound);
    assert_eq!(pa[0].endpoint, b.local_addr());
    assert_eq!(pb[0].direction, Direction::Inbound);
    assert_eq!(pb[0].endpoint.ip(), a.local_addr().ip());
    assert_eq!(pa[0].protocol_version, 0x15);
    // B learns A's listening port from A's keepalive_self (slot 0).
    assert!(
        wait_until(Duration::from_secs(5), || b
            .peers()
            .first()
            .is_some_and(|p| p.peering_endpoint == a.local_addr())),
        "b: {:?}",
        b.peers()
    );
    // One handshake each, both signatures checked through the batch verifier.
    assert!(wait_until(Duration::from_secs(2), || {
        let (sa, sb) = (a.stats(), b.stats());
        sa.proto.handshake.ok == 1 && sb.proto.handshake.ok == 1 && sa.batch.requests >= 1
    }));
    let sa = a.stats();
    assert_eq!(sa.channels, 1);
    assert_eq!(sa.proto.handshake.invalid_signature, 0);
    assert!(sa.io.connects_ok >= 1);
    assert!(b.stats().io.accepted >= 1);
    // Verify batches: every flush is counted in one size bucket.
    let b_stats = sa.batch;
    assert_eq!(b_stats.sizes.iter().sum::<u64>(), b_stats.flushes);
    assert_eq!(
        b_stats.flushes,
        b_stats.flush_full + b_stats.flush_delay + b_stats.flush_sleep
    );
    assert_eq!(b_stats.invalid_keys, 0);
    // Telemetry is broadcast every 500 ms on dev, verified and cached by the crawler.
    assert!(
        wait_until(Duration::from_secs(5), || a
            .telemetry()
            .iter()
            .any(|t| t.node_id == b.node_id() && t.data.node_id == b.node_id())),
        "no telemetry from b: {:?}",
        a.telemetry()
    );
    assert!(a.stats().crawler.stats.channels_up >= 1);
    let rs = a.rep_status();
    assert!(rs.delta > 0, "{rs:?}");
    // keepalive to a connected peer is refused by the reachout rules
    match a.keepalive(b.local_addr()) {
        Err(NodeError::Refused { .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    let t = Instant::now();
    a.stop().unwrap();
    b.stop().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn six_nodes_from_one_seed_converge() {
    let _g = serial();
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let seed = start(dirs[0].path(), &[]);
    let mut nodes = vec![seed];
    for d in &dirs[1..] {
        let s = nodes[0].local_addr();
        nodes.push(start(d.path(), &[s]));
    }
    let ids: Vec<PublicKey> = nodes.iter().map(|n| n.node_id()).collect();
    let converged = wait_until(Duration::from_secs(20), || {
        nodes.iter().enumerate().all(|(i, n)| {
            let known: HashSet<PublicKey> = n.peers().iter().map(|p| p.node_id).collect();
            ids.iter()
                .enumerate()
                .filter(|(j, id)| *j != i && known.contains(id))
                .count()
                >= 5
        })
    });
    assert!(
        converged,
        "{:#?}",
        nodes
            .iter()
            .map(|n| (n.local_addr(), n.peers().len()))
            .collect::<Vec<_>>()
    );
    for n in &nodes {
        // no node holds two channels to the same peer
        let peers = n.peers();
        let distinct: HashSet<PublicKey> = peers.iter().map(|p| p.node_id).collect();
        assert_eq!(distinct.len(), peers.len(), "{peers:?}");
        assert!(!distinct.contains(&n.node_id()));
    }
    for n in nodes {
        n.stop().unwrap();
    }
}

#[test]
fn full_batches_flush_at_batch_max() {
    let _g = serial();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut o = opts(db.path(), &[]);
    o.batch_max = 1;
    let b = Node::start(o).unwrap();
    let mut o = opts(da.path(), &[b.local_addr()]);
    o.batch_max = 1;
    let a = Node::start(o).unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        let s = a.stats().batch;
        knows(&a, &b.node_id()) && s.flush_full >= 1
    }));
    let s = a.stats().batch;
    // a batch of one is full as soon as it has its item
    assert_eq!(s.flush_sleep + s.flush_delay, 0, "{s:?}");
    assert_eq!(s.sizes[0], s.flushes);
    a.stop().unwrap();
    b.stop().unwrap();
}

#[test]
fn restarted_node_reconnects_from_its_peer_store() {
    let _g = serial();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b = start(db.path(), &[]);
    let a = start(da.path(), &[b.local_addr()]);
    assert!(wait_until(Duration::from_secs(5), || knows(
        &a,
        &b.node_id()
    ) && knows(
        &b,
        &a.node_id()
    )));
    let a_id = a.node_id();
    assert!(a.store_ok());
    a.stop().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !knows(&b, &a_id)),
        "b still lists a"
    );
    // No configured peers: only the peer store can bring B back.
    let a = start(da.path(), &[]);
    assert_eq!(a.node_id(), a_id, "the node key persists");
    assert!(
        wait_until(Duration::from_secs(5), || knows(&a, &b.node_id())
            && knows(&b, &a_id)),
        "a: {:?}",
        a.peers()
    );
    assert_eq!(a.peers()[0].direction, Direction::Outbound);
    a.stop().unwrap();
    b.stop().unwrap();
}

#[test]
fn a_second_node_on_the_same_data_dir_is_refused() {
    let _g = serial();
    let d = tempfile::tempdir().unwrap();
    let a = start(d.path(), &[]);
    let err = Node::start(opts(d.path(), &[])).expect_err("the store is locked");
    let text = err.to_string();
    assert!(text.contains("peers.redb"), "{text}");
    a.stop().unwrap();
    // a data path that is a file
    let f = d.path().join("file");
    std::fs::write(&f, b"x").unwrap();
    let err = Node::start(opts(&f, &[])).expect_err("not a directory");
    assert!(err.to_string().contains("file"), "{err}");
}

// ---- hostile input ------------------------------------------------------------------------

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads until EOF or error: true if the node closed the connection (within the timeout).
fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

fn keepalive_bytes() -> Vec<u8> {
    Message::Keepalive(Keepalive::default()).encode(Network::Dev)
}

fn stats_until(node: &Node, what: &str, f: impl Fn(&NodeStats) -> bool) -> NodeStats {
    let ok = wait_until(Duration::from_secs(3), || f(&node.stats()));
    let s = node.stats();
    assert!(ok, "{what}: {:?}", s.proto);
    s
}

#[test]
fn hostile_input_is_rejected_and_the_node_keeps_serving() {
    let _g = serial();
    let (dn, df) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node = start(dn.path(), &[]);
    let addr = node.local_addr();

    // 1. garbage: not a header of our network → header error, connection closed
    let mut s = connect(addr);
    s.write_all(&[0xde; 64]).unwrap();
    assert!(closed_by_peer(&mut s), "garbage left the connection open");
    stats_until(&node, "garbage", |s| s.proto.closes.header_error == 1);

    // 2. a valid keepalive of another network (live) → header error
    let mut s = connect(addr);
    let mut m = keepalive_bytes();
    m[0..2].copy_from_slice(&Network::Live.id().to_be_bytes());
    s.write_all(&m).unwrap();
    assert!(
        closed_by_peer(&mut s),
        "wrong network left the connection open"
    );
    stats_until(&node, "wrong network", |s| s.proto.closes.header_error == 2);

    // 3. version_using below the minimum (0x13 < 0x14) → header error
    let mut s = connect(addr);
    let mut m = keepalive_bytes();
    m[3] = 0x13;
    s.write_all(&m).unwrap();
    assert!(
        closed_by_peer(&mut s),
        "old version left the connection open"
    );
    stats_until(&node, "old version", |s| s.proto.closes.header_error == 3);

    // 4. a keepalive before the handshake → closed (§6.2)
    let mut s = connect(addr);
    s.write_all(&keepalive_bytes()).unwrap();
    assert!(
        closed_by_peer(&mut s),
        "keepalive before handshake was accepted"
    );
    stats_until(&node, "message before handshake", |s| {
        s.proto.closes.message_before_handshake == 1
    });

    // 5. a handshake whose final response carries a bad signature → closed
    let mut s = connect(addr);
    let query = Message::NodeIdHandshake(NodeIdHandshake::query(Cookie([5; 32])));
    s.write_all(&query.encode(Network::Dev)).unwrap();
    let mut reply = [0u8; 8 + 192];
    s.read_exact(&mut reply).expect("the node answers a query");
    let (_, msg) = decode_message(&reply, Network::Dev).expect("a valid handshake reply");
    let Message::NodeIdHandshake(hs) = msg else {
        panic!("expected node_id_handshake, got {msg:?}");
    };
    let node_cookie = hs.query.expect("the node asks us a query").cookie;
    let resp = hs.response.expect("the node answers our query");
    assert_eq!(resp.node_id, node.node_id());
    let key = KeyPair::from_private([9; 32]);
    let v2 = ResponseV2 {
        salt: Cookie([3; 32]),
        genesis: genesis_hash(Network::Dev),
    };
    // well-formed, signed by the right key, but over the wrong bytes
    let ours = HandshakeResponse {
        node_id: key.public(),
        v2: Some(v2),
        signature: key.sign(&[0u8; 96]),
    };
    assert_ne!(ours.signed_data(&node_cookie).as_bytes(), &[0u8; 96][..]);
    let m = Message::NodeIdHandshake(NodeIdHandshake::response(ours));
    s.write_all(&m.encode(Network::Dev)).unwrap();
    assert!(closed_by_peer(&mut s), "a bad signature was accepted");
    let st = stats_until(&node, "bad signature", |s| {
        s.proto.handshake.invalid_signature == 1
    });
    assert_eq!(st.proto.handshake.ok, 0);
    assert!(node.peers().is_empty());
    assert_eq!(st.proto.closes.header_error, 3);
    assert!(
        st.batch.requests >= 1,
        "the response went through the verifier"
    );

    // 6. the node still serves an honest peer
    let fresh = start(df.path(), &[addr]);
    assert!(
        wait_until(Duration::from_secs(5), || knows(&node, &fresh.node_id())
            && knows(&fresh, &node.node_id())),
        "the node no longer serves honest peers"
    );
    stats_until(&node, "honest handshake", |s| s.proto.handshake.ok == 1);
    fresh.stop().unwrap();
    node.stop().unwrap();
}
