//! The full handshake pipeline in memory: two sans-IO shard cores (two identities, two channel
//! maps) in one thread shuttle each other's bytes directly — no sockets, no kernel. Rounds of
//! 64 concurrent handshakes (A dials B on 64 connections, each from its own address); each
//! core's verify requests go through its own `crypto::BatchVerifier`, flushed when it holds
//! `batch` signatures and when there is nothing left to deliver (as a shard flushes before its
//! ring sleeps). Every completed channel is closed at the end of the round.
//!
//! A complete handshake here is *both* sides' work (each signs once and verifies once), so one
//! node's share is about half the time per element. `crypto_only` is the same crypto without
//! the protocol: two signs and two batch-verifies (key decompressed each time) per handshake;
//! the difference is the cost of our code (codec, cookies, channel map, state machine).
//!
//! `cargo bench --bench handshake -- --warm-up-time 1 --measurement-time 3`

use std::collections::VecDeque;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nanopeer::channels::{ChannelLimits, ChannelMap};
use nanopeer::crypto::{BatchVerifier, KeyPair};
use nanopeer::proto::config::ProtoConfig;
use nanopeer::proto::events::{ConnId, IoAction};
use nanopeer::proto::exclusion::PeerExclusion;
use nanopeer::proto::filter::DuplicateFilter;
use nanopeer::proto::identity::NodeIdentity;
use nanopeer::proto::repcrawler::QueryBoard;
use nanopeer::proto::shard::{ShardCore, ShardOutput, ShardShared};
use nanopeer::types::Network;
use parking_lot::Mutex;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const NET: Network = Network::Dev;
/// Concurrent handshakes per round.
const WINDOW: usize = 64;

struct Side {
    core: ShardCore,
    rng: ChaCha8Rng,
    verifier: BatchVerifier,
    pending: Vec<u64>,
    results: Vec<bool>,
    out: ShardOutput,
    closes: u64,
}

impl Side {
    fn new(key: u8, port: u16, batch: usize) -> Side {
        let mut config = ProtoConfig::for_network(NET);
        config.listen_port = port;
        config.allow_local_peers = true;
        config.max_peers_per_ip = 1 << 16;
        config.max_peers_per_subnetwork = 1 << 16;
        config.max_cookies_per_ip = 1 << 16;
        config.max_channels = 1 << 20;
        let shared = ShardShared {
            channels: Arc::new(ChannelMap::new(ChannelLimits {
                max_peers_per_ip: 1 << 16,
                max_peers_per_subnetwork: 1 << 16,
                max_channels: 1 << 20,
                max_outbound: 1 << 20,
                max_attempts: 1 << 20,
            })),
            filter: Arc::new(DuplicateFilter::new(1 << 12, [key; 16], 60_000)),
            config: Arc::new(config),
            identity: Arc::new(NodeIdentity::from_private([key; 32])),
            exclusion: Arc::new(Mutex::new(PeerExclusion::new())),
            query_board: Arc::new(QueryBoard::new(NET)),
        };
        Side {
            core: ShardCore::new(0, shared),
            rng: ChaCha8Rng::seed_from_u64(u64::from(key)),
            verifier: BatchVerifier::new(batch),
            pending: Vec::with_capacity(batch),
            results: Vec::with_capacity(batch),
            out: ShardOutput::default(),
            closes: 0,
        }
    }

    /// Verifies the pending batch and answers the core.
    fn flush(&mut self, now: u64) {
        self.results.clear();
        self.results
            .extend_from_slice(self.verifier.verify(&mut self.rng));
        for (id, ok) in self.pending.drain(..).zip(self.results.iter()) {
            self.core
                .on_verified(id, *ok, now, &mut self.rng, &mut self.out);
        }
    }

    /// Routes the core's sends to the other side (`to_b`), queues its verify requests
    /// (flushing full batches), until its output is empty.
    fn absorb(&mut self, to_b: bool, q: &mut VecDeque<(bool, ConnId, Vec<u8>)>, now: u64) {
        loop {
            for a in self.out.io.drain(..) {
                match a {
                    IoAction::Send { conn, bytes } => q.push_back((to_b, conn, bytes)),
                    IoAction::Close { .. } => self.closes += 1,
                    IoAction::Dial { .. } | IoAction::Deadline { .. } => {}
                }
            }
            self.out.events.clear();
            if self.out.verify.is_empty() {
                return;
            }
            let reqs = std::mem::take(&mut self.out.verify);
            for r in &reqs {
                // Cannot fail: a full batch is flushed right after the push that filled it.
                let _ = self
                    .verifier
                    .push(&r.key, r.message.as_bytes(), &r.signature);
                self.pending.push(r.id);
                if self.verifier.is_full() {
                    self.flush(now);
                }
            }
            self.out.verify = reqs;
            self.out.verify.clear();
        }
    }
}

struct Pair {
    a: Side,
    b: Side,
    q: VecDeque<(bool, ConnId, Vec<u8>)>,
    now: u64,
    next_conn: u64,
    rounds: u64,
}

