//! What `nanopeer bench` prints: progress notes on stderr, the setup lines, table and JSON
//! line of a measured run, and the summaries and JSON objects of the attack and soak modes.

use std::time::{Duration, Instant};

use crate::bench::attack::{AttackKind, AttackReport, SoakSample};
use crate::bench::inprocess::{BenchOutcome, load_average, outcome_json};
use crate::bench::loadgen::LoadReport;
use crate::bench::setup::LimitsMode;
use crate::bench::workload::{StreamOutcome, stream_outcome_json};

/// A progress note on stderr, prefixed with the command.
pub(super) fn note(msg: &str) {
    eprintln!("nanopeer bench: {msg}");
}

/// How an in-process run was set up and what it cost besides the rate: placement, raised
/// limits, verify batches, CPU efficiency, load average and the whole command's time since
/// `started`.
pub(super) fn print_in_process(outcome: &BenchOutcome, started: Instant) {
    let limits: Vec<String> = outcome
        .limits
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("placement: {}", outcome.placement.description);
    println!("node limits raised for the bench: {}", limits.join(", "));
    println!(
        "verify batches: {} flushed, {:.1} signatures each on average",
        outcome.batches.0, outcome.batches.1
    );
    if let Some(e) = outcome.cpu_efficiency() {
        println!(
            "CPU efficiency: {:.1} % (crypto {:.1} µs of {:.1} µs shard CPU per handshake)",
            e * 100.0,
            1e6 / outcome.ceiling.per_cpu_sec,
            outcome.report.server_cpu_us_per_handshake.unwrap_or(0.0)
        );
    }
    println!(
        "load average: {}; whole command {:.1} s",
        load_average().map_or("n/a".into(), |l| format!("{l:.2}")),
        started.elapsed().as_secs_f64()
    );
}

/// A votes or publish run: placement, raised limits, load average and the command's time
/// since `started`, the report's table, then (with `json_line`) its JSON line.
pub(super) fn print_stream(o: &StreamOutcome, cores: usize, json_line: bool, started: Instant) {
    println!("placement: {}", o.placement.description);
    if !o.limits.is_empty() {
        let limits: Vec<String> = o.limits.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("node limits raised for the bench: {}", limits.join(", "));
    }
    println!(
        "load average: {}; whole command {:.1} s",
        load_average().map_or("n/a".into(), |l| format!("{l:.2}")),
        started.elapsed().as_secs_f64()
    );
    print!("{}", o.report.table());
    if json_line {
        println!("{}", stream_outcome_json(o, cores));
    }
}

/// The report's table, then (with `json_line`) the run's JSON line.
pub(super) fn print_report(outcome: &BenchOutcome, cores: usize, json_line: bool) {
    print!("{}", outcome.report.table());
    if json_line {
        println!("{}", outcome_json(outcome, cores));
    }
}

/// An attack run: its summary (and the flood's), then (with `json_line`) one JSON object with
/// the attack's figures, the node counters' growth and the node's limits.
pub(super) fn print_attack(
    rep: &AttackReport,
    kind: AttackKind,
    connections: usize,
    mode: LimitsMode,
    limits: &[(&'static str, u64)],
    json_line: bool,
) {
    println!("{}", rep.summary());
    if let Some(f) = &rep.flood {
        println!("{}", f.summary());
    }
    let delta = |f: fn(&crate::node::NodeStats) -> u64| {
        rep.node_after
            .as_ref()
            .zip(rep.node_before.as_ref())
            .map(|(a, b)| f(a).saturating_sub(f(b)))
    };
    let mut json = serde_json::json!({
        "attack": kind.to_string(),
        "crypto_backend": crate::crypto::backend_name(),
        "duration_s": rep.wall.as_secs_f64(),
        "honest_handshakes_per_sec": rep.honest_per_sec(),
        "honest_failures": rep.honest.as_ref().map(|h| h.failures_total()),
        "attack_connections": connections,
        "attack_opened": rep.opened,
        "attack_connect_failed": rep.connect_failed,
        "attack_held_peak": rep.held_peak,
        "attack_cut_by_node": rep.cut_by_node,
        "bad_sig": rep.bad_sig.map(|b| serde_json::json!({
            "bad_sent": b.bad_sent, "bad_rejected": b.bad_rejected,
            "bad_accepted": b.bad_accepted, "good_sent": b.good_sent})),
        "node_invalid_signature": delta(|s| s.proto.handshake.get(crate::proto::events::HandshakeOutcome::InvalidSignature)),
        "node_closed_deadline": delta(|s| s.io.closed_deadline),
        "node_connections_peak": rep.connections_peak(),
        "process_fds_peak": rep.fds_peak(),
        "process_rss_peak_kb": rep.rss_peak_kb(),
        "limits": mode.as_str(),
        "node_limits": limits
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect::<serde_json::Map<_, _>>(),
    });
    if let (Some(f), Some(m)) = (&rep.flood, json.as_object_mut())
        && let serde_json::Value::Object(extra) = f.json()
    {
        m.extend(extra);
    }
    if json_line {
        println!("{json}");
    }
}

/// A soak run: one summary line (growth after `warmup`), then (with `json_line`) the samples
/// and the growth as one JSON object.
pub(super) fn print_soak(
    duration: Duration,
    report: &LoadReport,
    samples: &[SoakSample],
    warmup: Duration,
    (rss_growth, fd_growth): (i64, i64),
    json_line: bool,
) {
    let json = serde_json::json!({
        "soak_s": duration.as_secs_f64(),
        "handshakes": report.handshakes,
        "handshakes_per_sec": report.handshakes_per_sec,
        "failures": report.failures_total(),
        "samples": samples.iter().map(|s| serde_json::json!({
            "t_s": s.t.as_secs_f64(), "rss_kb": s.rss_kb, "fds": s.fds,
            "connections": s.connections, "channels": s.channels})).collect::<Vec<_>>(),
        "warmup_s": warmup.as_secs_f64(),
        "rss_growth_after_warmup_kb": rss_growth,
        "fd_growth_after_warmup": fd_growth,
    });
    println!(
        "soak {:.0} s: {} handshakes ({:.0}/s), {} failures; after warm-up RSS {:+} KiB, descriptors {:+}",
        duration.as_secs_f64(),
        report.handshakes,
        report.handshakes_per_sec,
        report.failures_total(),
        rss_growth,
        fd_growth
    );
    if json_line {
        println!("{json}");
    }
}
