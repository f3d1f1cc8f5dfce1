//! The arguments of `nanopeer bench` ([`BenchArgs`]) and the run they plan.

use std::time::Duration;

use clap::Args;

use crate::bench::attack::AttackKind;
use crate::bench::error::BenchError;
use crate::bench::setup::{BenchPlan, LimitsMode};
use crate::bench::workload::{StreamPlan, Workload, parse_rep_key};
use crate::node::default_shard_count;
use crate::types::Network;

/// The arguments of `nanopeer bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What to measure: `handshake` (handshakes on fresh connections), `votes` (pre-signed
    /// votes streamed on long-lived channels: votes the node verified per second) or
    /// `publish` (pre-built state blocks likewise: blocks checked per second).
    #[arg(long, value_enum, default_value_t = Workload::Handshake, value_name = "KIND")]
    pub workload: Workload,
    /// Drive this node instead of starting one in-process (e.g. a reference node on loopback).
    #[arg(long, value_name = "HOST:PORT")]
    pub target: Option<String>,
    /// votes/publish with --target: the target's RPC (loopback), whose `stats` counters give
    /// the figure.
    #[arg(long, value_name = "HOST:PORT")]
    pub target_rpc: Option<String>,
    /// Shards of the in-process node (with --target: the target's cores, for the efficiency)
    /// [default: one per core, less one].
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// The node's verify batch size: a batch is verified when it holds this many signatures.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub batch_max: usize,
    /// … or this long after its first signature (µs), or when the shard has nothing else to do.
    #[arg(long, default_value_t = 200, value_name = "US")]
    pub batch_delay_us: u64,
    /// Measured load duration, seconds (votes/publish: at most; the window ends when a
    /// channel has sent its whole pool) [default: 20; votes, publish 5].
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Warm-up load before the measurement, seconds (not counted) [default: 2; votes,
    /// publish 0.5].
    #[arg(long, value_name = "S")]
    pub warmup: Option<f64>,
    /// How long the crypto ceiling is measured, seconds.
    #[arg(long, default_value_t = 2.0, value_name = "S")]
    pub ceiling_secs: f64,
    /// Handshakes the load generator keeps in flight at once.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub connections: usize,
    /// Load generator threads [default: the cores the node does not use, at least 1].
    #[arg(long, value_name = "N")]
    pub load_threads: Option<usize>,
    /// The network (header bytes, genesis).
    #[arg(long, default_value = "dev")]
    pub network: Network,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// Do not verify the node's handshake signatures in the load generator (less load CPU).
    #[arg(long)]
    pub no_verify_node: bool,
    /// Keep every channel open until the run ends (up to --hold-limit) instead of closing it.
    #[arg(long)]
    pub hold: bool,
    /// Most channels held open with --hold.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub hold_limit: usize,
    /// Do not pin the node's shards and the load threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Run an attack alongside an honest load instead of the plain bench: `bad-sig:PCT` (PCT % of
    /// the simulated peers sign wrongly), `silent` (connections that never speak), `query-only`
    /// (send a handshake query, never answer), `drip` (one byte at a time), `garbage` (random
    /// bytes and bad headers), `poison` (keepalives advertising reserved, own and bogus
    /// addresses), `slot-flood:ip|subnet|many` (more silent unverified connections than the
    /// node's cap, from one address, one /24 or many /24s), `vote-flood` (authenticated peers
    /// streaming votes with wrong signatures, honest peers streaming valid ones). Reports
    /// honest handshakes/s, attack connections opened/held/cut, and the process's peak
    /// descriptors and RSS; the floods also a clean phase of the same run to compare with.
    #[arg(long, value_name = "KIND")]
    pub attack: Option<AttackKind>,
    /// Attack connections (or attacker peers) at once [default: slot-flood the node's
    /// connection cap + 1/8, vote-flood 32, the others 300].
    #[arg(long, value_name = "N")]
    pub attack_connections: Option<usize>,
    /// The in-process node's admission limits: `bench` (raised so the load fits), `live`
    /// (4 per IP, 16 per /24, 4 cookies per IP, 2048 channels: the live network's, on the dev
    /// network on loopback) or `dev` (the dev network's own) [default: live for slot-flood
    /// and vote-flood, bench otherwise].
    #[arg(long, value_name = "MODE")]
    pub limits: Option<LimitsMode>,
    /// The in-process node's connection cap per shard (`max_connections_per_shard`)
    /// [default: 2048 with live or dev limits; with bench limits, what the load needs].
    #[arg(long, value_name = "N")]
    pub node_max_connections: Option<usize>,
    /// Floods: seconds of honest load alone before the attack [default: --duration, at most 5].
    #[arg(long, value_name = "S")]
    pub clean_duration: Option<f64>,
    /// Floods: an attack connection the node closes is reopened after this many ms.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub attack_reopen_ms: u64,
    /// vote-flood: honest peers streaming valid votes.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub honest_voters: usize,
    /// vote-flood: valid votes per second over all honest voters, signed before the run
    /// (0: each voter as fast as the node reads, from a pool of --vote-pool).
    #[arg(long, default_value_t = 16_000, value_name = "N")]
    pub honest_vote_rate: u32,
    /// vote-flood with --honest-vote-rate 0: valid votes signed before the run.
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    pub vote_pool: usize,
    /// vote-flood: block hashes per vote.
    #[arg(long, default_value_t = 12, value_name = "N")]
    pub vote_hashes: usize,
    /// votes/publish: long-lived channels, one streaming peer each (its own 127.x.y.z address
    /// and node key) [default: 8 per shard].
    #[arg(long, value_name = "N")]
    pub channels: Option<usize>,
    /// votes: representative keys signing the votes in turn (fresh keys).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub reps: usize,
    /// votes: sign with this representative key instead (repeatable): `genesis` (the dev
    /// genesis key, a representative with all the weight on a reference dev node) or a
    /// private key in hex.
    #[arg(long, value_name = "KEY")]
    pub rep_key: Vec<String>,
    /// votes: block hashes per vote.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub hashes: usize,
    /// votes/publish: messages per second over all channels (0: as fast as the node reads).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub rate: u32,
    /// votes/publish: valid messages built before the run [default: enough for the warm-up
    /// and --duration at --rate, or at --shards × the verify ceiling, +25 %].
    #[arg(long, value_name = "N")]
    pub pool: Option<usize>,
    /// votes/publish: messages with a well-formed but wrong signature, spread through the
    /// stream (to check the node's counting).
    #[arg(long, alias = "bad-votes", default_value_t = 0, value_name = "N")]
    pub bad_sigs: usize,
    /// votes/publish: valid messages sent twice, the copy right after the original on its
    /// channel (the duplicate filter drops one of each).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub duplicates: usize,
    /// publish: blocks whose work is below the network's entry threshold.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub bad_work: usize,
    /// Soak: run the (churning) load for --duration seconds and sample RSS and open descriptors
    /// every --soak-interval seconds; reports the growth after the first fifth of the run.
    #[arg(long)]
    pub soak: bool,
    /// Seconds between soak samples.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub soak_interval: f64,
}

