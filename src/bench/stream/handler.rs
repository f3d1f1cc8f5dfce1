//! The io thread of a stream ([`StreamHandler`]): its peers dial, complete their v2
//! handshakes, hold their channels and stream (silent peers only connect), reopening what the
//! node closes; every count goes to the [`StreamShared`] counters the runner reads.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::pool::MessagePool;
use super::votes::{now_unix_ms, set_vote, vote_hashes_mut, vote_template};
use crate::crypto::{KeyPair, genesis_hash};
use crate::io::{CloseReason, ConnId, Handler, Io, IoError};
use crate::proto::identity::NodeIdentity;
use crate::types::{Cookie, Network, PublicKey, Signature};
use crate::wire::vote::FINAL_TIMESTAMP;
use crate::wire::{Deframer, Keepalive, Message, MessageType, NodeIdHandshake};

/// Attack peers per io thread (a thread of the attacker holds at most this many).
pub(super) const PEERS_PER_THREAD: usize = 1024;

/// Unsent bytes an attacker keeps queued per channel (it sends as fast as the node reads).
const ATTACK_SENDQ: usize = 64 * 1024;

/// Unsent bytes a streaming peer keeps queued at most (beyond, the node is not taking them).
const STREAM_SENDQ: usize = 32 * 1024;

/// A connection the node closes within this time of its connect, before any channel, counts
/// as refused (closed at once) rather than cut (timed out or evicted later). Seen from the
/// client, so a connection that waited in a busy node's accept queue may count as cut: the
/// node's own counters (`rejected_cap`, `refused`, …) give the causes.
pub const REFUSED_WITHIN: Duration = Duration::from_millis(250);

/// What one stream peer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Connect and never speak.
    Silent,
    /// Handshake, then stream invalid votes.
    BadVoter,
    /// Handshake, then stream the pool's messages of this channel.
    Stream(usize),
}

#[derive(Debug, Default)]
/// The counters the io threads share with the runner.
pub(super) struct StreamShared {
    pub(super) dials: AtomicU64,
    pub(super) opened: AtomicU64,
    pub(super) connect_failed: AtomicU64,
    pub(super) held: AtomicU64,
    pub(super) held_peak: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) cut: AtomicU64,
    pub(super) handshakes: AtomicU64,
    pub(super) channels: AtomicU64,
    pub(super) channels_cut: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) reconnects_refused: AtomicU64,
    pub(super) reconnect_handshakes: AtomicU64,
    pub(super) messages_sent: AtomicU64,
    pub(super) bytes_sent: AtomicU64,
    pub(super) pools_exhausted: AtomicU64,
    pub(super) exhausted_at_ms: AtomicU64,
    pub(super) all_exhausted_at_ms: AtomicU64,
    /// Streaming peers in all (for `all_exhausted_at_ms`).
    pub(super) streams: AtomicU64,
    /// Thread ids of the io threads (for their CPU time).
    pub(super) tids: Mutex<Vec<u32>>,
}

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Connecting,
    /// Silent: connected, saying nothing.
    Open,
    /// Voter: query sent, waiting for the node's query + response.
    AwaitReply,
    /// Voter: response sent, waiting for the node's first channel message.
    AwaitChannel,
    /// Voter: channel up, streaming.
    Streaming,
}

struct Peer {
    ip: Ipv4Addr,
    role: Role,
    identity: Option<NodeIdentity>,
    /// The message patched and sent (a confirm_ack, or a publish); empty for silent peers.
    template: Vec<u8>,
    deframer: Option<Deframer>,
    conn: Option<ConnId>,
    phase: Phase,
    connected_at: Instant,
    /// Had a channel before (the next dial is a reconnect).
    had_channel: bool,
    /// The current dial is a reconnect.
    reconnect: bool,
    /// Bad voter: its voting key, and a well-formed signature of it over another message.
    bad_key: PublicKey,
    bad_sig: Signature,
    /// Streaming peer: next pool index, tokens of its pacing bucket, last refill.
    next: usize,
    tokens: f64,
    refilled: Instant,
}

