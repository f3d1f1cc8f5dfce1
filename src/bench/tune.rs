//! `nanopeer tune`: its arguments, the in-process bench over a grid of shard counts × batch
//! sizes, a table, tune.json / tune.csv / tune.svg, and a recommended setting for this machine.
//!
//! The crypto ceiling is measured once, before the sweep, and every point is compared with
//! it. Each point runs on a fresh node (its own data directory and port). The three files are
//! rewritten after every point ([`TuneFiles`]), so an interrupted sweep keeps what it measured;
//! `--plot-from FILE.csv` redraws the plot of a saved sweep. `--workload votes|publish`
//! sweeps the realtime workloads instead ([`super::tune_stream`]); [`recommend`] picks from
//! either kind of point ([`TunePoint`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::error::BenchError;
use super::inprocess::{
    BenchOutcome, RUNQ_WARN, bench_in_process, load_average, measure_ceiling, outcome_json,
};
use super::loadgen::SATURATION_WARN;
use super::report::{BenchReport, Progress};
use super::setup::{BenchPlan, cores, placement, remove_temp_dirs};
use super::tune_files::{Figure, TuneFiles, plot_csv_file};
use super::workload::Workload;
use crate::types::Network;

/// The arguments of `nanopeer tune`.
#[derive(Debug, Clone, Args)]
pub struct TuneArgs {
    /// What each point measures: `handshake`, `votes` or `publish` (as `bench --workload`).
    #[arg(long, value_enum, default_value_t = Workload::Handshake, value_name = "KIND")]
    pub workload: Workload,
    /// votes/publish: channels of every point [default: 8 per shard of the largest shard
    /// count].
    #[arg(long, value_name = "N")]
    pub channels: Option<usize>,
    /// votes: representative keys signing the votes (drawn at random per vote).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub reps: usize,
    /// votes: block hashes per vote.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub hashes: usize,
    /// votes/publish: valid messages built once and sent to every point's fresh node
    /// [default: enough for the warm-up and --duration at the largest shard count × the
    /// verify ceiling, +25 %].
    #[arg(long, value_name = "N")]
    pub pool: Option<usize>,
    /// Shard counts to try, comma-separated [default: 1 to the number of cores].
    #[arg(long, value_delimiter = ',', value_name = "N,N,…")]
    pub shards_list: Option<Vec<usize>>,
    /// Batch sizes to try, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,16,64,256",
        value_name = "N,N,…"
    )]
    pub batch_list: Vec<usize>,
    /// Measured duration of each point, seconds.
    #[arg(long, default_value_t = 8.0, value_name = "S")]
    pub duration: f64,
    /// Warm-up of each point, seconds.
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    pub warmup: f64,
    /// How long the crypto ceiling is measured (once, before the sweep), seconds.
    #[arg(long, default_value_t = 2.0, value_name = "S")]
    pub ceiling_secs: f64,
    /// The batch delay of every point (µs).
    #[arg(long, default_value_t = 200, value_name = "US")]
    pub batch_delay_us: u64,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub connections: usize,
    /// Load threads [default: the cores the node does not use, at least 1].
    #[arg(long, value_name = "N")]
    pub load_threads: Option<usize>,
    /// The network.
    #[arg(long, default_value = "dev")]
    pub network: Network,
    /// Directory for tune.json, tune.csv and tune.svg (rewritten after every point).
    #[arg(long, default_value = "tune-out", value_name = "DIR")]
    pub out: PathBuf,
    /// Measure nothing: draw the plot of a saved tune CSV and write it beside it (FILE.svg).
    #[arg(long, value_name = "FILE.csv")]
    pub plot_from: Option<PathBuf>,
    /// With --plot-from: the CSV column to plot [default: the third, the measured rate].
    #[arg(long, value_name = "COLUMN", requires = "plot_from")]
    pub figure: Option<String>,
    /// Do not verify the node's handshake signatures in the load generator.
    #[arg(long)]
    pub no_verify_node: bool,
    /// Do not pin shards and load threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Print the summary as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// Points within this fraction of the best rate count as equally fast.
