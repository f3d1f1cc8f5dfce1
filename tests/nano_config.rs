//! A nano-node operator's configuration: `config-node.toml` and `config-rpc.toml` in the data
//! directory with nano-node's key names, nano-node's `--config key=value` and `--data_path`.
//! The layers (defaults < data-directory files < `--config FILE` < `--config key=value` <
//! flags) are checked on the resolved configuration; the last test starts a node exactly from
//! such a data directory and peers it with a second node on loopback.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use nanopeer::ops::cli::{Cli, Command as CliCommand, RunArgs};
use nanopeer::ops::config::{ConfigError, IgnoredKey, Loaded, NodeConfig};
use nanopeer::types::Network;
use serde_json::{Value, json};

mod common;
use common::{serial, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_nanopeer");

fn run_args(argv: &[&str]) -> RunArgs {
    let mut full = vec!["nanopeer", "run"];
    full.extend_from_slice(argv);
    match Cli::try_parse_from(full).unwrap().command {
        CliCommand::Run(a) => a,
        other => panic!("not run: {other:?}"),
    }
}

fn load(argv: &[&str]) -> Result<Loaded, ConfigError> {
    run_args(argv).load_config_report()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// A nano-node data directory: keys nanopeer maps, and some it does not use.
const NODE_TOML: &str = r#"
[node]
peering_port = 7001
allow_local_peers = true
preconfigured_peers = ["peer-a.example", "192.0.2.7:7002", "[2001:db8::5]:7003", "2001:db8::6"]
online_weight_minimum = "60000000000000000000000000000000000"
enable_voting = true
work_threads = 2

[node.network]
max_peers_per_ip = 9
max_peers_per_subnetwork = 33
minimum_fanout = 2

[node.tcp]
max_inbound_connections = 500
max_outbound_connections = 400
connect_timeout = 7
handshake_timeout = 3
max_attempts = 60

[node.rep_crawler]
query_timeout = 1234

[node.websocket]
enable = false

[rpc]
enable = true
enable_sign_hash = false

[opencl]
enable = false
"#;

const RPC_TOML: &str = r#"
address = "::ffff:127.0.0.1"
port = 7301
enable_control = true
max_request_size = 1024

[process]
io_threads = 4
"#;

fn nano_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config-node.toml", NODE_TOML);
    write(dir.path(), "config-rpc.toml", RPC_TOML);
    dir
}

#[test]
fn nano_node_files_map_onto_nanopeer_keys() {
    let dir = nano_dir();
    let d = dir.path().to_str().unwrap();
    let l = load(&["--data_path", d]).unwrap();
    let c = &l.config;
    assert_eq!(c.node.network, Network::Live);
    assert_eq!(
        c.listen_addr(),
        "[::]:7001".parse().unwrap(),
        "peering_port"
    );
    assert_eq!(c.proto_config().listen_port, 7001);
    assert_eq!(
        c.peers(),
        vec![
            "peer-a.example:7075",
            "192.0.2.7:7002",
            "[2001:db8::5]:7003",
            "[2001:db8::6]:7075",
        ],
        "a bare host gets the live port"
    );
    let p = c.proto_config();
    assert!(
        p.allow_local_peers,
        "allow_local_peers (false on live by default)"
    );
    assert_eq!(
        p.online_weight_minimum,
        60_000_000_000_000_000_000_000_000_000_000_000
    );
    assert_eq!((p.max_peers_per_ip, p.max_peers_per_subnetwork), (9, 33));
    assert_eq!((p.max_channels, p.max_outbound_channels), (500, 400));
    assert_eq!(c.timing.connect_timeout_ms, 7000);
    assert_eq!(c.shard_config().connect_timeout, Duration::from_secs(7));
    assert_eq!(p.handshake_timeout_ms, 3000);
    assert_eq!(p.rep_query_timeout_ms, 1234);
    // [rpc] enable = true: served on config-rpc.toml's address (v4-mapped → v4) and port
    assert_eq!(
        c.rpc_addr().unwrap(),
        Some("127.0.0.1:7301".parse().unwrap())
    );
    assert!(c.rpc.enable_control);
    assert_eq!(c.metrics_addr().unwrap(), None);

    // every key nanopeer does not use is listed (once, with its file), none is fatal
    let ignored = |origin: &str, key: &str| IgnoredKey {
        origin: origin.into(),
        key: key.into(),
    };
    let want = [
        ignored("config-rpc.toml", "max_request_size"),
        ignored("config-rpc.toml", "process.io_threads"),
        ignored("config-node.toml", "node.enable_voting"),
        ignored("config-node.toml", "node.network.minimum_fanout"),
        ignored("config-node.toml", "node.tcp.max_attempts"),
        ignored("config-node.toml", "node.websocket.enable"),
        ignored("config-node.toml", "node.work_threads"),
        ignored("config-node.toml", "opencl.enable"),
        ignored("config-node.toml", "rpc.enable_sign_hash"),
    ];
    assert_eq!(l.nano.ignored, want);
    assert_eq!(
        l.nano.files,
        vec![
            dir.path().join("config-rpc.toml"),
            dir.path().join("config-node.toml")
        ]
    );
    assert!(
        l.nano
            .ignored_text()
            .starts_with("config-rpc.toml: max_request_size, process.io_threads; config-node.toml: node.enable_voting"),
        "{}",
        l.nano.ignored_text()
    );

    // on dev, bare hosts get the dev port
    let c = load(&["--data-path", d, "--network", "dev"])
        .unwrap()
        .config;
    assert_eq!(c.peers()[0], "peer-a.example:44000");
    assert_eq!(c.peers()[3], "[2001:db8::6]:44000");
}

#[test]
fn each_layer_overrides_the_one_below() {
    let dir = nano_dir();
    let d = dir.path().to_str().unwrap();
    let file = dir.path().join("nanopeer.toml");
    std::fs::write(
        &file,
        "[node]\nlisten = \"127.0.0.1:7010\"\npeers = [\"file.example:1\"]\n\
         [limits]\nmax_peers_per_ip = 10\n[rpc]\naddress = \"127.0.0.1:7310\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let e = empty.path().to_str().unwrap();

    struct Seen {
        listen: SocketAddr,
        peers: Vec<String>,
        per_ip: u32,
        rpc: Option<SocketAddr>,
        control: bool,
    }
    let seen = |argv: &[&str]| {
        let c = load(argv).unwrap().config;
        Seen {
            listen: c.listen_addr(),
            peers: c.peers(),
            per_ip: c.proto_config().max_peers_per_ip,
            rpc: c.rpc_addr().unwrap(),
            control: c.rpc.enable_control,
        }
    };
    // defaults (an empty data directory)
    let s = seen(&["--data-path", e]);
    assert_eq!(s.listen, "[::]:7075".parse().unwrap());
    assert_eq!(s.peers, vec!["peering.nano.org:7075"]);
    assert_eq!(s.per_ip, 4);
    assert_eq!(s.rpc, None);
    assert!(!s.control);
    // the data directory's nano-node files
    let s = seen(&["--data-path", d]);
    assert_eq!(s.listen, "[::]:7001".parse().unwrap());
    assert_eq!(s.peers.len(), 4);
    assert_eq!(s.per_ip, 9);
    assert_eq!(s.rpc, Some("127.0.0.1:7301".parse().unwrap()));
    assert!(s.control);
    // --config FILE
    let s = seen(&["--data-path", d, "--config", f]);
    assert_eq!(s.listen, "127.0.0.1:7010".parse().unwrap());
    assert_eq!(s.peers, vec!["file.example:1"]);
    assert_eq!(s.per_ip, 10);
    assert_eq!(s.rpc, Some("127.0.0.1:7310".parse().unwrap()));
    assert!(s.control, "the file says nothing of it");
    // --config key=value, nano-node's names and ours, in order; whatever the position of FILE
    let s = seen(&[
        "--config",
        "node.peering_port=7020",
        "--data-path",
        d,
        "--config",
        "node.preconfigured_peers=[\"override.example\"]",
        "--config",
        f,
        "--config",
        "node.network.max_peers_per_ip=11",
        "--config",
        "rpc.address=127.0.0.1:7320",
        "--config",
        "rpc.enable_control=false",
    ]);
    assert_eq!(
        s.listen,
        "127.0.0.1:7020".parse().unwrap(),
        "port only, FILE's address kept"
    );
    assert_eq!(s.peers, vec!["override.example:7075"]);
    assert_eq!(s.per_ip, 11);
    assert_eq!(s.rpc, Some("127.0.0.1:7320".parse().unwrap()));
    assert!(!s.control);
    // flags
    let s = seen(&[
        "--data-path",
        d,
        "--config",
        f,
        "--config",
        "node.peering_port=7020",
        "--config",
        "rpc.address=127.0.0.1:7320",
        "--listen",
        "127.0.0.1:7030",
        "--peer",
        "flag.example:3",
        "--rpc",
        "7330",
    ]);
    assert_eq!(s.listen, "127.0.0.1:7030".parse().unwrap());
    assert_eq!(s.peers, vec!["flag.example:3"]);
    assert_eq!(s.rpc, Some("127.0.0.1:7330".parse().unwrap()));
    // --listen with an address alone keeps the port of the layers below
    let s = seen(&["--data-path", d, "--listen", "127.0.0.1"]);
    assert_eq!(s.listen, "127.0.0.1:7001".parse().unwrap());
    let s = seen(&["--data-path", e, "--network", "dev", "--listen", "[::1]"]);
    assert_eq!(s.listen, "[::1]:44000".parse().unwrap());

    // nano-node's `[rpc] enable` decides whether RPC is served; `rpc.enable=false` turns off
    // what a layer below turned on
    let s = seen(&["--data-path", d, "--config", "rpc.enable=false"]);
    assert_eq!(s.rpc, None);
    write(
        empty.path(),
        "config-rpc.toml",
        "port = 7401\nenable_control = true\n",
    );
    let s = seen(&["--data-path", e]);
    assert_eq!(s.rpc, None, "config-rpc.toml alone does not turn RPC on");
    assert!(s.control, "but its enable_control is carried");
    let s = seen(&["--data-path", e, "--config", "rpc.enable=true"]);
    assert_eq!(
        s.rpc,
        Some("[::1]:7401".parse().unwrap()),
        "nano-node's default address, the file's port"
    );
}

#[test]
fn data_path_alias_is_the_same_flag() {
    let dir = nano_dir();
    let d = dir.path().to_str().unwrap();
    let a = load(&["--data_path", d, "--network", "dev"]).unwrap();
    let b = load(&["--data-path", d, "--network", "dev"]).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.config.data_path(), dir.path());
    assert_eq!(
        a.config.listen_addr().port(),
        7001,
        "read from that directory"
    );
    // given twice under both names, clap refuses it like any repeated flag
    assert!(Cli::try_parse_from(["nanopeer", "run", "--data_path", d, "--data-path", d]).is_err());
    // `config show` takes it too
    let out = Command::new(BIN)
        .args(["config", "show", "--network", "dev", "--data_path", d])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("# nano-node configuration read: "),
        "{text}"
    );
    assert!(text.contains("config-node.toml"), "{text}");
    assert!(
        text.contains(
            "# nano-node keys nanopeer does not use (ignored): config-rpc.toml: max_request_size"
        ),
        "{text}"
    );
    assert!(text.contains("listen = \"[::]:7001\""), "{text}");
    assert!(text.contains("enable_control = true"), "{text}");
    // the document still parses as nanopeer's configuration, with the mapped values
    let shown = NodeConfig::from_toml_str(&text).unwrap();
    assert_eq!(shown.proto_config().max_peers_per_ip, 9);
    assert_eq!(shown.peers()[0], "peer-a.example:44000");
}

