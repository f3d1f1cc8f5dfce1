//! Floods against the node's limits (`nanopeer bench --attack slot-flood:SOURCE` and
//! `--attack vote-flood`), each measured against a clean phase in the same run.
//!
//! - **slot-flood**: more unverified connections than the node's per-shard cap, opened and held
//!   silent (never a byte, so never a handshake), from one address ([`FloodSource::Ip`]), one
//!   /24 ([`FloodSource::Subnet`]) or many /24s ([`FloodSource::Many`]). A connection the node
//!   closes is reopened after `reopen_delay`, so the pressure stays.
//! - **vote-flood**: attacker peers complete real v2 handshakes (each from its own address in
//!   its own /24, each with its own node key), then stream confirm_acks whose signatures are all
//!   wrong: well-formed (a real signature of the voting key over another message, so only the
//!   full equation rejects it), with distinct fresh hashes so the duplicate filter lets every
//!   one through. Alongside, honest peers stream **valid** votes from a pool signed before the
//!   run, paced at `honest_vote_rate`. A cut attacker reconnects from the same address with
//!   the same key; the reconnects that never get a channel are counted as refused.
//!
//! [`run_flood`] runs the honest load (handshakes, and for vote-flood the honest votes) for
//! `clean_duration` with no attack, then starts the attack, waits for it to ramp up (every
//! attack connection opened, or `ramp_timeout`) and measures the same honest load for
//! `duration` under attack. Honest votes/s is the node's `votes_valid` delta over a phase:
//! attackers' votes are all invalid, so every valid vote is an honest one.
//!
//! Addresses: attackers use 127.255.0.0/16 and 127.0.1.0–127.0.255.255 ([`FloodSource`]);
//! honest handshake peers ([`source_ip`]) and honest voters ([`HONEST_VOTER_OFFSET`]) use
//! 127.1–254.x.x. Attackers and honest peers never share a /24.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::attack::{AttackConfig, AttackError, AttackKind, AttackReport, SoakSample, sample};
use super::loadgen::{self, LoadConfig, LoadReport, source_ip};
use crate::crypto::{KeyPair, genesis_hash, vote_hash};
use crate::io::{self, CloseReason, ConnId, Handler, Io, IoError, ShardConfig, ShardHandle};
use crate::node::{Node, NodeStats};
use crate::proto::identity::NodeIdentity;
use crate::types::{BlockHash, Cookie, Network, PublicKey, Signature};
use crate::wire::vote::FINAL_TIMESTAMP;
use crate::wire::{
    ConfirmAck, Deframer, HEADER_LEN, Keepalive, Message, MessageType, NodeIdHandshake,
    VOTE_FIXED_LEN, Vote,
};

/// Where the connections of a `slot-flood` come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodSource {
    /// One address: 127.255.0.1.
    Ip,
    /// One /24: 127.255.0.1–254.
    Subnet,
    /// Many /24s: consecutive connections in different /24s of 127.255.0.0/16 and
    /// 127.0.1.0–127.0.255.255 ([`ATTACK_SUBNETS`] of them), one address per connection.
    Many,
}

/// The /24 subnets the attackers use (127.255.0–255 and 127.0.1–255).
pub const ATTACK_SUBNETS: u32 = 511;

/// First [`source_ip`] index of the honest voters (127.x.y.47: /24s of the honest range).
pub const HONEST_VOTER_OFFSET: u32 = 3_000_000;

/// A connection the node closes within this time of its connect, before any channel, counts
/// as refused (closed at once) rather than cut (timed out or evicted later). Seen from the
/// client, so a connection that waited in a busy node's accept queue may count as cut: the
/// node's own counters (`rejected_cap`, `refused`, …) give the causes.
pub const REFUSED_WITHIN: Duration = Duration::from_millis(250);

/// Attack peers per io thread (a thread of the attacker holds at most this many).
const PEERS_PER_THREAD: usize = 1024;

/// Unsent bytes an attacker keeps queued per channel (it sends as fast as the node reads).
const ATTACK_SENDQ: usize = 64 * 1024;

/// Unsent bytes an honest voter keeps queued at most (beyond, the node is not taking them).
const HONEST_SENDQ: usize = 32 * 1024;

impl FloodSource {
    /// Source address of attack connection `i`.
    pub fn address(self, i: u32) -> Ipv4Addr {
        match self {
            FloodSource::Ip => Ipv4Addr::new(127, 255, 0, 1),
            FloodSource::Subnet => Ipv4Addr::new(127, 255, 0, 1 + (i % 254) as u8),
            FloodSource::Many => {
                let s = i % ATTACK_SUBNETS;
                let host = 1 + (i / ATTACK_SUBNETS) % 254;
                let (b1, b2) = if s < 256 { (255, s) } else { (0, s - 255) };
                Ipv4Addr::new(127, b1, b2 as u8, host as u8)
            }
        }
    }

    /// Distinct addresses and distinct /24s used by `n` connections.
    pub fn spread(self, n: usize) -> (usize, usize) {
        match self {
            FloodSource::Ip => (n.min(1), n.min(1)),
            FloodSource::Subnet => (n.min(254), n.min(1)),
            FloodSource::Many => (n.min(254 * ATTACK_SUBNETS as usize), n.min(511)),
        }
    }

    /// `ip`, `subnet` or `many`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FloodSource::Ip => "ip",
            FloodSource::Subnet => "subnet",
            FloodSource::Many => "many",
        }
    }

    /// Parses `ip`, `subnet` or `many`.
    pub fn parse(s: &str) -> Option<FloodSource> {
        match s {
            "ip" => Some(FloodSource::Ip),
            "subnet" => Some(FloodSource::Subnet),
            "many" => Some(FloodSource::Many),
            _ => None,
        }
    }
}

/// Address of honest voter `j` (in the honest /24s, away from the handshake load's hosts).
pub fn honest_voter_ip(j: u32) -> Ipv4Addr {
    source_ip(HONEST_VOTER_OFFSET + j)
}