pub const WITHIN: f64 = 0.05;

/// The setting `tune` recommends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// Shard count to run with (`node.shards`).
    pub shards: usize,
    /// Verify batch size to run with (`verify.batch_max`).
    pub batch_max: usize,
    /// Its measured rate.
    pub rate_per_sec: f64,
    /// What the rate counts: `handshakes`, `votes` or `blocks`.
    pub unit: &'static str,
    /// Why, in a sentence or two.
    pub reason: String,
}

/// What [`recommend`] reads of a measured point: a handshake bench's [`BenchReport`] or a
/// votes/publish run's [`StreamReport`](super::workload::StreamReport).
pub trait TunePoint {
    /// The point's shard count.
    fn shards(&self) -> usize;
    /// The point's verify batch size.
    fn batch_max(&self) -> usize;
    /// The measured rate (handshakes, votes or blocks per second).
    fn rate(&self) -> f64;
    /// Whether the point measured anything at all.
    fn measured(&self) -> bool;
    /// Server CPU per handshake (vote, block), µs, when known.
    fn server_cpu_us(&self) -> Option<f64>;
    /// The load generator's CPU use, 0..1.
    fn load_cpu_util(&self) -> f64;
    /// What the rate counts, plural and singular (`handshakes`, `handshake`).
    fn unit(&self) -> (&'static str, &'static str);
}

impl TunePoint for BenchReport {
    fn shards(&self) -> usize {
        self.shards
    }
    fn batch_max(&self) -> usize {
        self.batch_max
    }
    fn rate(&self) -> f64 {
        self.handshakes_per_sec
    }
    fn measured(&self) -> bool {
        self.handshakes > 0
    }
    fn server_cpu_us(&self) -> Option<f64> {
        self.server_cpu_us_per_handshake
    }
    fn load_cpu_util(&self) -> f64 {
        self.load_cpu_util
    }
    fn unit(&self) -> (&'static str, &'static str) {
        ("handshakes", "handshake")
    }
}

/// Picks the best point: the highest rate; among the points within [`WITHIN`] of it, the
/// fewest shards (cores left for the crawler and the rest of the node), then the least
/// server CPU per handshake (vote, block: rates that close are noise, or the load generator's
/// limit; the node's own cost is what separates them), then the higher rate. `None` when no
/// point measured anything.
pub fn recommend<P: TunePoint>(points: &[P], cores: usize) -> Option<Recommendation> {
    let best = points
        .iter()
        .filter(|p| p.measured())
        .max_by(|a, b| a.rate().total_cmp(&b.rate()))?;
    let (units, one) = best.unit();
    let floor = best.rate() * (1.0 - WITHIN);
    let pick = points
        .iter()
        .filter(|p| p.measured() && p.rate() >= floor)
        .min_by(|a, b| {
            a.shards()
                .cmp(&b.shards())
                .then(cpu_per_item(*a).total_cmp(&cpu_per_item(*b)))
                .then(b.rate().total_cmp(&a.rate()))
        })?;
    let mut reason = if std::ptr::eq(pick, best) {
        format!("the highest rate measured ({:.0} {units}/s)", pick.rate())
    } else if pick.shards() == best.shards() {
        format!(
            "{:.0} {units}/s, within {:.0} % of the highest ({:.0}/s, batch {}), at the least \
             server CPU per {one} among those ({:.1} µs against {:.1} µs)",
            pick.rate(),
            WITHIN * 100.0,
            best.rate(),
            best.batch_max(),
            cpu_per_item(pick),
            cpu_per_item(best)
        )
    } else {
        format!(
            "{:.0} {units}/s, within {:.0} % of the highest ({:.0}/s with {} shard(s), batch \
             {}) on fewer cores",
            pick.rate(),
            WITHIN * 100.0,
            best.rate(),
            best.shards(),
            best.batch_max()
        )
    };
    if let Some(b1) = points.iter().find(|p| {
        p.shards() == pick.shards() && p.batch_max() == 1 && pick.batch_max() != 1 && p.measured()
    }) && b1.rate() > 0.0
    {
        let _ = write!(
            reason,
            "; {:.2}× batch_max 1 with the same shards",
            pick.rate() / b1.rate()
        );
    }
    if best.load_cpu_util() >= SATURATION_WARN {
        let _ = write!(
            reason,
            "; the load generator was saturated ({:.0} % CPU), so the rates show its limit and \
             the server CPU per {one} shows the node's",
            best.load_cpu_util() * 100.0
        );
    }
    let free = cores.saturating_sub(pick.shards());
    if free > 0 {
        let _ = write!(
            reason,
            "; leaves {free} of {cores} core(s) for the crawler, RPC and the OS"
        );
    } else {
        let _ = write!(
            reason,
            "; uses every core ({cores}), so the crawler shares a core with a shard — on a busy \
             node prefer {} shard(s)",
            cores.saturating_sub(1).max(1)
        );
    }
    Some(Recommendation {
        shards: pick.shards(),
        batch_max: pick.batch_max(),
        rate_per_sec: pick.rate(),
        unit: units,
        reason,
    })
}