#[test]
fn dotted_overrides_are_never_file_names() {
    let empty = tempfile::tempdir().unwrap();
    let e = empty.path().to_str().unwrap();
    let c = load(&["--data-path", e, "--config", "node.peering_port=7075"])
        .unwrap()
        .config;
    assert_eq!(c.listen_addr(), "[::]:7075".parse().unwrap());
    let l = load(&[
        "--data-path",
        e,
        "--config",
        "node.tcp.max_inbound_connections=77",
        "--config",
        "node.websocket.enable=true",
        "--config",
        "node.enable_voting=false",
    ])
    .unwrap();
    assert_eq!(l.config.proto_config().max_channels, 77);
    assert_eq!(
        l.nano.ignored_text(),
        "--config: node.websocket.enable, node.enable_voting"
    );
    assert!(l.nano.files.is_empty());
    // even when a file of that name exists, an argument with `=` is a key
    let named = empty.path().join("limits.max_peers_per_ip=5");
    std::fs::write(&named, "[limits]\nmax_peers_per_ip = 6\n").unwrap();
    let arg = named.to_str().unwrap();
    assert!(nanopeer::ops::cli::is_override(arg));
    assert_eq!(
        load(&["--data-path", e, "--config", arg]).unwrap_err(),
        ConfigError::UnknownKey(arg.split_once('=').unwrap().0.to_string())
    );
    // a typo is still refused, in our sections and nano-node's alike
    for (arg, key) in [
        ("node.peering_prot=1", "node.peering_prot"),
        ("verify.batch_maxx=1", "verify.batch_maxx"),
        ("rpc.enabel=true", "rpc.enabel"),
    ] {
        assert_eq!(
            load(&["--data-path", e, "--config", arg]).unwrap_err(),
            ConfigError::UnknownKey(key.into()),
            "{arg}"
        );
    }
}

