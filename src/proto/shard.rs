//! The sans-IO shard core: one per shard thread. It owns the shard's connections (deframer and
//! handshake state each), its syn cookies and the verify requests in flight; it shares the
//! channel map, the duplicate filter, the config, the node identity and the exclusion list.
//!
//! The I/O loop (io_uring shards, or the in-memory simulation) calls the `on_*` entry points
//! with the time and an RNG, and carries out what they append to a [`ShardOutput`]: socket
//! actions, signature checks (results come back through [`ShardCore::on_verified`]) and events
//! for the crawler core.
//!
//! Per connection (§2.7, §6.2): a header error closes; a payload error drops the message and
//! counts it. Before the handshake completes only node_id_handshake is accepted (bootstrap
//! types close with `BootstrapNotServed`, anything else with `MessageBeforeHandshake`); while
//! the peer's final response is being verified, frames that arrive (the peer may be realtime
//! already) are held, up to [`MAX_HELD_FRAMES`] / [`MAX_HELD_BYTES`], and replayed once the
//! channel exists. When the handshake completes the shard sends keepalive_self and, with
//! [`ProtoConfig::query_on_up`], the rep crawler's first confirm_req for the channel (a pair
//! from the shared [`QueryBoard`]) in the same turn, so the loop packs both into one send; the
//! pair travels to the crawler in [`CrawlerEvent::ChannelUp`], which records the query.
//! After the handshake: keepalive, publish, confirm_ack and telemetry_ack are processed; confirm_req (we do not vote), telemetry_req, asc_pull_*, bootstrap and handshake
//! messages are counted and ignored.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::RngCore;

use super::addr::{IpKey, SubnetKey, canonical, to_socket_addr};
use super::budget::Budget;
use super::config::ProtoConfig;
use super::cookies::SynCookies;
use super::events::{
    CloseReason, ConnId, CrawlerEvent, HandshakeOutcome, IoAction, Misbehaviour, ShardCommand,
    SignedMessage, VerifyRequest,
};
use super::eviction::{Candidate, select_victims};
use super::exclusion::{PeerExclusion, SCORE_LIMIT};
use super::filter::DuplicateFilter;
use super::handshake::{Handshake, HandshakeCtx, Verdict, admit};
use super::identity::NodeIdentity;
use super::repcrawler::QueryBoard;
use super::stats::ShardStats;
use super::telemetry::{TelemetryError, check_genesis, check_received};
use crate::channels::{Channel, ChannelError, ChannelId, ChannelMap, Direction, NewChannel};
use crate::crypto::{WorkThresholds, epoch_link, epoch_signer, genesis_hash};
use crate::types::{BlockHash, Network, PublicKey};
use crate::wire::{
    Block, ConfirmReq, DecodeError, Deframer, EMPTY_PEER, HEADER_LEN, Header, Keepalive,
    MAX_HANDSHAKE_PAYLOAD, MAX_PAYLOAD, Message, MessageType, NodeIdHandshake, Publish,
    TELEMETRY_SIGNED_FROM, TelemetryAck, TelemetryData, VoteView,
};

/// Most signature checks in flight per connection; more are dropped (counted).
pub const MAX_INFLIGHT_PER_CONN: u32 = 128;
/// Most frames held while a handshake response is verified.
pub const MAX_HELD_FRAMES: usize = 32;
/// Most payload bytes held while a handshake response is verified.
pub const MAX_HELD_BYTES: usize = 65_536;
/// Idle deadlines are re-sent at most this often per connection.
pub const DEADLINE_REFRESH_MS: u64 = 1_000;
/// Most outstanding dials remembered (answers beyond are still handled by `outbound`).
const MAX_PENDING_DIALS: usize = 4_096;
/// After an invalid signature, this many of the source's next signature checks are made on
/// their own (outside the shared batch), so its failures fall back on its own items only.
pub const SUSPECT_CHECKS: u32 = 64;
/// Victims picked at once when the inbound table is full: one per this many connections
/// (at least one), handed out as new connections arrive, so the pick is not redone per accept.
pub const EVICTION_BATCH_DIVISOR: usize = 64;

/// What to do with an accepted connection before anything is read from it
/// ([`ShardCore::screen_inbound`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screening {
    /// Admit it.
    Accept,
    /// Close it at once (per-IP or per-subnet limit, excluded address, or full with nothing
    /// to evict; counted in [`AdmissionStats`](super::stats::AdmissionStats)).
    Refuse,
    /// Close this connection (already counted as evicted), then admit the new one.
    Evict(ConnId),
}

/// What one call into the shard core produced. The loop drains it (or calls
/// [`ShardOutput::clear`]) after each call.
#[derive(Debug, Default)]
pub struct ShardOutput {
    /// Socket actions, in order.
    pub io: Vec<IoAction>,
    /// Signature checks to run; answer each with [`ShardCore::on_verified`].
    pub verify: Vec<VerifyRequest>,
    /// Events for the crawler core.
    pub events: Vec<CrawlerEvent>,
}

impl ShardOutput {
    /// Empties all three lists, keeping their capacity.
    pub fn clear(&mut self) {
        self.io.clear();
        self.verify.clear();
        self.events.clear();
    }

    /// True when nothing was produced.
    pub fn is_empty(&self) -> bool {
        self.io.is_empty() && self.verify.is_empty() && self.events.is_empty()
    }
}

