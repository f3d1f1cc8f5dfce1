//! The load generator against in-test responders on loopback: one drives the real sans-IO
//! `ShardCore` over blocking std sockets (a thread per connection, the core behind a mutex),
//! one answers every handshake with a wrong signature.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nanopeer::bench::{
    BenchReport, Failure, LoadConfig, LoadReport, crypto_ceiling_per_sec, process_cpu_time, run,
};
use nanopeer::channels::{ChannelLimits, ChannelMap};
use nanopeer::crypto::genesis_hash;
use nanopeer::proto::config::ProtoConfig;
use nanopeer::proto::events::{ConnId, IoAction};
use nanopeer::proto::exclusion::PeerExclusion;
use nanopeer::proto::filter::DuplicateFilter;
use nanopeer::proto::identity::NodeIdentity;
use nanopeer::proto::repcrawler::QueryBoard;
use nanopeer::proto::shard::{ShardCore, ShardOutput, ShardShared};
use nanopeer::types::{Cookie, Network};
use nanopeer::wire::{Message, NodeIdHandshake};
use parking_lot::Mutex;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const NET: Network = Network::Dev;

/// What a responder saw.
#[derive(Default)]
struct Seen {
    peer_ips: Mutex<HashSet<IpAddr>>,
    accepted: AtomicU64,
}

/// A listener on 127.0.0.1 whose accept loop runs `serve` per connection on its own thread.
struct Responder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
    accept: Option<JoinHandle<()>>,
}

