//! The report of a votes or publish run ([`StreamReport`]): the rate the node verified, its
//! ceiling and efficiency, what the node counted of the whole stream, and the terminal table
//! and JSON object.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::Workload;
use super::counters::Tally;
use super::run::StreamRun;
use crate::bench::inprocess::{Ceiling, RUNQ_WARN};
use crate::bench::loadgen::SATURATION_WARN;
use crate::bench::report::{efficiency, two_columns};
use crate::bench::stream::StreamMix;

/// What a votes or publish run measured, and how it was set up.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamReport {
    /// `votes` or `publish`.
    pub workload: Workload,
    /// Shards of the node (with a target: as given, for the efficiency).
    pub shards: usize,
    /// The node's verify batch size (with a target: as given).
    pub batch_max: usize,
    /// The measured window, seconds.
    pub duration_s: f64,
    /// Messages the node verified in the window.
    pub verified_in_window: u64,
    /// …per second: the figure (`votes_per_sec`, `blocks_per_sec`).
    pub per_sec: f64,
    /// One core's rate on the verification alone, same key mix and batch size (blocks: single
    /// verification of fresh keys plus the work check).
    pub ceiling: Ceiling,
    /// `per_sec / (shards × ceiling)`.
    pub efficiency: f64,
    /// Shard CPU per verified message over the window, µs (in-process only).
    pub server_cpu_us: Option<f64>,
    /// Share of the window the shard threads waited for a CPU (in-process only).
    pub server_runq_wait: Option<f64>,
    /// Mean requests per verify batch in the window (nanopeer nodes only).
    pub verify_batch_mean: Option<f64>,
    /// Verify batches flushed in the window.
    pub verify_batches: u64,
    /// Messages the streaming peers sent, over the whole run.
    pub sent: u64,
    /// What the node counted of the whole run (streams open to the end of the drain).
    pub total: Tally,
    /// What the pool held.
    pub pool: StreamMix,
    /// Memory the pool held, bytes.
    pub pool_bytes: usize,
    /// How long building (signing) the pool took.
    pub pool_build: Duration,
    /// Channels (one streaming peer each).
    pub channels: usize,
    /// The node's connections per shard as the window ended (in-process only).
    pub channels_per_shard: Option<Vec<u64>>,
    /// Channels the node closed while streaming (the peer reconnected).
    pub channels_lost: u64,
    /// Representative keys signing the votes (publish: 0, every block has its own account).
    pub reps: usize,
    /// Hashes per vote (publish: 0).
    pub hashes: usize,
    /// Messages/s asked for over all channels (0: as fast as the node reads).
    pub rate: u32,
    /// The node driven.
    pub target: String,
    /// Its network.
    pub network: String,
    /// The streaming peers' io threads.
    pub load_threads: usize,
    /// Their CPU over the window / (threads × window).
    pub load_cpu_util: f64,
    /// How long the channels took to come up, seconds.
    pub ramp_s: f64,
    /// A channel ran out of messages before the window's full duration.
    pub pool_ran_out: bool,
    /// Every message sent was counted as received by the node before the end.
    pub drained: bool,
    /// Things that make the figures doubtful.
    pub warnings: Vec<String>,
}

/// How a run was set up, besides the run itself ([`StreamReport::new`]).
#[derive(Debug, Clone)]
pub struct StreamSetup {
    /// The workload.
    pub workload: Workload,
    /// Shards (with a target: as given).
    pub shards: usize,
    /// Batch size (with a target: as given).
    pub batch_max: usize,
    /// Representative keys (votes).
    pub reps: usize,
    /// Hashes per vote (votes).
    pub hashes: usize,
    /// Messages/s asked for.
    pub rate: u32,
    /// The node driven.
    pub target: String,
    /// Its network's name.
    pub network: String,
    /// What the pool held, its bytes and how long it took to build.
    pub pool: (StreamMix, usize, Duration),
    /// The asked-for window.
    pub duration: Duration,
}

impl StreamReport {
    /// The report of `run`, set up as `setup` says, against `ceiling`.
    pub fn new(setup: &StreamSetup, run: &StreamRun, ceiling: Ceiling) -> StreamReport {
        let secs = run.window.as_secs_f64();
        let verified = run.in_window.verified;
        let per_sec = if secs > 0.0 {
            verified as f64 / secs
        } else {
            0.0
        };
        let per_item =
            |d: Duration| (verified > 0).then(|| d.as_secs_f64() * 1e6 / verified as f64);
        let load_util = if secs > 0.0 && run.load_cpu.1 > 0 {
            run.load_cpu.0.as_secs_f64() / (secs * run.load_cpu.1 as f64)
        } else {
            0.0
        };
        let mut r = StreamReport {
            workload: setup.workload,
            shards: setup.shards,
            batch_max: setup.batch_max,
            duration_s: secs,
            verified_in_window: verified,
            per_sec,
            ceiling,
            efficiency: efficiency(per_sec, setup.shards, ceiling.per_sec),
            server_cpu_us: run.server_cpu.and_then(per_item),
            server_runq_wait: run.server_runq_wait,
            verify_batch_mean: run.in_window.batch_mean(),
            verify_batches: run.in_window.batches.0,
            sent: run.peers.messages_sent,
            total: run.total.clone(),
            pool: setup.pool.0,
            pool_bytes: setup.pool.1,
            pool_build: setup.pool.2,
            channels: run.peers.peers as usize,
            channels_per_shard: run.per_shard.clone(),
            channels_lost: run.peers.channels_cut,
            reps: setup.reps,
            hashes: setup.hashes,
            rate: setup.rate,
            target: setup.target.clone(),
            network: setup.network.clone(),
            load_threads: run.load_cpu.1,
            load_cpu_util: load_util,
            ramp_s: run.ramp.as_secs_f64(),
            pool_ran_out: run.pool_ran_out,
            drained: run.drained,
            warnings: Vec::new(),
        };
        r.warnings = r.warn(setup, run);
        r
    }