/// What every shard core of a node shares.
#[derive(Clone)]
pub struct ShardShared {
    /// The channel map.
    pub channels: Arc<ChannelMap>,
    /// The duplicate filter for publish and confirm_ack payloads.
    pub filter: Arc<DuplicateFilter>,
    /// Protocol settings.
    pub config: Arc<ProtoConfig>,
    /// Our node id.
    pub identity: Arc<NodeIdentity>,
    /// Excluded peers (read on admission only).
    pub exclusion: Arc<Mutex<PeerExclusion>>,
    /// The rep crawler's query candidates (the crawler's [`CrawlerSetup::query_board`]): the
    /// first query of a new channel is picked from it.
    ///
    /// [`CrawlerSetup::query_board`]: super::crawler::CrawlerSetup::query_board
    pub query_board: Arc<QueryBoard>,
}

impl std::fmt::Debug for ShardShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardShared")
            .field("channels", &self.channels.len())
            .field("identity", &self.identity)
            .field("network", &self.config.network)
            .finish_non_exhaustive()
    }
}

/// A hasher for integer ids (connection, channel, verify ids): one multiply, no SipHash.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The keepalive_self of §4.1: slot 0 `[::]:listen_port`, slot 1 `[::]:0`, slots 2–3 repeat
/// random peers 0–1, slots 4–7 random peers 4–7 (`random` holds up to 8 peering endpoints).
pub fn keepalive_self(listen_port: u16, random: &[SocketAddrV6]) -> Keepalive {
    let mut fill = [EMPTY_PEER; 8];
    for (slot, p) in fill.iter_mut().zip(random) {
        *slot = *p;
    }
    let mut k = Keepalive { peers: fill };
    k.peers[2] = fill[0];
    k.peers[3] = fill[1];
    k.peers[1] = EMPTY_PEER;
    k.peers[0] = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, listen_port, 0, 0);
    k
}

/// The vote hash of §4.4 straight from the received hash bytes (no allocation).
fn vote_hash_bytes(hash_bytes: &[u8], timestamp: u64) -> BlockHash {
    let h = blake2b_simd::Params::new()
        .hash_length(32)
        .to_state()
        .update(b"vote ")
        .update(hash_bytes)
        .update(&timestamp.to_le_bytes())
        .finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(h.as_bytes());
    BlockHash(out)
}

enum Pending {
    Handshake,
    Vote {
        channel: ChannelId,
        account: PublicKey,
        hashes: Vec<BlockHash>,
        timestamp: u64,
        rebroadcasted: bool,
    },
    Block {
        channel: ChannelId,
        hash: BlockHash,
        block: Arc<Block>,
        /// The epoch signer to try if the account's signature fails (state blocks with an
        /// epoch link).
        retry: Option<PublicKey>,
    },
    Telemetry {
        channel: ChannelId,
        data: Box<TelemetryData>,
    },
}

struct ConnState {
    remote: SocketAddrV6,
    outbound: bool,
    connected_ms: u64,
    /// Counted in the map's per-IP/subnet limits as an unverified inbound connection.
    counted: bool,
    /// Invalid signatures this peer may still send.
    invalid: Budget,
    /// Signature checks this peer may still cause.
    work: Budget,
    /// Checks still to make alone after an invalid signature ([`SUSPECT_CHECKS`]).
    suspect: u32,
    /// Last valid vote, block or telemetry (eviction protects recent ones).
    useful_ms: u64,
    /// Which connection of this id it is (ids may be reused by a loop).
    epoch: u64,
    /// Some until the channel exists.
    hs: Option<Handshake>,
    channel: Option<Arc<Channel>>,
    closed: bool,
    inflight: u32,
    held: Vec<(Header, Box<[u8]>)>,
    held_bytes: usize,
    deadline_sent_ms: u64,
}

struct Conn {
    deframer: Deframer,
    st: ConnState,
}

struct Ctx {
    shard: u16,
    shared: ShardShared,
    network: Network,
    genesis: BlockHash,
    thresholds: WorkThresholds,
    cookies: SynCookies,
    by_channel: IdMap<ChannelId, ConnId>,
    /// Signature checks in flight: the connection (and its epoch) and what to do next.
    pending: IdMap<u64, (ConnId, u64, Pending)>,
    /// Numbers connections in order of arrival: a check or deadline of an earlier connection
    /// that had the same id never applies to a later one.
    next_epoch: u64,
    next_verify: u64,
    pending_dials: HashSet<SocketAddrV6>,
    hs_deadlines: VecDeque<(u64, ConnId, u64)>,
    last_purge_ms: u64,
    /// Eviction victims picked in advance (with whether each was verified when picked).
    victims: Vec<(ConnId, bool)>,
    /// Channels of this shard replaced by a newer connection of the same node, to close
    /// once the current call is done with the connection map.
    replaced: Vec<ChannelId>,
    stats: ShardStats,
}

/// One shard's protocol state machine. See the module docs.
pub struct ShardCore {
    conns: IdMap<ConnId, Conn>,
    ctx: Ctx,
}

impl std::fmt::Debug for ShardCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardCore")
            .field("shard", &self.ctx.shard)
            .field("connections", &self.conns.len())
            .field("pending_verify", &self.ctx.pending.len())
            .finish_non_exhaustive()
    }
}

impl Drop for ShardCore {
    /// The shard is gone (stopped, or its thread panicked): its unverified connections stop
    /// counting in the shared per-IP and per-subnet limits. (Its channels are removed from the
    /// map by whoever notices the shard's end.)
    fn drop(&mut self) {
        for c in self.conns.values_mut() {
            if c.st.counted {
                c.st.counted = false;
                self.ctx.shared.channels.end_inbound(&c.st.remote);
            }
        }
    }
}

