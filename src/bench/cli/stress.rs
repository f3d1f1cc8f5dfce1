//! `bench --attack KIND` and `bench --soak`: a fresh in-process node under hostile traffic
//! alongside an honest load (its limits chosen by `--limits`), or under a long churning load
//! whose memory and descriptors are sampled.

use std::time::Duration;

use super::args::BenchArgs;
use super::print::{note, print_attack, print_soak};
use crate::bench::attack::{AttackConfig, AttackKind, run_attack, run_soak, soak_growth};
use crate::bench::error::BenchError;
use crate::bench::setup::{
    BenchPlan, LimitsMode, TempDir, apply_limits, limits_of, load_config, node_options,
    open_files_limit, placement,
};
use crate::io::ShardConfig;
use crate::node::Node;

/// `bench --attack KIND`: a fresh in-process node, an attack plus an honest load against it.
pub(super) fn bench_attack(
    args: &BenchArgs,
    plan: &BenchPlan,
    kind: AttackKind,
    cores: usize,
) -> Result<bool, BenchError> {
    let flood = matches!(kind, AttackKind::SlotFlood(_) | AttackKind::VoteFlood);
    let mode = args.limits.unwrap_or(if flood {
        LimitsMode::Live
    } else {
        LimitsMode::Bench
    });
    let pl = placement(plan.shards, plan.load_threads, cores, plan.pin);
    let dir = TempDir::new()?;
    let mut opts = node_options(plan, dir.path(), pl.pin_node);
    apply_limits(&mut opts, mode);
    if mode != LimitsMode::Bench {
        opts.io.max_connections = ShardConfig::default().max_connections;
    }
    if let Some(cap) = args.node_max_connections {
        if cap == 0 {
            return Err(BenchError::Argument(
                "--node-max-connections must be at least 1".into(),
            ));
        }
        opts.io.max_connections = cap;
    }
    let cap = opts.io.max_connections;
    let connections = args.attack_connections.unwrap_or(match kind {
        AttackKind::SlotFlood(_) => cap + cap.div_ceil(8),
        AttackKind::VoteFlood => 32,
        _ => 300,
    });
    let limits = limits_of(&opts);
    if let Some(soft) = open_files_limit() {
        // attack sockets on both ends, the honest load on both ends, the node's own files
        let need = 2 * connections as u64 + 2 * 64 + 2 * args.honest_voters as u64 + 64;
        if need > soft {
            note(&format!(
                "warning: about {need} descriptors needed but the soft RLIMIT_NOFILE is {soft}: \
                 raise it (ulimit -n) or lower --attack-connections"
            ));
        }
    }
    let node = Node::start(opts)?;
    let target = node.local_addr();
    let mut cfg = AttackConfig::new(target, kind);
    cfg.network = plan.network;
    cfg.duration = plan.duration;
    cfg.connections = connections;
    cfg.clean_duration = Duration::from_secs_f64(
        args.clean_duration
            .unwrap_or(plan.duration.as_secs_f64().min(5.0))
            .max(0.0),
    );
    cfg.reopen_delay = Duration::from_millis(args.attack_reopen_ms);
    cfg.honest_voters = args.honest_voters;
    cfg.honest_vote_rate = args.honest_vote_rate;
    cfg.vote_pool = args.vote_pool;
    cfg.vote_hashes = args.vote_hashes;
    if flood {
        cfg.sample_interval = Duration::from_millis(250);
    }
    let mut honest = load_config(plan, target, &pl, plan.duration);
    honest.connections = honest.connections.min(64);
    cfg.honest = Some(honest);
    let text: Vec<String> = limits.iter().map(|(k, v)| format!("{k}={v}")).collect();
    note(&format!(
        "attack {kind} ({connections} connections) against an in-process node ({} shard(s), \
         {mode} limits: {}) for {:.0} s, with an honest load{}",
        plan.shards,
        text.join(", "),
        plan.duration.as_secs_f64(),
        if flood {
            format!(
                ", after a clean phase of {:.0} s",
                cfg.clean_duration.as_secs_f64()
            )
        } else {
            String::new()
        }
    ));
    let result = run_attack(&cfg, Some(&node));
    let stopped = node.stop();
    let rep = result.map_err(|e| BenchError::Argument(format!("attack: {e}")))?;
    stopped?;
    print_attack(&rep, kind, connections, mode, &limits, args.json);
    let accepted_bad = rep.bad_sig.map_or(0, |b| b.bad_accepted);
    Ok(accepted_bad == 0 && rep.honest.as_ref().is_none_or(|h| h.handshakes > 0))
}

/// `bench --soak`: a churning honest load against an in-process node for --duration seconds,
/// sampling RSS and descriptors.
pub(super) fn bench_soak(
    args: &BenchArgs,
    plan: &BenchPlan,
    cores: usize,
) -> Result<bool, BenchError> {
    let pl = placement(plan.shards, plan.load_threads, cores, plan.pin);
    let dir = TempDir::new()?;
    let node = Node::start(node_options(plan, dir.path(), pl.pin_node))?;
    let target = node.local_addr();
    let load = load_config(plan, target, &pl, plan.duration);
    let interval = Duration::from_secs_f64(args.soak_interval.max(0.1));
    note(&format!(
        "soak: {:.0} s of churning handshakes, sampling every {:.1} s",
        plan.duration.as_secs_f64(),
        interval.as_secs_f64()
    ));
    let result = run_soak(&load, Some(&node), interval, |s| {
        eprintln!(
            "  t={:>6.1}s rss={} KiB fds={} connections={} channels={}",
            s.t.as_secs_f64(),
            s.rss_kb,
            s.fds,
            s.connections,
            s.channels
        );
    });
    let stopped = node.stop();
    let (report, samples) = result?;
    stopped?;
    let warmup = plan.duration / 5;
    // the last sample is taken after the load stopped: leave it out of the trend
    let during = &samples[..samples.len().saturating_sub(1)];
    let (rss_growth, fd_growth) = soak_growth(during, warmup);
    print_soak(
        plan.duration,
        &report,
        &samples,
        warmup,
        (rss_growth, fd_growth),
        args.json,
    );
    Ok(report.handshakes > 0)
}