fn addr(i: u64, port: u16) -> SocketAddr {
    let i = i % (1 << 22);
    SocketAddr::from((
        Ipv4Addr::new(10, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8),
        port,
    ))
}

impl Pair {
    fn new(batch: usize) -> Pair {
        Pair {
            a: Side::new(1, 44_001, batch),
            b: Side::new(2, 44_002, batch),
            q: VecDeque::new(),
            now: 1,
            next_conn: 1,
            rounds: 0,
        }
    }

    /// One round of WINDOW concurrent handshakes; returns how many completed on both sides.
    fn round(&mut self) -> usize {
        let now = self.now;
        let first = self.next_conn;
        for _ in 0..WINDOW {
            let c = ConnId(self.next_conn);
            self.next_conn += 1;
            let (a, b) = (&mut self.a, &mut self.b);
            a.core.on_connected(
                c,
                addr(c.0, 44_002).into(),
                true,
                now,
                &mut a.rng,
                &mut a.out,
            );
            a.absorb(true, &mut self.q, now);
            b.core.on_connected(
                c,
                addr(c.0, 50_000).into(),
                false,
                now,
                &mut b.rng,
                &mut b.out,
            );
            b.absorb(false, &mut self.q, now);
        }
        loop {
            while let Some((to_b, conn, bytes)) = self.q.pop_front() {
                let side = if to_b { &mut self.b } else { &mut self.a };
                side.core
                    .on_bytes(conn, &bytes, now, &mut side.rng, &mut side.out);
                side.absorb(!to_b, &mut self.q, now);
            }
            // Nothing left to deliver: flush what waits (a shard does before its ring sleeps).
            if !self.a.verifier.is_empty() {
                self.a.flush(now);
                self.a.absorb(true, &mut self.q, now);
            }
            if !self.b.verifier.is_empty() {
                self.b.flush(now);
                self.b.absorb(false, &mut self.q, now);
            }
            if self.q.is_empty() && self.a.verifier.is_empty() && self.b.verifier.is_empty() {
                break;
            }
        }
        let mut done = 0;
        for id in first..self.next_conn {
            let c = ConnId(id);
            if self.a.core.channel_of(c).is_some() && self.b.core.channel_of(c).is_some() {
                done += 1;
            }
            self.a.core.on_closed(c, now, &mut self.a.out);
            self.b.core.on_closed(c, now, &mut self.b.out);
        }
        self.a.out.clear();
        self.b.out.clear();
        self.rounds += 1;
        self.now += 1;
        if self.rounds.is_multiple_of(256) {
            self.a.core.on_tick(self.now, &mut self.a.out);
            self.b.core.on_tick(self.now, &mut self.b.out);
            self.a.out.clear();
            self.b.out.clear();
        }
        done
    }
}

/// The crypto of WINDOW handshakes without the protocol: per handshake two signs and two
/// batch-verifies of a key decompressed at push.
struct CryptoOnly {
    keys: Vec<KeyPair>,
    verifier: BatchVerifier,
    rng: ChaCha8Rng,
    n: u64,
}

impl CryptoOnly {
    fn new(batch: usize) -> CryptoOnly {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        CryptoOnly {
            keys: (0..256).map(|_| KeyPair::generate(&mut rng)).collect(),
            verifier: BatchVerifier::new(batch),
            rng,
            n: 0,
        }
    }

    fn round(&mut self) -> usize {
        let mut ok = 0;
        let mut msg = [0u8; 96];
        for _ in 0..2 * WINDOW {
            self.n += 1;
            msg[..8].copy_from_slice(&self.n.to_le_bytes());
            let k = &self.keys[(self.n % 256) as usize];
            let sig = k.sign(&msg);
            let _ = self.verifier.push(&k.public(), &msg, &sig);
            if self.verifier.is_full() {
                ok += self
                    .verifier
                    .verify(&mut self.rng)
                    .iter()
                    .filter(|&&x| x)
                    .count();
            }
        }
        if !self.verifier.is_empty() {
            ok += self
                .verifier
                .verify(&mut self.rng)
                .iter()
                .filter(|&&x| x)
                .count();
        }
        ok / 2
    }
}

fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(WINDOW as u64));
    for batch in [1usize, 64] {
        let mut pair = Pair::new(batch);
        // The pipeline must really complete every handshake, on both sides.
        for _ in 0..3 {
            assert_eq!(pair.round(), WINDOW, "batch {batch}");
        }
        assert_eq!(pair.a.closes + pair.b.closes, 0);
        g.bench_function(BenchmarkId::new("pipeline", batch), |bch| {
            bch.iter(|| black_box(pair.round()))
        });
        assert_eq!(pair.round(), WINDOW);
        let mut crypto = CryptoOnly::new(batch);
        assert_eq!(crypto.round(), WINDOW);
        g.bench_function(BenchmarkId::new("crypto_only", batch), |bch| {
            bch.iter(|| black_box(crypto.round()))
        });
    }
    g.finish();
}

criterion_group!(benches, handshake);
criterion_main!(benches);