impl ShardCore {
    /// A shard core with id `shard` (recorded as the owner of its channels).
    pub fn new(shard: u16, shared: ShardShared) -> ShardCore {
        let config = &shared.config;
        let network = config.network;
        ShardCore {
            conns: IdMap::default(),
            ctx: Ctx {
                shard,
                network,
                genesis: genesis_hash(network),
                thresholds: WorkThresholds::for_network(network),
                cookies: SynCookies::new(config.max_cookies_per_ip, config.max_cookies),
                by_channel: IdMap::default(),
                pending: IdMap::default(),
                next_epoch: 1,
                next_verify: 1,
                pending_dials: HashSet::new(),
                hs_deadlines: VecDeque::new(),
                last_purge_ms: 0,
                victims: Vec::new(),
                replaced: Vec::new(),
                stats: ShardStats::default(),
                shared,
            },
        }
    }

    /// This shard's id.
    pub fn shard(&self) -> u16 {
        self.ctx.shard
    }

    /// The counters.
    pub fn stats(&self) -> &ShardStats {
        &self.ctx.stats
    }

    /// Open connections (handshaking and realtime).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Outstanding syn cookies (handshakes we have challenged and not finished).
    pub fn cookies(&self) -> usize {
        self.ctx.cookies.len()
    }

    /// Signature checks issued and not answered yet.
    pub fn pending_verifications(&self) -> usize {
        self.ctx.pending.len()
    }

    /// The connection of a channel owned by this shard.
    pub fn conn_of(&self, channel: ChannelId) -> Option<ConnId> {
        self.ctx.by_channel.get(&channel).copied()
    }

    /// The channel of a connection, once its handshake completed.
    pub fn channel_of(&self, conn: ConnId) -> Option<&Arc<Channel>> {
        self.conns.get(&conn).and_then(|c| c.st.channel.as_ref())
    }

    /// An accepted connection from `remote`, before it is given a slot or read (the
    /// listener's check, §7.2): refused when its address is excluded or its IP group or
    /// subnet is full (channels, attempts and unverified connections all count). When `full`
    /// (the shard's inbound table is at its cap) an inbound connection is picked to evict
    /// (see [`super::eviction`]); with none to evict the newcomer is refused. Every refusal
    /// and eviction is counted ([`AdmissionStats`](super::stats::AdmissionStats)) and logged at debug.
    pub fn screen_inbound(&mut self, remote: SocketAddr, full: bool, now_ms: u64) -> Screening {
        let remote = canonical(remote);
        let ctx = &mut self.ctx;
        if ctx.shared.exclusion.lock().check(*remote.ip(), now_ms) {
            ctx.stats.admission.excluded += 1;
            tracing::debug!(%remote, "inbound refused: excluded");
            return Screening::Refuse;
        }
        match ctx.shared.channels.check_inbound(&remote) {
            Ok(()) => {}
            Err(e) => {
                ctx.stats.admission.record_limit(e);
                tracing::debug!(%remote, error = %e, "inbound refused");
                return Screening::Refuse;
            }
        }
        if !full {
            return Screening::Accept;
        }
        match self.next_victim() {
            Some((victim, verified)) => {
                let a = &mut self.ctx.stats.admission;
                if verified {
                    a.evicted_channels += 1;
                } else {
                    a.evicted_unverified += 1;
                }
                tracing::debug!(%remote, victim = victim.0, verified, "inbound table full: evicting");
                Screening::Evict(victim)
            }
            None => {
                self.ctx.stats.admission.full += 1;
                tracing::debug!(%remote, "inbound refused: table full, nothing to evict");
                Screening::Refuse
            }
        }
    }

