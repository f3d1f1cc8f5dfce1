//! The shard core's counters, declared once with [`counter_set!`](crate::counter_set): each
//! names its RPC `stats` rows (nano-node's `type`/`detail`/`dir` where nano-node has one) and
//! its `/metrics` sample. The core increments plain fields; the loop copies the set out at
//! housekeeping; the node sums shards with [`CounterSet::add`].

use std::ops::{Deref, DerefMut};

use super::events::{CloseReason, HandshakeOutcome, Misbehaviour};
use crate::channels::ChannelError;
use crate::counters::{Counter, CounterSet, Row, Sample};
use crate::wire::{DecodeError, MessageType};

/// Messages per type, indexed by the message type byte (§2.4); `OUT` tells which way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerMessageType<const OUT: bool>(pub [u64; 16]);

impl<const OUT: bool> PerMessageType<OUT> {
    /// The count of one type.
    pub fn of(&self, t: MessageType) -> u64 {
        self.0[usize::from(t.as_u8()) & 15]
    }

    /// Counts one message of type byte `t`.
    #[inline]
    pub fn record(&mut self, t: u8) {
        self.0[usize::from(t) & 15] += 1;
    }
}

impl<const OUT: bool> Deref for PerMessageType<OUT> {
    type Target = [u64; 16];
    fn deref(&self) -> &[u64; 16] {
        &self.0
    }
}

impl<const OUT: bool> DerefMut for PerMessageType<OUT> {
    fn deref_mut(&mut self) -> &mut [u64; 16] {
        &mut self.0
    }
}

