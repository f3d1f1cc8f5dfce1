//! The bench report: one JSON object (the last line of stdout with `--json`), a table for the
//! terminal, and the live progress bar.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::loadgen::{LoadReport, SATURATION_WARN, Snapshot};

/// The result of `nanopeer bench`. The first twelve fields are the contract; the rest
/// describe the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Node shards (cores) serving the load.
    pub shards: usize,
    /// The node's verification batch size.
    pub batch_max: usize,
    /// Measured load duration, seconds.
    pub duration_s: f64,
    /// Completed handshakes.
    pub handshakes: u64,
    /// Completed handshakes per second.
    pub handshakes_per_sec: f64,
    /// Failures by reason (every reason listed, zeros included).
    pub failures: BTreeMap<String, u64>,
    /// Median handshake latency (dial to completion), µs.
    pub latency_p50_us: u64,
    /// 99th percentile handshake latency, µs.
    pub latency_p99_us: u64,
    /// Node CPU per handshake, µs; `null` when the node is not in this process.
    pub server_cpu_us_per_handshake: Option<f64>,
    /// Load threads' CPU time / (load threads × wall time).
    pub load_cpu_util: f64,
    /// One core's handshake rate on crypto alone (sign + batch-verify of a fresh key).
    pub crypto_ceiling_per_sec: f64,
    /// `handshakes_per_sec / (shards × crypto_ceiling_per_sec)`.
    pub efficiency: f64,
    /// The node driven.
    pub target: String,
    /// The network's name (`live`, `dev`, …), as
    /// [`Network::name`](crate::types::Network::name) gives it.
    pub network: String,
    /// Concurrent handshakes of the load generator.
    pub connections: usize,
    /// Load generator threads, one io_uring each.
    pub load_threads: usize,
    /// Whether channels were held open.
    pub hold: bool,
    /// Whether the node's signatures were verified by the load generator.
    pub verify_node: bool,
    /// Failures, all reasons.
    pub failures_total: u64,
    /// Largest handshake latency, µs.
    pub latency_max_us: u64,
    /// Load CPU per handshake, µs.
    pub load_cpu_us_per_handshake: f64,
    /// Dials started.
    pub dials: u64,
    /// Distinct source addresses used.
    pub distinct_source_ips: u64,
    /// Things that make the figures doubtful (e.g. a saturated load generator).
    pub warnings: Vec<String>,
    /// The curve25519 backend of this process ([`crate::crypto::backend_name`]): the
    /// in-process node's, the load generator's and the ceiling's.
    #[serde(default)]
    pub crypto_backend: String,
}

/// `rate / (shards × ceiling)`, 0 when the denominator is not positive.
pub fn efficiency(handshakes_per_sec: f64, shards: usize, crypto_ceiling_per_sec: f64) -> f64 {
    let denom = shards as f64 * crypto_ceiling_per_sec;
    if denom > 0.0 {
        handshakes_per_sec / denom
    } else {
        0.0
    }
}

/// Rows as an aligned two-column table, then one `warning:` line per warning.
pub fn two_columns(rows: &[(String, String)], warnings: &[String]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{k:<width$}  {v}");
    }
    for w in warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

