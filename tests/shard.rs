//! Shard cores driven in-process: two nodes shuttle each other's bytes, verify requests are
//! resolved with `crypto::verify`, and hand-made peers exercise v1 and every §6.3 failure.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use nanopeer::channels::{ChannelId, ChannelLimits, ChannelMap};
use nanopeer::crypto::{KeyPair, WorkThresholds, block_hash, genesis_hash, verify, work_value};
use nanopeer::endpoint::Endpoint;
use nanopeer::proto::config::ProtoConfig;
use nanopeer::proto::events::{
    CloseReason, ConnId, CrawlerEvent, HandshakeOutcome, IoAction, Misbehaviour, ShardCommand,
};
use nanopeer::proto::exclusion::PeerExclusion;
use nanopeer::proto::filter::DuplicateFilter;
use nanopeer::proto::identity::NodeIdentity;
use nanopeer::proto::online::OnlineReps;
use nanopeer::proto::repcrawler::{QueryBoard, RepCrawler, RepCrawlerConfig};
use nanopeer::proto::shard::{Screening, ShardCore, ShardOutput, ShardShared};
use nanopeer::proto::telemetry::local_telemetry;
use nanopeer::proto::weights::RepWeights;
use nanopeer::types::{Amount, BlockHash, Cookie, Network, PublicKey, Signature};
use nanopeer::wire::{
    Block, ConfirmAck, Extensions, Header, Keepalive, Message, MessageType, NodeIdHandshake,
    Publish, StateBlock, TelemetryAck, Vote, decode_message,
};
use parking_lot::Mutex;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const NET: Network = Network::Dev;

struct Node {
    core: ShardCore,
    shared: ShardShared,
    rng: ChaCha8Rng,
}

fn node_with(
    seed: u64,
    key: u8,
    limits: ChannelLimits,
    tweak: impl FnOnce(&mut ProtoConfig),
) -> Node {
    node_on_board(seed, key, limits, Arc::new(QueryBoard::new(NET)), tweak)
}

/// A node whose shard picks first queries from `board`.
fn node_on_board(
    seed: u64,
    key: u8,
    limits: ChannelLimits,
    board: Arc<QueryBoard>,
    tweak: impl FnOnce(&mut ProtoConfig),
) -> Node {
    let mut config = ProtoConfig::for_network(NET);
    config.listen_port = 44_000 + key as u16;
    tweak(&mut config);
    let shared = ShardShared {
        channels: Arc::new(ChannelMap::new(limits)),
        filter: Arc::new(DuplicateFilter::new(1 << 12, [seed as u8; 16], 60_000)),
        config: Arc::new(config),
        identity: Arc::new(NodeIdentity::from_private([key; 32])),
        exclusion: Arc::new(Mutex::new(PeerExclusion::new())),
        query_board: board,
    };
    Node {
        core: ShardCore::new(0, shared.clone()),
        shared,
        rng: ChaCha8Rng::seed_from_u64(seed),
    }
}

fn node(seed: u64, key: u8) -> Node {
    node_with(seed, key, ChannelLimits::for_network(NET), |_| {})
}

/// What a node produced, with its verify requests resolved by real verification.
#[derive(Default)]
struct Got {
    io: Vec<IoAction>,
    events: Vec<CrawlerEvent>,
}

impl Got {
    fn sends(&self) -> Vec<Vec<u8>> {
        self.io
            .iter()
            .filter_map(|a| match a {
                IoAction::Send { bytes, .. } => Some(bytes.clone()),
                _ => None,
            })
            .collect()
    }
    fn close(&self) -> Option<CloseReason> {
        self.io.iter().find_map(|a| match a {
            IoAction::Close { reason, .. } => Some(*reason),
            _ => None,
        })
    }
    fn messages(&self) -> Vec<Message> {
        self.sends()
            .iter()
            .map(|b| decode_message(b, NET).unwrap().1)
            .collect()
    }
}

impl Node {
    fn settle(&mut self, mut out: ShardOutput, now: u64, got: &mut Got) {
        loop {
            got.io.append(&mut out.io);
            got.events.append(&mut out.events);
            let requests = std::mem::take(&mut out.verify);
            if requests.is_empty() {
                return;
            }
            for v in requests {
                let ok = verify(v.message.as_bytes(), &v.signature, &v.key);
                self.core
                    .on_verified(v.id, ok, now, &mut self.rng, &mut out);
            }
        }
    }

    fn connect(&mut self, conn: u64, remote: &str, outbound: bool, now: u64) -> Got {
        let mut out = ShardOutput::default();
        let remote: SocketAddr = remote.parse().unwrap();
        self.core.on_connected(
            ConnId(conn),
            remote.into(),
            outbound,
            now,
            &mut self.rng,
            &mut out,
        );
        let mut got = Got::default();
        self.settle(out, now, &mut got);
        got
    }

    fn bytes(&mut self, conn: u64, bytes: &[u8], now: u64) -> Got {
        let mut out = ShardOutput::default();
        self.core
            .on_bytes(ConnId(conn), bytes, now, &mut self.rng, &mut out);
        let mut got = Got::default();
        self.settle(out, now, &mut got);
        got
    }

    fn node_id(&self) -> PublicKey {
        self.shared.identity.node_id()
    }
}

/// Runs A (dialing) against B until quiet; returns everything each produced.
fn pair(a: &mut Node, b: &mut Node, a_sees_b: &str, b_sees_a: &str) -> (Got, Got) {
    let (mut ga, mut gb) = (Got::default(), Got::default());
    let first = a.connect(1, a_sees_b, true, 0);
    let mut to_b = first.sends();
    ga.io.extend(first.io);
    ga.events.extend(first.events);
    let g = b.connect(1, b_sees_a, false, 0);
    gb.io.extend(g.io);
    let mut to_a: Vec<Vec<u8>> = Vec::new();
    for _ in 0..10 {
        for m in std::mem::take(&mut to_b) {
            let g = b.bytes(1, &m, 1);
            to_a.extend(g.sends());
            gb.io.extend(g.io);
            gb.events.extend(g.events);
        }
        for m in std::mem::take(&mut to_a) {
            let g = a.bytes(1, &m, 1);
            to_b.extend(g.sends());
            ga.io.extend(g.io);
            ga.events.extend(g.events);
        }
        if to_a.is_empty() && to_b.is_empty() {
            break;
        }
    }
    (ga, gb)
}

