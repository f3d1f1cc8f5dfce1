//! The rep crawler and online weight (§8).
//!
//! Every round (7 s when the known weight is sufficient, 3 s while warming up; dev 0.5 s) the
//! crawler sends one `confirm_req(hash, root)` to random channels and remembers
//! (hash, channel, sent time). A vote counts as a response only if it is live (not
//! rebroadcasted), from a non-zero account, and contains a hash that was queried on **that
//! same channel** and has not expired, and only under the bounds of [Which votes
//! count](#which-votes-count): weighted accounts only, one counted answer per query, a rep
//! bound to the node that answered, at most [`REPS_MAX`] reps. The representative is then
//! recorded with its channel.
//!
//! # The first query of a new channel
//!
//! Each new channel is also queried once when it comes up. By default the **shard** sends
//! that query, right after keepalive_self in the same loop turn (so both leave in one TCP
//! segment): it picks a pair from the [`QueryBoard`], to which the rep crawler publishes its
//! candidates, and passes the pair on in `ChannelUp`; the crawler records it with
//! [`RepCrawler::record_query`] exactly as if it had sent it. With
//! [`ProtoConfig::query_on_up`] off the shard passes no pair and the crawler sends the query
//! itself ([`RepCrawler::query_channel`]).
//!
//! # Which hash to ask for
//!
//! nanopeer has no ledger. The query set is the network's **genesis block** (root = genesis
//! account), which every node has and which is confirmed, plus hashes recently seen in valid
//! votes (the blocks under vote right now). A reference node answers a confirm_req through its
//! request aggregator: it looks the block up **by hash** first and only falls back to the root
//! (successor of the root block, or the open block of the root account) when the hash is
//! unknown. So the root matters little when the peer has the block: for vote hashes whose
//! block was relayed to us the real root is used; otherwise the hash itself is sent as the
//! root. That can never name another block (no block's successor or account is found under a
//! hash the peer lacks), so the worst case is no answer.
//!
//! # Which votes count
//!
//! A vote is an *answer* when it is live (not rebroadcasted), from a non-zero account, arrives
//! on an alive channel and names a hash queried on **that same channel** whose query has not
//! expired. An answer then counts (is a *response*) only if all of this holds:
//!
//! - **The account has weight.** Accounts that weigh 0 in [`RepWeights`] are refused
//!   (`votes_no_weight`), and so are those below the minimum, the principal-representative
//!   weight (trended online weight / 1000, §8) unless [`RepCrawlerConfig::min_weight`]
//!   overrides it (`votes_low_weight`). The table of known reps is therefore a subset of the
//!   weights table: fresh keys never enter it. On beta without a weights file nothing weighs
//!   anything and nothing counts (see [`super::weights`]).
//! - **The query is still open.** A query is consumed by its first counted answer: a second
//!   vote for the same (channel, hash) query, from any account, does not count
//!   (`votes_query_used`) until the hash is asked on that channel again. A refused answer does
//!   not consume the query. So a node that votes with several representatives has one of them
//!   counted per query (the reference counts them all; it also lets one query bind any number
//!   of replayed reps, which is what this rule stops).
//! - **The rep is not bound to another node.** A rep is bound to the node id of the channel
//!   it first answered on. An answer from a channel with another node id (a replay of the
//!   rep's vote by a third party) is refused (`reps_rebind_refused`) while the bound channel is
//!   alive and the bound node keeps answering. The rep moves (`reps_moved`) to a new channel
//!   of the **same** node id (the rep's node reconnected), or to any channel once the bound
//!   channel is closed (closed channels' reps are dropped at once, on `ChannelDown`, and at
//!   every round). It is rebound to **another** node id (`reps_rebound`) only when the
//!   binding is stale: its last counted answer is older than
//!   [`RepCrawlerConfig::rebind_after_ms`] (30 re-query intervals: 30 min on live) *and* a
//!   query sent on the bound channel since then expired unanswered. That is the operator who
//!   moved the rep key to another host; a host that keeps answering is never displaced.
//! - **There is room.** The table holds at most [`REPS_MAX`] reps. A new rep arriving when it
//!   is full evicts the one [`cap_victim`] names: a rep whose channel is closed, else the
//!   lightest (ties: least recently answered, then the smallest account), and only if that one
//!   is strictly lighter than the newcomer (`reps_cap_evicted`); otherwise the newcomer is
//!   refused (`reps_cap_refused`). The heaviest reps are kept, and the table never grows past
//!   the cap whatever peers send.
//!
//! A counted response marks the rep online (for the online weight) and records or refreshes
//! it with its channel. Unlike the reference, loopback channels are not ignored: tests and
//! local networks run on loopback.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddrV6;
use std::sync::Arc;

use parking_lot::RwLock;
use rand::{Rng, RngCore};

use super::config::ProtoConfig;
use super::events::{CrawlerOutput, NodeAction, ShardCommand};
use super::keepalive::random_subset;
use super::online::OnlineReps;
use super::weights::RepWeights;
use crate::channels::{Channel, ChannelId};
use crate::crypto::{genesis_account, genesis_hash};
use crate::types::{BlockHash, Network, PublicKey};
use crate::wire::{ConfirmReq, HashRoot, Message};