impl Responder {
    fn start(serve: impl Fn(u64, TcpStream, SocketAddr) + Send + Sync + 'static) -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let serve = Arc::new(serve);
        let (stop2, seen2) = (Arc::clone(&stop), Arc::clone(&seen));
        let accept = std::thread::spawn(move || {
            let mut id = 0;
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream.set_nodelay(true).unwrap();
                        id += 1;
                        seen2.accepted.fetch_add(1, Ordering::Relaxed);
                        seen2.peer_ips.lock().insert(peer.ip());
                        let serve = Arc::clone(&serve);
                        std::thread::spawn(move || serve(id, stream, peer));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        Responder {
            addr,
            stop,
            seen,
            accept: Some(accept),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// The real shard core of a node, driven over blocking sockets.
struct CoreNode {
    core: Mutex<(ShardCore, ChaCha8Rng)>,
    streams: Mutex<HashMap<u64, TcpStream>>,
    epoch: Instant,
}

impl CoreNode {
    fn new(listen_port: u16) -> CoreNode {
        let mut config = ProtoConfig::for_network(NET);
        config.listen_port = listen_port;
        let shared = ShardShared {
            channels: Arc::new(ChannelMap::new(ChannelLimits::for_network(NET))),
            filter: Arc::new(DuplicateFilter::new(1 << 12, [7; 16], 60_000)),
            config: Arc::new(config),
            identity: Arc::new(NodeIdentity::from_private([42; 32])),
            exclusion: Arc::new(Mutex::new(PeerExclusion::new())),
            query_board: Arc::new(QueryBoard::new(NET)),
        };
        CoreNode {
            core: Mutex::new((ShardCore::new(0, shared), ChaCha8Rng::seed_from_u64(1))),
            streams: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Carries out the core's output, resolving verify requests by single verification.
    fn execute(&self, core: &mut ShardCore, rng: &mut ChaCha8Rng, mut out: ShardOutput) {
        loop {
            for action in out.io.drain(..) {
                match action {
                    IoAction::Send { conn, bytes } => {
                        if let Some(s) = self.streams.lock().get_mut(&conn.0) {
                            let _ = s.write_all(&bytes);
                        }
                    }
                    IoAction::Close { conn, .. } => {
                        if let Some(s) = self.streams.lock().remove(&conn.0) {
                            let _ = s.shutdown(Shutdown::Both);
                        }
                    }
                    IoAction::Dial { .. } | IoAction::Deadline { .. } => {}
                }
            }
            out.events.clear();
            let requests = std::mem::take(&mut out.verify);
            if requests.is_empty() {
                return;
            }
            let now = self.now_ms();
            for v in requests {
                let ok = nanopeer::crypto::verify(v.message.as_bytes(), &v.signature, &v.key);
                core.on_verified(v.id, ok, now, rng, &mut out);
            }
        }
    }

    fn serve(&self, id: u64, mut stream: TcpStream, peer: SocketAddr) {
        self.streams.lock().insert(id, stream.try_clone().unwrap());
        {
            let mut guard = self.core.lock();
            let (core, rng) = &mut *guard;
            let mut out = ShardOutput::default();
            core.on_connected(ConnId(id), peer.into(), false, self.now_ms(), rng, &mut out);
            self.execute(core, rng, out);
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).unwrap_or(0);
            let mut guard = self.core.lock();
            let (core, rng) = &mut *guard;
            let mut out = ShardOutput::default();
            if n == 0 {
                core.on_closed(ConnId(id), self.now_ms(), &mut out);
                self.streams.lock().remove(&id);
                self.execute(core, rng, out);
                return;
            }
            core.on_bytes(ConnId(id), &buf[..n], self.now_ms(), rng, &mut out);
            self.execute(core, rng, out);
        }
    }
}

fn core_responder() -> (Responder, Arc<CoreNode>) {
    // The listen port is only known after binding; the core needs it for keepalive_self and
    // the "ourselves" check, so set it through a slot filled right after.
    let node: Arc<Mutex<Option<Arc<CoreNode>>>> = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&node);
    let r = Responder::start(move |id, stream, peer| {
        let n = slot.lock().clone();
        if let Some(n) = n {
            n.serve(id, stream, peer);
        }
    });
    let core = Arc::new(CoreNode::new(r.addr.port()));
    *node.lock() = Some(Arc::clone(&core));
    (r, core)
}

/// A responder that answers each query with a v2 query + response whose signature is wrong
/// (it signs the cookie without salt and genesis), then reads until the peer closes.
fn bad_signature_responder() -> Responder {
    Responder::start(|id, mut stream, _peer| {
        let identity = NodeIdentity::from_private([9; 32]);
        let mut head = [0u8; 8 + 32];
        if stream.read_exact(&mut head).is_err() {
            return;
        }
        let Ok((_, Message::NodeIdHandshake(NodeIdHandshake { query: Some(q), .. }))) =
            nanopeer::wire::decode_message(&head, NET)
        else {
            return;
        };
        let salt = Cookie([id as u8; 32]);
        let mut response = identity.handshake_response(&q.cookie, Some((salt, genesis_hash(NET))));
        response.signature = identity.sign(&q.cookie.0); // v1 data under a v2 layout: invalid
        let msg =
            Message::NodeIdHandshake(NodeIdHandshake::query_response(Cookie([1; 32]), response));
        if stream.write_all(&msg.encode(NET)).is_err() {
            return;
        }
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    })
}

fn config(target: SocketAddr, secs: f64, connections: usize) -> LoadConfig {
    let mut c = LoadConfig::new(target);
    c.network = NET;
    c.connections = connections;
    c.threads = 1;
    c.duration = Duration::from_secs_f64(secs);
    c.source_ips = 1024;
    c.key_pool = 256;
    c.progress_interval = Duration::from_millis(100);
    c.handshake_timeout = Duration::from_secs(2);
    c
}

fn summary(r: &LoadReport) -> String {
    format!(
        "{} handshakes in {:?} ({:.0}/s), failures {:?}, p50 {} p99 {} µs, load cpu {:.1} µs/hs ({:.0} %)",
        r.handshakes,
        r.wall,
        r.handshakes_per_sec,
        r.failures,
        r.latency.quantile(0.5),
        r.latency.quantile(0.99),
        r.load_cpu_us_per_handshake(),
        r.load_cpu_util * 100.0
    )
}

#[test]
fn handshakes_against_the_shard_core() {
    let (responder, node) = core_responder();
    let cfg = config(responder.addr, 2.0, 8);
    let mut snapshots = 0;
    let cpu_before = process_cpu_time().unwrap();
    let report = run(&cfg, |s| {
        snapshots += 1;
        assert!(s.elapsed <= s.duration);
    })
    .unwrap();
    let cpu = process_cpu_time().unwrap() - cpu_before;
    eprintln!("core responder: {}", summary(&report));
    assert!(report.handshakes > 0, "{}", summary(&report));
    assert!(snapshots >= 5, "progress called {snapshots} times");
    // Every failure is classified; against a correct node none should be about signatures
    // or protocol.
    assert_eq!(report.failures.len(), Failure::ALL.len());
    assert_eq!(report.failures_of(Failure::BadNodeSignature), 0);
    assert_eq!(report.failures_of(Failure::Protocol), 0);
    assert!(
        report.failures_total() * 20 <= report.handshakes,
        "{}",
        summary(&report)
    );
    assert!(report.latency.count() == report.handshakes);
    assert!(report.latency.quantile(0.5) <= report.latency.quantile(0.99));
    assert!(report.latency.quantile(0.5) > 0);
    assert!(report.load_cpu > Duration::ZERO && report.load_cpu_util > 0.0);
    assert!(report.dials >= report.handshakes);
    // The node's core completed the same handshakes (it counts the Ok outcome).
    let core_ok = node.core.lock().0.stats().handshake.ok;
    assert!(
        core_ok >= report.handshakes,
        "core {core_ok} < load {}",
        report.handshakes
    );
    // Source addresses really were spread over 127.0.0.0/8.
    let ips = responder.seen.peer_ips.lock().clone();
    assert!(ips.len() > 1, "peer ips {ips:?}");
    assert!(ips.iter().all(|ip| match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 127 && v4.octets()[1] != 0,
        IpAddr::V6(_) => false,
    }));
    assert_eq!(
        report.distinct_source_ips,
        report.dials.min(cfg.source_ips.into())
    );

    let ceiling = crypto_ceiling_per_sec(Duration::from_millis(200));
    let bench = BenchReport::new(&report, 1, 64, ceiling, Some(cpu));
    let v: serde_json::Value = serde_json::from_str(&bench.to_json_line()).unwrap();
    for key in [
        "shards",
        "batch_max",
        "duration_s",
        "handshakes",
        "handshakes_per_sec",
        "failures",
        "latency_p50_us",
        "latency_p99_us",
        "server_cpu_us_per_handshake",
        "load_cpu_util",
        "crypto_ceiling_per_sec",
        "efficiency",
    ] {
        assert!(v.get(key).is_some_and(|x| !x.is_null()), "{key}");
    }
    assert_eq!(v["handshakes"], report.handshakes);
    assert_eq!(v["failures"].as_object().unwrap().len(), Failure::ALL.len());
    let eff = bench.handshakes_per_sec / ceiling;
    assert!((bench.efficiency - eff).abs() < 1e-9);
    eprintln!("{}", bench.table());
}

#[test]
fn bad_node_signatures_are_classified() {
    let responder = bad_signature_responder();
    let cfg = config(responder.addr, 1.0, 4);
    let report = run(&cfg, |_| {}).unwrap();
    eprintln!("bad responder: {}", summary(&report));
    assert_eq!(report.handshakes, 0, "{}", summary(&report));
    let bad = report.failures_of(Failure::BadNodeSignature);
    assert!(bad > 0, "{}", summary(&report));
    assert!(
        bad * 10 >= report.failures_total() * 9,
        "{}",
        summary(&report)
    );
    assert!(responder.seen.peer_ips.lock().len() > 1);

    // With verification off the wrong signature goes unnoticed: the peer then waits for a
    // channel message that never comes and times out.
    let mut cfg = config(responder.addr, 1.0, 4);
    cfg.verify_node = false;
    cfg.handshake_timeout = Duration::from_millis(300);
    let report = run(&cfg, |_| {}).unwrap();
    eprintln!("bad responder, no verify: {}", summary(&report));
    assert_eq!(report.failures_of(Failure::BadNodeSignature), 0);
    assert!(
        report.failures_of(Failure::Timeout) > 0,
        "{}",
        summary(&report)
    );
}

#[test]
fn hold_keeps_channels_open() {
    let (responder, node) = core_responder();
    let mut cfg = config(responder.addr, 1.0, 4);
    cfg.hold = true;
    cfg.hold_limit = 20;
    let report = run(&cfg, |_| {}).unwrap();
    eprintln!("hold: {} held, {}", report.held, summary(&report));
    assert!(report.handshakes >= 20, "{}", summary(&report));
    assert_eq!(report.held, 20);
    // Once the load stops, the held connections are closed and the node forgets them.
    let deadline = Instant::now() + Duration::from_secs(3);
    while node.core.lock().0.connections() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(node.core.lock().0.connections(), 0);
}

#[test]
fn connection_refused_is_connect_failed() {
    // A port nobody listens on: bind one, note it, close it.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let report = run(&config(addr, 0.3, 2), |_| {}).unwrap();
    assert_eq!(report.handshakes, 0);
    assert!(
        report.failures_of(Failure::ConnectFailed) > 0,
        "{}",
        summary(&report)
    );
    assert_eq!(
        report.failures_total(),
        report.failures_of(Failure::ConnectFailed)
    );
}