fn sent_types(g: &Got) -> Vec<MessageType> {
    g.messages().iter().map(|m| m.message_type()).collect()
}

#[test]
fn v2_handshake_completes_both_ways() {
    let mut a = node(1, 1);
    let mut b = node(2, 2);
    let (ga, gb) = pair(&mut a, &mut b, "127.0.0.1:44002", "127.0.0.1:50000");
    assert_eq!(ga.close(), None);
    assert_eq!(gb.close(), None);
    // A: query, response, keepalive_self + first rep query; B: query+response,
    // keepalive_self + first rep query.
    assert_eq!(
        sent_types(&ga),
        [
            MessageType::NodeIdHandshake,
            MessageType::NodeIdHandshake,
            MessageType::Keepalive,
            MessageType::ConfirmReq
        ]
    );
    assert_eq!(
        sent_types(&gb),
        [
            MessageType::NodeIdHandshake,
            MessageType::Keepalive,
            MessageType::ConfirmReq
        ]
    );
    let exts: Vec<u16> = ga
        .sends()
        .iter()
        .chain(gb.sends().iter())
        .map(|s| decode_message(s, NET).unwrap().0.extensions.0)
        .collect();
    assert_eq!(&exts[..2], &[0x0005, 0x0006]);
    assert_eq!(exts[4], 0x0007);
    // Each map holds the other's node id at the right endpoint.
    let ca = a.shared.channels.find_node_id(&b.node_id()).unwrap();
    assert_eq!(
        ca.remote(),
        Endpoint::from("127.0.0.1:44002".parse::<SocketAddr>().unwrap())
    );
    let cb = b.shared.channels.find_node_id(&a.node_id()).unwrap();
    assert_eq!(
        cb.remote(),
        Endpoint::from("127.0.0.1:50000".parse::<SocketAddr>().unwrap())
    );
    assert!(
        matches!(ga.events.as_slice(), [CrawlerEvent::ChannelUp(c, Some(_)), ..] if c.id() == ca.id())
    );
    // keepalive_self: slot 0 [::]:listen port; B learns A's peering port from it, and A
    // reports B's keepalive as an event.
    let Message::Keepalive(k) = &ga.messages()[2] else {
        panic!()
    };
    assert_eq!(k.peers[0].port(), 44_001);
    assert!(k.peers[0].ip().is_unspecified());
    assert_eq!(cb.peering_endpoint().port(), 44_001);
    assert!(
        gb.events
            .iter()
            .any(|e| matches!(e, CrawlerEvent::Keepalive { .. }))
    );
    assert_eq!(a.core.stats().handshake.ok, 1);
    assert_eq!(b.core.stats().handshake.ok, 1);
    assert_eq!(a.core.conn_of(ca.id()), Some(ConnId(1)));
    // Closing removes the channel and reports it.
    let mut out = ShardOutput::default();
    a.core.on_closed(ConnId(1), 5, &mut out);
    assert!(matches!(out.events.as_slice(), [CrawlerEvent::ChannelDown(c)] if c.id() == ca.id()));
    assert!(a.shared.channels.is_empty());
    // A send to the closed channel is dropped and counted.
    a.core.on_command(
        ShardCommand::Send {
            channel: ca.id(),
            bytes: Arc::from(&b"x"[..]),
        },
        6,
        &mut a.rng,
        &mut out,
    );
    assert_eq!(a.core.stats().send_to_closed, 1);
}

#[test]
fn same_node_id_on_both_sides_is_own_node_id() {
    let mut a = node(1, 7);
    let mut b = node(2, 7);
    let (ga, gb) = pair(&mut a, &mut b, "127.0.0.1:44002", "127.0.0.1:50000");
    let own = Some(CloseReason::Handshake(HandshakeOutcome::OwnNodeId));
    assert_eq!(ga.close(), own);
    assert_eq!(gb.close(), own);
    assert_eq!(a.core.stats().handshake.own_node_id, 1);
    assert!(a.shared.channels.is_empty() && b.shared.channels.is_empty());
}

/// A hand-made initiator against `b`: query (v2 or v1), then a response to b's cookie,
/// altered by `tweak`. Returns what b produced after the response.
fn raw_initiator(
    b: &mut Node,
    conn: u64,
    remote: &str,
    peer: &NodeIdentity,
    v2: bool,
    tweak: impl FnOnce(&mut Node, &mut nanopeer::wire::HandshakeResponse, &mut Cookie),
) -> Got {
    b.connect(conn, remote, false, 0);
    let mut q = NodeIdHandshake::query(Cookie([0x11; 32]));
    q.query.as_mut().unwrap().v2 = v2;
    let g = b.bytes(conn, &Message::NodeIdHandshake(q).encode(NET), 0);
    assert_eq!(g.close(), None);
    let msgs = g.messages();
    let [Message::NodeIdHandshake(reply)] = msgs.as_slice() else {
        panic!("expected query+response")
    };
    let r = reply.response.unwrap();
    assert_eq!(r.v2.is_some(), v2, "answered in the query's version");
    assert!(verify(
        &r.signed_data(&Cookie([0x11; 32])),
        &r.signature,
        &b.node_id()
    ));
    let mut cookie = reply.query.unwrap().cookie;
    let v2part = v2.then_some((Cookie([0x22; 32]), genesis_hash(NET)));
    let mut resp = peer.handshake_response(&cookie, v2part);
    tweak(b, &mut resp, &mut cookie);
    b.bytes(
        conn,
        &Message::NodeIdHandshake(NodeIdHandshake::response(resp)).encode(NET),
        1,
    )
}

