//! The io_uring shard runtime against real loopback sockets.
//!
//! Tests run one at a time (a global lock): the fd-leak test counts this process's open
//! descriptors, and serial runs keep the 2-core machine's timing sane.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nanopeer::io::{
    CloseReason, ConnId, Handler, Io, IoError, Screen, SendOverflow, ShardConfig, ShardHandle,
    spawn, spawn_shards,
};

static LOCK: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const WAIT: Duration = Duration::from_secs(5);

fn cfg(listen: &str) -> ShardConfig {
    ShardConfig {
        listen: Some(listen.parse().unwrap()),
        ring_entries: 256,
        recv_buffers: 64,
        recv_buffer_size: 4096,
        ..ShardConfig::default()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn stop<C: Send>(h: &ShardHandle<C>) {
    h.stop();
    h.join().unwrap();
}

/// What a test handler reports to the test thread.
#[derive(Debug)]
enum Ev {
    Accepted(ConnId),
    Connected(ConnId, u64),
    ConnectFailed(u64, ErrorKind),
    Data(ConnId, Vec<u8>),
    Closed(ConnId, CloseReason),
    Sent { ok: usize, full: usize },
    Stream { bytes: u64, hash: u64 },
}

fn recv_ev(rx: &Receiver<Ev>) -> Ev {
    rx.recv_timeout(WAIT).expect("event within 5 s")
}

/// Reads until `n` bytes, EOF or error.
#[derive(Debug, PartialEq)]
enum Outcome {
    Data(Vec<u8>),
    Closed,
}

fn read_n(s: &mut TcpStream, n: usize) -> Outcome {
    let mut buf = vec![0; n];
    match s.read_exact(&mut buf) {
        Ok(()) => Outcome::Data(buf),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            Outcome::Closed
        }
        Err(e) => panic!("read: {e}"),
    }
}

fn fnv(hash: u64, data: &[u8]) -> u64 {
    data.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

/// Echoes every byte back.
struct Echo;

impl Handler for Echo {
    type Command = ();
    fn on_data(&mut self, io: &mut Io, conn: ConnId, data: &[u8]) {
        io.send(conn, data).unwrap();
    }
}

#[test]
fn echo_serves_many_concurrent_clients() {
    let _g = serial();
    let h = spawn(&cfg("127.0.0.1:0"), 0, |_| Echo).unwrap();
    let addr = h.local_addr().unwrap();
    let clients = 24;
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                // A burst of many messages in one write, echoed back whole.
                let burst: Vec<u8> = (0..40_000u32).map(|j| (j * 7 + i) as u8).collect();
                s.write_all(&burst).unwrap();
                assert_eq!(read_n(&mut s, burst.len()), Outcome::Data(burst.clone()));
                // Then ping-pong of varied sizes.
                for k in 0..40usize {
                    let msg = vec![(i as usize + k) as u8; 1 + k * 37];
                    s.write_all(&msg).unwrap();
                    assert_eq!(read_n(&mut s, msg.len()), Outcome::Data(msg));
                }
                burst.len() as u64 + (0..40u64).map(|k| 1 + k * 37).sum::<u64>()
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    stop(&h);
    let c = h.counters();
    assert_eq!(c.accepted, clients as u64);
    assert_eq!(c.recv_bytes, total);
    assert_eq!(c.send_bytes, total);
    assert_eq!(c.closed_peer + c.closed_shutdown, clients as u64);
    assert_eq!(c.live_connections, 0);
    assert_eq!(c.send_queue_drops, 0);
}

#[test]
fn two_shards_share_one_reuseport_port() {
    let _g = serial();
    let hs = spawn_shards(&cfg("127.0.0.1:0"), 2, |_| Echo).unwrap();
    let addr = hs[0].local_addr().unwrap();
    assert_eq!(hs[1].local_addr(), Some(addr));
    let n = 64;
    let mut clients = Vec::new();
    for i in 0..n {
        let mut s = connect(addr);
        s.write_all(&[i as u8]).unwrap();
        assert_eq!(read_n(&mut s, 1), Outcome::Data(vec![i as u8]));
        clients.push(s); // keep open so every connection is a distinct 4-tuple
    }
    for h in &hs {
        stop(h);
    }
    let (a, b) = (hs[0].counters().accepted, hs[1].counters().accepted);
    // The kernel hashes the 4-tuple over both listeners; one shard getting all 64 has
    // probability 2^-63.
    assert!(a > 0 && b > 0, "shard 0 got {a}, shard 1 got {b}");
    assert_eq!(a + b, n);
}

/// Length-prefixed frames (u32 LE length + payload) reassembled across receives; each frame
/// is answered with its length and FNV hash.
struct Framer {
    bufs: HashMap<ConnId, Vec<u8>>,
}

impl Handler for Framer {
    type Command = ();
    fn on_data(&mut self, io: &mut Io, conn: ConnId, data: &[u8]) {
        let buf = self.bufs.entry(conn).or_default();
        buf.extend_from_slice(data);
        let mut at = 0;
        while buf.len() - at >= 4 {
            let len = u32::from_le_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            if buf.len() - at - 4 < len {
                break;
            }
            let frame = &buf[at + 4..at + 4 + len];
            let mut reply = Vec::with_capacity(12);
            reply.extend_from_slice(&(len as u32).to_le_bytes());
            reply.extend_from_slice(&fnv(FNV0, frame).to_le_bytes());
            io.send_owned(conn, reply).unwrap();
            at += 4 + len;
        }
        buf.drain(..at);
    }
}

#[test]
fn frames_split_across_receives_are_reassembled() {
    let _g = serial();
    let h = spawn(&cfg("127.0.0.1:0"), 0, |_| Framer {
        bufs: HashMap::new(),
    })
    .unwrap();
    let mut s = connect(h.local_addr().unwrap());
    let frame = |len: usize, seed: u8| -> Vec<u8> {
        let mut f = (len as u32).to_le_bytes().to_vec();
        f.extend((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
        f
    };
    let reply = |len: usize, f: &[u8]| -> Vec<u8> {
        let mut r = (len as u32).to_le_bytes().to_vec();
        r.extend_from_slice(&fnv(FNV0, &f[4..]).to_le_bytes());
        r
    };
    // One 10 000-byte frame dribbled out 7 bytes at a time (split headers included).
    let big = frame(10_000, 1);
    for (i, chunk) in big.chunks(7).enumerate() {
        s.write_all(chunk).unwrap();
        if i % 64 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(read_n(&mut s, 12), Outcome::Data(reply(10_000, &big)));
    // Fifty frames in a single write: many frames per receive.
    let frames: Vec<Vec<u8>> = (0..50).map(|i| frame(1 + i * 13, i as u8)).collect();
    s.write_all(&frames.concat()).unwrap();
    let want: Vec<u8> = frames
        .iter()
        .map(|f| reply(f.len() - 4, f))
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(read_n(&mut s, want.len()), Outcome::Data(want));
    drop(s);
    stop(&h);
    let c = h.counters();
    assert!(c.recv_completions > 10, "{} receives", c.recv_completions);
    assert_eq!(c.recv_bytes, (big.len() + frames.concat().len()) as u64);
}

/// Hashes everything received; reports on close.
struct Sink {
    tx: Sender<Ev>,
    bytes: u64,
    hash: u64,
}

impl Handler for Sink {
    type Command = ();
    fn on_data(&mut self, _io: &mut Io, _conn: ConnId, data: &[u8]) {
        self.bytes += data.len() as u64;
        self.hash = fnv(self.hash, data);
    }
    fn on_closed(&mut self, _io: &mut Io, _conn: ConnId, _reason: CloseReason) {
        let _ = self.tx.send(Ev::Stream {
            bytes: self.bytes,
            hash: self.hash,
        });
    }
}

#[test]
fn buffer_ring_exhaustion_rearms_without_loss() {
    let _g = serial();
    let (tx, rx) = channel();
    let config = ShardConfig {
        recv_buffers: 2,
        recv_buffer_size: 64,
        ..cfg("127.0.0.1:0")
    };
    let h = spawn(&config, 0, move |_| Sink {
        tx,
        bytes: 0,
        hash: FNV0,
    })
    .unwrap();
    let mut s = connect(h.local_addr().unwrap());
    let data: Vec<u8> = (0..2u32 << 20).map(|i| (i ^ (i >> 9)) as u8).collect();
    for chunk in data.chunks(64 << 10) {
        s.write_all(chunk).unwrap();
    }
    drop(s);
    match recv_ev(&rx) {
        Ev::Stream { bytes, hash } => {
            assert_eq!(bytes, data.len() as u64);
            assert_eq!(hash, fnv(FNV0, &data));
        }
        e => panic!("{e:?}"),
    }
    stop(&h);
    let c = h.counters();
    assert!(c.buf_ring_exhausted > 0, "{c:?}");
    assert!(c.recv_rearms >= c.buf_ring_exhausted);
}

/// Sends `count` messages of `size` bytes (byte = message index) as soon as a peer connects.
struct Flood {
    tx: Sender<Ev>,
    count: usize,
    size: usize,
}

impl Handler for Flood {
    type Command = ();
    fn on_accept(&mut self, io: &mut Io, conn: ConnId, _peer: SocketAddr) -> bool {
        let (mut ok, mut full) = (0, 0);
        for i in 0..self.count {
            let mut buf = io.buffer();
            buf.resize(self.size, i as u8);
            match io.send_owned(conn, buf) {
                Ok(()) => ok += 1,
                Err(IoError::SendQueueFull) => full += 1,
                Err(IoError::NotOpen) => full += 1, // closed by the overflow policy
                Err(e) => panic!("{e}"),
            }
        }
        let _ = self.tx.send(Ev::Sent { ok, full });
        true
    }
    fn on_data(&mut self, _io: &mut Io, _conn: ConnId, _data: &[u8]) {}
    fn on_closed(&mut self, _io: &mut Io, conn: ConnId, reason: CloseReason) {
        let _ = self.tx.send(Ev::Closed(conn, reason));
    }
}

#[test]
fn send_queue_cap_drops_or_closes() {
    let _g = serial();
    // Message cap, drop policy: 10 of 100 queued, the rest dropped and counted.
    let (tx, rx) = channel();
    let config = ShardConfig {
        send_queue_messages: 10,
        ..cfg("127.0.0.1:0")
    };
    let h = spawn(&config, 0, move |_| Flood {
        tx,
        count: 100,
        size: 1000,
    })
    .unwrap();
    let mut s = connect(h.local_addr().unwrap());
    match recv_ev(&rx) {
        Ev::Sent { ok, full } => assert_eq!((ok, full), (10, 90)),
        e => panic!("{e:?}"),
    }
    let Outcome::Data(got) = read_n(&mut s, 10 * 1000) else {
        panic!("closed")
    };
    for (i, m) in got.chunks(1000).enumerate() {
        assert!(m.iter().all(|&b| b == i as u8), "message {i}");
    }
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut more = [0u8; 1];
    let e = s.read(&mut more).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );
    drop(s);
    stop(&h);
    assert_eq!(h.counters().send_queue_drops, 90);
    assert_eq!(h.counters().send_messages, 10);

    // Byte cap, close policy: the fifth 1000-byte message overflows 4000 bytes.
    let (tx, rx) = channel();
    let config = ShardConfig {
        send_queue_bytes: 4000,
        send_overflow: SendOverflow::Close,
        ..cfg("127.0.0.1:0")
    };
    let h = spawn(&config, 0, move |_| Flood {
        tx,
        count: 6,
        size: 1000,
    })
    .unwrap();
    let mut s = connect(h.local_addr().unwrap());
    match recv_ev(&rx) {
        Ev::Sent { ok, full } => assert_eq!((ok, full), (4, 2)),
        e => panic!("{e:?}"),
    }
    match recv_ev(&rx) {
        Ev::Closed(_, reason) => assert_eq!(reason, CloseReason::SendQueueFull),
        e => panic!("{e:?}"),
    }
    assert_eq!(read_n(&mut s, 1), Outcome::Closed);
    stop(&h);
    assert_eq!(h.counters().closed_send_queue_full, 1);
}

/// Dials on command; greets the peer; reports everything.
enum Cmd {
    Dial(SocketAddr, u64),
}

struct Dialer {
    tx: Sender<Ev>,
    /// Bytes to push to each dialed peer after the greeting.
    flood: usize,
}

impl Handler for Dialer {
    type Command = Cmd;
    fn on_command(&mut self, io: &mut Io, cmd: Cmd) {
        let Cmd::Dial(addr, token) = cmd;
        io.dial(addr, token).unwrap();
    }
    fn on_connected(&mut self, io: &mut Io, conn: ConnId, _peer: SocketAddr, token: u64) {
        io.send(conn, b"hello from the shard").unwrap();
        for _ in 0..self.flood / 65536 {
            let mut buf = io.buffer();
            buf.resize(65536, 0xab);
            io.send_owned(conn, buf).unwrap();
        }
        let _ = self.tx.send(Ev::Connected(conn, token));
    }
    fn on_connect_failed(&mut self, _io: &mut Io, _conn: ConnId, token: u64, err: std::io::Error) {
        let _ = self.tx.send(Ev::ConnectFailed(token, err.kind()));
    }
    fn on_data(&mut self, _io: &mut Io, conn: ConnId, data: &[u8]) {
        let _ = self.tx.send(Ev::Data(conn, data.to_vec()));
    }
    fn on_closed(&mut self, _io: &mut Io, conn: ConnId, reason: CloseReason) {
        let _ = self.tx.send(Ev::Closed(conn, reason));
    }
}

fn accept_within(l: &TcpListener, t: Duration) -> TcpStream {
    l.set_nonblocking(true).unwrap();
    let end = Instant::now() + t;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(WAIT)).unwrap();
                return s;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("no connection from the shard: {e}"),
        }
    }
}

#[test]
fn command_wakes_sleeping_shard_and_dials_out() {
    let _g = serial();
    let (tx, rx) = channel();
    // No listener, no deadlines, no timer: the shard sleeps until the eventfd wakes it.
    let h = spawn(
        &ShardConfig {
            listen: None,
            ..cfg("127.0.0.1:0")
        },
        0,
        move |_| Dialer { tx, flood: 0 },
    )
    .unwrap();
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let sender = h.clone();
    let addr = target.local_addr().unwrap();
    std::thread::spawn(move || assert!(sender.send_command(Cmd::Dial(addr, 7)).is_ok()))
        .join()
        .unwrap();
    let mut peer = accept_within(&target, WAIT);
    let conn = match recv_ev(&rx) {
        Ev::Connected(conn, 7) => conn,
        e => panic!("{e:?}"),
    };
    let greeting = b"hello from the shard";
    assert_eq!(
        read_n(&mut peer, greeting.len()),
        Outcome::Data(greeting.to_vec())
    );
    peer.write_all(b"pong").unwrap();
    match recv_ev(&rx) {
        Ev::Data(c, d) => assert_eq!((c, d.as_slice()), (conn, &b"pong"[..])),
        e => panic!("{e:?}"),
    }
    // A refused dial reports its token and the OS error.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    h.send_command(Cmd::Dial(dead, 9)).unwrap();
    match recv_ev(&rx) {
        Ev::ConnectFailed(9, kind) => assert_eq!(kind, ErrorKind::ConnectionRefused),
        e => panic!("{e:?}"),
    }
    drop(peer);
    match recv_ev(&rx) {
        Ev::Closed(c, CloseReason::PeerClosed) => assert_eq!(c, conn),
        e => panic!("{e:?}"),
    }
    stop(&h);
    let c = h.counters();
    assert_eq!((c.connects_ok, c.connects_failed, c.commands), (1, 1, 2));
    // A stopped shard refuses commands.
    assert!(h.send_command(Cmd::Dial(dead, 1)).is_err());
}

/// Gives every connection a deadline at accept; activity pushes it later.
struct Deadliner {
    tx: Sender<Ev>,
    first: Duration,
    idle: Duration,
}

impl Handler for Deadliner {
    type Command = ();
    fn on_accept(&mut self, io: &mut Io, conn: ConnId, _peer: SocketAddr) -> bool {
        assert!(io.set_deadline(conn, io.now() + self.first));
        let _ = self.tx.send(Ev::Accepted(conn));
        true
    }
    fn on_data(&mut self, io: &mut Io, conn: ConnId, data: &[u8]) {
        assert!(io.set_deadline(conn, io.now() + self.idle));
        io.send(conn, data).unwrap();
    }
    fn on_closed(&mut self, _io: &mut Io, conn: ConnId, reason: CloseReason) {
        let _ = self.tx.send(Ev::Closed(conn, reason));
    }
}

#[test]
fn deadline_closes_a_silent_connection() {
    let _g = serial();
    let (tx, rx) = channel();
    let first = Duration::from_millis(200);
    let h = spawn(&cfg("127.0.0.1:0"), 0, move |_| Deadliner {
        tx,
        first,
        idle: Duration::from_secs(3),
    })
    .unwrap();
    let addr = h.local_addr().unwrap();
    let mut silent = connect(addr);
    let Ev::Accepted(silent_id) = recv_ev(&rx) else {
        panic!()
    };
    let mut active = connect(addr);
    let Ev::Accepted(active_id) = recv_ev(&rx) else {
        panic!()
    };
    // The active peer talks, which moves its deadline to `idle` (3 s) from now.
    active.write_all(b"hi").unwrap();
    assert_eq!(read_n(&mut active, 2), Outcome::Data(b"hi".to_vec()));
    let started = Instant::now();
    match recv_ev(&rx) {
        Ev::Closed(c, CloseReason::Deadline) => assert_eq!(c, silent_id),
        e => panic!("{e:?}"),
    }
    assert_eq!(read_n(&mut silent, 1), Outcome::Closed);
    // Still open unless the whole 3 s idle period passed (a loaded machine can be slow).
    active.write_all(b"still here").unwrap();
    if started.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            read_n(&mut active, 10),
            Outcome::Data(b"still here".to_vec())
        );
    }
    drop(active);
    match recv_ev(&rx) {
        Ev::Closed(c, r) => assert_eq!((c, r == CloseReason::Deadline), (active_id, false)),
        e => panic!("{e:?}"),
    }
    stop(&h);
    assert_eq!(h.counters().closed_deadline, 1);
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn stop_and_join_leave_no_open_fds() {
    let _g = serial();
    let before = open_fds();
    let (tx, rx) = channel();
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap();
    let flood = 32 << 20;
    let config = ShardConfig {
        send_queue_bytes: 64 << 20,
        send_queue_messages: 1 << 16,
        ..cfg("[::1]:0")
    };
    let h = spawn(&config, 0, move |_| Dialer { tx, flood }).unwrap();
    let addr = h.local_addr().unwrap();
    assert!(addr.is_ipv6());
    // Inbound connections, some with data in flight.
    let mut clients: Vec<TcpStream> = (0..8).map(|_| connect(addr)).collect();
    for c in &mut clients[..4] {
        c.write_all(&[1; 3000]).unwrap();
    }
    // An outbound connection the shard fills with far more than the peer reads, so a send is
    // in flight when the shard stops.
    h.send_command(Cmd::Dial(target_addr, 1)).unwrap();
    let peer = accept_within(&target, WAIT);
    let conn = loop {
        if let Ev::Connected(c, 1) = recv_ev(&rx) {
            break c;
        }
    };
    let _ = conn;
    // Let the data land and the flood fill the socket buffers, then stop with everything open.
    while h.counters().recv_bytes < 4 * 3000 || h.counters().send_bytes < 1 << 20 {
        h.request_counters();
        std::thread::sleep(Duration::from_millis(5));
    }
    stop(&h);
    let c = h.counters();
    assert_eq!(c.live_connections, 0);
    assert_eq!(c.closed_shutdown, 9);
    assert!(
        c.send_bytes < flood as u64,
        "the flood was still being sent at stop"
    );
    drop(clients);
    drop(peer);
    drop(target);
    drop(h);
    assert_eq!(open_fds(), before);
}