// ---------------------------------------------------------------------------------------------
// Votes

/// Offsets in an encoded confirm_ack (§4.4): header, account, signature, timestamp, hashes.
const ACCOUNT_AT: usize = HEADER_LEN;
const SIGNATURE_AT: usize = HEADER_LEN + 32;
const TIMESTAMP_AT: usize = HEADER_LEN + 96;
const HASHES_AT: usize = HEADER_LEN + VOTE_FIXED_LEN;

/// One encoded confirm_ack whose signature, timestamp and hashes are patched in place.
#[derive(Debug, Clone)]
struct VoteTemplate {
    bytes: Vec<u8>,
}

impl VoteTemplate {
    fn new(network: Network, account: PublicKey, hashes: usize) -> VoteTemplate {
        let vote = Vote {
            account,
            signature: Signature([0; 64]),
            timestamp: 0,
            hashes: vec![BlockHash([0; 32]); hashes],
        };
        let bytes = Message::ConfirmAck(ConfirmAck {
            vote,
            rebroadcasted: false,
        })
        .encode(network);
        debug_assert_eq!(bytes.len(), HASHES_AT + 32 * hashes);
        debug_assert_eq!(&bytes[ACCOUNT_AT..ACCOUNT_AT + 32], &account.0);
        VoteTemplate { bytes }
    }