fn peer(key: u8) -> NodeIdentity {
    NodeIdentity::from_private([key; 32])
}

#[test]
fn v1_initiator_is_accepted() {
    let mut b = node(2, 2);
    let g = raw_initiator(&mut b, 1, "127.0.0.1:50000", &peer(9), false, |_, _, _| {});
    assert_eq!(g.close(), None);
    assert!(b.shared.channels.find_node_id(&peer(9).node_id()).is_some());
    assert_eq!(b.core.stats().handshake.ok, 1);
}

#[test]
fn v1_response_to_our_query_is_accepted() {
    let mut a = node(1, 1);
    let g = a.connect(1, "127.0.0.1:7000", true, 0);
    let msgs = g.messages();
    let [Message::NodeIdHandshake(q)] = msgs.as_slice() else {
        panic!()
    };
    let cookie = q.query.unwrap().cookie;
    // A v1 peer answers query + v1 response (ext 0x0003).
    let p = peer(9);
    let resp = p.handshake_response(&cookie, None);
    let msg = NodeIdHandshake::query_response(Cookie([0x33; 32]), resp);
    let bytes = Message::NodeIdHandshake(msg).encode(NET);
    assert_eq!(bytes[6], 0x03);
    let g = a.bytes(1, &bytes, 1);
    assert_eq!(g.close(), None);
    // Our answer to its v1-flagged query is a v1 response.
    let Message::NodeIdHandshake(ours) = &g.messages()[0] else {
        panic!()
    };
    let r = ours.response.unwrap();
    assert!(r.v2.is_none());
    assert!(verify(&[0x33; 32], &r.signature, &a.node_id()));
    assert!(a.shared.channels.find_node_id(&p.node_id()).is_some());
}

fn expect_failure(g: &Got, b: &Node, outcome: HandshakeOutcome) {
    assert_eq!(g.close(), Some(CloseReason::Handshake(outcome)));
    assert_eq!(b.core.stats().handshake.get(outcome), 1);
    assert_eq!(b.core.stats().handshake.ok, 0);
    assert!(b.shared.channels.is_empty(), "no channel after {outcome:?}");
    assert_eq!(b.core.connections(), 0);
}

#[test]
fn wrong_genesis_fails() {
    let mut b = node(2, 2);
    let p = peer(9);
    let g = raw_initiator(&mut b, 1, "127.0.0.1:50000", &p, true, |_, r, cookie| {
        r.v2.as_mut().unwrap().genesis = BlockHash([1; 32]);
        r.signature = p.sign(&r.signed_data(cookie));
    });
    expect_failure(&g, &b, HandshakeOutcome::InvalidGenesis);
}

#[test]
fn missing_cookie_fails() {
    let mut b = node_with(2, 2, ChannelLimits::for_network(NET), |c| {
        c.handshake_timeout_ms = 10_000
    });
    let g = raw_initiator(&mut b, 1, "127.0.0.1:50000", &peer(9), true, |b, _, _| {
        // The cookie expires (cutoff 5 s, purge every cleanup period) before the response.
        // The handshake deadline is later than this tick.
        let mut out = ShardOutput::default();
        b.core.on_tick(5_001, &mut out);
        assert!(out.io.is_empty());
        assert_eq!(b.core.stats().cookies_purged, 1);
    });
    expect_failure(&g, &b, HandshakeOutcome::MissingCookie);
}

#[test]
fn bad_signature_fails() {
    let mut b = node(2, 2);
    let g = raw_initiator(&mut b, 1, "127.0.0.1:50000", &peer(9), true, |_, r, _| {
        r.signature.0[0] ^= 1;
    });
    expect_failure(&g, &b, HandshakeOutcome::InvalidSignature);
}

#[test]
fn duplicate_node_id_from_same_ip_fails() {
    let mut b = node(2, 2);
    let g = raw_initiator(&mut b, 1, "127.0.0.1:50000", &peer(9), true, |_, _, _| {});
    assert_eq!(g.close(), None);
    let g = raw_initiator(&mut b, 2, "127.0.0.1:50001", &peer(9), true, |_, _, _| {});
    assert_eq!(
        g.close(),
        Some(CloseReason::Handshake(HandshakeOutcome::DuplicateNodeId))
    );
    assert_eq!(b.shared.channels.len(), 1);
    // The same node id from another IP is fine.
    let g = raw_initiator(&mut b, 3, "127.0.0.2:50001", &peer(9), true, |_, _, _| {});
    assert_eq!(g.close(), None);
    assert_eq!(b.shared.channels.len(), 2);
}

#[test]
fn per_ip_limit_fails() {
    let limits = ChannelLimits {
        max_peers_per_ip: 1,
        ..ChannelLimits::for_network(NET)
    };
    let mut b = node_with(2, 2, limits, |_| {});
    let g = raw_initiator(&mut b, 1, "10.0.0.1:50000", &peer(8), true, |_, _, _| {});
    assert_eq!(g.close(), None);
    let g = raw_initiator(&mut b, 2, "10.0.0.1:50001", &peer(9), true, |_, _, _| {});
    assert_eq!(
        g.close(),
        Some(CloseReason::Handshake(HandshakeOutcome::MaxPerIp))
    );
    assert_eq!(b.shared.channels.len(), 1);
}