#[test]
fn connection_cap_rejects_extra_accepts() {
    let _g = serial();
    let h = spawn(
        &ShardConfig {
            max_connections: 4,
            ..cfg("127.0.0.1:0")
        },
        0,
        |_| Echo,
    )
    .unwrap();
    let addr = h.local_addr().unwrap();
    let mut clients: Vec<TcpStream> = (0..10).map(|_| connect(addr)).collect();
    let mut echoed = 0;
    let mut closed = 0;
    for (i, c) in clients.iter_mut().enumerate() {
        // A write to a socket the shard already closed may fail: that counts as closed too.
        if c.write_all(&[i as u8]).is_err() {
            closed += 1;
            continue;
        }
        match read_n(c, 1) {
            Outcome::Data(d) => {
                assert_eq!(d, [i as u8]);
                echoed += 1;
            }
            Outcome::Closed => closed += 1,
        }
    }
    assert_eq!((echoed, closed), (4, 6));
    drop(clients);
    stop(&h);
    let c = h.counters();
    assert_eq!((c.accepted, c.rejected_cap), (4, 6));
}

/// Refuses every connection in `on_accept`.
struct Refuse;

impl Handler for Refuse {
    type Command = ();
    fn on_accept(&mut self, _io: &mut Io, _conn: ConnId, _peer: SocketAddr) -> bool {
        false
    }
    fn on_data(&mut self, _io: &mut Io, _conn: ConnId, _data: &[u8]) {
        panic!("refused connections receive nothing");
    }
    fn on_closed(&mut self, _io: &mut Io, _conn: ConnId, _reason: CloseReason) {
        panic!("refused connections are never reported closed");
    }
}

