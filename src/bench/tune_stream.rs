//! `nanopeer tune --workload votes|publish`: the shard × batch sweep of a realtime workload.
//!
//! The representative keys and the pool are made once — the pool sized for the largest shard
//! count — and streamed to every point's fresh node (whose duplicate filter has seen none of
//! it). The verify ceiling is measured once per batch size for votes (the same key mix at that
//! batch size) and once for blocks. Every point is one `bench --workload` run
//! ([`bench_stream_in_process`]); the files are rewritten after every point ([`TuneFiles`]),
//! the plot shows the figure by batch size when one shard count is swept, and the
//! recommendation is [`recommend`]'s over the points.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::error::BenchError;
use super::inprocess::{Ceiling, RUNQ_WARN, load_average};
use super::report::Progress;
use super::setup::{BenchPlan, cores};
use super::tune::{TuneArgs, TunePoint, exit_on_interrupt, print_ending, recommend};
use super::tune_files::{Figure, TuneFiles};
use super::workload::{
    StreamOutcome, StreamPlan, StreamReport, bench_stream_in_process, build_pool,
    measure_stream_ceiling, stream_outcome_json, stream_placement,
};

impl TunePoint for StreamReport {
    fn shards(&self) -> usize {
        self.shards
    }
    fn batch_max(&self) -> usize {
        self.batch_max
    }
    fn rate(&self) -> f64 {
        self.per_sec
    }
    fn measured(&self) -> bool {
        self.verified_in_window > 0
    }
    fn server_cpu_us(&self) -> Option<f64> {
        self.server_cpu_us
    }
    fn load_cpu_util(&self) -> f64 {
        self.load_cpu_util
    }
    fn unit(&self) -> (&'static str, &'static str) {
        (self.workload.unit(), self.workload.singular())
    }
}

/// The CSV header of a stream sweep of `unit` (`votes`, `blocks`) counted one by one as `one`:
/// the figure is the third column.
pub fn csv_header(unit: &str, one: &str) -> String {
    format!(
        "shards,batch_max,{unit}_per_sec,efficiency,server_cpu_us_per_{one},cpu_bound_per_sec,\
         verify_batch_mean,verify_ceiling_per_sec,load_cpu_util,dropped,verified,duration_s"
    )
}

/// One point as a CSV line (no newline), in the columns of [`csv_header`].
pub fn csv_row(p: &StreamReport) -> String {
    let opt = |v: Option<f64>, d: usize| v.map_or(String::new(), |v| format!("{v:.d$}"));
    format!(
        "{},{},{:.1},{:.4},{},{},{},{:.0},{:.3},{},{},{:.2}",
        p.shards,
        p.batch_max,
        p.per_sec,
        p.efficiency,
        opt(p.server_cpu_us, 3),
        opt(p.server_cpu_us.filter(|&us| us > 0.0).map(|us| 1e6 / us), 0),
        opt(p.verify_batch_mean, 1),
        p.ceiling.per_sec,
        p.load_cpu_util,
        p.total.dropped(),
        p.verified_in_window,
        p.duration_s
    )
}

/// The terminal table of the points.
pub fn table(points: &[StreamReport]) -> String {
    let (unit, one) = points.first().map_or(("votes", "vote"), |p| {
        (p.workload.unit(), p.workload.singular())
    });
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6} {:>6} {:>12} {:>10} {:>12} {:>11} {:>10} {:>12} {:>8} {:>8}",
        "shards",
        "batch",
        format!("{unit}/s"),
        "efficiency",
        format!("µs/{one}"),
        "CPU-bound/s",
        "batch mean",
        "ceiling/s",
        "load CPU",
        "dropped"
    );
    let na = |v: Option<f64>, d: usize| v.map_or("n/a".into(), |v| format!("{v:.d$}"));
    for p in points {
        let _ = writeln!(
            out,
            "{:>6} {:>6} {:>12.0} {:>9.1}% {:>12} {:>11} {:>10} {:>12.0} {:>7.0}% {:>8}",
            p.shards,
            p.batch_max,
            p.per_sec,
            p.efficiency * 100.0,
            na(p.server_cpu_us, 2),
            na(p.server_cpu_us.filter(|&us| us > 0.0).map(|us| 1e6 / us), 0),
            na(p.verify_batch_mean, 1),
            p.ceiling.per_sec,
            p.load_cpu_util * 100.0,
            p.total.dropped()
        );
    }
    out
}

