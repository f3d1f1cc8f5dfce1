//! CPU time: the whole process and single threads by id from `/proc`, the calling thread's own
//! from its CPU-time clock.

use std::io;
use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` (USER_HZ, 100 on every Linux architecture).
const USER_HZ: u64 = 100;

/// utime + stime (fields 14 and 15) of a `/proc/.../stat` line, in ticks. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn stat_ticks(text: &str) -> io::Result<u64> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat format");
    let rest = &text[text.rfind(')').ok_or_else(bad)? + 1..];
    // After ')': field 3 (state) is index 0, so utime (14) is index 11, stime (15) index 12.
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    let stime: u64 = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    Ok(utime + stime)
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
