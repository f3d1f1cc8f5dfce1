//! Realtime messages on an authenticated channel (§2.7, §4): keepalive peers go to the
//! crawler; publish and confirm_ack pass the shared duplicate filter, are decoded and checked
//! (work, zero account) and have their signature checked; telemetry_ack is matched to the
//! channel's node id and checked likewise. Results of those checks come back to
//! `ShardState::realtime_verified`. confirm_req (we do not vote), telemetry_req, asc_pull_*,
//! bootstrap and handshake messages are counted and ignored.

use std::sync::Arc;

use super::checks::MAX_INFLIGHT_PER_CONN;
use super::connection::{ConnState, Pending, ShardOutput, ShardState};
use super::events::{CloseReason, ConnId, CrawlerEvent, SignedMessage};
use super::telemetry::{TelemetryError, check_genesis, check_received};
use crate::channels::ChannelId;
use crate::crypto::{epoch_link, epoch_signer, vote_hash_of_bytes};
use crate::endpoint::Endpoint;
use crate::wire::{
    Block, Header, Keepalive, MessageType, Publish, TELEMETRY_SIGNED_FROM, TelemetryAck,
    TelemetryData, VoteView,
};

impl ShardState {
    /// One frame on a channel: counted and dispatched by type.
    pub(super) fn realtime(
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
                        peers: k.peers.map(Endpoint::from),
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
    pub(super) fn publish(
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
        let pending = Pending::Event {
            event: CrawlerEvent::Block {
                channel,
                hash,
                block: Arc::new(block),
            },
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
    pub(super) fn confirm_ack(
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
        let digest = vote_hash_of_bytes(view.hash_bytes(), timestamp);
        let pending = Pending::Event {
            event: CrawlerEvent::Vote {
                channel,
                account,
                hashes: view.hashes().collect(),
                timestamp,
                rebroadcasted: header.extensions.rebroadcasted(),
            },
            retry: None,
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

    /// A telemetry_ack on the channel.
    pub(super) fn telemetry(
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
            Pending::Event {
                event: CrawlerEvent::Telemetry {
                    channel,
                    data: Box::new(data),
                },
                retry: None,
            },
            now_ms,
            out,
        );
    }

    /// The result of a realtime check (vote, block, telemetry): the crawler gets what
    /// verified; an invalid signature costs the peer (`ShardState::invalid_signature`).
    pub(super) fn realtime_verified(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        kind: Pending,
        ok: bool,
        now_ms: u64,
        out: &mut ShardOutput,
    ) {
        let Pending::Event { event, retry } = kind else {
            return;
        };
        if ok {
            match &event {
                CrawlerEvent::Vote { .. } => self.stats.votes_valid += 1,
                CrawlerEvent::Block { .. } => self.stats.blocks_valid += 1,
                CrawlerEvent::Telemetry { data, .. }
                    if check_genesis(data, self.network)
                        == Err(TelemetryError::GenesisMismatch) =>
                {
                    self.stats.genesis_mismatch += 1;
                    if let Some(ch) = st.channel.clone() {
                        out.events
                            .push(CrawlerEvent::GenesisMismatch { channel: ch });
                    }
                    self.close(conn, st, CloseReason::Excluded, true, out);
                    return;
                }
                _ => {}
            }
            st.useful_ms = now_ms;
            out.events.push(event);
            return;
        }
        match (&event, retry) {
            // A state block with an epoch link: try the epoch signer before giving up.
            (CrawlerEvent::Block { hash, block, .. }, Some(key)) => {
                let (hash, signature) = (*hash, *block.signature());
                let again = Pending::Event { event, retry: None };
                self.request(
                    conn,
                    st,
                    key,
                    SignedMessage::Digest(hash),
                    signature,
                    again,
                    now_ms,
                    out,
                );
                return;
            }
            (CrawlerEvent::Vote { .. }, _) => self.stats.invalid_vote_signature += 1,
            (CrawlerEvent::Block { .. }, _) => self.stats.invalid_block_signature += 1,
            _ => self.stats.invalid_telemetry_signature += 1,
        }
        self.invalid_signature(conn, st, now_ms, out);
    }
}