#[test]
fn refused_connections_are_closed_silently() {
    let _g = serial();
    let h = spawn(&cfg("127.0.0.1:0"), 0, |_| Refuse).unwrap();
    let addr = h.local_addr().unwrap();
    for _ in 0..3 {
        let mut s = connect(addr);
        assert_eq!(read_n(&mut s, 1), Outcome::Closed);
    }
    stop(&h);
    let c = h.counters();
    assert_eq!(
        (c.accepted, c.refused, c.closed_local, c.live_connections),
        (3, 3, 0, 0)
    );
}

#[test]
fn probe_and_config_errors() {
    let _g = serial();
    nanopeer::io::probe().unwrap();
    let bad = ShardConfig {
        recv_buffers: 3,
        ..cfg("127.0.0.1:0")
    };
    assert!(matches!(spawn(&bad, 0, |_| Echo), Err(IoError::Config(_))));
    // A port in use without SO_REUSEPORT on the other socket: bind fails cleanly.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = ShardConfig {
        listen: Some(taken.local_addr().unwrap()),
        ..cfg("127.0.0.1:0")
    };
    assert!(matches!(
        spawn(&config, 0, |_| Echo),
        Err(IoError::Setup { what: "bind", .. })
    ));
}

/// Panics on the first byte.
struct Bomb;

