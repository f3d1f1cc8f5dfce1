//! The process's own figures for `/metrics`, under the names Prometheus client libraries give
//! them (`process_*`), and the build facts of `nanopeer_build_info`. Read from `/proc` at
//! scrape time (no `unsafe`); a figure that cannot be read is left out of the page rather
//! than shown as 0.

use crate::io::cpu::{open_fds, parse_stat};
use crate::types::Network;

/// Clock ticks per second of `/proc/*/stat` (USER_HZ: 100 on every Linux architecture).
const USER_HZ: f64 = 100.0;

/// What `process_*` shows; `None`: not readable here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessMetrics {
    /// `process_cpu_seconds_total`: user + system CPU time of all threads, seconds.
    pub cpu_seconds: Option<f64>,
    /// `process_resident_memory_bytes`: resident set size (`VmRSS`).
    pub resident_memory_bytes: Option<u64>,
    /// `process_virtual_memory_bytes`: virtual memory size (`vsize` of `/proc/self/stat`).
    pub virtual_memory_bytes: Option<u64>,
    /// `process_open_fds`: open file descriptors.
    pub open_fds: Option<u64>,
    /// `process_max_fds`: the soft open-file limit (`RLIMIT_NOFILE`).
    pub max_fds: Option<u64>,
    /// `process_start_time_seconds`: start time, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// The boot time (`btime` of `/proc/stat`), seconds since the Unix epoch.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

impl ProcessMetrics {
    /// Reads this process's figures now.
    pub fn read() -> ProcessMetrics {
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .as_deref()
            .and_then(parse_stat);
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .as_deref()
            .and_then(parse_btime);
        ProcessMetrics {
            cpu_seconds: stat.map(|s| s.cpu_ticks as f64 / USER_HZ),
            resident_memory_bytes: crate::io::cpu::resident_memory_bytes(),
            virtual_memory_bytes: stat.map(|s| s.vsize),
            open_fds: open_fds(),
            max_fds: crate::io::open_file_limit().ok().map(|(soft, _)| soft),
            start_time_seconds: stat
                .zip(btime)
                .map(|(s, b)| b as f64 + s.start_ticks as f64 / USER_HZ),
        }
    }
}

/// What `nanopeer_build_info` labels: the build and the choices made at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The crate version (`0.1.0`).
    pub version: String,
    /// The curve25519 backend in use ([`crate::crypto::backend_name`]).
    pub crypto_backend: String,
    /// The network the node runs on.
    pub network: String,
    /// `release` or `debug` (whether debug assertions are compiled in).
    pub profile: String,
}

impl BuildInfo {
    /// This binary's facts, for a node on `network`.
    pub fn current(network: Network) -> BuildInfo {
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            crypto_backend: crate::crypto::backend_name().to_string(),
            network: network.name().to_string(),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_string(),
        }
    }

    /// The labels, in print order.
    pub fn labels(&self) -> [(&'static str, &str); 4] {
        [
            ("version", &self.version),
            ("crypto_backend", &self.crypto_backend),
            ("network", &self.network),
            ("profile", &self.profile),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btime_line() {
        assert_eq!(
            parse_btime("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_btime("cpu 1 2 3\n"), None);
    }

    #[test]
    fn this_process_reads_plausibly() {
        let m = ProcessMetrics::read();
        let rss = m.resident_memory_bytes.expect("VmRSS");
        let vsz = m.virtual_memory_bytes.expect("vsize");
        assert!(rss > 0 && vsz >= rss, "rss {rss} vsize {vsz}");
        let fds = m.open_fds.expect("open fds");
        assert!(fds >= 3 && fds <= m.max_fds.expect("max fds"), "{fds}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = m.start_time_seconds.expect("start time");
        // started before now, and not before this test binary could have been built
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
        assert!(m.cpu_seconds.expect("cpu") >= 0.0);
    }
}
