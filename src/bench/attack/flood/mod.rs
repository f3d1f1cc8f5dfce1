//! Floods against the node's limits (`nanopeer bench --attack slot-flood:SOURCE` and
//! `--attack vote-flood`), each measured against a clean phase in the same run.
//!
//! - **slot-flood**: more unverified connections than the node's per-shard cap, opened and held
//!   silent (never a byte, so never a handshake), from one address ([`FloodSource::Ip`]), one
//!   /24 ([`FloodSource::Subnet`]) or many /24s ([`FloodSource::Many`]). A connection the node
//!   closes is reopened after `reopen_delay`, so the pressure stays.
//! - **vote-flood**: attacker peers complete real v2 handshakes (each from its own address in
//!   its own /24, each with its own node key), then stream confirm_acks whose signatures are all
//!   wrong: well-formed (a real signature of the voting key over another message, so only the
//!   full equation rejects it), with distinct fresh hashes so the duplicate filter lets every
//!   one through. Alongside, honest peers stream **valid** votes from a pool signed before the
//!   run, paced at `honest_vote_rate`. A cut attacker reconnects from the same address with
//!   the same key; the reconnects that never get a channel are counted as refused.
//!
//! [`run_flood`] runs the honest load (handshakes, and for vote-flood the honest votes) for
//! `clean_duration` with no attack, then starts the attack, waits for it to ramp up (every
//! attack connection opened and the node's connection count steady for 300 ms; vote-flood:
//! every attacker had a channel; or `ramp_timeout`) and measures the same honest load for
//! `duration` under attack. Honest votes/s is the node's `votes_valid` delta over a phase:
//! attackers' votes are all invalid, so every valid vote is an honest one.
//!
//! Addresses: attackers use 127.255.0.0/16 and 127.0.1.0–127.0.255.255 ([`FloodSource`]);
//! honest handshake peers ([`source_ip`](crate::bench::loadgen::source_ip)) and honest
//! voters ([`HONEST_VOTER_OFFSET`]) use 127.1–254.x.x. Attackers and honest peers never share
//! a /24.
//!
//! The peers (attackers and honest voters), their addresses and the vote pool are the
//! [`stream`](crate::bench::stream) module's, shared with `bench --workload votes|publish`;
//! here are the flood's phases ([`run_flood`]) and its report (`report.rs`,
//! [`FloodReport`]). [`FloodRunner`], [`FloodPeers`] and [`FloodCounts`] are the stream
//! module's runner, peers and counters under the names the floods have always used.

pub(super) mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::bench::stream::{
    ATTACK_SUBNETS, FloodSource, HONEST_VOTER_OFFSET, REFUSED_WITHIN, StreamCounts as FloodCounts,
    StreamPeers as FloodPeers, StreamRunner as FloodRunner, VotePool,
    stream_source_ip as honest_voter_ip,
};
pub use report::{FloodReport, PhaseReport, node_counter_deltas, node_counters};

use super::config::AttackConfig;
use super::error::AttackError;
use super::kind::AttackKind;
use super::report::AttackReport;
use super::soak::{SoakSample, sample};
use crate::bench::loadgen::{self, LoadConfig};
use crate::bench::stream::{MessagePool, RepTurns, StreamMix};
use crate::crypto::KeyPair;
use crate::node::Node;

/// slot-flood ramp: the node's connection count has not moved for this long.
const RAMP_STABLE: Duration = Duration::from_millis(300);

/// Honest votes/s of a phase from `t0` for `wall`: the node's `votes_valid` growth over the
/// phase, or, if a pool ran out at `exhausted` within it, over the samples taken until then.
fn vote_rate(
    start: Instant,
    t0: Instant,
    wall: Duration,
    delta: u64,
    samples: &[SoakSample],
    exhausted: Option<Instant>,
) -> Option<f64> {
    match exhausted {
        Some(e) if e < t0 + wall => {
            let until = e.saturating_duration_since(start);
            let first = samples.first()?;
            let last = samples.iter().rfind(|s| s.t <= until)?;
            let dt = last.t.saturating_sub(first.t).as_secs_f64();
            (dt > 0.0).then(|| last.votes_valid.saturating_sub(first.votes_valid) as f64 / dt)
        }
        _ => (wall > Duration::ZERO).then(|| delta as f64 / wall.as_secs_f64()),
    }
}