#[test]
fn unverified_connections_count_in_the_per_ip_limit_until_they_end() {
    let limits = ChannelLimits {
        max_peers_per_ip: 2,
        ..ChannelLimits::for_network(NET)
    };
    let mut b = node_with(2, 2, limits, |_| {});
    let remote: SocketAddr = "10.0.0.7:1".parse().unwrap();
    // Two silent connections hold the IP's two unverified places: a third is refused at
    // accept, before anything is read.
    assert_eq!(b.connect(1, "10.0.0.7:1", false, 0).close(), None);
    assert_eq!(b.connect(2, "10.0.0.7:2", false, 0).close(), None);
    assert_eq!(
        b.core.screen_inbound(remote.into(), false, 0),
        Screening::Refuse
    );
    assert_eq!(b.core.stats().admission.max_per_ip, 1);
    // One that got past the screen (another shard raced it) is closed on connect.
    let g = b.connect(9, "10.0.0.7:9", false, 0);
    assert_eq!(
        g.close(),
        Some(CloseReason::Handshake(HandshakeOutcome::MaxPerIp))
    );
    assert_eq!(b.core.stats().admission.max_per_ip, 2);
    // One closes: its place is free again.
    let mut out = ShardOutput::default();
    b.core.on_closed(ConnId(1), 0, &mut out);
    assert_eq!(
        b.core.screen_inbound(remote.into(), false, 0),
        Screening::Accept
    );
    // A completed handshake ends its unverified count: the channel counts instead.
    let g = raw_initiator(&mut b, 3, "10.0.0.7:3", &peer(8), true, |_, _, _| {});
    assert_eq!(g.close(), None);
    assert_eq!(b.shared.channels.len(), 1);
    let ip = nanopeer::endpoint::IpKey::of(*Endpoint::from(remote).ip());
    let usage = b.shared.channels.ip_usage(ip);
    assert_eq!((usage.channels, usage.inbound), (1, 1));
    assert_eq!(
        b.core.screen_inbound(remote.into(), false, 0),
        Screening::Accept
    );
    // The handshake timeout ends the silent one.
    let mut out = ShardOutput::default();
    b.core.on_tick(60_000, &mut out);
    assert_eq!(b.core.connections(), 1);
    assert_eq!(b.shared.channels.ip_usage(ip).inbound, 0);
}

#[test]
fn excluded_peer_fails() {
    let mut b = node(2, 2);
    let ip: std::net::IpAddr = "10.1.1.1".parse().unwrap();
    b.shared.exclusion.lock().add(ip, 0);
    b.shared.exclusion.lock().add(ip, 0);
    let g = raw_initiator(&mut b, 1, "10.1.1.1:50000", &peer(9), true, |_, _, _| {});
    expect_failure(&g, &b, HandshakeOutcome::Excluded);
}

#[test]
fn not_a_peer_fails() {
    let mut b = node(2, 2);
    // 192.0.2.0/24 is always reserved (§7.7).
    let g = raw_initiator(&mut b, 1, "192.0.2.1:50000", &peer(9), true, |_, _, _| {});
    expect_failure(&g, &b, HandshakeOutcome::NotAPeer);
}

#[test]
fn protocol_violations_abort() {
    // A response we did not ask for.
    let mut b = node(2, 2);
    b.connect(1, "127.0.0.1:50000", false, 0);
    let resp = peer(9).handshake_response(&Cookie([1; 32]), None);
    let g = b.bytes(
        1,
        &Message::NodeIdHandshake(NodeIdHandshake::response(resp)).encode(NET),
        0,
    );
    assert_eq!(
        g.close(),
        Some(CloseReason::Handshake(HandshakeOutcome::Protocol))
    );
    // A handshake with neither flag.
    let mut b = node(2, 2);
    b.connect(1, "127.0.0.1:50000", false, 0);
    let h = Header::new(NET, MessageType::NodeIdHandshake, Extensions(0));
    let g = b.bytes(1, &h.encode(), 0);
    assert_eq!(
        g.close(),
        Some(CloseReason::Handshake(HandshakeOutcome::Protocol))
    );
    // A second query.
    let mut b = node(2, 2);
    b.connect(1, "127.0.0.1:50000", false, 0);
    let q = Message::NodeIdHandshake(NodeIdHandshake::query(Cookie([1; 32]))).encode(NET);
    assert_eq!(b.bytes(1, &q, 0).close(), None);
    assert_eq!(
        b.bytes(1, &q, 0).close(),
        Some(CloseReason::Handshake(HandshakeOutcome::Protocol))
    );
    assert_eq!(b.core.stats().handshake.protocol, 1);
}

#[test]
fn messages_before_handshake_close() {
    let mut b = node(2, 2);
    b.connect(1, "127.0.0.1:50000", false, 0);
    let g = b.bytes(1, &Message::Keepalive(Keepalive::default()).encode(NET), 0);
    assert_eq!(g.close(), Some(CloseReason::MessageBeforeHandshake));
    assert_eq!(b.core.connections(), 0);
    b.connect(2, "127.0.0.1:50001", false, 0);
    let g = b.bytes(2, &Message::BulkPush.encode(NET), 0);
    assert_eq!(g.close(), Some(CloseReason::BootstrapNotServed));
}

#[test]
fn handshake_times_out() {
    let mut b = node(2, 2);
    let g = b.connect(1, "127.0.0.1:50000", false, 0);
    let timeout = b.shared.config.handshake_timeout_ms;
    assert!(g.io.contains(&IoAction::Deadline {
        conn: ConnId(1),
        at_ms: timeout
    }));
    let mut out = ShardOutput::default();
    b.core.on_tick(timeout - 1, &mut out);
    assert!(out.io.is_empty());
    b.core.on_tick(timeout, &mut out);
    assert_eq!(
        out.io,
        [IoAction::Close {
            conn: ConnId(1),
            reason: CloseReason::Timeout
        }]
    );
}

/// B with a realtime channel from hand-made peer 9 on conn 1.
fn realtime() -> (Node, NodeIdentity) {
    let mut b = node(2, 2);
    let p = peer(9);
    let g = raw_initiator(&mut b, 1, "127.0.0.1:50000", &p, true, |_, _, _| {});
    assert_eq!(g.close(), None);
    (b, p)
}

#[test]
fn header_error_closes() {
    let (mut b, _) = realtime();
    let mut bytes = Message::Keepalive(Keepalive::default()).encode(Network::Live);
    let g = b.bytes(1, &bytes, 5);
    assert_eq!(g.close(), Some(CloseReason::HeaderError));
    assert!(matches!(
        g.events.as_slice(),
        [CrawlerEvent::ChannelDown(_)]
    ));
    assert!(b.shared.channels.is_empty());
    // Later bytes on the closed connection are ignored.
    bytes.truncate(8);
    assert!(b.bytes(1, &bytes, 6).io.is_empty());
}

