//! Scraping `/metrics`: the hand-written exposition ([`render`]) against the
//! `prometheus-client` crate's Prometheus text encoder (format 0.0.4) writing the same
//! families from the same snapshot, through a collector — the form the node would need, since
//! its counters live in the shards and are copied at scrape time. The page is a realistic
//! one: 8 shards, every declared counter set to a non-zero value, thread health for 9
//! threads, the process figures and the build info (310 samples, 23 kB).
//!
//! `cargo bench --bench metrics`; the figures and the decision are in tuning.md
//! ("Metrics exposition: hand-written vs prometheus-client").

use std::fmt;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nanopeer::counters::{CounterSet, FAMILIES, Kind, Samples};
use nanopeer::io::Counters;
use nanopeer::node::{BatchMetrics, CrawlerThreadStats, QueueStats};
use nanopeer::ops::metrics::{Histogram, MetricsSnapshot, ThreadMetrics, parse_text, render};
use nanopeer::ops::process::{BuildInfo, ProcessMetrics};
use nanopeer::proto::stats::ShardStats;
use nanopeer::types::Network;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;

const SHARDS: usize = 8;

/// Sets every counter of `set` to a distinct, realistic-size value.
fn fill(set: &mut dyn CounterSet, seed: u64) {
    let mut i = seed;
    set.values_mut(&mut |v| {
        i = i.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        *v = (i >> 40) % 10_000_000;
    });
}

fn snapshot() -> MetricsSnapshot {
    let mut counters = Samples::default();
    let (mut proto, mut batch, mut queue, mut crawler) = (
        ShardStats::default(),
        BatchMetrics::default(),
        QueueStats::default(),
        CrawlerThreadStats::default(),
    );
    fill(&mut proto, 1);
    fill(&mut batch, 2);
    fill(&mut queue, 3);
    fill(&mut crawler, 4);
    counters.add_set(&proto, &[]);
    counters.add_set(&batch, &[]);
    counters.add_set(&queue, &[]);
    counters.add_set(&crawler, &[]);
    for shard in 0..SHARDS {
        let mut io = Counters::default();
        fill(&mut io, 10 + shard as u64);
        counters.add_set(&io, &[("shard", &shard.to_string())]);
    }
    let mut h = Histogram::batch_sizes();
    for v in 0..5000 {
        h.observe(f64::from(v % 300));
    }
    let mut threads: Vec<ThreadMetrics> = (0..SHARDS)
        .map(|i| ThreadMetrics {
            name: format!("shard-{i}"),
            alive: true,
            progress_age_seconds: 0.013 * i as f64,
            stalls: i as u64,
        })
        .collect();
    threads.push(ThreadMetrics {
        name: "crawler".into(),
        alive: true,
        progress_age_seconds: 0.05,
        stalls: 0,
    });
    MetricsSnapshot {
        counters,
        verify_batch_sizes: h,
        channels: 812,
        cookies: 17,
        uptime_seconds: 86_400,
        store_ok: true,
        threads,
        open_files_limit: 1_048_576,
        open_files_needed: 40_064,
        connection_cap_per_shard: 5000,
        process: ProcessMetrics {
            cpu_seconds: Some(12_345.67),
            resident_memory_bytes: Some(187_654_144),
            virtual_memory_bytes: Some(2_987_654_144),
            open_fds: Some(4021),
            max_fds: Some(1_048_576),
            start_time_seconds: Some(1_767_225_599.37),
        },
        build: Some(BuildInfo::current(Network::Live)),
    }
}

