//! Helpers shared by the test binaries that start real nodes (each includes this file with
//! `mod common;`, so each binary has its own lock). Not every binary uses every helper.
#![allow(dead_code)]

pub mod proc;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nanopeer::io::ShardConfig;
use nanopeer::node::NodeOptions;
use nanopeer::types::Network;

static LOCK: Mutex<()> = Mutex::new(());

/// Runs the tests of one binary one at a time (they share ports, descriptors and CPU, and
/// some measure rates). A test that panicked does not poison the others.
pub fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls `f` every 10 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the test `entry` of this test binary in a child process with `env` set to `1` (the
/// entry does its work only then, so a plain run skips it), and fails unless the child passed
/// and printed `CHILD-OK`. For tests that change process-wide state (resource limits, a full
/// disk).
pub fn run_child(entry: &str, env: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", entry, "--nocapture", "--test-threads", "1"])
        .env(env, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-OK"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A dev node on 127.0.0.1 (a free port), no preconfigured peers, `shards` shards of
/// `max_connections` inbound connections each, rings and queues sized for tests.
pub fn small_node(dir: &Path, shards: usize, max_connections: usize) -> NodeOptions {
    let mut o = NodeOptions::new(Network::Dev, dir);
    o.listen = "127.0.0.1:0".parse().unwrap();
    o.shards = Some(shards);
    o.preconfigured_peers = Some(Vec::new());
    o.io = ShardConfig {
        ring_entries: 1024,
        recv_buffers: 256,
        max_connections,
        send_pool_buffers: 64,
        command_queue: 1024,
        ..ShardConfig::default()
    };
    o.filter_slots = 1 << 12;
    o.event_queue = 4096;
    o.key_cache = 1024;
    o
}