#[test]
fn payload_error_drops_and_keeps_the_connection() {
    let (mut b, _) = realtime();
    // A publish whose header names no block type: the payload is empty and invalid.
    let h = Header::new(NET, MessageType::Publish, Extensions(0x0100));
    let g = b.bytes(1, &h.encode(), 5);
    assert_eq!(g.close(), None);
    assert_eq!(b.core.stats().payload_errors.not_a_block, 1);
    // The connection still works.
    let g = b.bytes(1, &Message::Keepalive(Keepalive::default()).encode(NET), 6);
    assert!(matches!(
        g.events.as_slice(),
        [CrawlerEvent::Keepalive { .. }]
    ));
}

fn state_block(key: &KeyPair, balance: u128, good_work: bool) -> Block {
    let mut b = StateBlock {
        account: key.public(),
        previous: BlockHash::ZERO,
        representative: key.public(),
        balance: Amount(balance),
        link: BlockHash([4; 32]),
        signature: Signature([0; 64]),
        work: 0,
    };
    let root = BlockHash(key.public().0);
    let threshold = WorkThresholds::for_network(NET).entry();
    while (work_value(&root, b.work) >= threshold) != good_work {
        b.work += 1;
    }
    let mut block = Block::State(b);
    let sig = key.sign(&block_hash(&block).0);
    if let Block::State(s) = &mut block {
        s.signature = sig;
    }
    block
}

fn publish(block: Block) -> Vec<u8> {
    Message::Publish(Publish {
        block,
        originator: false,
    })
    .encode(NET)
}

#[test]
fn publish_is_checked_and_deduplicated() {
    let (mut b, _) = realtime();
    let key = KeyPair::from_private([5; 32]);
    let block = state_block(&key, 10, true);
    let bytes = publish(block.clone());
    let g = b.bytes(1, &bytes, 5);
    let [
        CrawlerEvent::Block {
            hash, block: got, ..
        },
    ] = g.events.as_slice()
    else {
        panic!("expected one Block event")
    };
    assert_eq!(*hash, block_hash(&block));
    assert_eq!(**got, block);
    // Duplicate.
    let g = b.bytes(1, &bytes, 6);
    assert!(g.events.is_empty());
    assert_eq!(b.core.stats().duplicate_publish, 1);
    // Insufficient work: dropped, counted, the filter entry cleared (a second copy is
    // rejected for work again, not as a duplicate).
    let weak = publish(state_block(&key, 11, false));
    assert!(b.bytes(1, &weak, 7).events.is_empty());
    assert!(b.bytes(1, &weak, 8).events.is_empty());
    assert_eq!(b.core.stats().insufficient_work, 2);
    assert_eq!(b.core.stats().duplicate_publish, 1);
    // A bad signature: no event.
    let mut forged = state_block(&key, 12, true);
    if let Block::State(s) = &mut forged {
        s.signature.0[1] ^= 1;
    }
    assert!(b.bytes(1, &publish(forged), 9).events.is_empty());
    assert_eq!(b.core.stats().invalid_block_signature, 1);
}

fn vote_msg(key: &KeyPair, forge: bool) -> Vec<u8> {
    let hashes = vec![BlockHash([1; 32]), BlockHash([2; 32])];
    let timestamp = 0x1234_5670;
    let mut signature = key.sign(&nanopeer::crypto::vote_hash(&hashes, timestamp).0);
    if forge {
        signature.0[0] ^= 1;
    }
    let vote = Vote {
        account: key.public(),
        signature,
        timestamp,
        hashes,
    };
    Message::ConfirmAck(ConfirmAck {
        vote,
        rebroadcasted: true,
    })
    .encode(NET)
}

#[test]
fn votes_need_a_valid_signature() {
    let (mut b, _) = realtime();
    let key = KeyPair::from_private([6; 32]);
    let g = b.bytes(1, &vote_msg(&key, true), 5);
    assert!(g.events.is_empty());
    assert_eq!(b.core.stats().invalid_vote_signature, 1);
    let g = b.bytes(1, &vote_msg(&key, false), 6);
    let [
        CrawlerEvent::Vote {
            account,
            hashes,
            rebroadcasted,
            ..
        },
    ] = g.events.as_slice()
    else {
        panic!("expected a Vote event")
    };
    assert_eq!(*account, key.public());
    assert_eq!(hashes.len(), 2);
    assert!(*rebroadcasted);
    assert!(b.bytes(1, &vote_msg(&key, false), 7).events.is_empty());
    assert_eq!(b.core.stats().duplicate_confirm_ack, 1);
}

#[test]
fn telemetry_checks() {
    let (mut b, p) = realtime();
    let ack = |data| Message::TelemetryAck(TelemetryAck { data: Some(data) }).encode(NET);
    // Good telemetry.
    let g = b.bytes(1, &ack(local_telemetry(&p, NET, 1, 2, 3)), 5);
    assert!(
        matches!(g.events.as_slice(), [CrawlerEvent::Telemetry { data, .. }] if data.peer_count == 1)
    );
    // Another node's telemetry on this channel.
    let g = b.bytes(1, &ack(local_telemetry(&peer(10), NET, 1, 2, 3)), 6);
    assert!(g.events.is_empty());
    assert_eq!(b.core.stats().telemetry_node_id_mismatch, 1);
    // Another genesis: GenesisMismatch, channel closed.
    let g = b.bytes(1, &ack(local_telemetry(&p, Network::Live, 1, 2, 4)), 7);
    assert!(matches!(
        g.events.first(),
        Some(CrawlerEvent::GenesisMismatch { .. })
    ));
    assert!(
        g.events
            .iter()
            .any(|e| matches!(e, CrawlerEvent::ChannelDown(_)))
    );
    assert_eq!(g.close(), Some(CloseReason::Excluded));
    assert!(b.shared.channels.is_empty());
}

