//! The values that cross between a shard core ([`super::shard`]), its I/O loop and the crawler
//! core ([`super::crawler`]). All plain data: the I/O loop (real io_uring shards in `node/`, or
//! the in-memory network of the simulation in `tests/`) carries them.
//!
//! ```text
//!  I/O loop ──bytes, connects, closes, verify results──► ShardCore ──IoAction──► I/O loop
//!                                                           │  └──VerifyRequest──► batch verifier
//!                                                           └──CrawlerEvent──► CrawlerCore
//!  CrawlerCore ──CrawlerOutput::Shard(ShardCommand)──► (bounded queue) ──► ShardCore
//!              └─CrawlerOutput::Node(NodeAction)──► store / DNS
//! ```

use std::sync::Arc;

use crate::channels::{Channel, ChannelId};
use crate::endpoint::Endpoint;
use crate::types::{BlockHash, PublicKey, Signature};
use crate::wire::{Block, HashRoot, SignedData, TelemetryData};

/// A connection of one shard, as the I/O loop names it (unique within the shard).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What a shard core asks its I/O loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoAction {
    /// Queue `bytes` (one or more whole messages) on the connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// Encoded messages.
        bytes: Vec<u8>,
    },
    /// Close the connection (after nothing else).
    Close {
        /// The connection.
        conn: ConnId,
        /// Why, for counters and the debug log.
        reason: CloseReason,
    },
    /// Open an outbound connection; the loop answers with `on_connected` or `on_dial_failed`.
    Dial {
        /// Where to.
        endpoint: Endpoint,
    },
    /// Close the connection if it is still open at `at_ms` with no newer deadline set.
    Deadline {
        /// The connection.
        conn: ConnId,
        /// Absolute time (ms, the loop's clock).
        at_ms: u64,
    },
}

/// Why a connection was closed (one counter each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// A header error: the stream cannot be framed any more (§2.7).
    HeaderError,
    /// The handshake failed (the outcome says which check).
    Handshake(HandshakeOutcome),
    /// A message other than node_id_handshake before the handshake completed (§6.2).
    MessageBeforeHandshake,
    /// A bootstrap message: nanopeer serves realtime peering only.
    BootstrapNotServed,
    /// Idle too long, or the handshake took too long (§7.3).
    Timeout,
    /// Purged by the crawler (idle channel, old version).
    Purged,
    /// The peer is excluded (§7.5), e.g. after a telemetry genesis mismatch.
    Excluded,
    /// Asked by a command (RPC, shutdown).
    Requested,
    /// Evicted from a full inbound table to make room for a new connection.
    Evicted,
    /// Another authenticated connection of the same node took its place (crossed dial, or a
    /// reconnect; see `proto::handshake::keep_new_channel`).
    Replaced,
    /// Over its misbehaviour budget (invalid signatures or verification work); the IP is
    /// excluded as well.
    Misbehaviour(Misbehaviour),
}

/// Why a peer was cut for misbehaving (one counter each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Misbehaviour {
    /// More invalid signatures (votes, blocks, telemetry) than its budget.
    InvalidSignatures,
    /// More signature checks per second than its budget.
    VerifyWork,
}

/// The result of a handshake, one counter each (§6.3; nano-node's stat names in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeOutcome {
    /// Channel created (`ok`).
    Ok,
    /// The response carries our own node id (`invalid_node_id`).
    OwnNodeId,
    /// A v2 response for another genesis (`invalid_genesis`).
    InvalidGenesis,
    /// No outstanding cookie for the remote endpoint (`missing_cookie`).
    MissingCookie,
    /// The signature does not verify (`invalid_signature`).
    InvalidSignature,
    /// A second query, a message with neither part, or a response we did not ask for.
    Protocol,
    /// No cookie could be assigned (per-IP or global cookie limit).
    CookieLimit,
    /// Channel admission refused: per-IP limit.
    MaxPerIp,
    /// Channel admission refused: per-subnet limit.
    MaxPerSubnet,
    /// Channel admission refused: the same node id is connected from the same IP.
    DuplicateNodeId,
    /// Channel admission refused: the remote is not a peer (reserved, unspecified, ourselves).
    NotAPeer,
    /// Channel admission refused: the peer is excluded.
    Excluded,
    /// Channel admission refused: the channel table is full or the endpoint is taken.
    ChannelLimit,
}