/// Column names of tune.csv.
pub const CSV_HEADER: &str = "shards,batch_max,handshakes_per_sec,efficiency,latency_p50_us,\
latency_p99_us,server_cpu_us_per_handshake,cpu_bound_per_sec,load_cpu_util,failures,handshakes,\
duration_s";

/// What one shard core would serve if it had the core to itself: 1 s / server CPU per
/// handshake (robust against other processes taking the CPU, unlike the rate).
pub fn cpu_bound_per_sec(p: &BenchReport) -> Option<f64> {
    p.server_cpu_us_per_handshake
        .filter(|&us| us > 0.0)
        .map(|us| 1e6 / us)
}

/// The CSV column tune plots: the measured handshake rate.
pub const FIGURE_COLUMN: &str = "handshakes_per_sec";

/// One point as a CSV line (no newline), in the columns of [`CSV_HEADER`].
pub fn csv_row(p: &BenchReport) -> String {
    format!(
        "{},{},{:.1},{:.4},{},{},{},{},{:.3},{},{},{:.2}",
        p.shards,
        p.batch_max,
        p.handshakes_per_sec,
        p.efficiency,
        p.latency_p50_us,
        p.latency_p99_us,
        p.server_cpu_us_per_handshake
            .map_or(String::new(), |v| format!("{v:.2}")),
        cpu_bound_per_sec(p).map_or(String::new(), |v| format!("{v:.0}")),
        p.load_cpu_util,
        p.failures_total,
        p.handshakes,
        p.duration_s
    )
}

/// The points as CSV (header line first).
pub fn to_csv(points: &[BenchReport]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for p in points {
        out.push_str(&csv_row(p));
        out.push('\n');
    }
    out
}

/// The terminal table of the points.
pub fn table(points: &[BenchReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6} {:>6} {:>13} {:>10} {:>9} {:>9} {:>12} {:>11} {:>8} {:>8}",
        "shards",
        "batch",
        "handshakes/s",
        "efficiency",
        "p50 µs",
        "p99 µs",
        "server µs/hs",
        "CPU-bound/s",
        "load CPU",
        "failures"
    );
    for p in points {
        let _ = writeln!(
            out,
            "{:>6} {:>6} {:>13.0} {:>9.1}% {:>9} {:>9} {:>12} {:>11} {:>7.0}% {:>8}",
            p.shards,
            p.batch_max,
            p.handshakes_per_sec,
            p.efficiency * 100.0,
            p.latency_p50_us,
            p.latency_p99_us,
            p.server_cpu_us_per_handshake
                .map_or("n/a".into(), |v| format!("{v:.1}")),
            cpu_bound_per_sec(p).map_or("n/a".into(), |v| format!("{v:.0}")),
            p.load_cpu_util * 100.0,
            p.failures_total
        );
    }
    out
}

