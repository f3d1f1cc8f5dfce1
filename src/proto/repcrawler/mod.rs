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

// The query candidates and the board the shards pick from.
mod board;
// The ledger of queries sent: outstanding, answered, expired.
mod queries;
// The rep table (binding, cap) and the weights it sums to.
mod reps;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use rand::RngCore;

use super::config::ProtoConfig;
use super::events::{CrawlerOutput, NodeAction};
use super::keepalive::random_subset;
use super::online::OnlineReps;
use super::weights::RepWeights;
use crate::channels::{Channel, ChannelId};
use crate::types::{BlockHash, Network, PublicKey};

pub use board::{QueryBoard, ROOTS_MAX, SEEN_HASHES_MAX, genesis_query};
pub use queries::QUERIES_MAX;
use queries::Query;
pub use reps::{REBIND_AFTER_REQUERIES, REPS_MAX, RepEntry, RepInfo, RepStatus, cap_victim};

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

crate::counter_set! {
    /// Rep crawler counters.
    pub struct RepCrawlerStats {
        groups {}
        /// Rounds run.
        rounds ["rep_crawler", "loop", "in"],
        /// confirm_req sent (one per target).
        queries_sent ["rep_crawler", "query_sent", "in"],
        /// Queries that expired.
        queries_expired ["rep_crawler", "query_timeout", "in"],
        /// Votes seen.
        votes ["rep_crawler", "vote", "in"],
        /// Votes ignored: rebroadcasted.
        votes_rebroadcasted ["rep_crawler", "vote_rebroadcasted", "in"],
        /// Votes ignored: zero account.
        votes_zero_account,
        /// Votes ignored: no hash queried on that channel (or expired), or the channel is closed.
        votes_unsolicited ["rep_crawler", "vote_unsolicited", "in"],
        /// Answers refused: the query they answer was already consumed by a counted answer.
        votes_query_used ["rep_crawler", "vote_query_used", "in"],
        /// Answers refused: the account has no weight (not in the weights table).
        votes_no_weight ["rep_crawler", "vote_no_weight", "in"],
        /// Answers refused: weight below the minimum (but not 0).
        votes_low_weight ["rep_crawler", "vote_low_weight", "in"],
        /// Responses counted.
        responses ["rep_crawler", "response", "in"],
        /// New reps.
        reps_added ["rep_crawler", "rep_new", "in"],
        /// Reps that moved to a new channel of the same node id, or away from a closed channel.
        reps_moved ["rep_crawler", "rep_moved", "in"],
        /// Reps rebound to another node id after their bound node stopped answering.
        reps_rebound ["rep_crawler", "rep_rebound", "in"],
        /// Answers refused: the rep is bound to another node that still answers (a replay).
        reps_rebind_refused ["rep_crawler", "rep_rebind_refused", "in"],
        /// Reps dropped because their channel closed.
        reps_evicted ["rep_crawler", "rep_evicted", "in"],
        /// Reps evicted at the cap ([`REPS_MAX`]) to make room for a heavier one.
        reps_cap_evicted ["rep_crawler", "rep_cap_evicted", "in"],
        /// New reps refused at the cap: not heavier than the lightest rep kept.
        reps_cap_refused ["rep_crawler", "rep_cap_refused", "in"],
        /// ResolvePreconfigured emitted.
        preconfigured_resolves ["rep_crawler", "keepalive_preconfigured", "in"],
        /// Online-weight samples taken.
        samples ["rep_crawler", "online_weight_sample", "in"],
    }
}

/// The rep crawler's state: the settings and weights, the rep table, the query ledger, the
/// query candidates and the round and sample timers. Driven by [`tick`](Self::tick),
/// [`on_vote`](Self::on_vote), [`note_block`](Self::note_block) and
/// [`channel_down`](Self::channel_down).
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
        self.note_vote_hashes(hashes);
        if rebroadcasted {
            self.stats.votes_rebroadcasted += 1;
            return false;
        }
        if account.is_zero() {
            self.stats.votes_zero_account += 1;
            return false;
        }
        let (open, used) = self.asked(channel_id, hashes, now_ms);
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
        self.consume(channel_id, open);
        self.stats.responses += 1;
        self.online.observe(account, now_ms);
        true
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
