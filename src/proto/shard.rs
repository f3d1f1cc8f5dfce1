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
//! [`ProtoConfig::query_on_up`](super::config::ProtoConfig::query_on_up), the rep crawler's first confirm_req for the channel (a pair
//! from the shared [`QueryBoard`](super::repcrawler::QueryBoard)) in the same turn, so the loop packs both into one send; the
//! pair travels to the crawler in [`CrawlerEvent::ChannelUp`], which records the query.
//! After the handshake: keepalive, publish, confirm_ack and telemetry_ack are processed; confirm_req
//! (we do not vote), telemetry_req, asc_pull_*, bootstrap and handshake messages are counted and
//! ignored.
//!
//! The core is split by job: this file holds the entry points, the connection table and what
//! the shard does with each step of a connection's handshake; [`super::connection`] the
//! per-connection state and its lifecycle (send, close, cut); [`super::handshake`] the
//! handshake state machine itself (pure: messages in, a reply and a verdict out);
//! [`super::realtime`] the realtime message checks; [`super::checks`] the signature checks in
//! flight; [`super::admission`] the channel policy; [`super::stats`] the counters.

use std::sync::Arc;

use rand::RngCore;

use super::admission::admit;
use super::connection::{ConnState, Connection, IdMap, Pending, ShardState};
pub use super::connection::{ShardOutput, ShardShared};
use super::events::{
    CloseReason, ConnId, CrawlerEvent, HandshakeOutcome, IoAction, ShardCommand, SignedMessage,
};
use super::eviction::{Candidate, select_victims};
use super::handshake::{Handshake, HandshakeCtx, Verdict};
use super::keepalive::keepalive_self_slots;
use super::stats::ShardStats;
use crate::channels::{Channel, ChannelError, ChannelId};
use crate::channels::{Direction, NewChannel};
use crate::endpoint::{Endpoint, IpKey, SubnetKey};
use crate::wire::{
    ConfirmReq, DecodeError, Header, Keepalive, MAX_PAYLOAD, Message, MessageType, NodeIdHandshake,
};

pub use super::checks::{MAX_INFLIGHT_PER_CONN, SUSPECT_CHECKS};

/// Most frames held while a handshake response is verified.
pub const MAX_HELD_FRAMES: usize = 32;
/// Most payload bytes held while a handshake response is verified.
pub const MAX_HELD_BYTES: usize = 65_536;
/// Idle deadlines are re-sent at most this often per connection.
pub const DEADLINE_REFRESH_MS: u64 = 1_000;
/// Most outstanding dials remembered (answers beyond are still handled by `outbound`).
const MAX_PENDING_DIALS: usize = 4_096;
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

/// One shard's protocol state machine. See the module docs.
pub struct ShardCore {
    conns: IdMap<ConnId, Connection>,
    state: ShardState,
}

impl std::fmt::Debug for ShardCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardCore")
            .field("shard", &self.state.shard)
            .field("connections", &self.conns.len())
            .field("pending_verify", &self.state.pending.len())
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
                self.state.shared.channels.end_inbound(&c.st.remote);
            }
        }
    }
}

impl ShardCore {
    /// A shard core with id `shard` (recorded as the owner of its channels).
    pub fn new(shard: u16, shared: ShardShared) -> ShardCore {
        ShardCore {
            conns: IdMap::default(),
            state: ShardState::new(shard, shared),
        }
    }

    /// This shard's id.
    pub fn shard(&self) -> u16 {
        self.state.shard
    }

    /// The counters.
    pub fn stats(&self) -> &ShardStats {
        &self.state.stats
    }

    /// Open connections (handshaking and realtime).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Outstanding syn cookies (handshakes we have challenged and not finished).
    pub fn cookies(&self) -> usize {
        self.state.cookies.len()
    }

    /// Signature checks issued and not answered yet.
    pub fn pending_verifications(&self) -> usize {
        self.state.pending.len()
    }

