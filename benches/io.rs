//! Receive cost per small message over loopback: one client sends many 144-byte messages
//! (the size of a small Nano message) to one shard whose handler only counts bytes.
//!
//! - `wall_batched`: wall time per message, client writing 64 messages per `write`.
//! - `shard_cpu_batched`: the shard thread's CPU time per message, same traffic.
//! - `shard_cpu_one_write_each`: shard CPU per message when the client writes each message
//!   with its own `write` (fewer messages per receive).
//!
//! `cargo bench --bench io -- --warm-up-time 1 --measurement-time 3`

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nanopeer::io::{ConnId, Handler, Io, ShardConfig, ShardHandle, spawn};

const MSG: usize = 144;

struct Count {
    total: u64,
    calls: u64,
    seen: Arc<AtomicU64>,
    receives: Arc<AtomicU64>,
}

impl Handler for Count {
    type Command = ();
    fn on_data(&mut self, _io: &mut Io, _conn: ConnId, data: &[u8]) {
        self.total += data.len() as u64;
        self.calls += 1;
        self.receives.store(self.calls, Ordering::Relaxed);
        self.seen.store(self.total, Ordering::Release);
    }
}

struct Rig {
    shard: ShardHandle<()>,
    client: TcpStream,
    seen: Arc<AtomicU64>,
    receives: Arc<AtomicU64>,
    sent: u64,
    tid: i64,
}

impl Rig {
    fn new() -> Self {
        let seen = Arc::new(AtomicU64::new(0));
        let tid = Arc::new(AtomicI64::new(0));
        let receives = Arc::new(AtomicU64::new(0));
        let (s2, t2, r2) = (Arc::clone(&seen), Arc::clone(&tid), Arc::clone(&receives));
        let cfg = ShardConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..ShardConfig::default()
        };
        let shard = spawn(&cfg, 0, move |_| {
            t2.store(gettid(), Ordering::Release);
            Count {
                total: 0,
                calls: 0,
                seen: s2,
                receives: r2,
            }
        })
        .unwrap();
        let client = TcpStream::connect(shard.local_addr().unwrap()).unwrap();
        client.set_nodelay(true).unwrap();
        Rig {
            shard,
            client,
            seen,
            receives,
            sent: 0,
            tid: tid.load(Ordering::Acquire),
        }
    }

    /// Sends `n` messages, `per_write` per write call, and waits until the shard saw them.
    fn send(&mut self, n: u64, per_write: usize) {
        let chunk = vec![0x5a_u8; MSG * per_write];
        let mut left = n as usize;
        while left > 0 {
            let k = left.min(per_write);
            self.client.write_all(&chunk[..k * MSG]).unwrap();
            left -= k;
        }
        self.sent += n * MSG as u64;
        while self.seen.load(Ordering::Acquire) < self.sent {
            std::thread::yield_now();
        }
    }

    /// (messages, receive completions) so far.
    fn totals(&self) -> (u64, u64) {
        (
            self.sent / MSG as u64,
            self.receives.load(Ordering::Relaxed),
        )
    }

    /// CPU time the shard thread has used so far.
    fn shard_cpu(&self) -> Duration {
        let path = format!("/proc/self/task/{}/schedstat", self.tid);
        let s = std::fs::read_to_string(path).unwrap();
        Duration::from_nanos(s.split_whitespace().next().unwrap().parse().unwrap())
    }
}

/// The calling thread's kernel id.
fn gettid() -> i64 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let mut rig = Rig::new();
    let mut g = c.benchmark_group("recv_144B");
    g.throughput(Throughput::Elements(1));
    type Measure = fn(&mut Rig, u64) -> Duration;
    let cases: [(&str, Measure); 3] = [
        ("wall_batched", |rig, iters| {
            let t = Instant::now();
            rig.send(iters, 64);
            t.elapsed()
        }),
        ("shard_cpu_batched", |rig, iters| {
            let t = rig.shard_cpu();
            rig.send(iters, 64);
            rig.shard_cpu() - t
        }),
        ("shard_cpu_one_write_each", |rig, iters| {
            let t = rig.shard_cpu();
            rig.send(iters, 1);
            rig.shard_cpu() - t
        }),
    ];
    for (name, measure) in cases {
        let (m0, r0) = rig.totals();
        g.bench_function(name, |b| b.iter_custom(|iters| measure(&mut rig, iters)));
        let (m1, r1) = rig.totals();
        eprintln!(
            "{name}: {:.1} messages per receive",
            (m1 - m0) as f64 / (r1 - r0).max(1) as f64
        );
    }
    g.finish();
    rig.shard.stop();
    rig.shard.join().unwrap();
    let k = rig.shard.counters();
    eprintln!(
        "messages {}, receive completions {}, loop turns {}, buffer-ring exhaustions {}",
        rig.sent / MSG as u64,
        k.recv_completions,
        k.loop_turns,
        k.buf_ring_exhausted
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
