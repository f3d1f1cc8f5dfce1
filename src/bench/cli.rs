//! `nanopeer bench` and `nanopeer tune`: the command-line front of the load generator.
//!
//! `bench` starts a node in this process on `127.0.0.1:<free port>` (a fresh data directory
//! under the system temp dir, removed afterwards), pins its shards to the first cores and the
//! load threads to the others, raises the node's admission limits so the load's concurrency
//! fits, measures the crypto ceiling, warms up, runs the measured load and reports. With
//! `--target` it drives any node instead (no node in this process, no server CPU figure).
//! `tune` runs the in-process bench over a grid of shard counts and batch sizes
//! (see [`super::tune`]).

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;

use super::attack::AttackKind;
use super::loadgen::{self, LoadConfig, LoadError};
use super::report::{BenchReport, Progress};
use crate::io::ShardConfig;
use crate::io::cpu::{current_thread_id, thread_cpu_time};
use crate::node::{Node, NodeError, NodeOptions, default_shard_count};
use crate::proto::config::ProtoConfig;
use crate::types::Network;

/// What failed in `nanopeer bench` / `nanopeer tune`.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An argument is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    Argument(String),
    /// `--target` did not resolve to an address.
    #[error("cannot resolve --target {0}")]
    Resolve(String),
    /// The in-process node did not start or stop cleanly.
    #[error("node: {0}")]
    Node(#[from] NodeError),
    /// The load generator did not start.
    #[error("load generator: {0}")]
    Load(#[from] LoadError),
    /// The bench data directory or a tune output file.
    #[error("{what} {path}: {source}")]
    File {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A thread of the bench itself could not run.
    #[error("bench thread failed")]
    Thread,
}

/// The arguments of `nanopeer bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Drive this node instead of starting one in-process (e.g. a reference node on loopback).
    #[arg(long, value_name = "HOST:PORT")]
    pub target: Option<String>,
    /// Shards of the in-process node (with --target: the target's cores, for the efficiency)
    /// [default: one per core, less one].
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// The node's verify batch size: a batch is verified when it holds this many signatures.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub batch_max: usize,
    /// … or this long after its first signature (µs), or when the shard has nothing else to do.
    #[arg(long, default_value_t = 200, value_name = "US")]
    pub batch_delay_us: u64,
    /// Measured load duration, seconds.
    #[arg(long, default_value_t = 20.0, value_name = "S")]
    pub duration: f64,
    /// Warm-up load before the measurement, seconds (not counted).
    #[arg(long, default_value_t = 2.0, value_name = "S")]
    pub warmup: f64,
    /// How long the crypto ceiling is measured, seconds.
    #[arg(long, default_value_t = 2.0, value_name = "S")]
    pub ceiling_secs: f64,
    /// Handshakes the load generator keeps in flight at once.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub connections: usize,
    /// Load generator threads [default: the cores the node does not use, at least 1].
    #[arg(long, value_name = "N")]
    pub load_threads: Option<usize>,
    /// The network (header bytes, genesis).
    #[arg(long, default_value = "dev")]
    pub network: Network,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// Do not verify the node's handshake signatures in the load generator (less load CPU).
    #[arg(long)]
    pub no_verify_node: bool,
    /// Keep every channel open until the run ends (up to --hold-limit) instead of closing it.
    #[arg(long)]
    pub hold: bool,
    /// Most channels held open with --hold.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub hold_limit: usize,
    /// Do not pin the node's shards and the load threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Run an attack alongside an honest load instead of the plain bench: `bad-sig:PCT` (PCT % of
    /// the simulated peers sign wrongly), `silent` (connections that never speak), `query-only`
    /// (send a handshake query, never answer), `drip` (one byte at a time), `garbage` (random
    /// bytes and bad headers), `poison` (keepalives advertising reserved, own and bogus
    /// addresses), `slot-flood:ip|subnet|many` (more silent unverified connections than the
    /// node's cap, from one address, one /24 or many /24s), `vote-flood` (authenticated peers
    /// streaming votes with wrong signatures, honest peers streaming valid ones). Reports
    /// honest handshakes/s, attack connections opened/held/cut, and the process's peak
    /// descriptors and RSS; the floods also a clean phase of the same run to compare with.
    #[arg(long, value_name = "KIND")]
    pub attack: Option<AttackKind>,
    /// Attack connections (or attacker peers) at once [default: slot-flood the node's
    /// connection cap + 1/8, vote-flood 32, the others 300].
    #[arg(long, value_name = "N")]
    pub attack_connections: Option<usize>,
    /// The in-process node's admission limits: `bench` (raised so the load fits), `live`
    /// (4 per IP, 16 per /24, 4 cookies per IP, 2048 channels: the live network's, on the dev
    /// network on loopback) or `dev` (the dev network's own) [default: live for slot-flood
    /// and vote-flood, bench otherwise].
    #[arg(long, value_name = "MODE")]
    pub limits: Option<LimitsMode>,
    /// The in-process node's connection cap per shard (`max_connections_per_shard`)
    /// [default: 2048 with live or dev limits; with bench limits, what the load needs].
    #[arg(long, value_name = "N")]
    pub node_max_connections: Option<usize>,
    /// Floods: seconds of honest load alone before the attack [default: --duration, at most 5].
    #[arg(long, value_name = "S")]
    pub clean_duration: Option<f64>,
    /// Floods: an attack connection the node closes is reopened after this many ms.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub attack_reopen_ms: u64,
    /// vote-flood: honest peers streaming valid votes.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub honest_voters: usize,
    /// vote-flood: valid votes per second over all honest voters, signed before the run
    /// (0: each voter as fast as the node reads, from a pool of --vote-pool).
    #[arg(long, default_value_t = 16_000, value_name = "N")]
    pub honest_vote_rate: u32,
    /// vote-flood with --honest-vote-rate 0: valid votes signed before the run.
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    pub vote_pool: usize,
    /// vote-flood: block hashes per vote.
    #[arg(long, default_value_t = 12, value_name = "N")]
    pub vote_hashes: usize,
    /// Soak: run the (churning) load for --duration seconds and sample RSS and open descriptors
    /// every --soak-interval seconds; reports the growth after the first fifth of the run.
    #[arg(long)]
    pub soak: bool,
    /// Seconds between soak samples.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub soak_interval: f64,
}

/// The arguments of `nanopeer tune`.
#[derive(Debug, Clone, Args)]
pub struct TuneArgs {
    /// Shard counts to try, comma-separated [default: 1 to the number of cores].
    #[arg(long, value_delimiter = ',', value_name = "N,N,…")]
    pub shards_list: Option<Vec<usize>>,
    /// Batch sizes to try, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,16,64,256",
        value_name = "N,N,…"
    )]
    pub batch_list: Vec<usize>,
    /// Measured duration of each point, seconds.
    #[arg(long, default_value_t = 8.0, value_name = "S")]
    pub duration: f64,
    /// Warm-up of each point, seconds.
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    pub warmup: f64,
    /// How long the crypto ceiling is measured (once, before the sweep), seconds.
    #[arg(long, default_value_t = 2.0, value_name = "S")]
    pub ceiling_secs: f64,
    /// The batch delay of every point (µs).
    #[arg(long, default_value_t = 200, value_name = "US")]
    pub batch_delay_us: u64,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub connections: usize,
    /// Load threads [default: the cores the node does not use, at least 1].
    #[arg(long, value_name = "N")]
    pub load_threads: Option<usize>,
    /// The network.
    #[arg(long, default_value = "dev")]
    pub network: Network,
    /// Directory for tune.json, tune.csv and tune.svg.
    #[arg(long, default_value = "tune-out", value_name = "DIR")]
    pub out: PathBuf,
    /// Do not verify the node's handshake signatures in the load generator.
    #[arg(long)]
    pub no_verify_node: bool,
    /// Do not pin shards and load threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Print the summary as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// One in-process bench run, as `bench` and every `tune` point run it.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// Node shards.
    pub shards: usize,
    /// Verify batch size.
    pub batch_max: usize,
    /// Batch delay, µs.
    pub batch_delay_us: u64,
    /// Measured duration.
    pub duration: Duration,
    /// Warm-up before the measurement.
    pub warmup: Duration,
    /// Concurrent handshakes.
    pub connections: usize,
    /// Load threads; `None` = the cores the node leaves free (at least 1).
    pub load_threads: Option<usize>,
    /// Network.
    pub network: Network,
    /// Verify the node's signatures in the load generator.
    pub verify_node: bool,
    /// Hold channels open.
    pub hold: bool,
    /// Most channels held.
    pub hold_limit: usize,
    /// Pin shards and load threads.
    pub pin: bool,
}

