//! The load generator: simulated peers on their own io_uring threads (the [`crate::io`]
//! runtime, one ring per thread, no listener).
//!
//! Each simulated peer takes a node key of its own from the thread's key pool (a key is never
//! used by two connections at once), binds its socket to its own source address in
//! 127.0.0.0/8 (so per-IP and per-subnet limits of the target see many peers, each /24
//! different from the next), dials the target and runs the initiator side of the v2 handshake
//! (§6.2):
//!
//! 1. → node_id_handshake query (ext 0x0005) with a fresh cookie;
//! 2. ← query + v2 response (ext 0x0007): the genesis must be the network's; the signature over
//!    cookie ‖ salt ‖ genesis is queued for batch verification (unless `verify_node` is off);
//! 3. → our v2 response (ext 0x0006, signed with the peer's key) and a keepalive (144 bytes);
//! 4. ← the node's first post-handshake message (its keepalive_self, §6.2 step 5), which shows
//!    it created the channel.
//!
//! The handshake counts once step 4 has happened and the node's signature verified; the
//! latency runs from the dial to that moment. Then the peer closes (or, with `hold`, keeps the
//! channel open until the run ends). Anything else is a [`Failure`], by reason.
//!
//! The load threads' own CPU time is measured (`/proc` schedstat), so the report can show
//! whether the generator, not the target, was the bottleneck.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::hist::{AtomicHistogram, LatencyHistogram};
use crate::crypto::{BatchVerifier, KeyCache, genesis_hash};
use crate::io::cpu::{current_thread_id, thread_cpu_time};
use crate::io::{self, CloseReason, ConnId, Handler, Io, IoError, ShardConfig, ShardHandle};
use crate::proto::identity::NodeIdentity;
use crate::types::{BlockHash, Cookie, Network};
use crate::wire::{Deframer, Keepalive, Message, MessageType, NodeIdHandshake};

/// Node ids each load thread keeps decompressed.
const NODE_KEY_CACHE: usize = 16;

/// Load CPU use (fraction of the load threads' wall time) at which the report warns that
/// the generator may be the bottleneck.
pub const SATURATION_WARN: f64 = 0.9;

/// Why a simulated handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// The connect failed (refused, unreachable, the source address could not be bound).
    ConnectFailed,
    /// The connect did not complete within the connect timeout.
    ConnectTimeout,
    /// The node closed (or reset) the connection before the handshake completed.
    ClosedByNode,
    /// The node's handshake response signature did not verify.
    BadNodeSignature,
    /// The node sent something unexpected: not a query + v2 response first, a foreign
    /// genesis, an undecodable message, or a header error.
    Protocol,
    /// The handshake did not complete within the handshake timeout.
    Timeout,
}

impl Failure {
    /// Every reason, in report order.
    pub const ALL: [Failure; 6] = [
        Failure::ConnectFailed,
        Failure::ConnectTimeout,
        Failure::ClosedByNode,
        Failure::BadNodeSignature,
        Failure::Protocol,
        Failure::Timeout,
    ];