/// Vote hashes remembered for queries.
pub const SEEN_HASHES_MAX: usize = 64;
/// Block roots remembered (from relayed blocks) to pair with vote hashes.
pub const ROOTS_MAX: usize = 4096;
/// Outstanding queries kept at most (oldest dropped first).
pub const QUERIES_MAX: usize = 16_384;
/// Most representatives the rep crawler keeps. The principal-representative weight is 0.1 %
/// of the trended online weight, so about 1000 reps that are online can hold it at once (on
/// live in 2024 fewer than 100 do; the built-in snapshot lists 133 reps in all); the cap is
/// that bound with some headroom. At the cap the lightest rep makes room for a heavier
/// newcomer and a lighter one is refused ([`cap_victim`]). The table is copied into the
/// status the node publishes every 100 ms, so its size is what that copy costs.
pub const REPS_MAX: usize = 1024;
/// A rep is rebound to another node only after this many re-query intervals without an
/// answer from its bound node ([`RepCrawlerConfig::rebind_after_ms`]).
pub const REBIND_AFTER_REQUERIES: u64 = 30;

/// The genesis pair of `network`: the genesis block's hash with the genesis account as root.
pub fn genesis_query(network: Network) -> HashRoot {
    HashRoot {
        hash: genesis_hash(network),
        root: BlockHash(genesis_account(network).0),
    }
}

/// The rep crawler's current query candidates, shared with the shards so that a shard can
/// send the first query of a new channel itself: the recently seen vote hashes paired with
/// their roots (at most [`SEEN_HASHES_MAX`]), then the genesis pair. The rep crawler
/// republishes whenever the set changes; a uniform pick from the board is a pick of the rep
/// crawler's own query choice. Never empty: the genesis pair is always there.
#[derive(Debug)]
pub struct QueryBoard {
    pairs: RwLock<Arc<[HashRoot]>>,
}

impl QueryBoard {
    /// A board holding only the genesis pair of `network`.
    pub fn new(network: Network) -> QueryBoard {
        QueryBoard {
            pairs: RwLock::new(Arc::from([genesis_query(network)])),
        }
    }

    /// A uniformly chosen candidate.
    pub fn pick(&self, rng: &mut impl RngCore) -> HashRoot {
        let pairs = self.pairs.read();
        pairs[rng.random_range(0..pairs.len())]
    }

    /// The current candidates: seen pairs in arrival order, the genesis pair last.
    pub fn pairs(&self) -> Arc<[HashRoot]> {
        self.pairs.read().clone()
    }

    fn publish(&self, pairs: Arc<[HashRoot]>) {
        *self.pairs.write() = pairs;
    }
}

/// Rep crawler settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepCrawlerConfig {
    /// The network (genesis of the query set).
    pub network: Network,
    /// Round interval once weight is sufficient.
    pub normal_ms: u64,
    /// Round interval while weight is insufficient.
    pub warmup_ms: u64,
    /// A query expires after this.
    pub query_timeout_ms: u64,
    /// A channel that hosts a known rep is queried again only after this.
    pub rep_requery_ms: u64,
    /// Channels queried per round while insufficient.
    pub max_targets: usize,
    /// Channels queried per round once sufficient.
    pub max_targets_sufficient: usize,
    /// A non-rep channel with this many outstanding queries is skipped (normal).
    pub max_outstanding: usize,
    /// The same while insufficient (aggressive).
    pub max_outstanding_aggressive: usize,
    /// Minimum weight of a counted rep; `None` = trended / 1000 (PR weight).
    pub min_weight: Option<u128>,
    /// ResolvePreconfigured at most this often while insufficient.
    pub preconfigured_interval_ms: u64,
    /// Online-weight sample period.
    pub sample_ms: u64,
    /// A rep bound to an alive channel moves to a channel of another node id only when its
    /// last counted answer is at least this old and a later query on the bound channel went
    /// unanswered (see the [module docs](self)).
    pub rebind_after_ms: u64,
}

impl RepCrawlerConfig {
    /// Settings from the protocol config: targets 160 while insufficient, 40 once sufficient;
    /// outstanding limits 4 / 8; a rep channel is re-queried after 60 s (dev: the normal
    /// interval); preconfigured peers are resolved at most once per keepalive period; a rep
    /// is rebound to another node after [`REBIND_AFTER_REQUERIES`] re-query intervals of
    /// silence (live 30 min, dev 15 s).
    pub fn from_proto(c: &ProtoConfig) -> RepCrawlerConfig {
        let rep_requery_ms = if c.network == Network::Dev {
            c.rep_crawler_normal_ms
        } else {
            60_000
        };
        RepCrawlerConfig {
            network: c.network,
            normal_ms: c.rep_crawler_normal_ms,
            warmup_ms: c.rep_crawler_warmup_ms,
            query_timeout_ms: c.rep_query_timeout_ms,
            rep_requery_ms,
            max_targets: c.rep_crawler_max_targets,
            max_targets_sufficient: (c.rep_crawler_max_targets / 4).max(1),
            max_outstanding: 4,
            max_outstanding_aggressive: 8,
            min_weight: None,
            preconfigured_interval_ms: c.keepalive_period_ms,
            sample_ms: c.online_weight_sample_ms,
            rebind_after_ms: REBIND_AFTER_REQUERIES * rep_requery_ms,
        }
    }
}

/// A known representative.
#[derive(Debug, Clone)]
pub struct RepEntry {
    /// The representative account.
    pub account: PublicKey,
    /// The channel it is bound to: the one its last counted answer came on.
    pub channel: Arc<Channel>,
    /// Its weight (raw, never 0).
    pub weight: u128,
    /// Last counted response.
    pub last_response_ms: u64,
}

impl RepEntry {
    /// The node id the rep is bound to (that of its channel).
    pub fn node_id(&self) -> &PublicKey {
        self.channel.node_id()
    }
}

