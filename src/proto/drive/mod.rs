//! A scripted driver for one [`ShardCore`], shared by the `shard` fuzz target
//! (`fuzz/fuzz_targets/shard.rs`) and the corpus replay in `tests/fuzz_corpus.rs`.
//!
//! A byte string is read as a [`Script`]: one configuration byte, then up to [`MAX_OPS`]
//! operations of an I/O loop on up to [`SLOTS`] connection slots: connects (inbound, outbound,
//! from a palette of IPv4, IPv6, v4-mapped, loopback, private and unspecified addresses),
//! arbitrary bytes, structurally valid frames for the dev network (handshake parts, keepalive,
//! confirm_ack, publish, telemetry_ack, any type with a valid header and arbitrary payload),
//! answers to the core's verify requests with input-chosen results (in any order, also for
//! closed connections and for ids never issued), ticks with input-chosen time steps, expiry
//! of the loop deadlines the core asked for, crawler commands and closes. A slot reused after
//! a close gets a new [`ConnId`] (slot index plus generation, as the io_uring loop names its
//! connections); [`Options::reuse_ids`] lets a connect reuse the slot's previous id instead.
//!
//! After every call into the core the driver checks what came out against a model of what
//! it has seen, and after every operation it checks the core's state; a violation panics with
//! the operation and the invariant (what a fuzzer looks for). The invariants:
//!
//! - every `IoAction` names a connection that is open (opened by the driver, not closed by
//!   the driver, not closed by an earlier `Close` of the core); nothing follows a `Close`;
//! - the core's own sends go to the connection being handled, are each one well-formed dev
//!   message, and only node_id_handshake before that connection's channel is up; a commanded
//!   send is passed on unchanged to the channel's connection; deadlines are not in the past;
//! - calls about closed or unknown connections, verify ids and channels produce nothing;
//!   a dial produces one `Dial` for the canonical endpoint, a failed dial one `DialFailed`;
//!   a tick produces only closes;
//! - every verify request id is fresh; a handshake signature check is asked at most once per
//!   connection and only before its channel; a connection never has more than
//!   [`MAX_INFLIGHT_PER_CONN`] checks outstanding; the core holds no more pending checks than
//!   the driver has not answered;
//! - a channel comes up only on a successful answer to that connection's handshake check,
//!   with the checked key as node id, the connection's remote endpoint and direction, never
//!   for our own node id, an excluded IP or a non-peer address; votes and telemetry only on a
//!   successful answer; each event names the channel of the connection being handled;
//! - a channel goes down exactly when its connection closes (in the same call), and the map,
//!   `channel_of`, `conn_of` and `Channel::is_alive` agree with that;
//! - `connections()` equals the connections open; channels per IP, per subnet and in all
//!   stay within the map's limits; `cookies()` ≤ the configured cap and ≤ the distinct remote
//!   endpoints of open connections;
//! - a `Timeout` close comes only from a tick, for a connection at least the handshake
//!   timeout old, and after a tick no connection without a channel is older than that.
//!
//! Running (from the repository root; a new corpus goes to the first directory):
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run shard -s none /tmp/shard fuzz/corpus/shard -- -max_total_time=120
//! ```
//!
//! `cargo test --test fuzz_corpus` replays `fuzz/corpus/shard`; the handwritten seeds
//! (`seed-*`) are built in that test, which also checks that each still reaches what it was
//! written for (`NANOPEER_WRITE_SEEDS=1` rewrites the files after a change of encoding).
//!
//! [`ShardCore`]: super::shard::ShardCore
//! [`ConnId`]: super::events::ConnId
//! [`MAX_INFLIGHT_PER_CONN`]: super::shard::MAX_INFLIGHT_PER_CONN

/// Panics with the operation being run, its index and the time when `$cond` does not hold:
/// the one way an invariant check fails (used by the world and the invariants alike).
macro_rules! inv {
    ($d:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            panic!(
                "shard invariant violated at op #{} {} (t={} ms): {}",
                $d.step,
                $crate::proto::drive::op_text($d.op),
                $d.now,
                format!($($fmt)+)
            );
        }
    };
}

// The byte encoding: operations, frames and their palettes.
mod script;
// What a simulated peer sends.
mod peer;
// The I/O loop around the core and the model of what it opened.
mod world;
// The checks of the core's outputs and state against the model.
mod invariants;

pub use script::{
    Frame, MAX_OPS, NETWORK, Op, PORTS, SLOTS, Script, TICK_STEPS_MS, address, endpoint,
};
use world::Driver;
pub use world::{INBOUND_CAP, Options, SHARD, START_MS, Summary};

/// Runs `data` as a [`Script`] with default [`Options`]; panics on a violated invariant.
pub fn check(data: &[u8]) -> Summary {
    run(&Script::decode(data), Options::default())
}

/// Runs a script; panics on a violated invariant.
pub fn run(script: &Script, options: Options) -> Summary {
    let mut d = Driver::new(script.config, options);
    for (i, op) in script.ops.iter().enumerate() {
        d.step = i;
        d.op = op;
        d.apply(op);
        d.check_state();
    }
    d.summary.ops = script.ops.len();
    d.summary
}

/// An operation for a panic message, cut to 200 characters.
fn op_text(op: &Op) -> String {
    let mut s = format!("{op:?}");
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_established_channel_carries_votes() {
        let script = Script {
            config: 0,
            ops: vec![
                Op::Establish {
                    slot: 0,
                    addr: 5,
                    port: 2,
                    flags: 0,
                    node: 9,
                },
                Op::Frame {
                    slot: 0,
                    split: 0,
                    frame: Frame::ConfirmAck {
                        account: 3,
                        count: 2,
                        flags: 0,
                        seed: 1,
                    },
                },
                Op::VerifyAll { bits: 0xff },
            ],
        };
        let s = run(&script, Options::default());
        assert_eq!((s.channels_up, s.votes), (1, 1), "{s:?}");
    }
}
