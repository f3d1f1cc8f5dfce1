//! Hostile traffic against a node (`nanopeer bench --attack KIND`), run alongside an honest
//! load, and a soak sampler of the process's memory and descriptors.
//!
//! [`run_attack`] opens the attack connections on an io_uring thread of its own (the
//! [`crate::io`] runtime, like the load generator), each from its own 127.x.y.z source address,
//! while [`super::loadgen`] drives honest handshakes; it samples the process (RSS, open
//! descriptors) and, given the [`Node`], its connections and counters. Kinds:
//!
//! - `bad-sig:PCT`: PCT % of the simulated peers answer the handshake with a wrong signature
//!   (signed by the right key over another cookie, so only the full equation rejects it).
//! - `silent`: connect and never send a byte.
//! - `query-only`: send a handshake query, never answer the node's query (cookie exhaustion).
//! - `drip`: send a valid query one byte per `drip_interval`.
//! - `garbage`: random bytes, truncated headers, invalid types, another network, an old
//!   version, a handshake with no flags, two queries, a message before the handshake.
//! - `poison`: complete a handshake, then send keepalives advertising reserved, unspecified,
//!   the node's own and thousands of bogus (loopback, unused) addresses.
//! - `slot-flood:ip|subnet|many` and `vote-flood`: floods against the node's connection cap
//!   and its signature checks, each measured against a clean phase in the same run
//!   ([`super::flood`]).
//!
//! Connections the node cuts are reopened while the attack runs, so `connections` stay open
//! or in flight.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::flood::{FloodReport, FloodSource};
use super::loadgen::{self, BadSigCounts, LoadConfig, LoadError, LoadReport, source_ip};
use crate::crypto::genesis_hash;
use crate::io::{self, CloseReason, ConnId, Handler, Io, IoError, ShardConfig, ShardHandle};
use crate::node::{Node, NodeStats};
use crate::proto::identity::NodeIdentity;
use crate::types::{Cookie, Network};
use crate::wire::{Deframer, Keepalive, Message, MessageType, NodeIdHandshake};

/// One kind of hostile traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttackKind {
    /// This percentage (0–100) of handshake responses carry a wrong signature.
    BadSig(u8),
    /// Connect and never speak.
    Silent,
    /// Send a handshake query, never answer.
    QueryOnly,
    /// Send a query one byte at a time.
    Drip,
    /// Malformed traffic, cycling through [`GARBAGE_VARIANTS`] variants.
    Garbage,
    /// Handshake, then keepalives full of addresses that must not be dialed.
    Poison,
    /// More silent unverified connections than the node's cap, from one address, one /24 or
    /// many /24s ([`super::flood`]).
    SlotFlood(FloodSource),
    /// Authenticated peers streaming votes with wrong signatures while honest peers stream
    /// valid ones ([`super::flood`]).
    VoteFlood,
}

/// Number of distinct malformed inputs the `garbage` attack cycles through.
pub const GARBAGE_VARIANTS: u64 = 9;

impl std::fmt::Display for AttackKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttackKind::BadSig(p) => write!(f, "bad-sig:{p}"),
            AttackKind::Silent => f.write_str("silent"),
            AttackKind::QueryOnly => f.write_str("query-only"),
            AttackKind::Drip => f.write_str("drip"),
            AttackKind::Garbage => f.write_str("garbage"),
            AttackKind::Poison => f.write_str("poison"),
            AttackKind::SlotFlood(s) => write!(f, "slot-flood:{}", s.as_str()),
            AttackKind::VoteFlood => f.write_str("vote-flood"),
        }
    }
}

impl FromStr for AttackKind {
    type Err = AttackError;

    /// `bad-sig:PCT`, `silent`, `query-only`, `drip`, `garbage`, `poison`,
    /// `slot-flood:ip|subnet|many` (`slot-flood` alone: `ip`), `vote-flood`.
    fn from_str(s: &str) -> Result<AttackKind, AttackError> {
        let bad = || AttackError::Kind(s.to_string());
        if let Some(rest) = s.strip_prefix("slot-flood") {
            let source = match rest.strip_prefix(':') {
                Some(src) => FloodSource::parse(src).ok_or_else(bad)?,
                None if rest.is_empty() => FloodSource::Ip,
                None => return Err(bad()),
            };
            return Ok(AttackKind::SlotFlood(source));
        }
        Ok(match s {
            "vote-flood" => AttackKind::VoteFlood,
            "silent" => AttackKind::Silent,
            "query-only" => AttackKind::QueryOnly,
            "drip" => AttackKind::Drip,
            "garbage" => AttackKind::Garbage,
            "poison" => AttackKind::Poison,
            _ => {
                let pct = s.strip_prefix("bad-sig:").ok_or_else(bad)?;
                let pct: u8 = pct.trim_end_matches('%').parse().map_err(|_| bad())?;
                if pct > 100 {
                    return Err(bad());
                }
                AttackKind::BadSig(pct)
            }
        })
    }
}

