//! Channel map backends under a read-heavy mix from 1, 2 and 4 threads over ~1000 channels:
//! 90% endpoint lookup + timestamp touch, 4% node-id lookup, 4% random sample of 8,
//! 2% insert + remove. Throughput is the total over all threads.
//!
//! Backends: `default` (the library's: endpoints on papaya, node ids on dashmap), `papaya`
//! (both on papaya) and `dashmap` (both on dashmap); the last two live only here. `*_siphash`
//! swaps the fold hasher for the standard SipHash. Also single-operation groups
//! (`channels_lookup_touch`, `channels_op`).
//!
//! `cargo bench --bench channels -- --warm-up-time 1 --measurement-time 3`

use std::hash::BuildHasher;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nanopeer::channels::backend::{Backend, DefaultBackend, FoldBuildHasher};
use nanopeer::channels::{Channel, ChannelId, ChannelLimits, ChannelMap, Direction, NewChannel};
use nanopeer::endpoint::Endpoint;
use nanopeer::types::PublicKey;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The index on `dashmap` 6: sharded `RwLock`s (a read takes a shard read lock).
pub struct DashBackend<S: BuildHasher + Clone = FoldBuildHasher> {
    by_endpoint: dashmap::DashMap<Endpoint, Arc<Channel>, S>,
    by_node: dashmap::DashMap<PublicKey, Vec<Arc<Channel>>, S>,
}

impl<S: BuildHasher + Default + Clone + Send + Sync> Backend for DashBackend<S> {
    fn with_capacity(capacity: usize) -> Self {
        DashBackend {
            by_endpoint: dashmap::DashMap::with_capacity_and_hasher(capacity, S::default()),
            by_node: dashmap::DashMap::with_capacity_and_hasher(capacity, S::default()),
        }
    }

    #[inline]
    fn with<R>(&self, ep: &Endpoint, f: impl FnOnce(&Arc<Channel>) -> R) -> Option<R> {
        self.by_endpoint.get(ep).map(|r| f(r.value()))
    }

    fn insert(&self, ch: Arc<Channel>) {
        self.by_endpoint.insert(ch.remote(), ch);
    }

    fn remove(&self, ep: &Endpoint) {
        self.by_endpoint.remove(ep);
    }

    fn node_insert(&self, ch: &Arc<Channel>) {
        self.by_node
            .entry(*ch.node_id())
            .or_default()
            .push(ch.clone());
    }

    fn node_remove(&self, node_id: &PublicKey, id: ChannelId) {
        if let dashmap::Entry::Occupied(mut o) = self.by_node.entry(*node_id) {
            o.get_mut().retain(|c| c.id() != id);
            if o.get().is_empty() {
                o.remove();
            }
        }
    }

    fn node_with<R>(&self, node_id: &PublicKey, f: impl FnOnce(&[Arc<Channel>]) -> R) -> Option<R> {
        self.by_node.get(node_id).map(|r| f(r.value()))
    }

    fn len(&self) -> usize {
        self.by_endpoint.len()
    }
}

/// Both indexes on papaya 0.2 (blocking resize; see `DefaultBackend`).
pub struct PapayaBackend<S = FoldBuildHasher> {
    by_endpoint: papaya::HashMap<Endpoint, Arc<Channel>, S>,
    by_node: papaya::HashMap<PublicKey, Box<[Arc<Channel>]>, S>,
}

fn papaya_map<K, V, S: Default>(capacity: usize) -> papaya::HashMap<K, V, S> {
    papaya::HashMap::builder()
        .capacity(capacity)
        .hasher(S::default())
        .resize_mode(papaya::ResizeMode::Blocking)
        .build()
}

impl<S: BuildHasher + Default + Send + Sync> Backend for PapayaBackend<S> {
    fn with_capacity(capacity: usize) -> Self {
        PapayaBackend {
            by_endpoint: papaya_map(capacity),
            by_node: papaya_map(capacity),
        }
    }

    #[inline]
    fn with<R>(&self, ep: &Endpoint, f: impl FnOnce(&Arc<Channel>) -> R) -> Option<R> {
        self.by_endpoint.pin().get(ep).map(f)
    }

    fn insert(&self, ch: Arc<Channel>) {
        self.by_endpoint.pin().insert(ch.remote(), ch);
    }

