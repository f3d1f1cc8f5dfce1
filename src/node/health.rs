//! Thread health: which of the node's threads are alive, when each last made progress, and
//! a watchdog that warns about a thread that stalls.
//!
//! Every shard and the crawler keep a [`Heartbeat`]: one atomic word stored at the start of
//! each loop turn (and, for a shard, marked idle before it blocks for work), so the hot path
//! takes no lock. The watchdog thread looks at them every [`watchdog_tick`] and logs a warning
//! when a thread that has work (a shard with connections or queued commands; the crawler
//! always) has shown no progress for [`NodeOptions::stall_warning`](super::NodeOptions), and
//! an info line when it moves again. A thread's death is not the watchdog's business: a shard
//! reports it through its exit hook at once, the crawler from its own thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, RecvTimeoutError, Sender, bounded};
use parking_lot::Mutex;

use crate::io::{Heartbeat, ShardExit, ShardHandle};
use crate::proto::events::ShardCommand;

/// The default of [`NodeOptions::stall_warning`](super::NodeOptions).
pub const DEFAULT_STALL_WARNING: Duration = Duration::from_secs(5);

/// How often the watchdog looks: a quarter of the warning delay, between 50 ms and 1 s.
pub fn watchdog_tick(stall_warning: Duration) -> Duration {
    (stall_warning / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// One thread's health, as [`Node::threads`](super::Node::threads) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadHealth {
    /// The thread's name (`shard-0`, `shard-1`, …, `crawler`).
    pub name: String,
    /// False once the thread has ended.
    pub alive: bool,
    /// Time since the thread last made progress: a loop turn began, or it waited for work
    /// with nothing queued for it (an idle shard is healthy). For a dead thread, the time
    /// since its last turn.
    pub progress_age: Duration,
    /// The watchdog considers the thread stalled now.
    pub stalled: bool,
    /// Stalls the watchdog has reported for this thread.
    pub stalls: u64,
}

/// A node thread that ended while the node was not stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadFailure {
    /// The thread's name (`shard-1`, `crawler`).
    pub thread: String,
    /// How it ended (`panicked: …`, `failed: …`, `stopped`).
    pub cause: String,
}

impl std::fmt::Display for ThreadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "thread {} {}", self.thread, self.cause)
    }
}

/// The crawler thread's life: its heartbeat, and how it ended.
#[derive(Debug, Default)]
pub(crate) struct CrawlerLife {
    pub(crate) heartbeat: Arc<Heartbeat>,
    /// Set when the thread ends (normally or not).
    pub(crate) finished: AtomicBool,
    /// The panic message, if it panicked.
    pub(crate) panic: Mutex<Option<String>>,
}

impl CrawlerLife {
    pub(crate) fn panicked(&self) -> bool {
        self.panic.lock().is_some()
    }
}

enum Watched {
    Shard(ShardHandle<ShardCommand>),
    Crawler(Arc<CrawlerLife>),
}

struct Entry {
    name: String,
    watched: Watched,
    stalled: AtomicBool,
    stalls: AtomicU64,
    /// The heartbeat word at the watchdog's previous look.
    last_word: AtomicU64,
}

impl Entry {
    fn heartbeat(&self) -> &Heartbeat {
        match &self.watched {
            Watched::Shard(h) => h.heartbeat(),
            Watched::Crawler(c) => &c.heartbeat,
        }
    }

    fn alive(&self) -> bool {
        match &self.watched {
            Watched::Shard(h) => h.exit().is_none(),
            Watched::Crawler(c) => !c.finished.load(Ordering::Acquire),
        }
    }

    fn progress_age(&self, now: Instant) -> Duration {
        match &self.watched {
            Watched::Shard(h) => h.progress_age(now),
            Watched::Crawler(c) => c.heartbeat.age(now),
        }
    }

    /// `(has work, connections, queued commands)`: a shard with connections or queued
    /// commands, the crawler always (it runs timers).
    fn work(&self) -> (bool, u64, usize) {
        match &self.watched {
            Watched::Shard(h) => {
                let conns = h.counters().live_connections;
                let queued = h.queued_commands();
                (conns > 0 || queued > 0, conns, queued)
            }
            Watched::Crawler(_) => (true, 0, 0),
        }
    }

    fn failure(&self) -> Option<ThreadFailure> {
        let cause = match &self.watched {
            Watched::Shard(h) => h.exit()?.to_string(),
            Watched::Crawler(c) => {
                if !c.finished.load(Ordering::Acquire) {
                    return None;
                }
                match c.panic.lock().as_ref() {
                    Some(m) => ShardExit::Panicked(m.clone()).to_string(),
                    None => ShardExit::Stopped.to_string(),
                }
            }
        };
        Some(ThreadFailure {
            thread: self.name.clone(),
            cause,
        })
    }
}

/// The watched threads of one node.
pub(crate) struct Health {
    entries: Vec<Entry>,
    stall_warning: Duration,
    /// Set when the node begins to stop: threads ending from then on are not failures.
    pub(crate) stopping: AtomicBool,
}

