//! Starting a node: checks (options, open-file limit, io_uring), the data directory, node key
//! and weights, the shared state (channel map, duplicate filter, exclusion list, query board),
//! every shard's listener bound on the listen address (so the real port is known before any
//! shard runs), the shards, the crawler thread and the watchdog; and what the node does when a
//! shard thread dies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, unbounded};
use parking_lot::{Mutex, RwLock};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::channels::{ChannelLimits, ChannelMap};
use crate::endpoint::Endpoint;
use crate::io::{self, IoError, ShardExit, ShardHandle};
use crate::proto::crawler::{CrawlerCore, CrawlerSetup};
use crate::proto::events::{CrawlerEvent, ShardCommand};
use crate::proto::exclusion::PeerExclusion;
use crate::proto::filter::{DEFAULT_CUTOFF_MS, DuplicateFilter};
use crate::proto::identity::NodeIdentity;
use crate::proto::repcrawler::QueryBoard;
use crate::proto::shard::ShardShared;
use crate::proto::telemetry::telemetry_ack_bytes;
use crate::proto::weights::{RepWeights, WeightsError};
use crate::store::{PeerStore, ensure_data_dir, load_or_create_node_key};

use super::crawler::{Control, CrawlerThread, recv_within, wall_ms};
use super::health::{CrawlerLife, Health, Watchdog};
use super::shard::{NodeShard, ShardSetup};
use super::{
    CrawlerStatus, CrawlerThreadStats, Node, NodeError, NodeOptions, STOP_CRAWLER_WAIT,
    ShardMetrics, default_preconfigured_peers, default_shard_count, fds,
};

