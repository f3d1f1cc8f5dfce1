//! The counters of the whole node, summed over its shards.

use crate::io::Counters;
use crate::proto::shard::ShardStats;

use super::{BatchMetrics, CrawlerStatus, OpenFiles, ShardMetrics, ThreadHealth};

/// Counters of the whole node.
#[derive(Debug, Clone)]
pub struct NodeStats {
    /// The protocol cores' counters, summed over the shards.
    pub proto: ShardStats,
    /// The io counters, summed over the shards.
    pub io: Counters,
    /// The batch verifiers' counters, summed over the shards.
    pub batch: BatchMetrics,
    /// Events handed to the crawler.
    pub events_sent: u64,
    /// Events dropped (crawler queue full).
    pub events_dropped: u64,
    /// ChannelUp/ChannelDown dropped (queue and backlog full).
    pub lifecycle_dropped: u64,
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

/// Adds `b`'s counters to `a`.
pub fn add_shard_stats(a: &mut ShardStats, b: &ShardStats) {
    for (x, y) in a.messages_in.iter_mut().zip(b.messages_in.iter()) {
        *x += y;
    }
    for (x, y) in a.messages_out.iter_mut().zip(b.messages_out.iter()) {
        *x += y;
    }
    a.bytes_in += b.bytes_in;
    a.bytes_out += b.bytes_out;
    let (h, g) = (&mut a.handshake, &b.handshake);
    h.ok += g.ok;
    h.own_node_id += g.own_node_id;
    h.invalid_genesis += g.invalid_genesis;
    h.missing_cookie += g.missing_cookie;
    h.invalid_signature += g.invalid_signature;
    h.protocol += g.protocol;
    h.cookie_limit += g.cookie_limit;
    h.max_per_ip += g.max_per_ip;
    h.max_per_subnet += g.max_per_subnet;
    h.duplicate_node_id += g.duplicate_node_id;
    h.not_a_peer += g.not_a_peer;
    h.excluded += g.excluded;
    h.channel_limit += g.channel_limit;
    let (p, q) = (&mut a.payload_errors, &b.payload_errors);
    p.too_short += q.too_short;
    p.trailing_bytes += q.trailing_bytes;
    p.not_a_block += q.not_a_block;
    p.confirm_req_pairs += q.confirm_req_pairs;
    p.empty_handshake += q.empty_handshake;
    p.telemetry_too_short += q.telemetry_too_short;
    p.bulk_pull_extended += q.bulk_pull_extended;
    p.asc_pull_type += q.asc_pull_type;
    p.other += q.other;
    let (c, d) = (&mut a.closes, &b.closes);
    c.header_error += d.header_error;
    c.handshake += d.handshake;
    c.message_before_handshake += d.message_before_handshake;
    c.bootstrap_not_served += d.bootstrap_not_served;
    c.timeout += d.timeout;
    c.purged += d.purged;
    c.excluded += d.excluded;
    c.requested += d.requested;
    c.evicted += d.evicted;
    c.replaced += d.replaced;
    a.channels_replaced += b.channels_replaced;
    c.misbehaviour += d.misbehaviour;
    let (x, y) = (&mut a.admission, &b.admission);
    x.max_per_ip += y.max_per_ip;
    x.max_per_subnetwork += y.max_per_subnetwork;
    x.excluded += y.excluded;
    x.full += y.full;
    x.evicted_unverified += y.evicted_unverified;
    x.evicted_channels += y.evicted_channels;
    x.oversize_before_handshake += y.oversize_before_handshake;
    let (x, y) = (&mut a.misbehaviour, &b.misbehaviour);
    x.invalid_signatures += y.invalid_signatures;
    x.verify_work += y.verify_work;
    x.verify_alone += y.verify_alone;
    a.closed_remotely += b.closed_remotely;
    a.connections += b.connections;
    a.duplicate_publish += b.duplicate_publish;
    a.duplicate_confirm_ack += b.duplicate_confirm_ack;
    a.insufficient_work += b.insufficient_work;
    a.invalid_block_signature += b.invalid_block_signature;
    a.votes_valid += b.votes_valid;
    a.invalid_vote_signature += b.invalid_vote_signature;
    a.zero_account_vote += b.zero_account_vote;
    a.telemetry_empty += b.telemetry_empty;
    a.telemetry_node_id_mismatch += b.telemetry_node_id_mismatch;
    a.invalid_telemetry_signature += b.invalid_telemetry_signature;
    a.genesis_mismatch += b.genesis_mismatch;
    a.confirm_req_ignored += b.confirm_req_ignored;
    a.realtime_ignored += b.realtime_ignored;
    a.handshake_ignored += b.handshake_ignored;
    a.verify_requests += b.verify_requests;
    a.verify_overflow += b.verify_overflow;
    a.verify_orphaned += b.verify_orphaned;
    a.held_dropped += b.held_dropped;
    a.send_to_closed += b.send_to_closed;
    a.queries_on_up += b.queries_on_up;
    a.dials += b.dials;
    a.dials_failed += b.dials_failed;
    a.cookies_purged += b.cookies_purged;
}
