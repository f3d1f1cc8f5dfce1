//! Shard core cost per received realtime message (no I/O, no signature checks: verify results
//! are answered `true` at once): keepalive, and a 1-hash confirm_ack (filter, vote hash,
//! pending entry, Vote event).
//!
//! `cargo bench --bench shard -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nanopeer::channels::{ChannelLimits, ChannelMap};
use nanopeer::crypto::genesis_hash;
use nanopeer::proto::config::ProtoConfig;
use nanopeer::proto::events::ConnId;
use nanopeer::proto::exclusion::PeerExclusion;
use nanopeer::proto::filter::DuplicateFilter;
use nanopeer::proto::identity::NodeIdentity;
use nanopeer::proto::repcrawler::QueryBoard;
use nanopeer::proto::shard::{ShardCore, ShardOutput, ShardShared};
use nanopeer::types::{BlockHash, Cookie, Network, PublicKey, Signature};
use nanopeer::wire::{ConfirmAck, Keepalive, Message, NodeIdHandshake, Vote, decode_message};
use parking_lot::Mutex;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const NET: Network = Network::Live;

fn realtime_core() -> (ShardCore, ChaCha8Rng) {
    let mut config = ProtoConfig::for_network(NET);
    config.allow_local_peers = true;
    let shared = ShardShared {
        channels: Arc::new(ChannelMap::new(ChannelLimits::for_network(NET))),
        filter: Arc::new(DuplicateFilter::new(1 << 20, [1; 16], 60_000)),
        config: Arc::new(config),
        identity: Arc::new(NodeIdentity::from_private([2; 32])),
        exclusion: Arc::new(Mutex::new(PeerExclusion::new())),
        query_board: Arc::new(QueryBoard::new(NET)),
    };
    let mut core = ShardCore::new(0, shared);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut out = ShardOutput::default();
    let c = ConnId(1);
    core.on_connected(
        c,
        "10.0.0.1:5000".parse().unwrap(),
        false,
        0,
        &mut rng,
        &mut out,
    );
    let q = Message::NodeIdHandshake(NodeIdHandshake::query(Cookie([1; 32]))).encode(NET);
    core.on_bytes(c, &q, 0, &mut rng, &mut out);
    let reply = out
        .io
        .iter()
        .find_map(|a| match a {
            nanopeer::proto::events::IoAction::Send { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .unwrap();
    let Message::NodeIdHandshake(h) = decode_message(&reply, NET).unwrap().1 else {
        unreachable!()
    };
    let peer = NodeIdentity::from_private([9; 32]);
    let r = peer.handshake_response(
        &h.query.unwrap().cookie,
        Some((Cookie([3; 32]), genesis_hash(NET))),
    );
    let bytes = Message::NodeIdHandshake(NodeIdHandshake::response(r)).encode(NET);
    out.clear();
    core.on_bytes(c, &bytes, 0, &mut rng, &mut out);
    let v = out.verify.pop().unwrap();
    core.on_verified(v.id, true, 0, &mut rng, &mut out);
    assert!(core.channel_of(c).is_some());
    (core, rng)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("shard_rx");
    g.throughput(Throughput::Elements(1));
    let (mut core, mut rng) = realtime_core();
    let ka = Message::Keepalive(Keepalive::default()).encode(NET);
    let mut out = ShardOutput::default();
    g.bench_function("keepalive", |b| {
        b.iter(|| {
            core.on_bytes(ConnId(1), black_box(&ka), 1, &mut rng, &mut out);
            out.clear();
        })
    });
    let votes: Vec<Vec<u8>> = (0..1u64 << 16)
        .map(|i| {
            let vote = Vote {
                account: PublicKey([7; 32]),
                signature: Signature([9; 64]),
                timestamp: i,
                hashes: vec![BlockHash([5; 32])],
            };
            Message::ConfirmAck(ConfirmAck {
                vote,
                rebroadcasted: false,
            })
            .encode(NET)
        })
        .collect();
    let mut i = 0usize;
    g.bench_function("confirm_ack_1", |b| {
        b.iter(|| {
            let v = &votes[i % votes.len()];
            i += 1;
            // A fresh timestamp every turn of the pool: never a duplicate within 60 s of
            // virtual time.
            let now = (i / votes.len()) as u64 * 61_000;
            core.on_bytes(ConnId(1), black_box(v), now, &mut rng, &mut out);
            if let Some(r) = out.verify.pop() {
                core.on_verified(r.id, true, now, &mut rng, &mut out);
            }
            out.clear();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