/// The same families through `prometheus-client`: a collector over the snapshot.
#[derive(Debug)]
struct SnapshotCollector(MetricsSnapshot);

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = &self.0;
        for f in FAMILIES {
            // the crate appends `_total` to counters itself
            let (name, kind) = match f.kind {
                Kind::Counter => (
                    f.name.strip_suffix("_total").unwrap_or(f.name),
                    MetricType::Counter,
                ),
                Kind::Gauge => (f.name, MetricType::Gauge),
            };
            let mut m = enc.encode_descriptor(name, f.help, None, kind)?;
            for t in s.counters.of(f.name) {
                let labels: Vec<(&str, &str)> = t
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let mut fm = m.encode_family(&labels)?;
                match f.kind {
                    Kind::Counter => ConstCounter::new(t.value).encode(fm)?,
                    Kind::Gauge => fm.encode_gauge(&t.value)?,
                }
            }
        }
        let h = &s.verify_batch_sizes;
        let buckets: Vec<(f64, u64)> = h
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(h.counts.iter().copied())
            .collect();
        enc.encode_descriptor(
            "nanopeer_verify_batch_size",
            "Signatures per verification batch.",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(h.sum, h.count(), &buckets, None)?;
        gauge(&mut enc, "nanopeer_channels", "Open channels.", s.channels)?;
        gauge(&mut enc, "nanopeer_cookies", "Syn cookies.", s.cookies)?;
        gauge(
            &mut enc,
            "nanopeer_peer_store_ok",
            "Store ok.",
            u64::from(s.store_ok),
        )?;
        gauge(
            &mut enc,
            "nanopeer_uptime_seconds",
            "Uptime.",
            s.uptime_seconds,
        )?;
        type Per = fn(&ThreadMetrics) -> f64;
        let per_thread: [(&str, &str, MetricType, Per); 3] = [
            ("nanopeer_thread_alive", "Alive.", MetricType::Gauge, |t| {
                f64::from(u8::from(t.alive))
            }),
            (
                "nanopeer_thread_progress_age_seconds",
                "Progress age.",
                MetricType::Gauge,
                |t| t.progress_age_seconds,
            ),
            (
                "nanopeer_thread_stalls",
                "Stalls.",
                MetricType::Counter,
                |t| t.stalls as f64,
            ),
        ];
        for (name, help, kind, value) in per_thread {
            let mut m = enc.encode_descriptor(name, help, None, kind)?;
            for t in &s.threads {
                let labels = [("thread", t.name.as_str())];
                let mut fm = m.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(value(t)).encode(fm)?,
                    _ => fm.encode_gauge(&value(t))?,
                }
            }
        }
        gauge(
            &mut enc,
            "nanopeer_open_files_limit",
            "Limit.",
            s.open_files_limit,
        )?;
        gauge(
            &mut enc,
            "nanopeer_open_files_needed",
            "Needed.",
            s.open_files_needed,
        )?;
        gauge(
            &mut enc,
            "nanopeer_shard_connection_cap",
            "Cap.",
            s.connection_cap_per_shard,
        )?;
        let p = &s.process;
        if let Some(v) = p.cpu_seconds {
            ConstCounter::new(v).encode(enc.encode_descriptor(
                "process_cpu_seconds",
                "CPU.",
                None,
                MetricType::Counter,
            )?)?;
        }
        for (name, v) in [
            ("process_open_fds", p.open_fds),
            ("process_max_fds", p.max_fds),
            ("process_virtual_memory_bytes", p.virtual_memory_bytes),
            ("process_resident_memory_bytes", p.resident_memory_bytes),
        ] {
            if let Some(v) = v {
                gauge(&mut enc, name, "Process.", v)?;
            }
        }
        if let Some(v) = p.start_time_seconds {
            gauge(&mut enc, "process_start_time_seconds", "Start.", v)?;
        }
        if let Some(b) = &s.build {
            enc.encode_descriptor("nanopeer_build", "Build.", None, MetricType::Info)?
                .encode_info(&b.labels())?;
        }
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let snap = snapshot();
    let hand = render(&snap);
    let samples = parse_text(&hand)
        .expect("the hand-written page parses")
        .len();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snap.clone())));
    let mut crate_page = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut crate_page, &registry).unwrap();
    let crate_samples = crate_page
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(crate_samples, samples, "both pages carry the same samples");
    eprintln!(
        "page: {samples} samples; hand-written {} bytes, prometheus-client {} bytes",
        hand.len(),
        crate_page.len()
    );
    let mut g = c.benchmark_group("metrics_scrape");
    g.throughput(Throughput::Elements(samples as u64));
    g.bench_function("hand_written_render", |b| {
        b.iter(|| black_box(render(black_box(&snap))))
    });
    g.bench_function("prometheus_client_encode", |b| {
        b.iter(|| {
            let mut out = String::with_capacity(crate_page.len());
            prometheus_client::encoding::prometheus_text::encode(&mut out, black_box(&registry))
                .unwrap();
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