/// The run the arguments ask for (defaults filled in; not yet validated).
pub(super) fn plan_of(args: &BenchArgs) -> BenchPlan {
    let (long, warm) = match args.workload {
        Workload::Handshake => (20.0, 2.0),
        _ => (5.0, 0.5),
    };
    BenchPlan {
        shards: args.shards.unwrap_or_else(default_shard_count),
        batch_max: args.batch_max,
        batch_delay_us: args.batch_delay_us,
        duration: Duration::from_secs_f64(args.duration.unwrap_or(long).max(0.0)),
        warmup: Duration::from_secs_f64(args.warmup.unwrap_or(warm).max(0.0)),
        connections: args.connections,
        load_threads: args.load_threads,
        network: args.network,
        verify_node: !args.no_verify_node,
        hold: args.hold,
        hold_limit: args.hold_limit,
        pin: !args.no_pin,
    }
}

/// The votes or publish run the arguments ask for (defaults filled in; not yet validated):
/// `--channels` default 8 per shard; with `--target`, `--shards` default 1 (the target's
/// cores, for the efficiency).
pub(super) fn stream_plan_of(args: &BenchArgs) -> Result<StreamPlan, BenchError> {
    let mut base = plan_of(args);
    if args.target.is_some() {
        base.shards = args.shards.unwrap_or(1);
    }
    let channels = args.channels.unwrap_or(8 * base.shards.max(1));
    base.connections = channels;
    let rep_keys = args
        .rep_key
        .iter()
        .map(|k| parse_rep_key(k, args.network))
        .collect::<Result<Vec<_>, _>>()
        .map_err(BenchError::Argument)?;
    Ok(StreamPlan {
        base,
        workload: args.workload,
        channels,
        reps: args.reps,
        rep_keys,
        hashes: args.hashes,
        rate: args.rate,
        pool: args.pool,
        bad_sigs: args.bad_sigs,
        duplicates: args.duplicates,
        bad_work: args.bad_work,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::setup::{node_options, validate};

    #[test]
    fn limits_fit_the_load() {
        let mut plan = plan_of(&BenchArgs {
            workload: Workload::Handshake,
            target: None,
            target_rpc: None,
            shards: Some(1),
            batch_max: 64,
            batch_delay_us: 200,
            duration: Some(1.0),
            warmup: Some(0.0),
            ceiling_secs: 0.1,
            connections: 5000,
            load_threads: None,
            network: Network::Dev,
            json: false,
            no_verify_node: false,
            hold: true,
            hold_limit: 20_000,
            no_pin: false,
            attack: None,
            attack_connections: None,
            limits: None,
            node_max_connections: None,
            clean_duration: None,
            attack_reopen_ms: 100,
            honest_voters: 4,
            honest_vote_rate: 16_000,
            vote_pool: 200_000,
            vote_hashes: 12,
            channels: None,
            reps: 64,
            rep_key: Vec::new(),
            hashes: 1,
            rate: 0,
            pool: None,
            bad_sigs: 0,
            duplicates: 0,
            bad_work: 0,
            soak: false,
            soak_interval: 10.0,
        });
        let o = node_options(&plan, std::path::Path::new("/nonexistent"), false);
        assert!(o.proto.max_channels >= 20_000 + 5000);
        assert!(o.io.max_connections > o.proto.max_channels);
        assert!(o.proto.max_peers_per_ip >= 5000);
        assert!(o.proto.allow_local_peers);
        plan.batch_max = 0;
        assert!(matches!(validate(&plan), Err(BenchError::Argument(_))));
    }
}
