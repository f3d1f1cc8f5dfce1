//! What a load run measured: the totals ([`LoadReport`]), failures by reason ([`Failure`]),
//! the bad-signature peers' counts ([`BadSigCounts`]) and the progress seen while it runs
//! ([`Snapshot`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::bench::hist::LatencyHistogram;
use crate::types::Network;

/// Load CPU use (fraction of the load threads' wall time) at which the report warns that
/// the generator may be the bottleneck.
pub const SATURATION_WARN: f64 = 0.9;

/// Why a simulated handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// The connect failed (refused, unreachable, the source address could not be bound).
    ConnectFailed,
    /// The connect did not complete within the connect timeout.
    ConnectTimeout,
    /// The node closed (or reset) the connection before the handshake completed.
    ClosedByNode,
    /// The node's handshake response signature did not verify.
    BadNodeSignature,
    /// The node sent something unexpected: not a query + v2 response first, a foreign
    /// genesis, an undecodable message, or a header error.
    Protocol,
    /// The handshake did not complete within the handshake timeout.
    Timeout,
}

impl Failure {
    /// Every reason, in report order.
    pub const ALL: [Failure; 6] = [
        Failure::ConnectFailed,
        Failure::ConnectTimeout,
        Failure::ClosedByNode,
        Failure::BadNodeSignature,
        Failure::Protocol,
        Failure::Timeout,
    ];

    /// The snake_case name used in the report.
    pub const fn as_str(self) -> &'static str {
        match self {
            Failure::ConnectFailed => "connect_failed",
            Failure::ConnectTimeout => "connect_timeout",
            Failure::ClosedByNode => "closed_by_node",
            Failure::BadNodeSignature => "bad_node_signature",
            Failure::Protocol => "protocol",
            Failure::Timeout => "timeout",
        }
    }

    /// Its slot in per-reason counter arrays.
    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

/// What the bad-signature peers of a run saw ([`LoadConfig::bad_sig_pct`](super::LoadConfig::bad_sig_pct)), counted for the
/// whole run (not only the measuring window), so they can be compared with the node's
/// `handshake.invalid_signature` counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BadSigCounts {
    /// Handshake responses with a wrong signature sent.
    pub bad_sent: u64,
    /// Of those, connections the node then closed (rejected).
    pub bad_rejected: u64,
    /// Of those, connections on which the node sent a post-handshake message (accepted: a bug).
    pub bad_accepted: u64,
    /// Handshake responses with a correct signature sent.
    pub good_sent: u64,
}

/// Progress of a running load, given to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// Time since the load started.
    pub elapsed: Duration,
    /// The planned duration.
    pub duration: Duration,
    /// Completed handshakes.
    pub handshakes: u64,
    /// Failures, all reasons.
    pub failures: u64,
    /// Handshakes per second since the previous snapshot.
    pub rate_per_sec: f64,
    /// Handshakes per second since the start.
    pub avg_per_sec: f64,
    /// Handshakes in flight.
    pub in_flight: u64,
    /// Channels held open (`hold`).
    pub held: u64,
    /// Load threads' CPU use since the start, as a fraction of their wall time.
    pub load_cpu_util: f64,
}

/// The result of a load run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The node driven.
    pub target: SocketAddr,
    /// Copied from [`LoadConfig::network`](super::LoadConfig::network).
    pub network: Network,
    /// Concurrency asked for.
    pub connections: usize,
    /// Load threads, as configured ([`LoadConfig::threads`](super::LoadConfig::threads)).
    pub threads: usize,
    /// Whether channels were held.
    pub hold: bool,
    /// Whether the node's signatures were verified.
    pub verify_node: bool,
    /// Measured wall time of the load (start command to the final count).
    pub wall: Duration,
    /// Completed handshakes.
    pub handshakes: u64,
    /// Handshakes per second of wall time.
    pub handshakes_per_sec: f64,
    /// Failures per reason, every reason listed (in [`Failure::ALL`] order).
    pub failures: Vec<(Failure, u64)>,
    /// Latencies (dial to completion) of completed handshakes, µs.
    pub latency: LatencyHistogram,
    /// Dials started.
    pub dials: u64,
    /// Distinct source addresses used (0 when the kernel chose).
    pub distinct_source_ips: u64,
    /// Channels held open at the end (`hold`).
    pub held: u64,
    /// Kernel thread ids of the load threads.
    pub thread_ids: Vec<u32>,
    /// CPU time the load threads used during the run.
    pub load_cpu: Duration,
    /// `load_cpu / (threads × wall)`.
    pub load_cpu_util: f64,
}

impl LoadReport {
    /// Failures, all reasons.
    pub fn failures_total(&self) -> u64 {
        self.failures.iter().map(|(_, n)| n).sum()
    }

    /// Failures of one reason.
    pub fn failures_of(&self, reason: Failure) -> u64 {
        self.failures
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// True when the load threads were busy enough (≥ [`SATURATION_WARN`]) that they may
    /// have limited the rate.
    pub fn load_saturated(&self) -> bool {
        self.load_cpu_util >= SATURATION_WARN
    }

    /// Load CPU per completed handshake, µs (0 without handshakes).
    pub fn load_cpu_us_per_handshake(&self) -> f64 {
        if self.handshakes == 0 {
            0.0
        } else {
            self.load_cpu.as_secs_f64() * 1e6 / self.handshakes as f64
        }
    }
}