/// Runs the honest load (and, when given, reads the honest voters) for `duration`, sampling.
#[allow(clippy::too_many_arguments)]
fn phase(
    cfg: &AttackConfig,
    node: Option<&Node>,
    duration: Duration,
    start: Instant,
    samples: &mut Vec<SoakSample>,
    interval: Duration,
    voters: Option<&FloodRunner>,
) -> Result<PhaseReport, AttackError> {
    let node_before = node.map(|n| n.stats());
    let sent_before = voters.map_or(0, |v| v.counts().messages_sent);
    let first = samples.len();
    let t0 = Instant::now();
    samples.push(sample(start, node));
    let mut next = t0 + interval;
    let mut tick = |samples: &mut Vec<SoakSample>| {
        let now = Instant::now();
        if now >= next {
            next = now + interval;
            samples.push(sample(start, node));
        }
    };
    let honest = match &cfg.honest {
        Some(load) if !duration.is_zero() => {
            let mut load: LoadConfig = load.clone();
            load.target = cfg.target;
            load.network = cfg.network;
            load.duration = duration;
            load.progress_interval = load.progress_interval.min(interval);
            Some(loadgen::run(&load, |_| tick(samples))?)
        }
        _ => {
            let end = t0 + duration;
            while Instant::now() < end {
                std::thread::sleep(interval.min(end.saturating_duration_since(Instant::now())));
                tick(samples);
            }
            None
        }
    };
    let wall = t0.elapsed();
    samples.push(sample(start, node));
    let node_after = node.map(|n| n.stats());
    let in_phase = &samples[first..];
    let honest_votes = match (voters, &node_before, &node_after) {
        (Some(_), Some(a), Some(b)) => {
            Some(b.proto.votes_valid.saturating_sub(a.proto.votes_valid))
        }
        _ => None,
    };
    let honest_votes_per_sec = honest_votes.and_then(|d| {
        vote_rate(
            start,
            t0,
            wall,
            d,
            in_phase,
            voters.and_then(FloodRunner::exhausted_at),
        )
    });
    Ok(PhaseReport {
        wall,
        honest,
        node_before,
        node_after,
        honest_votes,
        honest_votes_per_sec,
        honest_votes_sent: voters
            .map_or(0, |v| v.counts().messages_sent.saturating_sub(sent_before)),
        rss_peak_kb: in_phase.iter().map(|s| s.rss_kb).max().unwrap_or(0),
        fds_peak: in_phase.iter().map(|s| s.fds).max().unwrap_or(0),
        connections_peak: in_phase.iter().map(|s| s.connections).max().unwrap_or(0),
    })
}

