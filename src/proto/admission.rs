//! Channel policy: who may hold a channel. [`admit`] runs when a handshake's signature has
//! verified (§6.3 item 5, §7.2); [`keep_new_channel`] settles two authenticated connections of
//! the same node. The listener's earlier screen of an accepted connection is
//! [`ShardCore::screen_inbound`](super::shard::ShardCore::screen_inbound), over the same
//! exclusion list and per-IP / per-subnet counts.

use std::sync::Arc;

use parking_lot::Mutex;

use super::addr::not_a_peer;
use super::config::ProtoConfig;
use super::events::HandshakeOutcome;
use super::exclusion::PeerExclusion;
use crate::channels::{Channel, ChannelError, ChannelMap, Direction, NewChannel};
use crate::endpoint::Endpoint;
use crate::types::PublicKey;

/// Channel admission (§6.3 item 5, §7.2): not a peer (unspecified, reserved unless local peers
/// are allowed, ourselves), excluded, then the map's per-IP and per-subnet limits, same node id
/// from the same IP, and the channel cap. Takes the exclusion lock briefly. `counted`: the
/// connection is counted as an unverified inbound one ([`ChannelMap::add_inbound`]); the
/// channel takes over that count.
///
/// A channel of the same node id from the same IP is resolved by [`keep_new_channel`]
/// (`own_id` is our node id): when the new one wins, the old one leaves the map and is
/// returned, for the caller to close its connection.
pub fn admit(
    channels: &ChannelMap,
    exclusion: &Mutex<PeerExclusion>,
    config: &ProtoConfig,
    new: NewChannel,
    counted: bool,
    own_id: &PublicKey,
) -> Result<(Arc<Channel>, Option<Arc<Channel>>), HandshakeOutcome> {
    let own = Endpoint::localhost(config.listen_port);
    if not_a_peer(new.remote, config.allow_local_peers, own) {
        return Err(HandshakeOutcome::NotAPeer);
    }
    if exclusion.lock().check(*new.remote.ip(), new.now_ms) {
        return Err(HandshakeOutcome::Excluded);
    }
    let (peer, direction) = (new.node_id, new.direction);
    let keep_new = |old: &Channel| keep_new_channel(own_id, &peer, old.direction(), direction);
    channels
        .try_insert_resolving(new, counted, keep_new)
        .map_err(|e| match e {
            ChannelError::DuplicateNodeId => HandshakeOutcome::DuplicateNodeId,
            ChannelError::IpLimit => HandshakeOutcome::MaxPerIp,
            ChannelError::SubnetLimit => HandshakeOutcome::MaxPerSubnet,
            ChannelError::EndpointExists
            | ChannelError::ChannelLimit
            | ChannelError::AttemptedRecently
            | ChannelError::AttemptsFull => HandshakeOutcome::ChannelLimit,
        })
}

/// Which of two authenticated connections to the same node (same IP) to keep, decided the
/// same way on both sides so they always end with the same one:
/// - **crossed dial** (one inbound, one outbound: each side dialed the other at once): keep
///   the connection dialed by the node with the smaller node id. On our side that is the
///   outbound one when our id is smaller, the inbound one otherwise; the peer, applying the
///   rule from its side, keeps the same TCP connection.
/// - **same direction** (a second connection of a node that already has one the same way,
///   e.g. a reconnect while the old channel is still in the map): the existing channel stays
///   and the new one is refused (`DuplicateNodeId`, as the reference does). A peer that
///   restarts closes its old connection (FIN or RST), which frees the place at once; only
///   a silent loss waits for the idle timeout.
///
/// Both connections are authenticated (the node id's key signed our cookie on each), so no
/// stranger can use this to displace a peer.
pub fn keep_new_channel(
    own: &PublicKey,
    peer: &PublicKey,
    existing: Direction,
    new: Direction,
) -> bool {
    if existing == new {
        return false;
    }
    // Keep the new one when its dialer has the smaller node id.
    match new {
        Direction::Outbound => own.0 < peer.0,
        Direction::Inbound => peer.0 < own.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_of_a_crossed_dial_keep_the_same_connection() {
        use crate::channels::Direction::{Inbound, Outbound};
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        // The connection a (smaller) dialed: outbound on a's side, inbound on b's side.
        for (existing, new) in [(Inbound, Outbound), (Outbound, Inbound)] {
            let a_keeps_new = keep_new_channel(&a, &b, existing, new);
            // On b's side the same two connections have the opposite directions.
            let flip = |d| if d == Inbound { Outbound } else { Inbound };
            let b_keeps_new = keep_new_channel(&b, &a, flip(existing), flip(new));
            assert_eq!(a_keeps_new, b_keeps_new, "{existing:?} then {new:?}");
            assert_eq!(a_keeps_new, new == Outbound, "a dialed the winner");
        }
        // Same direction: the established channel stays.
        assert!(!keep_new_channel(&a, &b, Inbound, Inbound));
        assert!(!keep_new_channel(&b, &a, Outbound, Outbound));
    }
}
