//! Telemetry (§4.6, §9): our own signed telemetry_ack, and the checks a received one must pass.

use crate::crypto::{WorkThresholds, genesis_hash};
use crate::types::{Network, PublicKey};
use crate::wire::{Message, TelemetryAck, TelemetryData, VERSION_USING};

use super::identity::NodeIdentity;

/// The `maker` byte nanopeer sends: 0x4E ('N'). The reference uses 0 (NF node) and 1 (NF
/// pruned node); any other value marks a third-party implementation.
pub const MAKER: u8 = 0x4E;

/// Why a received telemetry_ack is not accepted (§9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TelemetryError {
    /// The ack carries no data.
    #[error("telemetry_ack is empty")]
    Empty,
    /// The data names another node than the channel's.
    #[error("telemetry node id differs from the channel's")]
    NodeIdMismatch,
    /// The data is for another genesis: the peer is on another network.
    #[error("telemetry genesis differs from ours")]
    GenesisMismatch,
    /// The signature does not verify.
    #[error("telemetry signature does not verify")]
    InvalidSignature,
}

fn version_part(s: &str) -> u8 {
    s.parse().unwrap_or(0)
}

/// Our telemetry, signed by the node id over bytes 64..end: `peer_count` channels, `uptime_s`
/// seconds, `now_ms` the timestamp; ledger counts are 0 (nanopeer has no ledger), bandwidth cap
/// 0, protocol version 0x15, versions from `CARGO_PKG_VERSION`, maker [`MAKER`],
/// active_difficulty the network's entry work threshold.
pub fn local_telemetry(
    identity: &NodeIdentity,
    network: Network,
    peer_count: u32,
    uptime_s: u64,
    now_ms: u64,
) -> TelemetryData {
    let mut data = TelemetryData {
        node_id: identity.node_id(),
        peer_count,
        protocol_version: VERSION_USING,
        uptime: uptime_s,
        genesis_block: genesis_hash(network),
        major_version: version_part(env!("CARGO_PKG_VERSION_MAJOR")),
        minor_version: version_part(env!("CARGO_PKG_VERSION_MINOR")),
        patch_version: version_part(env!("CARGO_PKG_VERSION_PATCH")),
        pre_release_version: 0,
        maker: MAKER,
        timestamp: now_ms,
        active_difficulty: WorkThresholds::for_network(network).entry(),
        ..TelemetryData::default()
    };
    data.signature = identity.sign(&data.signed_bytes());
    data
}

/// Our telemetry_ack, encoded for `network` (ready for a broadcast `ShardCommand::Send`).
pub fn telemetry_ack_bytes(
    identity: &NodeIdentity,
    network: Network,
    peer_count: u32,
    uptime_s: u64,
    now_ms: u64,
) -> Vec<u8> {
    let data = local_telemetry(identity, network, peer_count, uptime_s, now_ms);
    Message::TelemetryAck(TelemetryAck { data: Some(data) }).encode(network)
}

/// The checks before the signature (§9): non-empty and from the channel's node.
pub fn check_received<'a>(
    ack: &'a TelemetryAck,
    channel_node_id: &PublicKey,
) -> Result<&'a TelemetryData, TelemetryError> {
    let data = ack.data.as_ref().ok_or(TelemetryError::Empty)?;
    if data.node_id != *channel_node_id {
        return Err(TelemetryError::NodeIdMismatch);
    }
    Ok(data)
}

/// The check after the signature (§9): the genesis is ours.
pub fn check_genesis(data: &TelemetryData, network: Network) -> Result<(), TelemetryError> {
    if data.genesis_block == genesis_hash(network) {
        Ok(())
    } else {
        Err(TelemetryError::GenesisMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::verify;
    use crate::wire::{TELEMETRY_LEN, decode_message};

    #[test]
    fn local_telemetry_is_signed_and_round_trips() {
        let id = NodeIdentity::from_private([9; 32]);
        let bytes = telemetry_ack_bytes(&id, Network::Dev, 3, 10, 1_000);
        let (h, m) = decode_message(&bytes, Network::Dev).unwrap();
        assert_eq!(h.extensions.0 as usize, TELEMETRY_LEN);
        let Message::TelemetryAck(ack) = m else {
            panic!("not a telemetry_ack")
        };
        let data = check_received(&ack, &id.node_id()).unwrap();
        assert!(verify(&bytes[8 + 64..], &data.signature, &id.node_id()));
        assert_eq!(data.peer_count, 3);
        assert_eq!(data.maker, MAKER);
        assert_eq!(data.protocol_version, 0x15);
        assert_eq!(
            data.active_difficulty,
            WorkThresholds::for_network(Network::Dev).entry()
        );
        assert_eq!(check_genesis(data, Network::Dev), Ok(()));
        assert_eq!(
            check_genesis(data, Network::Live),
            Err(TelemetryError::GenesisMismatch)
        );
        assert_eq!(
            check_received(&ack, &PublicKey([1; 32])),
            Err(TelemetryError::NodeIdMismatch)
        );
        assert_eq!(
            check_received(&TelemetryAck { data: None }, &id.node_id()),
            Err(TelemetryError::Empty)
        );
    }
}
