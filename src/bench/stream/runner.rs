//! The io threads of a stream ([`StreamRunner`]): silent connections, attackers streaming
//! invalid votes, and peers streaming the messages of a [`MessagePool`] (votes or blocks).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::pool::MessagePool;
use super::source::{FloodSource, stream_source_ip};
use super::votes::{now_unix_ms, set_vote, vote_hashes_mut, vote_template};
use crate::bench::attack::AttackError;
use crate::crypto::{KeyPair, genesis_hash};
use crate::io::cpu::current_thread_id;
use crate::io::{self, CloseReason, ConnId, Handler, Io, IoError, ShardConfig, ShardHandle};
use crate::proto::identity::NodeIdentity;
use crate::types::{Cookie, Network, PublicKey, Signature};
use crate::wire::vote::FINAL_TIMESTAMP;
use crate::wire::{Deframer, Keepalive, Message, MessageType, NodeIdHandshake};

/// Attack peers per io thread (a thread of the attacker holds at most this many).
const PEERS_PER_THREAD: usize = 1024;

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
enum Role {
    /// Connect and never speak.
    Silent,
    /// Handshake, then stream invalid votes.
    BadVoter,
    /// Handshake, then stream the pool's messages of this channel.
    Stream(usize),
}

/// Counters of a stream's peers (all threads), as [`StreamRunner::counts`] returns them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCounts {
    /// Peers (connections kept open or in flight at once).
    pub peers: u64,
    /// Dials started.
    pub dials: u64,
    /// Connections established.
    pub opened: u64,
    /// Dials that failed (refused, timed out, bind failed).
    pub connect_failed: u64,
    /// Connections open now.
    pub held: u64,
    /// Most connections open at once.
    pub held_peak: u64,
    /// Closed by the node within [`REFUSED_WITHIN`] of connecting, before any channel.
    pub refused: u64,
    /// Closed by the node later, before any channel (handshake timeout, eviction).
    pub cut: u64,
    /// Channels the peers got (handshakes completed; the node's first message seen).
    pub handshakes: u64,
    /// Channels open now.
    pub channels: u64,
    /// Channels the node closed.
    pub channels_cut: u64,
    /// Dials of a peer that had a channel before (reconnects after a cut).
    pub reconnects: u64,
    /// Reconnects that ended without a channel (connect failed or closed by the node).
    pub reconnects_refused: u64,
    /// Reconnects that got a channel again.
    pub reconnect_handshakes: u64,
    /// Messages (votes or blocks) queued for sending.
    pub messages_sent: u64,
    /// Bytes queued for sending.
    pub bytes_sent: u64,
    /// Streaming peers that sent every message of their channel.
    pub pools_exhausted: u64,
    /// When the first of them did, ms after the runner started (0: none did).
    pub exhausted_at_ms: u64,
    /// When the last of them did, ms after the runner started (0: not every one did).
    pub all_exhausted_at_ms: u64,
}

impl StreamCounts {
    /// Every connection the node closed (refused, cut, channels cut).
    pub fn closed_by_node(&self) -> u64 {
        self.refused + self.cut + self.channels_cut
    }
}

