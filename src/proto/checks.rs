//! Signature checks in flight. A check is issued (`ShardState::request`) for a handshake
//! response, a vote, a block or a telemetry_ack, paid from the connection's work budget and
//! capped per connection; its result comes back through
//! [`ShardCore::on_verified`](super::shard::ShardCore::on_verified) with the `Pending` step
//! it was issued for. An invalid signature makes its source suspect (its next checks are made
//! alone, outside the shared batch) and costs it from its invalid-signature budget.

use super::connection::{ConnState, Pending, ShardOutput, ShardState};
use super::events::{ConnId, Misbehaviour, SignedMessage, VerifyRequest};
use crate::types::{PublicKey, Signature};

/// Most signature checks in flight per connection; more are dropped (counted).
pub const MAX_INFLIGHT_PER_CONN: u32 = 128;
/// After an invalid signature, this many of the source's next signature checks are made on
/// their own (outside the shared batch), so its failures fall back on its own items only.
pub const SUSPECT_CHECKS: u32 = 64;

impl ShardState {
    /// A fresh verify request id.
    pub(super) fn next_id(&mut self) -> u64 {
        let id = self.next_verify;
        self.next_verify = self.next_verify.wrapping_add(1);
        id
    }

    /// Issues a signature check unless the connection has too many in flight. A channel's
    /// checks are paid from its work budget; past it the peer is cut ([`Self::cut`]). The
    /// check is made alone (outside the batch) while the source is suspect.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn request(
        &mut self,
        conn: ConnId,
        st: &mut ConnState,
        key: PublicKey,
        message: SignedMessage,
        signature: Signature,
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
    pub(super) fn invalid_signature(
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
}