impl Handler for Bomb {
    type Command = ();
    fn on_data(&mut self, _io: &mut Io, _conn: ConnId, _data: &[u8]) {
        panic!("handler bug (expected by the test)");
    }
}

#[test]
fn handler_panic_ends_the_shard_cleanly() {
    let _g = serial();
    let before = open_fds();
    let h = spawn(&cfg("127.0.0.1:0"), 0, |_| Bomb).unwrap();
    let mut s = connect(h.local_addr().unwrap());
    s.write_all(b"boom").unwrap();
    assert!(matches!(h.join(), Err(IoError::Panicked)));
    assert!(h.is_stopped());
    assert!(h.send_command(()).is_err());
    assert_eq!(read_n(&mut s, 1), Outcome::Closed);
    drop(s);
    drop(h);
    assert_eq!(open_fds(), before);
}

/// Blocks its shard for the commanded time, so its listener stops accepting.
struct Sleeper;

impl Handler for Sleeper {
    type Command = Duration;
    fn on_command(&mut self, _io: &mut Io, pause: Duration) {
        std::thread::sleep(pause);
    }
    fn on_data(&mut self, _io: &mut Io, _conn: ConnId, _data: &[u8]) {}
}

#[test]
fn connect_timeout_fires() {
    let _g = serial();
    // A target whose accept queue (backlog 1) is full: the kernel drops further SYNs.
    let target = spawn(
        &ShardConfig {
            backlog: 1,
            ..cfg("127.0.0.1:0")
        },
        0,
        |_| Sleeper,
    )
    .unwrap();
    let addr = target.local_addr().unwrap();
    target.send_command(Duration::from_millis(1000)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let fillers: Vec<_> = (0..3)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok())
        .collect();
    let (tx, rx) = channel();
    let config = ShardConfig {
        listen: None,
        connect_timeout: Duration::from_millis(150),
        ..cfg("127.0.0.1:0")
    };
    let dialer = spawn(&config, 0, move |_| Dialer { tx, flood: 0 }).unwrap();
    dialer.send_command(Cmd::Dial(addr, 3)).unwrap();
    match recv_ev(&rx) {
        Ev::ConnectFailed(3, kind) => assert_eq!(kind, ErrorKind::TimedOut),
        e => panic!("{e:?}"),
    }
    stop(&dialer);
    stop(&target);
    drop(fillers);
    assert_eq!(dialer.counters().connects_failed, 1);
}

