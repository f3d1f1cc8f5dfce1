//! The sampler of the process (RSS, open descriptors) and, given the node, its connections,
//! channels and valid votes ([`sample`]); the soak run built on it ([`run_soak`]) and the
//! growth it reports ([`soak_growth`]).

use std::time::{Duration, Instant};

use crate::bench::loadgen::{self, LoadConfig, LoadError, LoadReport};
use crate::node::Node;

/// One sample of the process (and node): for soak runs and attack reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SoakSample {
    /// Time since the run started.
    pub t: Duration,
    /// Resident set size of the process (VmRSS), KiB; 0 if unreadable.
    pub rss_kb: u64,
    /// Open descriptors of the process (`/proc/self/fd`); 0 if unreadable.
    pub fds: usize,
    /// The node's open connections (io layer, all shards); 0 without a node.
    pub connections: u64,
    /// The node's channels (completed handshakes); 0 without a node.
    pub channels: usize,
    /// The node's valid vote signatures so far (`votes_valid`); 0 without a node.
    pub votes_valid: u64,
}

/// Resident set size of this process, KiB.
pub fn process_rss_kb() -> Option<u64> {
    crate::io::cpu::resident_memory_bytes().map(|b| b / 1024)
}

/// Open descriptors of this process.
pub fn process_fds() -> Option<usize> {
    crate::io::cpu::open_fds().map(|n| n as usize)
}

/// Samples the process and, if given, the node.
pub fn sample(start: Instant, node: Option<&Node>) -> SoakSample {
    let (connections, channels, votes_valid) = node.map_or((0, 0, 0), |n| {
        let s = n.stats();
        (s.io.live_connections, s.channels, s.proto.votes_valid)
    });
    SoakSample {
        t: start.elapsed(),
        rss_kb: process_rss_kb().unwrap_or(0),
        fds: process_fds().unwrap_or(0),
        connections,
        channels,
        votes_valid,
    }
}

/// Growth after warm-up: the mean of the last third of the samples taken at or after `warmup`
/// minus the mean of the first third, as (RSS KiB, descriptors). Pass only the samples taken
/// while the load ran (a sample after the load stopped would read as a drop). (0, 0) with fewer
/// than three such samples.
pub fn soak_growth(samples: &[SoakSample], warmup: Duration) -> (i64, i64) {
    let after: Vec<&SoakSample> = samples.iter().filter(|s| s.t >= warmup).collect();
    if after.len() < 3 {
        return (0, 0);
    }
    let third = after.len() / 3;
    let mean = |part: &[&SoakSample], f: fn(&SoakSample) -> u64| -> i64 {
        (part.iter().map(|s| f(s) as i128).sum::<i128>() / part.len() as i128) as i64
    };
    let (first, last) = (&after[..third], &after[after.len() - third..]);
    (
        mean(last, |s| s.rss_kb) - mean(first, |s| s.rss_kb),
        mean(last, |s| s.fds as u64) - mean(first, |s| s.fds as u64),
    )
}

/// Runs `load` (churning peers: set `hold` off for churn) and samples the process and node
/// every `interval` ([`sample`]); returns the load report and the samples (the soak mode of
/// `bench --duration N --soak`).
pub fn run_soak(
    load: &LoadConfig,
    node: Option<&Node>,
    interval: Duration,
    mut progress: impl FnMut(&SoakSample),
) -> Result<(LoadReport, Vec<SoakSample>), LoadError> {
    let start = Instant::now();
    let mut samples = vec![sample(start, node)];
    let mut next = start + interval;
    let report = loadgen::run(load, |_| {
        let now = Instant::now();
        if now >= next {
            next = now + interval;
            let s = sample(start, node);
            progress(&s);
            samples.push(s);
        }
    })?;
    samples.push(sample(start, node));
    Ok((report, samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soak_growth_ignores_warmup() {
        let s = |t, rss, fds| SoakSample {
            t: Duration::from_secs(t),
            rss_kb: rss,
            fds,
            ..SoakSample::default()
        };
        let v = [
            s(0, 100, 5),
            s(10, 900, 50),
            s(20, 1000, 52),
            s(30, 1010, 51),
        ];
        assert_eq!(soak_growth(&v, Duration::from_secs(10)), (110, 1));
        assert_eq!(soak_growth(&v[..1], Duration::ZERO), (0, 0));
        assert!(process_rss_kb().unwrap() > 0);
        assert!(process_fds().unwrap() >= 3);
    }
}
