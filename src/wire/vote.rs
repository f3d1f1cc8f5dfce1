//! The vote carried by `confirm_ack` (§4.4). The codec lives beside it; the vote hash and
//! signature checks in [`crate::crypto`].

use crate::types::{BlockHash, PublicKey, Signature};

/// Timestamp of a final vote (§4.4).
pub const FINAL_TIMESTAMP: u64 = u64::MAX;

/// Most hashes one vote (or one confirm_req) may carry.
pub const MAX_HASHES: usize = 255;

/// A vote: a representative's signature over a set of block hashes and a timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// The voting representative.
    pub account: PublicKey,
    /// Signature by `account` over the vote hash.
    pub signature: Signature,
    /// Packed timestamp: upper 60 bits ms since the Unix epoch, low 4 bits duration;
    /// [`FINAL_TIMESTAMP`] for a final vote. Little-endian on the wire.
    pub timestamp: u64,
    /// The block hashes voted for (0..=255).
    pub hashes: Vec<BlockHash>,
}

impl Vote {
    /// True for a final vote.
    pub fn is_final(&self) -> bool {
        self.timestamp == FINAL_TIMESTAMP
    }
}