/// `nanopeer tune`: runs the sweep and writes its outputs. Exit status 0 when every point
/// completed handshakes and the outputs were written. With `--plot-from` it only redraws the
/// plot of a saved CSV (exit status 0 when written).
pub fn run_tune(args: &TuneArgs) -> ExitCode {
    if let Some(csv) = &args.plot_from {
        return match plot_csv_file(csv, args.figure.as_deref()) {
            Ok(svg) => {
                println!("wrote {}", svg.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("nanopeer tune: {e}");
                ExitCode::from(2)
            }
        };
    }
    match tune_main(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("nanopeer tune: {e}");
            ExitCode::from(2)
        }
    }
}

/// Exit status of a tune stopped by SIGINT (Ctrl-C): 128 + 2, as a shell reports it.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Watches for SIGINT and SIGTERM on a thread of its own. On the first, it says how many points
/// were saved (`saved`, of `total`, in `out`), removes the current point's node data directory,
/// and any half-written temporary output, and ends the process at once (status
/// [`EXIT_INTERRUPTED`], or 143 for SIGTERM): the point being measured is dropped, every
/// finished one is already on disk.
pub(super) fn exit_on_interrupt(
    out: &Path,
    saved: Arc<AtomicUsize>,
    total: usize,
) -> Result<(), BenchError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(BenchError::Signal)?;
    let out = out.to_path_buf();
    std::thread::Builder::new()
        .name("tune-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                remove_temp_dirs();
                // a file being replaced at this instant keeps its old version
                for name in [TuneFiles::CSV, TuneFiles::JSON, TuneFiles::SVG] {
                    let _ = std::fs::remove_file(out.join(format!("{name}.tmp")));
                }
                eprintln!(
                    "nanopeer tune: interrupted; {} of {total} points saved in {} (tune.csv, \
                     tune.json, tune.svg)",
                    saved.load(Ordering::SeqCst),
                    out.display()
                );
                std::process::exit(if sig == SIGINT {
                    EXIT_INTERRUPTED
                } else {
                    128 + sig
                });
            }
        })
        .map_err(|_| BenchError::Thread)?;
    Ok(())
}