/// What the runner tells an io thread.
pub(super) enum Command {
    /// Dial every peer; stream at once when `open`, else after [`Command::Open`].
    Start {
        start: Instant,
        end: Instant,
        open: bool,
    },
    /// Start (true) or stop (false) streaming on every channel, and on channels made later.
    Open(bool),
}

/// One io thread's peers.
pub(super) struct StreamHandler {
    shared: Arc<StreamShared>,
    target: SocketAddr,
    network: Network,
    started: Instant,
    peers: Vec<Peer>,
    /// Peer of each io connection slot (by `ConnId::index`).
    by_conn: Vec<Option<(ConnId, usize)>>,
    /// Peers waiting to (re)dial, in time order.
    reopen: VecDeque<(Instant, usize)>,
    streaming: Vec<usize>,
    end: Option<Instant>,
    reopen_delay: Duration,
    connect_timeout: Duration,
    tick: Option<Instant>,
    tick_every: Duration,
    rng: ChaCha8Rng,
    pool: Option<Arc<MessagePool>>,
    /// Pacing, messages/s per streaming peer (0: as fast as the node reads).
    rate: f64,
    /// Channels stream (else they wait, up, for [`Command::Open`]).
    open: bool,
}

impl StreamHandler {
    fn running(&self, now: Instant) -> bool {
        self.end.is_some_and(|e| now < e)
    }

    fn peer_of(&self, conn: ConnId) -> Option<usize> {
        match self.by_conn.get(conn.index()) {
            Some(Some((c, i))) if *c == conn => Some(*i),
            _ => None,
        }
    }

    fn dial(&mut self, io: &mut Io, idx: usize) -> Result<(), IoError> {
        let local = SocketAddr::new(IpAddr::V4(self.peers[idx].ip), 0);
        let conn = io.dial_from(local, self.target, idx as u64, self.connect_timeout)?;
        inc(&self.shared.dials);
        if conn.index() >= self.by_conn.len() {
            self.by_conn.resize(conn.index() + 1, None);
        }
        self.by_conn[conn.index()] = Some((conn, idx));
        let network = self.network;
        let p = &mut self.peers[idx];
        p.conn = Some(conn);
        p.phase = Phase::Connecting;
        p.reconnect = p.had_channel;
        if p.reconnect {
            inc(&self.shared.reconnects);
        }
        if let Some(d) = p.deframer.as_mut() {
            *d = Deframer::new(network);
        }
        Ok(())
    }

    fn top_up(&mut self, io: &mut Io) {
        let now = io.now();
        if !self.running(now) {
            // the run is over: nothing is reopened (and nothing wakes the ring for it)
            self.reopen.clear();
            return;
        }
        while let Some(&(at, idx)) = self.reopen.front() {
            if at > now {
                break;
            }
            match self.dial(io, idx) {
                Ok(()) => {
                    self.reopen.pop_front();
                }
                Err(IoError::ConnectionCap | IoError::Stopping) => break,
                Err(_) => {
                    // socket or bind failed: count it and try this peer again later
                    inc(&self.shared.connect_failed);
                    self.reopen.pop_front();
                    self.reopen.push_back((now + self.reopen_delay, idx));
                    break;
                }
            }
        }
    }

    /// The peer's connection ended (`by_node`: the node closed it or refused the connect).
    fn ended(&mut self, io: &mut Io, idx: usize, by_node: bool) {
        let now = io.now();
        let running = self.running(now);
        let p = &mut self.peers[idx];
        let was = p.phase;
        if let Some(c) = p.conn.take()
            && let Some(slot) = self.by_conn.get_mut(c.index())
        {
            *slot = None;
        }
        p.phase = Phase::Idle;
        let reconnect = std::mem::take(&mut p.reconnect);
        let fresh = now.saturating_duration_since(p.connected_at) < REFUSED_WITHIN;
        let s = &self.shared;
        if !matches!(was, Phase::Idle | Phase::Connecting) {
            s.held.fetch_sub(1, Ordering::Relaxed);
        }
        if was == Phase::Streaming {
            s.channels.fetch_sub(1, Ordering::Relaxed);
            self.streaming.retain(|&i| i != idx);
        }
        if running && by_node {
            match was {
                Phase::Streaming => inc(&s.channels_cut),
                Phase::Connecting => {}
                _ if fresh => inc(&s.refused),
                _ => inc(&s.cut),
            }
            if reconnect && was != Phase::Streaming {
                inc(&s.reconnects_refused);
            }
        }
        if running {
            self.reopen.push_back((now + self.reopen_delay, idx));
        }
    }

