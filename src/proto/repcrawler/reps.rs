//! The rep table and the weight it adds up to: the known representatives, each bound to the
//! channel of its last counted answer, under the binding and cap rules of "Which votes count"
//! in the [module docs](super); the known and online weight, sufficiency, and the status the
//! RPC shows.

use std::sync::Arc;

use super::RepCrawler;
use crate::channels::{Channel, ChannelId};
use crate::endpoint::Endpoint;
use crate::types::PublicKey;

/// Most representatives the rep crawler keeps. The principal-representative weight is 0.1 %
/// of the trended online weight, so about 1000 reps that are online can hold it at once (on
/// live in 2024 fewer than 100 do; the built-in snapshot lists 133 reps in all); the cap is
/// that bound with some headroom. At the cap the lightest rep makes room for a heavier
/// newcomer and a lighter one is refused ([`cap_victim`]). The table is copied into the
/// status the node publishes every 100 ms, so its size is what that copy costs.
pub const REPS_MAX: usize = 1024;
/// A rep is rebound to another node only after this many re-query intervals without an
/// answer from its bound node ([`RepCrawlerConfig::rebind_after_ms`]).
///
/// [`RepCrawlerConfig::rebind_after_ms`]: super::RepCrawlerConfig::rebind_after_ms
pub const REBIND_AFTER_REQUERIES: u64 = 30;

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
    pub endpoint: Endpoint,
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

impl RepCrawler {
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

    /// Records a counted answer of `account` on `channel` in the rep table, under the binding
    /// and cap rules of the [module docs](super). False (and counted) when it is refused.
    pub(super) fn bind(
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
    ///
    /// [`RepCrawlerConfig::rebind_after_ms`]: super::RepCrawlerConfig::rebind_after_ms
    fn binding_stale(&self, e: &RepEntry, now_ms: u64) -> bool {
        now_ms.saturating_sub(e.last_response_ms) >= self.config.rebind_after_ms
            && self
                .unanswered
                .get(&e.channel.id())
                .is_some_and(|&t| t >= e.last_response_ms)
    }
}
