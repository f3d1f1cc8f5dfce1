//! The attack thread of the connection attacks (`silent`, `query-only`, `drip`, `garbage`,
//! `poison`): one io_uring thread that keeps `connections` hostile connections open or in
//! flight, each from its own 127.x.y.z source address, reopens those the node cuts while the
//! attack runs, and does to each what its kind does (what the malformed and poisoning kinds
//! send is [`super::payload`]'s).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::AttackConfig;
use super::kind::AttackKind;
use super::payload::{Poison, garbage};
use crate::bench::loadgen::source_ip;
use crate::crypto::genesis_hash;
use crate::io::{self, CloseReason, ConnId, Handler, Io, IoError, ShardConfig, ShardHandle};
use crate::proto::identity::NodeIdentity;
use crate::types::{Cookie, Network};
use crate::wire::{Deframer, Message, MessageType, NodeIdHandshake};

/// Counters of the attack thread, read by [`run_attack`](super::run_attack).
#[derive(Debug, Default)]
pub(super) struct AttackShared {
    /// Connections established.
    pub(super) opened: AtomicU64,
    /// Dials that failed.
    pub(super) connect_failed: AtomicU64,
    /// Connections open now.
    pub(super) held: AtomicU64,
    /// Most connections open at once.
    pub(super) held_peak: AtomicU64,
    /// Connections the node closed while the attack ran.
    pub(super) cut: AtomicU64,
    /// Bytes the io layer accepted for sending (a refused send is not counted).
    pub(super) bytes: AtomicU64,
    /// `poison`: handshakes completed.
    pub(super) handshakes: AtomicU64,
    /// `poison`: addresses advertised.
    pub(super) addresses: AtomicU64,
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

/// Commands to the attack thread.
pub(super) enum Command {
    /// Start attacking; stop reopening at `end`.
    Start {
        /// When the attack ends.
        end: Instant,
    },
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
    poison: Poison,
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

    fn poison_tick(&mut self, io: &mut Io) {
        let conns: Vec<ConnId> = self
            .slots
            .iter()
            .filter(|s| s.phase == Phase::Poisoning)
            .filter_map(|s| s.conn)
            .collect();
        for conn in conns {
            let k = self.poison.keepalive(&mut self.rng);
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
                let m = garbage(self.network, self.garbage_next, &mut self.rng);
                self.garbage_next += 1;
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
        let k = self.poison.keepalive(&mut self.rng);
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

/// Starts the attack thread of `cfg` (its slots, keys and sources ready; it dials once sent
/// [`Command::Start`]), counting into `shared`.
pub(super) fn spawn(
    cfg: &AttackConfig,
    shared: Arc<AttackShared>,
) -> Result<ShardHandle<Command>, IoError> {
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
    io::spawn(&shard_cfg, 0, move |_info: &io::ShardInfo| {
        let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
        let identity = if kind == AttackKind::Poison {
            (0..concurrency.min(4096))
                .map(|_| NodeIdentity::from_private(rng.random()))
                .collect()
        } else {
            vec![NodeIdentity::from_private([1; 32])]
        };
        AttackHandler {
            shared,
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
            poison: Poison::new(target, bogus),
        }
    })
}