impl Node {
    /// Starts a node (see the [module docs](crate::node)). Every failure names what failed: the
    /// missing io_uring feature, the data directory or file, the listen address.
    pub fn start(opts: NodeOptions) -> Result<Node, NodeError> {
        let epoch = Instant::now();
        let network = opts.network;
        if opts.proto.network != network {
            return Err(NodeError::Config(format!(
                "protocol settings are for the {} network, the node is on {}",
                opts.proto.network.name(),
                network.name()
            )));
        }
        if opts.batch_max == 0 {
            return Err(NodeError::Config("batch_max must be at least 1".into()));
        }
        let shard_count = opts.shards.unwrap_or_else(default_shard_count).max(1);
        if shard_count > usize::from(u16::MAX) {
            return Err(NodeError::Config("too many shards".into()));
        }
        // First, so that a limit too small is reported before anything is opened. Here rather
        // than in the CLI: every embedder (bench, tests) gets caps that fit its limit.
        // The per-shard total is both caps (inbound and outbound); a lowered total is split
        // between them in their configured proportion.
        let open_files = fds::apply_open_file_limit(
            shard_count,
            opts.io.max_connections + opts.io.max_outbound,
        )?;
        // A file-size limit (or a full quota) must fail the peer-store write, which the crawler
        // reports while the node keeps peering, not kill the whole process with SIGXFSZ.
        if let Err(e) = crate::io::ignore_file_size_signal() {
            tracing::warn!(error = %e, "cannot ignore SIGXFSZ; a file-size limit would stop the node");
        }
        io::probe().map_err(NodeError::IoUnavailable)?;
        ensure_data_dir(&opts.data_path)?;
        let store = PeerStore::open(&opts.data_path)?;
        let mut master =
            ChaCha20Rng::try_from_os_rng().map_err(|e| NodeError::Random(e.to_string()))?;
        let key = load_or_create_node_key(&opts.data_path, &mut master)?;
        let identity = Arc::new(NodeIdentity::from_secret(&key.secret));
        if key.created {
            tracing::info!(path = %key.path.display(), "created a new node ID key");
        }
        let weights = match &opts.weights_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| WeightsError::Io {
                    path: path.display().to_string(),
                    source,
                })
                .and_then(|text| RepWeights::parse(&text))
                .map_err(|source| NodeError::Weights {
                    path: path.clone(),
                    source,
                })?,
            None => RepWeights::defaults(network),
        };
        let mut config = opts.proto.clone();
        if let Some(m) = opts.online_weight_minimum {
            config.online_weight_minimum = m;
        }
        let channels = Arc::new(ChannelMap::new(ChannelLimits {
            max_peers_per_ip: config.max_peers_per_ip as usize,
            max_peers_per_subnetwork: config.max_peers_per_subnetwork as usize,
            max_channels: config.max_channels,
            max_outbound: config.max_outbound_channels,
            max_attempts: ChannelLimits::for_network(network).max_attempts,
        }));
        let filter = Arc::new(DuplicateFilter::new(
            opts.filter_slots,
            master.random(),
            DEFAULT_CUTOFF_MS,
        ));
        let exclusion = Arc::new(parking_lot::Mutex::new(PeerExclusion::new()));
        // The rep crawler publishes its query candidates here; shards pick a new channel's
        // first query from it.
        let query_board = Arc::new(QueryBoard::new(network));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

        // Shards. Every shard's listener is bound first, so the bound port (port 0 picks one)
        // is known before any shard starts and the protocol settings are built once with it.
        let (ev_tx, ev_rx) = bounded(opts.event_queue.max(1));
        let metrics: Vec<Arc<Mutex<ShardMetrics>>> = (0..shard_count)
            .map(|i| {
                Arc::new(Mutex::new(ShardMetrics {
                    shard: i,
                    ..ShardMetrics::default()
                }))
            })
            .collect();
        let seeds: Vec<[u8; 32]> = (0..shard_count).map(|_| master.random()).collect();
        let shard_tids = Arc::new(Mutex::new(vec![0u32; shard_count]));
        let mut io_cfg = opts.io.clone();
        (io_cfg.max_connections, io_cfg.max_outbound) = fds::scale_caps(
            open_files.per_shard,
            opts.io.max_connections,
            opts.io.max_outbound,
        );
        io_cfg.cores = if !opts.io.cores.is_empty() {
            opts.io.cores.clone()
        } else if opts.pin_cores {
            (0..shard_count.min(cores)).collect()
        } else {
            Vec::new()
        };
        let shards_error = |source: IoError| NodeError::Shards {
            addr: opts.listen,
            source,
        };
        io_cfg.validate().map_err(shards_error)?;
        let listeners = io::Listener::bind_group(opts.listen, io_cfg.backlog, shard_count)
            .map_err(shards_error)?;
        let local_addr = listeners
            .first()
            .map_or(opts.listen, io::Listener::local_addr);
        config.listen_port = local_addr.port();
        let shared = ShardShared {
            channels: Arc::clone(&channels),
            filter: Arc::clone(&filter),
            config: Arc::new(config.clone()),
            identity: Arc::clone(&identity),
            exclusion: Arc::clone(&exclusion),
            query_board: Arc::clone(&query_board),
        };
        let factory = {
            let metrics = metrics.clone();
            let batch_delay = Duration::from_micros(opts.batch_delay_us);
            let (batch_max, key_cache) = (opts.batch_max, opts.key_cache);
            let ev_tx = ev_tx.clone();
            let shard_tids = Arc::clone(&shard_tids);
            move |info: &io::ShardInfo| {
                // The factory runs on the shard's own thread.
                if let Some(t) = shard_tids.lock().get_mut(info.index) {
                    *t = crate::io::cpu::current_thread_id().unwrap_or(0);
                }
                let setup = ShardSetup {
                    shared: shared.clone(),
                    epoch,
                    events: ev_tx.clone(),
                    batch_max,
                    batch_delay,
                    key_cache,
                };
                let seed = seeds.get(info.index).copied().unwrap_or([7; 32]);
                NodeShard::new(
                    info.index,
                    &setup,
                    ChaCha20Rng::from_seed(seed),
                    Arc::clone(&metrics[info.index.min(metrics.len() - 1)]),
                )
            }
        };
        let shards = io::spawn_shards_on(&io_cfg, listeners, factory).map_err(shards_error)?;
        for h in &shards {
            let (channels, events, index) = (Arc::clone(&channels), ev_tx.clone(), h.index());
            h.on_exit(move |exit| shard_exited(index, exit, &channels, &events));
        }
        drop(ev_tx);

        // The crawler.
        let stored: Vec<Endpoint> = store
            .load(wall_ms())
            .into_iter()
            .map(|(ep, _)| ep)
            .collect();
        let stored_count = stored.len();
        let mut setup = CrawlerSetup::new(
            config.clone(),
            Arc::clone(&channels),
            Arc::clone(&exclusion),
            weights,
            shard_count as u16,
        );
        setup.stored_peers = stored;
        setup.online_samples = store.samples();
        setup.query_board = query_board;
        {
            let identity = Arc::clone(&identity);
            setup.telemetry = Some(Box::new(move |now_ms: u64, peers: usize| {
                telemetry_ack_bytes(
                    &identity,
                    network,
                    u32::try_from(peers).unwrap_or(u32::MAX),
                    now_ms / 1000,
                    wall_ms(),
                )
            }));
        }
        let core = CrawlerCore::new(setup);
        let status = Arc::new(RwLock::new(CrawlerStatus::of(&core, 0)));
        let (ctl_tx, ctl_rx) = unbounded();
        let crawler_life = Arc::new(CrawlerLife::default());
        let preconfigured = opts
            .preconfigured_peers
            .clone()
            .unwrap_or_else(|| default_preconfigured_peers(network));
        let thread = CrawlerThread {
            core,
            events: ev_rx,
            control: ctl_rx,
            control_tx: ctl_tx.clone(),
            shards: shards.clone(),
            channels: Arc::clone(&channels),
            store,
            status: Arc::clone(&status),
            epoch,
            rng: ChaCha20Rng::from_seed(master.random()),
            preconfigured: Arc::new(preconfigured),
            default_port: network.default_port(),
            max_samples: config.online_weight_max_samples,
            resolving: Arc::new(AtomicBool::new(false)),
            out: Vec::new(),
            stats: CrawlerThreadStats::default(),
            store_failed: false,
            heartbeat: Arc::clone(&crawler_life.heartbeat),
        };
        let pin = opts
            .crawler_core
            .or_else(|| opts.pin_cores.then(|| cores.saturating_sub(1)));
        let life = Arc::clone(&crawler_life);
        let spawned = std::thread::Builder::new()
            .name("crawler".into())
            .spawn(move || {
                if let Some(core) = pin
                    && let Err(e) = io::pin_current_thread(core)
                {
                    tracing::warn!(core, error = %e, "cannot pin the crawler thread");
                }
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| thread.run()));
                if let Err(payload) = run {
                    let message = io::panic_message(payload.as_ref());
                    tracing::error!(
                        thread = "crawler",
                        panic = %message,
                        "thread crawler panicked: {message}; no more keepalives, reachout or peer-store writes"
                    );
                    *life.panic.lock() = Some(message);
                }
                life.finished.store(true, Ordering::Release);
            });
        let stop_shards = |shards: &[ShardHandle<ShardCommand>]| {
            for s in shards {
                s.stop();
            }
            for s in shards {
                let _ = s.join();
            }
        };
        let crawler = match spawned {
            Ok(h) => h,
            Err(source) => {
                stop_shards(&shards);
                return Err(NodeError::Thread {
                    what: "crawler",
                    source,
                });
            }
        };
        let health = Arc::new(Health::new(
            &shards,
            Arc::clone(&crawler_life),
            opts.stall_warning,
        ));
        let watchdog = match Watchdog::spawn(Arc::clone(&health)) {
            Ok(w) => w,
            Err(source) => {
                health.stopping.store(true, Ordering::Release);
                let (tx, rx) = bounded(1);
                if ctl_tx.send(Control::Stop(tx)).is_ok() {
                    let _ = recv_within(&rx, STOP_CRAWLER_WAIT);
                }
                stop_shards(&shards);
                return Err(NodeError::Thread {
                    what: "watchdog",
                    source,
                });
            }
        };
        tracing::info!(
            network = network.name(),
            node_id = identity.node_id_text(),
            listen = %local_addr,
            shards = shard_count,
            data_path = %opts.data_path.display(),
            stored_peers = stored_count,
            crypto_backend = crate::crypto::backend_name(),
            "nanopeer node started"
        );
        Ok(Node {
            identity,
            network,
            started: epoch,
            config,
            local_addr,
            data_path: opts.data_path,
            channels,
            shards,
            metrics,
            shard_tids,
            status,
            control: ctl_tx,
            crawler: Some(crawler),
            crawler_life,
            health,
            watchdog,
            open_files,
            stopped: false,
        })
    }
}

