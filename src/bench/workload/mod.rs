//! The realtime workloads of `nanopeer bench --workload votes|publish`: long-lived channels
//! streaming pre-built votes or blocks, measured by what the node verified.
//!
//! On loopback a handshake is a whole TCP connection, so kernel work weighs as much as the
//! crypto; a live node's load is the message stream on its channels, where batching and
//! sharding show. A run:
//!
//! 1. makes the representative keys (votes: `--reps` fresh keys, or `--rep-key`, e.g. the dev
//!    genesis key for a reference node) and measures the verify ceiling on one core with the
//!    same key mix and batch size ([`measure_stream_ceiling`]);
//! 2. builds the pool before anything is measured ([`build_pool`]): distinct votes or state
//!    blocks, sized from the ceiling to last the warm-up and the window unless `--pool` says,
//!    with `--bad-sigs`, `--duplicates` and (publish) `--bad-work` known-bad messages spread
//!    through it;
//! 3. brings up `--channels` channels (one peer each, its own address and node key), reads
//!    the node's counters, opens the streams, warms up, and measures the window
//!    ([`run_stream`]): the figure is the node's own verified counter over the window (an
//!    in-process node's counters, or a target's RPC `stats`), not what was sent; then lets
//!    the node count what is still in flight, so the whole run's sent / received / verified /
//!    dropped add up.
//!
//! Layout: `counters.rs` (which `stats` rows count what, on nanopeer, nano-node and RsNano;
//! the RPC read), `run.rs` (one measured stream), `report.rs` ([`StreamReport`]); here the
//! [`Workload`], the [`StreamPlan`], keys, pool and ceiling, and the in-process run.

mod counters;
mod report;
mod run;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use counters::{CounterRows, Key, PUBLISH, Spec, Tally, VOTES, rpc_stats};
pub use report::{StreamReport, StreamSetup};
pub use run::{NodeView, StreamRun, StreamSettings, run_stream};

use super::ceiling::{publish_ceiling_per_sec, vote_ceiling_per_sec};
use super::error::BenchError;
use super::inprocess::{Ceiling, insert_setup, measure_ceiling_with};
use super::report::Progress;
use super::setup::{BenchPlan, Placement, TempDir, bench_limits, node_options, placement};
use super::stream::{
    BlockPool, MAX_WORK_TRIES, MessagePool, RepTurns, StreamMix, VotePool, work_tries,
};
use crate::crypto::{KeyPair, genesis_account};
use crate::node::{Node, NodeOptions};
use crate::types::Network;

/// What `nanopeer bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Workload {
    /// Handshakes on fresh connections (the default).
    #[default]
    Handshake,
    /// Votes (confirm_ack) on long-lived channels.
    Votes,
    /// Blocks (publish) on long-lived channels.
    Publish,
}

impl Workload {
    /// `handshake`, `votes` or `publish`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Workload::Handshake => "handshake",
            Workload::Votes => "votes",
            Workload::Publish => "publish",
        }
    }

    /// What is counted, plural: `handshakes`, `votes`, `blocks`.
    pub const fn unit(self) -> &'static str {
        match self {
            Workload::Handshake => "handshakes",
            Workload::Votes => "votes",
            Workload::Publish => "blocks",
        }
    }

    /// What is counted, singular: `handshake`, `vote`, `block`.
    pub const fn singular(self) -> &'static str {
        match self {
            Workload::Handshake => "handshake",
            Workload::Votes => "vote",
            Workload::Publish => "block",
        }
    }

    /// The node counters of a streaming workload (none for handshakes).
    pub const fn spec(self) -> Option<&'static Spec> {
        match self {
            Workload::Handshake => None,
            Workload::Votes => Some(&VOTES),
            Workload::Publish => Some(&PUBLISH),
        }
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The dev network's genesis private key: published (nano-node's `dev_private_key_data`,
/// spec §10 V1), so a reference node on dev can load it and count its votes as a
/// representative's.
pub const DEV_GENESIS_PRIVATE: &str =
    "34F0A37AAD20F4A260F0A5B3CB3D7FB50673212263E58A380BC10474BB039CE4";

/// A `--rep-key`: `genesis` (the dev genesis key; only the dev network's is public) or a
/// private key as 64 hex digits.
pub fn parse_rep_key(s: &str, network: Network) -> Result<[u8; 32], String> {
    let text = if s.eq_ignore_ascii_case("genesis") {
        if network != Network::Dev {
            return Err("--rep-key genesis: only the dev network's genesis key is public".into());
        }
        DEV_GENESIS_PRIVATE
    } else {
        s
    };
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key)
        .map_err(|_| format!("--rep-key {s:?}: `genesis` or a private key of 64 hex digits"))?;
    Ok(key)
}

