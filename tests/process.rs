//! The node process as a supervisor and a scraper see it: SIGHUP neither stops nor kills it,
//! `--log-format json` writes JSON lines, the whole `/metrics` page parses with the reference
//! client library's parser, and on a host without IPv6 the default listener falls back to
//! IPv4. The real binary in child processes on loopback, one at a time.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nanopeer::ops::metrics::parse_text;
use serde_json::{Value, json};

mod common;
use common::proc::{
    Listen, Proc, UP_WITHIN, free_port, http, loopback, metric, metrics, rpc, signal,
};
use common::{serial, wait_until};

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
                // bounded: without a package index the test skips within ~40 s, not minutes
                "--timeout",
                "20",
                "--retries",
                "1",
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