    /// The next eviction victim still worth evicting (open, inbound, and not authenticated
    /// since it was picked as an unverified one); picks a new batch when none is left.
    fn next_victim(&mut self) -> Option<(ConnId, bool)> {
        for attempt in 0..2 {
            while let Some((id, verified)) = self.ctx.victims.pop() {
                let valid = self.conns.get(&id).is_some_and(|c| {
                    !c.st.closed && !c.st.outbound && c.st.channel.is_some() == verified
                });
                if valid {
                    return Some((id, verified));
                }
            }
            if attempt == 0 {
                let candidates: Vec<Candidate<ConnId>> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| !c.st.outbound && !c.st.closed)
                    .map(|(id, c)| Candidate {
                        id: *id,
                        ip: IpKey::of(*c.st.remote.ip()),
                        subnet: SubnetKey::of(*c.st.remote.ip()),
                        connected_ms: c.st.connected_ms,
                        verified: c.st.channel.is_some(),
                        last_useful_ms: c.st.useful_ms,
                    })
                    .collect();
                let n = (candidates.len() / EVICTION_BATCH_DIVISOR).max(1);
                let mut picked: Vec<(ConnId, bool)> = select_victims(&candidates, n)
                    .into_iter()
                    .map(|id| {
                        (
                            id,
                            self.conns.get(&id).is_some_and(|c| c.st.channel.is_some()),
                        )
                    })
                    .collect();
                // A channel is picked only when no unverified connection is left: hand it out
                // now, never from the batch (an unverified one may arrive before the next).
                if let [(id, true)] = picked.as_slice() {
                    return Some((*id, true));
                }
                // Handed out from the back: the first pick first.
                picked.reverse();
                self.ctx.victims = picked;
            }
        }
        None
    }

    /// A connection is established (accepted, or dialed: `outbound`). An outbound connection
    /// (or one to an endpoint we were asked to dial) starts the handshake with a query. An
    /// accepted one is counted in its IP's and subnet's limits until it is authenticated or
    /// closes (over the limits it is closed at once: another shard took the place since
    /// [`screen_inbound`](Self::screen_inbound)). Until the peer's handshake response is in,
    /// no frame larger than a handshake message is accepted.
    pub fn on_connected(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        outbound: bool,
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut ShardOutput,
    ) {
        if self.conns.contains_key(&conn) {
            // The loop reused a live id: forget the old connection first.
            self.on_closed(conn, now_ms, out);
        }
        let remote = canonical(remote);
        let outbound = self.ctx.pending_dials.remove(&remote) || outbound;
        self.ctx.stats.connections += 1;
        let config = &self.ctx.shared.config;
        let mut st = ConnState {
            remote,
            outbound,
            connected_ms: now_ms,
            counted: false,
            invalid: Budget::new(config.max_invalid_signatures, 1, now_ms),
            work: Budget::new(
                config.verify_per_sec.saturating_mul(2),
                config.verify_per_sec,
                now_ms,
            ),
            suspect: 0,
            useful_ms: 0,
            epoch: self.ctx.next_epoch,
            hs: None,
            channel: None,
            closed: false,
            inflight: 0,
            held: Vec::new(),
            held_bytes: 0,
            deadline_sent_ms: now_ms,
        };
        let deadline = now_ms.saturating_add(self.ctx.shared.config.handshake_timeout_ms);
        out.io.push(IoAction::Deadline {
            conn,
            at_ms: deadline,
        });
        self.ctx.hs_deadlines.push_back((deadline, conn, st.epoch));
        self.ctx.next_epoch += 1;
        let ctx = &mut self.ctx;
        if outbound {
            let mut hctx = HandshakeCtx {
                cookies: &mut ctx.cookies,
                identity: &ctx.shared.identity,
                genesis: ctx.genesis,
                remote: to_socket_addr(remote),
                now_ms,
            };
            match Handshake::initiate(&mut hctx, rng) {
                Ok((hs, query)) => {
                    st.hs = Some(hs);
                    ctx.send(conn, None, &Message::NodeIdHandshake(query), now_ms, out);
                }
                Err(outcome) => {
                    st.hs = Some(Handshake::respond());
                    ctx.fail_handshake(conn, &mut st, outcome, out);
                }
            }
        } else {
            st.hs = Some(Handshake::respond());
            match ctx.shared.channels.add_inbound(&remote) {
                Ok(()) => st.counted = true,
                Err(e) => {
                    ctx.stats.admission.record_limit(e);
                    tracing::debug!(remote = %remote, error = %e, "inbound refused");
                    let outcome = if e == ChannelError::SubnetLimit {
                        HandshakeOutcome::MaxPerSubnet
                    } else {
                        HandshakeOutcome::MaxPerIp
                    };
                    ctx.close(conn, &mut st, CloseReason::Handshake(outcome), true, out);
                }
            }
        }
        if !st.closed {
            let network = ctx.network;
            self.conns.insert(
                conn,
                Conn {
                    deframer: Deframer::with_max_payload(network, MAX_HANDSHAKE_PAYLOAD),
                    st,
                },
            );
        }
    }

    /// A dial requested with [`ShardCommand::Dial`] failed before connecting.
    pub fn on_dial_failed(&mut self, endpoint: SocketAddrV6, _now_ms: u64, out: &mut ShardOutput) {
        let endpoint = canonical(endpoint);
        self.ctx.pending_dials.remove(&endpoint);
        self.ctx.stats.dials_failed += 1;
        out.events.push(CrawlerEvent::DialFailed { endpoint });
    }

    /// Bytes arrived on a connection (each received buffer once, in order).
    pub fn on_bytes(
        &mut self,
        conn: ConnId,
        bytes: &[u8],
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut ShardOutput,
    ) {
        let Some(Conn { deframer, st }) = self.conns.get_mut(&conn) else {
            return;
        };
        let ctx = &mut self.ctx;
        ctx.stats.bytes_in += bytes.len() as u64;
        let result = deframer.feed_ctl(bytes, |header, payload| {
            if st.closed {
                return None;
            }
            ctx.stats.messages_in[header.message_type.as_u8() as usize & 15] += 1;
            ctx.frame(conn, st, header, payload, now_ms, rng, out)
        });
        if let Err(e) = result {
            if matches!(e, DecodeError::PayloadTooLarge { .. })
                && deframer.max_payload() < MAX_PAYLOAD
            {
                ctx.stats.admission.oversize_before_handshake += 1;
            }
            tracing::debug!(remote = %st.remote, error = %e, "header error: closing");
            ctx.close(conn, st, CloseReason::HeaderError, true, out);
        } else if st.channel.is_some()
            && !st.closed
            && now_ms >= st.deadline_sent_ms.saturating_add(DEADLINE_REFRESH_MS)
        {
            st.deadline_sent_ms = now_ms;
            out.io.push(IoAction::Deadline {
                conn,
                at_ms: now_ms.saturating_add(ctx.shared.config.idle_timeout_ms),
            });
        }
        if st.closed {
            self.conns.remove(&conn);
        }
    }

    /// The result of the verify request `id`. Results for connections that closed meanwhile
    /// (and unknown ids) are ignored.
    pub fn on_verified(
        &mut self,
        id: u64,
        ok: bool,
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut ShardOutput,
    ) {
        let Some((conn, epoch, kind)) = self.ctx.pending.remove(&id) else {
            return;
        };
        let Some(Conn { st, .. }) = self.conns.get_mut(&conn) else {
            self.ctx.stats.verify_orphaned += 1;
            return;
        };
        let ctx = &mut self.ctx;
        if st.closed || st.epoch != epoch {
            ctx.stats.verify_orphaned += 1;
            return;
        }
        st.inflight = st.inflight.saturating_sub(1);
        match kind {
            Pending::Handshake => ctx.handshake_verified(conn, st, ok, now_ms, rng, out),
            Pending::Vote {
                channel,
                account,
                hashes,
                timestamp,
                rebroadcasted,
            } => {
                if ok {
                    ctx.stats.votes_valid += 1;
                    st.useful_ms = now_ms;
                    out.events.push(CrawlerEvent::Vote {
                        channel,
                        account,
                        hashes,
                        timestamp,
                        rebroadcasted,
                    });
                } else {
                    ctx.stats.invalid_vote_signature += 1;
                    ctx.invalid_signature(conn, st, now_ms, out);
                }
            }
            Pending::Block {
                channel,
                hash,
                block,
                retry,
            } => {
                if ok {
                    st.useful_ms = now_ms;
                    out.events.push(CrawlerEvent::Block {
                        channel,
                        hash,
                        block,
                    });
                } else if let Some(key) = retry {
                    let signature = *block.signature();
                    ctx.request(
                        conn,
                        st,
                        key,
                        SignedMessage::Digest(hash),
                        signature,
                        Pending::Block {
                            channel,
                            hash,
                            block,
                            retry: None,
                        },
                        now_ms,
                        out,
                    );
                } else {
                    ctx.stats.invalid_block_signature += 1;
                    ctx.invalid_signature(conn, st, now_ms, out);
                }
            }
            Pending::Telemetry { channel, data } => {
                if !ok {
                    ctx.stats.invalid_telemetry_signature += 1;
                    ctx.invalid_signature(conn, st, now_ms, out);
                } else if check_genesis(&data, ctx.network) == Err(TelemetryError::GenesisMismatch)
                {
                    ctx.stats.genesis_mismatch += 1;
                    if let Some(ch) = st.channel.clone() {
                        out.events
                            .push(CrawlerEvent::GenesisMismatch { channel: ch });
                    }
                    ctx.close(conn, st, CloseReason::Excluded, true, out);
                } else {
                    st.useful_ms = now_ms;
                    out.events.push(CrawlerEvent::Telemetry { channel, data });
                }
            }
        }
        if st.closed {
            self.conns.remove(&conn);
        }
        self.close_replaced(out);
    }

    /// Closes this shard's channels that a newer connection of the same node replaced.
    fn close_replaced(&mut self, out: &mut ShardOutput) {
        while let Some(channel) = self.ctx.replaced.pop() {
            if let Some(conn) = self.ctx.by_channel.get(&channel).copied()
                && let Some(mut c) = self.conns.remove(&conn)
            {
                self.ctx
                    .close(conn, &mut c.st, CloseReason::Replaced, true, out);
            }
        }
    }

    /// The loop closed the connection (peer closed, error, deadline). Removes its channel
    /// (emitting `ChannelDown`); unknown connections are ignored.
    pub fn on_closed(&mut self, conn: ConnId, _now_ms: u64, out: &mut ShardOutput) {
        if let Some(mut c) = self.conns.remove(&conn) {
            self.ctx
                .close(conn, &mut c.st, CloseReason::Requested, false, out);
        }
    }

    /// A command from the crawler core.
    pub fn on_command(
        &mut self,
        command: ShardCommand,
        now_ms: u64,
        _rng: &mut impl RngCore,
        out: &mut ShardOutput,
    ) {
        match command {
            ShardCommand::Send { channel, bytes } => {
                let conn = self.ctx.by_channel.get(&channel).copied();
                match conn.and_then(|c| self.conns.get(&c).map(|x| (c, x))) {
                    Some((conn, c)) if !c.st.closed => {
                        if let Some(ch) = &c.st.channel {
                            ch.touch_sent(now_ms);
                        }
                        self.ctx.count_out(&bytes);
                        out.io.push(IoAction::Send {
                            conn,
                            bytes: bytes.to_vec(),
                        });
                    }
                    _ => self.ctx.stats.send_to_closed += 1,
                }
            }
            ShardCommand::Dial { endpoint } => {
                let endpoint = canonical(endpoint);
                self.ctx.stats.dials += 1;
                if self.ctx.pending_dials.len() < MAX_PENDING_DIALS {
                    self.ctx.pending_dials.insert(endpoint);
                }
                out.io.push(IoAction::Dial { endpoint });
            }
            ShardCommand::Close { channel, reason } => {
                if let Some(conn) = self.ctx.by_channel.get(&channel).copied()
                    && let Some(mut c) = self.conns.remove(&conn)
                {
                    self.ctx.close(conn, &mut c.st, reason, true, out);
                }
            }
        }
    }

    /// Timers: syn cookie purge every cleanup period, handshake timeouts.
    pub fn on_tick(&mut self, now_ms: u64, out: &mut ShardOutput) {
        let ctx = &mut self.ctx;
        let config = &ctx.shared.config;
        if now_ms >= ctx.last_purge_ms.saturating_add(config.cleanup_period_ms) {
            ctx.last_purge_ms = now_ms;
            let cutoff = config.syn_cookie_cutoff_ms;
            ctx.stats.cookies_purged += ctx.cookies.purge(now_ms, cutoff) as u64;
        }
        while let Some(&(at, conn, epoch)) = ctx.hs_deadlines.front() {
            if at > now_ms {
                break;
            }
            ctx.hs_deadlines.pop_front();
            let expired = self
                .conns
                .get(&conn)
                .is_some_and(|c| c.st.channel.is_none() && !c.st.closed && c.st.epoch == epoch);
            if expired && let Some(mut c) = self.conns.remove(&conn) {
                ctx.close(conn, &mut c.st, CloseReason::Timeout, true, out);
            }
        }
    }
}