/// Where the node's shards and the load threads run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Pin shard `i` to core `i` (and the crawler to the last core).
    pub pin_node: bool,
    /// Cores of the load threads (empty: not pinned).
    pub load_cores: Vec<usize>,
    /// Load threads.
    pub load_threads: usize,
    /// A one-line description for the output.
    pub description: String,
    /// Why the figures may be doubtful.
    pub warnings: Vec<String>,
}

/// Cores of this machine (at least 1).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Places `shards` node shards and the load threads on `cores` cores: shards on cores
/// `0..shards`, load threads on the rest; no pinning when the shards take every core (or
/// `pin` is off), with a warning.
pub fn placement(shards: usize, load_threads: Option<usize>, cores: usize, pin: bool) -> Placement {
    let free = cores.saturating_sub(shards);
    let load_threads = load_threads.unwrap_or(free).max(1);
    let mut warnings = Vec::new();
    if !pin {
        return Placement {
            pin_node: false,
            load_cores: Vec::new(),
            load_threads,
            description: format!(
                "not pinned: {shards} shard(s) and {load_threads} load thread(s) on {cores} core(s)"
            ),
            warnings,
        };
    }
    if free == 0 {
        warnings.push(format!(
            "{shards} shard(s) on {cores} core(s): the node and the load generator share every \
             core, so nothing is pinned and the rate understates what the shards can do"
        ));
        return Placement {
            pin_node: false,
            load_cores: Vec::new(),
            load_threads,
            description: format!(
                "not pinned: {shards} shard(s) and {load_threads} load thread(s) share {cores} \
                 core(s)"
            ),
            warnings,
        };
    }
    if load_threads > free {
        warnings.push(format!(
            "{load_threads} load threads share {free} free core(s)"
        ));
    }
    let load_cores: Vec<usize> = (shards..cores).collect();
    Placement {
        pin_node: true,
        description: format!(
            "shards on core(s) {}, {} load thread(s) on core(s) {}",
            range_text(0, shards),
            load_threads,
            range_text(shards, cores)
        ),
        load_cores,
        load_threads,
        warnings,
    }
}