    /// The snake_case name used in the report.
    pub const fn as_str(self) -> &'static str {
        match self {
            Failure::ConnectFailed => "connect_failed",
            Failure::ConnectTimeout => "connect_timeout",
            Failure::ClosedByNode => "closed_by_node",
            Failure::BadNodeSignature => "bad_node_signature",
            Failure::Protocol => "protocol",
            Failure::Timeout => "timeout",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// What went wrong starting the load generator.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A configuration value is out of range.
    #[error("invalid load configuration: {0}")]
    Config(&'static str),
    /// A load thread (io_uring shard) could not start.
    #[error("load thread failed to start: {0}")]
    Start(#[from] IoError),
}

/// Settings of a load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The node to drive.
    pub target: SocketAddr,
    /// The network the node is on (header bytes and genesis hash).
    pub network: Network,
    /// Handshakes in flight at once, over all load threads.
    pub connections: usize,
    /// Load threads (one io_uring each).
    pub threads: usize,
    /// How long to generate load.
    pub duration: Duration,
    /// Keep each channel open after the handshake (until the run ends) instead of closing.
    pub hold: bool,
    /// Most channels held at once with `hold`, over all threads; beyond, peers close.
    pub hold_limit: usize,
    /// Verify the node's handshake signatures (batched). Off: trust them (less load CPU).
    pub verify_node: bool,
    /// Distinct source addresses in 127.0.0.0/8 (see [`source_ip`]); 0 lets the kernel choose.
    /// Only used when the target is an IPv4 loopback address.
    pub source_ips: u32,
    /// Node keys generated up front, over all threads (at least one more per thread than the
    /// thread's concurrency, so concurrent peers never share a key).
    pub key_pool: usize,
    /// Verification batch size of the node's signatures.
    pub verify_batch: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Handshake timeout, from the established connection to completion.
    pub handshake_timeout: Duration,
    /// Cores to pin load threads to (thread `i` on `cores[i % len]`); empty: no pinning.
    pub cores: Vec<usize>,
    /// How often the progress callback runs.
    pub progress_interval: Duration,
    /// Share (percent, 0–100) of simulated peers whose handshake response carries a wrong
    /// signature (a bad-signature flood, `bench --attack bad-sig:PCT`). Exactly `pct` of every
    /// 100 dials, evenly spread. Bad peers are not counted as handshakes or failures but in
    /// [`BadSigCounts`].
    pub bad_sig_pct: u8,
}

/// What the bad-signature peers of a run saw ([`LoadConfig::bad_sig_pct`]), counted for the
/// whole run (not only the measuring window), so they can be compared with the node's
/// `handshake.invalid_signature` counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BadSigCounts {
    /// Handshake responses with a wrong signature sent.
    pub bad_sent: u64,
    /// Of those, connections the node then closed (rejected).
    pub bad_rejected: u64,
    /// Of those, connections on which the node sent a post-handshake message (accepted: a bug).
    pub bad_accepted: u64,
    /// Handshake responses with a correct signature sent.
    pub good_sent: u64,
}

impl LoadConfig {
    /// Defaults for driving `target` on the dev network: 64 connections, one thread, 10 s,
    /// verification on, 65 536 source addresses.
    pub fn new(target: SocketAddr) -> LoadConfig {
        LoadConfig {
            target,
            network: Network::Dev,
            connections: 64,
            threads: 1,
            duration: Duration::from_secs(10),
            hold: false,
            hold_limit: 10_000,
            verify_node: true,
            source_ips: 65_536,
            key_pool: 4096,
            verify_batch: 64,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            cores: Vec::new(),
            progress_interval: Duration::from_millis(200),
            bad_sig_pct: 0,
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        if self.connections == 0 {
            return Err(LoadError::Config("connections must be at least 1"));
        }
        if self.threads == 0 || self.threads > 1024 {
            return Err(LoadError::Config("threads must be in 1..=1024"));
        }
        if self.connections > 1 << 20 {
            return Err(LoadError::Config("connections must be at most 1048576"));
        }
        if self.verify_batch == 0 {
            return Err(LoadError::Config("verify_batch must be at least 1"));
        }
        if self.duration.is_zero() {
            return Err(LoadError::Config("duration must be positive"));
        }
        if self.bad_sig_pct > 100 {
            return Err(LoadError::Config("bad_sig_pct must be at most 100"));
        }
        Ok(())
    }
}

/// Source address number `index` in 127.0.0.0/8: consecutive indices differ in the second
/// octet, so they fall in different /24 (and /16) subnets; 127.0.x.x (thus 127.0.0.1) and
/// host parts .0 / .255 are never used. 254 · 256 · 254 distinct addresses, then it wraps.
pub fn source_ip(index: u32) -> Ipv4Addr {
    let i = index % (254 * 256 * 254);
    let b1 = 1 + (i % 254);
    let b2 = (i / 254) % 256;
    let b3 = 1 + (i / (254 * 256)) % 254;
    Ipv4Addr::new(127, b1 as u8, b2 as u8, b3 as u8)
}

/// Progress of a running load, given to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// Time since the load started.
    pub elapsed: Duration,
    /// The planned duration.
    pub duration: Duration,
    /// Completed handshakes.
    pub handshakes: u64,
    /// Failures, all reasons.
    pub failures: u64,
    /// Handshakes per second since the previous snapshot.
    pub rate_per_sec: f64,
    /// Handshakes per second since the start.
    pub avg_per_sec: f64,
    /// Handshakes in flight.
    pub in_flight: u64,
    /// Channels held open (`hold`).
    pub held: u64,
    /// Load threads' CPU use since the start, as a fraction of their wall time.
    pub load_cpu_util: f64,
}

/// The result of a load run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The node driven.
    pub target: SocketAddr,
    /// Its network.
    pub network: Network,
    /// Concurrency asked for.
    pub connections: usize,
    /// Load threads.
    pub threads: usize,
    /// Whether channels were held.
    pub hold: bool,
    /// Whether the node's signatures were verified.
    pub verify_node: bool,
    /// Measured wall time of the load (start command to the final count).
    pub wall: Duration,
    /// Completed handshakes.
    pub handshakes: u64,
    /// Handshakes per second of wall time.
    pub handshakes_per_sec: f64,
    /// Failures per reason, every reason listed (in [`Failure::ALL`] order).
    pub failures: Vec<(Failure, u64)>,
    /// Latencies (dial to completion) of completed handshakes, µs.
    pub latency: LatencyHistogram,
    /// Dials started.
    pub dials: u64,
    /// Distinct source addresses used (0 when the kernel chose).
    pub distinct_source_ips: u64,
    /// Channels held open at the end (`hold`).
    pub held: u64,
    /// Kernel thread ids of the load threads.
    pub thread_ids: Vec<u32>,
    /// CPU time the load threads used during the run.
    pub load_cpu: Duration,
    /// `load_cpu / (threads × wall)`.
    pub load_cpu_util: f64,
}