/// What went wrong starting an attack.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    /// The kind text is not one of the kinds.
    #[error(
        "unknown attack kind {0:?} (bad-sig:PCT, silent, query-only, drip, garbage, poison, \
         slot-flood:ip|subnet|many, vote-flood)"
    )]
    Kind(String),
    /// A configuration value is out of range.
    #[error("invalid attack configuration: {0}")]
    Config(&'static str),
    /// The attack thread could not start.
    #[error("attack thread failed to start: {0}")]
    Start(#[from] IoError),
    /// The honest load failed.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Settings of an attack run.
#[derive(Debug, Clone)]
pub struct AttackConfig {
    /// The node attacked.
    pub target: SocketAddr,
    /// Its network.
    pub network: Network,
    /// The kind.
    pub kind: AttackKind,
    /// Attack connections open (or in flight) at once; cut ones are reopened.
    pub connections: usize,
    /// How long the attack (and the honest load) runs.
    pub duration: Duration,
    /// `drip`: one byte per connection per interval; `poison`: one keepalive per interval.
    pub drip_interval: Duration,
    /// Distinct 127.x.y.z source addresses of the attack connections (0: the kernel picks).
    pub source_ips: u32,
    /// First source index ([`source_ip`]); keep it away from the honest load's (0 onwards).
    pub source_offset: u32,
    /// `poison`: bogus (unused loopback) addresses advertised over the run, in all.
    pub poison_bogus: usize,
    /// The honest load run at the same time (its duration is replaced by `duration`), or none.
    /// For `bad-sig` it is the load (with its `bad_sig_pct` set); none means a default one.
    pub honest: Option<LoadConfig>,
    /// How often the process and the node are sampled.
    pub sample_interval: Duration,
    /// Floods: the clean phase (honest load alone) before the attack.
    pub clean_duration: Duration,
    /// Floods: longest wait from starting the attack to measuring under it.
    pub ramp_timeout: Duration,
    /// Floods: a connection the node closes is reopened this long after.
    pub reopen_delay: Duration,
    /// `vote-flood`: hashes per vote (attackers' and honest).
    pub vote_hashes: usize,
    /// `vote-flood`: honest peers streaming valid votes.
    pub honest_voters: usize,
    /// `vote-flood`: valid votes per second over all honest voters (0: each as fast as the
    /// node reads, from a pool of `vote_pool`).
    pub honest_vote_rate: u32,
    /// `vote-flood` with `honest_vote_rate` 0: valid votes signed before the run.
    pub vote_pool: usize,
}

impl AttackConfig {
    /// Defaults: 300 connections for 10 s, drip every 500 ms, 4096 sources from index 1 000 000,
    /// 5000 bogus poison addresses, an honest load of 8 connections, samples every second;
    /// floods: a 5 s clean phase, ramp up to 2 s, reopen after 100 ms, 4 honest voters at
    /// 16 000 votes/s in all (4000 per channel), 12 hashes per vote.
    pub fn new(target: SocketAddr, kind: AttackKind) -> AttackConfig {
        let mut honest = LoadConfig::new(target);
        honest.connections = 8;
        AttackConfig {
            target,
            network: Network::Dev,
            kind,
            connections: 300,
            duration: Duration::from_secs(10),
            drip_interval: Duration::from_millis(500),
            source_ips: 4096,
            source_offset: 1_000_000,
            poison_bogus: 5000,
            honest: Some(honest),
            sample_interval: Duration::from_secs(1),
            clean_duration: Duration::from_secs(5),
            ramp_timeout: Duration::from_secs(2),
            reopen_delay: Duration::from_millis(100),
            vote_hashes: 12,
            honest_voters: 4,
            honest_vote_rate: 16_000,
            vote_pool: 200_000,
        }
    }
}

/// One sample of the process (and node): for soak runs and attack reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SoakSample {
    /// Time since the run started.
    pub t: Duration,
    /// Resident set size of the process (VmRSS), KiB; 0 if unreadable.
    pub rss_kb: u64,
    /// Open descriptors of the process (`/proc/self/fd`); 0 if unreadable.
    pub fds: usize,
    /// The node's open connections (io layer, all shards); 0 without a node.
    pub connections: u64,
    /// The node's channels (completed handshakes); 0 without a node.
    pub channels: usize,
    /// The node's valid vote signatures so far (`votes_valid`); 0 without a node.
    pub votes_valid: u64,
}

/// Resident set size of this process, KiB (`VmRSS` of `/proc/self/status`).
pub fn process_rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Open descriptors of this process (entries of `/proc/self/fd`, minus the one reading it).
pub fn process_fds() -> Option<usize> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(n.saturating_sub(1))
}

