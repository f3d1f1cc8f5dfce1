//! `nanopeer decode` against every vector of tests/data/decode.jsonl (made with an independent
//! Ed25519-Blake2b implementation) and the §11 worked examples, through the library function
//! and through the binary (argument and stdin modes).

use std::io::Write;
use std::net::SocketAddrV6;
use std::process::{Command, Stdio};

use nanopeer::ops::decode::decode_hex;
use nanopeer::types::{Cookie, Network};
use serde_json::Value;

struct Vector {
    name: String,
    network: Network,
    cookie: Option<Cookie>,
    hex: String,
    expect: Value,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("data/decode.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("vector json");
            Vector {
                name: v["name"].as_str().unwrap().to_string(),
                network: v["network"].as_str().unwrap().parse().unwrap(),
                cookie: v["cookie"].as_str().map(|c| c.parse().unwrap()),
                hex: v["hex"].as_str().unwrap().to_string(),
                expect: v["expect"].clone(),
            }
        })
        .collect()
}

/// Compares `got` with the vector's `expect`: hex strings case-insensitively, keepalive peers
/// as addresses, everything else exactly. Only the keys of `expect` are compared.
fn check(name: &str, path: &str, expect: &Value, got: &Value) {
    match (expect, got) {
        (Value::Object(e), Value::Object(g)) => {
            for (k, ev) in e {
                let gv = g
                    .get(k)
                    .unwrap_or_else(|| panic!("{name}: {path}.{k} missing in {got}"));
                if k == "peers" {
                    let parse = |v: &Value| -> Vec<SocketAddrV6> {
                        v.as_array()
                            .unwrap()
                            .iter()
                            .map(|p| p.as_str().unwrap().parse().unwrap())
                            .collect()
                    };
                    assert_eq!(parse(ev), parse(gv), "{name}: peers");
                } else {
                    check(name, &format!("{path}.{k}"), ev, gv);
                }
            }
        }
        (Value::Array(e), Value::Array(g)) => {
            assert_eq!(e.len(), g.len(), "{name}: {path} length");
            for (i, (ev, gv)) in e.iter().zip(g).enumerate() {
                check(name, &format!("{path}[{i}]"), ev, gv);
            }
        }
        (Value::String(e), Value::String(g)) => {
            assert!(
                e.eq_ignore_ascii_case(g),
                "{name}: {path}: expected {e}, got {g}"
            );
        }
        _ => assert_eq!(expect, got, "{name}: {path}"),
    }
}

#[test]
fn every_vector_decodes_as_expected() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 108);
    let mut errors = 0;
    for v in &vectors {
        let result = decode_hex(&v.hex, v.network, v.cookie.as_ref());
        if v.expect.get("error").is_some() {
            let e = result.expect_err(&v.name).to_string();
            assert!(
                e.starts_with("header: ") || e.starts_with("payload: ") || e.starts_with("hex: "),
                "{}: error line {e:?}",
                v.name
            );
            errors += 1;
            continue;
        }
        let got = result.unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(got["network"], v.network.name(), "{}", v.name);
        check(&v.name, "", &v.expect, &got);
    }
    assert!(errors >= 5, "the vectors include malformed input");
}

