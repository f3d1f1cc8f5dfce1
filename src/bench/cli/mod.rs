//! `nanopeer bench`: the command-line front of the load generator (the `tune` command is
//! [`super::tune`]; its arguments and entry point are re-exported here beside `bench`'s).
//!
//! `bench` starts a node in this process on `127.0.0.1:<free port>` (a fresh data directory
//! under the system temp dir, removed afterwards), pins its shards to the first cores and the
//! load threads to the others, raises the node's admission limits so the load's concurrency
//! fits, measures the crypto ceiling, warms up, runs the measured load and reports. With
//! `--target` it drives any node instead (no node in this process, no server CPU figure).
//! `--attack KIND` and `--soak` run a node under hostile traffic or a long churning load.
//!
//! `--workload votes|publish` streams pre-built votes or blocks on long-lived channels instead
//! ([`super::workload`]); with `--target` it reads the target's counters through
//! `--target-rpc`. Every `--target` must be a loopback address.
//!
//! Layout: `args.rs` ([`BenchArgs`]), `stress.rs` (the attack and soak modes), `stream.rs`
//! (the votes and publish workloads), `print.rs` (what the modes print); the node and load
//! setup is [`super::setup`], one measured in-process run [`super::inprocess`].

mod args;
mod print;
mod stream;
mod stress;

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Instant;

pub use super::setup::{LimitsMode, apply_limits};
pub use super::tune::{TuneArgs, run_tune};
pub use args::BenchArgs;

use super::error::BenchError;
use super::inprocess::{BenchOutcome, bench_in_process, measure_ceiling};
use super::loadgen;
use super::report::{BenchReport, Progress};
use super::setup::{BenchPlan, Placement, cores, load_config, placement, validate};
use super::workload::Workload;
use args::plan_of;
use print::{note, print_in_process, print_report};
use stream::bench_stream;
use stress::{bench_attack, bench_soak};

