//! Fuzz target: a `ShardCore` driven through a script of I/O-loop operations on several
//! connections (connects, arbitrary bytes, valid frames, verify results in any order, ticks,
//! deadlines, crawler commands, closes), with the core's outputs and state checked against a
//! model after every step. See `nanopeer::proto::drive` for the encoding and the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nanopeer::proto::drive::check(data);
});
