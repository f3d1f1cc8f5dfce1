//! The vote path without I/O: distinct confirm_acks (1 hash each, signed by 64 representative
//! keys), pre-encoded, through the sans-IO shard core and the batch verifier as `node::shard`
//! drives them — no socket, no kernel — so the protocol's cost and the crypto's cost per vote
//! are measured apart from the kernel's.
//!
//! Each iteration is one burst of [`BURST`] votes, fed to the core in [`RECV_BUF`]-byte pieces
//! as the receive buffer ring hands them over (frames straddle pieces). Every figure is per
//! vote (throughput in elements = votes). Groups:
//!
//! * `vote_core`: the core alone, no signature checked. `to_request` times only `on_bytes`
//!   (deframing, duplicate filter, vote view, vote hash, work budget, pending entry, the
//!   verify request); `stub` times `on_bytes` plus answering each request `true` at once
//!   (`on_verified`: the pending lookup, the Vote event, counters).
//! * `vote_verify/N`: the same votes' signature checks alone: key cache lookup, `push_key`,
//!   and `verify` every N (N = 1 is single verification, as `--batch-max 1` runs it).
//! * `vote_e2e/N`: both, as a shard runs them: each piece's requests go through the key cache
//!   into the verifier, a full batch is verified at once and its results answered.
//!
//! Every vote in the pool is checked to verify before anything is timed, and every timed run
//! ends with the channel still open and every vote counted valid. Times are the bench thread's
//! CPU time (`common::ThreadCpu`), not wall time, so other work on the machine inflates them
//! less (it still shares caches and cores).
//!
//! `cargo bench --bench vote_path -- --warm-up-time 1 --measurement-time 4`

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{CONN, ThreadCpu, realtime_core};
use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nanopeer::crypto::{BatchVerifier, KeyCache, KeyPair, deterministic_key, vote_hash};
use nanopeer::proto::events::VerifyRequest;
use nanopeer::proto::shard::{ShardCore, ShardOutput};
use nanopeer::types::{BlockHash, Network, PublicKey, Signature};
use nanopeer::wire::{ConfirmAck, Message, Vote};
use rand_chacha::ChaCha8Rng;

const NET: Network = Network::Dev;
/// Representative keys signing the votes.
const REPS: usize = 64;
/// Votes per iteration: one full batch of the largest size measured.
const BURST: usize = 64;
/// Bursts in the pool (all votes distinct: POOL_BURSTS × BURST of them).
const POOL_BURSTS: usize = 64;
/// The size of a receive buffer: the core gets each burst in pieces of this many bytes.
const RECV_BUF: usize = 4096;
/// Virtual time added each time the pool comes round again: past the duplicate filter's
/// 60 s cutoff, so no vote is ever a duplicate.
const WRAP_MS: u64 = 61_000;
/// Batch sizes measured.
const BATCHES: [usize; 2] = [1, 64];

/// The pre-signed votes: each burst's frames back to back, and per vote what the verifier
/// needs (signer, vote hash, signature), in the same order.
struct Pool {
    bursts: Vec<Vec<u8>>,
    items: Vec<(PublicKey, BlockHash, Signature)>,
}

impl Pool {
    fn new() -> Pool {
        let reps: Vec<KeyPair> = (0..REPS as u32)
            .map(|i| KeyPair::from_private(deterministic_key(&[7; 32], i)))
            .collect();
        let mut bursts = vec![Vec::new(); POOL_BURSTS];
        let mut items = Vec::with_capacity(POOL_BURSTS * BURST);
        for i in 0..POOL_BURSTS * BURST {
            let rep = &reps[i % REPS];
            let mut hash = [0x5a; 32];
            hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let hashes = vec![BlockHash(hash)];
            // Packed milliseconds with duration 9, as live votes carry them (§4.4).
            let timestamp = ((1_700_000_000_000 + i as u64) << 4) | 9;
            let digest = vote_hash(&hashes, timestamp);
            let signature = rep.sign(&digest.0);
            let vote = Vote {
                account: rep.public(),
                signature,
                timestamp,
                hashes,
            };
            let frame = Message::ConfirmAck(ConfirmAck {
                vote,
                rebroadcasted: false,
            })
            .encode(NET);
            bursts[i / BURST].extend_from_slice(&frame);
            items.push((rep.public(), digest, signature));
        }
        Pool { bursts, items }
    }
}

