//! Per-connection deadlines: a min-heap with lazy deletion. Moving a deadline later (the
//! common "reset the idle timer on every message" case) is a store, not a heap push.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// The deadline state a connection slot keeps.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Slot {
    /// The deadline the handler asked for.
    pub(crate) at: Option<Instant>,
    /// The earliest heap entry this slot has (an entry with exactly this time is in the heap).
    pub(crate) queued: Option<Instant>,
}

/// Where the deadline slots live: returns the slot of connection `(idx, generation)` if that
/// connection still exists.
pub(crate) trait SlotLookup {
    /// The slot of the live connection `(idx, generation)`.
    fn deadline_slot(&mut self, idx: u32, generation: u32) -> Option<&mut Slot>;
}

/// Heap of `(time, slot index, generation)`.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
}

impl Deadlines {
    /// Sets (or moves) the deadline of connection `(idx, generation)`.
    pub(crate) fn set(&mut self, slot: &mut Slot, idx: u32, generation: u32, at: Instant) {
        slot.at = Some(at);
        if slot.queued.is_none_or(|q| at < q) {
            self.heap.push(Reverse((at, idx, generation)));
            slot.queued = Some(at);
        }
    }

    /// The earliest queued time (possibly of a stale entry: waking early is harmless).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops entries due at `now` until one names a connection whose deadline expired and
    /// returns its index; re-queues connections whose deadline moved later and skips stale
    /// entries. `None` once nothing more is due.
    pub(crate) fn pop_expired(&mut self, now: Instant, slots: &mut impl SlotLookup) -> Option<u32> {
        while let Some(&Reverse((at, idx, generation))) = self.heap.peek() {
            if at > now {
                return None;
            }
            self.heap.pop();
            let Some(slot) = slots.deadline_slot(idx, generation) else {
                continue;
            };
            if slot.queued != Some(at) {
                continue; // superseded by an earlier entry that already ran
            }
            slot.queued = None;
            match slot.at {
                Some(d) if d <= now => {
                    slot.at = None;
                    return Some(idx);
                }
                Some(d) => {
                    self.heap.push(Reverse((d, idx, generation)));
                    slot.queued = Some(d);
                }
                None => {}
            }
        }
        None
    }

    /// Entries in the heap (stale ones included).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    impl SlotLookup for Vec<Slot> {
        fn deadline_slot(&mut self, idx: u32, _generation: u32) -> Option<&mut Slot> {
            self.get_mut(idx as usize)
        }
    }

    fn expired(d: &mut Deadlines, slots: &mut Vec<Slot>, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| d.pop_expired(now, slots)).collect()
    }

    #[test]
    fn later_moves_are_cheap_and_honoured() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut d = Deadlines::default();
        let mut slots = vec![Slot::default(); 3];
        d.set(&mut slots[0], 0, 0, ms(10));
        for n in 11..1000 {
            d.set(&mut slots[0], 0, 0, ms(n)); // idle reset per message: no push
        }
        assert_eq!(d.len(), 1);
        d.set(&mut slots[1], 1, 0, ms(20));
        assert!(expired(&mut d, &mut slots, ms(15)).is_empty());
        assert_eq!(expired(&mut d, &mut slots, ms(20)), vec![1]);
        assert!(expired(&mut d, &mut slots, ms(998)).is_empty());
        assert_eq!(expired(&mut d, &mut slots, ms(999)), vec![0]);
        assert_eq!(d.next(), None);
    }

    #[test]
    fn earlier_moves_and_clears() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut d = Deadlines::default();
        let mut slots = vec![Slot::default(); 2];
        d.set(&mut slots[0], 0, 0, ms(100));
        d.set(&mut slots[0], 0, 0, ms(5));
        assert_eq!(d.next(), Some(ms(5)));
        assert_eq!(expired(&mut d, &mut slots, ms(5)), vec![0]);
        // The stale 100 ms entry must not fire again.
        assert!(expired(&mut d, &mut slots, ms(200)).is_empty());
        d.set(&mut slots[1], 1, 0, ms(300));
        slots[1].at = None; // cleared
        assert!(expired(&mut d, &mut slots, ms(400)).is_empty());
    }
}
