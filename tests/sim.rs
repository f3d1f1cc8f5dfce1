//! Deterministic simulations: many nodes (shard core + crawler core each) on an in-memory
//! network with a virtual clock and one seeded RNG. The harness is in `tests/sim/net.rs`.

#[path = "sim/net.rs"]
mod net;

use std::net::{SocketAddr, SocketAddrV6};
use std::sync::{Arc, Barrier};

use nanopeer::channels::{ChannelLimits, ChannelMap, Direction};
use nanopeer::crypto::{
    KeyPair, WorkThresholds, block_hash, genesis_block, genesis_hash, verify, work_value,
};
use nanopeer::proto::addr::IpKey;
use nanopeer::proto::config::ProtoConfig;
use nanopeer::proto::events::{CloseReason, ConnId, HandshakeOutcome, IoAction, ShardCommand};
use nanopeer::proto::exclusion::PeerExclusion;
use nanopeer::proto::filter::DuplicateFilter;
use nanopeer::proto::identity::NodeIdentity;
use nanopeer::proto::repcrawler::RepCrawlerConfig;
use nanopeer::proto::shard::{ShardCore, ShardOutput, ShardShared};
use nanopeer::types::{Amount, BlockHash, Cookie, Signature};
use nanopeer::wire::{Block, Message, NodeIdHandshake, StateBlock, decode_message};
use net::*;
use parking_lot::Mutex;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// `n` nodes, node 0 the only preconfigured peer of the others.
fn star(seed: u64, n: usize, cfg: NetConfig, tweak: impl Fn(&mut NodeOpts)) -> SimNet {
    let mut sim = SimNet::new(seed, cfg);
    let zero = NodeOpts::new(0).endpoint();
    for i in 0..n {
        let mut o = NodeOpts::new(i);
        if i > 0 {
            o.preconfigured = vec![zero];
        }
        tweak(&mut o);
        sim.add_node(o);
    }
    sim
}

// ---- two nodes ----

#[test]
fn two_nodes_handshake_v2_and_list_each_other() {
    let mut sim = star(1, 2, NetConfig::default(), |_| {});
    let t = sim.run_until_pred(5_000, |s| s.all_degrees_at_least(1));
    let t = t.expect("two nodes connect");
    assert!(t < 1_000, "connected at {t} ms");
    sim.run_for(3_000);
    let (a, b) = (&sim.nodes[0], &sim.nodes[1]);
    let ab = a.channel_to(&b.node_id()).expect("0 lists 1");
    let ba = b.channel_to(&a.node_id()).expect("1 lists 0");
    assert_eq!(a.channel_list().len(), 1);
    assert_eq!(b.channel_list().len(), 1);
    // Node 1 dialed node 0 (its preconfigured peer): outbound to 0's listening endpoint;
    // node 0 sees 1's IP with an ephemeral port, and learned 1's peering port from slot 0.
    assert_eq!(ba.direction(), Direction::Outbound);
    assert_eq!(ba.remote(), a.endpoint());
    assert_eq!(ab.direction(), Direction::Inbound);
    assert_eq!(ab.remote().ip(), b.endpoint().ip());
    assert_ne!(ab.remote().port(), b.endpoint().port());
    assert_eq!(ab.peering_endpoint(), b.endpoint());
    assert_eq!(a.shard.stats().handshake.ok, 1);
    assert_eq!(b.shard.stats().handshake.ok, 1);
    assert!(ab.protocol_version() >= 0x14);
    sim.assert_channels_consistent();
    // Keepalives flow and keep the channel (dev cleanup cutoff is 5 s; we ran 3 s more).
    assert!(a.crawler.stats().keepalives_received > 1);
    assert!(b.crawler.stats().keepalives_received > 1);
}

#[test]
fn v1_client_is_accepted() {
    let mut sim = star(2, 1, NetConfig::default(), |_| {});
    let node_id = sim.nodes[0].node_id();
    let raw = sim.raw_connect(9, 50_123, 0);
    // v1 query (ext 0x0001).
    let mut q = NodeIdHandshake::query(Cookie([0x11; 32]));
    q.query.as_mut().unwrap().v2 = false;
    let bytes = Message::NodeIdHandshake(q).encode(NET);
    assert_eq!(bytes[6], 0x01);
    sim.transmit(RAW, raw, bytes);
    sim.run_for(100);
    let inbox = sim.raw_inbox.remove(&raw).expect("node answered");
    let (h, Message::NodeIdHandshake(reply)) = decode_message(&inbox[0], NET).unwrap() else {
        panic!("expected a handshake")
    };
    assert_eq!(h.extensions.0 & 0x3, 0x3, "query + response");
    let r = reply.response.unwrap();
    assert!(r.v2.is_none(), "a v1 query gets a v1 response");
    assert_eq!(r.node_id, node_id);
    assert!(verify(&[0x11; 32], &r.signature, &node_id));
    // v1 response to the node's cookie.
    let client = NodeIdentity::from_private([0x77; 32]);
    let resp = client.handshake_response(&reply.query.unwrap().cookie, None);
    let bytes = Message::NodeIdHandshake(NodeIdHandshake::response(resp)).encode(NET);
    sim.transmit(RAW, raw, bytes);
    sim.run_for(100);
    let ch = sim.nodes[0]
        .channel_to(&client.node_id())
        .expect("v1 client has a channel");
    assert_eq!(ch.remote(), ep(9, 50_123));
    assert!(sim.raw_open(raw));
    // The node treats it as realtime: keepalive_self + rep crawler confirm_req arrive.
    let types: Vec<_> = sim.raw_inbox[&raw]
        .iter()
        .map(|b| decode_message(b, NET).unwrap().1.message_type())
        .collect();
    assert!(types.contains(&nanopeer::wire::MessageType::Keepalive), "{types:?}");
    assert!(types.contains(&nanopeer::wire::MessageType::ConfirmReq), "{types:?}");
}