/// Samples the process and, if given, the node.
pub fn sample(start: Instant, node: Option<&Node>) -> SoakSample {
    let (connections, channels, votes_valid) = node.map_or((0, 0, 0), |n| {
        let s = n.stats();
        (s.io.live_connections, s.channels, s.proto.votes_valid)
    });
    SoakSample {
        t: start.elapsed(),
        rss_kb: process_rss_kb().unwrap_or(0),
        fds: process_fds().unwrap_or(0),
        connections,
        channels,
        votes_valid,
    }
}

/// Growth after warm-up: the mean of the last third of the samples taken at or after `warmup`
/// minus the mean of the first third, as (RSS KiB, descriptors). Pass only the samples taken
/// while the load ran (a sample after the load stopped would read as a drop). (0, 0) with fewer
/// than three such samples.
pub fn soak_growth(samples: &[SoakSample], warmup: Duration) -> (i64, i64) {
    let after: Vec<&SoakSample> = samples.iter().filter(|s| s.t >= warmup).collect();
    if after.len() < 3 {
        return (0, 0);
    }
    let third = after.len() / 3;
    let mean = |part: &[&SoakSample], f: fn(&SoakSample) -> u64| -> i64 {
        (part.iter().map(|s| f(s) as i128).sum::<i128>() / part.len() as i128) as i64
    };
    let (first, last) = (&after[..third], &after[after.len() - third..]);
    (
        mean(last, |s| s.rss_kb) - mean(first, |s| s.rss_kb),
        mean(last, |s| s.fds as u64) - mean(first, |s| s.fds as u64),
    )
}

/// Runs `load` (churning peers: set `hold` off for churn) and samples the process and node
/// every `interval` ([`sample`]); returns the load report and the samples (the soak mode of
/// `bench --duration N --soak`).
pub fn run_soak(
    load: &LoadConfig,
    node: Option<&Node>,
    interval: Duration,
    mut progress: impl FnMut(&SoakSample),
) -> Result<(LoadReport, Vec<SoakSample>), LoadError> {
    let start = Instant::now();
    let mut samples = vec![sample(start, node)];
    let mut next = start + interval;
    let report = loadgen::run(load, |_| {
        let now = Instant::now();
        if now >= next {
            next = now + interval;
            let s = sample(start, node);
            progress(&s);
            samples.push(s);
        }
    })?;
    samples.push(sample(start, node));
    Ok((report, samples))
}

/// The result of an attack run.
#[derive(Debug, Clone)]
pub struct AttackReport {
    /// The kind.
    pub kind: AttackKind,
    /// Wall time of the run.
    pub wall: Duration,
    /// Attack connections established.
    pub opened: u64,
    /// Attack dials that failed (refused, connection cap, timeout).
    pub connect_failed: u64,
    /// Most attack connections open at once.
    pub held_peak: u64,
    /// Attack connections open at the end.
    pub held_end: u64,
    /// Attack connections the node closed while the attack ran.
    pub cut_by_node: u64,
    /// Attack bytes sent.
    pub bytes_sent: u64,
    /// `poison`: handshakes completed by the attackers.
    pub poison_handshakes: u64,
    /// `poison`: addresses advertised (all slots of all keepalives sent).
    pub poison_addresses: u64,
    /// The honest load's result (for `bad-sig`: the mixed load's; its handshakes are the good
    /// peers').
    pub honest: Option<LoadReport>,
    /// `bad-sig`: what the bad and good peers sent and saw.
    pub bad_sig: Option<BadSigCounts>,
    /// Samples over the run (first before the attack, last after it).
    pub samples: Vec<SoakSample>,
    /// The node's counters before the attack (when given the node).
    pub node_before: Option<NodeStats>,
    /// The node's counters after the attack.
    pub node_after: Option<NodeStats>,
    /// `slot-flood` / `vote-flood`: the clean and attack phases and the attackers' counters.
    pub flood: Option<Box<FloodReport>>,
}

