//! One measured stream against a node ([`run_stream`]): channels up, the node's counters
//! before, the warm-up, the measured window, the drain, and what the node counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::counters::{CounterRows, Spec, Tally, rpc_stats};
use crate::bench::error::BenchError;
use crate::bench::inprocess::thread_runq_wait;
use crate::bench::report::Progress;
use crate::bench::stream::{MessagePool, StreamCounts, StreamOptions, StreamPeers, StreamRunner};
use crate::io::cpu::thread_cpu_time;
use crate::node::Node;
use crate::types::Network;

/// How often a target's counters are read through its RPC (an in-process node's are read as
/// its shards publish them, every 100 ms).
const RPC_POLL: Duration = Duration::from_millis(100);
/// A backlog (messages sent, not yet received by the node) of at least this many keeps the
/// node busy until the next read of its counters.
const BUSY_BACKLOG: u64 = 256;
/// After the window: longest wait for what was sent to be counted by the node.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// The node's counters standing still this long ends the drain early.
const DRAIN_STILL: Duration = Duration::from_secs(3);

/// Where the node's counters come from.
pub enum NodeView<'a> {
    /// A node in this process: its counters, and its shard threads' CPU time.
    InProcess {
        /// The node.
        node: &'a Node,
        /// Its shard threads.
        tids: Vec<u32>,
    },
    /// Any node, through its RPC `stats` (loopback).
    Rpc(SocketAddr),
}

impl NodeView<'_> {
    /// A view of an in-process node.
    pub fn in_process(node: &Node) -> NodeView<'_> {
        NodeView::InProcess {
            tids: node.shard_thread_ids(),
            node,
        }
    }

    fn rows(&self) -> Result<CounterRows, BenchError> {
        match self {
            NodeView::InProcess { node, .. } => Ok(CounterRows::from_node(&node.stats())),
            NodeView::Rpc(rpc) => rpc_stats(*rpc).map_err(BenchError::Argument),
        }
    }

    /// The counters and when they were true. An in-process node's shards publish every
    /// 100 ms: this waits (up to 150 ms) for the next publication, so the time is within a
    /// few ms of the counts; an RPC answer is timed at the middle of its request.
    fn fresh(&self) -> Result<(CounterRows, Instant), BenchError> {
        match self {
            NodeView::InProcess { .. } => {
                let first = self.rows()?;
                let until = Instant::now() + Duration::from_millis(150);
                loop {
                    std::thread::sleep(Duration::from_millis(2));
                    let r = self.rows()?;
                    if r != first || Instant::now() >= until {
                        return Ok((r, Instant::now()));
                    }
                }
            }
            NodeView::Rpc(_) => {
                let t0 = Instant::now();
                let r = self.rows()?;
                Ok((r, t0 + t0.elapsed() / 2))
            }
        }
    }

    /// The shard threads' CPU time and run-queue wait so far (in-process only).
    fn shard_times(&self) -> (Option<Duration>, Option<Duration>) {
        let NodeView::InProcess { tids, .. } = self else {
            return (None, None);
        };
        let cpu: Option<Duration> = tids.iter().map(|&t| thread_cpu_time(t).ok()).sum();
        let runq: Option<Duration> = tids.iter().map(|&t| thread_runq_wait(t)).sum();
        (cpu, runq)
    }

    /// Connections per shard (in-process only).
    fn per_shard(&self) -> Option<Vec<u64>> {
        match self {
            NodeView::InProcess { node, .. } => {
                Some(node.stats().shards.iter().map(|s| s.connections).collect())
            }
            NodeView::Rpc(_) => None,
        }
    }
}

/// A point of the run: the node's figures, when, and the shards' times.
#[derive(Debug, Clone)]
struct Mark {
    tally: Tally,
    at: Instant,
    cpu: Option<Duration>,
    runq: Option<Duration>,
}

impl Mark {
    fn take(view: &NodeView<'_>, spec: &Spec) -> Result<Mark, BenchError> {
        let (rows, at) = view.fresh()?;
        let (cpu, runq) = view.shard_times();
        Ok(Mark {
            tally: spec.tally(&rows),
            at,
            cpu,
            runq,
        })
    }
}