/// Runs the sweep; `Ok(false)` when some point completed no handshake.
fn tune_main(args: &TuneArgs) -> Result<bool, BenchError> {
    if args.workload != Workload::Handshake {
        return super::tune_stream::tune_streams(args);
    }
    let cores = cores();
    let shards_list = args
        .shards_list
        .clone()
        .unwrap_or_else(|| (1..=cores).collect());
    if shards_list.is_empty() || args.batch_list.is_empty() {
        return Err(BenchError::Argument(
            "--shards-list and --batch-list need at least one value each".into(),
        ));
    }
    let pin0 = placement(shards_list[0], args.load_threads, cores, !args.no_pin).pin_node;
    eprintln!(
        "nanopeer tune: measuring the crypto ceiling ({:.1} s)…",
        args.ceiling_secs
    );
    let ceiling = measure_ceiling(args.ceiling_secs, pin0.then_some(0))?;
    let total = shards_list.len() * args.batch_list.len();
    let mut points: Vec<BenchReport> = Vec::with_capacity(total);
    let mut outcomes: Vec<BenchOutcome> = Vec::with_capacity(total);
    // tune.json: the sweep so far (`complete` once every planned point is in)
    let summary = |outcomes: &[BenchOutcome], points: &[BenchReport]| {
        serde_json::json!({
            "cores": cores,
            "load_average": load_average(),
            "crypto_ceiling_per_sec": ceiling.per_sec,
            "crypto_ceiling_cpu_per_sec": ceiling.per_cpu_sec,
            "duration_s": args.duration,
            "connections": args.connections,
            "verify_node": !args.no_verify_node,
            "points_planned": total,
            "complete": points.len() == total,
            "points": outcomes.iter().map(|o| outcome_json(o, cores)).collect::<Vec<_>>(),
            "recommendation": recommend(points, cores),
        })
    };
    let mut files = TuneFiles::create(
        &args.out,
        CSV_HEADER,
        Figure::of_column(FIGURE_COLUMN),
        Some(format!("1-core crypto ceiling {:.0}/s", ceiling.per_sec)),
        &summary(&[], &[]),
    )?;
    let saved = Arc::new(AtomicUsize::new(0));
    exit_on_interrupt(&args.out, Arc::clone(&saved), total)?;
    let mut all_ok = true;
    for &shards in &shards_list {
        for &batch_max in &args.batch_list {
            let plan = BenchPlan {
                shards,
                batch_max,
                batch_delay_us: args.batch_delay_us,
                duration: Duration::from_secs_f64(args.duration.max(0.0)),
                warmup: Duration::from_secs_f64(args.warmup.max(0.0)),
                connections: args.connections,
                load_threads: args.load_threads,
                network: args.network,
                verify_node: !args.no_verify_node,
                hold: false,
                hold_limit: 0,
                pin: !args.no_pin,
            };
            eprintln!(
                "nanopeer tune: [{}/{total}] {shards} shard(s), batch_max {batch_max}…",
                points.len() + 1
            );
            let o = bench_in_process(&plan, ceiling, &Progress::new(plan.duration))?;
            eprintln!(
                "nanopeer tune:   {:.0} handshakes/s, efficiency {:.1} %, load CPU {:.0} %",
                o.report.handshakes_per_sec,
                o.report.efficiency * 100.0,
                o.report.load_cpu_util * 100.0
            );
            for w in &o.report.warnings {
                eprintln!("nanopeer tune:   warning: {w}");
            }
            all_ok &= o.report.handshakes > 0;
            let row = csv_row(&o.report);
            points.push(o.report.clone());
            outcomes.push(o);
            files.record(row, &summary(&outcomes, &points))?;
            saved.store(files.len(), Ordering::SeqCst);
            eprintln!(
                "nanopeer tune:   saved ({} of {total} points in {})",
                files.len(),
                args.out.display()
            );
        }
    }
    let rec = recommend(&points, cores);
    let summary = summary(&outcomes, &points);
    println!(
        "crypto ceiling (1 core): {:.0} handshakes/s ({:.0} per CPU second); {cores} core(s); \
         load average {}",
        ceiling.per_sec,
        ceiling.per_cpu_sec,
        load_average().map_or("n/a".into(), |l| format!("{l:.2}"))
    );
    print!("{}", table(&points));
    let starved = outcomes
        .iter()
        .filter(|o| o.server_runq_wait.is_some_and(|w| w > RUNQ_WARN))
        .count();
    print_ending(
        starved,
        total,
        rec.as_ref(),
        "completed a handshake",
        &files,
    );
    if args.json {
        println!("{summary}");
    }
    Ok(all_ok)
}

/// The end of a sweep's output: a warning when `starved` of the `total` points waited for a
/// CPU, the recommendation (or why there is none: no point `measured_what`) and the files.
pub(super) fn print_ending(
    starved: usize,
    total: usize,
    rec: Option<&Recommendation>,
    measured_what: &str,
    files: &TuneFiles,
) {
    if starved > 0 {
        println!(
            "warning: in {starved} of {total} points the shards waited for a CPU more than {:.0} % \
             of the time (other processes): their rates are not comparable; compare the \
             CPU-bound column or rerun on a quiet machine",
            RUNQ_WARN * 100.0
        );
    }
    match rec {
        Some(r) => println!(
            "recommended: --shards {} --batch-max {} — {}",
            r.shards, r.batch_max, r.reason
        ),
        None => println!("no recommendation: no point {measured_what}"),
    }
    println!(
        "wrote {}, {} and {}",
        files.path(TuneFiles::JSON).display(),
        files.path(TuneFiles::CSV).display(),
        files.path(TuneFiles::SVG).display()
    );
}