/// The rep to evict so that a new rep of weight `newcomer` fits into a full table, or `None`
/// when the newcomer must be refused. The candidate is a rep whose channel is closed if there
/// is one, else the lightest rep (ties: the least recently answered, then the smallest
/// account); it is evicted if its channel is closed or it is strictly lighter than the
/// newcomer. An equal weight keeps the incumbent, so equals cannot churn the table.
pub fn cap_victim<'a>(
    reps: impl IntoIterator<Item = &'a RepEntry>,
    newcomer: u128,
) -> Option<PublicKey> {
    let v = reps.into_iter().min_by_key(|r| {
        (
            r.channel.is_alive(),
            r.weight,
            r.last_response_ms,
            r.account,
        )
    })?;
    (!v.channel.is_alive() || v.weight < newcomer).then_some(v.account)
}

/// One representative as the RPC shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepInfo {
    /// The account.
    pub account: PublicKey,
    /// The channel's remote endpoint.
    pub endpoint: SocketAddrV6,
    /// Its weight (raw).
    pub weight: u128,
    /// Last counted response (ms).
    pub last_response_ms: u64,
}

/// The rep crawler's state for the RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepStatus {
    /// Known representatives with alive channels, by account.
    pub representatives: Vec<RepInfo>,
    /// Σ weight of online reps (observed within 300 s).
    pub online_weight: u128,
    /// Trended online weight.
    pub trended: u128,
    /// Quorum delta.
    pub delta: u128,
    /// Σ weight of known reps with alive channels.
    pub known_weight: u128,
    /// known_weight > delta.
    pub sufficient: bool,
}

/// Rep crawler counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepCrawlerStats {
    /// Rounds run.
    pub rounds: u64,
    /// confirm_req sent (one per target).
    pub queries_sent: u64,
    /// Queries that expired.
    pub queries_expired: u64,
    /// Votes seen.
    pub votes: u64,
    /// Votes ignored: rebroadcasted.
    pub votes_rebroadcasted: u64,
    /// Votes ignored: zero account.
    pub votes_zero_account: u64,
    /// Votes ignored: no hash queried on that channel (or expired), or the channel is closed.
    pub votes_unsolicited: u64,
    /// Answers refused: the query they answer was already consumed by a counted answer.
    pub votes_query_used: u64,
    /// Answers refused: the account has no weight (not in the weights table).
    pub votes_no_weight: u64,
    /// Answers refused: weight below the minimum (but not 0).
    pub votes_low_weight: u64,
    /// Responses counted.
    pub responses: u64,
    /// New reps.
    pub reps_added: u64,
    /// Reps that moved to a new channel of the same node id, or away from a closed channel.
    pub reps_moved: u64,
    /// Reps rebound to another node id after their bound node stopped answering.
    pub reps_rebound: u64,
    /// Answers refused: the rep is bound to another node that still answers (a replay).
    pub reps_rebind_refused: u64,
    /// Reps dropped because their channel closed.
    pub reps_evicted: u64,
    /// Reps evicted at the cap ([`REPS_MAX`]) to make room for a heavier one.
    pub reps_cap_evicted: u64,
    /// New reps refused at the cap: not heavier than the lightest rep kept.
    pub reps_cap_refused: u64,
    /// ResolvePreconfigured emitted.
    pub preconfigured_resolves: u64,
    /// Online-weight samples taken.
    pub samples: u64,
}

/// One query sent: when, and whether a counted answer consumed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Query {
    sent_ms: u64,
    answered: bool,
}

/// The rep crawler.
#[derive(Debug)]
pub struct RepCrawler {
    config: RepCrawlerConfig,
    weights: RepWeights,
    online: OnlineReps,
    reps: BTreeMap<PublicKey, RepEntry>,
    /// (channel, hash) → the latest query of that pair, until it expires.
    queries: HashMap<(ChannelId, BlockHash), Query>,
    /// Send order, for expiry.
    query_order: VecDeque<(u64, ChannelId, BlockHash)>,
    /// Channel → unanswered, unexpired queries on it.
    outstanding: HashMap<ChannelId, usize>,
    /// Channel → last time it was queried.
    last_request: HashMap<ChannelId, u64>,
    /// Channel → send time of the latest query on it that expired without a counted answer.
    unanswered: HashMap<ChannelId, u64>,
    seen: VecDeque<BlockHash>,
    roots: HashMap<BlockHash, BlockHash>,
    root_order: VecDeque<BlockHash>,
    /// The query candidates (`seen` paired with roots, then genesis), published here;
    /// [`pick_query`](Self::pick_query) picks from it too.
    board: Arc<QueryBoard>,
    next_round_ms: u64,
    next_preconfigured_ms: u64,
    next_sample_ms: u64,
    stats: RepCrawlerStats,
}

impl RepCrawler {
    /// A crawler with these weights and online-weight state (samples loaded from the store),
    /// publishing to a board of its own (see [`with_board`](Self::with_board)).
    pub fn new(config: RepCrawlerConfig, weights: RepWeights, online: OnlineReps) -> RepCrawler {
        let next_sample_ms = config.sample_ms;
        RepCrawler {
            board: Arc::new(QueryBoard::new(config.network)),
            config,
            weights,
            online,
            reps: BTreeMap::new(),
            queries: HashMap::new(),
            query_order: VecDeque::new(),
            outstanding: HashMap::new(),
            last_request: HashMap::new(),
            unanswered: HashMap::new(),
            seen: VecDeque::new(),
            roots: HashMap::new(),
            root_order: VecDeque::new(),
            next_round_ms: 0,
            next_preconfigured_ms: 0,
            next_sample_ms,
            stats: RepCrawlerStats::default(),
        }
    }

    /// Publishes the query candidates to `board` (shared with the shards) from now on.
    pub fn with_board(mut self, board: Arc<QueryBoard>) -> RepCrawler {
        board.publish(self.board.pairs());
        self.board = board;
        self
    }

    /// The board the query candidates are published to.
    pub fn board(&self) -> &Arc<QueryBoard> {
        &self.board
    }

