//! Prometheus text exposition (format 0.0.4) of a [`MetricsSnapshot`] the node fills.
//!
//! No registry: the node keeps its counters where they are cheap to update (per shard, per
//! thread) and copies them into a snapshot when `/metrics` is scraped; [`render`] writes the
//! families below. [`parse_text`] is a strict reader of what [`render`] writes, for tests.
//!
//! Families: every declared counter's family ([`crate::counters::FAMILIES`]: messages,
//! handshakes, failed verifications, admission, misbehaviour, per-shard I/O, …), then the
//! values that are not counters: `nanopeer_verify_batch_size` (histogram),
//! `nanopeer_channels`, `nanopeer_cookies`, `nanopeer_uptime_seconds`,
//! `nanopeer_peer_store_ok`, `nanopeer_thread_alive{thread}`,
//! `nanopeer_thread_progress_age_seconds{thread}`, `nanopeer_thread_stalls_total{thread}`,
//! `nanopeer_open_files_limit`, `nanopeer_open_files_needed`,
//! `nanopeer_shard_connection_cap`; then the process's figures under the Prometheus client
//! libraries' names (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`: [`ProcessMetrics`]) and
//! `nanopeer_build_info{version,crypto_backend,network,profile} 1` ([`BuildInfo`]).
//!
//! Hand-written rather than through the `prometheus-client` crate: measured faster on a
//! realistic page (`benches/metrics.rs`, tuning.md "Metrics exposition").

use std::fmt::Write;

use super::process::{BuildInfo, ProcessMetrics};
use crate::counters::{FAMILIES, Samples};

/// A histogram: per-bucket counts for upper bounds `bounds` plus `+Inf`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Upper bounds, increasing.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative); one more entry than `bounds` (`+Inf`).
    pub counts: Vec<u64>,
    /// Sum of all observations.
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram with these (increasing) upper bounds.
    pub fn with_bounds(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// The bounds used for verification batch sizes: powers of two up to 4096.
    pub fn batch_sizes() -> Histogram {
        let b: Vec<f64> = (0..=12).map(|i| f64::from(1u32 << i)).collect();
        Histogram::with_bounds(&b)
    }

    /// Records one observation.
    pub fn observe(&mut self, v: f64) {
        if self.counts.len() != self.bounds.len() + 1 {
            self.counts.resize(self.bounds.len() + 1, 0);
        }
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
    }

    /// Total observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One node thread's health (a shard or the crawler).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThreadMetrics {
    /// The thread's name (`shard-0`, `crawler`).
    pub name: String,
    /// Whether it still runs.
    pub alive: bool,
    /// Seconds since it last made progress (a loop turn, or waiting idle for work).
    pub progress_age_seconds: f64,
    /// Stalls the watchdog has reported.
    pub stalls: u64,
}

/// Everything `/metrics` shows, copied from the node at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// The samples of the declared counters (per shard for the I/O counters).
    pub counters: Samples,
    /// Sizes of the signature batches verified.
    pub verify_batch_sizes: Histogram,
    /// Open channels (completed handshakes).
    pub channels: u64,
    /// Outstanding syn cookies.
    pub cookies: u64,
    /// Seconds since the node started.
    pub uptime_seconds: u64,
    /// Whether the last peer-store write succeeded (false: peering goes on without persistence).
    pub store_ok: bool,
    /// Each node thread's health.
    pub threads: Vec<ThreadMetrics>,
    /// The soft open-file limit in force.
    pub open_files_limit: u64,
    /// Descriptors the connection caps in force need (shards, their connections, reserve).
    pub open_files_needed: u64,
    /// Connection slots per shard in force (lowered from the configured cap if the open-file
    /// limit is short).
    pub connection_cap_per_shard: u64,
    /// The process's figures (`process_*`); each absent one is left out.
    pub process: ProcessMetrics,
    /// `nanopeer_build_info`; left out when `None`.
    pub build: Option<BuildInfo>,
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        self.0.push_str("# HELP ");
        self.0.push_str(name);
        self.0.push(' ');
        self.escaped(help, false);
        self.0.push_str("\n# TYPE ");
        self.0.push_str(name);
        self.0.push(' ');
        self.0.push_str(kind);
        self.0.push('\n');
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.labelled(name, labels.iter().copied());
        self.0.push_str(value);
        self.0.push('\n');
    }

    /// `name{k="v",…} ` (no braces without labels), label values escaped.
    fn labelled<'a>(&mut self, name: &str, labels: impl Iterator<Item = (&'a str, &'a str)>) {
        self.0.push_str(name);
        let mut first = true;
        for (k, v) in labels {
            self.0.push(if first { '{' } else { ',' });
            first = false;
            self.0.push_str(k);
            self.0.push_str("=\"");
            self.escaped(v, true);
            self.0.push('"');
        }
        if !first {
            self.0.push('}');
        }
        self.0.push(' ');
    }

    /// Appends `s` with `\\` and newlines escaped, and `"` too in a label value.
    fn escaped(&mut self, s: &str, label: bool) {
        if !s.contains(['\\', '\n', '"']) {
            self.0.push_str(s);
            return;
        }
        for c in s.chars() {
            match c {
                '\\' => self.0.push_str("\\\\"),
                '\n' => self.0.push_str("\\n"),
                '"' if label => self.0.push_str("\\\""),
                c => self.0.push(c),
            }
        }
    }
}

fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

/// Writes the snapshot in the Prometheus text format (version 0.0.4).
pub fn render(s: &MetricsSnapshot) -> String {
    let mut o = Out(String::with_capacity(8192));

    for f in FAMILIES {
        o.family(f.name, f.help, f.kind.as_str());
        for t in s.counters.of(f.name) {
            o.labelled(
                f.name,
                t.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            let _ = writeln!(o.0, "{}", t.value);
        }
    }

    let h = &s.verify_batch_sizes;
    o.family(
        "nanopeer_verify_batch_size",
        "Signatures per verification batch.",
        "histogram",
    );
    let mut cum = 0u64;
    for (i, b) in h.bounds.iter().enumerate() {
        cum += h.counts.get(i).copied().unwrap_or(0);
        o.sample(
            "nanopeer_verify_batch_size_bucket",
            &[("le", &float(*b))],
            &cum.to_string(),
        );
    }
    let total = h.count();
    o.sample(
        "nanopeer_verify_batch_size_bucket",
        &[("le", "+Inf")],
        &total.to_string(),
    );
    o.sample("nanopeer_verify_batch_size_sum", &[], &float(h.sum));
    o.sample("nanopeer_verify_batch_size_count", &[], &total.to_string());

    o.family(
        "nanopeer_channels",
        "Open channels (handshake completed).",
        "gauge",
    );
    o.sample("nanopeer_channels", &[], &s.channels.to_string());
    o.family(
        "nanopeer_cookies",
        "Outstanding handshake syn cookies.",
        "gauge",
    );
    o.sample("nanopeer_cookies", &[], &s.cookies.to_string());
    o.family(
        "nanopeer_peer_store_ok",
        "1 while peer-store writes succeed; 0 after a failed write (peering goes on without persistence).",
        "gauge",
    );
    o.sample(
        "nanopeer_peer_store_ok",
        &[],
        if s.store_ok { "1" } else { "0" },
    );
    o.family(
        "nanopeer_uptime_seconds",
        "Seconds since the node started.",
        "gauge",
    );
    o.sample(
        "nanopeer_uptime_seconds",
        &[],
        &s.uptime_seconds.to_string(),
    );

    o.family(
        "nanopeer_thread_alive",
        "1 while the thread runs, 0 once it has ended (a dead shard or crawler: restart the node).",
        "gauge",
    );
    for t in &s.threads {
        o.sample(
            "nanopeer_thread_alive",
            &[("thread", &t.name)],
            if t.alive { "1" } else { "0" },
        );
    }
    o.family(
        "nanopeer_thread_progress_age_seconds",
        "Seconds since the thread last made progress (a loop turn, or waiting idle for work).",
        "gauge",
    );
    for t in &s.threads {
        o.sample(
            "nanopeer_thread_progress_age_seconds",
            &[("thread", &t.name)],
            &float(t.progress_age_seconds),
        );
    }
    o.family(
        "nanopeer_thread_stalls_total",
        "Times the watchdog found the thread without progress while it had work.",
        "counter",
    );
    for t in &s.threads {
        o.sample(
            "nanopeer_thread_stalls_total",
            &[("thread", &t.name)],
            &t.stalls.to_string(),
        );
    }
    o.family(
        "nanopeer_open_files_limit",
        "The soft open-file limit (RLIMIT_NOFILE) in force.",
        "gauge",
    );
    o.sample(
        "nanopeer_open_files_limit",
        &[],
        &s.open_files_limit.to_string(),
    );
    o.family(
        "nanopeer_open_files_needed",
        "Descriptors the connection caps in force need (shards × (cap + 3) + reserve).",
        "gauge",
    );
    o.sample(
        "nanopeer_open_files_needed",
        &[],
        &s.open_files_needed.to_string(),
    );
    o.family(
        "nanopeer_shard_connection_cap",
        "Connection slots per shard in force (lowered at start if the open-file limit is short).",
        "gauge",
    );
    o.sample(
        "nanopeer_shard_connection_cap",
        &[],
        &s.connection_cap_per_shard.to_string(),
    );
    render_process(&mut o, &s.process);
    if let Some(b) = &s.build {
        o.family(
            "nanopeer_build_info",
            "Build and run-time facts (version, crypto backend in use, network, profile); always 1.",
            "gauge",
        );
        o.sample("nanopeer_build_info", &b.labels(), "1");
    }
    o.0
}

/// The `process_*` families, in the Prometheus client libraries' names and help texts.
fn render_process(o: &mut Out, p: &ProcessMetrics) {
    let int = |v: Option<u64>| v.map(|v| v.to_string());
    let families: [(&str, &str, &str, Option<String>); 6] = [
        (
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            p.cpu_seconds.map(float),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            int(p.open_fds),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            "gauge",
            int(p.max_fds),
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            "gauge",
            int(p.virtual_memory_bytes),
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            int(p.resident_memory_bytes),
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
            p.start_time_seconds.map(float),
        ),
    ];
    for (name, help, kind, value) in families {
        if let Some(v) = value {
            o.family(name, help, kind);
            o.sample(name, &[], &v);
        }
    }
}

/// One sample read back by [`parse_text`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample name (with `_bucket`/`_sum`/`_count` for histograms).
    pub name: String,
    /// Labels in order, unescaped.
    pub labels: Vec<(String, String)>,
    /// The value text parsed as `f64` (`+Inf`, `-Inf` and `NaN` included); never negative
    /// for a counter family.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, or `None` when the sample has no such label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A sample expected in rendered text: its name, labels it must carry (it may carry more),
/// and its value.
pub type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// The value of the first of `samples` named `name` that carries every label of `labels`.
pub fn sample_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
}

