//! `bench --workload votes|publish`: the representative keys, the verify ceiling, the pool,
//! then the stream against a fresh in-process node or a `--target` read through
//! `--target-rpc`, and the report.

use std::sync::Arc;
use std::time::Instant;

use super::args::{BenchArgs, stream_plan_of};
use super::print::{note, print_stream};
use super::resolve_loopback;
use crate::bench::error::BenchError;
use crate::bench::report::Progress;
use crate::bench::workload::{
    Workload, bench_stream_in_process, bench_stream_target, build_pool, is_dev_genesis,
    measure_stream_ceiling, stream_placement,
};

/// `bench --workload votes|publish`: true when the node verified something in the window.
pub(super) fn bench_stream(args: &BenchArgs, cores: usize) -> Result<bool, BenchError> {
    let started = Instant::now();
    if args.attack.is_some() || args.soak {
        return Err(BenchError::Argument(
            "--workload votes/publish runs alone, not with --attack or --soak".into(),
        ));
    }
    let plan = stream_plan_of(args)?;
    plan.validate()?;
    let target = match (&args.target, &args.target_rpc) {
        (Some(t), Some(r)) => Some((
            resolve_loopback(t, "--target")?,
            resolve_loopback(r, "--target-rpc")?,
        )),
        (Some(_), None) => {
            return Err(BenchError::Argument(format!(
                "--workload {} --target needs --target-rpc: the figure is read from the \
                 target's own counters",
                plan.workload
            )));
        }
        (None, Some(_)) => {
            return Err(BenchError::Argument(
                "--target-rpc goes with --target".into(),
            ));
        }
        (None, None) => None,
    };
    let unit = plan.workload.unit();
    if target.is_some()
        && plan.workload == Workload::Votes
        && !plan.rep_keys.iter().any(is_dev_genesis)
    {
        note(
            "warning: no --rep-key is the dev genesis key, so a reference node weighs these \
             votes as a non-representative's (on dev, add --rep-key genesis)",
        );
    }
    let keys = plan.rep_keypairs();
    let pin = target.is_none() && stream_placement(&plan, cores).pin_node;
    note(&format!(
        "measuring the verify ceiling of {unit} ({:.1} s on one core)…",
        args.ceiling_secs
    ));
    let ceiling = measure_stream_ceiling(&plan, &keys, args.ceiling_secs, pin.then_some(0))?;
    let valid = plan.pool.unwrap_or_else(|| plan.default_pool(&ceiling));
    note(&format!(
        "building the pool: {valid} valid {unit} (+{} bad signatures, {} duplicates, {} bad \
         work) for {} channel(s)…",
        plan.bad_sigs,
        plan.duplicates,
        plan.mix(0).bad_work,
        plan.channels
    ));
    let (pool, build) = build_pool(&plan, &keys, valid)?;
    drop(keys);
    note(&format!(
        "pool built in {:.1} s; {} shard(s), batch_max {}, warm-up {:.1} s, then up to {:.1} s \
         measured",
        build.as_secs_f64(),
        plan.base.shards,
        plan.base.batch_max,
        plan.base.warmup.as_secs_f64(),
        plan.base.duration.as_secs_f64()
    ));
    let progress = Progress::new(plan.base.duration);
    let pool = Arc::new(pool);
    let outcome = match target {
        None => bench_stream_in_process(&plan, ceiling, pool, build, &progress)?,
        Some(t) => bench_stream_target(&plan, ceiling, pool, build, t, &progress)?,
    };
    print_stream(&outcome, cores, args.json, started);
    Ok(outcome.report.verified_in_window > 0)
}
