//! The systemd unit in `contrib/systemd/nanopeer.service`: the directives an operator relies on
//! are there (restart policy, descriptor limit, data directory, hardening, a system-call filter
//! that keeps io_uring), its command line is one this binary accepts, and `systemd-analyze
//! verify` finds nothing to say about it (where that tool exists; elsewhere the test prints why
//! it skipped that part).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nanopeer::io::ShardConfig;
use nanopeer::node::fds_needed;

const BIN: &str = env!("CARGO_BIN_EXE_nanopeer");
const UNIT: &str = include_str!("../contrib/systemd/nanopeer.service");
/// Where the unit runs the binary from (README, "Install").
const INSTALLED_BIN: &str = "/usr/local/bin/nanopeer";

/// The unit's `Key=value` settings of `section`, in order (a key may repeat), with comments
/// dropped and backslash continuations joined.
fn settings(unit: &str, section: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut logical = String::new();
    for raw in unit.lines() {
        let line = raw.trim();
        if logical.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let l = std::mem::take(&mut logical);
        if l.starts_with('[') && l.ends_with(']') {
            current = l[1..l.len() - 1].to_string();
        } else if current == section
            && let Some((k, v)) = l.split_once('=')
        {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// Every value given to `key` in `[Service]`.
fn all(key: &str) -> Vec<String> {
    settings(UNIT, "Service")
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// The one value of `key` in `[Service]`.
fn one(key: &str) -> String {
    let v = all(key);
    assert_eq!(v.len(), 1, "{key} should be set once, is {v:?}");
    v[0].clone()
}

#[test]
fn unit_keeps_its_restart_policy_limits_and_hardening() {
    // restart on failure (a thread that died exits 70), but not on a configuration error
    assert_eq!(one("Restart"), "on-failure");
    let no_restart: Vec<String> = one("RestartPreventExitStatus")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(no_restart.contains(&"2".to_string()), "{no_restart:?}");
    assert!(!no_restart.contains(&"70".to_string()), "{no_restart:?}");

    // hardening the issue names, each with the value that turns it on
    for (key, want) in [
        ("NoNewPrivileges", "true"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "true"),
        ("PrivateTmp", "true"),
        ("PrivateDevices", "true"),
        ("MemoryDenyWriteExecute", "true"),
        ("RestrictNamespaces", "true"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(one(key), want, "{key}");
    }
    let families = one("RestrictAddressFamilies");
    for f in ["AF_INET", "AF_INET6"] {
        assert!(families.split_whitespace().any(|x| x == f), "{families}");
    }

    // the system-call filter allows the ordinary service set and io_uring, and nothing denies
    // io_uring afterwards (a `~` list)
    let filters = all("SystemCallFilter");
    let allow = filters.first().expect("SystemCallFilter is set");
    assert!(!allow.starts_with('~'), "{allow}");
    let calls: Vec<&str> = allow.split_whitespace().collect();
    for c in [
        "@system-service",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
    ] {
        assert!(calls.contains(&c), "{c} missing from {allow}");
    }
    for deny in filters.iter().filter(|f| f.starts_with('~')) {
        for c in ["io_uring", "@aio", "@system-service", "@resources"] {
            assert!(!deny.contains(c), "a deny list takes {c}: {deny}");
        }
    }

    // the data directory: systemd creates /var/lib/<StateDirectory>, writable under
    // ProtectSystem=strict, and the command line points the node at it
    let state = one("StateDirectory");
    assert_eq!(state, "nanopeer");
    let exec = one("ExecStart");
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(&args[..2], [INSTALLED_BIN, "run"], "{exec}");
    let data = args
        .windows(2)
        .find(|w| w[0] == "--data-path")
        .map(|w| w[1])
        .expect("--data-path in ExecStart");
    assert_eq!(data, format!("/var/lib/{state}"));

    // the descriptor limit holds the default connection caps on a machine of 256 cores
    // (255 shards, one core for the crawler)
    let limit: u64 = one("LimitNOFILE").parse().expect("LimitNOFILE is a number");
    let io = ShardConfig::default();
    let per_shard = io.max_connections + io.max_outbound;
    let needed = fds_needed(255, per_shard);
    assert!(
        needed <= limit,
        "LimitNOFILE={limit} is below the {needed} descriptors of 255 shards × {per_shard}"
    );
    assert!(limit <= 1 << 20, "above the kernel's default fs.nr_open");
    // an unprivileged service's io_uring rings count against RLIMIT_MEMLOCK (≈ 0.54 MiB per
    // shard): the default 8 MiB would stop it at 14 shards
    assert_eq!(one("LimitMEMLOCK"), "infinity");
}

/// Runs the binary with `args` (at most 20 s) and returns its exit status and output.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn unit_command_line_is_accepted_and_a_config_error_is_not_restarted() {
    // `config show` takes `run`'s flags: the unit's flags parse and resolve as intended
    let exec = one("ExecStart");
    let flags: Vec<&str> = exec
        .split_whitespace()
        .skip(2)
        .filter(|a| !a.starts_with('$'))
        .collect();
    let mut show = vec!["config", "show"];
    show.extend(&flags);
    let (code, out) = run(&show);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("network = \"live\""), "{out}");
    assert!(out.contains("data_path = \"/var/lib/nanopeer\""), "{out}");

    // an invalid configuration exits with a status the unit does not restart on (dev network,
    // loopback: nothing is dialed even if it started)
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, out) = run(&[
        "run",
        "--network",
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--data-path",
        data.to_str().unwrap(),
        "--config",
        "limits.max_peers_per_ip=banana",
    ]);
    let code = code.expect("exited by itself");
    let no_restart = one("RestartPreventExitStatus");
    assert!(
        no_restart.split_whitespace().any(|s| s == code.to_string()),
        "config error exits {code}, RestartPreventExitStatus={no_restart}: {out}"
    );
    assert!(out.contains("limits.max_peers_per_ip"), "{out}");
}

/// `systemd-analyze verify` on `unit` written as `dir/nanopeer.service`: its exit status and
/// the lines of its output that are about that unit.
fn verify(dir: &Path, unit: &str) -> (bool, Vec<String>) {
    let path = dir.join("nanopeer.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let about_unit = text
        .lines()
        .filter(|l| l.contains("nanopeer"))
        .map(str::to_string)
        .collect();
    (out.status.success(), about_unit)
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    if let Err(e) = Command::new("systemd-analyze").arg("--version").output() {
        println!(
            "skipped: systemd-analyze is not available ({e}); the unit's directives are still \
             checked by unit_keeps_its_restart_policy_limits_and_hardening"
        );
        return;
    }
    // verify needs the ExecStart binary to exist: point it at the one just built
    assert!(UNIT.contains(INSTALLED_BIN));
    let unit = UNIT.replace(INSTALLED_BIN, BIN);
    let dir = tempfile::tempdir().unwrap();
    let (ok, warnings) = verify(dir.path(), &unit);
    assert!(
        ok && warnings.is_empty(),
        "systemd-analyze verify: {warnings:#?}"
    );
    // and it does find a mistake: a misspelt directive and an unknown system call
    let broken = unit.replace(
        "NoNewPrivileges=true",
        "NoNewPrivileges=true\nNoNewPrivilege=true\nSystemCallFilter=io_uring_bogus",
    );
    let (_, warnings) = verify(dir.path(), &broken);
    assert!(
        warnings.iter().any(|l| l.contains("NoNewPrivilege'"))
            && warnings.iter().any(|l| l.contains("io_uring_bogus")),
        "{warnings:#?}"
    );
}