#[derive(Debug, Default)]
struct StreamShared {
    dials: AtomicU64,
    opened: AtomicU64,
    connect_failed: AtomicU64,
    held: AtomicU64,
    held_peak: AtomicU64,
    refused: AtomicU64,
    cut: AtomicU64,
    handshakes: AtomicU64,
    channels: AtomicU64,
    channels_cut: AtomicU64,
    reconnects: AtomicU64,
    reconnects_refused: AtomicU64,
    reconnect_handshakes: AtomicU64,
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    pools_exhausted: AtomicU64,
    exhausted_at_ms: AtomicU64,
    all_exhausted_at_ms: AtomicU64,
    /// Streaming peers in all (for `all_exhausted_at_ms`).
    streams: AtomicU64,
    /// Thread ids of the io threads (for their CPU time).
    tids: Mutex<Vec<u32>>,
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

enum Command {
    /// Dial every peer; stream at once when `open`, else after [`Command::Open`].
    Start {
        start: Instant,
        end: Instant,
        open: bool,
    },
    /// Start (true) or stop (false) streaming on every channel, and on channels made later.
    Open(bool),
}

struct StreamHandler {
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

/// Who a [`StreamRunner`] runs.
#[derive(Debug, Clone)]
pub enum StreamPeers {
    /// `connections` silent connections from `source`.
    Slots {
        /// Where they come from.
        source: FloodSource,
        /// How many are kept open or in flight.
        connections: usize,
    },
    /// `peers` attackers streaming invalid votes of `hashes` hashes each, from
    /// [`FloodSource::Many`] addresses.
    BadVoters {
        /// Attackers, one connection each; attacker `i` dials from
        /// `FloodSource::Many.address(i)`.
        peers: usize,
        /// Hashes per vote, at most 255.
        hashes: usize,
    },
    /// One peer per channel of `pool` (peer `c` from [`stream_source_ip`]`(c)`, with a node
    /// key of its own), each sending its channel's messages in order, paced at `rate`
    /// messages/s (0: as fast as the node reads), once per run.
    Streams {
        /// The pre-built messages.
        pool: Arc<MessagePool>,
        /// Messages/s per channel.
        rate: f64,
    },
}

/// Running stream peers on their own io threads; stop them with [`StreamRunner::stop`].
pub struct StreamRunner {
    handles: Vec<ShardHandle<Command>>,
    shared: Arc<StreamShared>,
    peers: usize,
    started: Instant,
}

impl std::fmt::Debug for StreamRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRunner")
            .field("threads", &self.handles.len())
            .field("peers", &self.peers)
            .finish()
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

/// How a [`StreamRunner`] runs its peers.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// A connection the node closes is reopened this long after.
    pub reopen_delay: Duration,
    /// The peers stop (nothing reopened, nothing sent) this long after the start.
    pub duration: Duration,
    /// Stream as soon as a channel is up; else hold the channels until
    /// [`StreamRunner::open`].
    pub open: bool,
    /// Cores to pin the io threads to (thread `i` on `cores[i mod len]`); empty: not pinned.
    pub cores: Vec<usize>,
}

impl StreamRunner {
    /// Starts `who` against `target` for `duration` (peers reopen what the node closes,
    /// `reopen_delay` after); streams start at once. Returns once the threads run and have
    /// their start command.
    pub fn start(
        target: SocketAddr,
        network: Network,
        who: StreamPeers,
        reopen_delay: Duration,
        duration: Duration,
    ) -> Result<StreamRunner, AttackError> {
        let o = StreamOptions {
            reopen_delay,
            duration,
            open: true,
            cores: Vec::new(),
        };
        StreamRunner::start_with(target, network, who, &o)
    }

    /// As [`Self::start`], with the options of `o` (with `open` false the peers complete
    /// their handshakes and hold their channels, and stream only after [`Self::open`]).
    pub fn start_with(
        target: SocketAddr,
        network: Network,
        who: StreamPeers,
        o: &StreamOptions,
    ) -> Result<StreamRunner, AttackError> {
        let (reopen_delay, duration, open) = (o.reopen_delay, o.duration, o.open);
        if !matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback()) {
            return Err(AttackError::Config(
                "streams need an IPv4 loopback target (sources are bound in 127.0.0.0/8)",
            ));
        }
        let specs: Vec<(Ipv4Addr, Role)> = match &who {
            StreamPeers::Slots {
                source,
                connections,
            } => (0..*connections)
                .map(|i| (source.address(i as u32), Role::Silent))
                .collect(),
            StreamPeers::BadVoters { peers, .. } => (0..*peers)
                .map(|i| (FloodSource::Many.address(i as u32), Role::BadVoter))
                .collect(),
            StreamPeers::Streams { pool, .. } => (0..pool.channels())
                .map(|c| (stream_source_ip(c as u32), Role::Stream(c)))
                .collect(),
        };
        if specs.is_empty() {
            return Err(AttackError::Config("a stream needs at least one peer"));
        }
        let (hashes, pool, rate) = match &who {
            StreamPeers::Slots { .. } => (0, None, 0.0),
            StreamPeers::BadVoters { hashes, .. } => (*hashes, None, 0.0),
            StreamPeers::Streams { pool, rate } => (0, Some(Arc::clone(pool)), rate.max(0.0)),
        };
        if hashes > crate::wire::vote::MAX_HASHES {
            return Err(AttackError::Config("at most 255 hashes per vote"));
        }
        let tick_every = if matches!(who, StreamPeers::Slots { .. }) {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(1)
        };
        let peers = specs.len();
        let shared = StreamShared::default();
        let streams = specs
            .iter()
            .filter(|(_, r)| matches!(r, Role::Stream(_)))
            .count();
        shared.streams.store(streams as u64, Ordering::Relaxed);
        let mut runner = StreamRunner {
            handles: Vec::new(),
            shared: Arc::new(shared),
            peers,
            started: Instant::now(),
        };
        for (t, chunk) in specs.chunks(PEERS_PER_THREAD).enumerate() {
            let chunk = chunk.to_vec();
            let max_connections = 2 * chunk.len() + 16;
            let cfg = ShardConfig {
                listen: None,
                max_connections,
                ring_entries: 1024,
                recv_buffers: 256,
                send_pool_buffers: 64,
                connect_timeout: Duration::from_secs(5),
                cores: o.cores.clone(),
                ..ShardConfig::default()
            };
            let sh = Arc::clone(&runner.shared);
            let pool = pool.clone();
            let spawned = io::spawn(&cfg, t, move |_info: &io::ShardInfo| {
                if let Ok(tid) = current_thread_id() {
                    sh.tids.lock().push(tid);
                }
                let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
                let peers: Vec<Peer> = chunk
                    .iter()
                    .map(|&(ip, role)| {
                        make_peer(ip, role, network, hashes, pool.as_deref(), &mut rng)
                    })
                    .collect();
                StreamHandler {
                    shared: sh,
                    target,
                    network,
                    started: Instant::now(),
                    peers,
                    by_conn: vec![None; max_connections],
                    reopen: VecDeque::new(),
                    streaming: Vec::new(),
                    end: None,
                    reopen_delay,
                    connect_timeout: Duration::from_secs(5),
                    tick: None,
                    tick_every,
                    rng,
                    pool,
                    rate,
                    open: false,
                }
            });
            match spawned {
                Ok(h) => runner.handles.push(h),
                Err(e) => {
                    runner.stop();
                    return Err(AttackError::Start(e));
                }
            }
        }
        let start = Instant::now();
        runner.started = start;
        let end = start + duration;
        for h in &runner.handles {
            let _ = h.send_command(Command::Start { start, end, open });
        }
        Ok(runner)
    }

