//! The runner of a stream ([`StreamRunner`]): who runs ([`StreamPeers`]), on how many io
//! threads ([`StreamHandler`](super::handler::StreamHandler) each), the start, the gate that
//! opens and pauses the streams, and the counters ([`StreamCounts`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::handler::{Command, PEERS_PER_THREAD, Role, StreamHandler, StreamShared, ThreadSetup};
use super::pool::MessagePool;
use super::source::{FloodSource, stream_source_ip};
use crate::bench::attack::AttackError;
use crate::io::cpu::current_thread_id;
use crate::io::{self, ShardConfig, ShardHandle};
use crate::types::Network;

/// Counters of a stream's peers (all threads), as [`StreamRunner::counts`] returns them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCounts {
    /// Peers (connections kept open or in flight at once).
    pub peers: u64,
    /// Dials started.
    pub dials: u64,
    /// Connections established.
    pub opened: u64,
    /// Dials that failed (refused, timed out, bind failed).
    pub connect_failed: u64,
    /// Connections open now.
    pub held: u64,
    /// Most connections open at once.
    pub held_peak: u64,
    /// Closed by the node within [`REFUSED_WITHIN`](super::REFUSED_WITHIN) of connecting, before any channel.
    pub refused: u64,
    /// Closed by the node later, before any channel (handshake timeout, eviction).
    pub cut: u64,
    /// Channels the peers got (handshakes completed; the node's first message seen).
    pub handshakes: u64,
    /// Channels open now.
    pub channels: u64,
    /// Channels the node closed.
    pub channels_cut: u64,
    /// Dials of a peer that had a channel before (reconnects after a cut).
    pub reconnects: u64,
    /// Reconnects that ended without a channel (connect failed or closed by the node).
    pub reconnects_refused: u64,
    /// Reconnects that got a channel again.
    pub reconnect_handshakes: u64,
    /// Messages (votes or blocks) queued for sending.
    pub messages_sent: u64,
    /// Bytes queued for sending.
    pub bytes_sent: u64,
    /// Streaming peers that sent every message of their channel.
    pub pools_exhausted: u64,
    /// When the first of them did, ms after the runner started (0: none did).
    pub exhausted_at_ms: u64,
    /// When the last of them did, ms after the runner started (0: not every one did).
    pub all_exhausted_at_ms: u64,
}

impl StreamCounts {
    /// Every connection the node closed (refused, cut, channels cut).
    pub fn closed_by_node(&self) -> u64 {
        self.refused + self.cut + self.channels_cut
    }
}

/// Who a [`StreamRunner`] runs.
#[derive(Debug, Clone)]
pub enum StreamPeers {
    /// `connections` silent connections from `source`.
    Slots {
        /// Where they come from.
        source: FloodSource,
        /// How many are kept open or in flight.
        connections: usize,
    },
    /// `peers` attackers streaming invalid votes of `hashes` hashes each, from
    /// [`FloodSource::Many`] addresses.
    BadVoters {
        /// Attackers, one connection each; attacker `i` dials from
        /// `FloodSource::Many.address(i)`.
        peers: usize,
        /// Hashes per vote, at most 255.
        hashes: usize,
    },
    /// One peer per channel of `pool` (peer `c` from [`stream_source_ip`]`(c)`, with a node
    /// key of its own), each sending its channel's messages in order, paced at `rate`
    /// messages/s (0: as fast as the node reads), once per run.
    Streams {
        /// The pre-built messages.
        pool: Arc<MessagePool>,
        /// Messages/s per channel.
        rate: f64,
    },
}

/// Running stream peers on their own io threads; stop them with [`StreamRunner::stop`].
pub struct StreamRunner {
    handles: Vec<ShardHandle<Command>>,
    shared: Arc<StreamShared>,
    peers: usize,
    started: Instant,
}

impl std::fmt::Debug for StreamRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRunner")
            .field("threads", &self.handles.len())
            .field("peers", &self.peers)
            .finish()
    }
}

/// How a [`StreamRunner`] runs its peers.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// A connection the node closes is reopened this long after.
    pub reopen_delay: Duration,
    /// The peers stop (nothing reopened, nothing sent) this long after the start.
    pub duration: Duration,
    /// Stream as soon as a channel is up; else hold the channels until
    /// [`StreamRunner::open`].
    pub open: bool,
    /// Cores to pin the io threads to (thread `i` on `cores[i mod len]`); empty: not pinned.
    pub cores: Vec<usize>,
}

impl StreamRunner {
    /// Starts `who` against `target` for `duration` (peers reopen what the node closes,
    /// `reopen_delay` after); streams start at once. Returns once the threads run and have
    /// their start command.
    pub fn start(
        target: SocketAddr,
        network: Network,
        who: StreamPeers,
        reopen_delay: Duration,
        duration: Duration,
    ) -> Result<StreamRunner, AttackError> {
        let o = StreamOptions {
            reopen_delay,
            duration,
            open: true,
            cores: Vec::new(),
        };
        StreamRunner::start_with(target, network, who, &o)
    }

