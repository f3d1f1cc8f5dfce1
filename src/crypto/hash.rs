//! Block and vote hashes, block signatures, proof of work and the genesis blocks (§4.2, §4.4,
//! §5.3, §5.5).

use blake2b_simd::{Params, State};

use super::verify::verify;
use crate::types::{Amount, BlockHash, Network, PublicKey, Signature};
use crate::wire::{Block, BlockType, OpenBlock, Vote};

fn state(len: usize) -> State {
    Params::new().hash_length(len).to_state()
}

fn finish32(state: &State) -> BlockHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(state.finalize().as_bytes());
    BlockHash(out)
}

/// The state block hash preamble: the integer 6 as 32 big-endian bytes (§4.2).
const STATE_PREAMBLE: [u8; 32] = {
    let mut p = [0u8; 32];
    p[31] = 6;
    p
};

/// The block hash: Blake2b-256 over the block's hashables in field order; state blocks start
/// with the preamble (§4.2). Signature and work are not hashed.
pub fn block_hash(block: &Block) -> BlockHash {
    let mut st = state(32);
    match block {
        Block::Send(b) => st
            .update(&b.previous.0)
            .update(&b.destination.0)
            .update(&b.balance.to_be_bytes()),
        Block::Receive(b) => st.update(&b.previous.0).update(&b.source.0),
        Block::Open(b) => st
            .update(&b.source.0)
            .update(&b.representative.0)
            .update(&b.account.0),
        Block::Change(b) => st.update(&b.previous.0).update(&b.representative.0),
        Block::State(b) => st
            .update(&STATE_PREAMBLE)
            .update(&b.account.0)
            .update(&b.previous.0)
            .update(&b.representative.0)
            .update(&b.balance.to_be_bytes())
            .update(&b.link.0),
    };
    finish32(&st)
}

/// The 32-byte link of an epoch block for epoch `n` (1 or 2): "epoch vN block", zero padded.
pub fn epoch_link(n: u8) -> BlockHash {
    let mut link = [0u8; 32];
    let text = b"epoch v0 block";
    link[..text.len()].copy_from_slice(text);
    link[7] = b'0' + n;
    BlockHash(link)
}

/// The key that signs epoch `n` blocks on `network` (`nn@HEAD nano/secure/common.cpp`): the
/// genesis account for epoch 1 everywhere and for epoch 2 outside live; a dedicated key for
/// epoch 2 on live. `None` for other epochs.
pub fn epoch_signer(network: Network, n: u8) -> Option<PublicKey> {
    match (n, network) {
        (2, Network::Live) => Some(PublicKey(hex32(
            "DD24A9200D4BF8247981E4AC63DBDE38FD2319386970A26D02ECC98C79975DB1",
        ))),
        (1 | 2, _) => Some(genesis_account(network)),
        _ => None,
    }
}

/// Checks a block's signature over its hash where the block names its signer: open blocks by
/// `account`; state blocks by `account`, or, when `link` is an epoch link, alternatively by
/// that epoch's signer (telling an epoch block from a send to the epoch-link "account" needs
/// the ledger's previous balance). `None` for send, receive and change blocks, whose account
/// only the ledger knows.
pub fn verify_block_signature(block: &Block, network: Network) -> Option<bool> {
    let hash = block_hash(block);
    match block {
        Block::Open(b) => Some(verify(&hash.0, &b.signature, &b.account)),
        Block::State(b) => {
            if verify(&hash.0, &b.signature, &b.account) {
                return Some(true);
            }
            let epoch = (1..=2).find(|&n| b.link == epoch_link(n));
            Some(
                epoch
                    .and_then(|n| epoch_signer(network, n))
                    .is_some_and(|signer| verify(&hash.0, &b.signature, &signer)),
            )
        }
        _ => None,
    }
}

impl Block {
    /// The block hash (§4.2); see [`block_hash`].
    pub fn hash(&self) -> BlockHash {
        block_hash(self)
    }

    /// The proof-of-work value of this block's work over its root (§4.2).
    pub fn work_value(&self) -> u64 {
        work_value(&self.root(), self.work())
    }
}

/// The signed message of a vote: Blake2b-256("vote " ‖ hashes ‖ timestamp as 8 LE bytes) (§4.4).
pub fn vote_hash(hashes: &[BlockHash], timestamp: u64) -> BlockHash {
    let mut st = state(32);
    st.update(b"vote ");
    for h in hashes {
        st.update(&h.0);
    }
    st.update(&timestamp.to_le_bytes());
    finish32(&st)
}

/// The vote hash of §4.4 from the hashes as received (32 bytes each, back to back), without
/// collecting them first; the same as [`vote_hash`] of those hashes.
pub fn vote_hash_of_bytes(hash_bytes: &[u8], timestamp: u64) -> BlockHash {
    let mut st = state(32);
    st.update(b"vote ");
    st.update(hash_bytes);
    st.update(&timestamp.to_le_bytes());
    finish32(&st)
}

impl Vote {
    /// The vote hash (§4.4); see [`vote_hash`].
    pub fn hash(&self) -> BlockHash {
        vote_hash(&self.hashes, self.timestamp)
    }

