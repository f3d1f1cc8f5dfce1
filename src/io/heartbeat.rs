//! A thread's heartbeat: one atomic word it stores once per loop turn so that watchdogs can
//! tell a stalled thread from one waiting for work, and the faults tests inject through it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A fault a test injects into a thread through its [`Heartbeat`]: the thread suffers it at
/// its next beat. Not for production use.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The thread panics (`"injected fault: panic"`).
    Panic,
    /// The thread sleeps this long inside its loop (a stall).
    Stall(Duration),
}

/// Bit 0 of the heartbeat word: the thread is waiting for work rather than working.
const IDLE: u64 = 1;
/// Fault word values: none, panic; `STALL_BASE + ms` is a stall.
const FAULT_NONE: u64 = 0;
const FAULT_PANIC: u64 = 1;
const FAULT_STALL_BASE: u64 = 2;

/// A thread's last sign of progress: one atomic word the thread stores once per loop turn
/// (no lock, no shared write with other threads) and watchdogs read. It holds the
/// milliseconds since the heartbeat was made and whether the thread was then about to wait for
/// work ([`Heartbeat::idle`]) rather than starting a turn ([`Heartbeat::beat`]).
#[derive(Debug)]
pub struct Heartbeat {
    origin: Instant,
    word: AtomicU64,
    fault: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

impl Heartbeat {
    /// A heartbeat that last beat now (busy).
    pub fn new() -> Heartbeat {
        Heartbeat {
            origin: Instant::now(),
            word: AtomicU64::new(0),
            fault: AtomicU64::new(FAULT_NONE),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_millis())
            .unwrap_or(u64::MAX >> 1)
    }

    /// The thread starts a loop turn at `now`. (One relaxed load and one relaxed store; an
    /// injected fault strikes here.)
    #[inline]
    pub fn beat(&self, now: Instant) {
        if self.fault.load(Ordering::Relaxed) != FAULT_NONE {
            self.suffer_fault();
        }
        self.word.store(self.ms(now) << 1, Ordering::Relaxed);
    }

    /// The thread is about to wait for work at `now` (a blocking wait, not a stall).
    #[inline]
    pub fn idle(&self, now: Instant) {
        self.word
            .store((self.ms(now) << 1) | IDLE, Ordering::Relaxed);
    }

    /// When the thread last beat or went idle, and whether it went idle.
    pub fn last(&self) -> (Instant, bool) {
        let w = self.word.load(Ordering::Relaxed);
        (
            self.origin + Duration::from_millis(w >> 1),
            w & IDLE == IDLE,
        )
    }

    /// The raw word (changes at every beat that falls in a new millisecond, or between busy
    /// and idle): a watchdog compares two readings to tell "no beat since".
    pub fn word(&self) -> u64 {
        self.word.load(Ordering::Relaxed)
    }

    /// Time since the last beat (or idle mark) at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last().0)
    }

    /// Makes the thread suffer `fault` at its next beat (tests only).
    #[doc(hidden)]
    pub fn inject(&self, fault: Fault) {
        let v = match fault {
            Fault::Panic => FAULT_PANIC,
            Fault::Stall(d) => {
                FAULT_STALL_BASE.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }
        };
        self.fault.store(v, Ordering::Relaxed);
    }

    #[cold]
    #[inline(never)]
    fn suffer_fault(&self) {
        match self.fault.swap(FAULT_NONE, Ordering::Relaxed) {
            FAULT_NONE => {}
            FAULT_PANIC => panic!("injected fault: panic"),
            v => std::thread::sleep(Duration::from_millis(v - FAULT_STALL_BASE)),
        }
    }
}
