//! One measured bench against a fresh in-process node, as `bench` and every `tune` point run
//! it: the crypto ceiling it is compared with, the node's shard CPU and run-queue wait over
//! the measured window, the outcome and its JSON line.

use std::time::{Duration, Instant};

use super::ceiling::crypto_ceiling_per_sec;
use super::error::BenchError;
use super::loadgen;
use super::report::{BenchReport, Progress};
use super::setup::{
    BenchPlan, Placement, TempDir, bench_limits, cores, load_config, node_options, placement,
    validate,
};
use crate::io::cpu::{current_thread_id, thread_cpu_time};
use crate::node::Node;

/// Time thread `tid` of this process has spent runnable but waiting for a CPU (field 2 of
/// `/proc/self/task/TID/schedstat`): what other processes took from it.
pub fn thread_runq_wait(tid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let ns: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// The crypto ceiling of one core, measured for `secs` on a thread pinned to `core` (if any).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ceiling {
    /// Handshakes (votes, blocks) per second of wall time (the report's
    /// `crypto_ceiling_per_sec`, `verify_ceiling_per_sec`).
    pub per_sec: f64,
    /// The same per second of the thread's own CPU time: the figure with the time other
    /// processes took from the thread removed.
    pub per_cpu_sec: f64,
}

/// Measures the crypto ceiling for `secs` on a thread pinned to `core` (if any).
pub fn measure_ceiling(secs: f64, core: Option<usize>) -> Result<Ceiling, BenchError> {
    measure_ceiling_with(secs, core, crypto_ceiling_per_sec)
}

/// Measures a ceiling (`per_sec`: items per second for about the duration it is given) for
/// `secs` on a thread pinned to `core` (if any), by wall and by thread CPU time.
pub fn measure_ceiling_with(
    secs: f64,
    core: Option<usize>,
    per_sec: impl FnOnce(Duration) -> f64 + Send + 'static,
) -> Result<Ceiling, BenchError> {
    let d = Duration::from_secs_f64(secs.max(0.05));
    std::thread::Builder::new()
        .name("ceiling".into())
        .spawn(move || {
            if let Some(c) = core {
                let _ = crate::io::pin_current_thread(c);
            }
            let tid = current_thread_id().ok();
            let cpu = || tid.and_then(|t| thread_cpu_time(t).ok());
            let (c0, t0) = (cpu(), Instant::now());
            let per_sec = per_sec(d);
            let wall = t0.elapsed().as_secs_f64();
            let per_cpu_sec = match (c0, cpu()) {
                (Some(a), Some(b)) if b > a => per_sec * wall / (b - a).as_secs_f64(),
                _ => per_sec,
            };
            Ceiling {
                per_sec,
                per_cpu_sec: per_cpu_sec.max(per_sec),
            }
        })
        .map_err(|_| BenchError::Thread)?
        .join()
        .map_err(|_| BenchError::Thread)
}

/// Share of the wall time above which run-queue waiting makes the figures doubtful.
pub const RUNQ_WARN: f64 = 0.10;

/// What one in-process run produced: the report plus how it was set up.
#[derive(Debug, Clone)]
pub struct BenchOutcome {
    /// The report (its warnings include the placement's).
    pub report: BenchReport,
    /// Where shards and load threads ran.
    pub placement: Placement,
    /// The node limits raised for the run.
    pub limits: Vec<(&'static str, u64)>,
    /// CPU time of the node's crawler-side threads is not included; this is the shard
    /// threads' CPU over the measured window.
    pub server_cpu: Option<Duration>,
    /// Verify batches the node flushed in the measured window, and their mean size.
    pub batches: (u64, f64),
    /// The ceiling the report was compared with.
    pub ceiling: Ceiling,
    /// Share of the measured window the shard threads spent waiting for a CPU (mean per
    /// shard).
    pub server_runq_wait: Option<f64>,
}

impl BenchOutcome {
    /// Server CPU efficiency: one core's crypto cost per handshake (from the CPU-time
    /// ceiling) over the node's CPU per handshake — what `efficiency` would be if the shards
    /// had their cores to themselves.
    pub fn cpu_efficiency(&self) -> Option<f64> {
        let us = self.report.server_cpu_us_per_handshake?;
        (us > 0.0 && self.ceiling.per_cpu_sec > 0.0).then(|| 1e6 / self.ceiling.per_cpu_sec / us)
    }
}

/// Runs one bench against a fresh in-process node: warm-up, then the measured load (shown on
/// `progress`). `ceiling` is the crypto ceiling measured before.
pub fn bench_in_process(
    plan: &BenchPlan,
    ceiling: Ceiling,
    progress: &Progress,
) -> Result<BenchOutcome, BenchError> {
    validate(plan)?;
    let cores = cores();
    let placement = placement(plan.shards, plan.load_threads, cores, plan.pin);
    let dir = TempDir::new()?;
    let node = Node::start(node_options(plan, dir.path(), placement.pin_node))?;
    let target = node.local_addr();
    let result = (|| {
        if !plan.warmup.is_zero() {
            loadgen::run(&load_config(plan, target, &placement, plan.warmup), |_| {})?;
        }
        let tids = node.shard_thread_ids();
        let shard_cpu = || -> Option<Duration> {
            let mut sum = Duration::ZERO;
            for &t in &tids {
                sum += thread_cpu_time(t).ok()?;
            }
            Some(sum)
        };
        let runq = || -> Option<Duration> {
            let mut sum = Duration::ZERO;
            for &t in &tids {
                sum += thread_runq_wait(t)?;
            }
            Some(sum)
        };
        let before_batch = node.stats().batch;
        let (cpu0, rq0, t0) = (shard_cpu(), runq(), Instant::now());
        let load = loadgen::run(&load_config(plan, target, &placement, plan.duration), |s| {
            progress.update(s)
        })?;
        let (cpu1, rq1, wall) = (shard_cpu(), runq(), t0.elapsed());
        let server_runq_wait = rq0.zip(rq1).map(|(a, b)| {
            b.saturating_sub(a).as_secs_f64() / (wall.as_secs_f64() * tids.len().max(1) as f64)
        });
        let after_batch = node.stats().batch;
        progress.finish();
        let server_cpu = cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a));
        let flushes = after_batch.flushes.saturating_sub(before_batch.flushes);
        let items = after_batch
            .verifier
            .items
            .saturating_sub(before_batch.verifier.items);
        let mean = if flushes > 0 {
            items as f64 / flushes as f64
        } else {
            0.0
        };
        let mut report = BenchReport::new(
            &load,
            plan.shards,
            plan.batch_max,
            ceiling.per_sec,
            server_cpu,
        );
        report.warnings.extend(placement.warnings.iter().cloned());
        if let Some(w) = server_runq_wait.filter(|&w| w > RUNQ_WARN) {
            report.warnings.push(format!(
                "the node's shard threads waited for a CPU {:.0} % of the time (other processes were running): the rate understates the node; compare server CPU per handshake",
                w * 100.0
            ));
        }
        Ok::<_, BenchError>(BenchOutcome {
            report,
            placement: placement.clone(),
            limits: bench_limits(plan),
            server_cpu,
            batches: (flushes, mean),
            ceiling,
            server_runq_wait,
        })
    })();
    let stopped = node.stop();
    let outcome = result?;
    stopped?;
    Ok(outcome)
}