#[test]
fn bad_values_of_mapped_keys_name_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let node_file = dir.path().join("config-node.toml").display().to_string();
    let rpc_file = dir.path().join("config-rpc.toml").display().to_string();
    let check = |file: &str, text: &str, origin: &str, key: &str, needle: &str| {
        let _ = std::fs::remove_file(dir.path().join("config-node.toml"));
        let _ = std::fs::remove_file(dir.path().join("config-rpc.toml"));
        write(dir.path(), file, text);
        match load(&["--data-path", d]).unwrap_err() {
            ConfigError::NanoValue {
                origin: o,
                key: k,
                message,
            } => {
                assert_eq!((o.as_str(), k.as_str()), (origin, key), "{text}");
                assert!(message.contains(needle), "{message}");
            }
            e => panic!("{text}: {e:?}"),
        }
    };
    check(
        "config-node.toml",
        "[node]\npeering_port = 70000\n",
        &node_file,
        "node.peering_port",
        "0..=65535",
    );
    check(
        "config-node.toml",
        "[node]\npeering_port = \"7075\"\n",
        &node_file,
        "node.peering_port",
        "integer",
    );
    check(
        "config-node.toml",
        "[node]\npreconfigured_peers = [\"good.example\", \"bad host\"]\n",
        &node_file,
        "node.preconfigured_peers",
        "\"bad host\"",
    );
    check(
        "config-node.toml",
        "[node]\npreconfigured_peers = \"one.example\"\n",
        &node_file,
        "node.preconfigured_peers",
        "array",
    );
    check(
        "config-node.toml",
        "[node]\nallow_local_peers = \"yes\"\n",
        &node_file,
        "node.allow_local_peers",
        "true or false",
    );
    check(
        "config-node.toml",
        "[node]\nonline_weight_minimum = \"lots\"\n",
        &node_file,
        "node.online_weight_minimum",
        "raw",
    );
    check(
        "config-node.toml",
        "[node.network]\nmax_peers_per_ip = -1\n",
        &node_file,
        "node.network.max_peers_per_ip",
        "-1",
    );
    check(
        "config-node.toml",
        "[node.tcp]\nconnect_timeout = 0\n",
        &node_file,
        "node.tcp.connect_timeout",
        "1..=",
    );
    check(
        "config-node.toml",
        "[rpc]\nenable = 1\n",
        &node_file,
        "rpc.enable",
        "true or false",
    );
    check(
        "config-rpc.toml",
        "address = \"localhost\"\n",
        &rpc_file,
        "address",
        "not an IP address",
    );
    check(
        "config-rpc.toml",
        "port = 0\n",
        &rpc_file,
        "port",
        "1..=65535",
    );
    check(
        "config-rpc.toml",
        "enable_control = \"true\"\n",
        &rpc_file,
        "enable_control",
        "true or false",
    );
    // a non-loopback RPC address is refused naming config-rpc.toml, unless allowed
    write(dir.path(), "config-node.toml", "[rpc]\nenable = true\n");
    write(
        dir.path(),
        "config-rpc.toml",
        "address = \"::\"\nport = 7076\n",
    );
    match load(&["--data-path", d]).unwrap_err() {
        ConfigError::NanoValue {
            origin,
            key,
            message,
        } => {
            assert_eq!(
                (origin.as_str(), key.as_str()),
                (rpc_file.as_str(), "address")
            );
            assert!(message.contains("rpc.allow_remote=true"), "{message}");
        }
        e => panic!("{e:?}"),
    }
    let c = load(&["--data-path", d, "--config", "rpc.allow_remote=true"]).unwrap();
    assert_eq!(
        c.config.rpc_addr().unwrap(),
        Some("[::]:7076".parse().unwrap())
    );
    // in an override the origin is --config
    let _ = std::fs::remove_file(dir.path().join("config-rpc.toml"));
    let _ = std::fs::remove_file(dir.path().join("config-node.toml"));
    match load(&["--data-path", d, "--config", "node.peering_port=port"]).unwrap_err() {
        ConfigError::NanoValue { origin, key, .. } => {
            assert_eq!(
                (origin.as_str(), key.as_str()),
                ("--config", "node.peering_port")
            )
        }
        e => panic!("{e:?}"),
    }
    // a file that is not TOML is named
    write(dir.path(), "config-node.toml", "[node\n");
    assert!(matches!(
        load(&["--data-path", d]).unwrap_err(),
        ConfigError::Syntax { source_name, .. } if source_name == node_file
    ));
    // the binary exits 2 with file and key on stderr
    write(
        dir.path(),
        "config-node.toml",
        "[node]\npeering_port = 70000\n",
    );
    let out = Command::new(BIN)
        .args(["run", "--network", "dev", "--data_path", d])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&node_file) && err.contains("node.peering_port"),
        "{err}"
    );
}