    fn hashes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[HASHES_AT..]
    }

    fn set(&mut self, signature: &Signature, timestamp: u64) {
        self.bytes[SIGNATURE_AT..SIGNATURE_AT + 64].copy_from_slice(&signature.0);
        self.bytes[TIMESTAMP_AT..TIMESTAMP_AT + 8].copy_from_slice(&timestamp.to_le_bytes());
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The block hashes of pool vote `index` (derived, so the pool stores only signatures).
fn pool_hashes(seed: u64, index: u64, out: &mut [u8]) {
    let mut st = seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    for chunk in out.chunks_mut(8) {
        let v = splitmix(&mut st).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// The timestamp of pool vote `index`: every fourth a final vote, the others packed
/// milliseconds with duration 9 (8192 ms), as HEAD's vote generator makes them (§4.4).
fn pool_timestamp(base_ms: u64, index: u64) -> u64 {
    if index % 4 == 3 {
        FINAL_TIMESTAMP
    } else {
        ((base_ms + index) << 4) | 9
    }
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The valid votes of one honest voter: its representative key and one signature per vote.
#[derive(Debug, Clone)]
pub struct VoterPool {
    /// The voting account.
    pub account: PublicKey,
    seed: u64,
    base_ms: u64,
    signatures: Vec<Signature>,
}

impl VoterPool {
    /// Votes in the pool.
    pub fn len(&self) -> usize {
        self.signatures.len()
    }

    /// True for an empty pool.
    pub fn is_empty(&self) -> bool {
        self.signatures.is_empty()
    }

    /// Encodes vote `index` into `t` (hashes, timestamp, signature).
    fn fill(&self, t: &mut VoteTemplate, index: usize) {
        pool_hashes(self.seed, index as u64, t.hashes_mut());
        t.set(
            &self.signatures[index],
            pool_timestamp(self.base_ms, index as u64),
        );
    }
}

/// Pre-signed valid votes of the honest voters: distinct payloads (distinct hashes and
/// timestamps), so the duplicate filter passes each once.
#[derive(Debug, Clone)]
pub struct VotePool {
    /// One pool per voter.
    pub voters: Vec<VoterPool>,
    /// Hashes per vote.
    pub hashes: usize,
}

impl VotePool {
    /// Signs `per_voter` votes for each of `voters` fresh representative keys, on `threads`
    /// threads (each signature ~16 µs).
    pub fn sign(voters: usize, per_voter: usize, hashes: usize, threads: usize) -> VotePool {
        let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
        let base_ms = now_unix_ms();
        let threads = threads.max(1);
        let pools = (0..voters)
            .map(|_| {
                let key = KeyPair::from_private(rng.random());
                let seed: u64 = rng.random();
                let mut signatures = vec![Signature([0; 64]); per_voter];
                let chunk = per_voter.div_ceil(threads).max(1);
                std::thread::scope(|s| {
                    for (c, part) in signatures.chunks_mut(chunk).enumerate() {
                        let key = &key;
                        s.spawn(move || {
                            let mut hs = vec![0u8; 32 * hashes];
                            let mut list = vec![BlockHash([0; 32]); hashes];
                            for (k, sig) in part.iter_mut().enumerate() {
                                let index = (c * chunk + k) as u64;
                                pool_hashes(seed, index, &mut hs);
                                for (h, b) in list.iter_mut().zip(hs.chunks(32)) {
                                    h.0.copy_from_slice(b);
                                }
                                let ts = pool_timestamp(base_ms, index);
                                *sig = key.sign(&vote_hash(&list, ts).0);
                            }
                        });
                    }
                });
                VoterPool {
                    account: key.public(),
                    seed,
                    base_ms,
                    signatures,
                }
            })
            .collect();
        VotePool {
            voters: pools,
            hashes,
        }
    }

    /// Votes in all.
    pub fn len(&self) -> usize {
        self.voters.iter().map(VoterPool::len).sum()
    }

    /// True when no voter has a vote.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory held by the signatures, bytes.
    pub fn bytes(&self) -> usize {
        self.len() * std::mem::size_of::<Signature>()
    }
}

// ---------------------------------------------------------------------------------------------
// The flood runner: io threads of attack (or honest voter) peers

/// What one flood peer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Connect and never speak.
    Silent,
    /// Handshake, then stream invalid votes.
    BadVoter,
    /// Handshake, then stream valid votes of this pool voter.
    GoodVoter(usize),
}

/// Counters of a flood's peers (all threads), as [`FloodRunner::counts`] returns them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloodCounts {
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
    /// Votes queued for sending.
    pub votes_sent: u64,
    /// Bytes queued for sending.
    pub bytes_sent: u64,
    /// Honest voters whose pool ran out.
    pub pools_exhausted: u64,
    /// When the first pool ran out, ms after the runner started (0: none did).
    pub exhausted_at_ms: u64,
}

impl FloodCounts {
    /// Every connection the node closed (refused, cut, channels cut).
    pub fn closed_by_node(&self) -> u64 {
        self.refused + self.cut + self.channels_cut
    }
}

#[derive(Debug, Default)]
struct FloodShared {
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
    votes_sent: AtomicU64,
    bytes_sent: AtomicU64,
    pools_exhausted: AtomicU64,
    exhausted_at_ms: AtomicU64,
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
    /// Voter: channel up, streaming votes.
    Streaming,
}

struct Peer {
    ip: Ipv4Addr,
    role: Role,
    identity: Option<NodeIdentity>,
    template: Option<VoteTemplate>,
    deframer: Option<Deframer>,
    conn: Option<ConnId>,
    phase: Phase,
    connected_at: Instant,
    /// Had a channel before (the next dial is a reconnect).
    had_channel: bool,
    /// The current dial is a reconnect.
    reconnect: bool,
    /// Bad voter: a well-formed signature of its voting key over another message.
    bad_sig: Signature,
    /// Good voter: next pool index, tokens of its pacing bucket, last refill.
    next: usize,
    tokens: f64,
    refilled: Instant,
}

enum Command {
    Start { start: Instant, end: Instant },
}

struct FloodHandler {
    shared: Arc<FloodShared>,
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
    pool: Option<Arc<VotePool>>,
    /// Honest pacing, votes/s per voter (0: as fast as the node reads).
    rate: f64,
}

impl FloodHandler {
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
            self.stream(io, idx);
        }
    }

    /// Queues votes on a streaming peer: an attacker fills its send queue to
    /// [`ATTACK_SENDQ`]; an honest voter sends what its pacing allows, up to [`HONEST_SENDQ`]
    /// unsent.
    fn stream(&mut self, io: &mut Io, idx: usize) {
        let now = io.now();
        let p = &mut self.peers[idx];
        let (Some(conn), Some(t)) = (p.conn, p.template.as_mut()) else {
            return;
        };
        let Some((_, queued)) = io.send_queue(conn) else {
            return;
        };
        let vote_len = t.bytes.len();
        let (limit, good) = match p.role {
            Role::BadVoter => (ATTACK_SENDQ, None),
            Role::GoodVoter(v) => (HONEST_SENDQ, Some(v)),
            Role::Silent => return,
        };
        let room = limit.saturating_sub(queued) / vote_len;
        let mut n = room;
        if let Some(v) = good {
            let Some(pool) = self.pool.as_ref() else {
                return;
            };
            let vp = &pool.voters[v];
            if self.rate > 0.0 {
                let dt = now.saturating_duration_since(p.refilled).as_secs_f64();
                p.refilled = now;
                let burst = (self.rate * 0.02).max(8.0);
                p.tokens = (p.tokens + dt * self.rate).min(burst);
                n = n.min(p.tokens as usize);
            }
            let left = vp.len().saturating_sub(p.next);
            if left == 0 {
                return;
            }
            n = n.min(left);
            if n == 0 {
                return;
            }
            let mut buf = io.buffer();
            for _ in 0..n {
                vp.fill(t, p.next);
                p.next += 1;
                buf.extend_from_slice(&t.bytes);
            }
            p.tokens -= n as f64;
            if p.next >= vp.len() {
                inc(&self.shared.pools_exhausted);
                let ms = now.saturating_duration_since(self.started).as_millis() as u64;
                let _ = self.shared.exhausted_at_ms.compare_exchange(
                    0,
                    ms.max(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            self.send_votes(io, conn, buf, n);
            return;
        }
        if n == 0 {
            return;
        }
        // attacker: fresh hashes and timestamps, a signature that does not match them
        let sig = p.bad_sig;
        let ts_base = now_unix_ms();
        let mut buf = io.buffer();
        for k in 0..n {
            self.rng.fill_bytes(t.hashes_mut());
            let ts = if k % 4 == 3 {
                FINAL_TIMESTAMP
            } else {
                (ts_base << 4) | 9
            };
            t.set(&sig, ts);
            buf.extend_from_slice(&t.bytes);
        }
        self.send_votes(io, conn, buf, n);
    }

    fn send_votes(&mut self, io: &mut Io, conn: ConnId, buf: Vec<u8>, n: usize) {
        let len = buf.len() as u64;
        if io.send_owned(conn, buf).is_ok() {
            self.shared
                .votes_sent
                .fetch_add(n as u64, Ordering::Relaxed);
            self.shared.bytes_sent.fetch_add(len, Ordering::Relaxed);
        }
    }

    fn stream_all(&mut self, io: &mut Io) {
        if !self.running(io.now()) {
            return;
        }
        for k in 0..self.streaming.len() {
            if let Some(&idx) = self.streaming.get(k) {
                self.stream(io, idx);
            }
        }
    }
}

impl Handler for FloodHandler {
    type Command = Command;

    fn on_command(&mut self, io: &mut Io, cmd: Command) {
        let Command::Start { start, end } = cmd;
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
            self.tick = Some(now + self.tick_every);
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

/// Who a [`FloodRunner`] runs.
#[derive(Debug, Clone)]
pub enum FloodPeers {
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
        /// How many.
        peers: usize,
        /// Hashes per vote.
        hashes: usize,
    },
    /// One honest voter per pool voter (from [`honest_voter_ip`]), each paced at `rate`
    /// votes/s (0: as fast as the node reads).
    GoodVoters {
        /// The pre-signed votes.
        pool: Arc<VotePool>,
        /// Votes/s per voter.
        rate: f64,
    },
}

/// Running flood peers on their own io threads; stop them with [`FloodRunner::stop`].
pub struct FloodRunner {
    handles: Vec<ShardHandle<Command>>,
    shared: Arc<FloodShared>,
    peers: usize,
    started: Instant,
}

impl std::fmt::Debug for FloodRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloodRunner")
            .field("threads", &self.handles.len())
            .field("peers", &self.peers)
            .finish()
    }
}

impl FloodRunner {
    /// Starts `who` against `target` for `duration` (peers reopen what the node closes,
    /// `reopen_delay` after). Returns once the threads run and have their start command.
    pub fn start(
        target: SocketAddr,
        network: Network,
        who: FloodPeers,
        reopen_delay: Duration,
        duration: Duration,
    ) -> Result<FloodRunner, AttackError> {
        if !matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback()) {
            return Err(AttackError::Config(
                "floods need an IPv4 loopback target (sources are bound in 127.0.0.0/8)",
            ));
        }
        let specs: Vec<(Ipv4Addr, Role)> = match &who {
            FloodPeers::Slots {
                source,
                connections,
            } => (0..*connections)
                .map(|i| (source.address(i as u32), Role::Silent))
                .collect(),
            FloodPeers::BadVoters { peers, .. } => (0..*peers)
                .map(|i| (FloodSource::Many.address(i as u32), Role::BadVoter))
                .collect(),
            FloodPeers::GoodVoters { pool, .. } => (0..pool.voters.len())
                .map(|j| (honest_voter_ip(j as u32), Role::GoodVoter(j)))
                .collect(),
        };
        if specs.is_empty() {
            return Err(AttackError::Config("a flood needs at least one peer"));
        }
        let (hashes, pool, rate) = match &who {
            FloodPeers::Slots { .. } => (0, None, 0.0),
            FloodPeers::BadVoters { hashes, .. } => (*hashes, None, 0.0),
            FloodPeers::GoodVoters { pool, rate } => {
                (pool.hashes, Some(Arc::clone(pool)), rate.max(0.0))
            }
        };
        if hashes > crate::wire::vote::MAX_HASHES {
            return Err(AttackError::Config("at most 255 hashes per vote"));
        }
        let tick_every = if matches!(who, FloodPeers::Slots { .. }) {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(1)
        };
        let peers = specs.len();
        let mut runner = FloodRunner {
            handles: Vec::new(),
            shared: Arc::new(FloodShared::default()),
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
                ..ShardConfig::default()
            };
            let sh = Arc::clone(&runner.shared);
            let pool = pool.clone();
            let spawned = io::spawn(&cfg, t, move |_info: &io::ShardInfo| {
                let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
                let peers: Vec<Peer> = chunk
                    .iter()
                    .map(|&(ip, role)| {
                        let voter = role != Role::Silent;
                        let identity = voter.then(|| NodeIdentity::from_private(rng.random()));
                        let mut bad_sig = Signature([0; 64]);
                        let template = match role {
                            Role::Silent => None,
                            Role::BadVoter => {
                                // the voting key signs something else: a well-formed signature
                                let key = KeyPair::from_private(rng.random());
                                bad_sig = key.sign(b"not this vote");
                                Some(VoteTemplate::new(network, key.public(), hashes))
                            }
                            Role::GoodVoter(v) => pool
                                .as_ref()
                                .map(|p| VoteTemplate::new(network, p.voters[v].account, p.hashes)),
                        };
                        Peer {
                            ip,
                            role,
                            identity,
                            template,
                            deframer: voter.then(|| Deframer::new(network)),
                            conn: None,
                            phase: Phase::Idle,
                            connected_at: Instant::now(),
                            had_channel: false,
                            reconnect: false,
                            bad_sig,
                            next: 0,
                            tokens: 0.0,
                            refilled: Instant::now(),
                        }
                    })
                    .collect();
                FloodHandler {
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
            let _ = h.send_command(Command::Start { start, end });
        }
        Ok(runner)
    }

    /// The counters so far, summed over the threads.
    pub fn counts(&self) -> FloodCounts {
        let s = &self.shared;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FloodCounts {
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
            votes_sent: g(&s.votes_sent),
            bytes_sent: g(&s.bytes_sent),
            pools_exhausted: g(&s.pools_exhausted),
            exhausted_at_ms: g(&s.exhausted_at_ms),
        }
    }

    /// When the first honest voter's pool ran out, if one did.
    pub fn exhausted_at(&self) -> Option<Instant> {
        let ms = self.shared.exhausted_at_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| self.started + Duration::from_millis(ms))
    }

    /// Stops the threads (closing every connection) and returns the final counters.
    pub fn stop(&self) -> FloodCounts {
        for h in &self.handles {
            h.stop();
        }
        for h in &self.handles {
            let _ = h.join();
        }
        self.counts()
    }
}

impl Drop for FloodRunner {
    fn drop(&mut self) {
        for h in &self.handles {
            h.stop();
        }
        for h in &self.handles {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Two phases: clean, then under attack

/// One phase of a flood run: the honest load with no attack, or under attack.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    /// Wall time of the phase.
    pub wall: Duration,
    /// The honest handshake load of the phase.
    pub honest: Option<LoadReport>,
    /// The node's counters at the start of the phase.
    pub node_before: Option<NodeStats>,
    /// The node's counters at its end.
    pub node_after: Option<NodeStats>,
    /// Valid votes the node verified in the phase (`votes_valid` delta: all honest).
    pub honest_votes: Option<u64>,
    /// Honest votes verified per second: over the phase, or up to the moment a voter's pool
    /// ran out if it did.
    pub honest_votes_per_sec: Option<f64>,
    /// Honest votes the voters queued in the phase.
    pub honest_votes_sent: u64,
    /// Highest RSS sampled in the phase, KiB.
    pub rss_peak_kb: u64,
    /// Highest open-descriptor count sampled in the phase.
    pub fds_peak: usize,
    /// Highest node connection count sampled in the phase.
    pub connections_peak: u64,
}

impl PhaseReport {
    /// Honest handshakes per second (0 without an honest load).
    pub fn honest_handshakes_per_sec(&self) -> f64 {
        self.honest.as_ref().map_or(0.0, |r| r.handshakes_per_sec)
    }

    /// The node counters' growth over the phase ([`node_counters`]).
    pub fn node_deltas(&self) -> Vec<(&'static str, u64)> {
        match (&self.node_before, &self.node_after) {
            (Some(a), Some(b)) => node_counter_deltas(a, b),
            _ => Vec::new(),
        }
    }
}

/// What a `slot-flood` or `vote-flood` run measured ([`AttackReport::flood`]).
#[derive(Debug, Clone)]
pub struct FloodReport {
    /// The honest load alone.
    pub clean: PhaseReport,
    /// The honest load under attack (measured after the ramp).
    pub attack: PhaseReport,
    /// From starting the attack to measuring: until every attack connection had opened once
    /// (slot-flood) or every attacker had a channel once (vote-flood), or the ramp timeout.
    pub ramp: Duration,
    /// The attackers' counters over the whole attack (ramp included).
    pub attackers: FloodCounts,
    /// The honest voters' counters over both phases (vote-flood).
    pub voters: Option<FloodCounts>,
    /// Distinct attack source addresses and /24s.
    pub attack_sources: (usize, usize),
    /// Pre-signed honest votes, and the bytes their signatures take (part of the RSS).
    pub vote_pool: (usize, usize),
    /// How long signing the pool took.
    pub vote_pool_signing: Duration,
    /// Process RSS before the clean phase, KiB (after the pool was signed).
    pub rss_baseline_kb: u64,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

impl FloodReport {
    /// Honest handshakes/s under attack over clean.
    pub fn handshake_ratio(&self) -> Option<f64> {
        ratio(
            self.attack.honest_handshakes_per_sec(),
            self.clean.honest_handshakes_per_sec(),
        )
    }

    /// Honest votes/s under attack over clean.
    pub fn vote_ratio(&self) -> Option<f64> {
        ratio(
            self.attack.honest_votes_per_sec?,
            self.clean.honest_votes_per_sec?,
        )
    }

    /// RSS growth from the baseline to the attack phase's peak, KiB.
    pub fn rss_growth_kb(&self) -> i64 {
        self.attack.rss_peak_kb as i64 - self.rss_baseline_kb as i64
    }

    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let opt = |v: Option<f64>, d: usize| v.map_or("n/a".into(), |v| format!("{v:.d$}"));
        let fails = |p: &PhaseReport| {
            p.honest.as_ref().map_or(String::new(), |h| {
                let v: Vec<String> = h
                    .failures
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(f, n)| format!("{} {n}", f.as_str()))
                    .collect();
                if v.is_empty() {
                    "no failures".into()
                } else {
                    format!("failures: {}", v.join(", "))
                }
            })
        };
        let a = &self.attackers;
        let mut s = format!(
            "  clean {:.1} s, ramp {:.2} s, under attack {:.1} s\n\
             \x20 honest handshakes/s: clean {:.0} ({}), under attack {:.0} ({}); ratio {}\n",
            self.clean.wall.as_secs_f64(),
            self.ramp.as_secs_f64(),
            self.attack.wall.as_secs_f64(),
            self.clean.honest_handshakes_per_sec(),
            fails(&self.clean),
            self.attack.honest_handshakes_per_sec(),
            fails(&self.attack),
            opt(self.handshake_ratio(), 2),
        );
        if let Some(v) = &self.voters {
            s += &format!(
                "  honest votes/s verified by the node: clean {}, under attack {}; ratio {} \
                 ({} voters, {} votes sent, pool {} signed in {:.1} s{})\n",
                opt(self.clean.honest_votes_per_sec, 0),
                opt(self.attack.honest_votes_per_sec, 0),
                opt(self.vote_ratio(), 2),
                v.peers,
                v.votes_sent,
                self.vote_pool.0,
                self.vote_pool_signing.as_secs_f64(),
                if v.pools_exhausted > 0 {
                    ", a pool ran out"
                } else {
                    ""
                },
            );
        }
        s += &format!(
            "  attack: {} peers from {} address(es) in {} /24(s); opened {}, held peak {} (end {}), \
             refused at once {}, cut later {}, connect failed {}",
            a.peers,
            self.attack_sources.0,
            self.attack_sources.1,
            a.opened,
            a.held_peak,
            a.held,
            a.refused,
            a.cut,
            a.connect_failed,
        );
        if a.handshakes > 0 || a.votes_sent > 0 {
            s += &format!(
                "; channels {}, channels cut {}, reconnects {} (refused {}, got a channel {}), \
                 invalid votes sent {}",
                a.handshakes,
                a.channels_cut,
                a.reconnects,
                a.reconnects_refused,
                a.reconnect_handshakes,
                a.votes_sent,
            );
        }
        s += &format!(
            "\n  process: RSS {} KiB before, peak {} KiB clean, {} KiB under attack ({:+} KiB); \
             peak fds {} clean, {} under attack; peak node connections {} clean, {} under attack",
            self.rss_baseline_kb,
            self.clean.rss_peak_kb,
            self.attack.rss_peak_kb,
            self.rss_growth_kb(),
            self.clean.fds_peak,
            self.attack.fds_peak,
            self.clean.connections_peak,
            self.attack.connections_peak,
        );
        let d: Vec<String> = self
            .attack
            .node_deltas()
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k} +{v}"))
            .collect();
        if !d.is_empty() {
            s += &format!("\n  node under attack: {}", d.join(", "));
        }
        if let Some(b) = &self.attack.node_after {
            s += &format!(", batch cap {}", b.batch.cap);
        }
        s
    }

    /// The report's fields for the bench's JSON object.
    pub fn json(&self) -> serde_json::Value {
        let phase = |p: &PhaseReport| {
            let deltas: serde_json::Map<String, serde_json::Value> = p
                .node_deltas()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.into()))
                .collect();
            serde_json::json!({
                "duration_s": p.wall.as_secs_f64(),
                "honest_handshakes": p.honest.as_ref().map(|h| h.handshakes),
                "honest_handshakes_per_sec": p.honest_handshakes_per_sec(),
                "honest_failures": p.honest.as_ref().map(|h| h.failures_total()),
                "honest_votes": p.honest_votes,
                "honest_votes_per_sec": p.honest_votes_per_sec,
                "honest_votes_sent": p.honest_votes_sent,
                "process_rss_peak_kb": p.rss_peak_kb,
                "process_fds_peak": p.fds_peak,
                "node_connections_peak": p.connections_peak,
                "node_batch_cap_end": p.node_after.as_ref().map(|s| s.batch.cap),
                "node": deltas,
            })
        };
        let a = &self.attackers;
        let counts = |c: &FloodCounts| {
            serde_json::json!({
                "peers": c.peers, "dials": c.dials, "opened": c.opened,
                "connect_failed": c.connect_failed, "held_peak": c.held_peak,
                "held_end": c.held, "refused": c.refused, "cut": c.cut,
                "handshakes": c.handshakes, "channels_cut": c.channels_cut,
                "reconnects": c.reconnects, "reconnects_refused": c.reconnects_refused,
                "reconnect_handshakes": c.reconnect_handshakes, "votes_sent": c.votes_sent,
                "bytes_sent": c.bytes_sent, "pools_exhausted": c.pools_exhausted,
            })
        };
        serde_json::json!({
            "clean": phase(&self.clean),
            "under_attack": phase(&self.attack),
            "ramp_s": self.ramp.as_secs_f64(),
            "clean_honest_handshakes_per_sec": self.clean.honest_handshakes_per_sec(),
            "honest_handshakes_ratio": self.handshake_ratio(),
            "clean_honest_votes_per_sec": self.clean.honest_votes_per_sec,
            "honest_votes_per_sec": self.attack.honest_votes_per_sec,
            "honest_votes_ratio": self.vote_ratio(),
            "attack_sources": self.attack_sources.0,
            "attack_subnets": self.attack_sources.1,
            "attack_refused": a.refused,
            "attack_cut": a.cut,
            "attack_channels": a.handshakes,
            "attack_channels_cut": a.channels_cut,
            "attack_reconnects": a.reconnects,
            "attack_reconnects_refused": a.reconnects_refused,
            "attack_reconnect_handshakes": a.reconnect_handshakes,
            "attack_votes_sent": a.votes_sent,
            "attackers": counts(a),
            "honest_voters": self.voters.as_ref().map(counts),
            "vote_pool": self.vote_pool.0,
            "vote_pool_bytes": self.vote_pool.1,
            "process_rss_baseline_kb": self.rss_baseline_kb,
            "process_rss_growth_kb": self.rss_growth_kb(),
        })
    }
}