/// `tune --workload votes|publish`: the sweep, its files and recommendation; `Ok(false)` when
/// some point verified nothing.
pub(super) fn tune_streams(args: &TuneArgs) -> Result<bool, BenchError> {
    let cores = cores();
    let shards_list = args
        .shards_list
        .clone()
        .unwrap_or_else(|| (1..=cores).collect());
    let largest = shards_list.iter().copied().max().unwrap_or(0);
    if largest == 0 || args.batch_list.is_empty() {
        return Err(BenchError::Argument(
            "--shards-list and --batch-list need at least one value each".into(),
        ));
    }
    let channels = args.channels.unwrap_or(8 * largest);
    let plan_for = |shards: usize, batch_max: usize| StreamPlan {
        base: BenchPlan {
            shards,
            batch_max,
            batch_delay_us: args.batch_delay_us,
            duration: std::time::Duration::from_secs_f64(args.duration.max(0.0)),
            warmup: std::time::Duration::from_secs_f64(args.warmup.max(0.0)),
            connections: channels,
            load_threads: None,
            network: args.network,
            verify_node: true,
            hold: false,
            hold_limit: 0,
            pin: !args.no_pin,
        },
        workload: args.workload,
        channels,
        reps: args.reps,
        rep_keys: Vec::new(),
        hashes: args.hashes,
        rate: 0,
        pool: args.pool,
        bad_sigs: 0,
        duplicates: 0,
        bad_work: 0,
    };
    let first = plan_for(largest, args.batch_list[0]);
    first.validate()?;
    let (unit, one) = (args.workload.unit(), args.workload.singular());
    let keys = first.rep_keypairs();
    let pin0 = stream_placement(&plan_for(shards_list[0], 1), cores)
        .pin_node
        .then_some(0);
    // votes: one ceiling per batch size (the batch is part of the cost); blocks: one
    let mut ceilings: Vec<(usize, Ceiling)> = Vec::new();
    for &b in &args.batch_list {
        if ceilings.iter().any(|(c, _)| *c == b) {
            continue;
        }
        if let (Some((_, c)), false) = (ceilings.first(), unit == "votes") {
            ceilings.push((b, *c));
            continue;
        }
        eprintln!(
            "nanopeer tune: measuring the verify ceiling of {unit} at batch {b} ({:.1} s)…",
            args.ceiling_secs
        );
        let c = measure_stream_ceiling(&plan_for(largest, b), &keys, args.ceiling_secs, pin0)?;
        ceilings.push((b, c));
    }
    let ceiling_of = |b: usize| {
        ceilings
            .iter()
            .find(|(c, _)| *c == b)
            .map_or(ceilings[0].1, |(_, c)| *c)
    };
    let fastest = ceilings
        .iter()
        .map(|(_, c)| *c)
        .max_by(|a, b| a.per_cpu_sec.total_cmp(&b.per_cpu_sec))
        .unwrap_or(ceilings[0].1);
    let valid = args.pool.unwrap_or_else(|| first.default_pool(&fastest));
    eprintln!("nanopeer tune: building the pool: {valid} valid {unit} for {channels} channel(s)…");
    let (pool, build) = build_pool(&first, &keys, valid)?;
    drop(keys);
    let pool = Arc::new(pool);
    let total = shards_list.len() * args.batch_list.len();
    let summary = |outcomes: &[StreamOutcome]| {
        let points: Vec<StreamReport> = outcomes.iter().map(|o| o.report.clone()).collect();
        serde_json::json!({
            "workload": args.workload.as_str(),
            "cores": cores,
            "load_average": load_average(),
            "verify_ceiling_per_sec": ceilings.iter()
                .map(|(b, c)| (b.to_string(), serde_json::Value::from(c.per_sec)))
                .collect::<serde_json::Map<_, _>>(),
            "duration_s": args.duration,
            "channels": channels,
            "reps": if unit == "votes" { args.reps } else { 0 },
            "hashes": if unit == "votes" { args.hashes } else { 0 },
            "pool": valid,
            "points_planned": total,
            "complete": outcomes.len() == total,
            "points": outcomes.iter().map(|o| stream_outcome_json(o, cores)).collect::<Vec<_>>(),
            "recommendation": recommend(&points, cores),
        })
    };
    let mut files = TuneFiles::create(
        &args.out,
        &csv_header(unit, one),
        Figure::of_column(&format!("{unit}_per_sec")),
        Some(if unit == "votes" {
            let each: Vec<String> = ceilings
                .iter()
                .map(|(b, c)| format!("{:.0}/s at batch {b}", c.per_sec))
                .collect();
            format!("1-core verify ceiling {}", each.join(", "))
        } else {
            format!("1-core verify ceiling {:.0}/s", ceilings[0].1.per_sec)
        }),
        &summary(&[]),
    )?;
    let saved = Arc::new(AtomicUsize::new(0));
    exit_on_interrupt(&args.out, Arc::clone(&saved), total)?;
    let mut outcomes: Vec<StreamOutcome> = Vec::with_capacity(total);
    for &shards in &shards_list {
        for &batch_max in &args.batch_list {
            eprintln!(
                "nanopeer tune: [{}/{total}] {unit}, {shards} shard(s), batch_max {batch_max}…",
                outcomes.len() + 1
            );
            let plan = plan_for(shards, batch_max);
            let o = bench_stream_in_process(
                &plan,
                ceiling_of(batch_max),
                Arc::clone(&pool),
                build,
                &Progress::new(plan.base.duration),
            )?;
            let r = &o.report;
            eprintln!(
                "nanopeer tune:   {:.0} {unit}/s, efficiency {:.1} %, {} µs per {one}",
                r.per_sec,
                r.efficiency * 100.0,
                r.server_cpu_us.map_or("n/a".into(), |v| format!("{v:.2}"))
            );
            for w in &r.warnings {
                eprintln!("nanopeer tune:   warning: {w}");
            }
            let row = csv_row(r);
            outcomes.push(o);
            files.record(row, &summary(&outcomes))?;
            saved.store(files.len(), Ordering::SeqCst);
        }
    }
    let points: Vec<StreamReport> = outcomes.iter().map(|o| o.report.clone()).collect();
    let rec = recommend(&points, cores);
    println!(
        "{unit}: {channels} channel(s), pool of {valid}; {cores} core(s); load average {}",
        load_average().map_or("n/a".into(), |l| format!("{l:.2}"))
    );
    print!("{}", table(&points));
    let starved = points
        .iter()
        .filter(|p| p.server_runq_wait.is_some_and(|w| w > RUNQ_WARN))
        .count();
    print_ending(
        starved,
        total,
        rec.as_ref(),
        &format!("verified a {one}"),
        &files,
    );
    if args.json {
        println!("{}", summary(&outcomes));
    }
    Ok(points.iter().all(TunePoint::measured))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tune_files::{Table, plot};

    fn point(shards: usize, batch_max: usize, rate: f64, cpu: f64) -> StreamReport {
        let mut r = StreamReport::example(crate::bench::workload::Workload::Votes);
        r.shards = shards;
        r.batch_max = batch_max;
        r.per_sec = rate;
        r.verified_in_window = (rate * 5.0) as u64;
        r.server_cpu_us = Some(cpu);
        r
    }

    #[test]
    fn stream_points_are_recommended_tabled_and_plotted_by_batch() {
        let pts = vec![
            point(1, 1, 50_000.0, 19.0),
            point(1, 16, 76_000.0, 12.5),
            point(1, 64, 80_000.0, 12.0),
            point(1, 256, 79_000.0, 12.4),
        ];
        let r = recommend(&pts, 2).unwrap();
        assert_eq!((r.shards, r.batch_max, r.unit), (1, 64, "votes"));
        assert!(r.reason.contains("80000 votes/s"), "{}", r.reason);
        assert!(r.reason.contains("1.60× batch_max 1"), "{}", r.reason);
        let header = csv_header("votes", "vote");
        let mut csv = header.clone() + "\n";
        for p in &pts {
            csv += &(csv_row(p) + "\n");
        }
        let t = Table::parse(&csv).unwrap();
        assert_eq!(t.rows.len(), 4);
        assert_eq!(t.column("server_cpu_us_per_vote"), Some(4));
        assert!(t.rows[2][2].starts_with("80000"), "{:?}", t.rows[2]);
        let svg = plot(&t, &Figure::of_column("votes_per_sec"), None).unwrap();
        assert!(
            svg.contains("votes/s by batch size"),
            "one shard count: x is the batch"
        );
        assert_eq!(table(&pts).lines().count(), 5);
        assert!(table(&pts).contains("votes/s"));
    }
}