impl Ctx {
    fn next_id(&mut self) -> u64 {
        let id = self.next_verify;
        self.next_verify = self.next_verify.wrapping_add(1);
        id
    }

    /// Issues a signature check unless the connection has too many in flight. A channel's
    /// checks are paid from its work budget; past it the peer is cut ([`Self::cut`]). The
    /// check is made alone (outside the batch) while the source is suspect.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        key: PublicKey,
        message: SignedMessage,
        signature: crate::types::Signature,
        pending: Pending,
        now_ms: u64,
        out: &mut ShardOutput,
    ) -> bool {
        let handshake = matches!(pending, Pending::Handshake);
        if st.inflight >= MAX_INFLIGHT_PER_CONN && !handshake {
            self.stats.verify_overflow += 1;
            return false;
        }
        if !handshake && !st.work.take(1, now_ms) {
            self.cut(conn, st, Misbehaviour::VerifyWork, now_ms, out);
            return false;
        }
        let alone = st.suspect > 0;
        if alone {
            st.suspect -= 1;
            self.stats.misbehaviour.verify_alone += 1;
        }
        st.inflight += 1;
        let id = self.next_id();
        self.pending.insert(id, (conn, st.epoch, pending));
        self.stats.verify_requests += 1;
        out.verify.push(VerifyRequest {
            id,
            key,
            message,
            signature,
            alone,
        });
        true
    }

    /// An invalid signature (vote, block, telemetry) from this peer: its next checks are made
    /// alone, and it pays from its invalid-signature budget; past it, it is cut.
    fn invalid_signature(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        now_ms: u64,
        out: &mut ShardOutput,
    ) {
        st.suspect = SUSPECT_CHECKS;
        if !st.invalid.take(1, now_ms) {
            self.cut(conn, st, Misbehaviour::InvalidSignatures, now_ms, out);
        }
    }

    /// Cuts a misbehaving peer: closes the connection and excludes its IP at once (the
    /// exclusion of §7.5 with its first offence counted as a second), counted per cause.
    fn cut(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        cause: Misbehaviour,
        now_ms: u64,
        out: &mut ShardOutput,
    ) {
        if st.closed {
            return;
        }
        self.stats.misbehaviour.record(cause);
        {
            let mut ex = self.shared.exclusion.lock();
            while ex.add(*st.remote.ip(), now_ms) < SCORE_LIMIT {}
        }
        tracing::debug!(remote = %st.remote, ?cause, "peer over its budget: cut and excluded");
        self.close(conn, st, CloseReason::Misbehaviour(cause), true, out);
    }

    fn count_out(&mut self, mut bytes: &[u8]) {
        self.stats.bytes_out += bytes.len() as u64;
        while let Some((head, _)) = bytes.split_first_chunk::<HEADER_LEN>() {
            let Ok(h) = Header::decode(head, self.network) else {
                return;
            };
            self.stats.messages_out[h.message_type.as_u8() as usize & 15] += 1;
            bytes = bytes.get(h.frame_len()..).unwrap_or(&[]);
        }
    }

    fn send(
        &mut self,
        conn: ConnId,
        channel: Option<&Channel>,
        msg: &Message,
        now_ms: u64,
        out: &mut ShardOutput,
    ) {
        let bytes = msg.encode(self.network);
        self.stats.bytes_out += bytes.len() as u64;
        self.stats.messages_out[msg.message_type().as_u8() as usize & 15] += 1;
        if let Some(ch) = channel {
            ch.touch_sent(now_ms);
        }
        out.io.push(IoAction::Send { conn, bytes });
    }

    /// Marks the connection closed, removes its channel (ChannelDown) and, if `tell_io`, asks
    /// the loop to close it. The caller removes the connection from the map.
    fn close(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        reason: CloseReason,
        tell_io: bool,
        out: &mut ShardOutput,
    ) {
        if st.closed {
            return;
        }
        st.closed = true;
        if tell_io {
            self.stats.closes.record(reason);
            out.io.push(IoAction::Close { conn, reason });
        } else {
            self.stats.closed_remotely += 1;
        }
        if let Some(hs) = &st.hs
            && hs.query_sent()
        {
            // Our cookie for this endpoint, if still outstanding, dies with the connection.
            self.cookies.take(to_socket_addr(st.remote));
        }
        if st.counted {
            st.counted = false;
            self.shared.channels.end_inbound(&st.remote);
        }
        if let Some(ch) = st.channel.take() {
            self.shared.channels.remove_channel(&ch);
            self.by_channel.remove(&ch.id());
            out.events.push(CrawlerEvent::ChannelDown(ch));
        }
        st.held = Vec::new();
        st.held_bytes = 0;
    }

    fn fail_handshake(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        outcome: HandshakeOutcome,
        out: &mut ShardOutput,
    ) {
        self.stats.handshake.record(outcome);
        self.close(conn, st, CloseReason::Handshake(outcome), true, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        header: Header,
        payload: &[u8],
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut ShardOutput,
    ) -> Option<usize> {
        if st.channel.is_some() {
            self.realtime(conn, st, header, payload, now_ms, out);
            return None;
        }
        if st.hs.as_ref().is_some_and(|h| h.pending().is_some()) {
            // The peer may be realtime already: hold its frames until our check completes.
            if st.held.len() < MAX_HELD_FRAMES && st.held_bytes + payload.len() <= MAX_HELD_BYTES {
                st.held_bytes += payload.len();
                st.held.push((header, payload.into()));
            } else {
                self.stats.held_dropped += 1;
            }
            return None;
        }
        match header.message_type {
            MessageType::NodeIdHandshake => {
                let msg = match NodeIdHandshake::decode_payload(header.extensions, payload) {
                    Ok(m) => m,
                    Err(e) => {
                        // Neither flag (the only way a sized handshake payload fails).
                        self.stats.payload_errors.record(&e);
                        self.fail_handshake(conn, st, HandshakeOutcome::Protocol, out);
                        return None;
                    }
                };
                let hs = st.hs.as_mut()?;
                let mut hctx = HandshakeCtx {
                    cookies: &mut self.cookies,
                    identity: &self.shared.identity,
                    genesis: self.genesis,
                    remote: to_socket_addr(st.remote),
                    now_ms,
                };
                let step = hs.on_message(&msg, header.version_using, &mut hctx, rng);
                if let Some(reply) = step.reply {
                    self.send(conn, None, &Message::NodeIdHandshake(reply), now_ms, out);
                }
                match step.verdict {
                    Verdict::Continue => {}
                    Verdict::Verify(check) => {
                        self.request(
                            conn,
                            st,
                            check.key,
                            SignedMessage::Handshake(check.signed),
                            check.signature,
                            Pending::Handshake,
                            now_ms,
                            out,
                        );
                        // The peer's handshake messages are all in: what follows may be
                        // realtime traffic (held until the check completes).
                        return Some(MAX_PAYLOAD);
                    }
                    Verdict::Abort(outcome) => self.fail_handshake(conn, st, outcome, out),
                }
            }
            MessageType::BulkPull
            | MessageType::BulkPullAccount
            | MessageType::BulkPush
            | MessageType::FrontierReq => {
                self.close(conn, st, CloseReason::BootstrapNotServed, true, out);
            }
            _ => self.close(conn, st, CloseReason::MessageBeforeHandshake, true, out),
        }
        None
    }

    fn handshake_verified(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        ok: bool,
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut ShardOutput,
    ) {
        let Some(hs) = st.hs.as_mut() else {
            return;
        };
        let peer = match hs.on_verified(ok) {
            Ok(p) => p,
            Err(outcome) => return self.fail_handshake(conn, st, outcome, out),
        };
        let new = NewChannel {
            node_id: peer.node_id,
            protocol_version: peer.version_using,
            remote: st.remote,
            shard: self.shard,
            direction: if st.outbound {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            now_ms,
        };
        let shared = &self.shared;
        let own = shared.identity.node_id();
        let (ch, replaced) = match admit(
            &shared.channels,
            &shared.exclusion,
            &shared.config,
            new,
            st.counted,
            &own,
        ) {
            Ok(x) => x,
            Err(outcome) => return self.fail_handshake(conn, st, outcome, out),
        };
        if let Some(old) = replaced {
            self.stats.channels_replaced += 1;
            tracing::debug!(node_id = %old.node_id(), old = %old.remote(), new = %ch.remote(), "channel replaced by another connection of the same node");
            if old.shard() == self.shard {
                self.replaced.push(old.id());
            } else {
                out.events.push(CrawlerEvent::Replaced(old));
            }
        }
        // The channel took over the unverified connection's place in the limits.
        st.counted = false;
        self.stats.handshake.record(HandshakeOutcome::Ok);
        st.hs = None;
        st.channel = Some(ch.clone());
        self.by_channel.insert(ch.id(), conn);
        // keepalive_self at once (§6.2 step 5).
        let mut peers = [EMPTY_PEER; 8];
        let mut n = 0;
        for other in self.shared.channels.random_set(9, rng) {
            if other.id() != ch.id() && n < 8 {
                peers[n] = other.peering_endpoint();
                n += 1;
            }
        }
        let k = keepalive_self(self.shared.config.listen_port, &peers[..n]);
        self.send(conn, Some(&ch), &Message::Keepalive(k), now_ms, out);
        // The rep crawler's first query, in the same turn (one segment with the keepalive).
        let query = self.shared.config.query_on_up.then(|| {
            let q = self.shared.query_board.pick(rng);
            let req = Message::ConfirmReq(ConfirmReq { pairs: vec![q] });
            self.send(conn, Some(&ch), &req, now_ms, out);
            self.stats.queries_on_up += 1;
            q
        });
        out.events.push(CrawlerEvent::ChannelUp(ch.clone(), query));
        st.deadline_sent_ms = now_ms;
        out.io.push(IoAction::Deadline {
            conn,
            at_ms: now_ms.saturating_add(self.shared.config.idle_timeout_ms),
        });
        let held = std::mem::take(&mut st.held);
        st.held_bytes = 0;
        for (header, payload) in held {
            if st.closed {
                break;
            }
            self.realtime(conn, st, header, &payload, now_ms, out);
        }
    }

    fn realtime(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        header: Header,
        payload: &[u8],
        now_ms: u64,
        out: &mut ShardOutput,
    ) {
        let Some(ch) = st.channel.as_ref() else {
            return;
        };
        ch.touch_received(now_ms);
        let channel = ch.id();
        match header.message_type {
            MessageType::Keepalive => match Keepalive::decode_payload(payload) {
                Ok(k) => {
                    let slot0 = k.peers[0];
                    if slot0.ip().is_unspecified() && slot0.port() != 0 {
                        ch.set_peering_port(slot0.port());
                    }
                    out.events.push(CrawlerEvent::Keepalive {
                        channel,
                        peers: k.peers,
                    });
                }
                Err(e) => self.stats.payload_errors.record(&e),
            },
            // publish and confirm_ack payloads pass the shared duplicate filter first (§2.7)
            MessageType::Publish | MessageType::ConfirmAck
                if self.shared.filter.check_and_insert(payload, now_ms) =>
            {
                if header.message_type == MessageType::Publish {
                    self.stats.duplicate_publish += 1;
                } else {
                    self.stats.duplicate_confirm_ack += 1;
                }
            }
            MessageType::Publish => self.publish(conn, st, channel, header, payload, now_ms, out),
            MessageType::ConfirmAck => {
                self.confirm_ack(conn, st, channel, header, payload, now_ms, out)
            }
            MessageType::TelemetryAck => self.telemetry(conn, st, payload, now_ms, out),
            MessageType::ConfirmReq => self.stats.confirm_req_ignored += 1,
            MessageType::NodeIdHandshake => self.stats.handshake_ignored += 1,
            MessageType::TelemetryReq
            | MessageType::AscPullReq
            | MessageType::AscPullAck
            | MessageType::BulkPull
            | MessageType::BulkPush
            | MessageType::FrontierReq
            | MessageType::BulkPullAccount => self.stats.realtime_ignored += 1,
        }
    }

    /// A new (not duplicate) publish on `channel`.
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        channel: ChannelId,
        header: Header,
        payload: &[u8],
        now_ms: u64,
        out: &mut ShardOutput,
    ) {
        let block = match Publish::decode_payload(header.extensions, payload) {
            Ok(p) => p.block,
            Err(e) => {
                self.shared.filter.clear(payload);
                self.stats.payload_errors.record(&e);
                return;
            }
        };
        if !self.thresholds.validate_entry(&block) {
            self.shared.filter.clear(payload);
            self.stats.insufficient_work += 1;
            return;
        }
        let hash = block.hash();
        let (key, retry) = match &block {
            Block::Open(b) => (b.account, None),
            Block::State(b) => {
                let epoch = (1..=2)
                    .find(|&n| b.link == epoch_link(n))
                    .and_then(|n| epoch_signer(self.network, n))
                    .filter(|k| *k != b.account);
                (b.account, epoch)
            }
            _ => {
                // The signer of send/receive/change blocks is only known to a ledger.
                out.events.push(CrawlerEvent::Block {
                    channel,
                    hash,
                    block: Arc::new(block),
                });
                return;
            }
        };
        let signature = *block.signature();
        let pending = Pending::Block {
            channel,
            hash,
            block: Arc::new(block),
            retry,
        };
        if !self.request(
            conn,
            st,
            key,
            SignedMessage::Digest(hash),
            signature,
            pending,
            now_ms,
            out,
        ) {
            self.shared.filter.clear(payload);
        }
    }

    /// A new (not duplicate) confirm_ack on `channel`.
    #[allow(clippy::too_many_arguments)]
    fn confirm_ack(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        channel: ChannelId,
        header: Header,
        payload: &[u8],
        now_ms: u64,
        out: &mut ShardOutput,
    ) {
        let view = match VoteView::new(header.extensions, payload) {
            Ok(v) => v,
            Err(e) => {
                self.shared.filter.clear(payload);
                self.stats.payload_errors.record(&e);
                return;
            }
        };
        let account = view.account();
        if account.is_zero() {
            self.stats.zero_account_vote += 1;
            return;
        }
        if st.inflight >= MAX_INFLIGHT_PER_CONN {
            self.shared.filter.clear(payload);
            self.stats.verify_overflow += 1;
            return;
        }
        let timestamp = view.timestamp();
        let digest = vote_hash_bytes(view.hash_bytes(), timestamp);
        let pending = Pending::Vote {
            channel,
            account,
            hashes: view.hashes().collect(),
            timestamp,
            rebroadcasted: header.extensions.rebroadcasted(),
        };
        self.request(
            conn,
            st,
            account,
            SignedMessage::Digest(digest),
            view.signature(),
            pending,
            now_ms,
            out,
        );
    }

    fn telemetry(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        payload: &[u8],
        now_ms: u64,
        out: &mut ShardOutput,
    ) {
        let Some(ch) = st.channel.as_ref() else {
            return;
        };
        let channel = ch.id();
        let mut ack = match TelemetryAck::decode_payload(payload) {
            Ok(a) => a,
            Err(e) => {
                self.stats.payload_errors.record(&e);
                return;
            }
        };
        match check_received(&ack, ch.node_id()) {
            Ok(_) => {}
            Err(TelemetryError::Empty) => {
                self.stats.telemetry_empty += 1;
                return;
            }
            Err(_) => {
                self.stats.telemetry_node_id_mismatch += 1;
                return;
            }
        }
        let (Some(data), Some(signed)) = (ack.data.take(), TelemetryData::signed_region(payload))
        else {
            return;
        };
        debug_assert_eq!(signed.len() + TELEMETRY_SIGNED_FROM, payload.len());
        let key = data.node_id;
        let signature = data.signature;
        self.request(
            conn,
            st,
            key,
            SignedMessage::Bytes(signed.to_vec()),
            signature,
            Pending::Telemetry {
                channel,
                data: Box::new(data),
            },
            now_ms,
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::vote_hash;

    #[test]
    fn vote_hash_from_bytes_matches_crypto() {
        let hashes = [BlockHash([1; 32]), BlockHash([2; 32])];
        let bytes: Vec<u8> = hashes.iter().flat_map(|h| h.0).collect();
        assert_eq!(vote_hash_bytes(&bytes, 77), vote_hash(&hashes, 77));
        assert_eq!(vote_hash_bytes(&[], 5), vote_hash(&[], 5));
    }

    #[test]
    fn keepalive_self_layout() {
        let p = |i: u16| SocketAddrV6::new(Ipv6Addr::LOCALHOST, 1000 + i, 0, 0);
        let peers: Vec<_> = (0..8).map(p).collect();
        let k = keepalive_self(7075, &peers);
        assert_eq!(
            k.peers[0],
            SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 7075, 0, 0)
        );
        assert_eq!(k.peers[1], EMPTY_PEER);
        assert_eq!(&k.peers[2..4], &[p(0), p(1)]);
        assert_eq!(&k.peers[4..], &[p(4), p(5), p(6), p(7)]);
        let k = keepalive_self(1, &[p(0)]);
        assert_eq!(k.peers[2], p(0));
        assert_eq!(&k.peers[3..], &[EMPTY_PEER; 5]);
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// The protocol state of one connection before its handshake completes is small and
    /// fixed: docs/security.md quotes these figures.
    #[test]
    fn per_connection_state_is_bounded() {
        let conn = std::mem::size_of::<Conn>();
        let deframer = std::mem::size_of::<Deframer>();
        eprintln!(
            "Conn {conn} B (Deframer {deframer} B), spill ≤ {} B",
            HEADER_LEN + MAX_HANDSHAKE_PAYLOAD
        );
        assert!(conn <= 512, "Conn grew to {conn} bytes");
    }
}
