//! The driver of a load run ([`run`]): starts the load threads with their shares of the
//! connections, keys and source addresses, reports progress while they run, stops them at
//! the end and adds up their counters and CPU time.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::config::{LoadConfig, LoadError};
use super::peers::{Command, LoadHandler, ThreadSetup, ThreadShared};
use super::report::{BadSigCounts, Failure, LoadReport, Snapshot};
use crate::bench::hist::LatencyHistogram;
use crate::io::cpu::{current_thread_id, thread_cpu_time};
use crate::io::{self, ShardConfig, ShardHandle};

/// Per-thread share of `total` (the first `total % n` threads get one more).
fn share(total: usize, n: usize, i: usize) -> usize {
    total / n + usize::from(i < total % n)
}

/// Runs the load described by `config` against its target, calling `progress` every
/// `progress_interval` (and once at the end), and returns the totals. Blocks for about
/// `config.duration` (plus key generation and shutdown).
pub fn run(config: &LoadConfig, progress: impl FnMut(&Snapshot)) -> Result<LoadReport, LoadError> {
    run_counted(config, progress).map(|(r, _)| r)
}

/// [`run`], also returning what the bad-signature peers saw ([`LoadConfig::bad_sig_pct`]).
pub fn run_counted(
    config: &LoadConfig,
    mut progress: impl FnMut(&Snapshot),
) -> Result<(LoadReport, BadSigCounts), LoadError> {
    config.validate()?;
    let threads = config.threads.min(config.connections);
    let spread =
        config.source_ips > 0 && matches!(config.target.ip(), IpAddr::V4(ip) if ip.is_loopback());
    let src_total = if spread {
        config.source_ips.max(threads as u32)
    } else {
        0
    };
    let mut handles: Vec<ShardHandle<Command>> = Vec::with_capacity(threads);
    let mut shared: Vec<Arc<ThreadShared>> = Vec::with_capacity(threads);
    let stop_all = |handles: &[ShardHandle<Command>]| {
        for h in handles {
            h.stop();
        }
        for h in handles {
            let _ = h.join();
        }
    };
    for i in 0..threads {
        let concurrency = share(config.connections, threads, i);
        let hold_limit = if config.hold {
            share(config.hold_limit, threads, i)
        } else {
            0
        };
        let keys = share(config.key_pool, threads, i).max(concurrency + 1);
        let max_connections = 2 * concurrency + hold_limit + 16;
        let shard_cfg = ShardConfig {
            listen: None,
            cores: config.cores.clone(),
            max_connections,
            // The load generator only dials.
            max_outbound: max_connections,
            connect_timeout: config.connect_timeout,
            ..ShardConfig::default()
        };
        let ts = Arc::new(ThreadShared::default());
        shared.push(Arc::clone(&ts));
        let setup = ThreadSetup {
            target: config.target,
            network: config.network,
            hold: config.hold,
            verify_node: config.verify_node,
            handshake_timeout: config.handshake_timeout,
            connect_timeout: config.connect_timeout,
            verify_batch: config.verify_batch,
            bad_pct: u32::from(config.bad_sig_pct),
            index: i,
            threads,
            concurrency,
            hold_limit,
            keys,
            max_connections,
            src_count: if spread {
                share(src_total as usize, threads, i) as u32
            } else {
                0
            },
        };
        let spawned = io::spawn(&shard_cfg, i, move |_info: &io::ShardInfo| {
            ts.tid
                .store(current_thread_id().unwrap_or(0), Ordering::Relaxed);
            LoadHandler::new(ts, setup)
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                stop_all(&handles);
                return Err(LoadError::Start(e));
            }
        }
    }

    let tids: Vec<u32> = shared
        .iter()
        .map(|s| s.tid.load(Ordering::Relaxed))
        .collect();
    let cpu_of = |tids: &[u32]| -> Duration {
        tids.iter()
            .filter_map(|&t| thread_cpu_time(t).ok())
            .sum::<Duration>()
    };
    let cpu_start = cpu_of(&tids);
    let start = Instant::now();
    let end = start + config.duration;
    for h in &handles {
        // The queue is empty: this cannot fail unless the thread died (then it counts nothing).
        let _ = h.send_command(Command::Start { end });
    }

    let totals = |shared: &[Arc<ThreadShared>]| {
        let sum = |f: &dyn Fn(&ThreadShared) -> u64| shared.iter().map(|s| f(s)).sum::<u64>();
        let handshakes = sum(&|s| s.handshakes.load(Ordering::Relaxed));
        let failures = sum(&|s| {
            s.failures
                .iter()
                .map(|f| f.load(Ordering::Relaxed))
                .sum::<u64>()
        });
        let in_flight = sum(&|s| s.in_flight.load(Ordering::Relaxed));
        let held = sum(&|s| s.held.load(Ordering::Relaxed));
        (handshakes, failures, in_flight, held)
    };
    let mut last = (start, 0u64);
    let mut snapshot = |now: Instant, cpu: Duration| {
        let (handshakes, failures, in_flight, held) = totals(&shared);
        let elapsed = now.saturating_duration_since(start).min(config.duration);
        let dt = now.saturating_duration_since(last.0).as_secs_f64();
        let rate_per_sec = if dt > 0.0 {
            handshakes.saturating_sub(last.1) as f64 / dt
        } else {
            0.0
        };
        last = (now, handshakes);
        let secs = elapsed.as_secs_f64();
        Snapshot {
            elapsed,
            duration: config.duration,
            handshakes,
            failures,
            rate_per_sec,
            avg_per_sec: if secs > 0.0 {
                handshakes as f64 / secs
            } else {
                0.0
            },
            in_flight,
            held,
            load_cpu_util: if secs > 0.0 {
                cpu.saturating_sub(cpu_start).as_secs_f64() / (secs * threads as f64)
            } else {
                0.0
            },
        }
    };
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep(config.progress_interval.min(end - now));
        let now = Instant::now();
        if now < end {
            let s = snapshot(now, cpu_of(&tids));
            progress(&s);
        }
    }
    // Final count: the threads stop counting at `end` by their own clock; read the CPU while
    // they are still alive, then stop them.
    let cpu_end = cpu_of(&tids);
    let wall = Instant::now()
        .saturating_duration_since(start)
        .max(config.duration);
    let final_snapshot = snapshot(start + config.duration, cpu_end);
    stop_all(&handles);

    let mut latency = LatencyHistogram::new();
    for s in &shared {
        latency.merge(&s.hist.snapshot());
    }
    let failures = Failure::ALL
        .iter()
        .map(|&f| {
            let n = shared
                .iter()
                .map(|s| s.failures[f.index()].load(Ordering::Relaxed))
                .sum();
            (f, n)
        })
        .collect();
    let (handshakes, _, _, _) = totals(&shared);
    let held = final_snapshot.held;
    let dials: u64 = shared.iter().map(|s| s.dials.load(Ordering::Relaxed)).sum();
    let measured = config.duration.as_secs_f64();
    let load_cpu = cpu_end.saturating_sub(cpu_start);
    progress(&Snapshot {
        handshakes,
        ..final_snapshot
    });
    let sum = |f: &dyn Fn(&ThreadShared) -> &AtomicU64| {
        shared
            .iter()
            .map(|s| f(s).load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let bad = BadSigCounts {
        bad_sent: sum(&|s| &s.bad_sent),
        bad_rejected: sum(&|s| &s.bad_rejected),
        bad_accepted: sum(&|s| &s.bad_accepted),
        good_sent: sum(&|s| &s.good_sent),
    };
    let report = LoadReport {
        target: config.target,
        network: config.network,
        connections: config.connections,
        threads,
        hold: config.hold,
        verify_node: config.verify_node,
        wall,
        handshakes,
        handshakes_per_sec: handshakes as f64 / measured,
        failures,
        latency,
        dials,
        distinct_source_ips: dials.min(u64::from(src_total)),
        held,
        thread_ids: tids,
        load_cpu,
        load_cpu_util: load_cpu.as_secs_f64() / (wall.as_secs_f64() * threads as f64),
    };
    Ok((report, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for (total, n) in [(10, 3), (1, 4), (64, 1), (0, 2)] {
            assert_eq!((0..n).map(|i| share(total, n, i)).sum::<usize>(), total);
        }
    }

    #[test]
    fn config_is_validated() {
        let mut c = LoadConfig::new("127.0.0.1:1".parse().unwrap());
        c.connections = 0;
        assert!(matches!(run(&c, |_| {}), Err(LoadError::Config(_))));
    }
}