fn transcript(seed_a: u64) -> Vec<IoAction> {
    let mut a = node(seed_a, 1);
    let mut b = node(2, 2);
    let (ga, gb) = pair(&mut a, &mut b, "127.0.0.1:44002", "127.0.0.1:50000");
    ga.io.into_iter().chain(gb.io).collect()
}

#[test]
fn same_seed_same_outputs() {
    let one = transcript(11);
    assert_eq!(one, transcript(11));
    assert_ne!(one, transcript(12), "the seed matters (cookies, salts)");
}

#[test]
fn commands_dial_send_close() {
    let mut a = node(1, 1);
    let mut out = ShardOutput::default();
    let ep: Endpoint = "[::ffff:127.0.0.1]:7000".parse().unwrap();
    a.core
        .on_command(ShardCommand::Dial { endpoint: ep }, 0, &mut a.rng, &mut out);
    assert_eq!(out.io, [IoAction::Dial { endpoint: ep }]);
    // The loop connects: the dialed endpoint starts as initiator even if not flagged.
    out.clear();
    a.core.on_connected(
        ConnId(4),
        "127.0.0.1:7000".parse().unwrap(),
        false,
        0,
        &mut a.rng,
        &mut out,
    );
    let sends: Vec<_> = out
        .io
        .iter()
        .filter(|x| matches!(x, IoAction::Send { .. }))
        .collect();
    assert_eq!(sends.len(), 1, "query sent");
    out.clear();
    a.core
        .on_dial_failed("[::ffff:127.0.0.9]:7000".parse().unwrap(), 0, &mut out);
    assert!(matches!(
        out.events.as_slice(),
        [CrawlerEvent::DialFailed { .. }]
    ));

    let (mut b, _) = realtime();
    let ch = b.shared.channels.snapshot()[0].clone();
    let mut out = ShardOutput::default();
    b.core.on_command(
        ShardCommand::Send {
            channel: ch.id(),
            bytes: Arc::from(Message::TelemetryReq.encode(NET)),
        },
        50,
        &mut b.rng,
        &mut out,
    );
    assert!(matches!(
        &out.io[..],
        [IoAction::Send {
            conn: ConnId(1),
            ..
        }]
    ));
    assert_eq!(ch.last_sent_ms(), 50);
    assert_eq!(b.core.stats().sent(MessageType::TelemetryReq), 1);
    out.clear();
    b.core.on_command(
        ShardCommand::Close {
            channel: ch.id(),
            reason: CloseReason::Purged,
        },
        51,
        &mut b.rng,
        &mut out,
    );
    assert_eq!(
        out.io,
        [IoAction::Close {
            conn: ConnId(1),
            reason: CloseReason::Purged
        }]
    );
    assert!(matches!(
        out.events.as_slice(),
        [CrawlerEvent::ChannelDown(_)]
    ));
    assert!(b.shared.channels.is_empty());
}

#[test]
fn frames_during_final_verification_are_held_and_replayed() {
    // The initiator may go realtime (and send its keepalive_self) before the responder has
    // verified its response: those frames wait for the channel.
    let mut b = node(2, 2);
    let p = peer(9);
    b.connect(1, "127.0.0.1:50000", false, 0);
    let q = Message::NodeIdHandshake(NodeIdHandshake::query(Cookie([0x11; 32]))).encode(NET);
    let g = b.bytes(1, &q, 0);
    let msgs = g.messages();
    let [Message::NodeIdHandshake(reply)] = msgs.as_slice() else {
        panic!()
    };
    let cookie = reply.query.unwrap().cookie;
    let resp = p.handshake_response(&cookie, Some((Cookie([0x22; 32]), genesis_hash(NET))));
    let mut stream = Message::NodeIdHandshake(NodeIdHandshake::response(resp)).encode(NET);
    let ka = Keepalive {
        peers: nanopeer::proto::keepalive::keepalive_self_slots(7777, &[]).map(Endpoint::to_v6),
    };
    stream.extend(Message::Keepalive(ka).encode(NET));
    let mut out = ShardOutput::default();
    b.core.on_bytes(ConnId(1), &stream, 1, &mut b.rng, &mut out);
    assert_eq!(out.verify.len(), 1);
    assert!(
        out.io.is_empty() && out.events.is_empty(),
        "keepalive held, nothing closed"
    );
    let v = out.verify.pop().unwrap();
    assert!(verify(v.message.as_bytes(), &v.signature, &v.key));
    b.core.on_verified(v.id, true, 2, &mut b.rng, &mut out);
    assert!(matches!(
        out.events.as_slice(),
        [CrawlerEvent::ChannelUp(..), CrawlerEvent::Keepalive { .. }]
    ));
    let ch = b.shared.channels.find_node_id(&p.node_id()).unwrap();
    assert_eq!(ch.peering_endpoint().port(), 7777);
    // A result for a connection that closed meanwhile is ignored.
    let mut b = node(2, 2);
    b.connect(1, "127.0.0.1:50000", false, 0);
    let g = b.bytes(1, &q, 0);
    let msgs = g.messages();
    let [Message::NodeIdHandshake(reply)] = msgs.as_slice() else {
        panic!()
    };
    let resp = p.handshake_response(&reply.query.unwrap().cookie, None);
    let mut out = ShardOutput::default();
    let bytes = Message::NodeIdHandshake(NodeIdHandshake::response(resp)).encode(NET);
    b.core.on_bytes(ConnId(1), &bytes, 1, &mut b.rng, &mut out);
    let v = out.verify.pop().unwrap();
    b.core.on_closed(ConnId(1), 2, &mut out);
    out.clear();
    b.core.on_verified(v.id, true, 3, &mut b.rng, &mut out);
    assert!(out.is_empty());
    assert!(b.shared.channels.is_empty());
    assert_eq!(b.core.stats().verify_orphaned, 1);
}