fn range_text(a: usize, b: usize) -> String {
    if b <= a + 1 {
        a.to_string()
    } else {
        format!("{a}-{}", b - 1)
    }
}

/// The node limits a bench raises so the load fits: (name, value) pairs, also shown in the
/// output.
pub fn bench_limits(plan: &BenchPlan) -> Vec<(&'static str, u64)> {
    let held = if plan.hold { plan.hold_limit } else { 0 };
    let channels = (4 * plan.connections + held).max(4096);
    vec![
        ("max_peers_per_ip", 65_535),
        ("max_peers_per_subnetwork", 65_535),
        ("max_cookies_per_ip", 65_535),
        ("max_cookies", (4 * plan.connections).max(65_536) as u64),
        ("max_channels", channels as u64),
        ("max_connections_per_shard", (channels + 64) as u64),
        ("backlog", plan.connections.max(1024) as u64),
    ]
}

/// Which admission limits an in-process bench node runs with (`--limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitsMode {
    /// Raised so the load's concurrency fits ([`bench_limits`]).
    Bench,
    /// The live network's: 4 per IP, 16 per /24, 4 cookies per IP, 2048 channels (the node
    /// stays on its own network, on loopback).
    Live,
    /// The dev network's own.
    Dev,
}

impl LimitsMode {
    /// `bench`, `live` or `dev`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LimitsMode::Bench => "bench",
            LimitsMode::Live => "live",
            LimitsMode::Dev => "dev",
        }
    }
}

impl std::fmt::Display for LimitsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LimitsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<LimitsMode, String> {
        match s {
            "bench" => Ok(LimitsMode::Bench),
            "live" => Ok(LimitsMode::Live),
            "dev" => Ok(LimitsMode::Dev),
            _ => Err(format!("unknown limits {s:?} (bench, live, dev)")),
        }
    }
}

/// Sets the admission limits of `mode` on `o` (per IP, per subnet, cookies, channels), taken
/// from that network's defaults; [`LimitsMode::Bench`] leaves `o` as it is. Timeouts and the
/// network stay `o`'s.
pub fn apply_limits(o: &mut NodeOptions, mode: LimitsMode) {
    let from = match mode {
        LimitsMode::Bench => return,
        LimitsMode::Live => ProtoConfig::for_network(Network::Live),
        LimitsMode::Dev => ProtoConfig::for_network(Network::Dev),
    };
    o.proto.max_peers_per_ip = from.max_peers_per_ip;
    o.proto.max_peers_per_subnetwork = from.max_peers_per_subnetwork;
    o.proto.max_cookies_per_ip = from.max_cookies_per_ip;
    o.proto.max_cookies = from.max_cookies;
    o.proto.max_channels = from.max_channels;
    o.proto.max_outbound_channels = from.max_outbound_channels;
}

