//! Shard core cost per received realtime message (no I/O, no signature checks: verify results
//! are answered `true` at once): keepalive, and a 1-hash confirm_ack (filter, vote hash,
//! pending entry, Vote event).
//!
//! Times are the bench thread's CPU time (`common::ThreadCpu`), not wall time.
//!
//! `cargo bench --bench shard -- --warm-up-time 1 --measurement-time 3`

mod common;

use std::hint::black_box;

use common::{CONN, ThreadCpu, realtime_core};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nanopeer::proto::shard::ShardOutput;
use nanopeer::types::{BlockHash, Network, PublicKey, Signature};
use nanopeer::wire::{ConfirmAck, Keepalive, Message, Vote};

const NET: Network = Network::Live;

fn bench(c: &mut Criterion<ThreadCpu>) {
    let mut g = c.benchmark_group("shard_rx");
    g.throughput(Throughput::Elements(1));
    let (mut core, mut rng) = realtime_core(NET);
    let ka = Message::Keepalive(Keepalive::default()).encode(NET);
    let mut out = ShardOutput::default();
    g.bench_function("keepalive", |b| {
        b.iter(|| {
            core.on_bytes(CONN, black_box(&ka), 1, &mut rng, &mut out);
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
            core.on_bytes(CONN, black_box(v), now, &mut rng, &mut out);
            if let Some(r) = out.verify.pop() {
                core.on_verified(r.id, true, now, &mut rng, &mut out);
            }
            out.clear();
        })
    });
    g.finish();
    // Every vote above went through an open channel (none was cut by a budget).
    assert!(core.channel_of(CONN).is_some());
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = bench
}
criterion_main!(benches);