impl LoadReport {
    /// Failures, all reasons.
    pub fn failures_total(&self) -> u64 {
        self.failures.iter().map(|(_, n)| n).sum()
    }

    /// Failures of one reason.
    pub fn failures_of(&self, reason: Failure) -> u64 {
        self.failures
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// True when the load threads were busy enough (≥ [`SATURATION_WARN`]) that they may
    /// have limited the rate.
    pub fn load_saturated(&self) -> bool {
        self.load_cpu_util >= SATURATION_WARN
    }

    /// Load CPU per completed handshake, µs (0 without handshakes).
    pub fn load_cpu_us_per_handshake(&self) -> f64 {
        if self.handshakes == 0 {
            0.0
        } else {
            self.load_cpu.as_secs_f64() * 1e6 / self.handshakes as f64
        }
    }
}

/// Counters one load thread updates and the controlling thread reads.
#[derive(Debug, Default)]
struct ThreadShared {
    tid: AtomicU32,
    handshakes: AtomicU64,
    failures: [AtomicU64; Failure::ALL.len()],
    dials: AtomicU64,
    in_flight: AtomicU64,
    held: AtomicU64,
    hist: AtomicHistogram,
    bad_sent: AtomicU64,
    bad_rejected: AtomicU64,
    bad_accepted: AtomicU64,
    good_sent: AtomicU64,
}

/// Commands to a load thread.
enum Command {
    /// Start dialing; count results until `end`.
    Start { end: Instant },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Free,
    Connecting,
    AwaitResponse,
    AwaitChannel,
    Held,
}

/// One simulated peer, in the slot of its connection index.
struct Peer {
    conn: Option<ConnId>,
    phase: Phase,
    key: u32,
    started: Instant,
    cookie: Cookie,
    deframer: Deframer,
    verified: bool,
    node_msg: bool,
    /// Sends a wrong signature (bad-signature flood).
    bad: bool,
    /// The bad response went out.
    bad_sent: bool,
}

/// What a received frame is, for the state machine.
enum Frame {
    Handshake(NodeIdHandshake),
    Undecodable,
    Other,
}

/// One load thread's handler.
struct LoadHandler {
    shared: Arc<ThreadShared>,
    target: SocketAddr,
    network: Network,
    genesis: BlockHash,
    keys: Vec<NodeIdentity>,
    free_keys: VecDeque<u32>,
    peers: Vec<Peer>,
    concurrency: usize,
    in_flight: usize,
    held: usize,
    hold_limit: usize,
    hold: bool,
    verify_node: bool,
    handshake_timeout: Duration,
    connect_timeout: Duration,
    /// This thread's source addresses: `source_ip(first + stride * k)`, k < count.
    src_first: u32,
    src_stride: u32,
    src_count: u32,
    src_next: u32,
    end: Option<Instant>,
    batch: BatchVerifier,
    /// The node ids seen in responses, decompressed once (a target has one, a few at most):
    /// as a real peer keeps its key cache, and so that a batch holds the node's key once.
    node_keys: KeyCache,
    batch_conns: Vec<ConnId>,
    frames: Vec<Frame>,
    rng: ChaCha8Rng,
    bad_pct: u32,
    bad_acc: u32,
}

impl LoadHandler {
    fn running(&self, now: Instant) -> bool {
        self.end.is_some_and(|end| now < end)
    }