/// How a stream runs.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// The node driven.
    pub target: SocketAddr,
    /// Its network.
    pub network: Network,
    /// Messages/s over all channels (0: as fast as the node reads).
    pub rate: u32,
    /// Streaming before the window, not measured.
    pub warmup: Duration,
    /// The window, at most (it ends early when a channel runs out of messages).
    pub duration: Duration,
    /// Longest wait for every channel to come up.
    pub ramp_timeout: Duration,
    /// Cores of the streaming peers' io threads (empty: not pinned).
    pub load_cores: Vec<usize>,
}

/// What one stream measured.
#[derive(Debug, Clone)]
pub struct StreamRun {
    /// The measured window.
    pub window: Duration,
    /// What the node counted in the window.
    pub in_window: Tally,
    /// What the node counted from streams open to the end of the drain.
    pub total: Tally,
    /// The streaming peers' counters at the end.
    pub peers: StreamCounts,
    /// How long the channels took to come up.
    pub ramp: Duration,
    /// The shard threads' CPU over the window (in-process only).
    pub server_cpu: Option<Duration>,
    /// Share of the window the shard threads waited for a CPU, mean per shard.
    pub server_runq_wait: Option<f64>,
    /// The load threads' CPU over the window, and how many there were.
    pub load_cpu: (Duration, usize),
    /// A channel ran out of messages before the window's full duration.
    pub pool_ran_out: bool,
    /// …or even before the warm-up ended, or before the window saw the node busy (the
    /// window then started when the streams opened).
    pub ran_out_in_warmup: bool,
    /// Every message sent was counted by the node as received before the run ended.
    pub drained: bool,
    /// The node's connections per shard as the window ended (in-process only).
    pub per_shard: Option<Vec<u64>>,
}