impl BenchReport {
    /// The report of a load run against a node with `shards` shards and `batch_max`.
    /// `server_cpu` is the node's CPU time during the run (process or shard threads), when the
    /// node runs in this process; `crypto_ceiling_per_sec` comes from
    /// [`crypto_ceiling_per_sec`](super::crypto_ceiling_per_sec).
    pub fn new(
        load: &LoadReport,
        shards: usize,
        batch_max: usize,
        crypto_ceiling_per_sec: f64,
        server_cpu: Option<Duration>,
    ) -> BenchReport {
        let failures = load
            .failures
            .iter()
            .map(|(f, n)| (f.as_str().to_owned(), *n))
            .collect();
        let failures_total = load.failures_total();
        let server_cpu_us_per_handshake = server_cpu
            .filter(|_| load.handshakes > 0)
            .map(|cpu| cpu.as_secs_f64() * 1e6 / load.handshakes as f64);
        let mut warnings = Vec::new();
        if load.load_saturated() {
            warnings.push(format!(
                "load generator saturated: its threads were {:.0} % busy (≥ {:.0} %), so it may \
                 have limited the rate; add --load-threads or use --no-verify-node",
                load.load_cpu_util * 100.0,
                SATURATION_WARN * 100.0
            ));
        }
        if load.handshakes == 0 {
            warnings.push("no handshake completed".to_owned());
        } else if failures_total * 100 > load.handshakes {
            warnings.push(format!(
                "{failures_total} failures for {} handshakes (> 1 %)",
                load.handshakes
            ));
        }
        BenchReport {
            shards,
            batch_max,
            duration_s: load.wall.as_secs_f64(),
            handshakes: load.handshakes,
            handshakes_per_sec: load.handshakes_per_sec,
            failures,
            latency_p50_us: load.latency.quantile(0.50),
            latency_p99_us: load.latency.quantile(0.99),
            server_cpu_us_per_handshake,
            load_cpu_util: load.load_cpu_util,
            crypto_ceiling_per_sec,
            efficiency: efficiency(load.handshakes_per_sec, shards, crypto_ceiling_per_sec),
            target: load.target.to_string(),
            network: load.network.name().to_owned(),
            connections: load.connections,
            load_threads: load.threads,
            hold: load.hold,
            verify_node: load.verify_node,
            failures_total,
            latency_max_us: load.latency.max(),
            load_cpu_us_per_handshake: load.load_cpu_us_per_handshake(),
            dials: load.dials,
            distinct_source_ips: load.distinct_source_ips,
            warnings,
            crypto_backend: crate::crypto::backend_name().to_owned(),
        }
    }

    /// The report as one line of JSON.
    pub fn to_json_line(&self) -> String {
        // Serializing plain fields and a string map cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The report as an aligned two-column table (one row per figure, failures indented,
    /// warnings last).
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![
            (
                "target".into(),
                format!("{} ({})", self.target, self.network),
            ),
            ("shards".into(), self.shards.to_string()),
            ("batch_max".into(), self.batch_max.to_string()),
            (
                "load".into(),
                format!(
                    "{} connections on {} thread(s){}{}",
                    self.connections,
                    self.load_threads,
                    if self.hold { ", hold" } else { "" },
                    if self.verify_node {
                        ""
                    } else {
                        ", no-verify-node"
                    }
                ),
            ),
            ("duration".into(), format!("{:.2} s", self.duration_s)),
            ("handshakes".into(), self.handshakes.to_string()),
            (
                "handshakes/s".into(),
                format!("{:.0}", self.handshakes_per_sec),
            ),
            ("failures".into(), self.failures_total.to_string()),
        ];
        for (reason, n) in self.failures.iter().filter(|(_, n)| **n > 0) {
            rows.push((format!("  {reason}"), n.to_string()));
        }
        rows.extend([
            (
                "latency p50 / p99 / max".into(),
                format!(
                    "{} / {} / {} µs",
                    self.latency_p50_us, self.latency_p99_us, self.latency_max_us
                ),
            ),
            (
                "server CPU / handshake".into(),
                self.server_cpu_us_per_handshake
                    .map_or("n/a".into(), |v| format!("{v:.1} µs")),
            ),
            (
                "load CPU / handshake".into(),
                format!("{:.1} µs", self.load_cpu_us_per_handshake),
            ),
            (
                "load CPU use".into(),
                format!("{:.0} %", self.load_cpu_util * 100.0),
            ),
            (
                "crypto ceiling (1 core)".into(),
                format!("{:.0} handshakes/s", self.crypto_ceiling_per_sec),
            ),
            ("crypto backend".into(), self.crypto_backend.clone()),
            (
                "efficiency".into(),
                format!("{:.1} %", self.efficiency * 100.0),
            ),
            (
                "source addresses".into(),
                self.distinct_source_ips.to_string(),
            ),
        ]);
        two_columns(&rows, &self.warnings)
    }

    /// Prints the table to stdout, then (with `json`) the JSON object as the last line.
    pub fn print(&self, json: bool) {
        print!("{}", self.table());
        if json {
            println!("{}", self.to_json_line());
        }
    }
}