    fn peer(&mut self, conn: ConnId) -> Option<&mut Peer> {
        self.peers
            .get_mut(conn.index())
            .filter(|p| p.conn == Some(conn) && p.phase != Phase::Free)
    }

    /// Frees the peer's slot and key; counts nothing.
    fn release(&mut self, conn: ConnId) {
        let Some(p) = self.peer(conn) else {
            return;
        };
        let (phase, key) = (p.phase, p.key);
        p.phase = Phase::Free;
        p.conn = None;
        self.free_keys.push_back(key);
        if phase == Phase::Held {
            self.held -= 1;
            self.shared.held.store(self.held as u64, Ordering::Relaxed);
        } else {
            self.in_flight -= 1;
            self.shared
                .in_flight
                .store(self.in_flight as u64, Ordering::Relaxed);
        }
    }

    fn fail(&mut self, io: &mut Io, conn: ConnId, reason: Failure, close: bool) {
        if let Some(p) = self.peer(conn)
            && p.bad
        {
            // A bad-signature peer: its end is the node's verdict, not a failure.
            let rejected = p.bad_sent && reason == Failure::ClosedByNode;
            if rejected {
                self.shared.bad_rejected.fetch_add(1, Ordering::Relaxed);
            }
            self.release(conn);
            if close {
                io.close(conn);
            }
            return;
        }
        if self.running(io.now()) {
            self.shared.failures[reason.index()].fetch_add(1, Ordering::Relaxed);
        }
        self.release(conn);
        if close {
            io.close(conn);
        }
    }

    /// Completes the handshake if both the node's channel message and its verified signature
    /// are in.
    fn maybe_done(&mut self, io: &mut Io, conn: ConnId) {
        let now = io.now();
        let running = self.running(now);
        let hold = self.hold && self.held < self.hold_limit;
        let Some(p) = self.peer(conn) else {
            return;
        };
        if p.phase != Phase::AwaitChannel || !p.verified || !p.node_msg {
            return;
        }
        if p.bad {
            // The node created a channel for a wrong signature.
            self.shared.bad_accepted.fetch_add(1, Ordering::Relaxed);
            self.release(conn);
            io.close(conn);
            return;
        }
        let latency = now.saturating_duration_since(p.started);
        if hold {
            p.phase = Phase::Held;
        }
        if running {
            self.shared.handshakes.fetch_add(1, Ordering::Relaxed);
            self.shared.hist.record(latency.as_micros() as u64);
        }
        if hold {
            io.clear_deadline(conn);
            self.in_flight -= 1;
            self.held += 1;
            self.shared
                .in_flight
                .store(self.in_flight as u64, Ordering::Relaxed);
            self.shared.held.store(self.held as u64, Ordering::Relaxed);
        } else {
            self.release(conn);
            io.close(conn);
        }
    }