/// Evicts the oldest inbound connection when the table is full; dials on command and reports
/// whether the dial was taken.
struct Evictor {
    tx: Sender<Result<(), IoError>>,
    order: std::collections::VecDeque<ConnId>,
}

impl Handler for Evictor {
    type Command = SocketAddr;
    fn screen_inbound(&mut self, _io: &mut Io, _peer: SocketAddr, full: bool) -> Screen {
        match (full, self.order.pop_front()) {
            (true, Some(oldest)) => Screen::Evict(oldest),
            (true, None) => Screen::Refuse,
            (false, x) => {
                if let Some(x) = x {
                    self.order.push_front(x);
                }
                Screen::Accept
            }
        }
    }
    fn on_accept(&mut self, _io: &mut Io, conn: ConnId, _peer: SocketAddr) -> bool {
        self.order.push_back(conn);
        true
    }
    fn on_command(&mut self, io: &mut Io, addr: SocketAddr) {
        let _ = self.tx.send(io.dial(addr, 1).map(|_| ()));
    }
    fn on_data(&mut self, _io: &mut Io, _conn: ConnId, _data: &[u8]) {}
    fn on_closed(&mut self, _io: &mut Io, conn: ConnId, _reason: CloseReason) {
        self.order.retain(|c| *c != conn);
    }
}