/// One shard's vote path: the core with one realtime channel, the verifier and key cache of
/// `node::shard`, and the position in the pool.
struct Path<'a> {
    pool: &'a Pool,
    next: usize,
    now: u64,
    core: ShardCore,
    rng: ChaCha8Rng,
    out: ShardOutput,
    spare: Vec<VerifyRequest>,
    verifier: BatchVerifier,
    keys: KeyCache,
    ids: Vec<u64>,
    /// Signatures that verified in `verify_only`.
    valid: u64,
}

impl<'a> Path<'a> {
    fn new(pool: &'a Pool, batch: usize) -> Path<'a> {
        let (core, rng) = realtime_core(NET);
        Path {
            pool,
            next: 0,
            now: 1,
            core,
            rng,
            out: ShardOutput::default(),
            spare: Vec::new(),
            verifier: BatchVerifier::new(batch),
            keys: KeyCache::new(1024),
            ids: Vec::with_capacity(batch),
            valid: 0,
        }
    }

    /// The index of the next burst; virtual time jumps when the pool comes round.
    fn next_burst(&mut self) -> usize {
        let b = self.next;
        self.next = (b + 1) % self.pool.bursts.len();
        if self.next == 0 {
            self.now += WRAP_MS;
        }
        b
    }

    /// Hands one receive buffer to the core; its verify requests wait in `out.verify`.
    fn receive(&mut self, piece: &[u8]) {
        let (now, out) = (self.now, &mut self.out);
        self.core.on_bytes(CONN, piece, now, &mut self.rng, out);
        // The Vote events would go to the crawler, the idle deadline to the ring.
        out.events.clear();
        out.io.clear();
    }

    /// Answers every waiting request `true` without checking anything.
    fn answer_stub(&mut self) {
        let mut reqs = std::mem::take(&mut self.spare);
        std::mem::swap(&mut reqs, &mut self.out.verify);
        for r in reqs.drain(..) {
            let (now, out) = (self.now, &mut self.out);
            self.core.on_verified(r.id, true, now, &mut self.rng, out);
        }
        self.spare = reqs;
        self.out.events.clear();
    }

    /// Queues every waiting request in the verifier (key cache, `push_key`), verifying and
    /// answering a batch as soon as it is full, as `node::shard` does.
    fn enqueue(&mut self) {
        let mut reqs = std::mem::take(&mut self.spare);
        std::mem::swap(&mut reqs, &mut self.out.verify);
        for r in reqs.drain(..) {
            let key = self
                .keys
                .get(&r.key)
                .expect("a representative key is a point");
            self.verifier
                .push_key(key, r.message.as_bytes(), &r.signature)
                .expect("a full batch is verified at once");
            self.ids.push(r.id);
            if self.verifier.is_full() {
                self.flush();
            }
        }
        self.spare = reqs;
    }

    /// Verifies the pending batch and answers each request with its result.
    fn flush(&mut self) {
        if self.verifier.is_empty() {
            return;
        }
        let oks = self.verifier.verify(&mut self.rng);
        for (id, ok) in self.ids.drain(..).zip(oks) {
            self.core
                .on_verified(id, *ok, self.now, &mut self.rng, &mut self.out);
        }
        self.out.events.clear();
    }

    /// One burst through the core only, answered by the stub; returns the CPU time spent in
    /// `on_bytes` alone.
    fn core_burst(&mut self, clock: &ThreadCpu) -> Duration {
        let b = self.next_burst();
        let pool = self.pool;
        let start = clock.start();
        for piece in pool.bursts[b].chunks(RECV_BUF) {
            self.receive(black_box(piece));
        }
        let spent = clock.end(start);
        self.answer_stub();
        spent
    }

    /// One burst end to end: core, verifier, answers.
    fn e2e_burst(&mut self) {
        let b = self.next_burst();
        let pool = self.pool;
        for piece in pool.bursts[b].chunks(RECV_BUF) {
            self.receive(black_box(piece));
            self.enqueue();
        }
        // The shard verifies what is left before its ring sleeps.
        self.flush();
    }

    /// One burst's signatures through the verifier alone.
    fn verify_burst(&mut self) {
        let b = self.next_burst();
        let pool = self.pool;
        for (key, digest, sig) in &pool.items[b * BURST..(b + 1) * BURST] {
            let key = self.keys.get(key).expect("a representative key is a point");
            self.verifier
                .push_key(key, &digest.0, sig)
                .expect("a full batch is verified at once");
            if self.verifier.is_full() {
                self.valid += self.count_valid();
            }
        }
        if !self.verifier.is_empty() {
            self.valid += self.count_valid();
        }
    }

    fn count_valid(&mut self) -> u64 {
        let oks = self.verifier.verify(&mut self.rng);
        oks.iter().filter(|&&ok| ok).count() as u64
    }

    /// Checks that every vote went through an open channel and verified (or, for the core
    /// alone, was answered): `votes` votes since `before`.
    fn assert_all_valid(&self, before: u64, votes: u64) {
        assert!(self.core.channel_of(CONN).is_some(), "channel cut");
        assert_eq!(self.core.stats().votes_valid - before, votes);
        assert_eq!(self.core.pending_verifications(), 0);
    }
}

fn vote_path(c: &mut Criterion<ThreadCpu>) {
    let pool = Pool::new();
    let clock = ThreadCpu;
    let rounds = POOL_BURSTS as u64;
    let per_round = (POOL_BURSTS * BURST) as u64;

    let mut g = c.benchmark_group("vote_core");
    g.throughput(Throughput::Elements(BURST as u64));
    let mut path = Path::new(&pool, 1);
    for _ in 0..rounds {
        path.core_burst(&clock);
    }
    path.assert_all_valid(0, per_round);
    let before = path.core.stats().votes_valid;
    let mut bursts = 0u64;
    g.bench_function("to_request", |b| {
        b.iter_custom(|iters| {
            bursts += iters;
            (0..iters).map(|_| path.core_burst(&clock)).sum()
        })
    });
    g.bench_function("stub", |b| {
        b.iter(|| {
            bursts += 1;
            path.core_burst(&clock)
        })
    });
    path.assert_all_valid(before, bursts * BURST as u64);
    g.finish();

    let mut g = c.benchmark_group("vote_verify");
    g.throughput(Throughput::Elements(BURST as u64));
    for batch in BATCHES {
        let mut path = Path::new(&pool, batch);
        for _ in 0..rounds {
            path.verify_burst();
        }
        assert_eq!(path.valid, per_round, "every pool vote verifies");
        let mut bursts = 0u64;
        g.bench_function(BenchmarkId::from_parameter(batch), |b| {
            b.iter(|| {
                bursts += 1;
                path.verify_burst()
            })
        });
        assert_eq!(path.valid, (rounds + bursts) * BURST as u64);
    }
    g.finish();

    let mut g = c.benchmark_group("vote_e2e");
    g.throughput(Throughput::Elements(BURST as u64));
    for batch in BATCHES {
        let mut path = Path::new(&pool, batch);
        for _ in 0..rounds {
            path.e2e_burst();
        }
        path.assert_all_valid(0, per_round);
        let mut bursts = 0u64;
        g.bench_function(BenchmarkId::from_parameter(batch), |b| {
            b.iter(|| {
                bursts += 1;
                path.e2e_burst()
            })
        });
        path.assert_all_valid(0, (rounds + bursts) * BURST as u64);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = vote_path
}
criterion_main!(benches);
