//! Hostile traffic against a node (`nanopeer bench --attack KIND`), run alongside an honest
//! load, and a soak sampler of the process's memory and descriptors.
//!
//! [`run_attack`] opens the attack connections on an io_uring thread of its own (the
//! [`crate::io`] runtime, like the load generator), each from its own 127.x.y.z source address,
//! while [`crate::bench::loadgen`] drives honest handshakes; it samples the process (RSS, open
//! descriptors) and, given the [`Node`], its connections and counters. Kinds:
//!
//! - `bad-sig:PCT`: PCT % of the simulated peers answer the handshake with a wrong signature
//!   (signed by the right key over another cookie, so only the full equation rejects it).
//! - `silent`: connect and never send a byte.
//! - `query-only`: send a handshake query, never answer the node's query (cookie exhaustion).
//! - `drip`: send a valid query one byte per `drip_interval`.
//! - `garbage`: random bytes, truncated headers, invalid types, another network, an old
//!   version, a handshake with no flags, two queries, a message before the handshake.
//! - `poison`: complete a handshake, then send keepalives advertising reserved, unspecified,
//!   the node's own and thousands of bogus (loopback, unused) addresses.
//! - `slot-flood:ip|subnet|many` and `vote-flood`: floods against the node's connection cap
//!   and its signature checks, each measured against a clean phase in the same run
//!   ([`flood`]).
//!
//! Connections the node cuts are reopened while the attack runs, so `connections` stay open
//! or in flight.
//!
//! Layout: `kind.rs` ([`AttackKind`] and its text form), `config.rs` ([`AttackConfig`]),
//! `error.rs` ([`AttackError`]), `report.rs` ([`AttackReport`]), `hostile.rs` (the attack
//! thread of the connection attacks), `payload.rs` (what `garbage` and `poison` send),
//! `soak.rs` (the process sampler and [`run_soak`]), [`flood`] (`slot-flood`, `vote-flood`);
//! [`run_attack`], here, runs any kind.

mod config;
mod error;
pub mod flood;
mod hostile;
mod kind;
mod payload;
mod report;
mod soak;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use config::AttackConfig;
pub use error::AttackError;
pub use kind::AttackKind;
pub use payload::GARBAGE_VARIANTS;
pub use report::AttackReport;
pub use soak::{SoakSample, process_fds, process_rss_kb, run_soak, sample, soak_growth};

use crate::bench::loadgen::{self, LoadConfig};
use crate::node::Node;
use hostile::{AttackShared, Command};

/// Gives the node's shards time to publish their counters (every 100 ms) before the final read.
fn settle(node: Option<&Node>) {
    if node.is_some() {
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs `cfg.kind` against `cfg.target` alongside the honest load, sampling the process (and
/// `node`, when the node runs in this process) every `sample_interval`. Blocks for about
/// `cfg.duration`.
pub fn run_attack(cfg: &AttackConfig, node: Option<&Node>) -> Result<AttackReport, AttackError> {
    if cfg.duration.is_zero() {
        return Err(AttackError::Config("duration must be positive"));
    }
    if matches!(cfg.kind, AttackKind::SlotFlood(_) | AttackKind::VoteFlood) {
        return flood::run_flood(cfg, node);
    }
    let start = Instant::now();
    let node_before = node.map(|n| n.stats());
    let mut samples = vec![sample(start, node)];
    let interval = cfg.sample_interval.max(Duration::from_millis(10));
    let mut next = start + interval;
    let mut sampler = |samples: &mut Vec<SoakSample>| {
        let now = Instant::now();
        if now >= next {
            next = now + interval;
            samples.push(sample(start, node));
        }
    };

    if let AttackKind::BadSig(pct) = cfg.kind {
        let mut load = cfg
            .honest
            .clone()
            .unwrap_or_else(|| LoadConfig::new(cfg.target));
        load.target = cfg.target;
        load.network = cfg.network;
        load.duration = cfg.duration;
        load.bad_sig_pct = pct;
        load.progress_interval = load.progress_interval.min(interval);
        let (report, bad) = loadgen::run_counted(&load, |_| sampler(&mut samples))?;
        samples.push(sample(start, node));
        settle(node);
        return Ok(AttackReport {
            kind: cfg.kind,
            wall: start.elapsed(),
            opened: bad.bad_sent + bad.good_sent,
            connect_failed: report.failures_of(loadgen::Failure::ConnectFailed),
            held_peak: 0,
            held_end: 0,
            cut_by_node: bad.bad_rejected,
            bytes_sent: 0,
            poison_handshakes: 0,
            poison_addresses: 0,
            honest: Some(report),
            bad_sig: Some(bad),
            samples,
            node_before,
            node_after: node.map(|n| n.stats()),
            flood: None,
        });
    }
    if cfg.connections == 0 {
        return Err(AttackError::Config("connections must be at least 1"));
    }

    let shared = Arc::new(AttackShared::default());
    let handle = hostile::spawn(cfg, Arc::clone(&shared))?;
    let end = Instant::now() + cfg.duration;
    let _ = handle.send_command(Command::Start { end });

    let honest = match &cfg.honest {
        Some(load) => {
            let mut load = load.clone();
            load.target = cfg.target;
            load.network = cfg.network;
            load.duration = end
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            load.progress_interval = load.progress_interval.min(interval);
            match loadgen::run(&load, |_| sampler(&mut samples)) {
                Ok(r) => Some(r),
                Err(e) => {
                    handle.stop();
                    let _ = handle.join();
                    return Err(e.into());
                }
            }
        }
        None => {
            while Instant::now() < end {
                std::thread::sleep(interval.min(end.saturating_duration_since(Instant::now())));
                sampler(&mut samples);
            }
            None
        }
    };
    // `opened` and `held_end` describe the same moment, the end of the window (opened first:
    // a connection opened between the two loads counts as held, not as opened and gone);
    // the attack thread may still open connections until it has stopped.
    let opened = shared.opened.load(Ordering::Relaxed);
    let held_end = shared.held.load(Ordering::Relaxed);
    samples.push(sample(start, node));
    handle.stop();
    let _ = handle.join();
    settle(node);
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Ok(AttackReport {
        kind: cfg.kind,
        wall: start.elapsed(),
        opened,
        connect_failed: g(&shared.connect_failed),
        held_peak: g(&shared.held_peak),
        held_end,
        cut_by_node: g(&shared.cut),
        bytes_sent: g(&shared.bytes),
        poison_handshakes: g(&shared.handshakes),
        poison_addresses: g(&shared.addresses),
        honest,
        bad_sig: None,
        samples,
        node_before,
        node_after: node.map(|n| n.stats()),
        flood: None,
    })
}