/// What a node does when one of its shard threads ends: a shard that was not asked to stop
/// (a panic, a failed ring) leaves its channels in the map, so they are removed here (and the
/// crawler told), on the dying thread, right after its sockets were closed.
fn shard_exited(
    index: usize,
    exit: &ShardExit,
    channels: &ChannelMap,
    events: &crossbeam::channel::Sender<CrawlerEvent>,
) {
    let thread = format!("shard-{index}");
    match exit {
        ShardExit::Stopped => return,
        ShardExit::Failed(error) => {
            tracing::error!(thread = %thread, %error, "thread {thread} failed: {error}");
        }
        ShardExit::Panicked(message) => {
            tracing::error!(
                thread = %thread,
                panic = %message,
                "thread {thread} panicked: {message}; its connections are closed"
            );
        }
    }
    let gone = channels.remove_shard(u16::try_from(index).unwrap_or(u16::MAX));
    let removed = gone.len();
    for ch in gone {
        // Best effort: the crawler also re-synchronises with the map at each cleanup.
        let _ = events.try_send(CrawlerEvent::ChannelDown(ch));
    }
    if removed > 0 {
        tracing::warn!(
            thread = %thread,
            removed,
            "removed the {removed} channel(s) of the dead {thread} from the channel map"
        );
    }
}