impl AttackReport {
    /// Highest open-descriptor count sampled.
    pub fn fds_peak(&self) -> usize {
        self.samples.iter().map(|s| s.fds).max().unwrap_or(0)
    }

    /// Highest RSS sampled, KiB.
    pub fn rss_peak_kb(&self) -> u64 {
        self.samples.iter().map(|s| s.rss_kb).max().unwrap_or(0)
    }

    /// Highest node connection count sampled.
    pub fn connections_peak(&self) -> u64 {
        self.samples
            .iter()
            .map(|s| s.connections)
            .max()
            .unwrap_or(0)
    }

    /// Honest handshakes per second (0 without an honest load).
    pub fn honest_per_sec(&self) -> f64 {
        self.honest.as_ref().map_or(0.0, |r| r.handshakes_per_sec)
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "attack {}: {:.1} s, opened {}, held peak {}, cut by node {}, connect failed {}, \
             honest {:.0} handshakes/s, peak node connections {}, peak fds {}, peak RSS {} KiB",
            self.kind,
            self.wall.as_secs_f64(),
            self.opened,
            self.held_peak,
            self.cut_by_node,
            self.connect_failed,
            self.honest_per_sec(),
            self.connections_peak(),
            self.fds_peak(),
            self.rss_peak_kb(),
        );
        if let Some(b) = &self.bad_sig {
            s += &format!(
                ", bad sent {} rejected {} accepted {}, good sent {}",
                b.bad_sent, b.bad_rejected, b.bad_accepted, b.good_sent
            );
        }
        if let (Some(a), Some(b)) = (&self.node_before, &self.node_after) {
            let h = |s: &NodeStats| s.proto.handshake;
            s += &format!(
                ", node: handshakes ok +{}, invalid_signature +{}, header errors +{}, \
                 timeouts +{}, cookie_limit +{}, batch cap {} (shrinks +{})",
                h(b).ok - h(a).ok,
                h(b).invalid_signature - h(a).invalid_signature,
                b.proto.closes.header_error - a.proto.closes.header_error,
                (b.proto.closes.timeout + b.io.closed_deadline)
                    - (a.proto.closes.timeout + a.io.closed_deadline),
                h(b).cookie_limit - h(a).cookie_limit,
                b.batch.cap,
                b.batch.cap_shrinks - a.batch.cap_shrinks,
            );
        }
        s
    }
}

/// Counters of the attack thread.
#[derive(Debug, Default)]
struct AttackShared {
    opened: AtomicU64,
    connect_failed: AtomicU64,
    held: AtomicU64,
    held_peak: AtomicU64,
    cut: AtomicU64,
    bytes: AtomicU64,
    handshakes: AtomicU64,
    addresses: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Free,
    Connecting,
    Open,
    /// `poison`: waiting for the node's query + response.
    AwaitReply,
    /// `poison`: handshake done; sending keepalives.
    Poisoning,
}

struct Slot {
    conn: Option<ConnId>,
    phase: Phase,
    deframer: Deframer,
    /// `drip`: next byte of the query.
    pos: usize,
}

enum Command {
    Start { end: Instant },
}

struct AttackHandler {
    shared: Arc<AttackShared>,
    kind: AttackKind,
    target: SocketAddr,
    network: Network,
    concurrency: usize,
    open: usize,
    slots: Vec<Slot>,
    end: Option<Instant>,
    src_first: u32,
    src_count: u32,
    src_next: u32,
    interval: Duration,
    next_tick: Option<Instant>,
    rng: ChaCha8Rng,
    garbage_next: u64,
    drip_msg: Vec<u8>,
    identity: Vec<NodeIdentity>,
    bogus_left: usize,
    bogus_next: u32,
}

impl AttackHandler {
    fn running(&self, now: Instant) -> bool {
        self.end.is_some_and(|e| now < e)
    }

    fn slot(&mut self, conn: ConnId) -> Option<&mut Slot> {
        self.slots
            .get_mut(conn.index())
            .filter(|s| s.conn == Some(conn) && s.phase != Phase::Free)
    }