/// A shard sharing `board` accepts a hand-made v2 initiator; returns the node and what its
/// one `on_verified` call (the final check of the initiator's response) produced.
fn accept_on_board(seed: u64, board: &Arc<QueryBoard>, query_on_up: bool) -> (Node, ShardOutput) {
    let mut b = node_on_board(
        seed,
        2,
        ChannelLimits::for_network(NET),
        board.clone(),
        |c| c.query_on_up = query_on_up,
    );
    b.connect(1, "127.0.0.1:50000", false, 0);
    let q = Message::NodeIdHandshake(NodeIdHandshake::query(Cookie([0x11; 32]))).encode(NET);
    let msgs = b.bytes(1, &q, 0).messages();
    let [Message::NodeIdHandshake(reply)] = msgs.as_slice() else {
        panic!("{msgs:?}")
    };
    let cookie = reply.query.unwrap().cookie;
    let resp = peer(9).handshake_response(&cookie, Some((Cookie([0x22; 32]), genesis_hash(NET))));
    let bytes = Message::NodeIdHandshake(NodeIdHandshake::response(resp)).encode(NET);
    let mut out = ShardOutput::default();
    b.core.on_bytes(ConnId(1), &bytes, 1, &mut b.rng, &mut out);
    let v = out.verify.pop().expect("the response is checked");
    assert!(out.is_empty());
    let ok = verify(v.message.as_bytes(), &v.signature, &v.key);
    b.core.on_verified(v.id, ok, 2, &mut b.rng, &mut out);
    (b, out)
}

#[test]
fn first_rep_query_is_sent_with_keepalive_self_from_the_board() {
    // A real rep crawler fills the board: three vote hashes, one with a known root.
    let config = ProtoConfig::for_network(NET);
    let board = Arc::new(QueryBoard::new(NET));
    let mut reps = RepCrawler::new(
        RepCrawlerConfig::from_proto(&config),
        RepWeights::defaults(NET),
        OnlineReps::new(
            config.online_weight_minimum,
            config.online_weight_max_samples,
        ),
    )
    .with_board(board.clone());
    let seen = [BlockHash([1; 32]), BlockHash([2; 32]), BlockHash([3; 32])];
    reps.note_block(seen[1], BlockHash([0x22; 32]));
    reps.on_vote(None, ChannelId(1), PublicKey([5; 32]), &seen, false, 0);
    let pairs = board.pairs();
    assert_eq!(pairs.len(), 4);
    let mut picked = HashSet::new();
    for seed in 0..24 {
        let (b, out) = accept_on_board(seed, &board, true);
        // One turn: keepalive_self, then the confirm_req, back to back on the connection.
        let sends: Vec<(usize, Message)> = out
            .io
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a {
                IoAction::Send { conn, bytes } => {
                    assert_eq!(*conn, ConnId(1));
                    Some((i, decode_message(bytes, NET).unwrap().1))
                }
                _ => None,
            })
            .collect();
        let [(i, Message::Keepalive(k)), (j, Message::ConfirmReq(req))] = sends.as_slice() else {
            panic!("{sends:?}")
        };
        assert_eq!(*j, i + 1);
        assert_eq!(k.peers[0].port(), 44_002);
        let [q] = req.pairs.as_slice() else {
            panic!("{req:?}")
        };
        assert!(pairs.contains(q), "{q:?} is not on the board");
        // The crawler learns which pair was sent.
        let ch = b.shared.channels.find_node_id(&peer(9).node_id()).unwrap();
        assert!(
            matches!(out.events.as_slice(), [CrawlerEvent::ChannelUp(c, Some(p))] if c.id() == ch.id() && p == q),
            "{:?}",
            out.events
        );
        assert_eq!(b.core.stats().sent(MessageType::ConfirmReq), 1);
        assert_eq!(b.core.stats().queries_on_up, 1);
        picked.insert(*q);
    }
    // Different shards' rngs pick different candidates, with their roots.
    assert!(picked.len() >= 3, "{picked:?}");
    assert!(picked.iter().all(|q| pairs.contains(q)));
}

#[test]
fn without_query_on_up_the_shard_sends_only_keepalive_self() {
    let board = Arc::new(QueryBoard::new(NET));
    let (b, out) = accept_on_board(1, &board, false);
    let types: Vec<MessageType> = out
        .io
        .iter()
        .filter_map(|a| match a {
            IoAction::Send { bytes, .. } => {
                Some(decode_message(bytes, NET).unwrap().1.message_type())
            }
            _ => None,
        })
        .collect();
    assert_eq!(types, [MessageType::Keepalive]);
    assert_eq!(b.core.stats().queries_on_up, 0);
    assert!(matches!(
        out.events.as_slice(),
        [CrawlerEvent::ChannelUp(_, None)]
    ));
}

/// A vote of `key` for two hashes at `timestamp` (distinct timestamps pass the duplicate
/// filter), its signature broken when `forge`.
fn vote_at(key: &KeyPair, timestamp: u64, forge: bool) -> Vec<u8> {
    let hashes = vec![BlockHash([1; 32]), BlockHash([2; 32])];
    let mut signature = key.sign(&nanopeer::crypto::vote_hash(&hashes, timestamp).0);
    if forge {
        signature.0[0] ^= 1;
    }
    Message::ConfirmAck(ConfirmAck {
        vote: Vote {
            account: key.public(),
            signature,
            timestamp,
            hashes,
        },
        rebroadcasted: false,
    })
    .encode(NET)
}