/// A full inbound table evicts (the oldest goes, the newcomer stays), and outbound dials have a
/// cap of their own that inbound connections never use.
#[test]
fn full_inbound_table_evicts_and_outbound_has_its_own_cap() {
    let _g = serial();
    let (tx, rx) = channel();
    let h = spawn(
        &ShardConfig {
            max_connections: 3,
            max_outbound: 2,
            ..cfg("127.0.0.1:0")
        },
        0,
        move |_| Evictor {
            tx,
            order: Default::default(),
        },
    )
    .unwrap();
    let addr = h.local_addr().unwrap();
    let mut clients: Vec<TcpStream> = Vec::new();
    for _ in 0..5 {
        clients.push(connect(addr));
        std::thread::sleep(Duration::from_millis(30));
    }
    // The first two were evicted for the fourth and fifth: they read EOF; the rest stay open.
    let mut buf = [0u8; 1];
    for (i, c) in clients.iter_mut().enumerate() {
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let r = c.read(&mut buf);
        if i < 2 {
            assert!(matches!(r, Ok(0)), "client {i} not evicted: {r:?}");
        } else {
            assert!(r.is_err(), "client {i} closed: {r:?}");
        }
    }
    // The inbound table is full, yet dials go out, up to their own cap.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let taddr = target.local_addr().unwrap();
    for _ in 0..2 {
        h.send_command(taddr).unwrap();
        assert!(rx.recv_timeout(WAIT).unwrap().is_ok());
    }
    h.send_command(taddr).unwrap();
    assert!(matches!(
        rx.recv_timeout(WAIT).unwrap(),
        Err(IoError::ConnectionCap)
    ));
    stop(&h);
    let c = h.counters();
    assert_eq!((c.accepted, c.evicted, c.closed_evicted), (5, 2, 2));
    assert_eq!(c.rejected_cap, 0);
    drop(clients);
}

#[test]
fn abortive_close_after_eof_resets_only_when_asked() {
    let _g = serial();
    for abortive in [false, true] {
        let mut config = cfg("127.0.0.1:0");
        config.abortive_close_after_eof = abortive;
        let h = spawn(&config, 0, |_| Echo).unwrap();
        let mut s = connect(h.local_addr().unwrap());
        s.write_all(b"ping").unwrap();
        assert_eq!(read_n(&mut s, 4), Outcome::Data(b"ping".to_vec()));
        // Half-close: the shard reads EOF and closes its side, with a FIN or a reset.
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let r = s.read(&mut [0u8; 1]).map_err(|e| e.kind());
        let expected = if abortive {
            Err(ErrorKind::ConnectionReset)
        } else {
            Ok(0)
        };
        assert_eq!(r, expected, "abortive {abortive}");
        stop(&h);
        let c = h.counters();
        assert_eq!((c.closed_peer, c.closed_abortive), (1, u64::from(abortive)));
    }
}