    /// Streams start on every channel, and on every channel made from now on.
    pub fn open(&self) {
        for h in &self.handles {
            let _ = h.send_command(Command::Open(true));
        }
    }

    /// Streams stop queuing messages (what is queued is still sent); channels stay up.
    pub fn pause(&self) {
        for h in &self.handles {
            let _ = h.send_command(Command::Open(false));
        }
    }

    /// The io threads' ids (for their CPU time), once they run.
    pub fn thread_ids(&self) -> Vec<u32> {
        self.shared.tids.lock().clone()
    }

    /// When the runner started its threads.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The counters so far, summed over the threads.
    pub fn counts(&self) -> StreamCounts {
        let s = &self.shared;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StreamCounts {
            peers: self.peers as u64,
            dials: g(&s.dials),
            opened: g(&s.opened),
            connect_failed: g(&s.connect_failed),
            held: g(&s.held),
            held_peak: g(&s.held_peak),
            refused: g(&s.refused),
            cut: g(&s.cut),
            handshakes: g(&s.handshakes),
            channels: g(&s.channels),
            channels_cut: g(&s.channels_cut),
            reconnects: g(&s.reconnects),
            reconnects_refused: g(&s.reconnects_refused),
            reconnect_handshakes: g(&s.reconnect_handshakes),
            messages_sent: g(&s.messages_sent),
            bytes_sent: g(&s.bytes_sent),
            pools_exhausted: g(&s.pools_exhausted),
            exhausted_at_ms: g(&s.exhausted_at_ms),
            all_exhausted_at_ms: g(&s.all_exhausted_at_ms),
        }
    }

    /// When the first streaming peer ran out of messages, if one did.
    pub fn exhausted_at(&self) -> Option<Instant> {
        let ms = self.shared.exhausted_at_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| self.started + Duration::from_millis(ms))
    }

    /// When the last streaming peer ran out of messages, if every one did.
    pub fn all_exhausted_at(&self) -> Option<Instant> {
        let ms = self.shared.all_exhausted_at_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| self.started + Duration::from_millis(ms))
    }

    /// Stops the threads (closing every connection) and returns the final counters.
    pub fn stop(&self) -> StreamCounts {
        for h in &self.handles {
            h.stop();
        }
        for h in &self.handles {
            let _ = h.join();
        }
        self.counts()
    }
}

impl Drop for StreamRunner {
    fn drop(&mut self) {
        for h in &self.handles {
            h.stop();
        }
        for h in &self.handles {
            let _ = h.join();
        }
    }
}
