//! The one counter schema: each counter is declared once, with its help text, the RPC `stats`
//! rows it adds to and the Prometheus sample it is part of, and everything else is generated
//! from that declaration.
//!
//! [`counter_set!`](crate::counter_set) declares a set of counters as a struct of plain `u64`
//! fields (what the hot path increments: no atomics, no indirection) and implements
//! [`CounterSet`] for it: [`CounterSet::add`] sums one shard's set into a total, and
//! [`CounterSet::visit`] hands each counter's [`Counter`] description with its value to the
//! RPC `stats` renderer ([`Rows`]) and to the `/metrics` renderer ([`Samples`]). Sets nest:
//! a set may hold other sets as groups (a shard's core holds its handshake outcomes, its
//! payload errors, …) and is visited depth first.
//!
//! Adding a counter is one entry in its set:
//!
//! ```text
//! /// Votes whose signature verified (handed to the crawler).
//! votes_valid ["vote", "valid", "in"],
//! ```
//!
//! and incrementing it where it happens. A counter with a Prometheus sample names a family of
//! [`FAMILIES`] (the family's help text and type are declared there, once for all its samples)
//! and, optionally, the labels that set its sample apart:
//!
//! ```text
//! /// Handshakes that completed with a channel.
//! ok ["handshake", "ok", "in"] @ "nanopeer_handshakes_total" ("outcome" = "ok"),
//! ```
//!
//! Counters that name the same RPC row, or the same family with the same labels, add up there
//! (a refusal at accept and one at the handshake are both nano-node's
//! `tcp_listener_rejected/max_per_ip`). This module imports nothing from the crate, so every
//! layer may declare its counters with it.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

/// How a Prometheus family's value behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (reset on restart).
    Counter,
    /// Goes up and down (a count of things open now, a cap in force).
    Gauge,
}

impl Kind {
    /// The `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A Prometheus family: the name every sample of it shares, its type and help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The metric name (`nanopeer_handshakes_total`).
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The `# HELP` text.
    pub help: &'static str,
}

/// One row of the RPC `stats` answer, in nano-node's `type`/`detail`/`dir` layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Row<'a> {
    /// The `type` column (`handshake`, `tcp_listener_rejected`, …).
    pub stat_type: &'a str,
    /// The `detail` column.
    pub detail: &'a str,
    /// `in` or `out`.
    pub dir: &'a str,
}

/// A counter's place in a Prometheus family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample<'a> {
    /// The family's name; it must be one of [`FAMILIES`].
    pub family: &'a str,
    /// The labels that set this sample apart from the family's others.
    pub labels: &'a [(&'a str, &'a str)],
}

/// What is declared of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter<'a> {
    /// The field that stores it.
    pub name: &'a str,
    /// Its doc comment.
    pub help: &'a str,
    /// The RPC `stats` rows it adds to (none, one, or more than one).
    pub rows: &'a [Row<'a>],
    /// Its Prometheus samples (usually none or one; a failed handshake signature is both a
    /// handshake outcome and a failed verification).
    pub samples: &'a [Sample<'a>],
}

/// A set of counters declared with [`counter_set!`](crate::counter_set) (or by hand, for
/// counters indexed by an enum such as the message type).
pub trait CounterSet {
    /// Adds `other`'s counters to these (summing shards into a node total).
    fn add(&mut self, other: &Self)
    where
        Self: Sized;

