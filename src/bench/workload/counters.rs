//! What a node counted of a stream. Its counters are read as RPC `stats` rows (type, detail,
//! dir) — from the in-process node's counter sets ([`CounterRows::from_node`]) or from any
//! node's RPC ([`rpc_stats`]) — and a [`Spec`] says which rows count what, for nanopeer and
//! for the reference nodes alike (a node has only its own rows, so the others add nothing):
//!
//! | | nanopeer | nano-node (HEAD) | RsNano |
//! |---|---|---|---|
//! | vote verified | `vote/valid` | `vote/vote`, `replay`, `indeterminate`, `ignored` | `vote/vote_processed` (valid or not) |
//! | vote bad signature | `vote/invalid_signature` | `vote/invalid` | — |
//! | vote overload | `drop/verify_overflow` | `message_processor/overfill`, `vote_processor/overfill` | same |
//! | block checked | `block/valid` | `blockprocessor_result/*` past the signature check | same |
//! | block bad signature | `block/invalid_signature` | `blockprocessor_result/bad_signature` | same |
//! | block overload | `drop/verify_overflow` | `message_processor/overfill`, `blockprocessor/overfill` | same |
//! | received | `message/confirm_ack`, `message/publish` (in) | `tcp_server/confirm_ack`, `tcp_server/publish` (on receipt) | same |
//!
//! RsNano also counts a vote its vote processor drops as `drop/confirm_ack` (equal to
//! `vote_processor/overfill` in every run against it), so that row is not summed: it would count
//! each overload drop twice.
//!
//! Duplicates are `filter/duplicate_confirm_ack_message` and `filter/duplicate_publish_message`
//! on all three; insufficient work `block/insufficient_work` (nanopeer) or
//! `error/insufficient_work` (nano-node's parse status).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::counters::{CounterSet, Rows};
use crate::node::NodeStats;

