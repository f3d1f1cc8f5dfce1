//! Fuzz target: decoding any bytes as one message, on every network, never panics, and every
//! message that decodes re-encodes to the same bytes (for exact-length types) and decodes again
//! to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nanopeer::wire::fuzzing::check_decode(data);
});
