//! The counters of the whole node, summed over its shards.

use crate::io::Counters;
use crate::proto::stats::ShardStats;

use super::{BatchMetrics, CrawlerStatus, OpenFiles, QueueStats, ShardMetrics, ThreadHealth};

/// Counters of the whole node.
#[derive(Debug, Clone)]
pub struct NodeStats {
    /// The protocol cores' counters, summed over the shards.
    pub proto: ShardStats,
    /// The io counters, summed over the shards.
    pub io: Counters,
    /// The batch verifiers' counters, summed over the shards.
    pub batch: BatchMetrics,
    /// Events to the crawler, summed over the shards.
    pub queue: QueueStats,
    /// Channels in the channel map.
    pub channels: usize,
    /// Per shard, as published.
    pub shards: Vec<ShardMetrics>,
    /// The crawler (as last published).
    pub crawler: CrawlerStatus,
    /// Each thread's health (shards in order, then the crawler), now.
    pub threads: Vec<ThreadHealth>,
    /// The open-file limit and the descriptor budget of the caps in force.
    pub open_files: OpenFiles,
}