    /// True when the signature is the voting account's over the vote hash.
    pub fn verify(&self) -> bool {
        verify(&self.hash().0, &self.signature, &self.account)
    }
}

/// The proof-of-work value: Blake2b-64(work as 8 LE bytes ‖ root) read as a LE u64 (§4.2). The
/// work is valid when the value is at least the threshold.
pub fn work_value(root: &BlockHash, work: u64) -> u64 {
    let mut st = state(8);
    st.update(&work.to_le_bytes()).update(&root.0);
    let mut out = [0u8; 8];
    out.copy_from_slice(st.finalize().as_bytes());
    u64::from_le_bytes(out)
}

/// Proof-of-work thresholds of one network (`nn@HEAD nano/lib/config.cpp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WorkThresholds {
    /// Every epoch-0/1 block; the entry threshold of legacy blocks.
    pub epoch_1: u64,
    /// Send and change blocks in epoch 2.
    pub epoch_2: u64,
    /// Receive, open and epoch blocks in epoch 2.
    pub epoch_2_receive: u64,
}

impl WorkThresholds {
    /// The live network (`publish_full`).
    pub const LIVE: WorkThresholds = WorkThresholds {
        epoch_1: 0xffff_ffc0_0000_0000,
        epoch_2: 0xffff_fff8_0000_0000,
        epoch_2_receive: 0xffff_fe00_0000_0000,
    };
    /// The beta network.
    pub const BETA: WorkThresholds = WorkThresholds {
        epoch_1: 0xffff_f000_0000_0000,
        epoch_2: 0xffff_f000_0000_0000,
        epoch_2_receive: 0xffff_e000_0000_0000,
    };
    /// The dev network.
    pub const DEV: WorkThresholds = WorkThresholds {
        epoch_1: 0xfe00_0000_0000_0000,
        epoch_2: 0xffc0_0000_0000_0000,
        epoch_2_receive: 0xf000_0000_0000_0000,
    };
    /// The test network: live values (nano-node lets `NANO_TEST_EPOCH_1/_2/_2_RECV` override
    /// them; the fields are public for that).
    pub const TEST: WorkThresholds = WorkThresholds::LIVE;

    /// The thresholds of `network`.
    pub const fn for_network(network: Network) -> WorkThresholds {
        match network {
            Network::Live => WorkThresholds::LIVE,
            Network::Beta => WorkThresholds::BETA,
            Network::Dev => WorkThresholds::DEV,
            Network::Test => WorkThresholds::TEST,
        }
    }

    /// The lowest of the three: what a state block needs at message ingress.
    pub const fn entry(&self) -> u64 {
        let mut m = self.epoch_1;
        if self.epoch_2 < m {
            m = self.epoch_2;
        }
        if self.epoch_2_receive < m {
            m = self.epoch_2_receive;
        }
        m
    }

    /// The ingress threshold for a block type (`threshold_entry`): [`entry`](Self::entry) for
    /// state blocks, `epoch_1` for legacy blocks.
    pub const fn entry_for(&self, block_type: BlockType) -> u64 {
        match block_type {
            BlockType::State => self.entry(),
            _ => self.epoch_1,
        }
    }

    /// True when the block's work passes the ingress check (`validate_entry`); a failure is
    /// `insufficient_work` and the message is dropped.
    pub fn validate_entry(&self, block: &Block) -> bool {
        block.work_value() >= self.entry_for(block.block_type())
    }
}

/// All supply in raw: u128::MAX, held by the genesis account at the start.
pub const GENESIS_AMOUNT: Amount = Amount(u128::MAX);

const fn hex_digit(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("bad hex digit"),
    }
}

const fn hex_array<const N: usize>(s: &str) -> [u8; N] {
    let s = s.as_bytes();
    assert!(s.len() == 2 * N);
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = (hex_digit(s[2 * i]) << 4) | hex_digit(s[2 * i + 1]);
        i += 1;
    }
    out
}

const fn hex32(s: &str) -> [u8; 32] {
    hex_array::<32>(s)
}

struct GenesisData {
    key: [u8; 32],
    work: u64,
    signature: [u8; 64],
    hash: [u8; 32],
}

// Sources: `nn@HEAD` (9efd849) nano/secure/common.cpp `*_genesis_data`. Live and dev hashes are
// §5.5; the test hash is also in dsiganos' pynanocoin; the beta hash is computed here and
// pinned by the test that checks the beta genesis signature over it (also Python hashlib).
const LIVE_GENESIS: GenesisData = GenesisData {
    key: hex32("E89208DD038FBB269987689621D52292AE9C35941A7484756ECCED92A65093BA"),
    work: 0x62f0_5417_dd3f_b691,
    signature: hex_array(
        "9F0C933C8ADE004D808EA1985FA746A7E95BA2A38F867640F53EC8F180BDFE9E\
         2C1268DEAD7C2664F356E37ABA362BC58E46DBA03E523A7B5A19E4B6EB12BB02",
    ),
    hash: hex32("991CF190094C00F0B68E2E5F75F6BEE95A2E0BD93CEAA4A6734DB9F19B728948"),
};