/// The admission limits of node options, as (name, value) pairs for the output.
pub fn limits_of(o: &NodeOptions) -> Vec<(&'static str, u64)> {
    vec![
        ("max_peers_per_ip", u64::from(o.proto.max_peers_per_ip)),
        (
            "max_peers_per_subnetwork",
            u64::from(o.proto.max_peers_per_subnetwork),
        ),
        ("max_cookies_per_ip", u64::from(o.proto.max_cookies_per_ip)),
        ("max_cookies", o.proto.max_cookies as u64),
        ("max_channels", o.proto.max_channels as u64),
        (
            "max_outbound_channels",
            o.proto.max_outbound_channels as u64,
        ),
        (
            "max_invalid_signatures",
            u64::from(o.proto.max_invalid_signatures),
        ),
        ("verify_per_sec", u64::from(o.proto.verify_per_sec)),
        ("max_connections_per_shard", o.io.max_connections as u64),
        ("max_outbound_per_shard", o.io.max_outbound as u64),
        ("backlog", o.io.backlog.max(0) as u64),
    ]
}

/// The soft limit on open descriptors (`/proc/self/limits`), when readable.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Node options of a bench: loopback, free port, raised limits, no peers.
fn node_options(plan: &BenchPlan, dir: &std::path::Path, pin: bool) -> NodeOptions {
    let mut o = NodeOptions::new(plan.network, dir);
    o.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    o.shards = Some(plan.shards);
    o.preconfigured_peers = Some(Vec::new());
    o.batch_max = plan.batch_max;
    o.batch_delay_us = plan.batch_delay_us;
    o.pin_cores = pin;
    o.proto.allow_local_peers = true;
    let mut io = ShardConfig::default();
    for (name, v) in bench_limits(plan) {
        let v32 = u32::try_from(v).unwrap_or(u32::MAX);
        match name {
            "max_peers_per_ip" => o.proto.max_peers_per_ip = v32,
            "max_peers_per_subnetwork" => o.proto.max_peers_per_subnetwork = v32,
            "max_cookies_per_ip" => o.proto.max_cookies_per_ip = v32,
            "max_cookies" => o.proto.max_cookies = v as usize,
            "max_channels" => o.proto.max_channels = v as usize,
            "max_connections_per_shard" => io.max_connections = v as usize,
            "backlog" => io.backlog = i32::try_from(v).unwrap_or(i32::MAX),
            _ => {}
        }
    }
    o.io = io;
    o
}

/// A data directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, BenchError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "nanopeer-bench-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).map_err(|source| BenchError::File {
            what: "cannot create the bench data directory",
            path: path.clone(),
            source,
        })?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
    /// Handshakes per second of wall time (the report's `crypto_ceiling_per_sec`).
    pub per_sec: f64,
    /// Handshakes per second of the thread's own CPU time: the same figure with the time
    /// other processes took from the thread removed.
    pub per_cpu_sec: f64,
}

