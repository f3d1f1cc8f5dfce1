//! A `nanopeer run` child process for the tests that run the real binary (`tests/run.rs`,
//! `tests/process.rs`): free loopback ports, one-shot HTTP, RPC and `/metrics` helpers, and
//! [`Proc`], the node with its own data directory, log file, listen, RPC and metrics ports.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nanopeer::endpoint::Endpoint;
use nanopeer::ops::metrics::{Sample, parse_text};
use nanopeer::store::PeerStore;
use nanopeer::types::Network;
use serde_json::{Value, json};

use super::wait_until;

pub const BIN: &str = env!("CARGO_BIN_EXE_nanopeer");
pub const UP_WITHIN: Duration = Duration::from_secs(10);
pub const EXIT_WITHIN: Duration = Duration::from_secs(5);

/// `N` distinct loopback ports that were free a moment ago. All `N` are held at once while
/// they are picked: ports picked one after another may repeat (the kernel may hand out a
/// port again as soon as its socket is closed), and a node given the same port for two
/// servers fails to start.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("local address").port())
}

pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One HTTP/1.1 request; `(status, body)`, or `None` if nothing answers.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
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

pub fn rpc(addr: SocketAddr, req: Value) -> Option<Value> {
    let (status, body) = http(addr, "POST", "/", &req.to_string())?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

pub fn metrics(addr: SocketAddr) -> Vec<Sample> {
    let (status, body) = http(addr, "GET", "/metrics", "").expect("/metrics answers");
    assert_eq!(status, 200, "{body}");
    parse_text(&body).unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{body}"))
}

pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
}

/// A `nanopeer run` child process with its own data directory, listen, RPC and metrics ports.
pub struct Proc {
    pub child: Child,
    pub data: PathBuf,
    pub log: PathBuf,
    pub listen: SocketAddr,
    pub rpc: SocketAddr,
    pub metrics: SocketAddr,
}

impl Proc {
    /// Starts `nanopeer run --network dev` in `data` (log in `data/../<name>.log`).
    pub fn spawn(root: &Path, name: &str, data: &Path, peers: &[SocketAddr]) -> Proc {
        Proc::spawn_with(root, name, data, peers, &[])
    }

    /// [`Proc::spawn`] with `extra` arguments after the others.
    pub fn spawn_with(
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
    pub fn launch(
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
pub enum Listen {
    /// `--listen ADDR`; reached there.
    At(SocketAddr),
    /// `--listen ADDR`, reached at another address (e.g. `[::]:p` reached at 127.0.0.1:p).
    Via(SocketAddr, SocketAddr),
    /// No `--listen` (the network's default, `[::]:44000` on dev), reached at 127.0.0.1.
    Default,
}

/// A node about to be started ([`Proc::launch`]); [`Launch::start`] spawns it.
pub struct Launch {
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
    pub fn with_ports(mut self, rpc: SocketAddr, metrics: SocketAddr) -> Proc {
        (self.rpc, self.metrics) = (rpc, metrics);
        self.start()
    }

    pub fn start(self) -> Proc {
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
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until RPC `version` answers; returns it.
    pub fn wait_up(&mut self) -> Value {
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

    pub fn node_id(&self) -> String {
        let v = rpc(self.rpc, json!({"action": "node_id"})).expect("node_id answers");
        v["node_id"].as_str().expect("node_id text").to_string()
    }

    /// `peers` with details: endpoint text → details.
    pub fn peers(&self) -> serde_json::Map<String, Value> {
        rpc(self.rpc, json!({"action": "peers", "peer_details": true}))
            .and_then(|v| v["peers"].as_object().cloned())
            .unwrap_or_default()
    }

    /// A `stats` counter.
    pub fn stat(&self, stat_type: &str, detail: &str) -> Option<u64> {
        let v = rpc(self.rpc, json!({"action": "stats", "type": "counters"}))?;
        v["entries"]
            .as_array()?
            .iter()
            .find(|e| e["type"] == stat_type && e["detail"] == detail)
            .and_then(|e| e["value"].as_str()?.parse().ok())
    }

    /// Sends SIGTERM and waits for the exit (at most [`EXIT_WITHIN`]).
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
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

    pub fn stored_peers(&self) -> Vec<Endpoint> {
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

/// Sends `signal` (`HUP`, `TERM`, …) to the child.
pub fn signal(p: &Proc, signal: &str) {
    let pid = p.child.id().to_string();
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} {pid} failed");
}