#[test]
fn invalid_signatures_past_the_budget_cut_the_peer_and_exclude_its_ip() {
    let (mut b, _) = realtime();
    let burst = ProtoConfig::for_network(NET).max_invalid_signatures as u64;
    let key = KeyPair::from_private([6; 32]);
    for ts in 0..burst {
        let g = b.bytes(1, &vote_at(&key, ts, true), 5);
        assert_eq!(g.close(), None, "within the budget ({ts})");
    }
    assert_eq!(b.core.stats().invalid_vote_signature, burst);
    // After the first failure the source's checks are made alone (per-source adaptation).
    assert_eq!(b.core.stats().misbehaviour.verify_alone, burst - 1);
    // A valid vote still gets through (and is checked alone too).
    let g = b.bytes(1, &vote_at(&key, 1_000, false), 5);
    assert!(matches!(g.events.as_slice(), [CrawlerEvent::Vote { .. }]));
    // One more bad one: cut, excluded, counted.
    let g = b.bytes(1, &vote_at(&key, burst, true), 5);
    assert_eq!(
        g.close(),
        Some(CloseReason::Misbehaviour(Misbehaviour::InvalidSignatures))
    );
    assert!(
        g.events
            .iter()
            .any(|e| matches!(e, CrawlerEvent::ChannelDown(_)))
    );
    assert_eq!(b.core.stats().misbehaviour.invalid_signatures, 1);
    assert!(b.shared.channels.is_empty());
    let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    assert!(b.shared.exclusion.lock().check(ip, 5), "excluded at once");
    // It cannot come back: refused at accept.
    let again: SocketAddr = "127.0.0.1:50001".parse().unwrap();
    assert_eq!(
        b.core.screen_inbound(again.into(), false, 6),
        Screening::Refuse
    );
    assert_eq!(b.core.stats().admission.excluded, 1);
}

#[test]
fn the_invalid_signature_budget_refills_one_per_second() {
    let (mut b, _) = realtime();
    let burst = ProtoConfig::for_network(NET).max_invalid_signatures as u64;
    let key = KeyPair::from_private([6; 32]);
    // One bad vote a second, forever: never cut.
    for ts in 0..(burst * 3) {
        let g = b.bytes(1, &vote_at(&key, ts, true), 10 + ts * 1_000);
        assert_eq!(g.close(), None);
    }
    assert_eq!(b.core.stats().misbehaviour.invalid_signatures, 0);
}

#[test]
fn verification_work_past_the_budget_cuts_the_peer() {
    let mut b = node_with(2, 2, ChannelLimits::for_network(NET), |c| {
        c.verify_per_sec = 5
    });
    let g = raw_initiator(&mut b, 1, "127.0.0.1:50000", &peer(9), true, |_, _, _| {});
    assert_eq!(g.close(), None);
    let key = KeyPair::from_private([6; 32]);
    // A burst of twice the rate passes (valid votes: this is about volume, not validity).
    for ts in 0..10 {
        let g = b.bytes(1, &vote_at(&key, ts, false), 5);
        assert_eq!(g.close(), None);
    }
    assert_eq!(b.core.stats().votes_valid, 10);
    let g = b.bytes(1, &vote_at(&key, 10, false), 5);
    assert_eq!(
        g.close(),
        Some(CloseReason::Misbehaviour(Misbehaviour::VerifyWork))
    );
    assert_eq!(b.core.stats().misbehaviour.verify_work, 1);
    assert_eq!(b.core.stats().votes_valid, 10, "the excess is not verified");
}

#[test]
fn frames_larger_than_a_handshake_close_an_unauthenticated_connection() {
    let mut b = node(2, 2);
    assert_eq!(b.connect(1, "127.0.0.1:50000", false, 0).close(), None);
    // A header announcing a publish (larger than any handshake message) before the
    // handshake: closed on the header, before its payload is buffered.
    let big = publish(state_block(&KeyPair::from_private([6; 32]), 1, true));
    assert!(big.len() - 8 > nanopeer::wire::MAX_HANDSHAKE_PAYLOAD);
    let g = b.bytes(1, &big[..8], 1);
    assert_eq!(g.close(), Some(CloseReason::HeaderError));
    assert_eq!(b.core.stats().admission.oversize_before_handshake, 1);
    // After the handshake the normal maximum applies.
    let (mut b, _) = realtime();
    assert_eq!(b.bytes(1, &big, 5).close(), None);
    assert_eq!(b.core.stats().admission.oversize_before_handshake, 0);
}

#[test]
fn a_full_table_evicts_the_oldest_unverified_connection_of_the_biggest_subnet() {
    let mut b = node(2, 2);
    // Four silent connections from one /24 (the oldest first), one from another /24, and a
    // verified channel.
    for (i, ip) in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1"]
        .iter()
        .enumerate()
    {
        let remote = format!("{ip}:{}", 1000 + i);
        assert_eq!(
            b.connect(10 + i as u64, &remote, false, i as u64).close(),
            None
        );
    }
    assert_eq!(b.connect(20, "10.7.7.7:1", false, 0).close(), None);
    let g = raw_initiator(&mut b, 30, "10.9.9.9:1", &peer(9), true, |_, _, _| {});
    assert_eq!(g.close(), None);
    let newcomer: SocketAddr = "10.5.5.5:1".parse().unwrap();
    assert_eq!(
        b.core.screen_inbound(newcomer.into(), false, 10),
        Screening::Accept
    );
    // Full: the oldest of 10.0.0.1 (the most-represented IP of the biggest /24) goes first.
    assert_eq!(
        b.core.screen_inbound(newcomer.into(), true, 10),
        Screening::Evict(ConnId(10))
    );
    assert_eq!(b.core.stats().admission.evicted_unverified, 1);
    // The io closes it (on_closed); the next eviction takes the next of that /24.
    let mut out = ShardOutput::default();
    b.core.on_closed(ConnId(10), 10, &mut out);
    let Screening::Evict(next) = b.core.screen_inbound(newcomer.into(), true, 11) else {
        panic!("expected an eviction")
    };
    assert!(
        [11, 12, 13].contains(&next.0),
        "another of 10.0.0/24: {next:?}"
    );
    // The verified channel is never among the unverified victims.
    for c in [11, 12, 13, 20] {
        b.core.on_closed(ConnId(c), 12, &mut out);
    }
    // Only the channel is left, and one channel is protected: refused, counted.
    assert_eq!(
        b.core.screen_inbound(newcomer.into(), true, 13),
        Screening::Refuse
    );
    assert_eq!(b.core.stats().admission.full, 1);
    assert_eq!(b.shared.channels.len(), 1);
}