/// The node counters a flood report shows (name, value), growth taken over a phase.
pub fn node_counters(s: &NodeStats) -> Vec<(&'static str, u64)> {
    let (io, p) = (&s.io, &s.proto);
    let (h, c) = (&p.handshake, &p.closes);
    vec![
        ("accepted", io.accepted),
        ("rejected_cap", io.rejected_cap),
        ("refused", io.refused),
        ("closed_deadline", io.closed_deadline),
        ("closed_peer", io.closed_peer),
        ("connects_ok", io.connects_ok),
        ("connects_failed", io.connects_failed),
        ("handshake_ok", h.ok),
        ("handshake_invalid_signature", h.invalid_signature),
        ("handshake_cookie_limit", h.cookie_limit),
        ("handshake_max_per_ip", h.max_per_ip),
        ("handshake_max_per_subnet", h.max_per_subnet),
        ("handshake_excluded", h.excluded),
        ("handshake_channel_limit", h.channel_limit),
        ("close_timeout", c.timeout),
        ("close_excluded", c.excluded),
        ("close_header_error", c.header_error),
        ("votes_valid", p.votes_valid),
        ("invalid_vote_signature", p.invalid_vote_signature),
        ("duplicate_confirm_ack", p.duplicate_confirm_ack),
        ("verify_overflow", p.verify_overflow),
        ("held_dropped", p.held_dropped),
        ("batch_cap_shrinks", s.batch.cap_shrinks),
        ("events_dropped", s.events_dropped),
    ]
}