/// Server CPU per handshake (vote, block), µs; unknown (an external target) sorts last.
fn cpu_per_item<P: TunePoint>(p: &P) -> f64 {
    p.server_cpu_us().unwrap_or(f64::INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(shards: usize, batch_max: usize, rate: f64) -> BenchReport {
        let v = serde_json::json!({
            "shards": shards, "batch_max": batch_max, "duration_s": 8.0,
            "handshakes": (rate * 8.0) as u64, "handshakes_per_sec": rate,
            "failures": {}, "latency_p50_us": 100, "latency_p99_us": 900,
            "server_cpu_us_per_handshake": 50.0, "load_cpu_util": 0.5,
            "crypto_ceiling_per_sec": 20000.0, "efficiency": rate / (shards as f64 * 20000.0),
            "target": "127.0.0.1:1", "network": "dev", "connections": 256, "load_threads": 1,
            "hold": false, "verify_node": true, "failures_total": 0, "latency_max_us": 1000,
            "load_cpu_us_per_handshake": 20.0, "dials": 1, "distinct_source_ips": 1,
            "warnings": []
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn prefers_fewer_shards_within_five_percent() {
        let pts = vec![
            point(1, 1, 8000.0),
            point(1, 64, 12_000.0),
            point(2, 1, 9000.0),
            point(2, 64, 12_500.0),
        ];
        let r = recommend(&pts, 2).unwrap();
        assert_eq!((r.shards, r.batch_max), (1, 64));
        assert!(r.reason.contains("within 5 %"), "{}", r.reason);
        assert!(r.reason.contains("1.50× batch_max 1"), "{}", r.reason);
        assert!(r.reason.contains("leaves 1 of 2 core"), "{}", r.reason);
        // clearly faster with more shards: take it, and say the crawler shares a core
        let pts = vec![point(1, 64, 10_000.0), point(2, 64, 15_000.0)];
        let r = recommend(&pts, 2).unwrap();
        assert_eq!((r.shards, r.batch_max), (2, 64));
        assert!(r.reason.contains("highest"), "{}", r.reason);
        assert!(r.reason.contains("uses every core"), "{}", r.reason);
        assert!(recommend(&[point(1, 1, 0.0)], 2).is_none());
    }

    #[test]
    fn near_equal_rates_are_decided_by_server_cpu() {
        let mut pts = vec![
            point(1, 1, 12_000.0),
            point(1, 64, 11_700.0),
            point(1, 256, 10_000.0),
        ];
        pts[0].server_cpu_us_per_handshake = Some(70.0);
        pts[1].server_cpu_us_per_handshake = Some(62.0);
        pts[2].server_cpu_us_per_handshake = Some(55.0); // cheaper, but 17 % slower
        pts[0].load_cpu_util = 0.93;
        let r = recommend(&pts, 2).unwrap();
        assert_eq!((r.shards, r.batch_max), (1, 64));
        assert!(r.reason.contains("least server CPU"), "{}", r.reason);
        assert!(r.reason.contains("62.0 µs against 70.0 µs"), "{}", r.reason);
        assert!(
            r.reason.contains("load generator was saturated (93 % CPU)"),
            "{}",
            r.reason
        );
        // unknown CPU (external target) never wins a tie against a known one
        pts[1].server_cpu_us_per_handshake = None;
        let r = recommend(&pts, 2).unwrap();
        assert_eq!((r.shards, r.batch_max), (1, 1));
    }

    #[test]
    fn csv_has_one_row_per_point() {
        let pts = vec![
            point(1, 1, 8000.0),
            point(2, 1, 9000.0),
            point(1, 64, 12_000.0),
            point(2, 64, 12_500.0),
        ];
        let csv = to_csv(&pts);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], CSV_HEADER);
        let cols = CSV_HEADER.split(',').count();
        assert!(lines.iter().all(|l| l.split(',').count() == cols));
        assert!(lines[3].starts_with("1,64,12000.0,0.6000,"), "{}", lines[3]);
        // server CPU 50 µs per handshake: 20 000 per second of one core
        assert!(lines[3].contains(",50.00,20000,"), "{}", lines[3]);
        assert_eq!(csv_row(&pts[2]), lines[3]);
        let t = table(&pts);
        assert_eq!(t.lines().count(), 5);
    }
}
