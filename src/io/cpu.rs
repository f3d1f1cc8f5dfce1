//! This process's own figures from `/proc`: CPU time of the whole process and of single threads
//! by id, the `stat` fields (CPU, start time, virtual size), `status` sizes (RSS) and open
//! descriptors; and the calling thread's CPU time from its CPU-time clock. The one place that
//! parses these files (the metrics page and the bench both read them from here).

use std::io;
use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` (USER_HZ, 100 on every Linux architecture).
const USER_HZ: u64 = 100;

/// The fields of a `/proc/<pid>/stat` (or `/proc/<pid>/task/<tid>/stat`) line that are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFields {
    /// utime + stime (fields 14 and 15), clock ticks.
    pub cpu_ticks: u64,
    /// starttime (field 22): clock ticks after boot.
    pub start_ticks: u64,
    /// vsize (field 23), bytes.
    pub vsize: u64,
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<StatFields> {
    let fields = stat_fields(text)?;
    Some(StatFields {
        cpu_ticks: cpu_ticks(&fields)?,
        start_ticks: stat_field(&fields, 22)?,
        vsize: stat_field(&fields, 23)?,
    })
}

/// The fields of a stat line after the command name: field 3 (state) first.
fn stat_fields(text: &str) -> Option<Vec<&str>> {
    Some(
        text[text.rfind(')')? + 1..]
            .split_ascii_whitespace()
            .collect(),
    )
}

/// Field `n` (numbered as in proc(5)) of [`stat_fields`].
fn stat_field(fields: &[&str], n: usize) -> Option<u64> {
    fields.get(n - 3)?.parse().ok()
}

/// utime + stime (fields 14 and 15).
fn cpu_ticks(fields: &[&str]) -> Option<u64> {
    stat_field(fields, 14)?.checked_add(stat_field(fields, 15)?)
}

/// A `Key:   N kB` line of `/proc/<pid>/status`, in bytes.
pub fn parse_status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb = rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
        kb.checked_mul(1024)
    })
}

/// Resident set size of this process, bytes (`VmRSS` of `/proc/self/status`).
pub fn resident_memory_bytes() -> Option<u64> {
    parse_status_kb(&std::fs::read_to_string("/proc/self/status").ok()?, "VmRSS")
}

/// Open descriptors of this process (entries of `/proc/self/fd`, less the one listing it).
pub fn open_fds() -> Option<u64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some((n as u64).saturating_sub(1))
}

/// utime + stime of a stat line, in ticks.
fn stat_ticks(text: &str) -> io::Result<u64> {
    stat_fields(text)
        .as_deref()
        .and_then(cpu_ticks)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat format"))
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_micros(ticks * (1_000_000 / USER_HZ))
}

/// CPU time (user + system) of the whole process so far, all threads including exited ones
/// (10 ms resolution).
pub fn process_cpu_time() -> io::Result<Duration> {
    let text = std::fs::read_to_string("/proc/self/stat")?;
    stat_ticks(&text).map(ticks_to_duration)
}

/// CPU time of thread `tid` of this process: from `schedstat` (nanoseconds on CPU) when the
/// kernel has it, else from `stat` (user + system, 10 ms resolution). Fails once the thread
/// has exited.
pub fn thread_cpu_time(tid: u32) -> io::Result<Duration> {
    let base = format!("/proc/self/task/{tid}");
    if let Ok(text) = std::fs::read_to_string(format!("{base}/schedstat"))
        && let Some(ns) = text
            .split_ascii_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
    {
        return Ok(Duration::from_nanos(ns));
    }
    let text = std::fs::read_to_string(format!("{base}/stat"))?;
    stat_ticks(&text).map(ticks_to_duration)
}

/// CPU time the calling thread has used so far, with nanosecond resolution (its CPU-time clock,
/// always current: `/proc` schedstat may lag by a scheduler tick). For timing code on a machine
/// whose cores are shared: time spent waiting for a CPU does not count.
pub fn current_thread_cpu_time() -> io::Result<Duration> {
    super::sys::thread_cputime()
}

/// The kernel thread id of the calling thread (from the `/proc/thread-self` link).
pub fn current_thread_id() -> io::Result<u32> {
    let link = std::fs::read_link("/proc/thread-self")?;
    link.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/thread-self"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // a command name with spaces and parentheses; fields 14/15 = 250/50, 22 = 4200,
        // 23 = 123456789
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9 0 \
                    4200 123456789 2500 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0";
        assert_eq!(
            parse_stat(line),
            Some(StatFields {
                cpu_ticks: 300,
                start_ticks: 4200,
                vsize: 123_456_789,
            })
        );
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn status_lines_in_bytes() {
        let status = "Name:\tnanopeer\nVmSize:\t  200 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(1024 * 1024));
        assert_eq!(parse_status_kb(status, "VmSize"), Some(200 * 1024));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "1234 (we (ird) name) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 1 0";
        assert_eq!(stat_ticks(line).unwrap(), 280);
        assert!(stat_ticks("garbage").is_err());
        assert!(stat_ticks("1 (x) S 1").is_err());
    }

    #[test]
    fn busy_thread_accumulates_cpu() {
        let tid = current_thread_id().unwrap();
        let before = thread_cpu_time(tid).unwrap();
        let p_before = process_cpu_time().unwrap();
        // Spin until the thread's own CPU time shows 20 ms (a loaded machine may give it far
        // less than the wall time); the deadline only stops a broken reader from hanging.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        while thread_cpu_time(tid).unwrap() - before < Duration::from_millis(20)
            && std::time::Instant::now() < deadline
        {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        let used = thread_cpu_time(tid).unwrap() - before;
        assert!(used >= Duration::from_millis(20), "thread used {used:?}");
        assert!(process_cpu_time().unwrap() >= p_before);
        let own = current_thread_cpu_time().unwrap();
        // The thread's own clock is always current; schedstat may lag it by a tick.
        assert!(own >= used, "own clock {own:?} behind {used:?}");
        assert!(thread_cpu_time(u32::MAX).is_err());
    }
}