/// Measures the crypto ceiling for `secs` on a thread pinned to `core` (if any).
pub fn measure_ceiling(secs: f64, core: Option<usize>) -> Result<Ceiling, BenchError> {
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
            let per_sec = super::crypto_ceiling_per_sec(d);
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

fn load_config(
    plan: &BenchPlan,
    target: SocketAddr,
    placement: &Placement,
    duration: Duration,
) -> LoadConfig {
    let mut c = LoadConfig::new(target);
    c.network = plan.network;
    c.connections = plan.connections;
    c.threads = placement.load_threads;
    c.duration = duration;
    c.hold = plan.hold;
    c.hold_limit = plan.hold_limit;
    c.verify_node = plan.verify_node;
    c.cores = placement.load_cores.clone();
    c.key_pool = (2 * plan.connections + 64).max(1024);
    c
}

fn validate(plan: &BenchPlan) -> Result<(), BenchError> {
    if plan.shards == 0 || plan.shards > 1024 {
        return Err(BenchError::Argument("--shards must be in 1..=1024".into()));
    }
    if plan.batch_max == 0 || plan.batch_max > crate::crypto::MAX_BATCH {
        return Err(BenchError::Argument(format!(
            "--batch-max must be in 1..={}",
            crate::crypto::MAX_BATCH
        )));
    }
    if plan.connections == 0 {
        return Err(BenchError::Argument(
            "--connections must be at least 1".into(),
        ));
    }
    if plan.duration.is_zero() {
        return Err(BenchError::Argument("--duration must be positive".into()));
    }
    Ok(())
}

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
    let node = Node::start(node_options(plan, &dir.0, placement.pin_node))?;
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

fn plan_of(args: &BenchArgs) -> BenchPlan {
    BenchPlan {
        shards: args.shards.unwrap_or_else(default_shard_count),
        batch_max: args.batch_max,
        batch_delay_us: args.batch_delay_us,
        duration: Duration::from_secs_f64(args.duration.max(0.0)),
        warmup: Duration::from_secs_f64(args.warmup.max(0.0)),
        connections: args.connections,
        load_threads: args.load_threads,
        network: args.network,
        verify_node: !args.no_verify_node,
        hold: args.hold,
        hold_limit: args.hold_limit,
        pin: !args.no_pin,
    }
}

fn note(msg: &str) {
    eprintln!("nanopeer bench: {msg}");
}

/// The JSON line of a bench: the report's fields, then how the run was set up.
pub fn outcome_json(o: &BenchOutcome, cores: usize) -> serde_json::Value {
    let mut v = serde_json::to_value(&o.report).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert("cores".into(), cores.into());
        m.insert("placement".into(), o.placement.description.clone().into());
        let limits: serde_json::Map<String, serde_json::Value> = o
            .limits
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect();
        m.insert("bench_limits".into(), limits.into());
        m.insert("verify_batches".into(), o.batches.0.into());
        m.insert("verify_batch_mean".into(), o.batches.1.into());
        m.insert("load_average".into(), load_average().into());
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

/// `nanopeer bench`: exit status 0 when at least one handshake completed, 1 when none did,
/// 2 on a bad argument or a failure to start.
pub fn run_bench(args: &BenchArgs) -> ExitCode {
    match bench_main(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("nanopeer bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn bench_main(args: &BenchArgs) -> Result<bool, BenchError> {
    let plan = plan_of(args);
    validate(&plan)?;
    let cores = cores();
    let started = Instant::now();
    if let Some(t) = &args.target {
        return bench_target(args, &plan, t, cores);
    }
    if let Some(kind) = args.attack {
        return bench_attack(args, &plan, kind, cores);
    }
    if args.soak {
        return bench_soak(args, &plan, cores);
    }
    let pl = placement(plan.shards, plan.load_threads, cores, plan.pin);
    note(&format!(
        "measuring the crypto ceiling ({:.1} s on one core)…",
        args.ceiling_secs
    ));
    let ceiling = measure_ceiling(args.ceiling_secs, pl.pin_node.then_some(0))?;
    note(&format!(
        "{} shard(s), batch_max {}, {} connections; {}; warm-up {:.1} s, then {:.1} s measured",
        plan.shards,
        plan.batch_max,
        plan.connections,
        pl.description,
        plan.warmup.as_secs_f64(),
        plan.duration.as_secs_f64()
    ));
    let progress = Progress::new(plan.duration);
    let outcome = bench_in_process(&plan, ceiling, &progress)?;
    let limits: Vec<String> = outcome
        .limits
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("placement: {}", outcome.placement.description);
    println!("node limits raised for the bench: {}", limits.join(", "));
    println!(
        "verify batches: {} flushed, {:.1} signatures each on average",
        outcome.batches.0, outcome.batches.1
    );
    if let Some(e) = outcome.cpu_efficiency() {
        println!(
            "CPU efficiency: {:.1} % (crypto {:.1} µs of {:.1} µs shard CPU per handshake)",
            e * 100.0,
            1e6 / outcome.ceiling.per_cpu_sec,
            outcome.report.server_cpu_us_per_handshake.unwrap_or(0.0)
        );
    }
    println!(
        "load average: {}; whole command {:.1} s",
        load_average().map_or("n/a".into(), |l| format!("{l:.2}")),
        started.elapsed().as_secs_f64()
    );
    print!("{}", outcome.report.table());
    if args.json {
        println!("{}", outcome_json(&outcome, cores));
    }
    Ok(outcome.report.handshakes > 0)
}

fn bench_target(
    args: &BenchArgs,
    plan: &BenchPlan,
    target: &str,
    cores: usize,
) -> Result<bool, BenchError> {
    let addr = target
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| BenchError::Resolve(target.to_owned()))?;
    let shards = args.shards.unwrap_or(1);
    let load_threads = plan.load_threads.unwrap_or(1).max(1);
    let pl = Placement {
        pin_node: false,
        load_cores: Vec::new(),
        load_threads,
        description: format!("external node {addr}; {load_threads} load thread(s), not pinned"),
        warnings: Vec::new(),
    };
    note("measuring the crypto ceiling…");
    let ceiling = measure_ceiling(args.ceiling_secs, None)?;
    note(&format!(
        "driving {addr}: {} connections, warm-up {:.1} s, then {:.1} s measured",
        plan.connections,
        plan.warmup.as_secs_f64(),
        plan.duration.as_secs_f64()
    ));
    if !plan.warmup.is_zero() {
        loadgen::run(&load_config(plan, addr, &pl, plan.warmup), |_| {})?;
    }
    let progress = Progress::new(plan.duration);
    let load = loadgen::run(&load_config(plan, addr, &pl, plan.duration), |s| {
        progress.update(s)
    })?;
    progress.finish();
    let report = BenchReport::new(&load, shards, plan.batch_max, ceiling.per_sec, None);
    let outcome = BenchOutcome {
        report,
        placement: pl,
        limits: Vec::new(),
        server_cpu: None,
        batches: (0, 0.0),
        ceiling,
        server_runq_wait: None,
    };
    print!("{}", outcome.report.table());
    if args.json {
        println!("{}", outcome_json(&outcome, cores));
    }
    Ok(outcome.report.handshakes > 0)
}

/// `nanopeer tune`: see [`super::tune`]. Exit status 0 when every point completed handshakes
/// and the outputs were written.
pub fn run_tune(args: &TuneArgs) -> ExitCode {
    match super::tune::tune_main(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("nanopeer tune: {e}");
            ExitCode::from(2)
        }
    }
}

/// Whether stderr is a terminal (tune prints per-point lines there either way).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// `bench --attack KIND`: a fresh in-process node, an attack plus an honest load against it.
fn bench_attack(
    args: &BenchArgs,
    plan: &BenchPlan,
    kind: AttackKind,
    cores: usize,
) -> Result<bool, BenchError> {
    use crate::bench::attack::{AttackConfig, run_attack};
    let flood = matches!(kind, AttackKind::SlotFlood(_) | AttackKind::VoteFlood);
    let mode = args.limits.unwrap_or(if flood {
        LimitsMode::Live
    } else {
        LimitsMode::Bench
    });
    let pl = placement(plan.shards, plan.load_threads, cores, plan.pin);
    let dir = TempDir::new()?;
    let mut opts = node_options(plan, &dir.0, pl.pin_node);
    apply_limits(&mut opts, mode);
    if mode != LimitsMode::Bench {
        opts.io.max_connections = ShardConfig::default().max_connections;
    }
    if let Some(cap) = args.node_max_connections {
        if cap == 0 {
            return Err(BenchError::Argument(
                "--node-max-connections must be at least 1".into(),
            ));
        }
        opts.io.max_connections = cap;
    }
    let cap = opts.io.max_connections;
    let connections = args.attack_connections.unwrap_or(match kind {
        AttackKind::SlotFlood(_) => cap + cap.div_ceil(8),
        AttackKind::VoteFlood => 32,
        _ => 300,
    });
    let limits = limits_of(&opts);
    if let Some(soft) = open_files_limit() {
        // attack sockets on both ends, the honest load on both ends, the node's own files
        let need = 2 * connections as u64 + 2 * 64 + 2 * args.honest_voters as u64 + 64;
        if need > soft {
            note(&format!(
                "warning: about {need} descriptors needed but the soft RLIMIT_NOFILE is {soft}: \
                 raise it (ulimit -n) or lower --attack-connections"
            ));
        }
    }
    let node = Node::start(opts)?;
    let target = node.local_addr();
    let mut cfg = AttackConfig::new(target, kind);
    cfg.network = plan.network;
    cfg.duration = plan.duration;
    cfg.connections = connections;
    cfg.clean_duration = Duration::from_secs_f64(
        args.clean_duration
            .unwrap_or(plan.duration.as_secs_f64().min(5.0))
            .max(0.0),
    );
    cfg.reopen_delay = Duration::from_millis(args.attack_reopen_ms);
    cfg.honest_voters = args.honest_voters;
    cfg.honest_vote_rate = args.honest_vote_rate;
    cfg.vote_pool = args.vote_pool;
    cfg.vote_hashes = args.vote_hashes;
    if flood {
        cfg.sample_interval = Duration::from_millis(250);
    }
    let mut honest = load_config(plan, target, &pl, plan.duration);
    honest.connections = honest.connections.min(64);
    cfg.honest = Some(honest);
    let text: Vec<String> = limits.iter().map(|(k, v)| format!("{k}={v}")).collect();
    note(&format!(
        "attack {kind} ({connections} connections) against an in-process node ({} shard(s), \
         {mode} limits: {}) for {:.0} s, with an honest load{}",
        plan.shards,
        text.join(", "),
        plan.duration.as_secs_f64(),
        if flood {
            format!(
                ", after a clean phase of {:.0} s",
                cfg.clean_duration.as_secs_f64()
            )
        } else {
            String::new()
        }
    ));
    let result = run_attack(&cfg, Some(&node));
    let stopped = node.stop();
    let rep = result.map_err(|e| BenchError::Argument(format!("attack: {e}")))?;
    stopped?;
    println!("{}", rep.summary());
    if let Some(f) = &rep.flood {
        println!("{}", f.summary());
    }
    let delta = |f: fn(&crate::node::NodeStats) -> u64| {
        rep.node_after
            .as_ref()
            .zip(rep.node_before.as_ref())
            .map(|(a, b)| f(a).saturating_sub(f(b)))
    };
    let mut json = serde_json::json!({
        "attack": kind.to_string(),
        "duration_s": rep.wall.as_secs_f64(),
        "honest_handshakes_per_sec": rep.honest_per_sec(),
        "honest_failures": rep.honest.as_ref().map(|h| h.failures_total()),
        "attack_connections": connections,
        "attack_opened": rep.opened,
        "attack_connect_failed": rep.connect_failed,
        "attack_held_peak": rep.held_peak,
        "attack_cut_by_node": rep.cut_by_node,
        "bad_sig": rep.bad_sig.map(|b| serde_json::json!({
            "bad_sent": b.bad_sent, "bad_rejected": b.bad_rejected,
            "bad_accepted": b.bad_accepted, "good_sent": b.good_sent})),
        "node_invalid_signature": delta(|s| s.proto.handshake.get(crate::proto::events::HandshakeOutcome::InvalidSignature)),
        "node_closed_deadline": delta(|s| s.io.closed_deadline),
        "node_connections_peak": rep.connections_peak(),
        "process_fds_peak": rep.fds_peak(),
        "process_rss_peak_kb": rep.rss_peak_kb(),
        "limits": mode.as_str(),
        "node_limits": limits
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect::<serde_json::Map<_, _>>(),
    });
    if let (Some(f), Some(m)) = (&rep.flood, json.as_object_mut())
        && let serde_json::Value::Object(extra) = f.json()
    {
        m.extend(extra);
    }
    if args.json {
        println!("{json}");
    }
    let accepted_bad = rep.bad_sig.map_or(0, |b| b.bad_accepted);
    Ok(accepted_bad == 0 && rep.honest.as_ref().is_none_or(|h| h.handshakes > 0))
}

/// `bench --soak`: a churning honest load against an in-process node for --duration seconds,
/// sampling RSS and descriptors.
fn bench_soak(args: &BenchArgs, plan: &BenchPlan, cores: usize) -> Result<bool, BenchError> {
    use crate::bench::attack::{run_soak, soak_growth};
    let pl = placement(plan.shards, plan.load_threads, cores, plan.pin);
    let dir = TempDir::new()?;
    let node = Node::start(node_options(plan, &dir.0, pl.pin_node))?;
    let target = node.local_addr();
    let load = load_config(plan, target, &pl, plan.duration);
    let interval = Duration::from_secs_f64(args.soak_interval.max(0.1));
    note(&format!(
        "soak: {:.0} s of churning handshakes, sampling every {:.1} s",
        plan.duration.as_secs_f64(),
        interval.as_secs_f64()
    ));
    let result = run_soak(&load, Some(&node), interval, |s| {
        eprintln!(
            "  t={:>6.1}s rss={} KiB fds={} connections={} channels={}",
            s.t.as_secs_f64(),
            s.rss_kb,
            s.fds,
            s.connections,
            s.channels
        );
    });
    let stopped = node.stop();
    let (report, samples) = result?;
    stopped?;
    let warmup = plan.duration / 5;
    // the last sample is taken after the load stopped: leave it out of the trend
    let during = &samples[..samples.len().saturating_sub(1)];
    let (rss_growth, fd_growth) = soak_growth(during, warmup);
    let json = serde_json::json!({
        "soak_s": plan.duration.as_secs_f64(),
        "handshakes": report.handshakes,
        "handshakes_per_sec": report.handshakes_per_sec,
        "failures": report.failures_total(),
        "samples": samples.iter().map(|s| serde_json::json!({
            "t_s": s.t.as_secs_f64(), "rss_kb": s.rss_kb, "fds": s.fds,
            "connections": s.connections, "channels": s.channels})).collect::<Vec<_>>(),
        "warmup_s": warmup.as_secs_f64(),
        "rss_growth_after_warmup_kb": rss_growth,
        "fd_growth_after_warmup": fd_growth,
    });
    println!(
        "soak {:.0} s: {} handshakes ({:.0}/s), {} failures; after warm-up RSS {:+} KiB, descriptors {:+}",
        plan.duration.as_secs_f64(),
        report.handshakes,
        report.handshakes_per_sec,
        report.failures_total(),
        rss_growth,
        fd_growth
    );
    if args.json {
        println!("{json}");
    }
    Ok(report.handshakes > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_splits_cores() {
        let p = placement(1, None, 2, true);
        assert!(p.pin_node);
        assert_eq!(p.load_cores, vec![1]);
        assert_eq!(p.load_threads, 1);
        assert!(p.warnings.is_empty());
        let p = placement(2, None, 2, true);
        assert!(!p.pin_node);
        assert!(p.load_cores.is_empty());
        assert_eq!(p.load_threads, 1);
        assert!(
            p.warnings[0].contains("share every core"),
            "{:?}",
            p.warnings
        );
        let p = placement(2, Some(3), 8, true);
        assert_eq!(p.load_cores, (2..8).collect::<Vec<_>>());
        assert_eq!(p.load_threads, 3);
        assert!(p.description.contains("core(s) 0-1"), "{}", p.description);
        let p = placement(1, None, 4, false);
        assert!(!p.pin_node && p.load_cores.is_empty());
        assert_eq!(p.load_threads, 3);
    }

    #[test]
    fn limits_fit_the_load() {
        let mut plan = plan_of(&BenchArgs {
            target: None,
            shards: Some(1),
            batch_max: 64,
            batch_delay_us: 200,
            duration: 1.0,
            warmup: 0.0,
            ceiling_secs: 0.1,
            connections: 5000,
            load_threads: None,
            network: Network::Dev,
            json: false,
            no_verify_node: false,
            hold: true,
            hold_limit: 20_000,
            no_pin: false,
            attack: None,
            attack_connections: None,
            limits: None,
            node_max_connections: None,
            clean_duration: None,
            attack_reopen_ms: 100,
            honest_voters: 4,
            honest_vote_rate: 16_000,
            vote_pool: 200_000,
            vote_hashes: 12,
            soak: false,
            soak_interval: 10.0,
        });
        let o = node_options(&plan, std::path::Path::new("/nonexistent"), false);
        assert!(o.proto.max_channels >= 20_000 + 5000);
        assert!(o.io.max_connections > o.proto.max_channels);
        assert!(o.proto.max_peers_per_ip >= 5000);
        assert!(o.proto.allow_local_peers);
        plan.batch_max = 0;
        assert!(matches!(validate(&plan), Err(BenchError::Argument(_))));
    }

    #[test]
    fn live_limits_are_the_live_networks_on_the_dev_network() {
        let mut o = NodeOptions::new(Network::Dev, "/nonexistent");
        let dev = o.proto.clone();
        apply_limits(&mut o, LimitsMode::Live);
        assert_eq!(o.network, Network::Dev);
        assert_eq!(o.proto.max_peers_per_ip, 4);
        assert_eq!(o.proto.max_peers_per_subnetwork, 16);
        assert_eq!(o.proto.max_cookies_per_ip, 4);
        assert_eq!(o.proto.max_channels, 2048);
        assert_eq!(o.proto.handshake_timeout_ms, dev.handshake_timeout_ms);
        assert!(o.proto.allow_local_peers);
        apply_limits(&mut o, LimitsMode::Dev);
        assert_eq!(o.proto, dev);
        let l = limits_of(&o);
        assert_eq!(l[0], ("max_peers_per_ip", 256));
        assert_eq!("live".parse::<LimitsMode>(), Ok(LimitsMode::Live));
        assert!("prod".parse::<LimitsMode>().is_err());
        assert!(open_files_limit().unwrap() > 0);
    }

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
        let before: usize = std::fs::read_dir(std::env::temp_dir())
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with("nanopeer-bench-")
                    })
                    .count()
            })
            .unwrap_or(0);
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
        let after: usize = std::fs::read_dir(std::env::temp_dir())
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with("nanopeer-bench-")
                    })
                    .count()
            })
            .unwrap_or(0);
        assert!(after <= before, "{before} → {after}");
    }
}