    /// The counters.
    pub fn stats(&self) -> &RepCrawlerStats {
        &self.stats
    }

    /// The weights in use.
    pub fn weights(&self) -> &RepWeights {
        &self.weights
    }

    /// The settings.
    pub fn config(&self) -> &RepCrawlerConfig {
        &self.config
    }

    /// Outstanding queries: not yet answered, not yet purged after expiry.
    pub fn outstanding_queries(&self) -> usize {
        self.outstanding.values().sum()
    }

    /// The known reps (any channel state), by account.
    pub fn reps(&self) -> impl Iterator<Item = &RepEntry> {
        self.reps.values()
    }

    /// The known rep `account`, if any.
    pub fn rep(&self, account: &PublicKey) -> Option<&RepEntry> {
        self.reps.get(account)
    }

    /// Number of known reps (at most [`REPS_MAX`]).
    pub fn rep_count(&self) -> usize {
        self.reps.len()
    }

    /// The minimum weight of a counted rep now.
    pub fn min_weight(&self) -> u128 {
        self.config
            .min_weight
            .unwrap_or_else(|| self.online.trended() / 1000)
    }

    /// Σ weight of known reps whose channel is alive.
    pub fn known_weight(&self) -> u128 {
        self.reps
            .values()
            .filter(|r| r.channel.is_alive())
            .fold(0u128, |a, r| a.saturating_add(r.weight))
    }

    /// Σ weight of reps observed online within the weight period.
    pub fn online_weight(&self, now_ms: u64) -> u128 {
        self.online.online(now_ms, |a| self.weights.get(a))
    }

    /// Known weight > quorum delta.
    pub fn sufficient(&self, now_ms: u64) -> bool {
        self.known_weight() > self.online.delta(self.online_weight(now_ms))
    }

    /// True when `channel` hosts a known rep.
    pub fn is_rep_channel(&self, channel: ChannelId) -> bool {
        self.reps.values().any(|r| r.channel.id() == channel)
    }

    /// True when `channel` hosts a rep of at least the PR weight (`is_pr`).
    pub fn is_pr(&self, channel: ChannelId) -> bool {
        let min = self.online.trended() / 1000;
        self.reps
            .values()
            .any(|r| r.channel.id() == channel && r.weight >= min && r.weight > 0)
    }

    /// The status for the RPC.
    pub fn status(&self, now_ms: u64) -> RepStatus {
        let online_weight = self.online_weight(now_ms);
        let delta = self.online.delta(online_weight);
        let known_weight = self.known_weight();
        RepStatus {
            representatives: self
                .reps
                .values()
                .filter(|r| r.channel.is_alive())
                .map(|r| RepInfo {
                    account: r.account,
                    endpoint: r.channel.remote(),
                    weight: r.weight,
                    last_response_ms: r.last_response_ms,
                })
                .collect(),
            online_weight,
            trended: self.online.trended(),
            delta,
            known_weight,
            sufficient: known_weight > delta,
        }
    }

    /// Remembers the root of a relayed block, to pair with its hash in later queries.
    pub fn note_block(&mut self, hash: BlockHash, root: BlockHash) {
        if self.roots.insert(hash, root).is_none() {
            let mut changed = self.seen.contains(&hash);
            self.root_order.push_back(hash);
            if self.root_order.len() > ROOTS_MAX
                && let Some(old) = self.root_order.pop_front()
            {
                self.roots.remove(&old);
                changed |= self.seen.contains(&old);
            }
            if changed {
                self.refresh_candidates();
            }
        }
    }

    /// Rebuilds the candidates from `seen` and `roots` and publishes them to the board.
    fn refresh_candidates(&mut self) {
        let genesis = genesis_query(self.config.network);
        let pairs: Arc<[HashRoot]> = self
            .seen
            .iter()
            .map(|&hash| HashRoot {
                hash,
                root: self.roots.get(&hash).copied().unwrap_or(hash),
            })
            .chain(std::iter::once(genesis))
            .collect();
        self.board.publish(pairs);
    }

    /// The hash/root to ask for: the genesis block, or a hash recently seen in a vote (the
    /// same uniform pick the shards make from the board).
    fn pick_query(&self, rng: &mut impl RngCore) -> HashRoot {
        self.board.pick(rng)
    }

    /// Records a confirm_req for `q` sent on `channel` at `now_ms`: it is outstanding (a vote
    /// for `q.hash` from that channel counts as a response until it expires), the channel was
    /// queried now, and `queries_sent` counts it. The oldest records beyond [`QUERIES_MAX`]
    /// are dropped. The crawler's own queries go through here, and so does the first query
    /// of a channel the shard sent with keepalive_self.
    pub fn record_query(&mut self, channel: ChannelId, q: HashRoot, now_ms: u64) {
        let fresh = Query {
            sent_ms: now_ms,
            answered: false,
        };
        // a new pair, or one whose earlier query was consumed, is outstanding again
        if self
            .queries
            .insert((channel, q.hash), fresh)
            .is_none_or(|old| old.answered)
        {
            *self.outstanding.entry(channel).or_default() += 1;
        }
        self.query_order.push_back((now_ms, channel, q.hash));
        self.last_request.insert(channel, now_ms);
        self.stats.queries_sent += 1;
        while self.query_order.len() > QUERIES_MAX {
            if let Some((t, ch, h)) = self.query_order.pop_front() {
                self.drop_query(t, ch, h);
            }
        }
    }