    /// Answers the node's query with our response (and a keepalive, as a real peer does).
    fn answer(&mut self, io: &mut Io, idx: usize, data: &[u8]) {
        let network = self.network;
        let p = &mut self.peers[idx];
        let Some(deframer) = p.deframer.as_mut() else {
            return;
        };
        let mut query = None;
        let mut channel_msg = false;
        let fed = deframer.feed(data, |header, payload| {
            if header.message_type == MessageType::NodeIdHandshake {
                if let Ok(Message::NodeIdHandshake(h)) = Message::decode(&header, payload)
                    && query.is_none()
                {
                    query = h.query;
                }
            } else {
                channel_msg = true;
            }
        });
        let Some(conn) = p.conn else {
            return;
        };
        if fed.is_err() {
            io.close(conn);
            return;
        }
        if p.phase == Phase::AwaitReply
            && let Some(q) = query
        {
            let Some(identity) = p.identity.as_ref() else {
                return;
            };
            let mut salt = Cookie([0; 32]);
            self.rng.fill_bytes(&mut salt.0);
            let ours = identity.handshake_response(&q.cookie, Some((salt, genesis_hash(network))));
            let mut buf = io.buffer();
            Message::NodeIdHandshake(NodeIdHandshake::response(ours))
                .encode_into(network, &mut buf);
            Message::Keepalive(Keepalive::default()).encode_into(network, &mut buf);
            p.phase = Phase::AwaitChannel;
            if io.send_owned(conn, buf).is_err() {
                io.close(conn);
                return;
            }
        }
        let p = &mut self.peers[idx];
        if p.phase == Phase::AwaitChannel && channel_msg {
            p.phase = Phase::Streaming;
            p.had_channel = true;
            p.refilled = io.now();
            p.tokens = 0.0;
            let reconnect = std::mem::take(&mut p.reconnect);
            let s = &self.shared;
            inc(&s.handshakes);
            inc(&s.channels);
            if reconnect {
                inc(&s.reconnect_handshakes);
            }
            self.streaming.push(idx);
            if self.open {
                self.stream(io, idx);
            }
        }
    }

    /// Queues messages on a streaming peer: an attacker fills its send queue to
    /// [`ATTACK_SENDQ`] with invalid votes; a stream peer sends its channel's next messages
    /// as its pacing allows, up to [`STREAM_SENDQ`] unsent.
    fn stream(&mut self, io: &mut Io, idx: usize) {
        let now = io.now();
        let p = &mut self.peers[idx];
        let Some(conn) = p.conn else {
            return;
        };
        let Some((_, queued)) = io.send_queue(conn) else {
            return;
        };
        let len = p.template.len().max(1);
        match p.role {
            Role::Silent => {}
            Role::BadVoter => {
                let n = ATTACK_SENDQ.saturating_sub(queued) / len;
                if n == 0 {
                    return;
                }
                // fresh hashes and timestamps, a signature that does not match them
                let (key, sig) = (p.bad_key, p.bad_sig);
                let ts_base = now_unix_ms();
                let mut buf = io.buffer();
                for k in 0..n {
                    self.rng.fill_bytes(vote_hashes_mut(&mut p.template));
                    let ts = if k % 4 == 3 {
                        FINAL_TIMESTAMP
                    } else {
                        (ts_base << 4) | 9
                    };
                    set_vote(&mut p.template, &key, &sig, ts);
                    buf.extend_from_slice(&p.template);
                }
                self.send_messages(io, conn, buf, n);
            }
            Role::Stream(channel) => {
                let Some(pool) = self.pool.as_ref() else {
                    return;
                };
                let mut n = STREAM_SENDQ.saturating_sub(queued) / len;
                if self.rate > 0.0 {
                    let dt = now.saturating_duration_since(p.refilled).as_secs_f64();
                    p.refilled = now;
                    let burst = (self.rate * 0.02).max(8.0);
                    p.tokens = (p.tokens + dt * self.rate).min(burst);
                    n = n.min(p.tokens as usize);
                }
                let total = pool.len_of(channel);
                n = n.min(total.saturating_sub(p.next));
                if n == 0 {
                    return;
                }
                let mut buf = io.buffer();
                for _ in 0..n {
                    pool.fill(channel, p.next, &mut p.template);
                    p.next += 1;
                    buf.extend_from_slice(&p.template);
                }
                p.tokens -= n as f64;
                if p.next >= total {
                    self.exhausted(now);
                }
                self.send_messages(io, conn, buf, n);
            }
        }
    }