/// `nanopeer bench`: exit status 0 when at least one handshake completed, 1 when none did,
/// 2 on a bad argument or a failure to start.
pub fn run_bench(args: &BenchArgs) -> ExitCode {
    match bench_main(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("nanopeer bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn bench_main(args: &BenchArgs) -> Result<bool, BenchError> {
    let cores = cores();
    if args.workload != Workload::Handshake {
        return bench_stream(args, cores);
    }
    let plan = plan_of(args);
    validate(&plan)?;
    let started = Instant::now();
    if let Some(t) = &args.target {
        return bench_target(args, &plan, t, cores);
    }
    if let Some(kind) = args.attack {
        return bench_attack(args, &plan, kind, cores);
    }
    if args.soak {
        return bench_soak(args, &plan, cores);
    }
    let pl = placement(plan.shards, plan.load_threads, cores, plan.pin);
    note(&format!(
        "measuring the crypto ceiling ({:.1} s on one core)…",
        args.ceiling_secs
    ));
    let ceiling = measure_ceiling(args.ceiling_secs, pl.pin_node.then_some(0))?;
    note(&format!(
        "{} shard(s), batch_max {}, {} connections; {}; warm-up {:.1} s, then {:.1} s measured",
        plan.shards,
        plan.batch_max,
        plan.connections,
        pl.description,
        plan.warmup.as_secs_f64(),
        plan.duration.as_secs_f64()
    ));
    let progress = Progress::new(plan.duration);
    let outcome = bench_in_process(&plan, ceiling, &progress)?;
    print_in_process(&outcome, started);
    print_report(&outcome, cores, args.json);
    Ok(outcome.report.handshakes > 0)
}

fn bench_target(
    args: &BenchArgs,
    plan: &BenchPlan,
    target: &str,
    cores: usize,
) -> Result<bool, BenchError> {
    let addr = resolve_loopback(target, "--target")?;
    let shards = args.shards.unwrap_or(1);
    let load_threads = plan.load_threads.unwrap_or(1).max(1);
    let pl = Placement {
        pin_node: false,
        load_cores: Vec::new(),
        load_threads,
        description: format!("external node {addr}; {load_threads} load thread(s), not pinned"),
        warnings: Vec::new(),
    };
    note("measuring the crypto ceiling…");
    let ceiling = measure_ceiling(args.ceiling_secs, None)?;
    note(&format!(
        "driving {addr}: {} connections, warm-up {:.1} s, then {:.1} s measured",
        plan.connections,
        plan.warmup.as_secs_f64(),
        plan.duration.as_secs_f64()
    ));
    if !plan.warmup.is_zero() {
        loadgen::run(&load_config(plan, addr, &pl, plan.warmup), |_| {})?;
    }
    let progress = Progress::new(plan.duration);
    let load = loadgen::run(&load_config(plan, addr, &pl, plan.duration), |s| {
        progress.update(s)
    })?;
    progress.finish();
    let report = BenchReport::new(&load, shards, plan.batch_max, ceiling.per_sec, None);
    let outcome = BenchOutcome {
        report,
        placement: pl,
        limits: Vec::new(),
        server_cpu: None,
        batches: (0, 0.0),
        ceiling,
        server_runq_wait: None,
    };
    print_report(&outcome, cores, args.json);
    Ok(outcome.report.handshakes > 0)
}

/// Resolves `text` (`HOST:PORT`) to an address, which must be a loopback address: the bench
/// only ever drives nodes on this machine.
pub(super) fn resolve_loopback(text: &str, what: &str) -> Result<SocketAddr, BenchError> {
    let addr = text
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| BenchError::Resolve(text.to_owned()))?;
    if !addr.ip().is_loopback() {
        return Err(BenchError::Argument(format!(
            "{what} {text} is not a loopback address: the bench only drives nodes on this \
             machine (127.0.0.0/8, ::1)"
        )));
    }
    Ok(addr)
}

/// Whether stderr is a terminal (tune prints per-point lines there either way).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(line: &[&str]) -> BenchArgs {
        let mut v = vec!["bench"];
        v.extend_from_slice(line);
        Cmd::try_parse_from(v).unwrap().bench
    }

    #[test]
    fn targets_must_be_loopback_and_streams_need_the_targets_rpc() {
        assert!(resolve_loopback("127.0.0.1:7075", "--target").is_ok());
        assert!(resolve_loopback("[::1]:7075", "--target").is_ok());
        let e = resolve_loopback("10.1.2.3:7075", "--target").unwrap_err();
        assert!(e.to_string().contains("not a loopback"), "{e}");
        assert!(matches!(
            resolve_loopback("no port", "--target"),
            Err(BenchError::Resolve(_))
        ));
        // refused before anything is measured, built or dialed
        for (line, want) in [
            (
                &[
                    "--workload",
                    "votes",
                    "--target",
                    "10.0.0.9:7075",
                    "--target-rpc",
                    "127.0.0.1:7076",
                ][..],
                "not a loopback",
            ),
            (
                &["--workload", "votes", "--target", "127.0.0.1:7075"][..],
                "needs --target-rpc",
            ),
            (
                &["--workload", "publish", "--target-rpc", "127.0.0.1:1"][..],
                "goes with --target",
            ),
            (&["--workload", "votes", "--hashes", "0"][..], "--hashes"),
            (
                &["--workload", "votes", "--bad-work", "3"][..],
                "--bad-work",
            ),
            (
                &["--workload", "publish", "--network", "live"][..],
                "use --network dev",
            ),
            (
                &["--workload", "votes", "--attack", "silent"][..],
                "runs alone",
            ),
            (
                &["--workload", "votes", "--rep-key", "abc"][..],
                "--rep-key",
            ),
            (&["--target", "192.168.1.1:7075"][..], "not a loopback"),
        ] {
            let e = bench_main(&args(line)).unwrap_err().to_string();
            assert!(e.contains(want), "{line:?}: {e}");
        }
        let a = args(&["--workload", "votes", "--shards", "2", "--bad-votes", "3"]);
        let plan = args::stream_plan_of(&a).unwrap();
        assert_eq!(
            (plan.channels, plan.bad_sigs, plan.reps, plan.hashes),
            (16, 3, 64, 1)
        );
        assert_eq!(plan.base.duration, std::time::Duration::from_secs(5));
        let a = args(&[
            "--workload",
            "votes",
            "--rep-key",
            "genesis",
            "--target",
            "127.0.0.1:1",
        ]);
        let plan = args::stream_plan_of(&a).unwrap();
        assert_eq!(plan.base.shards, 1, "a target's shards default to 1");
        assert!(crate::bench::workload::is_dev_genesis(&plan.rep_keys[0]));
        assert_eq!(
            plan_of(&args(&[])).duration,
            std::time::Duration::from_secs(20)
        );
    }
}