/// Growth of each [`node_counters`] entry from `a` to `b`.
pub fn node_counter_deltas(a: &NodeStats, b: &NodeStats) -> Vec<(&'static str, u64)> {
    node_counters(a)
        .into_iter()
        .zip(node_counters(b))
        .map(|((k, x), (_, y))| (k, y.saturating_sub(x)))
        .collect()
}

/// Honest votes/s of a phase from `t0` for `wall`: the node's `votes_valid` growth over the
/// phase, or, if a pool ran out at `exhausted` within it, over the samples taken until then.
fn vote_rate(
    start: Instant,
    t0: Instant,
    wall: Duration,
    delta: u64,
    samples: &[SoakSample],
    exhausted: Option<Instant>,
) -> Option<f64> {
    match exhausted {
        Some(e) if e < t0 + wall => {
            let until = e.saturating_duration_since(start);
            let first = samples.first()?;
            let last = samples.iter().rfind(|s| s.t <= until)?;
            let dt = last.t.saturating_sub(first.t).as_secs_f64();
            (dt > 0.0).then(|| last.votes_valid.saturating_sub(first.votes_valid) as f64 / dt)
        }
        _ => (wall > Duration::ZERO).then(|| delta as f64 / wall.as_secs_f64()),
    }
}

/// Runs the honest load (and, when given, reads the honest voters) for `duration`, sampling.
#[allow(clippy::too_many_arguments)]
fn phase(
    cfg: &AttackConfig,
    node: Option<&Node>,
    duration: Duration,
    start: Instant,
    samples: &mut Vec<SoakSample>,
    interval: Duration,
    voters: Option<&FloodRunner>,
) -> Result<PhaseReport, AttackError> {
    let node_before = node.map(|n| n.stats());
    let sent_before = voters.map_or(0, |v| v.counts().votes_sent);
    let first = samples.len();
    let t0 = Instant::now();
    samples.push(sample(start, node));
    let mut next = t0 + interval;
    let mut tick = |samples: &mut Vec<SoakSample>| {
        let now = Instant::now();
        if now >= next {
            next = now + interval;
            samples.push(sample(start, node));
        }
    };
    let honest = match &cfg.honest {
        Some(load) if !duration.is_zero() => {
            let mut load: LoadConfig = load.clone();
            load.target = cfg.target;
            load.network = cfg.network;
            load.duration = duration;
            load.progress_interval = load.progress_interval.min(interval);
            Some(loadgen::run(&load, |_| tick(samples))?)
        }
        _ => {
            let end = t0 + duration;
            while Instant::now() < end {
                std::thread::sleep(interval.min(end.saturating_duration_since(Instant::now())));
                tick(samples);
            }
            None
        }
    };
    let wall = t0.elapsed();
    samples.push(sample(start, node));
    let node_after = node.map(|n| n.stats());
    let in_phase = &samples[first..];
    let honest_votes = match (voters, &node_before, &node_after) {
        (Some(_), Some(a), Some(b)) => {
            Some(b.proto.votes_valid.saturating_sub(a.proto.votes_valid))
        }
        _ => None,
    };
    let honest_votes_per_sec = honest_votes.and_then(|d| {
        vote_rate(
            start,
            t0,
            wall,
            d,
            in_phase,
            voters.and_then(FloodRunner::exhausted_at),
        )
    });
    Ok(PhaseReport {
        wall,
        honest,
        node_before,
        node_after,
        honest_votes,
        honest_votes_per_sec,
        honest_votes_sent: voters.map_or(0, |v| v.counts().votes_sent.saturating_sub(sent_before)),
        rss_peak_kb: in_phase.iter().map(|s| s.rss_kb).max().unwrap_or(0),
        fds_peak: in_phase.iter().map(|s| s.fds).max().unwrap_or(0),
        connections_peak: in_phase.iter().map(|s| s.connections).max().unwrap_or(0),
    })
}