/// Adds how a run was set up to its JSON object: `cores`, `placement`, `bench_limits`,
/// `load_average`.
pub fn insert_setup(
    m: &mut serde_json::Map<String, serde_json::Value>,
    cores: usize,
    placement: &Placement,
    limits: &[(&'static str, u64)],
) {
    m.insert("cores".into(), cores.into());
    m.insert("placement".into(), placement.description.clone().into());
    let limits: serde_json::Map<String, serde_json::Value> = limits
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).into()))
        .collect();
    m.insert("bench_limits".into(), limits.into());
    m.insert("load_average".into(), load_average().into());
}

/// The JSON line of a bench: the report's fields, then how the run was set up.
pub fn outcome_json(o: &BenchOutcome, cores: usize) -> serde_json::Value {
    let mut v = serde_json::to_value(&o.report).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        insert_setup(m, cores, &o.placement, &o.limits);
        m.insert("verify_batches".into(), o.batches.0.into());
        m.insert("verify_batch_mean".into(), o.batches.1.into());
        m.insert(
            "crypto_ceiling_cpu_per_sec".into(),
            o.ceiling.per_cpu_sec.into(),
        );
        m.insert("cpu_efficiency".into(), o.cpu_efficiency().into());
        m.insert("server_runq_wait".into(), o.server_runq_wait.into());
    }
    v
}

/// The 1-minute load average (`/proc/loadavg`), when readable.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Network;

    #[test]
    fn in_process_bench_completes_handshakes_and_cleans_up() {
        let plan = BenchPlan {
            shards: 1,
            batch_max: 16,
            batch_delay_us: 200,
            duration: Duration::from_millis(400),
            warmup: Duration::ZERO,
            connections: 8,
            load_threads: Some(1),
            network: Network::Dev,
            verify_node: true,
            hold: false,
            hold_limit: 0,
            pin: false,
        };
        let ceiling = Ceiling {
            per_sec: 1000.0,
            per_cpu_sec: 1000.0,
        };
        // Bench data directories left in the temp dir.
        let bench_dirs = || -> usize {
            std::fs::read_dir(std::env::temp_dir())
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| {
                            e.file_name()
                                .to_string_lossy()
                                .starts_with("nanopeer-bench-")
                        })
                        .count()
                })
                .unwrap_or(0)
        };
        let before = bench_dirs();
        let o = bench_in_process(&plan, ceiling, &Progress::hidden()).unwrap();
        assert!(o.report.handshakes > 0, "{:?}", o.report);
        assert_eq!(o.report.failures_total, 0, "{:?}", o.report.failures);
        let cpu = o.report.server_cpu_us_per_handshake.unwrap();
        assert!(cpu > 0.0 && cpu < 1e6, "{cpu}");
        assert!(o.batches.0 > 0);
        let v = outcome_json(&o, 2);
        assert_eq!(v["shards"], 1);
        assert!(v["bench_limits"]["max_channels"].as_u64().unwrap() >= 4096);
        // the data directory is gone
        let after = bench_dirs();
        assert!(after <= before, "{before} → {after}");
    }
}