/// Runs `pool` against the node `view` looks at: every channel's peer completes its handshake
/// first; then the streams open, `warmup` passes, and the window runs for `duration`, or
/// until the pool is sent and the node has worked through it (a paced stream: until a
/// channel has sent its last message), whichever is first. The streams then stop and the
/// node is given time to count what was sent (while its counters move, up to 60 s).
/// `progress` shows the window.
pub fn run_stream(
    s: &StreamSettings,
    pool: Arc<MessagePool>,
    spec: &Spec,
    view: &NodeView<'_>,
    progress: &Progress,
) -> Result<StreamRun, BenchError> {
    let channels = pool.channels();
    let total_msgs = pool.len();
    let rate = f64::from(s.rate) / channels.max(1) as f64;
    let life = s.ramp_timeout + s.warmup + s.duration + DRAIN_TIMEOUT + Duration::from_secs(60);
    let options = StreamOptions {
        reopen_delay: Duration::from_millis(100),
        duration: life,
        open: false,
        cores: s.load_cores.clone(),
    };
    let runner = StreamRunner::start_with(
        s.target,
        s.network,
        StreamPeers::Streams { pool, rate },
        &options,
    )
    .map_err(|e| BenchError::Argument(format!("stream: {e}")))?;
    let t_ramp = Instant::now();
    while runner.counts().channels < channels as u64 {
        if t_ramp.elapsed() >= s.ramp_timeout {
            let c = runner.stop();
            return Err(BenchError::Argument(format!(
                "only {} of {channels} channels came up in {:.1} s ({} connects failed, {} \
                 closed by the node)",
                c.channels,
                s.ramp_timeout.as_secs_f64(),
                c.connect_failed,
                c.closed_by_node()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let ramp = t_ramp.elapsed();
    let before = Mark::take(view, spec)?;
    let load_tids = runner.thread_ids();
    let load_cpu = || -> Duration {
        load_tids
            .iter()
            .filter_map(|&t| thread_cpu_time(t).ok())
            .sum()
    };
    let load_open = load_cpu();
    runner.open();
    let t_open = Instant::now();
    // Streaming as fast as the node reads, the peers run far ahead of it (their sends sit in
    // the kernel's socket buffers), so a peer having sent its last message says nothing of
    // the node: the node is busy while its backlog (sent, not yet received) lasts. The window
    // ends at the last mark with a backlog, or after `duration`. A paced stream has no
    // backlog: it ends when a peer has sent its last message, or after `duration`.
    let low = BUSY_BACKLOG.max(4 * channels as u64);
    let paced = s.rate > 0;
    let mut start: Option<(Mark, Duration)> = None;
    let mut busy: Option<Mark> = None;
    let (end, pool_ran_out, never_busy) = loop {
        if matches!(view, NodeView::Rpc(_)) {
            std::thread::sleep(RPC_POLL);
        }
        let c = runner.counts();
        let m = Mark::take(view, spec)?;
        let backlog = c
            .messages_sent
            .saturating_sub(m.tally.received.saturating_sub(before.tally.received));
        if start.is_none() && m.at >= t_open + s.warmup {
            start = Some((m.clone(), load_cpu()));
        }
        if paced && c.exhausted_at_ms > 0 {
            break (m, true, false);
        }
        if !paced && c.all_exhausted_at_ms > 0 && backlog < low {
            let never = busy.is_none();
            break (busy.unwrap_or(m), true, never);
        }
        if let Some((m0, _)) = &start {
            let elapsed = m.at.saturating_duration_since(m0.at);
            progress.show(
                elapsed.min(s.duration),
                &format!(
                    "{} of {total_msgs} sent, {} verified, {} channel(s)",
                    c.messages_sent,
                    m.tally.verified.saturating_sub(before.tally.verified),
                    c.channels
                ),
            );
            if elapsed >= s.duration {
                break (m, false, false);
            }
        }
        if backlog >= low {
            busy = Some(m);
        }
    };
    // ran out before the warm-up ended (or before the window saw the node busy): the window
    // runs from the open instead
    let ran_out_in_warmup = never_busy
        || match &start {
            Some((m0, _)) => end.at <= m0.at,
            None => true,
        };
    let (m0, load0) = match start {
        Some(x) if !ran_out_in_warmup => x,
        _ => (before.clone(), load_open),
    };
    let load1 = load_cpu();
    let per_shard = view.per_shard();
    progress.finish();
    runner.pause();
    // the drain: what was queued reaches the node and is counted
    let sent = runner.counts().messages_sent;
    let t_drain = Instant::now();
    let mut last = end.tally.clone();
    let mut still = Instant::now();
    let drained = loop {
        std::thread::sleep(Duration::from_millis(50));
        let t = spec.tally(&view.rows()?);
        if t.received.saturating_sub(before.tally.received) >= sent {
            break true;
        }
        if t != last {
            last = t;
            still = Instant::now();
        }
        if still.elapsed() >= DRAIN_STILL || t_drain.elapsed() >= DRAIN_TIMEOUT {
            break false;
        }
    };
    // the node counts what it received once its checks are done (and an in-process node
    // publishes every 100 ms): wait for the counters to stand still
    let mut final_tally = Mark::take(view, spec)?.tally;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let t = Mark::take(view, spec)?.tally;
        if t == final_tally || t_drain.elapsed() >= DRAIN_TIMEOUT {
            final_tally = t;
            break;
        }
        final_tally = t;
    }
    let peers = runner.stop();
    let window = end.at.saturating_duration_since(m0.at);
    let shards = match view {
        NodeView::InProcess { tids, .. } => tids.len().max(1),
        NodeView::Rpc(_) => 1,
    };
    let diff =
        |a: Option<Duration>, b: Option<Duration>| a.zip(b).map(|(a, b)| b.saturating_sub(a));
    Ok(StreamRun {
        window,
        in_window: end.tally.since(&m0.tally),
        total: final_tally.since(&before.tally),
        peers,
        ramp,
        server_cpu: diff(m0.cpu, end.cpu),
        server_runq_wait: diff(m0.runq, end.runq)
            .filter(|_| !window.is_zero())
            .map(|w| w.as_secs_f64() / (window.as_secs_f64() * shards as f64)),
        load_cpu: (load1.saturating_sub(load0), load_tids.len()),
        pool_ran_out,
        ran_out_in_warmup,
        drained,
        per_shard,
    })
}
