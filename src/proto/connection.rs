//! Connection lifecycle in a shard core: the protocol state of one connection
//! (`ConnState`), the shard's state apart from its connection table (`ShardState`), and
//! what every other job of the core does to a connection: send on it, close it (its channel,
//! cookie and unverified count go with it), cut a misbehaving peer, fail its handshake.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;

use super::budget::Budget;
use super::config::ProtoConfig;
use super::cookies::SynCookies;
use super::events::VerifyRequest;
use super::events::{CloseReason, ConnId, CrawlerEvent, HandshakeOutcome, IoAction, Misbehaviour};
use super::exclusion::{PeerExclusion, SCORE_LIMIT};
use super::filter::DuplicateFilter;
use super::handshake::Handshake;
use super::identity::NodeIdentity;
use super::repcrawler::QueryBoard;
use super::stats::ShardStats;
use crate::channels::{Channel, ChannelId, ChannelMap};
use crate::crypto::{WorkThresholds, genesis_hash};
use crate::endpoint::Endpoint;
use crate::types::{BlockHash, Network, PublicKey};
use crate::wire::{Deframer, HEADER_LEN, Header, MAX_HANDSHAKE_PAYLOAD, Message};

/// A hasher for integer ids (connection, channel, verify ids): one multiply, no SipHash.
#[derive(Default, Clone, Copy)]
pub(super) struct IdHasher(u64);

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

pub(super) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// What one call into the shard core produced. The loop drains it (or calls
/// [`ShardOutput::clear`]) after each call.
#[derive(Debug, Default)]
pub struct ShardOutput {
    /// Socket actions, in order.
    pub io: Vec<IoAction>,
    /// Signature checks to run; answer each with [`ShardCore::on_verified`](super::shard::ShardCore::on_verified).
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

/// What a check in flight was issued for: the step to take with its result.
// Not boxed: most checks in flight are votes, and a box would cost an allocation each; the
// map of checks in flight is bounded (per connection and by the connection caps).
#[allow(clippy::large_enum_variant)]
pub(super) enum Pending {
    /// The peer's handshake response: admit the peer, or close.
    Handshake,
    /// A vote, a block or a telemetry_ack: the event the crawler gets if the signature
    /// verifies. `retry`: for a state block with an epoch link, the epoch signer to try if
    /// the account's signature fails.
    Event {
        event: CrawlerEvent,
        retry: Option<PublicKey>,
    },
}

/// The protocol state of one connection.
pub(super) struct ConnState {
    pub(super) remote: Endpoint,
    pub(super) outbound: bool,
    pub(super) connected_ms: u64,
    /// Counted in the map's per-IP/subnet limits as an unverified inbound connection.
    pub(super) counted: bool,
    /// Invalid signatures this peer may still send.
    pub(super) invalid: Budget,
    /// Signature checks this peer may still cause.
    pub(super) work: Budget,
    /// Checks still to make alone after an invalid signature ([`SUSPECT_CHECKS`]).
    pub(super) suspect: u32,
    /// Last valid vote, block or telemetry (eviction protects recent ones).
    pub(super) useful_ms: u64,
    /// Which connection of this id it is (ids may be reused by a loop).
    pub(super) epoch: u64,
    /// Some until the channel exists.
    pub(super) hs: Option<Handshake>,
    pub(super) channel: Option<Arc<Channel>>,
    pub(super) closed: bool,
    pub(super) inflight: u32,
    pub(super) held: Vec<(Header, Box<[u8]>)>,
    pub(super) held_bytes: usize,
    pub(super) deadline_sent_ms: u64,
}

impl ConnState {
    /// A connection from (or to, `outbound`) `remote`, established now; `epoch` tells it from
    /// earlier connections that had the same id.
    pub(super) fn new(
        remote: Endpoint,
        outbound: bool,
        epoch: u64,
        config: &ProtoConfig,
        now_ms: u64,
    ) -> ConnState {
        ConnState {
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
            epoch,
            hs: None,
            channel: None,
            closed: false,
            inflight: 0,
            held: Vec::new(),
            held_bytes: 0,
            deadline_sent_ms: now_ms,
        }
    }
}

/// A connection: its deframer and its state (apart, so a frame handler may change the state
/// while the deframer is borrowed).
pub(super) struct Connection {
    pub(super) deframer: Deframer,
    pub(super) st: ConnState,
}

impl Connection {
    /// A new connection, its deframer limited to handshake-sized frames until the peer is
    /// authenticated.
    pub(super) fn new(network: Network, st: ConnState) -> Connection {
        Connection {
            deframer: Deframer::with_max_payload(network, MAX_HANDSHAKE_PAYLOAD),
            st,
        }
    }
}

/// The state of a shard core apart from its connection table: cookies, checks in flight,
/// channel index, counters and the shared handles. Every job of the core is a method on it
/// taking the connection's `ConnState`.
pub(super) struct ShardState {
    pub(super) shard: u16,
    pub(super) shared: ShardShared,
    pub(super) network: Network,
    pub(super) genesis: BlockHash,
    pub(super) thresholds: WorkThresholds,
    pub(super) cookies: SynCookies,
    pub(super) by_channel: IdMap<ChannelId, ConnId>,
    /// Signature checks in flight: the connection (and its epoch) and what to do next.
    pub(super) pending: IdMap<u64, (ConnId, u64, Pending)>,
    /// Numbers connections in order of arrival: a check or deadline of an earlier connection
    /// that had the same id never applies to a later one.
    pub(super) next_epoch: u64,
    pub(super) next_verify: u64,
    pub(super) pending_dials: HashSet<Endpoint>,
    pub(super) hs_deadlines: VecDeque<(u64, ConnId, u64)>,
    pub(super) last_purge_ms: u64,
    /// Eviction victims picked in advance (with whether each was verified when picked).
    pub(super) victims: Vec<(ConnId, bool)>,
    /// Channels of this shard replaced by a newer connection of the same node, to close
    /// once the current call is done with the connection map.
    pub(super) replaced: Vec<ChannelId>,
    pub(super) stats: ShardStats,
}

impl ShardState {
    /// The state of shard `shard` with nothing open yet.
    pub(super) fn new(shard: u16, shared: ShardShared) -> ShardState {
        let config = &shared.config;
        let network = config.network;
        ShardState {
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
        }
    }