#[test]
fn spec_section_11_examples() {
    let live = Network::Live;
    // keepalive with slot 0 = [::ffff:1.2.3.4]:7075
    let ka = format!(
        "5243151514020000{}{}{}",
        "00000000000000000000FFFF01020304",
        "A31B",
        "00".repeat(7 * 18)
    );
    let v = decode_hex(&ka, live, None).unwrap();
    assert_eq!(v["type"], "keepalive");
    assert_eq!(v["peers"][0], "[::ffff:1.2.3.4]:7075");
    assert_eq!(v["peers"][7], "[::]:0");

    // v2 handshake response to cookie 01..20, signed by the dev genesis key
    let cookie: Cookie = "0102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20"
        .parse()
        .unwrap();
    let resp = format!(
        "52431515140A0600{}{}{}{}",
        "B0311EA55708D6A53C75CDBF88300259C6D018522FE3D4D0A242E431F9E8B6D0",
        "AA".repeat(32),
        "991CF190094C00F0B68E2E5F75F6BEE95A2E0BD93CEAA4A6734DB9F19B728948",
        "4C6A11AA18278F238BFBAC3B4BF08D1B869072D5B95BFB7C5BBDBAA2495842389ABB8836249A5254147112B9153923EB21434A5C103174E2BA5F89F1A48F4D0A"
    );
    let v = decode_hex(&resp, live, Some(&cookie)).unwrap();
    assert_eq!(v["type"], "node_id_handshake");
    assert_eq!(v["query"], Value::Null);
    assert_eq!(v["response"]["v2"], true);
    assert_eq!(v["signature_valid"], true);
    // without the cookie the signature cannot be judged
    assert_eq!(
        decode_hex(&resp, live, None).unwrap()["signature_valid"],
        Value::Null
    );
    // with another cookie it is invalid
    let other = Cookie([9; 32]);
    assert_eq!(
        decode_hex(&resp, live, Some(&other)).unwrap()["signature_valid"],
        false
    );

    // final vote for the live genesis hash
    let ack = format!(
        "5243151514050011{}{}{}{}",
        "B0311EA55708D6A53C75CDBF88300259C6D018522FE3D4D0A242E431F9E8B6D0",
        "CCFCBF0F451A69BA8C391A40D89381A068EADC6A80DB8F04B7F12502C871419C28DF4A18F072857166D723B3827F31CE4C5E5EC2A706A53C4DE8CA7C47A81102",
        "FFFFFFFFFFFFFFFF",
        "991CF190094C00F0B68E2E5F75F6BEE95A2E0BD93CEAA4A6734DB9F19B728948"
    );
    let v = decode_hex(&ack, live, None).unwrap();
    assert_eq!(v["final"], true);
    assert_eq!(
        v["vote_hash"],
        "066AD6148F03EA2FDCA848709C56216EE3AC135B63770095A688121FB04A82CC"
    );
    assert_eq!(v["signature_valid"], true);

    // confirm_req for the first live send
    let req = format!(
        "5243151514040011{}{}",
        "A170D51B94E00371ACE76E35AC81DC9405D5D04D4CEBC399AEACE07AE05DD293",
        "991CF190094C00F0B68E2E5F75F6BEE95A2E0BD93CEAA4A6734DB9F19B728948"
    );
    let v = decode_hex(&req, live, None).unwrap();
    assert_eq!(
        v["pairs"][0]["root"],
        "991CF190094C00F0B68E2E5F75F6BEE95A2E0BD93CEAA4A6734DB9F19B728948"
    );

    // errors name the problem
    let e = decode_hex("5243151514090000", live, None).unwrap_err();
    assert_eq!(e.to_string(), "header: unknown message type 0x09");
    let short = format!("5243151514020000{}", "00".repeat(100));
    let e = decode_hex(&short, live, None).unwrap_err();
    assert_eq!(e.to_string(), "payload: keepalive needs 144 bytes, got 100");
    assert!(decode_hex("zz", live, None).is_err());
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nanopeer"))
}

#[test]
fn binary_argument_mode_exit_codes() {
    let ok = bin().args(["decode", "52431515140C0000"]).output().unwrap();
    assert!(ok.status.success());
    let v: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["type"], "telemetry_req");
    assert_eq!(v["network"], "live", "--network defaults to live");

    let bad = bin()
        .args(["decode", "--network", "dev", "52431515140C0000"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(bad.stdout.is_empty());
    let line = String::from_utf8(bad.stderr).unwrap();
    assert_eq!(line.lines().count(), 1);
    assert!(line.starts_with("header: wrong network"), "{line}");
}

#[test]
fn binary_stdin_mode_goes_on_after_errors() {
    let vectors = vectors();
    let dev: Vec<&Vector> = vectors
        .iter()
        .filter(|v| v.network == Network::Dev)
        .collect();
    let mut input = String::new();
    for v in &dev {
        input.push_str(&v.hex);
        input.push('\n');
    }
    let mut child = bin()
        .args(["decode", "--network", "dev", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), dev.len(), "one JSON line per input line");
    for (v, got) in dev.iter().zip(&lines) {
        if v.expect.get("error").is_some() {
            assert!(got["error"].is_string(), "{}: {got}", v.name);
        } else if v.cookie.is_none() {
            check(&v.name, "", &v.expect, got);
        }
    }
}