/// Runs a `slot-flood` or `vote-flood` (`cfg.kind`): the clean phase (`cfg.clean_duration`),
/// then the attack, its ramp (up to `cfg.ramp_timeout`) and the measured phase
/// (`cfg.duration`). `node`, when the node runs in this process, gives its counters (honest
/// votes/s needs it). Blocks for about the sum of those, plus signing the vote pool.
pub fn run_flood(cfg: &AttackConfig, node: Option<&Node>) -> Result<AttackReport, AttackError> {
    let who = match cfg.kind {
        AttackKind::SlotFlood(source) => FloodPeers::Slots {
            source,
            connections: cfg.connections,
        },
        AttackKind::VoteFlood => FloodPeers::BadVoters {
            peers: cfg.connections,
            hashes: cfg.vote_hashes,
        },
        _ => return Err(AttackError::Config("not a flood kind")),
    };
    if cfg.connections == 0 {
        return Err(AttackError::Config("connections must be at least 1"));
    }
    if cfg.duration.is_zero() {
        return Err(AttackError::Config("duration must be positive"));
    }
    let interval = cfg.sample_interval.max(Duration::from_millis(10));
    let attack_sources = match cfg.kind {
        AttackKind::SlotFlood(source) => source.spread(cfg.connections),
        _ => FloodSource::Many.spread(cfg.connections),
    };

    // honest voters: sign their pool first, outside every measurement
    let mut pool_info = ((0, 0), Duration::ZERO);
    let voters = if cfg.kind == AttackKind::VoteFlood && cfg.honest_voters > 0 {
        let total = cfg.clean_duration + cfg.ramp_timeout + cfg.duration;
        let n = cfg.honest_voters;
        let rate = f64::from(cfg.honest_vote_rate) / n as f64;
        let per_voter = if rate > 0.0 {
            (rate * total.as_secs_f64() * 1.1) as usize + 256
        } else {
            (cfg.vote_pool / n).max(1)
        };
        let t = Instant::now();
        let threads = std::thread::available_parallelism().map_or(1, |c| c.get());
        // one representative key per voter: vote g of the pool goes to voter g mod n and is
        // signed by key g mod n (round robin)
        let reps: Vec<KeyPair> = (0..n)
            .map(|_| KeyPair::generate(&mut rand::rng()))
            .collect();
        let mix = StreamMix {
            valid: n * per_voter,
            ..StreamMix::default()
        };
        let pool = VotePool::sign(
            &reps,
            RepTurns::RoundRobin,
            n,
            mix,
            cfg.vote_hashes,
            threads,
        );
        pool_info = ((pool.len(), pool.bytes()), t.elapsed());
        let runner = FloodRunner::start(
            cfg.target,
            cfg.network,
            FloodPeers::Streams {
                pool: Arc::new(MessagePool::Votes(pool)),
                rate,
            },
            cfg.reopen_delay,
            total + Duration::from_secs(60),
        )?;
        // every voter has its channel before the clean phase starts
        let deadline = Instant::now() + Duration::from_secs(3);
        while runner.counts().channels < n as u64 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(runner)
    } else {
        None
    };

    let start = Instant::now();
    let mut samples = vec![sample(start, node)];
    let rss_baseline_kb = samples[0].rss_kb;
    let clean = phase(
        cfg,
        node,
        cfg.clean_duration,
        start,
        &mut samples,
        interval,
        voters.as_ref(),
    )?;

    let attack = FloodRunner::start(
        cfg.target,
        cfg.network,
        who,
        cfg.reopen_delay,
        cfg.ramp_timeout + cfg.duration + Duration::from_secs(1),
    )?;
    let t_ramp = Instant::now();
    let mut next = t_ramp + interval;
    // slot-flood: the node's connection count must also have stopped moving (it has taken
    // what it will take of the flood), so the measurement sees the held state, not the rush
    let mut live = (u64::MAX, t_ramp);
    loop {
        let now = Instant::now();
        let c = attack.counts();
        let ready = match cfg.kind {
            AttackKind::VoteFlood => c.handshakes >= c.peers,
            _ => {
                if let Some(n) = node {
                    let l = n.stats().io.live_connections;
                    if l != live.0 {
                        live = (l, now);
                    }
                }
                c.opened >= c.peers && (node.is_none() || now.duration_since(live.1) >= RAMP_STABLE)
            }
        };
        if ready || t_ramp.elapsed() >= cfg.ramp_timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        if Instant::now() >= next {
            next = Instant::now() + interval;
            samples.push(sample(start, node));
        }
    }
    let ramp = t_ramp.elapsed();
    let measured = phase(
        cfg,
        node,
        cfg.duration,
        start,
        &mut samples,
        interval,
        voters.as_ref(),
    )?;
    // the gauges (held, channels) as the measured phase ended, the rest after the stop
    let at_end = attack.counts();
    let mut attackers = attack.stop();
    (attackers.held, attackers.channels) = (at_end.held, at_end.channels);
    let held_end = at_end.held;
    let voter_counts = voters.as_ref().map(FloodRunner::stop);
    samples.push(sample(start, node));
    if node.is_some() {
        // the shards publish their counters every 100 ms
        std::thread::sleep(Duration::from_millis(250));
    }
    let flood = FloodReport {
        clean,
        attack: measured,
        ramp,
        attackers,
        voters: voter_counts,
        attack_sources,
        vote_pool: pool_info.0,
        vote_pool_signing: pool_info.1,
        rss_baseline_kb,
    };
    Ok(AttackReport {
        kind: cfg.kind,
        wall: start.elapsed(),
        opened: attackers.opened,
        connect_failed: attackers.connect_failed,
        held_peak: attackers.held_peak,
        held_end,
        cut_by_node: attackers.closed_by_node(),
        bytes_sent: attackers.bytes_sent,
        poison_handshakes: 0,
        poison_addresses: 0,
        honest: flood.attack.honest.clone(),
        bad_sig: None,
        samples,
        node_before: flood.attack.node_before.clone(),
        node_after: node.map(|n| n.stats()),
        flood: Some(Box::new(flood)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_rate_stops_at_pool_exhaustion() {
        let start = Instant::now();
        let s = |ms: u64, votes: u64| SoakSample {
            t: Duration::from_millis(ms),
            votes_valid: votes,
            ..SoakSample::default()
        };
        let samples = [s(0, 0), s(500, 5000), s(1000, 10_000), s(1500, 10_000)];
        let t0 = start;
        let wall = Duration::from_millis(1500);
        assert_eq!(
            vote_rate(start, t0, wall, 10_000, &samples, None),
            Some(10_000.0 / 1.5)
        );
        let e = start + Duration::from_millis(1000);
        assert_eq!(
            vote_rate(start, t0, wall, 10_000, &samples, Some(e)),
            Some(10_000.0)
        );
    }
}