/// Panics, naming the first miss, unless every expected sample is in `samples` with its value
/// (for tests of what [`render`] writes).
pub fn assert_samples(samples: &[Sample], expected: &[Expected<'_>]) {
    for (name, labels, want) in expected {
        assert_eq!(
            sample_value(samples, name, labels),
            Some(*want),
            "{name} {labels:?}"
        );
    }
}

/// Reads the text format strictly: every line is `# HELP`, `# TYPE` or a sample; every sample
/// belongs to the family declared by the last `# TYPE` (histogram samples by suffix); a family
/// is declared once; label values are unescaped; histogram buckets are cumulative and end with
/// `+Inf` equal to `_count`.
pub fn parse_text(text: &str) -> Result<Vec<Sample>, String> {
    use std::collections::HashSet;
    let mut out = Vec::new();
    let mut declared = HashSet::new();
    let mut current: Option<(String, String)> = None;
    let mut last_bucket: Option<f64> = None;
    let mut inf_bucket: Option<f64> = None;
    for (no, line) in text.lines().enumerate() {
        let no = no + 1;
        let err = |m: &str| format!("line {no}: {m}: {line:?}");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if !valid_name(name) {
                return Err(err("bad HELP name"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            if !valid_name(name) || it.next().is_some() {
                return Err(err("bad TYPE line"));
            }
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(err("bad metric type"));
            }
            if !declared.insert(name.to_string()) {
                return Err(err("family declared twice"));
            }
            current = Some((name.to_string(), kind.to_string()));
            last_bucket = None;
            inf_bucket = None;
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(err("unexpected comment or blank line"));
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| err("no value"))?;
        let name = &line[..name_end];
        if !valid_name(name) {
            return Err(err("bad sample name"));
        }
        let (family, kind) = current.clone().ok_or_else(|| err("sample before TYPE"))?;
        let belongs = if kind == "histogram" {
            ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name.strip_suffix(s) == Some(family.as_str()))
        } else {
            name == family
        };
        if !belongs {
            return Err(err("sample outside its family"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut r = r;
            loop {
                if let Some(after) = r.strip_prefix('}') {
                    r = after;
                    break;
                }
                let eq = r.find('=').ok_or_else(|| err("label without ="))?;
                let key = &r[..eq];
                if !valid_name(key) || key.contains(':') {
                    return Err(err("bad label name"));
                }
                let mut chars = r[eq + 1..].char_indices();
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(err("label value not quoted"));
                }
                let mut val = String::new();
                let mut end = None;
                let mut esc = false;
                for (i, c) in chars {
                    if esc {
                        val.push(match c {
                            'n' => '\n',
                            '\\' => '\\',
                            '"' => '"',
                            _ => return Err(err("bad escape")),
                        });
                        esc = false;
                    } else if c == '\\' {
                        esc = true;
                    } else if c == '"' {
                        end = Some(eq + 1 + i + 1);
                        break;
                    } else {
                        val.push(c);
                    }
                }
                let end = end.ok_or_else(|| err("unterminated label value"))?;
                labels.push((key.to_string(), val));
                r = &r[end..];
                if let Some(after) = r.strip_prefix(',') {
                    r = after;
                }
            }
            rest = r;
        }
        let value_text = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before value"))?;
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            t => t.parse::<f64>().map_err(|_| err("bad value"))?,
        };
        if kind == "counter" && value < 0.0 {
            return Err(err("negative counter"));
        }
        if name.ends_with("_bucket") && kind == "histogram" {
            let le = labels
                .iter()
                .find(|(k, _)| k == "le")
                .ok_or_else(|| err("bucket without le"))?;
            if let Some(prev) = last_bucket
                && value < prev
            {
                return Err(err("buckets not cumulative"));
            }
            last_bucket = Some(value);
            if le.1 == "+Inf" {
                inf_bucket = Some(value);
            }
        }
        if name.ends_with("_count") && kind == "histogram" && inf_bucket != Some(value) {
            return Err(err("_count differs from the +Inf bucket"));
        }
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> MetricsSnapshot {
        let mut h = Histogram::batch_sizes();
        for v in [1.0, 3.0, 64.0, 64.0, 5000.0] {
            h.observe(v);
        }
        // What the node's counter sets give: here one set standing in for them all.
        crate::counter_set! {
            /// Stand-ins for the node's counters.
            struct Fake {
                groups {}
                /// A message type.
                keepalive_in @ "nanopeer_messages_total" ("direction" = "in", "type" = "keepalive"),
                /// Another.
                confirm_ack_in @ "nanopeer_messages_total" ("direction" = "in", "type" = "confirm_ack"),
                /// A handshake outcome.
                ok @ "nanopeer_handshakes_total" ("outcome" = "ok"),
                /// A label that needs escaping.
                weird @ "nanopeer_handshakes_total" ("outcome" = "weird \"reason\"\\\nx"),
                /// A store error.
                store_errors @ "nanopeer_peer_store_errors_total",
                /// The batch cap.
                cap @ "nanopeer_verify_batch_cap",
                /// Its shrinks.
                shrinks @ "nanopeer_verify_batch_cap_shrinks_total",
                /// A refusal.
                max_per_ip @ "nanopeer_inbound_rejected_total" ("reason" = "max_per_ip"),
                /// An eviction.
                evicted @ "nanopeer_inbound_rejected_total" ("reason" = "evicted"),
                /// A cut.
                invalid_signatures @ "nanopeer_misbehaviour_total" ("cause" = "invalid_signatures"),
                /// Per-shard: ring exhausted.
                ring @ "nanopeer_buffer_ring_exhausted_total",
                /// Per-shard: open connections.
                live @ "nanopeer_shard_live_connections",
                /// Per-shard: closed by the peer.
                closed_peer @ "nanopeer_shard_closed_total" ("reason" = "peer"),
            }
        }
        let mut counters = Samples::default();
        counters.add_set(
            &Fake {
                keepalive_in: 7,
                confirm_ack_in: 9,
                ok: 2,
                weird: 1,
                store_errors: 5,
                cap: 16,
                shrinks: 2,
                max_per_ip: 6,
                evicted: 2,
                invalid_signatures: 1,
                ..Fake::default()
            },
            &[],
        );
        counters.add_set(
            &Fake {
                ring: 3,
                live: 4,
                closed_peer: 2,
                ..Fake::default()
            },
            &[("shard", "0")],
        );
        MetricsSnapshot {
            counters,
            verify_batch_sizes: h,
            channels: 3,
            cookies: 4,
            uptime_seconds: 12,
            store_ok: false,
            threads: vec![
                ThreadMetrics {
                    name: "shard-0".into(),
                    alive: false,
                    progress_age_seconds: 7.5,
                    stalls: 1,
                },
                ThreadMetrics {
                    name: "crawler".into(),
                    alive: true,
                    progress_age_seconds: 0.0,
                    stalls: 0,
                },
            ],
            open_files_limit: 1024,
            open_files_needed: 1024,
            connection_cap_per_shard: 477,
            process: ProcessMetrics {
                cpu_seconds: Some(1.25),
                resident_memory_bytes: Some(4096),
                virtual_memory_bytes: Some(8192),
                open_fds: Some(12),
                max_fds: None,
                start_time_seconds: Some(1_700_000_000.5),
            },
            build: Some(BuildInfo {
                version: "0.1.0".into(),
                crypto_backend: "avx2".into(),
                network: "dev".into(),
                profile: "debug".into(),
            }),
        }
    }

    #[test]
    fn output_parses_line_by_line_with_expected_values() {
        let text = render(&snapshot());
        let samples = parse_text(&text).unwrap();
        for (name, v) in [
            ("nanopeer_peer_store_ok", 0.0),
            ("nanopeer_peer_store_errors_total", 5.0),
            ("nanopeer_verify_batch_cap", 16.0),
            ("nanopeer_verify_batch_cap_shrinks_total", 2.0),
            ("nanopeer_open_files_limit", 1024.0),
            ("nanopeer_open_files_needed", 1024.0),
            ("nanopeer_shard_connection_cap", 477.0),
        ] {
            assert_eq!(
                samples.iter().find(|s| s.name == name).map(|s| s.value),
                Some(v),
                "{name}"
            );
        }
        assert_samples(
            &samples,
            &[
                (
                    "nanopeer_messages_total",
                    &[("direction", "in"), ("type", "confirm_ack")],
                    9.0,
                ),
                (
                    "nanopeer_inbound_rejected_total",
                    &[("reason", "max_per_ip")],
                    6.0,
                ),
                (
                    "nanopeer_inbound_rejected_total",
                    &[("reason", "evicted")],
                    2.0,
                ),
                (
                    "nanopeer_misbehaviour_total",
                    &[("cause", "invalid_signatures")],
                    1.0,
                ),
                (
                    "nanopeer_handshakes_total",
                    &[("outcome", "weird \"reason\"\\\nx")],
                    1.0,
                ),
                ("nanopeer_verify_batch_size_bucket", &[("le", "4")], 2.0),
                ("nanopeer_verify_batch_size_bucket", &[("le", "64")], 4.0),
                ("nanopeer_verify_batch_size_bucket", &[("le", "+Inf")], 5.0),
                ("nanopeer_verify_batch_size_sum", &[], 5132.0),
                (
                    "nanopeer_buffer_ring_exhausted_total",
                    &[("shard", "0")],
                    3.0,
                ),
                ("nanopeer_shard_live_connections", &[("shard", "0")], 4.0),
                (
                    "nanopeer_shard_closed_total",
                    &[("shard", "0"), ("reason", "peer")],
                    2.0,
                ),
                ("nanopeer_cookies", &[], 4.0),
                ("nanopeer_thread_alive", &[("thread", "shard-0")], 0.0),
                ("nanopeer_thread_alive", &[("thread", "crawler")], 1.0),
                (
                    "nanopeer_thread_progress_age_seconds",
                    &[("thread", "shard-0")],
                    7.5,
                ),
                (
                    "nanopeer_thread_stalls_total",
                    &[("thread", "shard-0")],
                    1.0,
                ),
                ("process_cpu_seconds_total", &[], 1.25),
                ("process_resident_memory_bytes", &[], 4096.0),
                ("process_virtual_memory_bytes", &[], 8192.0),
                ("process_open_fds", &[], 12.0),
                ("process_start_time_seconds", &[], 1_700_000_000.5),
                (
                    "nanopeer_build_info",
                    &[
                        ("version", "0.1.0"),
                        ("crypto_backend", "avx2"),
                        ("network", "dev"),
                        ("profile", "debug"),
                    ],
                    1.0,
                ),
            ],
        );
        // an unreadable figure is left out, not shown as 0
        assert!(!text.contains("process_max_fds"), "{text}");
    }

    #[test]
    fn parser_rejects_malformed_lines() {
        assert!(parse_text("x 1\n").is_err(), "sample before TYPE");
        assert!(parse_text("# TYPE x counter\nx{a=\"b} 1\n").is_err());
        assert!(parse_text("# TYPE x counter\nx{a=b} 1\n").is_err());
        assert!(parse_text("# TYPE x counter\ny 1\n").is_err());
        assert!(parse_text("# TYPE x counter\nx -1\n").is_err());
        assert!(parse_text("# TYPE x counter\n# TYPE x counter\n").is_err());
        assert!(
            parse_text("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n")
                .is_err()
        );
        assert!(parse_text("# TYPE x gauge\nx{a=\"\\\"q\\\\\"} 1.5\n").is_ok());
    }

    #[test]
    fn empty_snapshot_is_valid() {
        parse_text(&render(&MetricsSnapshot::default())).unwrap();
    }
}