    fn send_query(
        &mut self,
        targets: &[Arc<Channel>],
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut Vec<CrawlerOutput>,
    ) {
        if targets.is_empty() {
            return;
        }
        let q = self.pick_query(rng);
        let bytes: Arc<[u8]> = Message::ConfirmReq(ConfirmReq { pairs: vec![q] })
            .encode(self.config.network)
            .into();
        for c in targets {
            self.record_query(c.id(), q, now_ms);
            out.push(CrawlerOutput::Shard {
                shard: c.shard(),
                command: ShardCommand::Send {
                    channel: c.id(),
                    bytes: bytes.clone(),
                },
            });
        }
    }

    fn drop_query(&mut self, sent_ms: u64, ch: ChannelId, hash: BlockHash) {
        // Only the entry recorded at this time: a re-query of the same pair refreshed it.
        if let Some(q) = self.queries.get(&(ch, hash)).copied()
            && q.sent_ms == sent_ms
        {
            self.queries.remove(&(ch, hash));
            if !q.answered {
                self.unmark_outstanding(ch);
            }
        }
    }

    fn unmark_outstanding(&mut self, ch: ChannelId) {
        if let Some(n) = self.outstanding.get_mut(&ch) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.outstanding.remove(&ch);
            }
        }
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some(&(t, ch, h)) = self.query_order.front() {
            if now_ms.saturating_sub(t) < self.config.query_timeout_ms {
                break;
            }
            self.query_order.pop_front();
            if self.queries.get(&(ch, h))
                == Some(&Query {
                    sent_ms: t,
                    answered: false,
                })
            {
                self.stats.queries_expired += 1;
                let last = self.unanswered.entry(ch).or_insert(t);
                *last = (*last).max(t);
            }
            self.drop_query(t, ch, h);
        }
    }

    /// Queries a new channel once (at ChannelUp, when the shard did not).
    pub fn query_channel(
        &mut self,
        channel: &Arc<Channel>,
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut Vec<CrawlerOutput>,
    ) {
        self.send_query(std::slice::from_ref(channel), now_ms, rng, out);
    }

    /// Forgets per-channel bookkeeping of a closed channel and evicts reps on it.
    pub fn channel_down(&mut self, channel: ChannelId) {
        self.last_request.remove(&channel);
        self.unanswered.remove(&channel);
        let before = self.reps.len();
        self.reps.retain(|_, r| r.channel.id() != channel);
        self.stats.reps_evicted += (before - self.reps.len()) as u64;
    }

    /// A verified vote arrived on `channel`. Returns true if it counted as a response.
    pub fn on_vote(
        &mut self,
        channel: Option<&Arc<Channel>>,
        channel_id: ChannelId,
        account: PublicKey,
        hashes: &[BlockHash],
        rebroadcasted: bool,
        now_ms: u64,
    ) -> bool {
        self.stats.votes += 1;
        let mut changed = false;
        for h in hashes.iter().take(8) {
            if !self.seen.contains(h) {
                changed = true;
                self.seen.push_back(*h);
                if self.seen.len() > SEEN_HASHES_MAX {
                    self.seen.pop_front();
                }
            }
        }
        if changed {
            self.refresh_candidates();
        }
        if rebroadcasted {
            self.stats.votes_rebroadcasted += 1;
            return false;
        }
        if account.is_zero() {
            self.stats.votes_zero_account += 1;
            return false;
        }
        // The hashes of this vote that were asked on this channel and have not expired; the
        // open ones (not yet consumed) are what a counted answer uses up.
        let timeout = self.config.query_timeout_ms;
        let mut open: Vec<BlockHash> = Vec::new();
        let mut used = false;
        for h in hashes {
            match self.queries.get(&(channel_id, *h)) {
                Some(q) if now_ms.saturating_sub(q.sent_ms) < timeout => {
                    if q.answered {
                        used = true;
                    } else if !open.contains(h) {
                        open.push(*h);
                    }
                }
                _ => {}
            }
        }
        let Some(channel) = channel.filter(|c| !open.is_empty() && c.is_alive()) else {
            if used && open.is_empty() {
                self.stats.votes_query_used += 1;
            } else {
                self.stats.votes_unsolicited += 1;
            }
            return false;
        };
        let weight = self.weights.get(&account);
        if weight == 0 {
            self.stats.votes_no_weight += 1;
            return false;
        }
        if weight < self.min_weight() {
            self.stats.votes_low_weight += 1;
            return false;
        }
        if !self.bind(account, channel, weight, now_ms) {
            return false;
        }
        for h in open {
            if let Some(q) = self.queries.get_mut(&(channel_id, h)) {
                q.answered = true;
                self.unmark_outstanding(channel_id);
            }
        }
        self.stats.responses += 1;
        self.online.observe(account, now_ms);
        true
    }

    /// Records a counted answer of `account` on `channel` in the rep table, under the binding
    /// and cap rules of the [module docs](self). False (and counted) when it is refused.
    fn bind(
        &mut self,
        account: PublicKey,
        channel: &Arc<Channel>,
        weight: u128,
        now_ms: u64,
    ) -> bool {
        if let Some(e) = self.reps.get(&account) {
            if e.channel.id() != channel.id() {
                if !e.channel.is_alive() || e.node_id() == channel.node_id() {
                    self.stats.reps_moved += 1;
                } else if self.binding_stale(e, now_ms) {
                    self.stats.reps_rebound += 1;
                    tracing::debug!(rep = %account.to_account(), from = %e.channel.remote(),
                        to = %channel.remote(), "rep rebound: its node stopped answering");
                } else {
                    self.stats.reps_rebind_refused += 1;
                    tracing::debug!(rep = %account.to_account(), bound = %e.channel.remote(),
                        from = %channel.remote(), "rep answer refused: bound to another node");
                    return false;
                }
            }
            let e = self.reps.get_mut(&account).expect("present");
            e.channel = channel.clone();
            e.weight = weight;
            e.last_response_ms = now_ms;
            return true;
        }
        if self.reps.len() >= REPS_MAX {
            match cap_victim(self.reps.values(), weight) {
                Some(victim) => {
                    self.reps.remove(&victim);
                    self.stats.reps_cap_evicted += 1;
                    tracing::debug!(evicted = %victim.to_account(), rep = %account.to_account(),
                        "rep table full: lightest rep evicted");
                }
                None => {
                    self.stats.reps_cap_refused += 1;
                    tracing::debug!(rep = %account.to_account(), "rep table full: rep refused");
                    return false;
                }
            }
        }
        self.reps.insert(
            account,
            RepEntry {
                account,
                channel: channel.clone(),
                weight,
                last_response_ms: now_ms,
            },
        );
        self.stats.reps_added += 1;
        true
    }

    /// True when `e`'s bound node stopped answering for it: its last counted answer is at
    /// least [`RepCrawlerConfig::rebind_after_ms`] old, and a query sent on the bound channel
    /// at or after that answer expired unanswered.
    fn binding_stale(&self, e: &RepEntry, now_ms: u64) -> bool {
        now_ms.saturating_sub(e.last_response_ms) >= self.config.rebind_after_ms
            && self
                .unanswered
                .get(&e.channel.id())
                .is_some_and(|&t| t >= e.last_response_ms)
    }

    /// When [`tick`](Self::tick) has work next.
    pub fn next_wakeup_ms(&self) -> u64 {
        self.next_round_ms.min(self.next_sample_ms)
    }

    /// Runs what is due: a round (expire, evict, sufficiency, preconfigured, queries) and the
    /// online-weight sample. `channels` is the alive channel list.
    pub fn tick(
        &mut self,
        channels: &[Arc<Channel>],
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut Vec<CrawlerOutput>,
    ) {
        if now_ms >= self.next_sample_ms {
            self.online.trim(now_ms);
            let w = self.online_weight(now_ms);
            self.online.sample(w);
            self.stats.samples += 1;
            out.push(CrawlerOutput::Node(NodeAction::SaveOnlineSample(w)));
            self.next_sample_ms = now_ms + self.config.sample_ms.max(1);
        }
        if now_ms < self.next_round_ms {
            return;
        }
        self.stats.rounds += 1;
        self.expire(now_ms);
        let before = self.reps.len();
        self.reps.retain(|_, r| r.channel.is_alive());
        self.stats.reps_evicted += (before - self.reps.len()) as u64;
        let sufficient = self.sufficient(now_ms);
        if !sufficient && now_ms >= self.next_preconfigured_ms {
            out.push(CrawlerOutput::Node(NodeAction::ResolvePreconfigured));
            self.stats.preconfigured_resolves += 1;
            self.next_preconfigured_ms = now_ms + self.config.preconfigured_interval_ms;
        }
        let (n, max_out) = if sufficient {
            (
                self.config.max_targets_sufficient,
                self.config.max_outstanding,
            )
        } else {
            (
                self.config.max_targets,
                self.config.max_outstanding_aggressive,
            )
        };
        let rep_channels: HashMap<ChannelId, ()> =
            self.reps.values().map(|r| (r.channel.id(), ())).collect();
        let requery = self.config.rep_requery_ms;
        let candidates = random_subset(channels, n, rng, |c| {
            if rep_channels.contains_key(&c.id()) {
                self.last_request
                    .get(&c.id())
                    .is_some_and(|&t| now_ms.saturating_sub(t) < requery)
            } else {
                self.outstanding.get(&c.id()).copied().unwrap_or(0) >= max_out
            }
        });
        self.send_query(&candidates, now_ms, rng, out);
        self.next_round_ms = now_ms
            + if sufficient {
                self.config.normal_ms
            } else {
                self.config.warmup_ms
            }
            .max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::Direction;
    use rand::SeedableRng;
    use std::net::Ipv6Addr;

    fn key(i: u32) -> PublicKey {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        k[31] = 0xa5;
        PublicKey(k)
    }

    fn hash(i: u32) -> BlockHash {
        BlockHash(key(i).0)
    }

    /// A channel with id `id` to the node `node`.
    fn chan(id: u64, node: u32) -> Arc<Channel> {
        let remote = SocketAddrV6::new(
            Ipv6Addr::new(0x2a00, id as u16, 0, 0, 0, 0, 0, 1),
            7075,
            0,
            0,
        );
        Arc::new(Channel::new(
            ChannelId(id),
            key(1_000_000 + node),
            0x15,
            remote,
            0,
            Direction::Inbound,
            0,
        ))
    }

    fn entry(account: u32, weight: u128, last: u64, alive: bool) -> RepEntry {
        let channel = chan(u64::from(account), account);
        if !alive {
            channel.close();
        }
        RepEntry {
            account: key(account),
            channel,
            weight,
            last_response_ms: last,
        }
    }

    /// A dev crawler where accounts `0..n` weigh `weight(i)` and any weight counts.
    fn crawler(n: u32, weight: impl Fn(u32) -> u128) -> RepCrawler {
        let mut w = RepWeights::new();
        for i in 0..n {
            w.insert(key(i), weight(i));
        }
        let mut c = RepCrawlerConfig::from_proto(&ProtoConfig::for_network(Network::Dev));
        c.min_weight = Some(1);
        RepCrawler::new(c, w, OnlineReps::new(1, 8))
    }

    /// Asks `h` on `ch` at `now` and answers it with a vote of `account`.
    fn ask_and_answer(
        rc: &mut RepCrawler,
        ch: &Arc<Channel>,
        account: PublicKey,
        h: BlockHash,
        now: u64,
    ) -> bool {
        let q = HashRoot { hash: h, root: h };
        rc.record_query(ch.id(), q, now);
        rc.on_vote(Some(ch), ch.id(), account, &[h], false, now)
    }

    #[test]
    fn cap_victim_prefers_a_closed_channel_then_the_lightest_and_keeps_equals() {
        let reps = [
            entry(1, 50, 10, true),
            entry(2, 30, 20, true),
            entry(3, 30, 5, true),
            entry(4, 90, 1, true),
        ];
        // the lightest, least recently answered of the two 30s; only a heavier one evicts it
        assert_eq!(cap_victim(&reps, 31), Some(key(3)));
        assert_eq!(cap_victim(&reps, 30), None);
        assert_eq!(cap_victim(&reps, 1), None);
        // equal weight and time: the smallest account
        let tie = [entry(7, 30, 5, true), entry(6, 30, 5, true)];
        assert_eq!(cap_victim(&tie, 31), Some(key(6)));
        // a closed channel goes first, whatever its weight and the newcomer's
        let with_dead = [entry(1, 50, 10, true), entry(2, 1_000, 20, false)];
        assert_eq!(cap_victim(&with_dead, 1), Some(key(2)));
        assert_eq!(cap_victim(std::iter::empty(), 1), None);
    }

    #[test]
    fn the_table_stops_at_the_cap_keeping_the_heaviest() {
        let extra = 40;
        let n = REPS_MAX as u32 + extra;
        // account i weighs 1000 + i, except the last `extra` that weigh 1..=extra
        let cap = REPS_MAX as u32;
        let mut rc = crawler(n, |i| {
            if i < cap {
                1_000 + u128::from(i)
            } else {
                u128::from(i - cap + 1)
            }
        });
        let ch = chan(1, 1);
        for i in 0..cap {
            assert!(ask_and_answer(&mut rc, &ch, key(i), hash(i), 10));
        }
        assert_eq!(rc.rep_count(), REPS_MAX);
        // lighter newcomers are refused, the table does not move
        for i in cap..n {
            assert!(!ask_and_answer(&mut rc, &ch, key(i), hash(i), 20));
        }
        assert_eq!(rc.rep_count(), REPS_MAX);
        assert_eq!(rc.stats().reps_cap_refused, u64::from(extra));
        assert_eq!(rc.stats().reps_cap_evicted, 0);
        assert!(rc.rep(&key(cap)).is_none());
        // a heavier newcomer evicts the lightest (account 0, weight 1000)
        let heavy = key(n + 1);
        rc.weights.insert(heavy, 5_000);
        assert!(ask_and_answer(&mut rc, &ch, heavy, hash(n + 1), 30));
        assert_eq!(rc.rep_count(), REPS_MAX);
        assert_eq!(rc.stats().reps_cap_evicted, 1);
        assert!(rc.rep(&key(0)).is_none());
        assert!(rc.rep(&key(1)).is_some() && rc.rep(&heavy).is_some());
        // a known rep's answer never needs room
        assert!(ask_and_answer(&mut rc, &ch, key(5), hash(5), 40));
        assert_eq!(rc.stats().reps_cap_evicted, 1);
        assert_eq!(rc.stats().reps_added, u64::from(cap) + 1);
        // a heavy rep on another channel evicts the next lightest (account 1)...
        let heavier = key(n + 2);
        rc.weights.insert(heavier, 6_000);
        let ch2 = chan(2, 2);
        assert!(ask_and_answer(&mut rc, &ch2, heavier, hash(n + 2), 50));
        assert!(rc.rep(&key(1)).is_none());
        // ...and once its channel is closed it makes room first, even for the lightest
        ch2.close();
        assert!(ask_and_answer(&mut rc, &ch, key(cap), hash(cap), 60));
        assert!(rc.rep(&heavier).is_none() && rc.rep(&key(cap)).is_some());
        assert_eq!(rc.stats().reps_cap_evicted, 3);
        assert_eq!(rc.rep_count(), REPS_MAX);
    }

    #[test]
    fn only_accounts_with_weight_are_kept() {
        // account 0 weighs 10; the minimum is 5
        let mut rc = crawler(2, |i| if i == 0 { 10 } else { 4 });
        rc.config.min_weight = Some(5);
        let ch = chan(1, 1);
        let g = hash(0);
        rc.record_query(ch.id(), HashRoot { hash: g, root: g }, 0);
        for i in 100..1_100 {
            assert!(!rc.on_vote(Some(&ch), ch.id(), key(i), &[g], false, 1));
        }
        assert!(!rc.on_vote(Some(&ch), ch.id(), key(1), &[g], false, 1));
        assert_eq!(rc.stats().votes_no_weight, 1_000);
        assert_eq!(rc.stats().votes_low_weight, 1);
        assert_eq!(rc.rep_count(), 0);
        // refusals did not consume the query: the weighted rep's answer still counts
        assert_eq!(rc.outstanding_queries(), 1);
        assert!(rc.on_vote(Some(&ch), ch.id(), key(0), &[g], false, 2));
        assert_eq!(rc.rep_count(), 1);
        // beta without a weights file: nothing weighs anything, nothing is kept
        let c = RepCrawlerConfig::from_proto(&ProtoConfig::for_network(Network::Beta));
        let mut beta = RepCrawler::new(
            c,
            RepWeights::defaults(Network::Beta),
            OnlineReps::new(1, 8),
        );
        beta.record_query(ch.id(), HashRoot { hash: g, root: g }, 0);
        assert!(!beta.on_vote(Some(&ch), ch.id(), key(0), &[g], false, 1));
        assert_eq!((beta.rep_count(), beta.stats().votes_no_weight), (0, 1));
    }

    #[test]
    fn a_query_is_consumed_by_its_first_counted_answer() {
        let mut rc = crawler(3, |_| 100);
        let ch = chan(1, 1);
        let (g, x) = (hash(50), hash(51));
        rc.record_query(ch.id(), HashRoot { hash: g, root: g }, 0);
        rc.record_query(ch.id(), HashRoot { hash: x, root: x }, 0);
        assert_eq!(rc.outstanding_queries(), 2);
        // the first answer for g counts and uses up g only
        assert!(rc.on_vote(Some(&ch), ch.id(), key(0), &[g], false, 5));
        assert_eq!(rc.outstanding_queries(), 1);
        // a second vote for g, same account or another, does not count again
        assert!(!rc.on_vote(Some(&ch), ch.id(), key(0), &[g], false, 6));
        assert!(!rc.on_vote(Some(&ch), ch.id(), key(1), &[g], false, 6));
        assert_eq!(rc.stats().votes_query_used, 2);
        assert_eq!((rc.stats().responses, rc.rep_count()), (1, 1));
        // a vote naming both: only x is open, it counts and uses x up
        assert!(rc.on_vote(Some(&ch), ch.id(), key(1), &[g, x], false, 7));
        assert_eq!(rc.outstanding_queries(), 0);
        assert!(!rc.on_vote(Some(&ch), ch.id(), key(2), &[g, x], false, 8));
        assert_eq!(rc.stats().votes_query_used, 3);
        // asking again opens the query again
        rc.record_query(ch.id(), HashRoot { hash: g, root: g }, 9);
        assert_eq!(rc.outstanding_queries(), 1);
        assert!(rc.on_vote(Some(&ch), ch.id(), key(2), &[g], false, 10));
        assert_eq!((rc.stats().responses, rc.rep_count()), (3, 3));
        // answered queries do not expire as unanswered
        let mut out = Vec::new();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        rc.tick(std::slice::from_ref(&ch), 5_000, &mut rng, &mut out);
        assert_eq!(rc.stats().queries_expired, 0);
        assert!(rc.unanswered.is_empty());
    }

    #[test]
    fn a_rep_is_bound_to_the_node_that_answered() {
        let mut rc = crawler(1, |_| 100);
        let a = key(0);
        let home = chan(1, 7);
        let replay = chan(2, 8);
        assert!(ask_and_answer(&mut rc, &home, a, hash(1), 10));
        // the same vote replayed by another node: refused, the rep stays
        assert!(!ask_and_answer(&mut rc, &replay, a, hash(2), 20));
        assert_eq!(rc.stats().reps_rebind_refused, 1);
        assert_eq!(rc.rep(&a).unwrap().channel.id(), home.id());
        assert_eq!(*rc.rep(&a).unwrap().node_id(), *home.node_id());
        // the refused answer left the replayer's query open, not consumed
        assert_eq!(rc.outstanding_queries(), 1);
        // the rep's node reconnects: a new channel of the same node id takes it
        let back = chan(3, 7);
        assert!(ask_and_answer(&mut rc, &back, a, hash(3), 30));
        assert_eq!(rc.rep(&a).unwrap().channel.id(), back.id());
        assert_eq!(rc.stats().reps_moved, 1);
        // once the bound channel is closed, another node may take it
        back.close();
        assert!(ask_and_answer(&mut rc, &replay, a, hash(4), 40));
        assert_eq!(rc.rep(&a).unwrap().channel.id(), replay.id());
        assert_eq!(rc.stats().reps_moved, 2);
        assert_eq!(rc.stats().reps_rebound, 0);
    }

    #[test]
    fn a_rep_whose_node_stops_answering_is_rebound_after_the_grace_period() {
        let mut rc = crawler(1, |_| 100);
        let after = rc.config.rebind_after_ms;
        let timeout = rc.config.query_timeout_ms;
        let a = key(0);
        let (home, other) = (chan(1, 7), chan(2, 8));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut out = Vec::new();
        assert!(ask_and_answer(&mut rc, &home, a, hash(1), 0));
        // old enough, but the bound node was never asked since: still bound
        assert!(!ask_and_answer(&mut rc, &other, a, hash(2), after + 1));
        // the bound node is asked and lets the query expire
        rc.record_query(
            home.id(),
            HashRoot {
                hash: hash(3),
                root: hash(3),
            },
            after + 2,
        );
        rc.tick(&[], after + 2 + timeout, &mut rng, &mut out);
        assert_eq!(rc.stats().queries_expired, 2);
        assert_eq!(rc.stats().reps_rebind_refused, 1);
        // now an answer elsewhere rebinds it
        assert!(ask_and_answer(
            &mut rc,
            &other,
            a,
            hash(4),
            after + 3 + timeout
        ));
        assert_eq!(rc.rep(&a).unwrap().channel.id(), other.id());
        assert_eq!(rc.stats().reps_rebound, 1);
        // and the old node cannot take it back while the new one answers
        assert!(!ask_and_answer(
            &mut rc,
            &home,
            a,
            hash(5),
            after + 4 + timeout
        ));
        assert_eq!(rc.stats().reps_rebind_refused, 2);

        // an unanswered query alone does not rebind a rep that answered recently
        let mut rc = crawler(1, |_| 100);
        assert!(ask_and_answer(&mut rc, &home, a, hash(1), 0));
        rc.record_query(
            home.id(),
            HashRoot {
                hash: hash(3),
                root: hash(3),
            },
            1,
        );
        rc.tick(&[], 1 + timeout, &mut rng, &mut out);
        assert!(!ask_and_answer(&mut rc, &other, a, hash(2), after - 1));
        assert_eq!(rc.rep(&a).unwrap().channel.id(), home.id());
    }
}