    /// A streaming peer has queued its last message.
    fn exhausted(&self, now: Instant) {
        let s = &self.shared;
        let ms = (now.saturating_duration_since(self.started).as_millis() as u64).max(1);
        let set = |a: &AtomicU64| {
            let _ = a.compare_exchange(0, ms, Ordering::Relaxed, Ordering::Relaxed);
        };
        set(&s.exhausted_at_ms);
        if s.pools_exhausted.fetch_add(1, Ordering::Relaxed) + 1
            >= s.streams.load(Ordering::Relaxed)
        {
            set(&s.all_exhausted_at_ms);
        }
    }

    fn send_messages(&mut self, io: &mut Io, conn: ConnId, buf: Vec<u8>, n: usize) {
        let len = buf.len() as u64;
        if io.send_owned(conn, buf).is_ok() {
            self.shared
                .messages_sent
                .fetch_add(n as u64, Ordering::Relaxed);
            self.shared.bytes_sent.fetch_add(len, Ordering::Relaxed);
        }
    }

    fn stream_all(&mut self, io: &mut Io) {
        if !self.open || !self.running(io.now()) {
            return;
        }
        for k in 0..self.streaming.len() {
            if let Some(&idx) = self.streaming.get(k) {
                self.stream(io, idx);
            }
        }
    }
}

impl Handler for StreamHandler {
    type Command = Command;

    fn on_command(&mut self, io: &mut Io, cmd: Command) {
        let (start, end) = match cmd {
            Command::Start { start, end, open } => {
                self.open = open;
                (start, end)
            }
            Command::Open(false) => {
                self.open = false;
                return;
            }
            Command::Open(true) => {
                self.open = true;
                let now = io.now();
                for &i in &self.streaming {
                    self.peers[i].refilled = now;
                }
                self.stream_all(io);
                return;
            }
        };
        self.end = Some(end);
        self.started = start;
        self.tick = Some(io.now() + self.tick_every);
        let now = io.now();
        for i in 0..self.peers.len() {
            self.reopen.push_back((now, i));
        }
        self.top_up(io);
    }

    fn on_connected(&mut self, io: &mut Io, conn: ConnId, _peer: SocketAddr, _token: u64) {
        let Some(idx) = self.peer_of(conn) else {
            io.close(conn);
            return;
        };
        let network = self.network;
        let s = &self.shared;
        inc(&s.opened);
        let held = s.held.fetch_add(1, Ordering::Relaxed) + 1;
        s.held_peak.fetch_max(held, Ordering::Relaxed);
        let p = &mut self.peers[idx];
        p.connected_at = io.now();
        if p.role == Role::Silent {
            p.phase = Phase::Open;
            return;
        }
        p.phase = Phase::AwaitReply;
        let mut cookie = Cookie([0; 32]);
        self.rng.fill_bytes(&mut cookie.0);
        let mut buf = io.buffer();
        Message::NodeIdHandshake(NodeIdHandshake::query(cookie)).encode_into(network, &mut buf);
        if io.send_owned(conn, buf).is_err() {
            io.close(conn);
        }
    }

    fn on_connect_failed(&mut self, io: &mut Io, conn: ConnId, _token: u64, err: std::io::Error) {
        let Some(idx) = self.peer_of(conn) else {
            return;
        };
        let cancelled = err.raw_os_error() == Some(libc::ECANCELED);
        if self.running(io.now()) && !cancelled {
            inc(&self.shared.connect_failed);
        }
        self.ended(io, idx, !cancelled);
    }