/// The live progress line: a bar over the duration with handshakes/s, failures and load CPU.
/// Drawn (on stderr) only when stdout is a terminal; otherwise every call does nothing.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A progress bar for a run of `duration`, shown when stdout is a terminal.
    pub fn new(duration: Duration) -> Progress {
        if std::io::stdout().is_terminal() {
            Progress::shown(duration)
        } else {
            Progress::hidden()
        }
    }

    /// A progress bar drawn on stderr regardless of the terminal.
    pub fn shown(duration: Duration) -> Progress {
        let bar = ProgressBar::with_draw_target(
            Some(duration.as_millis() as u64),
            ProgressDrawTarget::stderr_with_hz(5),
        );
        if let Ok(style) = ProgressStyle::with_template("{bar:30.cyan/blue} {elapsed:>4} / {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress { bar: Some(bar) }
    }

    /// A progress that shows nothing.
    pub fn hidden() -> Progress {
        Progress { bar: None }
    }

    /// Shows a snapshot.
    pub fn update(&self, s: &Snapshot) {
        if let Some(bar) = &self.bar {
            bar.set_position(s.elapsed.as_millis() as u64);
            bar.set_message(Progress::message(s));
        }
    }

    /// Shows `elapsed` of the run and a message (for runs that are not handshake loads).
    pub fn show(&self, elapsed: Duration, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_position(elapsed.as_millis() as u64);
            bar.set_message(msg.to_owned());
        }
    }

    /// The text shown for a snapshot.
    pub fn message(s: &Snapshot) -> String {
        format!(
            "{:.0} s  {:.0} handshakes/s  {} done  {} failed  load CPU {:.0} %",
            s.duration.as_secs_f64(),
            s.rate_per_sec,
            s.handshakes,
            s.failures,
            s.load_cpu_util * 100.0
        )
    }

    /// Removes the bar (before the table is printed).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::hist::LatencyHistogram;
    use crate::bench::loadgen::Failure;
    use crate::types::Network;

    fn load(handshakes: u64, util: f64) -> LoadReport {
        let mut latency = LatencyHistogram::new();
        for v in 0..handshakes {
            latency.record(100 + v % 50);
        }
        LoadReport {
            target: "127.0.0.1:44000".parse().unwrap(),
            network: Network::Dev,
            connections: 8,
            threads: 1,
            hold: false,
            verify_node: true,
            wall: Duration::from_secs(2),
            handshakes,
            handshakes_per_sec: handshakes as f64 / 2.0,
            failures: Failure::ALL
                .iter()
                .map(|&f| (f, u64::from(f == Failure::Timeout) * 3))
                .collect(),
            latency,
            dials: handshakes + 3,
            distinct_source_ips: 100,
            held: 0,
            thread_ids: vec![1],
            load_cpu: Duration::from_secs_f64(2.0 * util),
            load_cpu_util: util,
        }
    }

    #[test]
    fn json_has_the_contract_fields_and_efficiency() {
        let r = BenchReport::new(
            &load(1000, 0.5),
            2,
            64,
            1000.0,
            Some(Duration::from_secs(1)),
        );
        assert_eq!(r.efficiency, 500.0 / 2000.0);
        assert_eq!(r.server_cpu_us_per_handshake, Some(1000.0));
        let v: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
        for key in [
            "shards",
            "batch_max",
            "duration_s",
            "handshakes",
            "handshakes_per_sec",
            "failures",
            "latency_p50_us",
            "latency_p99_us",
            "server_cpu_us_per_handshake",
            "load_cpu_util",
            "crypto_ceiling_per_sec",
            "efficiency",
            "crypto_backend",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["failures"]["timeout"], 3);
        assert_eq!(v["failures"].as_object().unwrap().len(), Failure::ALL.len());
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let back: BenchReport = serde_json::from_str(&r.to_json_line()).unwrap();
        assert_eq!(back, r);
        assert!(!r.to_json_line().contains('\n'));
        assert_eq!(v["crypto_backend"], crate::crypto::backend_name());
        let table = r.table();
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("crypto backend ")
                    && l.ends_with(crate::crypto::backend_name())),
            "{table}"
        );
    }

    #[test]
    fn warns_when_saturated_and_table_lists_failures() {
        let r = BenchReport::new(&load(10, 0.95), 1, 64, 0.0, None);
        assert_eq!(r.efficiency, 0.0);
        assert_eq!(r.server_cpu_us_per_handshake, None);
        assert!(r.warnings.iter().any(|w| w.contains("saturated")));
        assert!(r.warnings.iter().any(|w| w.contains("failures")));
        let t = r.table();
        assert!(t.contains("  timeout"), "{t}");
        assert!(t.contains("warning: load generator saturated"), "{t}");
        assert!(t.contains("n/a"));
    }
}