/// A row: (type, detail, dir).
pub type Key = (&'static str, &'static str, &'static str);

/// A node's counters as `stats` rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterRows(HashMap<(String, String, String), u64>);

impl CounterRows {
    /// The rows of an in-process node's protocol, verifier and crawler-queue counters (the
    /// rows its RPC `stats` shows for them).
    pub fn from_node(s: &NodeStats) -> CounterRows {
        CounterRows::from_sets(&[&s.proto, &s.batch, &s.queue])
    }

    /// The rows of counter sets (counters naming the same row add up).
    pub fn from_sets(sets: &[&dyn CounterSet]) -> CounterRows {
        let mut rows = Rows::default();
        for set in sets {
            rows.add_set(*set);
        }
        CounterRows(
            rows.into_vec()
                .into_iter()
                .map(|(t, d, dir, v)| ((t, d, dir), v))
                .collect(),
        )
    }

    /// The rows of an RPC `stats` (`"type": "counters"`) answer: `entries` of `type`,
    /// `detail`, `dir` and `value` (a decimal string or a number; rows naming the same key
    /// add up).
    pub fn from_rpc(answer: &Value) -> Result<CounterRows, String> {
        let entries =
            answer
                .get("entries")
                .and_then(Value::as_array)
                .ok_or_else(|| match answer.get("error") {
                    Some(e) => format!("the node answered: {e}"),
                    None => "no `entries` in the answer".to_owned(),
                })?;
        let mut map = HashMap::new();
        for e in entries {
            let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let value = match e.get("value") {
                Some(Value::String(s)) => s.parse().unwrap_or(0),
                Some(v) => v.as_u64().unwrap_or(0),
                None => 0,
            };
            let dir = match text("dir") {
                d if d.is_empty() => "in".to_owned(),
                d => d,
            };
            *map.entry((text("type"), text("detail"), dir))
                .or_insert(0u64) += value;
        }
        Ok(CounterRows(map))
    }

    /// One row's value (0 when the node does not have it).
    pub fn get(&self, (t, d, dir): Key) -> u64 {
        self.0
            .get(&(t.to_owned(), d.to_owned(), dir.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// The sum of `keys`' rows.
    pub fn sum(&self, keys: &[Key]) -> u64 {
        keys.iter().map(|&k| self.get(k)).sum()
    }

    /// The first of `keys`' rows the node has (0 when it has none).
    pub fn first(&self, keys: &[Key]) -> u64 {
        keys.iter()
            .find_map(|&(t, d, dir)| {
                self.0
                    .get(&(t.to_owned(), d.to_owned(), dir.to_owned()))
                    .copied()
            })
            .unwrap_or(0)
    }
}

/// Which rows count what for one workload.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Messages verified: the workload's figure.
    pub verified: &'static [Key],
    /// Messages of the workload's type received: the first of these rows the node has (the
    /// reference nodes count a message on receipt as `tcp_server`, and again as `message`
    /// once processed, which a full queue prevents; nanopeer has only `message`).
    pub received: &'static [Key],
    /// Messages dropped unverified, by reason.
    pub drops: &'static [(&'static str, &'static [Key])],
}

/// Rows every workload reads besides its [`Spec`].
const CRAWLER_DROPPED: &[Key] = &[("drop", "crawler_event", "in")];
const CHANNELS_CUT: &[Key] = &[
    ("misbehaviour", "invalid_signatures", "in"),
    ("misbehaviour", "verify_work", "in"),
];
const FLUSHES: &[Key] = &[("signature_batch", "flushes", "in")];
const REQUESTS: &[Key] = &[("signature_batch", "requests", "in")];

/// The votes workload's rows.
pub const VOTES: Spec = Spec {
    verified: &[
        ("vote", "valid", "in"),
        ("vote", "vote", "in"),
        ("vote", "replay", "in"),
        ("vote", "indeterminate", "in"),
        ("vote", "ignored", "in"),
        ("vote", "vote_processed", "in"),
    ],
    received: &[
        ("tcp_server", "confirm_ack", "in"),
        ("message", "confirm_ack", "in"),
    ],
    drops: &[
        (
            "duplicate",
            &[("filter", "duplicate_confirm_ack_message", "in")],
        ),
        (
            "invalid_signature",
            &[
                ("vote", "invalid_signature", "in"),
                ("vote", "invalid", "in"),
            ],
        ),
        (
            "overload",
            &[
                ("drop", "verify_overflow", "in"),
                ("message_processor", "overfill", "in"),
                ("vote_processor", "overfill", "in"),
            ],
        ),
        (
            "zero_account",
            &[
                ("vote", "zero_account", "in"),
                ("drop", "confirm_ack_zero_account", "in"),
            ],
        ),
    ],
};

/// The publish workload's rows.
pub const PUBLISH: Spec = Spec {
    verified: &[
        ("block", "valid", "in"),
        ("blockprocessor_result", "progress", "in"),
        ("blockprocessor_result", "gap_previous", "in"),
        ("blockprocessor_result", "gap_source", "in"),
        ("blockprocessor_result", "gap_epoch_open_pending", "in"),
        ("blockprocessor_result", "fork", "in"),
        ("blockprocessor_result", "opened_burn_account", "in"),
        ("blockprocessor_result", "balance_mismatch", "in"),
        ("blockprocessor_result", "representative_mismatch", "in"),
        ("blockprocessor_result", "block_position", "in"),
        ("blockprocessor_result", "negative_spend", "in"),
        ("blockprocessor_result", "unreceivable", "in"),
    ],
    received: &[
        ("tcp_server", "publish", "in"),
        ("message", "publish", "in"),
    ],
    drops: &[
        (
            "duplicate",
            &[("filter", "duplicate_publish_message", "in")],
        ),
        (
            "insufficient_work",
            &[
                ("block", "insufficient_work", "in"),
                ("error", "insufficient_work", "in"),
            ],
        ),
        (
            "invalid_signature",
            &[
                ("block", "invalid_signature", "in"),
                ("blockprocessor_result", "bad_signature", "in"),
            ],
        ),
        (
            "overload",
            &[
                ("drop", "verify_overflow", "in"),
                ("message_processor", "overfill", "in"),
                ("blockprocessor", "overfill", "in"),
            ],
        ),
    ],
};

/// What a node counted of a workload at one moment (or, after [`Tally::since`], over a
/// span).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tally {
    /// Messages verified.
    pub verified: u64,
    /// Messages of the type received.
    pub received: u64,
    /// Messages dropped unverified, by reason (the [`Spec`]'s reasons, in order).
    pub drops: Vec<(&'static str, u64)>,
    /// Events (verified votes, blocks and the rest) dropped because the crawler's queue was
    /// full: verified, but not handed on.
    pub crawler_dropped: u64,
    /// Channels cut for misbehaving (invalid signatures, too much verification work).
    pub channels_cut: u64,
    /// Verify batches flushed, and the requests they answered.
    pub batches: (u64, u64),
}

impl Spec {
    /// The workload's figures in `rows`.
    pub fn tally(&self, rows: &CounterRows) -> Tally {
        Tally {
            verified: rows.sum(self.verified),
            received: rows.first(self.received),
            drops: self.drops.iter().map(|(n, k)| (*n, rows.sum(k))).collect(),
            crawler_dropped: rows.sum(CRAWLER_DROPPED),
            channels_cut: rows.sum(CHANNELS_CUT),
            batches: (rows.sum(FLUSHES), rows.sum(REQUESTS)),
        }
    }
}

impl Tally {
    /// The growth from `earlier` to this one.
    pub fn since(&self, earlier: &Tally) -> Tally {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        Tally {
            verified: d(self.verified, earlier.verified),
            received: d(self.received, earlier.received),
            drops: self
                .drops
                .iter()
                .zip(&earlier.drops)
                .map(|((n, a), (_, b))| (*n, d(*a, *b)))
                .collect(),
            crawler_dropped: d(self.crawler_dropped, earlier.crawler_dropped),
            channels_cut: d(self.channels_cut, earlier.channels_cut),
            batches: (
                d(self.batches.0, earlier.batches.0),
                d(self.batches.1, earlier.batches.1),
            ),
        }
    }

    /// Messages dropped unverified, all reasons.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().map(|(_, v)| v).sum()
    }

    /// One reason's drops.
    pub fn drop_of(&self, reason: &str) -> u64 {
        self.drops
            .iter()
            .find(|(n, _)| *n == reason)
            .map_or(0, |(_, v)| *v)
    }

    /// Mean requests per verify batch (`None` without a batch).
    pub fn batch_mean(&self) -> Option<f64> {
        (self.batches.0 > 0).then(|| self.batches.1 as f64 / self.batches.0 as f64)
    }
}

/// The body of an HTTP response: after the blank line, de-chunked when the response says
/// `Transfer-Encoding: chunked`.
fn http_body(resp: &[u8]) -> Result<Vec<u8>, String> {
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP header in the answer")?;
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    let mut body = &resp[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk")?;
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).unwrap_or(&[]);
    }
}

/// Reads a node's counters through its RPC (`{"action": "stats", "type": "counters"}`, one
/// HTTP/1.1 POST on a fresh connection). `rpc` must be a loopback address.
pub fn rpc_stats(rpc: SocketAddr) -> Result<CounterRows, String> {
    if !rpc.ip().is_loopback() {
        return Err(format!("{rpc} is not a loopback address"));
    }
    let body = r#"{"action":"stats","type":"counters"}"#;
    let mut s = TcpStream::connect_timeout(&rpc, Duration::from_secs(2))
        .map_err(|e| format!("cannot connect to the RPC at {rpc}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {rpc}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("RPC {rpc}: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| format!("RPC {rpc}: {e}"))?;
    let body = http_body(&resp)?;
    let answer: Value =
        serde_json::from_slice(&body).map_err(|e| format!("RPC {rpc}: not JSON: {e}"))?;
    CounterRows::from_rpc(&answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_each_node_count_the_same_things() {
        let answer = serde_json::json!({"type": "counters", "entries": [
            {"type": "vote", "detail": "vote", "dir": "in", "value": "5"},
            {"type": "vote", "detail": "indeterminate", "dir": "in", "value": "7"},
            {"type": "vote", "detail": "invalid", "dir": "in", "value": "2"},
            {"type": "vote_processor", "detail": "overfill", "dir": "in", "value": "100"},
            {"type": "drop", "detail": "confirm_ack", "dir": "in", "value": "100"},
            {"type": "filter", "detail": "duplicate_confirm_ack_message", "value": 3},
            {"type": "tcp_server", "detail": "confirm_ack", "dir": "in", "value": "117"},
            {"type": "message", "detail": "confirm_ack", "dir": "in", "value": "17"},
            {"type": "message", "detail": "confirm_ack", "dir": "out", "value": "9"},
        ]});
        let t = VOTES.tally(&CounterRows::from_rpc(&answer).unwrap());
        assert_eq!(t.verified, 12);
        assert_eq!(t.received, 117, "what came in, counted on receipt");
        assert_eq!(t.drop_of("invalid_signature"), 2);
        assert_eq!(
            t.drop_of("overload"),
            100,
            "RsNano's drop/confirm_ack is the same drops"
        );
        assert_eq!(t.drop_of("duplicate"), 3, "no dir means in");
        assert_eq!(t.dropped(), 105);
        let later = Tally {
            verified: 20,
            drops: t.drops.iter().map(|(n, v)| (*n, v + 1)).collect(),
            ..t.clone()
        };
        let d = later.since(&t);
        assert_eq!((d.verified, d.received, d.dropped()), (8, 0, 4));
        assert!(CounterRows::from_rpc(&serde_json::json!({"error": "Unknown command"})).is_err());
    }

    #[test]
    fn the_in_process_rows_are_the_counters() {
        let proto = crate::proto::stats::ShardStats {
            votes_valid: 11,
            duplicate_confirm_ack: 2,
            blocks_valid: 4,
            insufficient_work: 3,
            verify_overflow: 1,
            ..Default::default()
        };
        let batch = crate::node::BatchMetrics {
            flushes: 2,
            requests: 15,
            ..Default::default()
        };
        let rows = CounterRows::from_sets(&[&proto, &batch]);
        let v = VOTES.tally(&rows);
        assert_eq!(
            (v.verified, v.drop_of("duplicate"), v.drop_of("overload")),
            (11, 2, 1)
        );
        assert_eq!(v.batch_mean(), Some(7.5));
        let p = PUBLISH.tally(&rows);
        assert_eq!((p.verified, p.drop_of("insufficient_work")), (4, 3));
    }

    #[test]
    fn chunked_and_plain_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(http_body(plain).unwrap(), b"{}");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(http_body(chunked).unwrap(), b"{\"a\":1}");
        assert!(http_body(b"garbage").is_err());
        assert!(rpc_stats("10.0.0.1:7076".parse().unwrap()).is_err());
    }
}