impl<const OUT: bool> CounterSet for PerMessageType<OUT> {
    fn add(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    fn values_mut(&mut self, f: &mut dyn FnMut(&mut u64)) {
        for t in MessageType::ALL {
            f(&mut self.0[usize::from(t.as_u8()) & 15]);
        }
    }

    /// Rows `message/<type>/in|out` and samples `nanopeer_messages_total{direction, type}`,
    /// for every type of §2.4.
    fn visit(&self, f: &mut dyn FnMut(&Counter<'_>, u64)) {
        let dir = if OUT { "out" } else { "in" };
        for t in MessageType::ALL {
            let name = t.name();
            let labels = [("direction", dir), ("type", name)];
            f(
                &Counter {
                    name,
                    help: "Messages of one type.",
                    rows: &[Row {
                        stat_type: "message",
                        detail: name,
                        dir,
                    }],
                    samples: &[Sample {
                        family: "nanopeer_messages_total",
                        labels: &labels,
                    }],
                },
                self.of(t),
            );
        }
    }
}

crate::counter_set! {
    /// Handshake outcomes (nano-node's `handshake` details where it has one: `ok`,
    /// `invalid_node_id`, `invalid_genesis`, `missing_cookie`, `invalid_signature`).
    pub struct HandshakeStats {
        groups {}
        /// Channels created.
        ok ["handshake", "ok", "in"] @ "nanopeer_handshakes_total" ("outcome" = "ok"),
        /// The peer showed our own node id.
        own_node_id ["handshake", "invalid_node_id", "in"]
            @ "nanopeer_handshakes_total" ("outcome" = "invalid_node_id"),
        /// The peer is on another genesis.
        invalid_genesis ["handshake", "invalid_genesis", "in"]
            @ "nanopeer_handshakes_total" ("outcome" = "invalid_genesis"),
        /// A response without a cookie of ours for the remote.
        missing_cookie ["handshake", "missing_cookie", "in"]
            @ "nanopeer_handshakes_total" ("outcome" = "missing_cookie"),
        /// The response's signature failed.
        invalid_signature ["handshake", "invalid_signature", "in"]
            @ "nanopeer_handshakes_total" ("outcome" = "invalid_signature")
            @ "nanopeer_verify_failed_total",
        /// Messages out of the handshake's order, or a version below the minimum.
        protocol ["handshake", "protocol_error", "in"]
            @ "nanopeer_handshakes_total" ("outcome" = "protocol_error"),
        /// No cookie could be assigned (the cookie table was full).
        cookie_limit ["handshake", "cookie_limit", "in"]
            @ "nanopeer_handshakes_total" ("outcome" = "cookie_limit"),
        /// The IP group already held its channels when the channel was to be made.
        max_per_ip ["handshake", "max_per_ip", "in"] ["tcp_listener_rejected", "max_per_ip", "in"]
            @ "nanopeer_handshakes_total" ("outcome" = "max_per_ip"),
        /// The subnet already held its channels when the channel was to be made.
        max_per_subnet ["handshake", "max_per_subnetwork", "in"]
            ["tcp_listener_rejected", "max_per_subnetwork", "in"]
            @ "nanopeer_handshakes_total" ("outcome" = "max_per_subnetwork"),
        /// The same node id already has a channel from the same IP.
        duplicate_node_id ["handshake", "duplicate_node_id", "in"]
            @ "nanopeer_handshakes_total" ("outcome" = "duplicate_node_id"),
        /// The address cannot be a peer (reserved, or ours).
        not_a_peer ["handshake", "not_a_peer", "in"] ["tcp_listener_rejected", "not_a_peer", "in"]
            @ "nanopeer_handshakes_total" ("outcome" = "not_a_peer"),
        /// The address is excluded.
        excluded ["handshake", "excluded", "in"] ["tcp_listener_rejected", "excluded", "in"]
            @ "nanopeer_handshakes_total" ("outcome" = "excluded"),
        /// The channel cap was reached, or the endpoint already has a channel.
        channel_limit ["handshake", "channel_limit", "in"]
            @ "nanopeer_handshakes_total" ("outcome" = "channel_limit"),
    }
}

impl HandshakeStats {
    /// Counts one outcome.
    #[inline]
    pub fn record(&mut self, outcome: HandshakeOutcome) {
        *self.get_mut(outcome) += 1;
    }

    /// The counter of one outcome.
    pub fn get(&self, outcome: HandshakeOutcome) -> u64 {
        let mut copy = *self;
        *copy.get_mut(outcome)
    }

    fn get_mut(&mut self, outcome: HandshakeOutcome) -> &mut u64 {
        match outcome {
            HandshakeOutcome::Ok => &mut self.ok,
            HandshakeOutcome::OwnNodeId => &mut self.own_node_id,
            HandshakeOutcome::InvalidGenesis => &mut self.invalid_genesis,
            HandshakeOutcome::MissingCookie => &mut self.missing_cookie,
            HandshakeOutcome::InvalidSignature => &mut self.invalid_signature,
            HandshakeOutcome::Protocol => &mut self.protocol,
            HandshakeOutcome::CookieLimit => &mut self.cookie_limit,
            HandshakeOutcome::MaxPerIp => &mut self.max_per_ip,
            HandshakeOutcome::MaxPerSubnet => &mut self.max_per_subnet,
            HandshakeOutcome::DuplicateNodeId => &mut self.duplicate_node_id,
            HandshakeOutcome::NotAPeer => &mut self.not_a_peer,
            HandshakeOutcome::Excluded => &mut self.excluded,
            HandshakeOutcome::ChannelLimit => &mut self.channel_limit,
        }
    }
}

crate::counter_set! {
    /// Payload errors per kind (§2.7: the message is dropped, the connection kept).
    pub struct PayloadErrorStats {
        groups {}
        /// [`DecodeError::PayloadTooShort`].
        too_short ["error", "payload_too_short", "in"],
        /// [`DecodeError::TrailingBytes`].
        trailing_bytes ["error", "trailing_bytes", "in"],
        /// [`DecodeError::NotABlock`].
        not_a_block ["error", "not_a_block", "in"],
        /// [`DecodeError::ConfirmReqPairs`].
        confirm_req_pairs ["error", "confirm_req_pairs", "in"],
        /// [`DecodeError::EmptyHandshake`].
        empty_handshake ["error", "empty_handshake", "in"],
        /// [`DecodeError::TelemetryTooShort`].
        telemetry_too_short ["error", "telemetry_too_short", "in"],
        /// [`DecodeError::BulkPullExtended`].
        bulk_pull_extended ["error", "bulk_pull_extended", "in"],
        /// [`DecodeError::AscPullType`].
        asc_pull_type ["error", "asc_pull_type", "in"],
        /// Header variants (they never reach the payload stage; kept so every error counts).
        other ["error", "other", "in"],
    }
}

impl PayloadErrorStats {
    /// Counts one error.
    #[inline]
    pub fn record(&mut self, e: &DecodeError) {
        let c = match e {
            DecodeError::PayloadTooShort { .. } => &mut self.too_short,
            DecodeError::TrailingBytes { .. } => &mut self.trailing_bytes,
            DecodeError::NotABlock(_) => &mut self.not_a_block,
            DecodeError::ConfirmReqPairs { .. } => &mut self.confirm_req_pairs,
            DecodeError::EmptyHandshake => &mut self.empty_handshake,
            DecodeError::TelemetryTooShort(_) => &mut self.telemetry_too_short,
            DecodeError::BulkPullExtended(_) => &mut self.bulk_pull_extended,
            DecodeError::AscPullType { .. } => &mut self.asc_pull_type,
            _ => &mut self.other,
        };
        *c += 1;
    }

    /// All payload errors.
    pub fn total(&self) -> u64 {
        let mut sum = 0;
        self.visit(&mut |_, v| sum += v);
        sum
    }
}

crate::counter_set! {
    /// Closes the core asked for, per [`CloseReason`] (nano-node's `tcp_close` details).
    pub struct CloseStats {
        groups {}
        /// A header error (§2.7).
        header_error ["tcp_close", "header_error", "out"],
        /// A failed handshake ([`HandshakeStats`] tells which check).
        handshake ["tcp_close", "handshake", "out"],
        /// A realtime message before the handshake completed.
        message_before_handshake ["tcp_close", "message_before_handshake", "out"],
        /// A bootstrap connection (not served).
        bootstrap_not_served ["tcp_close", "bootstrap_not_served", "out"],
        /// The handshake did not complete in time.
        timeout ["tcp_close", "timeout", "out"],
        /// Purged by the crawler's cleanup.
        purged ["tcp_close", "purged", "out"],
        /// The peer was excluded (telemetry for another genesis, or a misbehaving IP).
        excluded ["tcp_close", "excluded", "out"],
        /// Closed by command.
        requested ["tcp_close", "requested", "out"],
        /// Evicted from a full inbound table ([`AdmissionStats`] tells which kind).
        evicted ["tcp_close", "evicted", "out"],
        /// Replaced by another connection of the same node.
        replaced ["tcp_close", "replaced", "out"],
        /// Over a misbehaviour budget ([`MisbehaviourStats`] tells which).
        misbehaviour ["tcp_close", "misbehaviour", "out"],
    }
}

impl CloseStats {
    /// Counts one close.
    #[inline]
    pub fn record(&mut self, reason: CloseReason) {
        let c = match reason {
            CloseReason::HeaderError => &mut self.header_error,
            CloseReason::Handshake(_) => &mut self.handshake,
            CloseReason::MessageBeforeHandshake => &mut self.message_before_handshake,
            CloseReason::BootstrapNotServed => &mut self.bootstrap_not_served,
            CloseReason::Timeout => &mut self.timeout,
            CloseReason::Purged => &mut self.purged,
            CloseReason::Excluded => &mut self.excluded,
            CloseReason::Requested => &mut self.requested,
            CloseReason::Evicted => &mut self.evicted,
            CloseReason::Replaced => &mut self.replaced,
            CloseReason::Misbehaviour(_) => &mut self.misbehaviour,
        };
        *c += 1;
    }
}

crate::counter_set! {
    /// Inbound admission at accept, before anything is read (nano-node's
    /// `tcp_listener_rejected` details, plus evictions).
    pub struct AdmissionStats {
        groups {}
        /// Refused: the IP group (IPv4 address, IPv6 /48) holds `max_peers_per_ip` channels,
        /// attempts and unverified connections.
        max_per_ip ["tcp_listener_rejected", "max_per_ip", "in"]
            @ "nanopeer_inbound_rejected_total" ("reason" = "max_per_ip"),
        /// Refused: the subnet (IPv4 /24, IPv6 /32) is full likewise.
        max_per_subnetwork ["tcp_listener_rejected", "max_per_subnetwork", "in"]
            @ "nanopeer_inbound_rejected_total" ("reason" = "max_per_subnetwork"),
        /// Refused: the address is excluded.
        excluded ["tcp_listener_rejected", "excluded", "in"]
            @ "nanopeer_inbound_rejected_total" ("reason" = "excluded"),
        /// Refused: the shard's inbound table was full and nothing could be evicted.
        full ["tcp_listener_rejected", "full_nothing_to_evict", "in"]
            @ "nanopeer_inbound_rejected_total" ("reason" = "full"),
        /// Frames larger than a handshake message before the peer was authenticated (closed).
        oversize_before_handshake ["tcp_listener_rejected", "oversize_before_handshake", "in"]
            @ "nanopeer_inbound_rejected_total" ("reason" = "oversize_before_handshake"),
        /// Unverified connections evicted to make room.
        evicted_unverified ["tcp_listener_evicted", "unverified", "in"]
            @ "nanopeer_inbound_rejected_total" ("reason" = "evicted_unverified"),
        /// Verified channels evicted to make room (only when no unverified one was left).
        evicted_channels ["tcp_listener_evicted", "channel", "in"]
            @ "nanopeer_inbound_rejected_total" ("reason" = "evicted_channel"),
    }
}

impl AdmissionStats {
    /// Counts a refusal by the per-IP or per-subnet count of unverified connections.
    pub fn record_limit(&mut self, e: ChannelError) {
        if e == ChannelError::SubnetLimit {
            self.max_per_subnetwork += 1;
        } else {
            self.max_per_ip += 1;
        }
    }
}

crate::counter_set! {
    /// Peers cut for misbehaving, and the per-source verification it caused.
    pub struct MisbehaviourStats {
        groups {}
        /// Channels cut (and IPs excluded) for more invalid signatures than their budget.
        invalid_signatures ["misbehaviour", "invalid_signatures", "in"]
            @ "nanopeer_misbehaviour_total" ("cause" = "invalid_signatures"),
        /// Channels cut (and IPs excluded) for more signature checks per second than their
        /// budget.
        verify_work ["misbehaviour", "verify_work", "in"]
            @ "nanopeer_misbehaviour_total" ("cause" = "verify_work"),
        /// Signature checks made alone because their source sent an invalid one recently.
        verify_alone ["misbehaviour", "verify_alone", "in"],
    }
}

impl MisbehaviourStats {
    /// Counts one cut.
    pub fn record(&mut self, cause: Misbehaviour) {
        match cause {
            Misbehaviour::InvalidSignatures => self.invalid_signatures += 1,
            Misbehaviour::VerifyWork => self.verify_work += 1,
        }
    }
}

crate::counter_set! {
    /// Counters of one shard core: plain integers, updated in place, copied out by the loop.
    pub struct ShardStats {
        groups {
            /// Messages received, per type.
            messages_in: PerMessageType<false>,
            /// Messages sent (ours and commanded), per type.
            messages_out: PerMessageType<true>,
            /// Handshake outcomes.
            handshake: HandshakeStats,
            /// Payload errors.
            payload_errors: PayloadErrorStats,
            /// Closes the core asked for.
            closes: CloseStats,
            /// Admission at accept (refusals, evictions).
            admission: AdmissionStats,
            /// Misbehaving peers cut.
            misbehaviour: MisbehaviourStats,
        }
        /// Bytes received.
        bytes_in ["traffic_tcp", "all", "in"],
        /// Bytes queued for sending.
        bytes_out ["traffic_tcp", "all", "out"],
        /// Connections closed by the loop or the peer (not by the core).
        closed_remotely ["tcp_close", "remote", "out"],
        /// Connections opened (inbound and outbound).
        connections,
        /// Channels replaced by another authenticated connection of the same node (crossed
        /// dials, reconnects).
        channels_replaced,
        /// Duplicate publish payloads.
        duplicate_publish ["filter", "duplicate_publish_message", "in"],
        /// Duplicate confirm_ack payloads.
        duplicate_confirm_ack ["filter", "duplicate_confirm_ack_message", "in"],
        /// Publish with insufficient work.
        insufficient_work ["block", "insufficient_work", "in"],
        /// Open/state blocks whose signature verified (handed to the crawler).
        blocks_valid ["block", "valid", "in"],
        /// Open/state blocks whose signature failed.
        invalid_block_signature ["block", "invalid_signature", "in"]
            @ "nanopeer_verify_failed_total",
        /// Votes whose signature verified (handed to the crawler).
        votes_valid ["vote", "valid", "in"],
        /// Votes whose signature failed.
        invalid_vote_signature ["vote", "invalid_signature", "in"]
            @ "nanopeer_verify_failed_total",
        /// Votes from the zero account.
        zero_account_vote ["vote", "zero_account", "in"],
        /// Empty telemetry_ack.
        telemetry_empty ["telemetry", "empty_payload", "in"],
        /// telemetry_ack from another node id than the channel's.
        telemetry_node_id_mismatch ["telemetry", "node_id_mismatch", "in"],
        /// telemetry_ack whose signature failed.
        invalid_telemetry_signature ["telemetry", "invalid_signature", "in"]
            @ "nanopeer_verify_failed_total",
        /// telemetry_ack for another genesis (channel closed, peer reported for exclusion).
        genesis_mismatch ["telemetry", "genesis_mismatch", "in"],
        /// confirm_req received (we do not vote).
        confirm_req_ignored ["drop", "confirm_req", "in"],
        /// telemetry_req, asc_pull_* and bootstrap messages on realtime channels.
        realtime_ignored ["drop", "realtime_ignored", "in"],
        /// node_id_handshake on realtime channels.
        handshake_ignored ["drop", "handshake_on_realtime", "in"],
        /// Verify requests issued.
        verify_requests,
        /// Messages dropped because their connection had too many checks in flight.
        verify_overflow ["drop", "verify_overflow", "in"],
        /// Verify results for connections that closed meanwhile.
        verify_orphaned,
        /// Frames dropped while a handshake response was verified (hold buffer full).
        held_dropped ["drop", "held_while_verifying", "in"],
        /// Commanded sends to a channel that is gone.
        send_to_closed ["drop", "send_to_closed", "in"],
        /// The rep crawler's first query of a channel, sent with keepalive_self
        /// ([`ProtoConfig::query_on_up`](super::config::ProtoConfig::query_on_up); also in
        /// `messages_out`).
        queries_on_up ["rep_crawler", "query_on_up", "out"],
        /// Dials requested.
        dials ["network", "dial", "out"],
        /// Dials that failed.
        dials_failed ["network", "dial_failed", "out"],
        /// Syn cookies purged.
        cookies_purged ["network", "syn_cookies_purged", "in"],
    }
}

impl ShardStats {
    /// Messages received of one type.
    pub fn received(&self, t: MessageType) -> u64 {
        self.messages_in.of(t)
    }

    /// Messages sent of one type.
    pub fn sent(&self, t: MessageType) -> u64 {
        self.messages_out.of(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{Rows, Samples};

    #[test]
    fn every_handshake_outcome_has_its_own_counter() {
        let all = [
            HandshakeOutcome::Ok,
            HandshakeOutcome::OwnNodeId,
            HandshakeOutcome::InvalidGenesis,
            HandshakeOutcome::MissingCookie,
            HandshakeOutcome::InvalidSignature,
            HandshakeOutcome::Protocol,
            HandshakeOutcome::CookieLimit,
            HandshakeOutcome::MaxPerIp,
            HandshakeOutcome::MaxPerSubnet,
            HandshakeOutcome::DuplicateNodeId,
            HandshakeOutcome::NotAPeer,
            HandshakeOutcome::Excluded,
            HandshakeOutcome::ChannelLimit,
        ];
        let mut h = HandshakeStats::default();
        for (i, o) in all.into_iter().enumerate() {
            for _ in 0..=i {
                h.record(o);
            }
        }
        for (i, o) in all.into_iter().enumerate() {
            assert_eq!(h.get(o), i as u64 + 1, "{o:?}");
        }
        let mut n = 0;
        h.visit(&mut |_, _| n += 1);
        assert_eq!(n, all.len(), "one counter per outcome");
    }

    #[test]
    fn a_refusal_at_accept_and_at_the_handshake_share_the_listener_row() {
        let mut s = ShardStats::default();
        s.handshake.max_per_ip = 2;
        s.admission.max_per_ip = 3;
        s.messages_in.record(MessageType::Keepalive.as_u8());
        let mut rows = Rows::default();
        rows.add_set(&s);
        let rows = rows.into_vec();
        let get = |t: &str, d: &str, dir: &str| {
            rows.iter()
                .find(|r| r.0 == t && r.1 == d && r.2 == dir)
                .map(|r| r.3)
        };
        assert_eq!(get("tcp_listener_rejected", "max_per_ip", "in"), Some(5));
        assert_eq!(get("handshake", "max_per_ip", "in"), Some(2));
        assert_eq!(get("message", "keepalive", "in"), Some(1));
        assert_eq!(get("message", "keepalive", "out"), Some(0));
    }

    #[test]
    fn failed_signatures_of_every_kind_add_up_in_one_sample() {
        let mut s = ShardStats::default();
        s.handshake.invalid_signature = 1;
        s.invalid_block_signature = 2;
        s.invalid_vote_signature = 4;
        s.invalid_telemetry_signature = 8;
        let mut m = Samples::default();
        m.add_set(&s, &[]);
        assert_eq!(m.get("nanopeer_verify_failed_total", &[]), Some(15));
        assert_eq!(
            m.get(
                "nanopeer_handshakes_total",
                &[("outcome", "invalid_signature")]
            ),
            Some(1)
        );
    }

    #[test]
    fn adding_two_shards_sums_every_counter() {
        // Give every counter (through the schema's own order) a distinct value.
        let mut b = ShardStats::default();
        let mut next = 0u64;
        b.values_mut(&mut |v| {
            next += 1;
            *v = next;
        });
        let mut a = ShardStats::default();
        a.add(&b);
        a.add(&b);
        let mut i = 0u64;
        let mut n = 0;
        a.visit(&mut |c, v| {
            i += 1;
            n += 1;
            assert_eq!(v, 2 * i, "{}", c.name);
        });
        assert_eq!(n, next, "visit and values_mut see the same counters");
        let keepalive = MessageType::ALL
            .iter()
            .position(|&t| t == MessageType::Keepalive);
        assert_eq!(
            a.received(MessageType::Keepalive),
            2 * (keepalive.unwrap() as u64 + 1)
        );
    }
}