    fn remove(&self, ep: &Endpoint) {
        self.by_endpoint.pin().remove(ep);
    }

    fn node_insert(&self, ch: &Arc<Channel>) {
        self.by_node.pin().update_or_insert_with(
            *ch.node_id(),
            |list| list.iter().cloned().chain([ch.clone()]).collect(),
            || Box::new([ch.clone()]),
        );
    }

    fn node_remove(&self, node_id: &PublicKey, id: ChannelId) {
        self.by_node.pin().compute(*node_id, |entry| match entry {
            None => papaya::Operation::Abort(()),
            Some((_, list)) => {
                if !list.iter().any(|c| c.id() == id) {
                    return papaya::Operation::Abort(());
                }
                let rest: Box<[Arc<Channel>]> =
                    list.iter().filter(|c| c.id() != id).cloned().collect();
                if rest.is_empty() {
                    papaya::Operation::Remove
                } else {
                    papaya::Operation::Insert(rest)
                }
            }
        });
    }

    fn node_with<R>(&self, node_id: &PublicKey, f: impl FnOnce(&[Arc<Channel>]) -> R) -> Option<R> {
        self.by_node.pin().get(node_id).map(|l| f(l))
    }

    fn len(&self) -> usize {
        self.by_endpoint.len()
    }
}

const CHANNELS: u32 = 1000;
const MAX_THREADS: u32 = 4;
/// Spare endpoints per thread for the insert + remove share of the mix.
const SPARES: u32 = 64;

fn endpoint(i: u32) -> Endpoint {
    // One channel per IPv4 address, spread over many /24s.
    let ip = Ipv4Addr::from_bits(0x2000_0000 + i * 257);
    Endpoint::new(std::net::IpAddr::from(ip.to_ipv6_mapped()), 7075)
}

fn node(i: u32) -> PublicKey {
    let mut b = [7u8; 32];
    b[..4].copy_from_slice(&i.to_le_bytes());
    PublicKey(b)
}

fn new_channel(i: u32) -> NewChannel {
    NewChannel {
        node_id: node(i),
        protocol_version: 0x15,
        remote: endpoint(i),
        shard: (i % 4) as u16,
        direction: Direction::Inbound,
        now_ms: 0,
    }
}

fn filled<B: Backend>() -> ChannelMap<B> {
    let map = ChannelMap::<B>::with_backend(ChannelLimits {
        max_peers_per_ip: 4,
        max_peers_per_subnetwork: 16,
        max_channels: 8192,
        max_outbound: 8192,
        max_attempts: 4096,
    });
    for i in 0..CHANNELS {
        map.try_insert(new_channel(i)).expect("fill");
    }
    map
}

/// Cumulative thresholds (of 100) of the mix: lookup, node id, sample; the rest is churn.
/// `NANOPEER_BENCH_MIX="90,4,4,2"` (lookup, node id, sample, insert+remove percentages)
/// overrides the default for experiments.
fn mix_thresholds() -> [u32; 3] {
    let pct: Vec<u32> = std::env::var("NANOPEER_BENCH_MIX")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<u32>| v.len() == 4 && v.iter().sum::<u32>() == 100)
        .unwrap_or_else(|| vec![90, 4, 4, 2]);
    [pct[0], pct[0] + pct[1], pct[0] + pct[1] + pct[2]]
}

/// One thread's share: `iters` operations of the mix.
fn run_mix<B: Backend>(map: &ChannelMap<B>, thread: u32, iters: u64, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed ^ (u64::from(thread) << 32));
    let spare_base = CHANNELS + thread * SPARES;
    let mut spare = 0;
    let [lookup, by_node, sample] = mix_thresholds();
    for i in 0..iters {
        let r: u32 = rng.random_range(0..100);
        if r < lookup {
            let ep = endpoint(rng.random_range(0..CHANNELS));
            black_box(map.touch_received(&ep, i));
        } else if r < by_node {
            let n = node(rng.random_range(0..CHANNELS));
            black_box(map.find_node_id(&n));
        } else if r < sample {
            black_box(map.random_set(8, &mut rng));
        } else {
            let idx = spare_base + spare;
            spare = (spare + 1) % SPARES;
            let ch = map.try_insert(new_channel(idx));
            black_box(&ch);
            black_box(map.remove(&endpoint(idx)));
        }
    }
}

