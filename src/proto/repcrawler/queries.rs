//! The query ledger: every confirm_req sent (per channel and hash, in send order), which ones
//! are still outstanding, when each channel was last asked, and which expired unanswered. A
//! vote is an answer only to a query recorded here, and a counted answer consumes it.

use std::sync::Arc;

use rand::RngCore;

use super::RepCrawler;
use crate::channels::{Channel, ChannelId};
use crate::proto::events::{CrawlerOutput, ShardCommand};
use crate::types::BlockHash;
use crate::wire::{ConfirmReq, HashRoot, Message};

/// Outstanding queries kept at most (oldest dropped first).
pub const QUERIES_MAX: usize = 16_384;

/// One query sent: when, and whether a counted answer consumed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Query {
    sent_ms: u64,
    answered: bool,
}

impl RepCrawler {
    /// Outstanding queries: not yet answered, not yet purged after expiry.
    pub fn outstanding_queries(&self) -> usize {
        self.outstanding.values().sum()
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

    pub(super) fn send_query(
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

    pub(super) fn expire(&mut self, now_ms: u64) {
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

    /// The hashes of a vote that were asked on `channel_id` and have not expired: the open
    /// ones (not yet consumed, each once, in vote order), which a counted answer uses up, and
    /// whether any of them was asked but already consumed.
    pub(super) fn asked(
        &self,
        channel_id: ChannelId,
        hashes: &[BlockHash],
        now_ms: u64,
    ) -> (Vec<BlockHash>, bool) {
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
        (open, used)
    }

    /// Marks the `open` queries of `channel_id` answered by a counted answer: they are no
    /// longer outstanding, and a second answer to them does not count.
    pub(super) fn consume(&mut self, channel_id: ChannelId, open: Vec<BlockHash>) {
        for h in open {
            if let Some(q) = self.queries.get_mut(&(channel_id, h)) {
                q.answered = true;
                self.unmark_outstanding(channel_id);
            }
        }
    }
}