/// What a signature signs: a 32-byte digest (block hash, vote hash), the 32 or 96 bytes of a
/// handshake response, or the signed region of a telemetry_ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedMessage {
    /// A 32-byte digest.
    Digest(BlockHash),
    /// A handshake response's signed bytes (inline, no allocation).
    Handshake(SignedData),
    /// Arbitrary bytes (telemetry).
    Bytes(Vec<u8>),
}

impl SignedMessage {
    /// The bytes that were signed.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            SignedMessage::Digest(d) => d.as_bytes(),
            SignedMessage::Handshake(h) => h.as_bytes(),
            SignedMessage::Bytes(b) => b,
        }
    }
}

/// A signature check a shard wants. The loop batches requests (flush at `batch_max`, after
/// `batch_delay_us`, or before sleeping) and hands each result back to the shard with `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    /// Opaque to the loop; the shard matches the result with it.
    pub id: u64,
    /// The signer.
    pub key: PublicKey,
    /// What was signed.
    pub message: SignedMessage,
    /// The signature.
    pub signature: Signature,
    /// Verify it on its own, outside any batch: its source sent an invalid signature recently,
    /// so a batch holding it would likely fail and fall back for everyone (the adaptation
    /// is per source).
    pub alone: bool,
}

/// What shards report to the crawler core.
#[derive(Debug, Clone)]
pub enum CrawlerEvent {
    /// A handshake completed and the channel is in the map. The pair is the rep crawler query
    /// the shard sent with keepalive_self (`None`: it sent none, the crawler queries).
    ChannelUp(Arc<Channel>, Option<HashRoot>),
    /// A channel closed and left the map.
    ChannelDown(Arc<Channel>),
    /// A keepalive arrived on a channel (slot 0 already applied to its peering endpoint).
    Keepalive {
        /// The channel.
        channel: ChannelId,
        /// The 8 advertised endpoints, as received.
        peers: [Endpoint; 8],
    },
    /// A confirm_ack whose signature verified.
    Vote {
        /// The channel it came on.
        channel: ChannelId,
        /// The voting representative.
        account: PublicKey,
        /// The hashes voted for.
        hashes: Vec<BlockHash>,
        /// The packed timestamp.
        timestamp: u64,
        /// The rebroadcasted flag.
        rebroadcasted: bool,
    },
    /// A published block that is new (not a duplicate), has entry-level work and, for open and
    /// state blocks, a valid signature: relay it.
    Block {
        /// The channel it came on (not relayed back there).
        channel: ChannelId,
        /// Its hash.
        hash: BlockHash,
        /// The block.
        block: Arc<Block>,
    },
    /// A telemetry_ack whose node id, genesis and signature checked out.
    Telemetry {
        /// The channel.
        channel: ChannelId,
        /// The data.
        data: Box<TelemetryData>,
    },
    /// A telemetry_ack for another genesis: exclude the peer's IP (§7.5, §9); the shard has
    /// closed the channel already.
    GenesisMismatch {
        /// The channel.
        channel: Arc<Channel>,
    },
    /// A channel of another shard lost its place to a connection of the same node on this
    /// shard ([`CloseReason::Replaced`]); it is out of the map already and its shard must
    /// close the connection.
    Replaced(Arc<Channel>),
    /// An outbound dial failed before a handshake could start.
    DialFailed {
        /// Where to.
        endpoint: Endpoint,
    },
}

/// What the crawler asks a shard to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardCommand {
    /// Send encoded messages on a channel owned by this shard (dropped if it closed meanwhile).
    Send {
        /// The channel.
        channel: ChannelId,
        /// Encoded messages, shared by every channel of a fan-out.
        bytes: Arc<[u8]>,
    },
    /// Dial an endpoint (the reachout checks are done).
    Dial {
        /// Where to.
        endpoint: Endpoint,
    },
    /// Close a channel.
    Close {
        /// The channel.
        channel: ChannelId,
        /// Why.
        reason: CloseReason,
    },
}

/// What the crawler asks the node (persistence, DNS) to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    /// Write these peering endpoints to the peer store, stamped now (§7.6).
    FlushPeers(Vec<Endpoint>),
    /// Store an online-weight sample (§8).
    SaveOnlineSample(u128),
    /// Resolve the preconfigured peers and hand the addresses back to the crawler.
    ResolvePreconfigured,
}

/// One output of the crawler core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrawlerOutput {
    /// A command for the shard that owns the channel (or, for dials, the shard picked).
    Shard {
        /// The shard.
        shard: u16,
        /// The command.
        command: ShardCommand,
    },
    /// Work for the node.
    Node(NodeAction),
}