impl Health {
    pub(crate) fn new(
        shards: &[ShardHandle<ShardCommand>],
        crawler: Arc<CrawlerLife>,
        stall_warning: Duration,
    ) -> Health {
        let entry = |name: String, watched| Entry {
            name,
            watched,
            stalled: AtomicBool::new(false),
            stalls: AtomicU64::new(0),
            last_word: AtomicU64::new(u64::MAX),
        };
        let mut entries: Vec<Entry> = shards
            .iter()
            .map(|h| entry(format!("shard-{}", h.index()), Watched::Shard(h.clone())))
            .collect();
        entries.push(entry("crawler".into(), Watched::Crawler(crawler)));
        Health {
            entries,
            stall_warning,
            stopping: AtomicBool::new(false),
        }
    }

    /// Every watched thread's health at `now`.
    pub(crate) fn snapshot(&self, now: Instant) -> Vec<ThreadHealth> {
        self.entries
            .iter()
            .map(|e| ThreadHealth {
                name: e.name.clone(),
                alive: e.alive(),
                progress_age: e.progress_age(now),
                stalled: e.stalled.load(Ordering::Relaxed),
                stalls: e.stalls.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The first thread (shards in order, then the crawler) that ended while the node was not
    /// stopping.
    pub(crate) fn failure(&self) -> Option<ThreadFailure> {
        if self.stopping.load(Ordering::Acquire) {
            return None;
        }
        self.entries.iter().find_map(Entry::failure)
    }

    /// One watchdog look: a live thread with work whose heartbeat has not moved since the
    /// previous look and is older than the warning delay is reported stalled (once per
    /// stall); a stalled thread that moves again is reported recovered.
    pub(crate) fn check(&self, now: Instant) {
        for e in &self.entries {
            let word = e.heartbeat().word();
            let prev = e.last_word.swap(word, Ordering::Relaxed);
            if !e.alive() {
                e.stalled.store(false, Ordering::Relaxed);
                continue;
            }
            let age = e.progress_age(now);
            let (has_work, connections, queued) = e.work();
            let stuck = has_work && word == prev && age >= self.stall_warning;
            if stuck {
                if !e.stalled.swap(true, Ordering::Relaxed) {
                    e.stalls.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        thread = %e.name,
                        age_ms = age.as_millis() as u64,
                        connections,
                        queued_commands = queued,
                        "thread {} has made no progress for {} ms while it has work",
                        e.name,
                        age.as_millis()
                    );
                }
            } else if word != prev && e.stalled.swap(false, Ordering::Relaxed) {
                tracing::info!(thread = %e.name, "thread {} is making progress again", e.name);
            }
        }
    }
}

/// The running watchdog thread; dropping the sender stops it.
pub(crate) struct Watchdog {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts the watchdog over `health`.
    pub(crate) fn spawn(health: Arc<Health>) -> std::io::Result<Watchdog> {
        let (tx, rx): (Sender<()>, Receiver<()>) = bounded(1);
        let tick = watchdog_tick(health.stall_warning);
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                loop {
                    match rx.recv_timeout(tick) {
                        Err(RecvTimeoutError::Timeout) => health.check(Instant::now()),
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Watchdog {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Stops the watchdog and joins it (within one tick).
    pub(crate) fn stop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_is_a_quarter_of_the_delay_within_bounds() {
        assert_eq!(
            watchdog_tick(Duration::from_secs(5)),
            Duration::from_secs(1)
        );
        assert_eq!(
            watchdog_tick(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(
            watchdog_tick(Duration::from_millis(10)),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn a_stalled_crawler_is_reported_once_and_recovers() {
        let life = Arc::new(CrawlerLife::default());
        let h = Health::new(&[], Arc::clone(&life), Duration::from_millis(100));
        let t0 = Instant::now();
        life.heartbeat.beat(t0);
        h.check(t0);
        assert!(!h.snapshot(t0)[0].stalled);
        // No beat for 150 ms: stalled at the next look, counted once.
        let t1 = t0 + Duration::from_millis(150);
        h.check(t1);
        h.check(t1 + Duration::from_millis(50));
        let s = &h.snapshot(t1)[0];
        assert_eq!((s.name.as_str(), s.stalled, s.stalls), ("crawler", true, 1));
        assert!(s.progress_age >= Duration::from_millis(150));
        // It beats again: recovered; the count stays.
        let t2 = t1 + Duration::from_millis(300);
        life.heartbeat.beat(t2);
        h.check(t2);
        let s = &h.snapshot(t2)[0];
        assert_eq!((s.stalled, s.stalls), (false, 1));
        assert!(s.progress_age < Duration::from_millis(2));
        // Death is a failure, not a stall.
        assert_eq!(h.failure(), None);
        *life.panic.lock() = Some("boom".into());
        life.finished.store(true, Ordering::Release);
        assert_eq!(
            h.failure().map(|f| f.to_string()),
            Some("thread crawler panicked: boom".into())
        );
        h.stopping.store(true, Ordering::Release);
        assert_eq!(h.failure(), None);
    }
}