    /// Cuts a misbehaving peer: closes the connection and excludes its IP at once (the
    /// exclusion of §7.5 with its first offence counted as a second), counted per cause.
    pub(super) fn cut(
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

    /// Counts commanded bytes going out (one or more whole frames).
    pub(super) fn count_out(&mut self, mut bytes: &[u8]) {
        self.stats.bytes_out += bytes.len() as u64;
        while let Some((head, _)) = bytes.split_first_chunk::<HEADER_LEN>() {
            let Ok(h) = Header::decode(head, self.network) else {
                return;
            };
            self.stats.messages_out[h.message_type.as_u8() as usize & 15] += 1;
            bytes = bytes.get(h.frame_len()..).unwrap_or(&[]);
        }
    }

    /// Encodes and queues one message of ours.
    pub(super) fn send(
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
    pub(super) fn close(
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
            self.cookies.take(st.remote);
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

    /// Counts a failed handshake and closes the connection.
    pub(super) fn fail_handshake(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        outcome: HandshakeOutcome,
        out: &mut ShardOutput,
    ) {
        self.stats.handshake.record(outcome);
        self.close(conn, st, CloseReason::Handshake(outcome), true, out);
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// The protocol state of one connection before its handshake completes is small and
    /// fixed: docs/security.md quotes these figures.
    #[test]
    fn per_connection_state_is_bounded() {
        let conn = std::mem::size_of::<Connection>();
        let deframer = std::mem::size_of::<Deframer>();
        eprintln!(
            "Conn {conn} B (Deframer {deframer} B), spill ≤ {} B",
            HEADER_LEN + MAX_HANDSHAKE_PAYLOAD
        );
        assert!(conn <= 512, "Conn grew to {conn} bytes");
    }
}