    /// Calls `f` with each counter's description and value, in declaration order, groups
    /// depth first.
    fn visit(&self, f: &mut dyn FnMut(&Counter<'_>, u64));

    /// Calls `f` with each counter's storage, in the order of [`CounterSet::visit`].
    fn values_mut(&mut self, f: &mut dyn FnMut(&mut u64));
}

/// A counter set published for other threads: the owner keeps its plain set and stores a copy
/// here at housekeeping ([`Published::publish`]); any thread loads the last copy. Relaxed:
/// each counter is consistent on its own, the set as a whole is not a snapshot.
#[derive(Debug)]
pub struct Published<T> {
    cells: Box<[AtomicU64]>,
    _set: PhantomData<fn() -> T>,
}

impl<T: CounterSet + Default + Copy> Default for Published<T> {
    fn default() -> Self {
        let mut n = 0;
        T::default().values_mut(&mut |_| n += 1);
        Published {
            cells: (0..n).map(|_| AtomicU64::new(0)).collect(),
            _set: PhantomData,
        }
    }
}

impl<T: CounterSet + Default + Copy> Published<T> {
    /// Stores a copy of `set`.
    pub fn publish(&self, set: &T) {
        let mut i = 0;
        let mut copy = *set;
        copy.values_mut(&mut |v| {
            self.cells[i].store(*v, Ordering::Relaxed);
            i += 1;
        });
    }

    /// Loads the last copy stored.
    pub fn load(&self) -> T {
        let mut set = T::default();
        let mut i = 0;
        set.values_mut(&mut |v| {
            *v = self.cells[i].load(Ordering::Relaxed);
            i += 1;
        });
        set
    }
}

/// Buckets of a histogram (a flush's batch size, …): summed bucket by bucket; no RPC row or
/// sample of their own (the owner renders the histogram).
impl<const N: usize> CounterSet for [u64; N] {
    fn add(&mut self, other: &Self) {
        for (a, b) in self.iter_mut().zip(other) {
            *a += b;
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&Counter<'_>, u64)) {
        for &v in self {
            f(
                &Counter {
                    name: "bucket",
                    help: "One histogram bucket.",
                    rows: &[],
                    samples: &[],
                },
                v,
            );
        }
    }

    fn values_mut(&mut self, f: &mut dyn FnMut(&mut u64)) {
        self.iter_mut().for_each(f);
    }
}

/// Declares a set of counters: a `Copy` struct of `u64` fields with [`CounterSet`] implemented
/// from the declaration. See the [module docs](crate::counters) for the syntax.
///
/// ```
/// nanopeer::counter_set! {
///     /// What a widget did.
///     pub struct WidgetStats {
///         groups {}
///         /// Widgets made.
///         made ["widget", "made", "out"] @ "nanopeer_messages_total" ("type" = "widget"),
///         /// Widgets lost (no RPC row, no sample).
///         lost,
///     }
/// }
/// use nanopeer::counters::CounterSet;
/// let mut a = WidgetStats { made: 2, lost: 1 };
/// a.add(&WidgetStats { made: 3, lost: 0 });
/// let mut seen = Vec::new();
/// a.visit(&mut |c, v| seen.push((c.name.to_string(), v)));
/// assert_eq!(seen, [("made".to_string(), 5), ("lost".to_string(), 1)]);
/// ```
#[macro_export]
macro_rules! counter_set {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            groups {
                $( $(#[$gmeta:meta])* $group:ident : $gty:ty ),* $(,)?
            }
            $(
                $(#[doc = $doc:literal])*
                $field:ident
                $( [ $t:literal, $d:literal, $dir:literal ] )*
                $( @ $family:literal $( ( $( $lk:literal = $lv:literal ),* ) )? )*
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        $vis struct $name {
            $( $(#[$gmeta])* pub $group: $gty, )*
            $( $(#[doc = $doc])* pub $field: u64, )*
        }

        impl $crate::counters::CounterSet for $name {
            fn add(&mut self, other: &Self)
            where
                Self: Sized,
            {
                $( $crate::counters::CounterSet::add(&mut self.$group, &other.$group); )*
                $( self.$field += other.$field; )*
            }

            fn values_mut(&mut self, f: &mut dyn FnMut(&mut u64)) {
                $( $crate::counters::CounterSet::values_mut(&mut self.$group, f); )*
                $( f(&mut self.$field); )*
            }

            fn visit(&self, f: &mut dyn FnMut(&$crate::counters::Counter<'_>, u64)) {
                $( $crate::counters::CounterSet::visit(&self.$group, f); )*
                $(
                    f(
                        &$crate::counters::Counter {
                            name: stringify!($field),
                            help: concat!($($doc),*),
                            rows: &[$( $crate::counters::Row {
                                stat_type: $t,
                                detail: $d,
                                dir: $dir,
                            } ),*],
                            samples: &[$( $crate::counters::Sample {
                                family: $family,
                                labels: &[$( $( ($lk, $lv) ),* )?],
                            } ),*],
                        },
                        self.$field,
                    );
                )*
            }
        }
    };
}

/// Every Prometheus family a counter may name, in the order `/metrics` shows them.
pub const FAMILIES: &[Family] = &[
    Family {
        name: "nanopeer_messages_total",
        kind: Kind::Counter,
        help: "Realtime messages received (in) and sent (out), per message type.",
    },
    Family {
        name: "nanopeer_handshakes_total",
        kind: Kind::Counter,
        help: "Handshake outcomes, per reason (ok or why it failed).",
    },
    Family {
        name: "nanopeer_verify_fallbacks_total",
        kind: Kind::Counter,
        help: "Batches that failed as a whole and were re-verified one signature at a time.",
    },
    Family {
        name: "nanopeer_verify_failed_total",
        kind: Kind::Counter,
        help: "Signatures that failed verification.",
    },
    Family {
        name: "nanopeer_verify_batch_cap",
        kind: Kind::Gauge,
        help: "Verify batch cap in force, summed over shards (halved after a batch with a bad signature).",
    },
    Family {
        name: "nanopeer_verify_batch_cap_shrinks_total",
        kind: Kind::Counter,
        help: "Times a shard halved its verify batch cap after a bad signature.",
    },
    Family {
        name: "nanopeer_peer_store_errors_total",
        kind: Kind::Counter,
        help: "Peer-store writes that failed.",
    },
    Family {
        name: "nanopeer_inbound_rejected_total",
        kind: Kind::Counter,
        help: "Accepted connections closed by the listener's screen before any read, or evicted from a full table, per reason.",
    },
    Family {
        name: "nanopeer_misbehaviour_total",
        kind: Kind::Counter,
        help: "Peers cut and excluded for going past a budget, per cause.",
    },
    Family {
        name: "nanopeer_buffer_ring_exhausted_total",
        kind: Kind::Counter,
        help: "Receives ended because the shard's provided buffer ring was empty (ENOBUFS).",
    },
    Family {
        name: "nanopeer_shard_accepted_total",
        kind: Kind::Counter,
        help: "Inbound connections accepted.",
    },
    Family {
        name: "nanopeer_shard_rejected_cap_total",
        kind: Kind::Counter,
        help: "Inbound connections refused at the shard's connection cap.",
    },
    Family {
        name: "nanopeer_shard_refused_total",
        kind: Kind::Counter,
        help: "Inbound connections refused by policy (limits, exclusion).",
    },
    Family {
        name: "nanopeer_shard_accept_errors_total",
        kind: Kind::Counter,
        help: "Failed accept completions.",
    },
    Family {
        name: "nanopeer_shard_connects_ok_total",
        kind: Kind::Counter,
        help: "Outbound connects that succeeded.",
    },
    Family {
        name: "nanopeer_shard_connects_failed_total",
        kind: Kind::Counter,
        help: "Outbound connects that failed or timed out.",
    },
    Family {
        name: "nanopeer_shard_recv_bytes_total",
        kind: Kind::Counter,
        help: "Bytes received.",
    },
    Family {
        name: "nanopeer_shard_recv_completions_total",
        kind: Kind::Counter,
        help: "Receive completions carrying data.",
    },
    Family {
        name: "nanopeer_shard_recv_rearms_total",
        kind: Kind::Counter,
        help: "Multishot receives re-armed.",
    },
    Family {
        name: "nanopeer_shard_send_messages_total",
        kind: Kind::Counter,
        help: "Messages queued for sending.",
    },
    Family {
        name: "nanopeer_shard_send_bytes_total",
        kind: Kind::Counter,
        help: "Bytes sent.",
    },
    Family {
        name: "nanopeer_shard_partial_sends_total",
        kind: Kind::Counter,
        help: "Sends that wrote only part of their buffer.",
    },
    Family {
        name: "nanopeer_shard_send_queue_drops_total",
        kind: Kind::Counter,
        help: "Messages dropped on a full send queue.",
    },
    Family {
        name: "nanopeer_shard_commands_total",
        kind: Kind::Counter,
        help: "Commands received from other threads.",
    },
    Family {
        name: "nanopeer_shard_loop_turns_total",
        kind: Kind::Counter,
        help: "Event loop turns.",
    },
    Family {
        name: "nanopeer_shard_live_connections",
        kind: Kind::Gauge,
        help: "Open connections.",
    },
    Family {
        name: "nanopeer_shard_closed_total",
        kind: Kind::Counter,
        help: "Connections closed, per shard and reason.",
    },
];

/// The family of a name, if it is declared.
pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// RPC `stats` rows gathered from counter sets: counters naming the same row add up; rows
/// keep the order in which they were first named.
#[derive(Debug, Default)]
pub struct Rows {
    rows: Vec<(String, String, String, u64)>,
    index: HashMap<(String, String, String), usize>,
}

impl Rows {
    /// Adds every row of `set`'s counters.
    pub fn add_set(&mut self, set: &dyn CounterSet) {
        set.visit(&mut |c, v| {
            for r in c.rows {
                self.add(*r, v);
            }
        });
    }

    /// Adds `value` to one row (a row for a value that is not a declared counter, such as a
    /// thread's progress age).
    pub fn add(&mut self, row: Row<'_>, value: u64) {
        let key = (
            row.stat_type.to_string(),
            row.detail.to_string(),
            row.dir.to_string(),
        );
        if let Some(&i) = self.index.get(&key) {
            self.rows[i].3 = self.rows[i].3.saturating_add(value);
        } else {
            self.index.insert(key.clone(), self.rows.len());
            self.rows.push((key.0, key.1, key.2, value));
        }
    }

    /// The rows: (type, detail, dir, value).
    pub fn into_vec(self) -> Vec<(String, String, String, u64)> {
        self.rows
    }
}

/// One Prometheus sample taken from a counter set, with the labels of its source (a shard's
/// index) ahead of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The family name.
    pub family: &'static str,
    /// Labels, source labels first.
    pub labels: Vec<(String, String)>,
    /// The value (summed over the counters that name the same family and labels).
    pub value: u64,
}

/// Prometheus samples gathered from counter sets, by family; counters naming the same family
/// and labels add up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Samples {
    taken: Vec<Taken>,
}

impl Samples {
    /// Takes the samples of `set`'s counters, with `source` labels ahead of each counter's own.
    ///
    /// # Panics
    /// If a counter names a family that [`FAMILIES`] does not declare (a schema mistake the
    /// tests catch).
    pub fn add_set(&mut self, set: &dyn CounterSet, source: &[(&str, &str)]) {
        set.visit(&mut |c, v| {
            for s in c.samples {
                self.take(c.name, s, source, v);
            }
        });
    }

    fn take(&mut self, counter: &str, s: &Sample<'_>, source: &[(&str, &str)], v: u64) {
        {
            let family = family(s.family)
                .unwrap_or_else(|| panic!("counter {counter} names undeclared family {}", s.family))
                .name;
            let labels: Vec<(String, String)> = source
                .iter()
                .chain(s.labels)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            match self
                .taken
                .iter_mut()
                .find(|t| t.family == family && t.labels == labels)
            {
                Some(t) => t.value = t.value.saturating_add(v),
                None => self.taken.push(Taken {
                    family,
                    labels,
                    value: v,
                }),
            }
        }
    }

    /// The samples of one family, in the order they were taken.
    pub fn of<'a>(&'a self, family: &'a str) -> impl Iterator<Item = &'a Taken> + 'a {
        self.taken.iter().filter(move |t| t.family == family)
    }

    /// The value of one sample, if it was taken.
    pub fn get(&self, family: &str, labels: &[(&str, &str)]) -> Option<u64> {
        self.taken
            .iter()
            .find(|t| {
                t.family == family
                    && t.labels.len() == labels.len()
                    && t.labels
                        .iter()
                        .zip(labels)
                        .all(|(a, b)| a.0 == b.0 && a.1 == b.1)
            })
            .map(|t| t.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::counter_set! {
        /// A leaf set for the tests.
        struct Leaf {
            groups {}
            /// First.
            a ["t", "a", "in"] ["t", "both", "in"] @ "nanopeer_handshakes_total" ("outcome" = "a"),
            /// Second.
            b ["t", "both", "in"] @ "nanopeer_handshakes_total" ("outcome" = "a"),
            /// Third, nowhere.
            c,
        }
    }

    crate::counter_set! {
        /// A set holding a group.
        struct Outer {
            groups {
                /// The leaf.
                leaf: Leaf,
            }
            /// Its own.
            own ["t", "own", "out"] @ "nanopeer_verify_failed_total",
        }
    }

    #[test]
    fn add_sums_every_field_and_group() {
        let mut x = Outer {
            leaf: Leaf { a: 1, b: 2, c: 3 },
            own: 4,
        };
        x.add(&x.clone());
        assert_eq!(
            x,
            Outer {
                leaf: Leaf { a: 2, b: 4, c: 6 },
                own: 8
            }
        );
    }

    #[test]
    fn visit_goes_groups_first_in_declaration_order() {
        let x = Outer {
            leaf: Leaf { a: 1, b: 2, c: 3 },
            own: 4,
        };
        let mut seen = Vec::new();
        x.visit(&mut |c, v| seen.push((c.name.to_string(), c.help.trim().to_string(), v)));
        let names: Vec<_> = seen.iter().map(|s| (s.0.as_str(), s.2)).collect();
        assert_eq!(names, [("a", 1), ("b", 2), ("c", 3), ("own", 4)]);
        assert_eq!(seen[2].1, "Third, nowhere.");
    }

    #[test]
    fn rows_with_one_key_add_up_and_keep_first_order() {
        let x = Outer {
            leaf: Leaf { a: 1, b: 2, c: 3 },
            own: 4,
        };
        let mut rows = Rows::default();
        rows.add_set(&x);
        rows.add(
            Row {
                stat_type: "t",
                detail: "a",
                dir: "in",
            },
            10,
        );
        let v = rows.into_vec();
        let flat: Vec<_> = v
            .iter()
            .map(|(t, d, dir, n)| format!("{t}/{d}/{dir}={n}"))
            .collect();
        assert_eq!(flat, ["t/a/in=11", "t/both/in=3", "t/own/out=4"]);
    }

    #[test]
    fn samples_sum_same_labels_and_prefix_source_labels() {
        let x = Outer {
            leaf: Leaf { a: 1, b: 2, c: 3 },
            own: 4,
        };
        let mut s = Samples::default();
        s.add_set(&x, &[("shard", "0")]);
        s.add_set(&x, &[("shard", "1")]);
        assert_eq!(
            s.get(
                "nanopeer_handshakes_total",
                &[("shard", "1"), ("outcome", "a")]
            ),
            Some(3)
        );
        assert_eq!(s.of("nanopeer_verify_failed_total").count(), 2);
        assert_eq!(
            s.get("nanopeer_verify_failed_total", &[("shard", "0")]),
            Some(4)
        );
        assert_eq!(s.get("nanopeer_verify_failed_total", &[]), None);
    }

    #[test]
    fn families_are_unique_and_described() {
        for (i, f) in FAMILIES.iter().enumerate() {
            assert!(!f.help.is_empty(), "{} has no help", f.name);
            assert!(
                f.name.starts_with("nanopeer_"),
                "{} lacks the prefix",
                f.name
            );
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}: counters end in _total, gauges do not",
                f.name
            );
            assert!(
                FAMILIES[..i].iter().all(|g| g.name != f.name),
                "{} twice",
                f.name
            );
        }
    }
}