/// Runs the mix on `threads` threads, `iters` operations each; returns the wall time.
fn timed_mix<B: Backend>(map: &ChannelMap<B>, threads: u32, iters: u64, seed: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || run_mix(map, t, iters, seed));
        }
    });
    start.elapsed()
}

/// One group per thread count with all backends back to back, so load drift on the shared
/// machine hits them alike. Throughput is summed over the threads. (Per-thread CPU time was
/// tried to filter out other processes, but `/proc/thread-self/schedstat` only advances at
/// scheduler ticks, too coarse for criterion's samples.)
fn bench_mix(c: &mut Criterion) {
    let default = filled::<DefaultBackend>();
    let papaya = filled::<PapayaBackend>();
    let dash = filled::<DashBackend>();
    for threads in [1u32, 2, 4] {
        assert!(threads <= MAX_THREADS);
        let mut group = c.benchmark_group(format!("channels_mix/{threads}"));
        group.throughput(Throughput::Elements(u64::from(threads)));
        group.bench_function("default", |b| {
            b.iter_custom(|iters| timed_mix(&default, threads, iters, iters))
        });
        group.bench_function("papaya", |b| {
            b.iter_custom(|iters| timed_mix(&papaya, threads, iters, iters))
        });
        group.bench_function("dashmap", |b| {
            b.iter_custom(|iters| timed_mix(&dash, threads, iters, iters))
        });
        group.finish();
    }
}

fn bench_lookup<B: Backend + 'static>(c: &mut Criterion, name: &str) {
    let map = filled::<B>();
    let mut group = c.benchmark_group("channels_lookup_touch");
    group.bench_function(name, |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = (i + 7) % CHANNELS;
            black_box(map.touch_received(&endpoint(i), u64::from(i)))
        });
    });
    group.finish();
}

fn op_node_lookup<B: Backend>(c: &mut Criterion, name: &str, map: &ChannelMap<B>) {
    c.bench_function(&format!("channels_op/node_lookup/{name}"), |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = (i + 7) % CHANNELS;
            black_box(map.find_node_id(&node(i)))
        });
    });
}

fn op_random_set<B: Backend>(c: &mut Criterion, name: &str, map: &ChannelMap<B>) {
    let mut rng = SmallRng::seed_from_u64(9);
    c.bench_function(&format!("channels_op/random_set_8/{name}"), |b| {
        b.iter(|| black_box(map.random_set(8, &mut rng)));
    });
}

fn op_insert_remove<B: Backend>(c: &mut Criterion, name: &str, map: &ChannelMap<B>) {
    c.bench_function(&format!("channels_op/insert_remove/{name}"), |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = (i + 1) % SPARES;
            let idx = CHANNELS + i;
            black_box(map.try_insert(new_channel(idx)).is_ok());
            black_box(map.remove(&endpoint(idx)))
        });
    });
}

/// Single operations, one operation at a time over all backends.
fn bench_ops(c: &mut Criterion) {
    let default = filled::<DefaultBackend>();
    let papaya = filled::<PapayaBackend>();
    let dash = filled::<DashBackend>();
    op_node_lookup(c, "default", &default);
    op_node_lookup(c, "papaya", &papaya);
    op_node_lookup(c, "dashmap", &dash);
    op_random_set(c, "default", &default);
    op_random_set(c, "papaya", &papaya);
    op_random_set(c, "dashmap", &dash);
    op_insert_remove(c, "default", &default);
    op_insert_remove(c, "papaya", &papaya);
    op_insert_remove(c, "dashmap", &dash);
}

fn benches(c: &mut Criterion) {
    type Siphash = std::hash::RandomState;
    bench_lookup::<DefaultBackend>(c, "default");
    bench_lookup::<PapayaBackend>(c, "papaya");
    bench_lookup::<DashBackend>(c, "dashmap");
    bench_lookup::<DefaultBackend<Siphash>>(c, "default_siphash");
    bench_lookup::<DashBackend<Siphash>>(c, "dashmap_siphash");
    bench_ops(c);
    bench_mix(c);
}

criterion_group! {
    name = group;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(group);
