//! Cost of the peer-store flush that the crawler runs every second on dev (every 15 s on
//! live): one durable redb write transaction.
//!
//! `cargo bench --bench store -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::Ipv6Addr;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use nanopeer::endpoint::Endpoint;
use nanopeer::store::PeerStore;

const T0: u64 = 1_704_067_200_000;

fn ep(i: u32) -> Endpoint {
    let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (i >> 16) as u16, i as u16);
    Endpoint::new(std::net::IpAddr::from(ip), 7075)
}

fn flush(c: &mut Criterion) {
    let mut group = c.benchmark_group("flush");
    for (live, stored) in [(100u32, 0u32), (1000, 0), (100, 10_000), (1000, 10_000)] {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = PeerStore::open(tmp.path()).unwrap();
        // Fill with older entries that stay within the hour during the run.
        let old: Vec<_> = (0..stored).map(|i| ep(1_000_000 + i)).collect();
        store.flush(&old, T0).unwrap();
        let live_eps: Vec<_> = (0..live).map(ep).collect();
        let mut now = T0 + 1;
        group.bench_with_input(
            BenchmarkId::new(format!("live={live}"), format!("stored={stored}")),
            &live_eps,
            |b, live_eps| {
                b.iter(|| {
                    now += 1;
                    black_box(store.flush(live_eps, now).unwrap())
                })
            },
        );
    }
    group.finish();

    let tmp = tempfile::tempdir().unwrap();
    let mut store = PeerStore::open(tmp.path()).unwrap();
    let all: Vec<_> = (0..10_000).map(ep).collect();
    store.flush(&all, T0).unwrap();
    c.bench_function("load/stored=10000", |b| {
        b.iter(|| black_box(store.load(T0 + 1)))
    });
    c.bench_function("flush/nothing_to_do", |b| {
        b.iter(|| black_box(store.flush(&[], T0 + 1).unwrap()))
    });
}

criterion_group!(benches, flush);
criterion_main!(benches);