    /// Dials until `concurrency` handshakes are in flight (or the shard is full).
    fn top_up(&mut self, io: &mut Io) {
        while self.running(io.now()) && self.in_flight < self.concurrency {
            let Some(key) = self.free_keys.pop_front() else {
                break;
            };
            let token = u64::from(key);
            let dialed = if self.src_count == 0 {
                io.dial_timeout(self.target, token, self.connect_timeout)
            } else {
                let k = self.src_next;
                self.src_next = (self.src_next + 1) % self.src_count;
                let ip = source_ip(self.src_first.wrapping_add(self.src_stride.wrapping_mul(k)));
                let local = SocketAddr::new(IpAddr::V4(ip), 0);
                io.dial_from(local, self.target, token, self.connect_timeout)
            };
            match dialed {
                Ok(conn) => {
                    self.shared.dials.fetch_add(1, Ordering::Relaxed);
                    self.in_flight += 1;
                    self.shared
                        .in_flight
                        .store(self.in_flight as u64, Ordering::Relaxed);
                    let network = self.network;
                    let p = &mut self.peers[conn.index()];
                    p.conn = Some(conn);
                    p.phase = Phase::Connecting;
                    p.key = key;
                    p.started = io.now();
                    p.deframer = Deframer::new(network);
                    p.verified = !self.verify_node;
                    p.node_msg = false;
                    self.bad_acc += self.bad_pct;
                    p.bad = self.bad_acc >= 100;
                    if p.bad {
                        self.bad_acc -= 100;
                        p.verified = true;
                    }
                    p.bad_sent = false;
                }
                Err(IoError::ConnectionCap | IoError::Stopping) => {
                    self.free_keys.push_front(key);
                    break;
                }
                Err(_) => {
                    // Socket or bind failed: count it, try again next turn (no busy loop).
                    self.shared.failures[Failure::ConnectFailed.index()]
                        .fetch_add(1, Ordering::Relaxed);
                    self.free_keys.push_back(key);
                    break;
                }
            }
        }
    }

    fn flush_verify(&mut self, io: &mut Io) {
        if self.batch.is_empty() {
            return;
        }
        let results: Vec<bool> = self.batch.verify(&mut self.rng).to_vec();
        let conns = std::mem::take(&mut self.batch_conns);
        for (&conn, ok) in conns.iter().zip(results) {
            if self.peer(conn).is_none() {
                continue; // closed meanwhile
            }
            if ok {
                if let Some(p) = self.peer(conn) {
                    p.verified = true;
                }
                self.maybe_done(io, conn);
            } else {
                self.fail(io, conn, Failure::BadNodeSignature, true);
            }
        }
        self.batch_conns = conns;
        self.batch_conns.clear();
    }