    /// The connection of a channel owned by this shard.
    pub fn conn_of(&self, channel: ChannelId) -> Option<ConnId> {
        self.state.by_channel.get(&channel).copied()
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
    pub fn screen_inbound(&mut self, remote: Endpoint, full: bool, now_ms: u64) -> Screening {
        let state = &mut self.state;
        if state.shared.exclusion.lock().check(*remote.ip(), now_ms) {
            state.stats.admission.excluded += 1;
            tracing::debug!(%remote, "inbound refused: excluded");
            return Screening::Refuse;
        }
        match state.shared.channels.check_inbound(&remote) {
            Ok(()) => {}
            Err(e) => {
                state.stats.admission.record_limit(e);
                tracing::debug!(%remote, error = %e, "inbound refused");
                return Screening::Refuse;
            }
        }
        if !full {
            return Screening::Accept;
        }
        match self.next_victim() {
            Some((victim, verified)) => {
                let a = &mut self.state.stats.admission;
                if verified {
                    a.evicted_channels += 1;
                } else {
                    a.evicted_unverified += 1;
                }
                tracing::debug!(%remote, victim = victim.0, verified, "inbound table full: evicting");
                Screening::Evict(victim)
            }
            None => {
                self.state.stats.admission.full += 1;
                tracing::debug!(%remote, "inbound refused: table full, nothing to evict");
                Screening::Refuse
            }
        }
    }

    /// The next eviction victim still worth evicting (open, inbound, and not authenticated
    /// since it was picked as an unverified one); picks a new batch when none is left.
    fn next_victim(&mut self) -> Option<(ConnId, bool)> {
        for attempt in 0..2 {
            while let Some((id, verified)) = self.state.victims.pop() {
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
                self.state.victims = picked;
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
        remote: Endpoint,
        outbound: bool,
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut ShardOutput,
    ) {
        if self.conns.contains_key(&conn) {
            // The loop reused a live id: forget the old connection first.
            self.on_closed(conn, now_ms, out);
        }
        let outbound = self.state.pending_dials.remove(&remote) || outbound;
        self.state.stats.connections += 1;
        let mut st = ConnState::new(
            remote,
            outbound,
            self.state.next_epoch,
            &self.state.shared.config,
            now_ms,
        );
        let deadline = now_ms.saturating_add(self.state.shared.config.handshake_timeout_ms);
        out.io.push(IoAction::Deadline {
            conn,
            at_ms: deadline,
        });
        self.state
            .hs_deadlines
            .push_back((deadline, conn, st.epoch));
        self.state.next_epoch += 1;
        let state = &mut self.state;
        if outbound {
            let mut hctx = HandshakeCtx {
                cookies: &mut state.cookies,
                identity: &state.shared.identity,
                genesis: state.genesis,
                remote,
                now_ms,
            };
            match Handshake::initiate(&mut hctx, rng) {
                Ok((hs, query)) => {
                    st.hs = Some(hs);
                    state.send(conn, None, &Message::NodeIdHandshake(query), now_ms, out);
                }
                Err(outcome) => {
                    st.hs = Some(Handshake::respond());
                    state.fail_handshake(conn, &mut st, outcome, out);
                }
            }
        } else {
            st.hs = Some(Handshake::respond());
            match state.shared.channels.add_inbound(&remote) {
                Ok(()) => st.counted = true,
                Err(e) => {
                    state.stats.admission.record_limit(e);
                    tracing::debug!(remote = %remote, error = %e, "inbound refused");
                    let outcome = if e == ChannelError::SubnetLimit {
                        HandshakeOutcome::MaxPerSubnet
                    } else {
                        HandshakeOutcome::MaxPerIp
                    };
                    state.close(conn, &mut st, CloseReason::Handshake(outcome), true, out);
                }
            }
        }
        if !st.closed {
            self.conns.insert(conn, Connection::new(state.network, st));
        }
    }

    /// A dial requested with [`ShardCommand::Dial`] failed before connecting.
    pub fn on_dial_failed(&mut self, endpoint: Endpoint, _now_ms: u64, out: &mut ShardOutput) {
        self.state.pending_dials.remove(&endpoint);
        self.state.stats.dials_failed += 1;
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
        let Some(Connection { deframer, st }) = self.conns.get_mut(&conn) else {
            return;
        };
        let state = &mut self.state;
        state.stats.bytes_in += bytes.len() as u64;
        let result = deframer.feed_ctl(bytes, |header, payload| {
            if st.closed {
                return None;
            }
            state.stats.messages_in.record(header.message_type.as_u8());
            if st.channel.is_some() {
                state.realtime(conn, st, header, payload, now_ms, out);
                None
            } else {
                state.handshake_frame(conn, st, header, payload, now_ms, rng, out)
            }
        });
        if let Err(e) = result {
            if matches!(e, DecodeError::PayloadTooLarge { .. })
                && deframer.max_payload() < MAX_PAYLOAD
            {
                state.stats.admission.oversize_before_handshake += 1;
            }
            tracing::debug!(remote = %st.remote, error = %e, "header error: closing");
            state.close(conn, st, CloseReason::HeaderError, true, out);
        } else if st.channel.is_some()
            && !st.closed
            && now_ms >= st.deadline_sent_ms.saturating_add(DEADLINE_REFRESH_MS)
        {
            st.deadline_sent_ms = now_ms;
            out.io.push(IoAction::Deadline {
                conn,
                at_ms: now_ms.saturating_add(state.shared.config.idle_timeout_ms),
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
        let Some((conn, epoch, kind)) = self.state.pending.remove(&id) else {
            return;
        };
        let Some(Connection { st, .. }) = self.conns.get_mut(&conn) else {
            self.state.stats.verify_orphaned += 1;
            return;
        };
        let state = &mut self.state;
        if st.closed || st.epoch != epoch {
            state.stats.verify_orphaned += 1;
            return;
        }
        st.inflight = st.inflight.saturating_sub(1);
        match kind {
            Pending::Handshake => state.handshake_verified(conn, st, ok, now_ms, rng, out),
            realtime => state.realtime_verified(conn, st, realtime, ok, now_ms, out),
        }
        if st.closed {
            self.conns.remove(&conn);
        }
        self.close_replaced(out);
    }

    /// Closes this shard's channels that a newer connection of the same node replaced.
    fn close_replaced(&mut self, out: &mut ShardOutput) {
        while let Some(channel) = self.state.replaced.pop() {
            if let Some(conn) = self.state.by_channel.get(&channel).copied()
                && let Some(mut c) = self.conns.remove(&conn)
            {
                self.state
                    .close(conn, &mut c.st, CloseReason::Replaced, true, out);
            }
        }
    }

    /// The loop closed the connection (peer closed, error, deadline). Removes its channel
    /// (emitting `ChannelDown`); unknown connections are ignored.
    pub fn on_closed(&mut self, conn: ConnId, _now_ms: u64, out: &mut ShardOutput) {
        if let Some(mut c) = self.conns.remove(&conn) {
            self.state
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
                let conn = self.state.by_channel.get(&channel).copied();
                match conn.and_then(|c| self.conns.get(&c).map(|x| (c, x))) {
                    Some((conn, c)) if !c.st.closed => {
                        if let Some(ch) = &c.st.channel {
                            ch.touch_sent(now_ms);
                        }
                        self.state.count_out(&bytes);
                        out.io.push(IoAction::Send {
                            conn,
                            bytes: bytes.to_vec(),
                        });
                    }
                    _ => self.state.stats.send_to_closed += 1,
                }
            }
            ShardCommand::Dial { endpoint } => {
                self.state.stats.dials += 1;
                if self.state.pending_dials.len() < MAX_PENDING_DIALS {
                    self.state.pending_dials.insert(endpoint);
                }
                out.io.push(IoAction::Dial { endpoint });
            }
            ShardCommand::Close { channel, reason } => {
                if let Some(conn) = self.state.by_channel.get(&channel).copied()
                    && let Some(mut c) = self.conns.remove(&conn)
                {
                    self.state.close(conn, &mut c.st, reason, true, out);
                }
            }
        }
    }

    /// Timers: syn cookie purge every cleanup period, handshake timeouts.
    pub fn on_tick(&mut self, now_ms: u64, out: &mut ShardOutput) {
        let state = &mut self.state;
        let config = &state.shared.config;
        if now_ms >= state.last_purge_ms.saturating_add(config.cleanup_period_ms) {
            state.last_purge_ms = now_ms;
            let cutoff = config.syn_cookie_cutoff_ms;
            state.stats.cookies_purged += state.cookies.purge(now_ms, cutoff) as u64;
        }
        while let Some(&(at, conn, epoch)) = state.hs_deadlines.front() {
            if at > now_ms {
                break;
            }
            state.hs_deadlines.pop_front();
            let expired = self
                .conns
                .get(&conn)
                .is_some_and(|c| c.st.channel.is_none() && !c.st.closed && c.st.epoch == epoch);
            if expired && let Some(mut c) = self.conns.remove(&conn) {
                state.close(conn, &mut c.st, CloseReason::Timeout, true, out);
            }
        }
    }
}

// The shard's side: what a shard core does with the state machine's steps.
impl ShardState {
    /// A frame before the channel exists: a node_id_handshake steps the state machine (its
    /// reply sent, its signature check issued, or the connection closed); while a response
    /// is verified, frames are held (the peer may be realtime already); bootstrap types and
    /// anything else close the connection. Returns a new payload limit for the deframer
    /// once the peer's handshake messages are all in.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handshake_frame(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        header: Header,
        payload: &[u8],
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut ShardOutput,
    ) -> Option<usize> {
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
                    remote: st.remote,
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

    /// The signature check of the peer's response came back: admit it ([`admit`]), settle a
    /// channel of the same node it replaces, send keepalive_self (§6.2 step 5) and, with
    /// [`ProtoConfig::query_on_up`](super::config::ProtoConfig::query_on_up), the rep
    /// crawler's first query in the same turn, then replay the frames held meanwhile.
    pub(super) fn handshake_verified(
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
        let mut peers = [Endpoint::UNSPECIFIED; 8];
        let mut n = 0;
        for other in self.shared.channels.random_set(9, rng) {
            if other.id() != ch.id() && n < 8 {
                peers[n] = other.peering_endpoint();
                n += 1;
            }
        }
        let k = Keepalive {
            peers: keepalive_self_slots(self.shared.config.listen_port, &peers[..n])
                .map(Endpoint::to_v6),
        };
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
}