#[test]
fn readme_maps_every_mapped_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("## Coming from nano-node")
        .expect("README section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    for (file, key, to) in nanopeer::ops::config::nano::mapped_keys() {
        let nano = match key.rsplit_once('.') {
            Some((table, leaf)) => format!("`[{table}] {leaf}`"),
            None => format!("`{key}`"),
        };
        let ours = format!("`{}`", to.split(' ').next().unwrap());
        let row = section
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&nano))
            .unwrap_or_else(|| panic!("no README row for {file} {key}"));
        assert!(row.contains(&ours), "{row} lacks {ours}");
    }
}

// ---------------------------------------------------------------- end to end

/// `N` distinct loopback ports that were free a moment ago, all held while picked.
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("local address").port())
}

fn rpc(addr: SocketAddr, req: Value) -> Option<Value> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = req.to_string();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| serde_json::from_str(body).ok())?
}

/// A `nanopeer run` child; killed on drop if still running.
struct Proc {
    child: Child,
    log: std::path::PathBuf,
    rpc: SocketAddr,
}

impl Proc {
    fn spawn(args: &[&str], log: std::path::PathBuf, rpc: SocketAddr) -> Proc {
        let child = Command::new(BIN)
            .arg("run")
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn nanopeer");
        Proc { child, log, rpc }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_up(&mut self) {
        let up = wait_until(Duration::from_secs(10), || {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("nanopeer exited early ({st}):\n{}", self.log_text());
            }
            rpc(self.rpc, json!({"action": "version"})).is_some()
        });
        assert!(up, "RPC not up on {}:\n{}", self.rpc, self.log_text());
    }