    /// A report with every figure zero or empty, for tests of what reads reports.
    #[cfg(test)]
    pub(crate) fn example(workload: Workload) -> StreamReport {
        StreamReport {
            workload,
            shards: 1,
            batch_max: 64,
            duration_s: 5.0,
            verified_in_window: 0,
            per_sec: 0.0,
            ceiling: Ceiling {
                per_sec: 100_000.0,
                per_cpu_sec: 100_000.0,
            },
            efficiency: 0.0,
            server_cpu_us: None,
            server_runq_wait: None,
            verify_batch_mean: None,
            verify_batches: 0,
            sent: 0,
            total: Tally::default(),
            pool: StreamMix::default(),
            pool_bytes: 0,
            pool_build: Duration::ZERO,
            channels: 8,
            channels_per_shard: None,
            channels_lost: 0,
            reps: 64,
            hashes: 1,
            rate: 0,
            target: "127.0.0.1:1".into(),
            network: "dev".into(),
            load_threads: 1,
            load_cpu_util: 0.1,
            ramp_s: 0.0,
            pool_ran_out: false,
            drained: true,
            warnings: Vec::new(),
        }
    }

    fn warn(&self, setup: &StreamSetup, run: &StreamRun) -> Vec<String> {
        let mut w = Vec::new();
        let unit = self.workload.unit();
        if self.verified_in_window == 0 {
            w.push(format!("the node verified no {unit} in the window"));
        }
        if run.ran_out_in_warmup {
            w.push(format!(
                "the pool ran out before the window saw the node busy (in the warm-up, or \
                 within one read of the counters): the window ran from the start of the \
                 streams ({:.2} s); raise --pool",
                self.duration_s
            ));
        } else if self.pool_ran_out && self.duration_s < 0.9 * setup.duration.as_secs_f64() {
            w.push(format!(
                "the pool ran out after {:.2} s of the {:.0} s window; raise --pool for a longer \
                 window",
                self.duration_s,
                setup.duration.as_secs_f64()
            ));
        }
        let overload = self.total.drop_of("overload");
        if overload > 0 {
            w.push(format!(
                "the node dropped {overload} {unit} unverified for overload (too many checks in \
                 flight on a channel, or a full queue)"
            ));
        }
        if !self.drained {
            w.push(format!(
                "of {} {unit} sent, the node counted {} received by the end",
                self.sent, self.total.received
            ));
        }
        if let Some(q) = self.server_runq_wait.filter(|&q| q > RUNQ_WARN) {
            w.push(format!(
                "the node's shard threads waited for a CPU {:.0} % of the window (other \
                 processes were running): the rate understates the node; compare server CPU \
                 per {}",
                q * 100.0,
                self.workload.singular()
            ));
        }
        if self.load_cpu_util >= SATURATION_WARN {
            w.push(format!(
                "the streaming peers' threads were {:.0} % busy: they may have limited the rate",
                self.load_cpu_util * 100.0
            ));
        }
        if let Some(per) = &self.channels_per_shard
            && per.len() > 1
            && per.contains(&0)
        {
            w.push(format!(
                "a shard got no channel ({per:?} per shard): the kernel spreads connections \
                 by hash; raise --channels"
            ));
        }
        w
    }

    /// The figure's JSON key: `votes_per_sec` or `blocks_per_sec`.
    pub fn rate_key(&self) -> String {
        format!("{}_per_sec", self.workload.unit())
    }

