//! The query candidates: which hash/root pairs the rep crawler asks for (the genesis pair and
//! hashes recently seen in votes, paired with the roots of relayed blocks), and the
//! [`QueryBoard`] they are published on for the shards' first query of a new channel.

use std::sync::Arc;

use parking_lot::RwLock;
use rand::{Rng, RngCore};

use super::RepCrawler;
use crate::crypto::{genesis_account, genesis_hash};
use crate::types::{BlockHash, Network};
use crate::wire::HashRoot;

/// Vote hashes remembered for queries.
pub const SEEN_HASHES_MAX: usize = 64;
/// Block roots remembered (from relayed blocks) to pair with vote hashes.
pub const ROOTS_MAX: usize = 4096;

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

    pub(super) fn publish(&self, pairs: Arc<[HashRoot]>) {
        *self.pairs.write() = pairs;
    }
}

impl RepCrawler {
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

    /// Remembers the first 8 hashes of a vote (at most [`SEEN_HASHES_MAX`], the oldest
    /// forgotten first) as query candidates, and republishes the board if that changed them.
    pub(super) fn note_vote_hashes(&mut self, hashes: &[BlockHash]) {
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
    pub(super) fn pick_query(&self, rng: &mut impl RngCore) -> HashRoot {
        self.board.pick(rng)
    }
}
