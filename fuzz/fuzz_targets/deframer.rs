//! Fuzz target: the TCP deframer fed the same stream whole and in arbitrary splits yields the
//! same frames and the same error, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nanopeer::wire::fuzzing::check_deframer(data);
});