/// Runs a `slot-flood` or `vote-flood` (`cfg.kind`): the clean phase (`cfg.clean_duration`),
/// then the attack, its ramp (up to `cfg.ramp_timeout`) and the measured phase
/// (`cfg.duration`). `node`, when the node runs in this process, gives its counters (honest
/// votes/s needs it). Blocks for about the sum of those, plus signing the vote pool.
pub fn run_flood(cfg: &AttackConfig, node: Option<&Node>) -> Result<AttackReport, AttackError> {
    let who = match cfg.kind {
        AttackKind::SlotFlood(source) => FloodPeers::Slots {
            source,
            connections: cfg.connections,
        },
        AttackKind::VoteFlood => FloodPeers::BadVoters {
            peers: cfg.connections,
            hashes: cfg.vote_hashes,
        },
        _ => return Err(AttackError::Config("not a flood kind")),
    };
    if cfg.connections == 0 {
        return Err(AttackError::Config("connections must be at least 1"));
    }
    if cfg.duration.is_zero() {
        return Err(AttackError::Config("duration must be positive"));
    }
    let interval = cfg.sample_interval.max(Duration::from_millis(10));
    let attack_sources = match cfg.kind {
        AttackKind::SlotFlood(source) => source.spread(cfg.connections),
        _ => FloodSource::Many.spread(cfg.connections),
    };

    // honest voters: sign their pool first, outside every measurement
    let mut pool_info = ((0, 0), Duration::ZERO);
    let voters = if cfg.kind == AttackKind::VoteFlood && cfg.honest_voters > 0 {
        let total = cfg.clean_duration + cfg.ramp_timeout + cfg.duration;
        let n = cfg.honest_voters;
        let rate = f64::from(cfg.honest_vote_rate) / n as f64;
        let per_voter = if rate > 0.0 {
            (rate * total.as_secs_f64() * 1.1) as usize + 256
        } else {
            (cfg.vote_pool / n).max(1)
        };
        let t = Instant::now();
        let threads = std::thread::available_parallelism().map_or(1, |c| c.get());
        let pool = Arc::new(VotePool::sign(n, per_voter, cfg.vote_hashes, threads));
        pool_info = ((pool.len(), pool.bytes()), t.elapsed());
        let runner = FloodRunner::start(
            cfg.target,
            cfg.network,
            FloodPeers::GoodVoters { pool, rate },
            cfg.reopen_delay,
            total + Duration::from_secs(60),
        )?;
        // every voter has its channel before the clean phase starts
        let deadline = Instant::now() + Duration::from_secs(3);
        while runner.counts().channels < n as u64 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(runner)
    } else {
        None
    };

    let start = Instant::now();
    let mut samples = vec![sample(start, node)];
    let rss_baseline_kb = samples[0].rss_kb;
    let clean = phase(
        cfg,
        node,
        cfg.clean_duration,
        start,
        &mut samples,
        interval,
        voters.as_ref(),
    )?;

    let attack = FloodRunner::start(
        cfg.target,
        cfg.network,
        who,
        cfg.reopen_delay,
        cfg.ramp_timeout + cfg.duration + Duration::from_secs(1),
    )?;
    let t_ramp = Instant::now();
    let mut next = t_ramp + interval;
    loop {
        let c = attack.counts();
        let ready = match cfg.kind {
            AttackKind::VoteFlood => c.handshakes >= c.peers,
            _ => c.opened >= c.peers,
        };
        if ready || t_ramp.elapsed() >= cfg.ramp_timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        if Instant::now() >= next {
            next = Instant::now() + interval;
            samples.push(sample(start, node));
        }
    }
    let ramp = t_ramp.elapsed();
    let measured = phase(
        cfg,
        node,
        cfg.duration,
        start,
        &mut samples,
        interval,
        voters.as_ref(),
    )?;
    let held_end = attack.counts().held;
    let attackers = attack.stop();
    let voter_counts = voters.as_ref().map(FloodRunner::stop);
    samples.push(sample(start, node));
    if node.is_some() {
        // the shards publish their counters every 100 ms
        std::thread::sleep(Duration::from_millis(250));
    }
    let flood = FloodReport {
        clean,
        attack: measured,
        ramp,
        attackers,
        voters: voter_counts,
        attack_sources,
        vote_pool: pool_info.0,
        vote_pool_signing: pool_info.1,
        rss_baseline_kb,
    };
    Ok(AttackReport {
        kind: cfg.kind,
        wall: start.elapsed(),
        opened: attackers.opened,
        connect_failed: attackers.connect_failed,
        held_peak: attackers.held_peak,
        held_end,
        cut_by_node: attackers.closed_by_node(),
        bytes_sent: attackers.bytes_sent,
        poison_handshakes: 0,
        poison_addresses: 0,
        honest: flood.attack.honest.clone(),
        bad_sig: None,
        samples,
        node_before: flood.attack.node_before.clone(),
        node_after: node.map(|n| n.stats()),
        flood: Some(Box::new(flood)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::VoteView;

    #[test]
    fn attack_sources_never_share_a_subnet_with_honest_peers() {
        let subnet = |ip: Ipv4Addr| {
            let o = ip.octets();
            (o[1], o[2])
        };
        let honest: std::collections::HashSet<(u8, u8)> = (0..70_000)
            .map(source_ip)
            .chain((0..64).map(honest_voter_ip))
            .map(subnet)
            .collect();
        let mut many = std::collections::HashSet::new();
        for source in [FloodSource::Ip, FloodSource::Subnet, FloodSource::Many] {
            for i in 0..5000 {
                let ip = source.address(i);
                let o = ip.octets();
                assert_eq!(o[0], 127);
                assert!(o[3] != 0 && o[3] != 255, "{ip}");
                assert_ne!((o[1], o[2]), (0, 0), "the node's own /24: {ip}");
                assert!(!honest.contains(&subnet(ip)), "{ip} in an honest /24");
                if source == FloodSource::Many {
                    many.insert(ip);
                }
            }
        }
        assert_eq!(many.len(), 5000, "many: one address per connection");
        let subnets: std::collections::HashSet<_> = (0..511)
            .map(|i| subnet(FloodSource::Many.address(i)))
            .collect();
        assert_eq!(subnets.len(), 511);
        assert_eq!(FloodSource::Subnet.spread(300), (254, 1));
        assert_eq!(FloodSource::Ip.spread(300), (1, 1));
        assert_eq!(FloodSource::Many.spread(300), (300, 300));
    }

    #[test]
    fn pool_votes_verify_and_are_distinct() {
        let pool = VotePool::sign(2, 6, 12, 2);
        assert_eq!(pool.len(), 12);
        let mut payloads = std::collections::HashSet::new();
        for vp in &pool.voters {
            let mut t = VoteTemplate::new(Network::Dev, vp.account, pool.hashes);
            for i in 0..vp.len() {
                vp.fill(&mut t, i);
                let (header, payload) = t.bytes.split_at(HEADER_LEN);
                let header =
                    crate::wire::Header::decode(header.try_into().unwrap(), Network::Dev).unwrap();
                assert_eq!(header.message_type, MessageType::ConfirmAck);
                let view = VoteView::new(header.extensions, payload).unwrap();
                assert_eq!(view.len(), 12);
                assert_eq!(view.account(), vp.account);
                let vote = view.to_vote();
                assert!(vote.verify(), "vote {i}");
                assert_eq!(vote.is_final(), i % 4 == 3);
                assert!(payloads.insert(payload.to_vec()), "duplicate payload");
            }
        }
    }

    #[test]
    fn attacker_votes_are_well_formed_but_wrong() {
        let key = KeyPair::from_private([3; 32]);
        let sig = key.sign(b"not this vote");
        let mut t = VoteTemplate::new(Network::Dev, key.public(), 4);
        t.hashes_mut().fill(0xab);
        t.set(&sig, (now_unix_ms() << 4) | 9);
        let (header, payload) = t.bytes.split_at(HEADER_LEN);
        let header = crate::wire::Header::decode(header.try_into().unwrap(), Network::Dev).unwrap();
        let vote = VoteView::new(header.extensions, payload).unwrap().to_vote();
        assert_eq!(vote.account, key.public());
        assert!(!vote.verify());
        assert!(crate::crypto::verify(
            b"not this vote",
            &vote.signature,
            &vote.account
        ));
    }

    #[test]
    fn vote_rate_stops_at_pool_exhaustion() {
        let start = Instant::now();
        let s = |ms: u64, votes: u64| SoakSample {
            t: Duration::from_millis(ms),
            votes_valid: votes,
            ..SoakSample::default()
        };
        let samples = [s(0, 0), s(500, 5000), s(1000, 10_000), s(1500, 10_000)];
        let t0 = start;
        let wall = Duration::from_millis(1500);
        assert_eq!(
            vote_rate(start, t0, wall, 10_000, &samples, None),
            Some(10_000.0 / 1.5)
        );
        let e = start + Duration::from_millis(1000);
        assert_eq!(
            vote_rate(start, t0, wall, 10_000, &samples, Some(e)),
            Some(10_000.0)
        );
    }
}
