//! How a bench is set up before anything runs: the plan of one run ([`BenchPlan`]), where the
//! node's shards and the load threads go ([`placement`]), the node's options and admission
//! limits ([`LimitsMode`], [`bench_limits`], [`apply_limits`]), the load generator's settings,
//! and the throwaway data directory of an in-process node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::error::BenchError;
use super::loadgen::LoadConfig;
use crate::io::ShardConfig;
use crate::node::NodeOptions;
use crate::proto::config::ProtoConfig;
use crate::types::Network;

/// One in-process bench run, as `bench` and every `tune` point run it.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// Shards of the in-process node (1..=1024); pinned, they take cores `0..shards`.
    pub shards: usize,
    /// The node's verify batch size, 1..=[`MAX_BATCH`](crate::crypto::MAX_BATCH).
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
    /// Network of the node and of the load driving it.
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
    /// Load threads to run: the number asked for, else the cores the shards leave free; at
    /// least 1.
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
pub(super) fn node_options(plan: &BenchPlan, dir: &Path, pin: bool) -> NodeOptions {
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
pub(super) struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh, empty directory (process id, a counter and the clock in its name).
    pub(super) fn new() -> Result<TempDir, BenchError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "{}{}-{nanos}",
            temp_prefix(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).map_err(|source| BenchError::File {
            what: "cannot create the bench data directory",
            path: path.clone(),
            source,
        })?;
        Ok(TempDir(path))
    }

    /// The directory.
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The start of the name of every [`TempDir`] of this process.
fn temp_prefix() -> String {
    format!("nanopeer-bench-{}-", std::process::id())
}

/// Removes every [`TempDir`] of this process still on disk, for a process about to exit without
/// dropping them (tune interrupted by a signal); returns how many removals succeeded.
///
/// The node of the point being measured keeps running meanwhile and may still write into its
/// directory (its store, its key) or be creating it: a removal racing that fails, or the
/// directory comes back. So it sweeps until two sweeps 10 ms apart find nothing, for at most
/// about half a second.
pub(super) fn remove_temp_dirs() -> usize {
    let prefix = temp_prefix();
    let mut removed = 0;
    let mut quiet_sweeps = 0;
    for _ in 0..50 {
        let found: Vec<PathBuf> = std::fs::read_dir(std::env::temp_dir())
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        if found.is_empty() {
            quiet_sweeps += 1;
            if quiet_sweeps == 2 {
                break;
            }
        } else {
            quiet_sweeps = 0;
            removed += found
                .iter()
                .filter(|p| std::fs::remove_dir_all(p).is_ok())
                .count();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    removed
}

/// The load generator's settings for `plan` against `target`, for `duration`.
pub(super) fn load_config(
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

/// Checks the plan's ranges (shards, batch size, connections, duration).
pub(super) fn validate(plan: &BenchPlan) -> Result<(), BenchError> {
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
}