    /// The node's query + response: check it, queue its signature, answer with our response
    /// and a keepalive.
    fn on_node_handshake(&mut self, io: &mut Io, conn: ConnId, hs: NodeIdHandshake) -> bool {
        let (Some(query), Some(response)) = (hs.query, hs.response) else {
            return false;
        };
        let Some(v2) = response.v2 else {
            return false;
        };
        if v2.genesis != self.genesis {
            return false;
        }
        let Some(p) = self.peer(conn) else {
            return false;
        };
        p.phase = Phase::AwaitChannel;
        let (our_cookie, key, bad) = (p.cookie, p.key as usize, p.bad);
        if self.verify_node && !bad {
            if self.batch.is_full() {
                self.flush_verify(io);
                if self.peer(conn).is_none() {
                    return true;
                }
            }
            let signed = response.signed_data(&our_cookie);
            let pushed = match self.node_keys.get(&response.node_id) {
                Some(vk) => self.batch.push_key(vk, &signed, &response.signature),
                // not a point: queued as is, it fails like any bad signature
                None => self
                    .batch
                    .push(&response.node_id, &signed, &response.signature),
            };
            if pushed.is_ok() {
                self.batch_conns.push(conn);
            }
        }
        let mut salt = Cookie([0; 32]);
        self.rng.fill_bytes(&mut salt.0);
        let mut signed = query.cookie;
        if bad {
            // Signed by the right key over another cookie: well-formed (R a point, S in
            // range), so only the full equation rejects it: the expensive case.
            signed.0[0] ^= 0x01;
        }
        let ours = self.keys[key].handshake_response(&signed, Some((salt, self.genesis)));
        let mut buf = io.buffer();
        Message::NodeIdHandshake(NodeIdHandshake::response(ours))
            .encode_into(self.network, &mut buf);
        Message::Keepalive(Keepalive::default()).encode_into(self.network, &mut buf);
        if io.send_owned(conn, buf).is_err() {
            self.fail(io, conn, Failure::ClosedByNode, true);
        } else if bad {
            self.shared.bad_sent.fetch_add(1, Ordering::Relaxed);
            if let Some(p) = self.peer(conn) {
                p.bad_sent = true;
            }
        } else {
            self.shared.good_sent.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}

impl Handler for LoadHandler {
    type Command = Command;

    fn on_command(&mut self, io: &mut Io, cmd: Command) {
        match cmd {
            Command::Start { end } => {
                self.end = Some(end);
                self.top_up(io);
            }
        }
    }

    fn on_connected(&mut self, io: &mut Io, conn: ConnId, _peer: SocketAddr, _token: u64) {
        let network = self.network;
        let timeout = self.handshake_timeout;
        let mut cookie = Cookie([0; 32]);
        self.rng.fill_bytes(&mut cookie.0);
        let Some(p) = self.peer(conn) else {
            io.close(conn);
            return;
        };
        p.phase = Phase::AwaitResponse;
        p.cookie = cookie;
        io.set_deadline(conn, io.now() + timeout);
        let mut buf = io.buffer();
        Message::NodeIdHandshake(NodeIdHandshake::query(cookie)).encode_into(network, &mut buf);
        if io.send_owned(conn, buf).is_err() {
            self.fail(io, conn, Failure::ClosedByNode, true);
        }
    }

    fn on_connect_failed(&mut self, io: &mut Io, conn: ConnId, _token: u64, err: std::io::Error) {
        if self.peer(conn).is_none() {
            return;
        }
        match err.raw_os_error() {
            Some(libc::ECANCELED) => self.release(conn),
            Some(libc::ETIMEDOUT) => self.fail(io, conn, Failure::ConnectTimeout, false),
            _ => self.fail(io, conn, Failure::ConnectFailed, false),
        }
    }

    fn on_data(&mut self, io: &mut Io, conn: ConnId, data: &[u8]) {
        let Some(p) = self
            .peers
            .get_mut(conn.index())
            .filter(|p| p.conn == Some(conn))
        else {
            return;
        };
        match p.phase {
            Phase::AwaitResponse | Phase::AwaitChannel => {}
            _ => return, // held channels: ignore what the node sends
        }
        let frames = &mut self.frames;
        frames.clear();
        let fed = p.deframer.feed(data, |header, payload| {
            frames.push(match header.message_type {
                MessageType::NodeIdHandshake => match Message::decode(&header, payload) {
                    Ok(Message::NodeIdHandshake(h)) => Frame::Handshake(h),
                    _ => Frame::Undecodable,
                },
                _ => Frame::Other,
            });
        });
        let mut frames = std::mem::take(&mut self.frames);
        for frame in frames.drain(..) {
            let Some(p) = self.peer(conn) else {
                break;
            };
            match (p.phase, frame) {
                (Phase::AwaitResponse, frame) => {
                    let answered = match frame {
                        Frame::Handshake(h) => self.on_node_handshake(io, conn, h),
                        Frame::Undecodable | Frame::Other => false,
                    };
                    if !answered {
                        self.fail(io, conn, Failure::Protocol, true);
                    }
                }
                (Phase::AwaitChannel, Frame::Other) => {
                    p.node_msg = true;
                    self.maybe_done(io, conn);
                }
                // Realtime ignores handshakes (§6.2); a bad payload only drops the message.
                (Phase::AwaitChannel, Frame::Undecodable | Frame::Handshake(_)) => {}
                (Phase::Free | Phase::Connecting | Phase::Held, _) => {}
            }
        }
        self.frames = frames;
        if fed.is_err() && self.peer(conn).is_some() {
            self.fail(io, conn, Failure::Protocol, true);
        }
    }

    fn on_closed(&mut self, io: &mut Io, conn: ConnId, reason: CloseReason) {
        let Some(p) = self.peer(conn) else {
            return;
        };
        if p.phase == Phase::Held {
            self.release(conn);
            return;
        }
        match reason {
            CloseReason::Shutdown | CloseReason::Local | CloseReason::Evicted => self.release(conn),
            CloseReason::Deadline => self.fail(io, conn, Failure::Timeout, false),
            CloseReason::PeerClosed
            | CloseReason::RecvError(_)
            | CloseReason::SendError(_)
            | CloseReason::SendQueueFull => self.fail(io, conn, Failure::ClosedByNode, false),
        }
    }

    fn before_sleep(&mut self, io: &mut Io) {
        self.flush_verify(io);
        self.top_up(io);
    }
}

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
        let (target, network) = (config.target, config.network);
        let (hold, verify_node) = (config.hold, config.verify_node);
        let (handshake_timeout, connect_timeout) =
            (config.handshake_timeout, config.connect_timeout);
        let verify_batch = config.verify_batch;
        let bad_pct = u32::from(config.bad_sig_pct);
        let src_count = if spread {
            share(src_total as usize, threads, i) as u32
        } else {
            0
        };
        let spawned = io::spawn(&shard_cfg, i, move |_info: &io::ShardInfo| {
            ts.tid
                .store(current_thread_id().unwrap_or(0), Ordering::Relaxed);
            let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
            let keys: Vec<NodeIdentity> = (0..keys)
                .map(|_| NodeIdentity::from_private(rng.random()))
                .collect();
            let peers = (0..max_connections)
                .map(|_| Peer {
                    conn: None,
                    phase: Phase::Free,
                    key: 0,
                    started: Instant::now(),
                    cookie: Cookie([0; 32]),
                    deframer: Deframer::new(network),
                    verified: false,
                    node_msg: false,
                    bad: false,
                    bad_sent: false,
                })
                .collect();
            LoadHandler {
                shared: ts,
                target,
                network,
                genesis: genesis_hash(network),
                free_keys: (0..keys.len() as u32).collect(),
                keys,
                peers,
                concurrency,
                in_flight: 0,
                held: 0,
                hold_limit,
                hold,
                verify_node,
                handshake_timeout,
                connect_timeout,
                src_first: i as u32,
                src_stride: threads as u32,
                src_count,
                src_next: 0,
                end: None,
                batch: BatchVerifier::new(verify_batch),
                node_keys: KeyCache::new(NODE_KEY_CACHE),
                batch_conns: Vec::with_capacity(verify_batch),
                frames: Vec::with_capacity(8),
                rng,
                bad_pct,
                // threads start at different phases of the 100-dial pattern
                bad_acc: (i as u32 * 37) % 100,
            }
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
    fn source_ips_spread_over_subnets() {
        let ips: Vec<Ipv4Addr> = (0..1000).map(source_ip).collect();
        let distinct: std::collections::HashSet<_> = ips.iter().collect();
        assert_eq!(distinct.len(), 1000);
        for w in ips.windows(2) {
            assert_ne!(w[0].octets()[..3], w[1].octets()[..3], "same /24");
        }
        for ip in (0..200_000).step_by(7).map(source_ip) {
            let o = ip.octets();
            assert_eq!(o[0], 127);
            assert_ne!(o[1], 0);
            assert!(o[3] != 0 && o[3] != 255, "{ip}");
        }
        assert_eq!(source_ip(0), source_ip(254 * 256 * 254));
    }

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