    fn node_id(&self) -> String {
        let v = rpc(self.rpc, json!({"action": "node_id"})).expect("node_id answers");
        v["node_id"].as_str().expect("node_id text").to_string()
    }

    fn lists(&self, node_id: &str, peering: SocketAddr) -> bool {
        let peering = nanopeer::ops::rpc::endpoint_text(peering);
        rpc(self.rpc, json!({"action": "peers", "peer_details": true}))
            .and_then(|v| v["peers"].as_object().cloned())
            .unwrap_or_default()
            .values()
            .any(|d| d["node_id"] == node_id && d["peering"] == peering.as_str())
    }

    fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let mut code = None;
        let exited = wait_until(Duration::from_secs(5), || {
            match self.child.try_wait().unwrap() {
                Some(st) => {
                    code = st.code();
                    true
                }
                None => false,
            }
        });
        assert!(exited, "no exit after SIGTERM:\n{}", self.log_text());
        code
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Node `a` starts as a nano-node operator would start it: `--network dev --data_path DIR`
/// with nano-node's `config-node.toml` and `config-rpc.toml` in DIR (peering port, a
/// preconfigured peer, local peers allowed, RPC on), plus `--listen 127.0.0.1` so that the
/// test binds loopback only (the port stays the file's). It peers with `b`, started with
/// nanopeer's own flags.
#[test]
fn node_from_a_nano_node_data_directory_peers_on_loopback() {
    let _g = serial();
    let root = tempfile::tempdir().unwrap();
    let [a_port, a_rpc, b_port, b_rpc] = free_ports::<4>();
    let lo = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));

    let b_dir = root.path().join("b");
    let b_dir_text = b_dir.to_str().unwrap().to_string();
    let mut b = Proc::spawn(
        &[
            "--network",
            "dev",
            "--shards",
            "1",
            "--data-path",
            &b_dir_text,
            "--listen",
            &lo(b_port).to_string(),
            "--rpc",
            &lo(b_rpc).to_string(),
        ],
        root.path().join("b.log"),
        lo(b_rpc),
    );
    b.wait_up();

    let a_dir = root.path().join("a");
    std::fs::create_dir(&a_dir).unwrap();
    write(
        &a_dir,
        "config-node.toml",
        &format!(
            "[node]\npeering_port = {a_port}\npreconfigured_peers = [\"127.0.0.1:{b_port}\"]\n\
             allow_local_peers = true\nenable_voting = false\n\n[rpc]\nenable = true\n"
        ),
    );
    write(
        &a_dir,
        "config-rpc.toml",
        &format!("address = \"::ffff:127.0.0.1\"\nport = {a_rpc}\nenable_control = false\n"),
    );
    let a_dir_text = a_dir.to_str().unwrap().to_string();
    let mut a = Proc::spawn(
        &[
            "--network",
            "dev",
            "--data_path",
            &a_dir_text,
            "--listen",
            "127.0.0.1",
        ],
        root.path().join("a.log"),
        lo(a_rpc),
    );
    a.wait_up();

    let (id_a, id_b) = (a.node_id(), b.node_id());
    assert_ne!(id_a, id_b);
    assert!(
        wait_until(Duration::from_secs(10), || a.lists(&id_b, lo(b_port))
            && b.lists(&id_a, lo(a_port))),
        "--- a log\n{}\n--- b log\n{}",
        a.log_text(),
        b.log_text()
    );
    let log = a.log_text();
    let mapped = log
        .lines()
        .filter(|l| l.contains("nano-node configuration mapped"))
        .collect::<Vec<_>>();
    assert_eq!(mapped.len(), 1, "one info line:\n{log}");
    assert!(mapped[0].contains("INFO"), "{}", mapped[0]);
    assert!(
        mapped[0].contains("config-node.toml: node.enable_voting"),
        "{}",
        mapped[0]
    );
    assert!(
        log.contains(&format!("listen=127.0.0.1:{a_port}")),
        "listens on the file's peering_port, loopback only:\n{log}"
    );
    for p in [&mut a, &mut b] {
        assert_eq!(p.terminate(), Some(0), "{}", p.log_text());
    }
}
