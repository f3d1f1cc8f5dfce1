//! The simulated peers of one load thread: an io_uring [`Handler`] that dials the target from
//! its source addresses, runs the initiator side of the v2 handshake for each connection
//! (query, the node's response checked and batch-verified, our response and a keepalive, the
//! node's first channel message), then closes or holds the channel; and the counters it
//! shares with the driver.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::source_ip;
use super::keys::KeyPool;
use super::report::Failure;
use crate::bench::hist::AtomicHistogram;
use crate::crypto::{BatchVerifier, KeyCache, genesis_hash};
use crate::io::{CloseReason, ConnId, Handler, Io, IoError};
use crate::types::{BlockHash, Cookie, Network};
use crate::wire::{Deframer, Keepalive, Message, MessageType, NodeIdHandshake};

/// Node ids each load thread keeps decompressed.
const NODE_KEY_CACHE: usize = 16;

/// Counters one load thread updates and the controlling thread reads.
#[derive(Debug, Default)]
pub(super) struct ThreadShared {
    /// The thread's kernel id (for its CPU time).
    pub(super) tid: AtomicU32,
    /// Completed handshakes in the measured window.
    pub(super) handshakes: AtomicU64,
    /// Failures in the measured window, by [`Failure::index`].
    pub(super) failures: [AtomicU64; Failure::ALL.len()],
    /// Dials started.
    pub(super) dials: AtomicU64,
    /// Handshakes in flight (a gauge).
    pub(super) in_flight: AtomicU64,
    /// Channels held (a gauge).
    pub(super) held: AtomicU64,
    /// Latencies of the completed handshakes, µs.
    pub(super) hist: AtomicHistogram,
    /// Bad-signature responses sent.
    pub(super) bad_sent: AtomicU64,
    /// … of which the node closed the connection.
    pub(super) bad_rejected: AtomicU64,
    /// … of which the node made a channel.
    pub(super) bad_accepted: AtomicU64,
    /// Correct responses sent.
    pub(super) good_sent: AtomicU64,
}

/// Commands to a load thread.
pub(super) enum Command {
    /// Start dialing; count results until `end`.
    Start {
        /// When counting (and dialing) stops.
        end: Instant,
    },
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
pub(super) struct LoadHandler {
    shared: Arc<ThreadShared>,
    target: SocketAddr,
    network: Network,
    genesis: BlockHash,
    keys: KeyPool,
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

/// One load thread's share of the run, as the driver hands it to the thread.
#[derive(Debug, Clone, Copy)]
pub(super) struct ThreadSetup {
    /// The node to drive.
    pub(super) target: SocketAddr,
    /// The node's network: the deframers' and the genesis the node must answer with.
    pub(super) network: Network,
    /// Hold channels open (up to `hold_limit`).
    pub(super) hold: bool,
    /// Verify the node's signatures.
    pub(super) verify_node: bool,
    /// From the established connection to the completed handshake.
    pub(super) handshake_timeout: Duration,
    /// Per dial; past it the dial fails with [`Failure::ConnectTimeout`].
    pub(super) connect_timeout: Duration,
    /// Verification batch size.
    pub(super) verify_batch: usize,
    /// Percentage of peers that sign wrongly.
    pub(super) bad_pct: u32,
    /// This thread's index among `threads`: its source addresses are
    /// `source_ip(index + threads · k)`, k < `src_count`.
    pub(super) index: usize,
    /// Load threads in all.
    pub(super) threads: usize,
    /// Handshakes this thread keeps in flight.
    pub(super) concurrency: usize,
    /// Channels this thread holds at most.
    pub(super) hold_limit: usize,
    /// Node keys this thread generates.
    pub(super) keys: usize,
    /// Connection slots of the thread's shard.
    pub(super) max_connections: usize,
    /// Source addresses of this thread (0: the kernel picks).
    pub(super) src_count: u32,
}

impl LoadHandler {
    /// The handler of one load thread (runs on that thread: generates its keys there).
    pub(super) fn new(shared: Arc<ThreadShared>, s: ThreadSetup) -> LoadHandler {
        let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
        let keys = KeyPool::generate(s.keys, &mut rng);
        let peers = (0..s.max_connections)
            .map(|_| Peer {
                conn: None,
                phase: Phase::Free,
                key: 0,
                started: Instant::now(),
                cookie: Cookie([0; 32]),
                deframer: Deframer::new(s.network),
                verified: false,
                node_msg: false,
                bad: false,
                bad_sent: false,
            })
            .collect();
        LoadHandler {
            shared,
            target: s.target,
            network: s.network,
            genesis: genesis_hash(s.network),
            keys,
            peers,
            concurrency: s.concurrency,
            in_flight: 0,
            held: 0,
            hold_limit: s.hold_limit,
            hold: s.hold,
            verify_node: s.verify_node,
            handshake_timeout: s.handshake_timeout,
            connect_timeout: s.connect_timeout,
            src_first: s.index as u32,
            src_stride: s.threads as u32,
            src_count: s.src_count,
            src_next: 0,
            end: None,
            batch: BatchVerifier::new(s.verify_batch),
            node_keys: KeyCache::new(NODE_KEY_CACHE),
            batch_conns: Vec::with_capacity(s.verify_batch),
            frames: Vec::with_capacity(8),
            rng,
            bad_pct: s.bad_pct,
            // threads start at different phases of the 100-dial pattern
            bad_acc: (s.index as u32 * 37) % 100,
        }
    }

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
        self.keys.give_back(key);
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
            let Some(key) = self.keys.lend() else {
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
                    self.keys.unlend(key);
                    break;
                }
                Err(_) => {
                    // Socket or bind failed: count it, try again next turn (no busy loop).
                    self.shared.failures[Failure::ConnectFailed.index()]
                        .fetch_add(1, Ordering::Relaxed);
                    self.keys.give_back(key);
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
        let (our_cookie, key, bad) = (p.cookie, p.key, p.bad);
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
        let ours = self
            .keys
            .identity(key)
            .handshake_response(&signed, Some((salt, self.genesis)));
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