    fn free(&mut self, conn: ConnId) {
        let Some(s) = self.slot(conn) else {
            return;
        };
        let was_open = s.phase != Phase::Connecting;
        s.phase = Phase::Free;
        s.conn = None;
        self.open -= 1;
        if was_open {
            self.shared.held.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn send(&mut self, io: &mut Io, conn: ConnId, bytes: Vec<u8>) {
        let n = bytes.len() as u64;
        if io.send_owned(conn, bytes).is_ok() {
            self.shared.bytes.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn top_up(&mut self, io: &mut Io) {
        while self.running(io.now()) && self.open < self.concurrency {
            let dialed = if self.src_count == 0 {
                io.dial(self.target, 0)
            } else {
                let ip = source_ip(self.src_first + self.src_next);
                self.src_next = (self.src_next + 1) % self.src_count;
                io.dial_from(
                    SocketAddr::new(IpAddr::V4(ip), 0),
                    self.target,
                    0,
                    Duration::from_secs(5),
                )
            };
            match dialed {
                Ok(conn) => {
                    self.open += 1;
                    let network = self.network;
                    let s = &mut self.slots[conn.index()];
                    s.conn = Some(conn);
                    s.phase = Phase::Connecting;
                    s.deframer = Deframer::new(network);
                    s.pos = 0;
                }
                Err(_) => {
                    self.shared.connect_failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }

    /// The next malformed input (see [`GARBAGE_VARIANTS`]).
    fn garbage(&mut self) -> Vec<u8> {
        let n = self.network;
        let keepalive = Message::Keepalive(Keepalive::default()).encode(n);
        let mut query = Message::NodeIdHandshake(NodeIdHandshake::query(Cookie([1; 32]))).encode(n);
        let v = self.garbage_next % GARBAGE_VARIANTS;
        self.garbage_next += 1;
        match v {
            0 => {
                let mut b = vec![0u8; 64 + (self.rng.next_u32() % 512) as usize];
                self.rng.fill_bytes(&mut b);
                b
            }
            1 => query[..5].to_vec(), // truncated header, then silence
            2 => {
                let mut m = keepalive;
                m[5] = 0xee; // invalid message type
                m
            }
            3 => {
                let mut m = keepalive;
                m[0..2].copy_from_slice(&0x5241u16.to_be_bytes()); // another network ("RA")
                m
            }
            4 => {
                let mut m = keepalive;
                m[3] = 0x10; // version_using below the minimum
                m
            }
            5 => {
                query[6] = 0; // node_id_handshake with neither query nor response
                query[7] = 0;
                query.truncate(8);
                query
            }
            6 => {
                let mut m = query.clone();
                m.extend_from_slice(&query); // two queries
                m
            }
            7 => keepalive, // a message before the handshake
            _ => {
                // a confirm_ack header claiming a count of 15 hashes, with a short payload
                let mut m = keepalive[..8].to_vec();
                m[5] = MessageType::ConfirmAck as u8;
                m[6] = 0;
                m[7] = 0xf0;
                m.extend_from_slice(&[0u8; 40]);
                m
            }
        }
    }

    fn poison_keepalive(&mut self) -> Keepalive {
        let port = self.target.port();
        let v4 =
            |a: [u8; 4], p: u16| SocketAddrV6::new(Ipv4Addr::from(a).to_ipv6_mapped(), p, 0, 0);
        let v6 = |ip: Ipv6Addr, p: u16| SocketAddrV6::new(ip, p, 0, 0);
        let own = match self.target.ip() {
            IpAddr::V4(ip) => v4(ip.octets(), port),
            IpAddr::V6(ip) => v6(ip, port),
        };
        let mut k = Keepalive::default();
        for (i, slot) in k.peers.iter_mut().enumerate() {
            let r = self.rng.next_u32();
            *slot = match (i, r % 4) {
                // slot 0 is the sender's peering port (§7.4): leave it as the default padding
                (0, _) => continue,
                (_, 0) => match r % 7 {
                    0 => v4([192, 0, 2, (r >> 8) as u8], 7075),
                    1 => v4([198, 51, 100, (r >> 8) as u8], 7075),
                    2 => v4([203, 0, 113, (r >> 8) as u8], 7075),
                    3 => v4([240, (r >> 8) as u8, 0, 1], 7075),
                    4 => v4([224, 0, 0, (r >> 8) as u8], 7075),
                    5 => v6("2001:db8::1".parse().expect("literal"), 7075),
                    _ => v4([0, 1, 2, 3], 7075),
                },
                (_, 1) => match r % 3 {
                    0 => v6(Ipv6Addr::UNSPECIFIED, 7075),
                    1 => v4([0, 0, 0, 0], 7075),
                    _ => v4([127, 0, 0, 9], 0), // port 0
                },
                (_, 2) => own,
                _ if self.bogus_left > 0 => {
                    // unused loopback endpoints: dialable by the rules, refused by the kernel
                    self.bogus_left -= 1;
                    self.bogus_next += 1;
                    let b = self.bogus_next;
                    v4([127, 200, (b >> 8) as u8, b as u8], 1 + (b % 1000) as u16)
                }
                _ => own,
            };
        }
        k
    }

    fn poison_tick(&mut self, io: &mut Io) {
        let conns: Vec<ConnId> = self
            .slots
            .iter()
            .filter(|s| s.phase == Phase::Poisoning)
            .filter_map(|s| s.conn)
            .collect();
        for conn in conns {
            let k = self.poison_keepalive();
            self.shared.addresses.fetch_add(8, Ordering::Relaxed);
            let bytes = Message::Keepalive(k).encode(self.network);
            self.send(io, conn, bytes);
        }
    }

    fn drip_tick(&mut self, io: &mut Io) {
        let conns: Vec<(ConnId, usize)> = self
            .slots
            .iter()
            .filter(|s| s.phase == Phase::Open)
            .filter_map(|s| s.conn.map(|c| (c, s.pos)))
            .collect();
        for (conn, pos) in conns {
            let byte = self.drip_msg[pos % self.drip_msg.len()];
            if let Some(s) = self.slot(conn) {
                s.pos += 1;
            }
            self.send(io, conn, vec![byte]);
        }
    }
}

impl Handler for AttackHandler {
    type Command = Command;

    fn on_command(&mut self, io: &mut Io, cmd: Command) {
        let Command::Start { end } = cmd;
        self.end = Some(end);
        self.next_tick = Some(io.now() + self.interval);
        self.top_up(io);
    }

    fn on_connected(&mut self, io: &mut Io, conn: ConnId, _peer: SocketAddr, _token: u64) {
        let kind = self.kind;
        let Some(s) = self.slot(conn) else {
            io.close(conn);
            return;
        };
        s.phase = if kind == AttackKind::Poison {
            Phase::AwaitReply
        } else {
            Phase::Open
        };
        self.shared.opened.fetch_add(1, Ordering::Relaxed);
        let held = self.shared.held.fetch_add(1, Ordering::Relaxed) + 1;
        self.shared.held_peak.fetch_max(held, Ordering::Relaxed);
        match kind {
            AttackKind::QueryOnly | AttackKind::Poison => {
                let mut cookie = Cookie([0; 32]);
                self.rng.fill_bytes(&mut cookie.0);
                let m =
                    Message::NodeIdHandshake(NodeIdHandshake::query(cookie)).encode(self.network);
                self.send(io, conn, m);
            }
            AttackKind::Garbage => {
                let m = self.garbage();
                self.send(io, conn, m);
            }
            AttackKind::Silent
            | AttackKind::Drip
            | AttackKind::BadSig(_)
            | AttackKind::SlotFlood(_)
            | AttackKind::VoteFlood => {}
        }
    }

    fn on_connect_failed(&mut self, io: &mut Io, conn: ConnId, _token: u64, _err: std::io::Error) {
        if self.slot(conn).is_some() {
            self.shared.connect_failed.fetch_add(1, Ordering::Relaxed);
            self.free(conn);
        }
        let _ = io;
    }

    fn on_data(&mut self, io: &mut Io, conn: ConnId, data: &[u8]) {
        if self.kind != AttackKind::Poison {
            return; // the other kinds ignore what the node says
        }
        let Some(s) = self.slot(conn) else {
            return;
        };
        if s.phase != Phase::AwaitReply {
            return;
        }
        let mut reply = None;
        let _ = s.deframer.feed(data, |header, payload| {
            if reply.is_none()
                && header.message_type == MessageType::NodeIdHandshake
                && let Ok(Message::NodeIdHandshake(h)) = Message::decode(&header, payload)
            {
                reply = Some(h);
            }
        });
        let Some(query) = reply.and_then(|h| h.query) else {
            return;
        };
        let key = &self.identity[conn.index() % self.identity.len()];
        let mut salt = Cookie([0; 32]);
        self.rng.fill_bytes(&mut salt.0);
        let resp = key.handshake_response(&query.cookie, Some((salt, genesis_hash(self.network))));
        let mut m = Message::NodeIdHandshake(NodeIdHandshake::response(resp)).encode(self.network);
        let k = self.poison_keepalive();
        self.shared.addresses.fetch_add(8, Ordering::Relaxed);
        m.extend_from_slice(&Message::Keepalive(k).encode(self.network));
        if let Some(s) = self.slot(conn) {
            s.phase = Phase::Poisoning;
        }
        self.shared.handshakes.fetch_add(1, Ordering::Relaxed);
        self.send(io, conn, m);
    }

    fn on_closed(&mut self, io: &mut Io, conn: ConnId, reason: CloseReason) {
        if self.slot(conn).is_none() {
            return;
        }
        let by_node = !matches!(reason, CloseReason::Shutdown | CloseReason::Local);
        if by_node && self.running(io.now()) {
            self.shared.cut.fetch_add(1, Ordering::Relaxed);
        }
        self.free(conn);
    }

    fn on_timer(&mut self, io: &mut Io, now: Instant) {
        if let Some(t) = self.next_tick
            && now >= t
        {
            self.next_tick = Some(now + self.interval);
            if self.running(now) {
                match self.kind {
                    AttackKind::Drip => self.drip_tick(io),
                    AttackKind::Poison => self.poison_tick(io),
                    _ => {}
                }
            }
        }
    }

    fn before_sleep(&mut self, io: &mut Io) {
        self.top_up(io);
    }

    fn next_wakeup(&self) -> Option<Instant> {
        self.next_tick
    }
}

/// Gives the node's shards time to publish their counters (every 100 ms) before the final read.
fn settle(node: Option<&Node>) {
    if node.is_some() {
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs `cfg.kind` against `cfg.target` alongside the honest load, sampling the process (and
/// `node`, when the node runs in this process) every `sample_interval`. Blocks for about
/// `cfg.duration`.
pub fn run_attack(cfg: &AttackConfig, node: Option<&Node>) -> Result<AttackReport, AttackError> {
    if cfg.duration.is_zero() {
        return Err(AttackError::Config("duration must be positive"));
    }
    if matches!(cfg.kind, AttackKind::SlotFlood(_) | AttackKind::VoteFlood) {
        return super::flood::run_flood(cfg, node);
    }
    let start = Instant::now();
    let node_before = node.map(|n| n.stats());
    let mut samples = vec![sample(start, node)];
    let interval = cfg.sample_interval.max(Duration::from_millis(10));
    let mut next = start + interval;
    let mut sampler = |samples: &mut Vec<SoakSample>| {
        let now = Instant::now();
        if now >= next {
            next = now + interval;
            samples.push(sample(start, node));
        }
    };

    if let AttackKind::BadSig(pct) = cfg.kind {
        let mut load = cfg
            .honest
            .clone()
            .unwrap_or_else(|| LoadConfig::new(cfg.target));
        load.target = cfg.target;
        load.network = cfg.network;
        load.duration = cfg.duration;
        load.bad_sig_pct = pct;
        load.progress_interval = load.progress_interval.min(interval);
        let (report, bad) = loadgen::run_counted(&load, |_| sampler(&mut samples))?;
        samples.push(sample(start, node));
        settle(node);
        return Ok(AttackReport {
            kind: cfg.kind,
            wall: start.elapsed(),
            opened: bad.bad_sent + bad.good_sent,
            connect_failed: report.failures_of(loadgen::Failure::ConnectFailed),
            held_peak: 0,
            held_end: 0,
            cut_by_node: bad.bad_rejected,
            bytes_sent: 0,
            poison_handshakes: 0,
            poison_addresses: 0,
            honest: Some(report),
            bad_sig: Some(bad),
            samples,
            node_before,
            node_after: node.map(|n| n.stats()),
            flood: None,
        });
    }
    if cfg.connections == 0 {
        return Err(AttackError::Config("connections must be at least 1"));
    }

    let shared = Arc::new(AttackShared::default());
    let max_connections = cfg.connections * 2 + 16;
    let shard_cfg = ShardConfig {
        listen: None,
        max_connections,
        max_outbound: max_connections,
        ring_entries: 1024,
        recv_buffers: 256,
        send_pool_buffers: 64,
        connect_timeout: Duration::from_secs(5),
        ..ShardConfig::default()
    };
    let (kind, target, network) = (cfg.kind, cfg.target, cfg.network);
    let src_count = if matches!(cfg.target.ip(), IpAddr::V4(ip) if ip.is_loopback()) {
        cfg.source_ips
    } else {
        0
    };
    let (src_first, interval_t, concurrency, bogus) = (
        cfg.source_offset,
        cfg.drip_interval.max(Duration::from_millis(1)),
        cfg.connections,
        cfg.poison_bogus,
    );
    let sh = Arc::clone(&shared);
    let handle: ShardHandle<Command> = io::spawn(&shard_cfg, 0, move |_info: &io::ShardInfo| {
        let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
        let identity = if kind == AttackKind::Poison {
            (0..concurrency.min(4096))
                .map(|_| NodeIdentity::from_private(rng.random()))
                .collect()
        } else {
            vec![NodeIdentity::from_private([1; 32])]
        };
        AttackHandler {
            shared: sh,
            kind,
            target,
            network,
            concurrency,
            open: 0,
            slots: (0..max_connections)
                .map(|_| Slot {
                    conn: None,
                    phase: Phase::Free,
                    deframer: Deframer::new(network),
                    pos: 0,
                })
                .collect(),
            end: None,
            src_first,
            src_count,
            src_next: 0,
            interval: interval_t,
            next_tick: None,
            drip_msg: Message::NodeIdHandshake(NodeIdHandshake::query(Cookie([7; 32])))
                .encode(network),
            rng,
            garbage_next: 0,
            identity,
            bogus_left: bogus,
            bogus_next: 0,
        }
    })?;
    let end = Instant::now() + cfg.duration;
    let _ = handle.send_command(Command::Start { end });

    let honest = match &cfg.honest {
        Some(load) => {
            let mut load = load.clone();
            load.target = cfg.target;
            load.network = cfg.network;
            load.duration = end
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            load.progress_interval = load.progress_interval.min(interval);
            match loadgen::run(&load, |_| sampler(&mut samples)) {
                Ok(r) => Some(r),
                Err(e) => {
                    handle.stop();
                    let _ = handle.join();
                    return Err(e.into());
                }
            }
        }
        None => {
            while Instant::now() < end {
                std::thread::sleep(interval.min(end.saturating_duration_since(Instant::now())));
                sampler(&mut samples);
            }
            None
        }
    };
    let held_end = shared.held.load(Ordering::Relaxed);
    samples.push(sample(start, node));
    handle.stop();
    let _ = handle.join();
    settle(node);
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Ok(AttackReport {
        kind: cfg.kind,
        wall: start.elapsed(),
        opened: g(&shared.opened),
        connect_failed: g(&shared.connect_failed),
        held_peak: g(&shared.held_peak),
        held_end,
        cut_by_node: g(&shared.cut),
        bytes_sent: g(&shared.bytes),
        poison_handshakes: g(&shared.handshakes),
        poison_addresses: g(&shared.addresses),
        honest,
        bad_sig: None,
        samples,
        node_before,
        node_after: node.map(|n| n.stats()),
        flood: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print() {
        for s in [
            "silent",
            "query-only",
            "drip",
            "garbage",
            "poison",
            "bad-sig:50",
            "slot-flood:ip",
            "slot-flood:subnet",
            "slot-flood:many",
            "vote-flood",
        ] {
            assert_eq!(s.parse::<AttackKind>().unwrap().to_string(), s);
        }
        assert_eq!(
            "bad-sig:10%".parse::<AttackKind>().unwrap(),
            AttackKind::BadSig(10)
        );
        assert!("bad-sig:101".parse::<AttackKind>().is_err());
        assert_eq!(
            "slot-flood".parse::<AttackKind>().unwrap(),
            AttackKind::SlotFlood(FloodSource::Ip)
        );
        assert!("slot-flood:mars".parse::<AttackKind>().is_err());
        assert!("slot-floods".parse::<AttackKind>().is_err());
        assert!("flood".parse::<AttackKind>().is_err());
    }

    #[test]
    fn soak_growth_ignores_warmup() {
        let s = |t, rss, fds| SoakSample {
            t: Duration::from_secs(t),
            rss_kb: rss,
            fds,
            ..SoakSample::default()
        };
        let v = [
            s(0, 100, 5),
            s(10, 900, 50),
            s(20, 1000, 52),
            s(30, 1010, 51),
        ];
        assert_eq!(soak_growth(&v, Duration::from_secs(10)), (110, 1));
        assert_eq!(soak_growth(&v[..1], Duration::ZERO), (0, 0));
        assert!(process_rss_kb().unwrap() > 0);
        assert!(process_fds().unwrap() >= 3);
    }
}