const BETA_GENESIS: GenesisData = GenesisData {
    key: hex32("259A438A8F9F9226130C84D902C237AF3E57C0981C7D709C288046B110D8C8AC"),
    work: 0xe87a_3ce3_9b43_b84c,
    signature: hex_array(
        "BC588273AC689726D129D3137653FB319B6EE6DB178F97421D11D075B46FD52B\
         6748223C8FF4179399D35CB1A8DF36F759325BD2D3D4504904321FAFB71D7602",
    ),
    hash: hex32("E1227CF974C1455A8B630433D94F3DDBF495EEAC9ADD2481A4A1D90A0D00F488"),
};

const DEV_GENESIS: GenesisData = GenesisData {
    key: hex32("B0311EA55708D6A53C75CDBF88300259C6D018522FE3D4D0A242E431F9E8B6D0"),
    work: 0x7b42_a00e_e91d_5810,
    signature: hex_array(
        "ECDA914373A2F0CA1296475BAEE40500A7F0A7AD72A5A80C81D7FAB7F6C802B2\
         CC7DB50F5DD0FB25B2EF11761FA7344A158DD5A700B21BD47DE5BD0F63153A02",
    ),
    hash: hex32("04270D7F11C4B2B472F2854C5A59F2A7E84226CE9ED799DE75744BD7D85FC9D9"),
};

const TEST_GENESIS: GenesisData = GenesisData {
    key: hex32("45C6FF9D1706D61F0821327752671BDA9F9ED2DA40326B01935AB566FB9E08ED"),
    work: 0xbc1e_f279_c1a3_4eb1,
    signature: hex_array(
        "15049467CAEE3EC768639E8E35792399B6078DA763DA4EBA8ECAD33B0EDC4AF2\
         E7403893A5A602EB89B978DABEF1D6606BB00F3C0EE11449232B143B6E07170E",
    ),
    hash: hex32("B1D60C0B886B57401EF5A1DAA04340E53726AA6F4D706C085706F31BBD100CEE"),
};

const fn genesis_data(network: Network) -> &'static GenesisData {
    match network {
        Network::Live => &LIVE_GENESIS,
        Network::Beta => &BETA_GENESIS,
        Network::Dev => &DEV_GENESIS,
        Network::Test => &TEST_GENESIS,
    }
}

/// The genesis account (and public key) of `network`. For test, nano-node lets
/// `NANO_TEST_GENESIS_PUB` / `NANO_TEST_GENESIS_BLOCK` replace it; this is the default.
pub const fn genesis_account(network: Network) -> PublicKey {
    PublicKey(genesis_data(network).key)
}

/// The hash of the genesis block of `network` (sent in v2 handshakes and telemetry).
pub const fn genesis_hash(network: Network) -> BlockHash {
    BlockHash(genesis_data(network).hash)
}

/// The genesis block of `network`: an open block whose source, representative and account are
/// all the genesis key.
pub fn genesis_block(network: Network) -> Block {
    let g = genesis_data(network);
    let key = PublicKey(g.key);
    Block::Open(OpenBlock {
        source: BlockHash(g.key),
        representative: key,
        account: key,
        signature: Signature(g.signature),
        work: g.work,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_hash_of_bytes_matches_vote_hash() {
        let hashes = [BlockHash([1; 32]), BlockHash([2; 32])];
        let bytes: Vec<u8> = hashes.iter().flat_map(|h| h.0).collect();
        assert_eq!(vote_hash_of_bytes(&bytes, 77), vote_hash(&hashes, 77));
        assert_eq!(vote_hash_of_bytes(&[], 5), vote_hash(&[], 5));
        assert_ne!(vote_hash_of_bytes(&bytes, 78), vote_hash(&hashes, 77));
    }

    #[test]
    fn epoch_links_spell_the_message() {
        assert_eq!(&epoch_link(1).0[..14], b"epoch v1 block");
        assert_eq!(&epoch_link(2).0[..14], b"epoch v2 block");
        assert!(epoch_link(2).0[14..].iter().all(|&b| b == 0));
        assert_eq!(
            epoch_signer(Network::Dev, 2),
            Some(genesis_account(Network::Dev))
        );
        assert_eq!(epoch_signer(Network::Live, 3), None);
    }

    #[test]
    fn entry_is_the_minimum() {
        assert_eq!(WorkThresholds::LIVE.entry(), 0xffff_fe00_0000_0000);
        assert_eq!(WorkThresholds::BETA.entry(), 0xffff_e000_0000_0000);
        assert_eq!(WorkThresholds::DEV.entry(), 0xf000_0000_0000_0000);
        assert_eq!(WorkThresholds::TEST, WorkThresholds::LIVE);
        assert_eq!(
            WorkThresholds::LIVE.entry_for(BlockType::Send),
            0xffff_ffc0_0000_0000
        );
        assert_eq!(
            WorkThresholds::LIVE.entry_for(BlockType::State),
            0xffff_fe00_0000_0000
        );
    }
}