    /// As [`Self::start`], with the options of `o` (with `open` false the peers complete
    /// their handshakes and hold their channels, and stream only after [`Self::open`]).
    pub fn start_with(
        target: SocketAddr,
        network: Network,
        who: StreamPeers,
        o: &StreamOptions,
    ) -> Result<StreamRunner, AttackError> {
        let (reopen_delay, duration, open) = (o.reopen_delay, o.duration, o.open);
        if !matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback()) {
            return Err(AttackError::Config(
                "streams need an IPv4 loopback target (sources are bound in 127.0.0.0/8)",
            ));
        }
        let specs: Vec<(Ipv4Addr, Role)> = match &who {
            StreamPeers::Slots {
                source,
                connections,
            } => (0..*connections)
                .map(|i| (source.address(i as u32), Role::Silent))
                .collect(),
            StreamPeers::BadVoters { peers, .. } => (0..*peers)
                .map(|i| (FloodSource::Many.address(i as u32), Role::BadVoter))
                .collect(),
            StreamPeers::Streams { pool, .. } => (0..pool.channels())
                .map(|c| (stream_source_ip(c as u32), Role::Stream(c)))
                .collect(),
        };
        if specs.is_empty() {
            return Err(AttackError::Config("a stream needs at least one peer"));
        }
        let (hashes, pool, rate) = match &who {
            StreamPeers::Slots { .. } => (0, None, 0.0),
            StreamPeers::BadVoters { hashes, .. } => (*hashes, None, 0.0),
            StreamPeers::Streams { pool, rate } => (0, Some(Arc::clone(pool)), rate.max(0.0)),
        };
        if hashes > crate::wire::vote::MAX_HASHES {
            return Err(AttackError::Config("at most 255 hashes per vote"));
        }
        let tick_every = if matches!(who, StreamPeers::Slots { .. }) {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(1)
        };
        let peers = specs.len();
        let shared = StreamShared::default();
        let streams = specs
            .iter()
            .filter(|(_, r)| matches!(r, Role::Stream(_)))
            .count();
        shared.streams.store(streams as u64, Ordering::Relaxed);
        let mut runner = StreamRunner {
            handles: Vec::new(),
            shared: Arc::new(shared),
            peers,
            started: Instant::now(),
        };
        for (t, chunk) in specs.chunks(PEERS_PER_THREAD).enumerate() {
            let chunk = chunk.to_vec();
            let max_connections = 2 * chunk.len() + 16;
            let cfg = ShardConfig {
                listen: None,
                max_connections,
                ring_entries: 1024,
                recv_buffers: 256,
                send_pool_buffers: 64,
                connect_timeout: Duration::from_secs(5),
                cores: o.cores.clone(),
                ..ShardConfig::default()
            };
            let sh = Arc::clone(&runner.shared);
            let setup = ThreadSetup {
                target,
                network,
                reopen_delay,
                tick_every,
                hashes,
                pool: pool.clone(),
                rate,
            };
            let spawned = io::spawn(&cfg, t, move |_info: &io::ShardInfo| {
                if let Ok(tid) = current_thread_id() {
                    sh.tids.lock().push(tid);
                }
                StreamHandler::new(sh, &setup, &chunk, max_connections)
            });
            match spawned {
                Ok(h) => runner.handles.push(h),
                Err(e) => {
                    runner.stop();
                    return Err(AttackError::Start(e));
                }
            }
        }
        let start = Instant::now();
        runner.started = start;
        let end = start + duration;
        for h in &runner.handles {
            let _ = h.send_command(Command::Start { start, end, open });
        }
        Ok(runner)
    }

    /// Streams start on every channel, and on every channel made from now on.
    pub fn open(&self) {
        for h in &self.handles {
            let _ = h.send_command(Command::Open(true));
        }
    }

    /// Streams stop queuing messages (what is queued is still sent); channels stay up.
    pub fn pause(&self) {
        for h in &self.handles {
            let _ = h.send_command(Command::Open(false));
        }
    }

    /// The io threads' ids (for their CPU time), once they run.
    pub fn thread_ids(&self) -> Vec<u32> {
        self.shared.tids.lock().clone()
    }

    /// When the runner started its threads.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The counters so far, summed over the threads.
    pub fn counts(&self) -> StreamCounts {
        let s = &self.shared;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StreamCounts {
            peers: self.peers as u64,
            dials: g(&s.dials),
            opened: g(&s.opened),
            connect_failed: g(&s.connect_failed),
            held: g(&s.held),
            held_peak: g(&s.held_peak),
            refused: g(&s.refused),
            cut: g(&s.cut),
            handshakes: g(&s.handshakes),
            channels: g(&s.channels),
            channels_cut: g(&s.channels_cut),
            reconnects: g(&s.reconnects),
            reconnects_refused: g(&s.reconnects_refused),
            reconnect_handshakes: g(&s.reconnect_handshakes),
            messages_sent: g(&s.messages_sent),
            bytes_sent: g(&s.bytes_sent),
            pools_exhausted: g(&s.pools_exhausted),
            exhausted_at_ms: g(&s.exhausted_at_ms),
            all_exhausted_at_ms: g(&s.all_exhausted_at_ms),
        }
    }

    /// When the first streaming peer ran out of messages, if one did.
    pub fn exhausted_at(&self) -> Option<Instant> {
        let ms = self.shared.exhausted_at_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| self.started + Duration::from_millis(ms))
    }

    /// When the last streaming peer ran out of messages, if every one did.
    pub fn all_exhausted_at(&self) -> Option<Instant> {
        let ms = self.shared.all_exhausted_at_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| self.started + Duration::from_millis(ms))
    }

    /// Stops the threads (closing every connection) and returns the final counters.
    pub fn stop(&self) -> StreamCounts {
        for h in &self.handles {
            h.stop();
        }
        for h in &self.handles {
            let _ = h.join();
        }
        self.counts()
    }
}

impl Drop for StreamRunner {
    fn drop(&mut self) {
        for h in &self.handles {
            h.stop();
        }
        for h in &self.handles {
            let _ = h.join();
        }
    }
}