    /// The report as a JSON object (the contract fields first).
    pub fn json(&self) -> Value {
        let one = self.workload.singular();
        let drops: Map<String, Value> = self
            .total
            .drops
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect();
        let mut m = Map::new();
        m.insert("workload".into(), self.workload.as_str().into());
        m.insert("shards".into(), self.shards.into());
        m.insert("batch_max".into(), self.batch_max.into());
        m.insert(self.rate_key(), self.per_sec.into());
        m.insert("verify_ceiling_per_sec".into(), self.ceiling.per_sec.into());
        m.insert("efficiency".into(), self.efficiency.into());
        m.insert(
            format!("server_cpu_us_per_{one}"),
            self.server_cpu_us.into(),
        );
        m.insert("verify_batch_mean".into(), self.verify_batch_mean.into());
        m.insert("drops".into(), drops.into());
        let rest = json!({
            "duration_s": self.duration_s,
            "verified_in_window": self.verified_in_window,
            "verify_ceiling_cpu_per_sec": self.ceiling.per_cpu_sec,
            "cpu_efficiency": self.cpu_efficiency(),
            "verify_batches": self.verify_batches,
            "server_runq_wait": self.server_runq_wait,
            "sent": self.sent,
            "received": self.total.received,
            "verified": self.total.verified,
            "dropped": self.total.dropped(),
            "crawler_events_dropped": self.total.crawler_dropped,
            "channels_cut_by_node": self.total.channels_cut,
            "pool": self.pool,
            "pool_bytes": self.pool_bytes,
            "pool_build_s": self.pool_build.as_secs_f64(),
            "channels": self.channels,
            "channels_per_shard": self.channels_per_shard,
            "channels_lost": self.channels_lost,
            "reps": self.reps,
            "hashes": self.hashes,
            "rate": self.rate,
            "target": self.target,
            "network": self.network,
            "load_threads": self.load_threads,
            "load_cpu_util": self.load_cpu_util,
            "ramp_s": self.ramp_s,
            "pool_ran_out": self.pool_ran_out,
            "drained": self.drained,
            "warnings": self.warnings,
        });
        if let Value::Object(rest) = rest {
            m.extend(rest);
        }
        Value::Object(m)
    }

    /// Server CPU efficiency: one core's verification cost per message (from the CPU-time
    /// ceiling) over the node's CPU per message.
    pub fn cpu_efficiency(&self) -> Option<f64> {
        let us = self.server_cpu_us?;
        (us > 0.0 && self.ceiling.per_cpu_sec > 0.0).then(|| 1e6 / self.ceiling.per_cpu_sec / us)
    }

    /// The report as an aligned two-column table, warnings last.
    pub fn table(&self) -> String {
        let unit = self.workload.unit();
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("n/a".into(), f);
        let mut rows: Vec<(String, String)> = vec![
            ("workload".into(), self.workload.as_str().into()),
            (
                "target".into(),
                format!("{} ({})", self.target, self.network),
            ),
            ("shards".into(), self.shards.to_string()),
            ("batch_max".into(), self.batch_max.to_string()),
            (
                "stream".into(),
                format!(
                    "{} channel(s){}, {}{}",
                    self.channels,
                    self.channels_per_shard
                        .as_ref()
                        .map_or(String::new(), |p| format!(" ({p:?} per shard)")),
                    match self.workload {
                        Workload::Votes => format!(
                            "{} representative(s), {} hash(es) per vote",
                            self.reps, self.hashes
                        ),
                        _ => "a fresh account per block".into(),
                    },
                    if self.rate > 0 {
                        format!(", {}/s", self.rate)
                    } else {
                        ", as fast as the node reads".into()
                    }
                ),
            ),
            (
                "pool".into(),
                format!(
                    "{} valid, {} bad signatures, {} duplicates, {} bad work; {:.1} MB, built in \
                     {:.1} s",
                    self.pool.valid,
                    self.pool.bad_sigs,
                    self.pool.duplicates,
                    self.pool.bad_work,
                    self.pool_bytes as f64 / 1e6,
                    self.pool_build.as_secs_f64()
                ),
            ),
            ("window".into(), format!("{:.2} s", self.duration_s)),
            (format!("{unit} verified/s"), format!("{:.0}", self.per_sec)),
            (
                "verify ceiling (1 core)".into(),
                format!(
                    "{:.0} {unit}/s ({:.0} per CPU second)",
                    self.ceiling.per_sec, self.ceiling.per_cpu_sec
                ),
            ),
            (
                "efficiency".into(),
                format!("{:.1} %", self.efficiency * 100.0),
            ),
            (
                format!("server CPU / {}", self.workload.singular()),
                opt(self.server_cpu_us, &|v| format!("{v:.2} µs")),
            ),
            (
                "CPU efficiency".into(),
                opt(self.cpu_efficiency(), &|v| format!("{:.1} %", v * 100.0)),
            ),
            (
                "verify batch mean".into(),
                opt(self.verify_batch_mean, &|v| format!("{v:.1}")),
            ),
            (
                "whole run".into(),
                format!(
                    "{} sent, {} received, {} verified, {} dropped",
                    self.sent,
                    self.total.received,
                    self.total.verified,
                    self.total.dropped()
                ),
            ),
        ];
        for (reason, n) in self.total.drops.iter().filter(|(_, n)| *n > 0) {
            rows.push((format!("  {reason}"), n.to_string()));
        }
        if self.total.crawler_dropped > 0 {
            rows.push((
                "  verified, dropped before the crawler".into(),
                self.total.crawler_dropped.to_string(),
            ));
        }
        rows.push((
            "load CPU use".into(),
            format!(
                "{:.0} % of {} thread(s)",
                self.load_cpu_util * 100.0,
                self.load_threads
            ),
        ));
        two_columns(&rows, &self.warnings)
    }
}