    fn on_data(&mut self, io: &mut Io, conn: ConnId, data: &[u8]) {
        let Some(idx) = self.peer_of(conn) else {
            return;
        };
        if matches!(
            self.peers[idx].phase,
            Phase::AwaitReply | Phase::AwaitChannel
        ) {
            self.answer(io, idx, data);
        }
    }

    fn on_closed(&mut self, io: &mut Io, conn: ConnId, reason: CloseReason) {
        let Some(idx) = self.peer_of(conn) else {
            return;
        };
        let by_node = !matches!(reason, CloseReason::Shutdown | CloseReason::Local);
        self.ended(io, idx, by_node);
    }

    fn on_timer(&mut self, io: &mut Io, now: Instant) {
        if self.tick.is_some_and(|t| now >= t) {
            self.tick = self.running(now).then(|| now + self.tick_every);
            self.top_up(io);
            self.stream_all(io);
        }
    }

    fn before_sleep(&mut self, io: &mut Io) {
        self.top_up(io);
        self.stream_all(io);
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let t = self.tick?;
        Some(match self.reopen.front() {
            Some(&(at, _)) => t.min(at),
            None => t,
        })
    }
}

/// A peer of `role` from `ip`, its node key and vote template drawn from `rng`.
fn make_peer(
    ip: Ipv4Addr,
    role: Role,
    network: Network,
    hashes: usize,
    pool: Option<&MessagePool>,
    rng: &mut ChaCha8Rng,
) -> Peer {
    let speaks = role != Role::Silent;
    let identity = speaks.then(|| NodeIdentity::from_private(rng.random()));
    let (mut bad_key, mut bad_sig) = (PublicKey([0; 32]), Signature([0; 64]));
    let template = match role {
        Role::Silent => Vec::new(),
        Role::BadVoter => {
            // the voting key signs something else: a well-formed signature
            let key = KeyPair::from_private(rng.random());
            (bad_key, bad_sig) = (key.public(), key.sign(b"not this vote"));
            vote_template(network, bad_key, hashes)
        }
        Role::Stream(_) => pool.map_or_else(Vec::new, |p| p.template(network)),
    };
    Peer {
        ip,
        role,
        identity,
        template,
        deframer: speaks.then(|| Deframer::new(network)),
        conn: None,
        phase: Phase::Idle,
        connected_at: Instant::now(),
        had_channel: false,
        reconnect: false,
        bad_key,
        bad_sig,
        next: 0,
        tokens: 0.0,
        refilled: Instant::now(),
    }
}

/// What every io thread of one runner is set up with.
pub(super) struct ThreadSetup {
    pub(super) target: SocketAddr,
    pub(super) network: Network,
    pub(super) reopen_delay: Duration,
    pub(super) tick_every: Duration,
    /// Hashes per vote of the bad voters.
    pub(super) hashes: usize,
    pub(super) pool: Option<Arc<MessagePool>>,
    /// Messages/s per streaming peer (0: as fast as the node reads).
    pub(super) rate: f64,
}

impl StreamHandler {
    /// The handler of one io thread running `specs` (address and role of each peer), with
    /// room for `max_connections` connections; each peer gets a fresh node key.
    pub(super) fn new(
        shared: Arc<StreamShared>,
        setup: &ThreadSetup,
        specs: &[(Ipv4Addr, Role)],
        max_connections: usize,
    ) -> StreamHandler {
        let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
        let pool = setup.pool.clone();
        let peers: Vec<Peer> = specs
            .iter()
            .map(|&(ip, role)| {
                make_peer(
                    ip,
                    role,
                    setup.network,
                    setup.hashes,
                    pool.as_deref(),
                    &mut rng,
                )
            })
            .collect();
        StreamHandler {
            shared,
            target: setup.target,
            network: setup.network,
            started: Instant::now(),
            peers,
            by_conn: vec![None; max_connections],
            reopen: VecDeque::new(),
            streaming: Vec::new(),
            end: None,
            reopen_delay: setup.reopen_delay,
            connect_timeout: Duration::from_secs(5),
            tick: None,
            tick_every: setup.tick_every,
            rng,
            pool,
            rate: setup.rate,
            open: false,
        }
    }
}
