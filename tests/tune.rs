//! `nanopeer tune` as a user runs it: interrupted with Ctrl-C (SIGINT) after its first point,
//! it has left that point in tune.csv, tune.json and tune.svg; `--plot-from` redraws the plot
//! from the CSV it left.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{serial, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_nanopeer");

/// Data rows of a tune CSV (the lines after the header).
fn rows(csv: &str) -> Vec<Vec<String>> {
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn ctrl_c_keeps_the_points_already_measured() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tune-out");
    // Three points of the shortest useful length; the test interrupts after the first.
    let child = Command::new(BIN)
        .args([
            "tune",
            "--shards-list",
            "1",
            "--batch-list",
            "1,16,64",
            "--duration",
            "0.4",
            "--warmup",
            "0",
            "--ceiling-secs",
            "0.05",
            "--connections",
            "8",
            "--load-threads",
            "1",
            "--no-pin",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let child_pid = child.id();
    let csv_path = out.join("tune.csv");
    let first_point = wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string(&csv_path).is_ok_and(|t| !rows(&t).is_empty())
    });
    // Ctrl-C: SIGINT to the child, which has not been waited for yet
    let sent = Command::new("kill")
        .args(["-INT", &child_pid.to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(first_point, "no point written within 60 s: {stderr}");
    assert!(sent.success());
    // Ctrl-C ended it at once, saying what was kept: no summary, the sweep cut short
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted; "), "{stderr}");
    assert!(stderr.contains(" of 3 points saved in "), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("recommended"),
        "{stderr}"
    );
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.starts_with("shards,batch_max,handshakes_per_sec,"));
    let kept = rows(&csv);
    assert!(
        (1..3).contains(&kept.len()),
        "expected the first point(s) only: {csv}"
    );
    let cols = header.split(',').count();
    for (i, r) in kept.iter().enumerate() {
        assert_eq!(r.len(), cols, "{csv}");
        assert_eq!(r[0], "1");
        assert_eq!(r[1], ["1", "16"][i]);
        // a real measurement: handshakes completed at a positive rate
        assert!(r[2].parse::<f64>().unwrap() > 0.0, "{csv}");
    }
    assert!(stderr.contains("saved (1 of 3 points in"), "{stderr}");
    // the JSON holds the same points and says the sweep is incomplete
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tune.json")).unwrap()).unwrap();
    assert_eq!(json["complete"], false);
    assert_eq!(json["points_planned"], 3);
    let points = json["points"].as_array().unwrap();
    assert_eq!(points.len(), kept.len());
    assert_eq!(points[0]["batch_max"], 1);
    assert!(json["recommendation"]["batch_max"].is_u64(), "{json}");
    // the plot shows them: against the batch size, one marker per point (+ the legend's)
    let svg = std::fs::read_to_string(out.join("tune.svg")).unwrap();
    assert!(svg.contains("by batch size (1 shard)"), "{svg}");
    assert_eq!(svg.matches("<circle").count(), kept.len() + 1);
    // no half-written temporary file is left, nor the interrupted point's node directory
    for name in ["tune.csv.tmp", "tune.json.tmp", "tune.svg.tmp"] {
        assert!(!out.join(name).exists(), "{name} left behind");
    }
    let prefix = format!("nanopeer-bench-{}-", child_pid);
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "bench data directories left: {left:?}");

    // --plot-from redraws the plot from the kept CSV, beside it
    let saved = dir.path().join("kept.csv");
    std::fs::copy(&csv_path, &saved).unwrap();
    let o = Command::new(BIN)
        .args(["tune", "--plot-from"])
        .arg(&saved)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let redrawn = std::fs::read_to_string(dir.path().join("kept.svg")).unwrap();
    assert_eq!(redrawn.matches("<circle").count(), kept.len() + 1);
    // the same plot but for the title's note (the ceiling is not in the CSV)
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("nanopeer tune:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&redrawn), strip(&svg));
    // a CSV that is not a tune CSV is refused with the reason, exit status 2
    std::fs::write(&saved, "a,b\n1,2\n").unwrap();
    let o = Command::new(BIN)
        .args(["tune", "--plot-from"])
        .arg(&saved)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("the header has no \"shards\" column"));
}