/// A votes or publish run against an in-process node or a target.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// Shards, batch size and delay, window (`duration`), warm-up, network, pinning; its
    /// `connections` are the channels.
    pub base: BenchPlan,
    /// `votes` or `publish`.
    pub workload: Workload,
    /// Channels, one streaming peer each.
    pub channels: usize,
    /// Fresh representative keys when `rep_keys` is empty.
    pub reps: usize,
    /// Given representative private keys (e.g. the dev genesis key).
    pub rep_keys: Vec<[u8; 32]>,
    /// Hashes per vote.
    pub hashes: usize,
    /// Messages/s over all channels (0: as fast as the node reads).
    pub rate: u32,
    /// Valid messages in the pool (`None`: sized from the ceiling, [`Self::default_pool`]).
    pub pool: Option<usize>,
    /// Messages with a wrong signature in the pool.
    pub bad_sigs: usize,
    /// Duplicated valid messages in the pool.
    pub duplicates: usize,
    /// Blocks with too little work in the pool (publish only).
    pub bad_work: usize,
}

/// Most valid messages a pool sized by default holds (votes, blocks): the memory it takes
/// and the time to sign it stay bounded.
pub const DEFAULT_POOL_CAP: (usize, usize) = (4_000_000, 1_000_000);

impl StreamPlan {
    /// Checks the plan: a streaming workload, at least one channel and representative,
    /// 1..=255 hashes, bad work only for blocks, a network whose work is cheap enough.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Argument(m.to_owned()));
        if self.workload == Workload::Handshake {
            return bad("a stream plan needs --workload votes or publish");
        }
        if self.channels == 0 || self.channels > 65_536 {
            return bad("--channels must be in 1..=65536");
        }
        if self.workload == Workload::Votes {
            if self.rep_keys.is_empty() && (self.reps == 0 || self.reps > 65_536) {
                return bad("--reps must be in 1..=65536");
            }
            if self.hashes == 0 || self.hashes > crate::wire::vote::MAX_HASHES {
                return bad("--hashes must be in 1..=255");
            }
            if self.bad_work > 0 {
                return bad("--bad-work is for --workload publish");
            }
        }
        if self.workload == Workload::Publish && work_tries(self.base.network) > MAX_WORK_TRIES {
            return Err(BenchError::Argument(format!(
                "--workload publish makes blocks with valid work: the {} network needs about \
                 {} attempts per block; use --network dev",
                self.base.network.name(),
                work_tries(self.base.network)
            )));
        }
        if self.base.duration.is_zero() {
            return bad("--duration must be positive");
        }
        Ok(())
    }

    /// The representative keys: the given ones, else `reps` fresh ones (publish: none).
    pub fn rep_keypairs(&self) -> Vec<KeyPair> {
        match self.workload {
            Workload::Votes if self.rep_keys.is_empty() => (0..self.reps)
                .map(|_| KeyPair::generate(&mut rand::rng()))
                .collect(),
            Workload::Votes => self
                .rep_keys
                .iter()
                .map(|k| KeyPair::from_private(*k))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// What a pool of `valid` valid messages holds with this plan's bad ones.
    pub fn mix(&self, valid: usize) -> StreamMix {
        StreamMix {
            valid,
            bad_sigs: self.bad_sigs,
            duplicates: self.duplicates,
            bad_work: if self.workload == Workload::Publish {
                self.bad_work
            } else {
                0
            },
        }
    }

    /// Valid messages to last the warm-up and the window with 25 % to spare: at `--rate`, or
    /// at `shards` × the ceiling (the most the node can verify); at most
    /// [`DEFAULT_POOL_CAP`], at least 64 per channel.
    pub fn default_pool(&self, ceiling: &Ceiling) -> usize {
        let per_sec = if self.rate > 0 {
            f64::from(self.rate)
        } else {
            self.base.shards as f64 * ceiling.per_sec.max(ceiling.per_cpu_sec)
        };
        let secs = (self.base.warmup + self.base.duration).as_secs_f64();
        let cap = match self.workload {
            Workload::Publish => DEFAULT_POOL_CAP.1,
            _ => DEFAULT_POOL_CAP.0,
        };
        ((per_sec * secs * 1.25) as usize).clamp(64 * self.channels, cap.max(64 * self.channels))
    }
}

/// Threads for building a pool: every core (nothing is measured yet).
fn build_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Measures the verify ceiling of `plan`'s workload for `secs` on a thread pinned to
/// `core`: votes by `keys` (in turn, `plan.hashes` hashes each) batch-verified at
/// `plan.base.batch_max`; blocks single-verified with fresh keys plus the work check.
pub fn measure_stream_ceiling(
    plan: &StreamPlan,
    keys: &[KeyPair],
    secs: f64,
    core: Option<usize>,
) -> Result<Ceiling, BenchError> {
    let network = plan.base.network;
    match plan.workload {
        Workload::Votes => {
            let batch = plan.base.batch_max;
            let mix = StreamMix {
                valid: (4 * batch).max(1024),
                ..StreamMix::default()
            };
            let sample =
                VotePool::sign(keys, RepTurns::Random, 1, mix, plan.hashes, build_threads());
            measure_ceiling_with(secs, core, move |d| vote_ceiling_per_sec(d, &sample, batch))
        }
        _ => measure_ceiling_with(secs, core, move |d| publish_ceiling_per_sec(d, network)),
    }
}

/// Builds the pool of `plan` with `valid` valid messages (votes signed by `keys`), on every
/// core, and says how long it took.
pub fn build_pool(
    plan: &StreamPlan,
    keys: &[KeyPair],
    valid: usize,
) -> Result<(MessagePool, Duration), BenchError> {
    let t = Instant::now();
    let mix = plan.mix(valid);
    let pool = match plan.workload {
        Workload::Votes => MessagePool::Votes(VotePool::sign(
            keys,
            RepTurns::Random,
            plan.channels,
            mix,
            plan.hashes,
            build_threads(),
        )),
        _ => MessagePool::Blocks(
            BlockPool::build(plan.base.network, plan.channels, mix, build_threads())
                .map_err(BenchError::Argument)?,
        ),
    };
    Ok((pool, t.elapsed()))
}

/// Checks per second one channel may cause on the bench's node: far above any stream, so
/// the per-channel verification budget never cuts a streaming peer.
pub const BENCH_VERIFY_PER_SEC: u32 = 100_000_000;

/// The in-process node's options for a stream (the bench's raised limits, and no
/// per-channel verification budget to speak of) and the limits to show.
pub fn stream_node_options(
    plan: &StreamPlan,
    dir: &Path,
    pin: bool,
) -> (NodeOptions, Vec<(&'static str, u64)>) {
    let mut o = node_options(&plan.base, dir, pin);
    o.proto.verify_per_sec = BENCH_VERIFY_PER_SEC;
    let mut limits = bench_limits(&plan.base);
    limits.push(("verify_per_sec", u64::from(BENCH_VERIFY_PER_SEC)));
    (o, limits)
}

/// The settings of a stream against `target`.
pub fn stream_settings(
    plan: &StreamPlan,
    target: std::net::SocketAddr,
    load_cores: Vec<usize>,
) -> StreamSettings {
    StreamSettings {
        target,
        network: plan.base.network,
        rate: plan.rate,
        warmup: plan.base.warmup,
        duration: plan.base.duration,
        ramp_timeout: Duration::from_secs(5) + Duration::from_millis(plan.channels as u64),
        load_cores,
    }
}

/// What one votes or publish run produced, and how it was set up.
#[derive(Debug, Clone)]
pub struct StreamOutcome {
    /// The report.
    pub report: StreamReport,
    /// Where the node's shards and the streaming peers ran.
    pub placement: Placement,
    /// The node limits raised for the run (in-process only).
    pub limits: Vec<(&'static str, u64)>,
}

/// Where an in-process stream runs: the shards on cores `0..shards` (when pinned), the
/// streaming peers' io threads on the rest.
pub fn stream_placement(plan: &StreamPlan, cores: usize) -> Placement {
    let threads = plan.channels.div_ceil(1024);
    let mut p = placement(plan.base.shards, Some(threads), cores, plan.base.pin);
    p.description = if p.pin_node {
        format!(
            "shards on core(s) 0..{}, streaming peers on {threads} io thread(s) on core(s) {:?}",
            plan.base.shards, p.load_cores
        )
    } else {
        format!(
            "not pinned: {} shard(s) and {threads} streaming io thread(s) on {cores} core(s)",
            plan.base.shards
        )
    };
    p
}

/// Runs `plan` against a fresh in-process node: its shards placed by [`stream_placement`],
/// `pool` streamed and measured ([`run_stream`]), against `ceiling`.
pub fn bench_stream_in_process(
    plan: &StreamPlan,
    ceiling: Ceiling,
    pool: Arc<MessagePool>,
    pool_build: Duration,
    progress: &Progress,
) -> Result<StreamOutcome, BenchError> {
    plan.validate()?;
    let cores = super::setup::cores();
    let placement = stream_placement(plan, cores);
    let dir = TempDir::new()?;
    let (opts, limits) = stream_node_options(plan, dir.path(), placement.pin_node);
    let node = Node::start(opts)?;
    let target = node.local_addr();
    let settings = stream_settings(plan, target, placement.load_cores.clone());
    let spec = plan.workload.spec().unwrap_or(&VOTES);
    let setup = setup_of(plan, &pool, pool_build, target);
    let result = run_stream(
        &settings,
        pool,
        spec,
        &NodeView::in_process(&node),
        progress,
    );
    let stopped = node.stop();
    let run = result?;
    stopped?;
    let mut report = StreamReport::new(&setup, &run, ceiling);
    report.warnings.extend(placement.warnings.iter().cloned());
    Ok(StreamOutcome {
        report,
        placement,
        limits,
    })
}

/// Runs `plan` against the node at `target`, reading its counters through its RPC at `rpc`
/// (both loopback): the same stream as in-process, with no server CPU figures.
pub fn bench_stream_target(
    plan: &StreamPlan,
    ceiling: Ceiling,
    pool: Arc<MessagePool>,
    pool_build: Duration,
    (target, rpc): (std::net::SocketAddr, std::net::SocketAddr),
    progress: &Progress,
) -> Result<StreamOutcome, BenchError> {
    plan.validate()?;
    // the counters must be readable before anything is sent
    rpc_stats(rpc).map_err(|e| BenchError::Argument(format!("--target-rpc: {e}")))?;
    let threads = plan.channels.div_ceil(1024);
    let spec = plan.workload.spec().unwrap_or(&VOTES);
    let setup = setup_of(plan, &pool, pool_build, target);
    let settings = stream_settings(plan, target, Vec::new());
    let run = run_stream(&settings, pool, spec, &NodeView::Rpc(rpc), progress)?;
    Ok(StreamOutcome {
        report: StreamReport::new(&setup, &run, ceiling),
        placement: Placement {
            pin_node: false,
            load_cores: Vec::new(),
            load_threads: threads,
            description: format!(
                "external node {target} (counters from its RPC {rpc}); {threads} streaming io \
                 thread(s), not pinned"
            ),
            warnings: Vec::new(),
        },
        limits: Vec::new(),
    })
}

/// How a run of `plan` with `pool` against `target` is set up, for its report.
fn setup_of(
    plan: &StreamPlan,
    pool: &MessagePool,
    pool_build: Duration,
    target: std::net::SocketAddr,
) -> StreamSetup {
    StreamSetup {
        workload: plan.workload,
        shards: plan.base.shards,
        batch_max: plan.base.batch_max,
        reps: pool_reps(pool),
        hashes: pool_hashes(pool),
        rate: plan.rate,
        target: target.to_string(),
        network: plan.base.network.name().to_owned(),
        pool: (pool.mix(), pool.bytes(), pool_build),
        duration: plan.base.duration,
    }
}

/// Representatives of a vote pool (0 for blocks).
pub fn pool_reps(pool: &MessagePool) -> usize {
    match pool {
        MessagePool::Votes(v) => v.reps.len(),
        MessagePool::Blocks(_) => 0,
    }
}

/// Hashes per vote of a vote pool (0 for blocks).
pub fn pool_hashes(pool: &MessagePool) -> usize {
    match pool {
        MessagePool::Votes(v) => v.hashes,
        MessagePool::Blocks(_) => 0,
    }
}

/// The JSON line of a stream run: the report's fields, then how the run was set up.
pub fn stream_outcome_json(o: &StreamOutcome, cores: usize) -> serde_json::Value {
    let mut v = o.report.json();
    if let Some(m) = v.as_object_mut() {
        insert_setup(m, cores, &o.placement, &o.limits);
    }
    v
}

/// True when `key` is the dev genesis account's private key.
pub fn is_dev_genesis(key: &[u8; 32]) -> bool {
    KeyPair::from_private(*key).public() == genesis_account(Network::Dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_genesis_rep_key_is_the_dev_genesis_account() {
        let k = parse_rep_key("genesis", Network::Dev).unwrap();
        assert!(is_dev_genesis(&k));
        assert_eq!(parse_rep_key(DEV_GENESIS_PRIVATE, Network::Dev).unwrap(), k);
        assert!(parse_rep_key("genesis", Network::Live).is_err());
        assert!(parse_rep_key("12ab", Network::Dev).is_err());
        assert!(!is_dev_genesis(&[7; 32]));
    }
}
