//! `nanopeer run` as an operator runs it: the real binary in child processes on loopback (dev
//! network, one shard, data directories in temporary folders), driven over its JSON RPC and
//! `/metrics`, stopped with SIGTERM. Also [`node_options`], the config → node mapping.
//!
//! The process tests run one at a time (a global lock) to keep timings sane on a loaded
//! machine. Every wait polls with a deadline; a failing test prints the child's log.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nanopeer::crypto::genesis_hash;
use nanopeer::endpoint::Endpoint;
use nanopeer::node::default_preconfigured_peers;
use nanopeer::ops::cli::{RunArgs, node_options};
use nanopeer::ops::metrics::{Sample, parse_text};
use nanopeer::store::PeerStore;
use nanopeer::types::Network;
use serde_json::{Value, json};

mod common;
use common::{serial, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_nanopeer");
const UP_WITHIN: Duration = Duration::from_secs(10);
const EXIT_WITHIN: Duration = Duration::from_secs(5);

/// `N` distinct loopback ports that were free a moment ago. All `N` are held at once while
/// they are picked: ports picked one after another may repeat (the kernel may hand out a
/// port again as soon as its socket is closed), and a node given the same port for two
/// servers fails to start.
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("local address").port())
}

fn free_port() -> u16 {
    free_ports::<1>()[0]
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One HTTP/1.1 request; `(status, body)`, or `None` if nothing answers.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn rpc(addr: SocketAddr, req: Value) -> Option<Value> {
    let (status, body) = http(addr, "POST", "/", &req.to_string())?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

fn metrics(addr: SocketAddr) -> Vec<Sample> {
    let (status, body) = http(addr, "GET", "/metrics", "").expect("/metrics answers");
    assert_eq!(status, 200, "{body}");
    parse_text(&body).unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{body}"))
}

fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
}

/// A `nanopeer run` child process with its own data directory, listen, RPC and metrics ports.
struct Proc {
    child: Child,
    data: PathBuf,
    log: PathBuf,
    listen: SocketAddr,
    rpc: SocketAddr,
    metrics: SocketAddr,
}

impl Proc {
    /// Starts `nanopeer run --network dev` in `data` (log in `data/../<name>.log`).
    fn spawn(root: &Path, name: &str, data: &Path, peers: &[SocketAddr]) -> Proc {
        Proc::spawn_with(root, name, data, peers, &[])
    }

    /// [`Proc::spawn`] with `extra` arguments after the others.
    fn spawn_with(
        root: &Path,
        name: &str,
        data: &Path,
        peers: &[SocketAddr],
        extra: &[&str],
    ) -> Proc {
        let [listen, rpc, metrics] = free_ports::<3>().map(loopback);
        Proc::launch(root, name, data, peers, extra, Listen::At(listen), &[])
            .with_ports(rpc, metrics)
    }

    /// The general form: `listen` says whether `--listen` is given (and where the node is
    /// reached), `wrapper` runs the binary through another program (`wrapper… BIN args…`).
    fn launch(
        root: &Path,
        name: &str,
        data: &Path,
        peers: &[SocketAddr],
        extra: &[&str],
        listen: Listen,
        wrapper: &[&str],
    ) -> Launch {
        let [rpc, metrics] = free_ports::<2>().map(loopback);
        Launch {
            root: root.to_path_buf(),
            name: name.to_string(),
            data: data.to_path_buf(),
            peers: peers.to_vec(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            listen,
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
            rpc,
            metrics,
        }
    }
}

/// How a test node listens.
#[derive(Clone, Copy)]
enum Listen {
    /// `--listen ADDR`; reached there.
    At(SocketAddr),
    /// `--listen ADDR`, reached at another address (e.g. `[::]:p` reached at 127.0.0.1:p).
    Via(SocketAddr, SocketAddr),
    /// No `--listen` (the network's default, `[::]:44000` on dev), reached at 127.0.0.1.
    Default,
}

/// A node about to be started ([`Proc::launch`]); [`Launch::start`] spawns it.
struct Launch {
    root: PathBuf,
    name: String,
    data: PathBuf,
    peers: Vec<SocketAddr>,
    extra: Vec<String>,
    listen: Listen,
    wrapper: Vec<String>,
    rpc: SocketAddr,
    metrics: SocketAddr,
}

impl Launch {
    fn with_ports(mut self, rpc: SocketAddr, metrics: SocketAddr) -> Proc {
        (self.rpc, self.metrics) = (rpc, metrics);
        self.start()
    }

    fn start(self) -> Proc {
        let Launch {
            root,
            name,
            data,
            peers,
            extra,
            listen,
            wrapper,
            rpc,
            metrics,
        } = self;
        let log = root.join(format!("{name}.log"));
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(["run", "--network", "dev", "--shards", "1"])
            .arg("--data-path")
            .arg(&data)
            .args(["--rpc", &rpc.to_string()])
            .args(["--metrics", &metrics.to_string()]);
        let listen = match listen {
            Listen::At(a) => {
                cmd.args(["--listen", &a.to_string()]);
                a
            }
            Listen::Via(asked, reached) => {
                cmd.args(["--listen", &asked.to_string()]);
                reached
            }
            Listen::Default => loopback(Network::Dev.default_port()),
        };
        for p in &peers {
            cmd.args(["--peer", &p.to_string()]);
        }
        cmd.args(&extra);
        let child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn nanopeer");
        Proc {
            child,
            data,
            log,
            listen,
            rpc,
            metrics,
        }
    }
}

impl Proc {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until RPC `version` answers; returns it.
    fn wait_up(&mut self) -> Value {
        let mut version = None;
        let up = wait_until(UP_WITHIN, || {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("nanopeer exited early ({st}):\n{}", self.log_text());
            }
            version = rpc(self.rpc, json!({"action": "version"}));
            version.is_some()
        });
        assert!(up, "RPC not up within {UP_WITHIN:?}:\n{}", self.log_text());
        version.unwrap()
    }

    fn node_id(&self) -> String {
        let v = rpc(self.rpc, json!({"action": "node_id"})).expect("node_id answers");
        v["node_id"].as_str().expect("node_id text").to_string()
    }

    /// `peers` with details: endpoint text → details.
    fn peers(&self) -> serde_json::Map<String, Value> {
        rpc(self.rpc, json!({"action": "peers", "peer_details": true}))
            .and_then(|v| v["peers"].as_object().cloned())
            .unwrap_or_default()
    }

    /// A `stats` counter.
    fn stat(&self, stat_type: &str, detail: &str) -> Option<u64> {
        let v = rpc(self.rpc, json!({"action": "stats", "type": "counters"}))?;
        v["entries"]
            .as_array()?
            .iter()
            .find(|e| e["type"] == stat_type && e["detail"] == detail)
            .and_then(|e| e["value"].as_str()?.parse().ok())
    }

    /// Sends SIGTERM and waits for the exit (at most [`EXIT_WITHIN`]).
    fn terminate(&mut self) -> (ExitStatus, Duration) {
        let t0 = Instant::now();
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let mut status = None;
        wait_until(EXIT_WITHIN, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        let status = status.unwrap_or_else(|| {
            panic!(
                "no exit within {EXIT_WITHIN:?} of SIGTERM:\n{}",
                self.log_text()
            )
        });
        (status, t0.elapsed())
    }

    fn stored_peers(&self) -> Vec<Endpoint> {
        let store = PeerStore::open(&self.data).expect("open the peer store after exit");
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        store.load(now_ms).into_iter().map(|(ep, _)| ep).collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Only if a test failed before stopping it.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn fresh_node_serves_rpc_and_metrics_and_stops_on_sigterm() {
    let _g = serial();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut p = Proc::spawn(root.path(), "fresh", &data, &[]);
    let version = p.wait_up();
    assert_eq!(version["protocol_version"], "21");
    assert_eq!(version["network"], "dev");
    assert_eq!(
        version["network_identifier"],
        genesis_hash(Network::Dev).to_hex()
    );
    let id = rpc(p.rpc, json!({"action": "node_id"})).unwrap();
    let node_id = id["node_id"].as_str().unwrap().to_string();
    assert!(node_id.starts_with("node_"), "{id}");
    assert_eq!(id["public"].as_str().unwrap().len(), 64, "{id}");
    assert!(id.get("private").is_none(), "never the private key: {id}");
    assert!(p.peers().is_empty(), "a fresh dev node has no peers");
    let quorum = rpc(p.rpc, json!({"action": "confirmation_quorum"})).unwrap();
    assert_eq!(quorum["online_weight_quorum_percent"], "67", "{quorum}");
    let stats = rpc(p.rpc, json!({"action": "stats", "type": "counters"})).unwrap();
    let entries = stats["entries"].as_array().expect("stats entries");
    assert!(
        entries
            .iter()
            .any(|e| e["type"] == "handshake" && e["detail"] == "ok"),
        "{stats}"
    );

    let m = metrics(p.metrics);
    assert_eq!(metric(&m, "nanopeer_channels", &[]), Some(0.0));
    assert!(metric(&m, "nanopeer_uptime_seconds", &[]).is_some());
    assert!(metric(&m, "nanopeer_shard_live_connections", &[("shard", "0")]).is_some());
    // Each server serves only its own path.
    assert_eq!(http(p.rpc, "GET", "/metrics", "").map(|r| r.0), Some(404));
    assert_eq!(
        http(p.metrics, "POST", "/", r#"{"action":"version"}"#).map(|r| r.0),
        Some(404)
    );

    let (status, took) = p.terminate();
    assert_eq!(status.code(), Some(0), "{}", p.log_text());
    assert!(took < EXIT_WITHIN);
    let log = p.log_text();
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(data.join("node_id_private.key").is_file());
    assert!(data.join("peers.redb").is_file());

    // The node id survives a restart in the same data directory.
    let mut again = Proc::spawn(root.path(), "again", &data, &[]);
    again.wait_up();
    assert_eq!(again.node_id(), node_id);
    let (status, _) = again.terminate();
    assert_eq!(status.code(), Some(0), "{}", again.log_text());
}

#[test]
fn two_processes_peer_list_each_other_and_remember_each_other() {
    let _g = serial();
    let root = tempfile::tempdir().unwrap();
    // a allows RPC control (keepalive makes it dial); b does not
    let mut a = Proc::spawn_with(
        root.path(),
        "a",
        &root.path().join("a"),
        &[],
        &["--config", "rpc.enable_control=true"],
    );
    a.wait_up();
    let mut b = Proc::spawn(root.path(), "b", &root.path().join("b"), &[a.listen]);
    b.wait_up();
    let (id_a, id_b) = (a.node_id(), b.node_id());
    assert_ne!(id_a, id_b);
    let lists = |x: &Proc, other_id: &str, other_listen: SocketAddr| {
        let peering = nanopeer::ops::rpc::endpoint_text(other_listen);
        x.peers()
            .values()
            .any(|d| d["node_id"] == other_id && d["peering"] == peering.as_str())
    };
    assert!(
        wait_until(UP_WITHIN, || lists(&a, &id_b, b.listen)
            && lists(&b, &id_a, a.listen)),
        "a peers: {:?}\nb peers: {:?}\n--- a log\n{}\n--- b log\n{}",
        a.peers(),
        b.peers(),
        a.log_text(),
        b.log_text()
    );
    // b dialed a: the channel on b's side is to a's listen address.
    assert!(
        b.peers()
            .contains_key(&nanopeer::ops::rpc::endpoint_text(a.listen)),
        "{:?}",
        b.peers()
    );
    // keepalive over RPC: refused for a peer already connected, the reason in the error.
    let refused = rpc(
        a.rpc,
        json!({"action": "keepalive", "address": "127.0.0.1", "port": b.listen.port().to_string()}),
    )
    .unwrap();
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("Connected")),
        "{refused}"
    );
    // b, without control, refuses the action itself
    let keepalive_a =
        json!({"action": "keepalive", "address": "127.0.0.1", "port": a.listen.port().to_string()});
    assert_eq!(
        rpc(b.rpc, keepalive_a),
        Some(json!({"error": "RPC control is disabled"}))
    );
    // Telemetry broadcasts (every 0.5 s on dev) reach the other side, signed by a's node id.
    let telemetry_of_a = || {
        rpc(b.rpc, json!({"action": "telemetry", "raw": true}))
            .and_then(|v| v["metrics"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .any(|t| {
                t["node_id"] == id_a.as_str()
                    && t["genesis_block"] == genesis_hash(Network::Dev).to_hex()
            })
    };
    assert!(
        wait_until(Duration::from_secs(5), telemetry_of_a),
        "b has no telemetry from a"
    );
    for p in [&a, &b] {
        let ok = wait_until(Duration::from_secs(3), || {
            let m = metrics(p.metrics);
            metric(&m, "nanopeer_channels", &[]) == Some(1.0)
                && metric(&m, "nanopeer_handshakes_total", &[("outcome", "ok")])
                    .is_some_and(|v| v >= 1.0)
        });
        assert!(ok, "metrics: one channel, a successful handshake");
    }

    // b stops first, so a's channel to b is gone at a's stop-time flush: a remembers b only
    // through a periodic peer-store flush (every second on dev) while they were connected.
    // Wait for two more of a's flushes (the first could predate the channel).
    let f0 = a.stat("peer_history", "flush").expect("a's flush counter");
    assert!(
        wait_until(Duration::from_secs(5), || a
            .stat("peer_history", "flush")
            .is_some_and(|f| f >= f0 + 2)),
        "a's periodic peer-store flushes:\n{}",
        a.log_text()
    );
    for p in [&mut b, &mut a] {
        let (status, took) = p.terminate();
        assert_eq!(status.code(), Some(0), "{}", p.log_text());
        assert!(took < EXIT_WITHIN);
    }
    let a_stored = a.stored_peers();
    let b_stored = b.stored_peers();
    assert!(
        a_stored.contains(&Endpoint::from(b.listen)),
        "a's store {a_stored:?} lacks b {}",
        b.listen
    );
    assert!(
        b_stored.contains(&Endpoint::from(a.listen)),
        "b's store {b_stored:?} lacks a {}",
        a.listen
    );
}

fn run_expecting_failure(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run nanopeer");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_errors_exit_2_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (code, err) = run_expecting_failure(&[
        "--network",
        "dev",
        "--data-path",
        data,
        "--config",
        "verify.batch_max=0",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("verify.batch_max"), "{err}");
    let (code, err) = run_expecting_failure(&[
        "--network",
        "dev",
        "--data-path",
        data,
        "--rpc",
        "192.0.2.1:7076",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("rpc.address"), "{err}");
}

#[test]
fn unusable_data_path_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let port = free_port().to_string();
    let (code, err) = run_expecting_failure(&[
        "--network",
        "dev",
        "--shards",
        "1",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-path",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("nanopeer: cannot start the node"), "{err}");
    assert!(last.contains("not-a-dir"), "{err}");
}

#[test]
fn node_options_follow_the_config() {
    let args = RunArgs {
        network: Some(Network::Live),
        data_path: Some("/tmp/x".into()),
        ..RunArgs::default()
    };
    let o = node_options(&args.load_config().unwrap());
    assert_eq!(o.network, Network::Live);
    assert_eq!(o.data_path, PathBuf::from("/tmp/x"));
    assert_eq!(o.listen.port(), 7075);
    assert_eq!(
        o.preconfigured_peers,
        Some(default_preconfigured_peers(Network::Live))
    );
    assert_eq!(o.proto.network, Network::Live);

    let args = RunArgs {
        network: Some(Network::Dev),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        shards: Some(3),
        peers: vec!["127.0.0.1:5000".into()],
        config: vec![
            "verify.batch_max=32".into(),
            "verify.batch_delay_us=50".into(),
            "rep_crawler.online_weight_minimum=\"1000\"".into(),
            "node.shard_cores=[1]".into(),
            "node.crawler_core=0".into(),
            "io.recv_buffers=128".into(),
        ],
        ..RunArgs::default()
    };
    let o = node_options(&args.load_config().unwrap());
    assert_eq!(o.network, Network::Dev);
    assert_eq!(o.listen, "127.0.0.1:0".parse::<SocketAddr>().unwrap());
    assert_eq!(o.shards, Some(3));
    assert_eq!(
        o.preconfigured_peers,
        Some(vec!["127.0.0.1:5000".to_string()]),
        "--peer replaces the network's list"
    );
    assert_eq!((o.batch_max, o.batch_delay_us), (32, 50));
    assert_eq!(o.online_weight_minimum, Some(1000));
    assert_eq!(o.proto.online_weight_minimum, 1000);
    assert_eq!(o.io.cores, vec![1]);
    assert_eq!(o.crawler_core, Some(0));
    assert_eq!(o.io.recv_buffers, 128);
}

// ---------------------------------------------------------------- signals, metrics, IPv6

/// Sends `signal` (`HUP`, `TERM`, …) to the child.
fn signal(p: &Proc, signal: &str) {
    let pid = p.child.id().to_string();
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} {pid} failed");
}

#[test]
fn sighup_neither_kills_nor_stops_the_node() {
    let _g = serial();
    let root = tempfile::tempdir().unwrap();
    let mut p = Proc::spawn_with(
        root.path(),
        "hup",
        &root.path().join("data"),
        &[],
        &["--log-format", "json"],
    );
    p.wait_up();
    // --log-format json: every line is one JSON object; the start-up line names the backend
    let lines: Vec<Value> = p
        .log_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let started = lines
        .iter()
        .find(|l| l["fields"]["message"] == "nanopeer node started")
        .unwrap_or_else(|| panic!("no start-up line: {lines:?}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(
        started["fields"]["crypto_backend"],
        nanopeer::crypto::backend_name()
    );
    signal(&p, "HUP");
    assert!(
        wait_until(Duration::from_secs(5), || p
            .log_text()
            .contains("SIGHUP received")),
        "no SIGHUP log line:\n{}",
        p.log_text()
    );
    signal(&p, "HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        matches!(p.child.try_wait(), Ok(None)),
        "the node exited after SIGHUP:\n{}",
        p.log_text()
    );
    // still serving RPC and metrics
    assert_eq!(
        rpc(p.rpc, json!({"action": "version"})).unwrap()["network"],
        "dev"
    );
    assert!(metric(&metrics(p.metrics), "nanopeer_uptime_seconds", &[]).is_some());
    assert!(!p.log_text().contains("signal received, stopping"));
    assert!(
        p.log_text()
            .lines()
            .any(|l| l.contains("SIGHUP received") && l.contains("\"level\":\"INFO\"")),
        "{}",
        p.log_text()
    );
    let (status, _) = p.terminate();
    assert_eq!(status.code(), Some(0), "{}", p.log_text());
    assert!(p.log_text().contains("stopped cleanly"));
}

/// A Python with `prometheus_client` (the reference client library's text parser): a venv
/// under the cargo target dir, made and filled from PyPI on first use and kept, else a
/// system-wide install. `Err`: why neither works here.
fn prometheus_python() -> Result<PathBuf, String> {
    let imports = |python: &Path| {
        Command::new(python)
            .args(["-c", "import prometheus_client.parser"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prometheus-client-venv");
    let python = venv.join("bin/python");
    if imports(&python) {
        return Ok(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .output();
    let pip = venv.join("bin/pip");
    let why = match made {
        Err(e) => format!("python3: {e}"),
        Ok(o) if !o.status.success() => {
            format!("python3 -m venv: {}", String::from_utf8_lossy(&o.stderr))
        }
        Ok(_) => match Command::new(&pip)
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "prometheus_client",
            ])
            .output()
        {
            Ok(o) if o.status.success() && imports(&python) => return Ok(python),
            Ok(o) => format!(
                "pip install prometheus_client: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("pip: {e}"),
        },
    };
    let system = PathBuf::from("python3");
    if imports(&system) {
        return Ok(system);
    }
    Err(why)
}

/// Parses a whole exposition with `prometheus_client.parser`; any format error fails it.
/// Prints one JSON object per family: name, type, samples as `[name, labels, value]`.
const PARSE_SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type,
                "samples": [[s.name, s.labels, repr(float(s.value))] for s in f.samples]})
print(json.dumps(out))
"#;

#[test]
fn metrics_page_parses_with_the_prometheus_python_parser() {
    let python = match prometheus_python() {
        Ok(p) => p,
        Err(why) => {
            println!("skipped: no Python prometheus_client parser here ({why})");
            return;
        }
    };
    let _g = serial();
    let root = tempfile::tempdir().unwrap();
    let mut p = Proc::spawn(root.path(), "scraped", &root.path().join("data"), &[]);
    p.wait_up();
    let (status, page) = http(p.metrics, "GET", "/metrics", "").expect("/metrics answers");
    assert_eq!(status, 200);
    parse_text(&page).unwrap_or_else(|e| panic!("our strict reader: {e}\n{page}"));
    let mut child = Command::new(&python)
        .args(["-c", PARSE_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the parser");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejects the page: {}\n{page}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    // nothing skipped: as many samples parsed as there are sample lines
    let lines = page
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    let parsed: usize = families
        .iter()
        .map(|f| f["samples"].as_array().unwrap().len())
        .sum();
    assert_eq!(parsed, lines, "{page}");
    let sample = |name: &str| {
        families
            .iter()
            .flat_map(|f| f["samples"].as_array().unwrap())
            .find(|s| s[0] == name)
            .cloned()
    };
    let kind = |family: &str| {
        families
            .iter()
            .find(|f| f["name"] == family)
            .map(|f| f["type"].as_str().unwrap().to_string())
    };
    for name in [
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
        "nanopeer_build_info",
        "nanopeer_channels",
        "nanopeer_uptime_seconds",
    ] {
        let s = sample(name).unwrap_or_else(|| panic!("{name} missing:\n{page}"));
        let v: f64 = s[2].as_str().unwrap().parse().unwrap();
        assert!(v >= 0.0, "{name} = {v}");
    }
    assert_eq!(kind("process_cpu_seconds").as_deref(), Some("counter"));
    assert_eq!(
        kind("process_resident_memory_bytes").as_deref(),
        Some("gauge")
    );
    let build = sample("nanopeer_build_info").unwrap();
    assert_eq!(build[1]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(build[1]["network"], "dev");
    assert_eq!(build[1]["crypto_backend"], nanopeer::crypto::backend_name());
    assert_eq!(build[2], "1.0");
    let rss: f64 = sample("process_resident_memory_bytes").unwrap()[2]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rss > 1e6, "a running node holds more than 1 MB: {rss}");
    let (status, _) = p.terminate();
    assert_eq!(status.code(), Some(0), "{}", p.log_text());
}

/// Set in the child that [`default_listener_on_a_host_without_ipv6`] runs in a new network
/// namespace.
const NETNS_ENV: &str = "NANOPEER_TEST_IN_NETNS";

/// Runs the binary with `socket(AF_INET6, …)` failing with `EAFNOSUPPORT` (a seccomp filter,
/// as on a kernel booted with `ipv6.disable=1`): `python3 -c NO_IPV6 BIN args…`. x86_64 only.
const NO_IPV6: &str = r#"
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
def ins(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)
LD, JEQ, RET = 0x20, 0x15, 0x06
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
prog = b"".join([
    ins(LD, 0, 0, 4), ins(JEQ, 1, 0, 0xC000003E), ins(RET, 0, 0, ALLOW),  # x86_64 only
    ins(LD, 0, 0, 0), ins(JEQ, 0, 3, 41),                                 # socket(2)
    ins(LD, 0, 0, 16), ins(JEQ, 0, 1, 10),                                # AF_INET6
    ins(RET, 0, 0, ERRNO | 97), ins(RET, 0, 0, ALLOW),                    # EAFNOSUPPORT
])
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
buf = ctypes.create_string_buffer(prog, len(prog))
fprog = Fprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
    sys.exit("seccomp: errno %d" % ctypes.get_errno())
os.execv(sys.argv[1], sys.argv[1:])
"#;

/// In a network namespace whose IPv6 is disabled (`disable_ipv6 = 1`): a node on the default
/// listen address `[::]:44000` starts and serves IPv4; a second node whose process cannot open
/// IPv6 sockets at all is asked for `[::]` and falls back to `0.0.0.0` with a log line; the
/// two peer over 127.0.0.1. Skipped, with the reason printed, where `unshare -rn` (an
/// unprivileged user and network namespace) is not available.
#[test]
fn default_listener_on_a_host_without_ipv6() {
    if std::env::var_os(NETNS_ENV).is_some() {
        in_namespace_without_ipv6();
        return;
    }
    let _g = serial();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("-rn")
        .arg(&exe)
        .args([
            "--exact",
            "default_listener_on_a_host_without_ipv6",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(NETNS_ENV, "1")
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            println!("skipped: cannot run unshare ({e})");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stdout.contains("running 1 test") {
        println!("skipped: unshare -rn failed here: {stderr}");
        return;
    }
    if let Some(reason) = stdout.lines().find_map(|l| l.strip_prefix("SKIP: ")) {
        println!("skipped: {reason}");
        return;
    }
    assert!(
        out.status.success() && stdout.contains("NETNS-OK"),
        "in the namespace:\n{stdout}\n{stderr}"
    );
    for line in stdout.lines().filter(|l| l.starts_with("NOTE: ")) {
        println!("{line}");
    }
}

fn in_namespace_without_ipv6() {
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    if !up.is_ok_and(|s| s.success()) {
        println!("SKIP: cannot bring up lo in the namespace (`ip` missing?)");
        return;
    }
    for dev in ["all", "default", "lo"] {
        let path = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
        if let Err(e) = std::fs::write(&path, "1") {
            println!("SKIP: cannot write {path}: {e}");
            return;
        }
    }
    assert!(
        std::net::TcpListener::bind("[::1]:0").is_err(),
        "IPv6 is still up in the namespace"
    );
    let root = tempfile::tempdir().unwrap();
    // a: the network's default listen address, [::]:44000
    let mut a = Proc::launch(
        root.path(),
        "a",
        &root.path().join("a"),
        &[],
        &[],
        Listen::Default,
        &[],
    )
    .start();
    a.wait_up();
    let log_a = a.log_text();
    assert!(log_a.contains("listen=[::]:44000"), "{log_a}");
    // b: cannot open IPv6 sockets at all; asked for [::], it listens on 0.0.0.0
    let seccomp_ok = cfg!(target_arch = "x86_64")
        && Command::new("python3")
            .args(["-c", NO_IPV6, "/bin/true"])
            .status()
            .is_ok_and(|s| s.success());
    let port = free_port();
    let b_listen = Listen::Via(SocketAddr::from(([0u16; 8], port)), loopback(port));
    let wrapper: &[&str] = if seccomp_ok {
        &["python3", "-c", NO_IPV6]
    } else {
        println!("NOTE: no seccomp wrapper here (python3, x86_64); b runs plainly");
        &[]
    };
    let mut b = Proc::launch(
        root.path(),
        "b",
        &root.path().join("b"),
        &[a.listen],
        &[],
        b_listen,
        wrapper,
    )
    .start();
    b.wait_up();
    if seccomp_ok {
        let log_b = b.log_text();
        assert!(log_b.contains("IPv6 is not available"), "{log_b}");
        assert!(log_b.contains(&format!("listen=0.0.0.0:{port}")), "{log_b}");
    }
    let (id_a, id_b) = (a.node_id(), b.node_id());
    let lists = |x: &Proc, id: &str| x.peers().values().any(|d| d["node_id"] == id);
    assert!(
        wait_until(UP_WITHIN, || lists(&a, &id_b) && lists(&b, &id_a)),
        "no channel:\n--- a\n{}\n--- b\n{}",
        a.log_text(),
        b.log_text()
    );
    // b is reachable on IPv4 at its port
    assert!(TcpStream::connect(loopback(port)).is_ok());
    for p in [&mut b, &mut a] {
        let (status, _) = p.terminate();
        assert_eq!(status.code(), Some(0), "{}", p.log_text());
    }
    println!("NETNS-OK");
}
