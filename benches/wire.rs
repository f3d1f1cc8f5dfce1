//! Wire codec speed: decode and encode per message type, and deframer throughput over a
//! mixed stream fed in 1500-byte and 64 KiB chunks.
//!
//! `cargo bench --bench wire -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::SocketAddrV6;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nanopeer::types::{Amount, BlockHash, Cookie, Network, PublicKey, Signature};
use nanopeer::wire::*;

const NET: Network = Network::Live;

fn vote(n: usize) -> Vote {
    Vote {
        account: PublicKey([7; 32]),
        signature: Signature([9; 64]),
        timestamp: 0x18bcfe56809,
        hashes: (0..n).map(|i| BlockHash([i as u8; 32])).collect(),
    }
}

fn state_block() -> Block {
    Block::State(StateBlock {
        account: PublicKey([1; 32]),
        previous: BlockHash([2; 32]),
        representative: PublicKey([3; 32]),
        balance: Amount(4),
        link: BlockHash([5; 32]),
        signature: Signature([6; 64]),
        work: 7,
    })
}

fn samples() -> Vec<(&'static str, Message)> {
    let mut k = Keepalive::default();
    for (i, p) in k.peers.iter_mut().enumerate() {
        *p = format!("[::ffff:10.0.0.{i}]:7075")
            .parse::<SocketAddrV6>()
            .unwrap();
    }
    let response = HandshakeResponse {
        node_id: PublicKey([1; 32]),
        v2: Some(ResponseV2 {
            salt: Cookie([2; 32]),
            genesis: BlockHash([3; 32]),
        }),
        signature: Signature([4; 64]),
    };
    vec![
        ("keepalive", Message::Keepalive(k)),
        (
            "publish_state",
            Message::Publish(Publish {
                block: state_block(),
                originator: false,
            }),
        ),
        (
            "confirm_req_1",
            Message::ConfirmReq(ConfirmReq {
                pairs: vec![HashRoot {
                    hash: BlockHash([1; 32]),
                    root: BlockHash([2; 32]),
                }],
            }),
        ),
        (
            "confirm_ack_1",
            Message::ConfirmAck(ConfirmAck {
                vote: vote(1),
                rebroadcasted: false,
            }),
        ),
        (
            "confirm_ack_12",
            Message::ConfirmAck(ConfirmAck {
                vote: vote(12),
                rebroadcasted: false,
            }),
        ),
        (
            "confirm_ack_255",
            Message::ConfirmAck(ConfirmAck {
                vote: vote(255),
                rebroadcasted: false,
            }),
        ),
        (
            "handshake_query",
            Message::NodeIdHandshake(NodeIdHandshake::query(Cookie([5; 32]))),
        ),
        (
            "handshake_query_response_v2",
            Message::NodeIdHandshake(NodeIdHandshake::query_response(Cookie([5; 32]), response)),
        ),
        ("telemetry_req", Message::TelemetryReq),
        (
            "telemetry_ack",
            Message::TelemetryAck(TelemetryAck {
                data: Some(TelemetryData::default()),
            }),
        ),
        (
            "asc_pull_req",
            Message::AscPullReq(AscPull {
                kind: AscPullType::Blocks,
                id: 1,
                body: vec![0; 34],
            }),
        ),
    ]
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, m) in samples() {
        let bytes = m.encode(NET);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
            b.iter(|| decode_message(black_box(bytes), NET))
        });
    }
    // Header alone, and the payload alone given a decoded header (what a receive loop
    // does after the deframer).
    let bytes = Message::TelemetryReq.encode(NET);
    let head: [u8; 8] = bytes[..8].try_into().unwrap();
    g.bench_function("header_only", |b| {
        b.iter(|| Header::decode(black_box(&head), NET))
    });
    for (name, m) in samples() {
        let bytes = m.encode(NET);
        let header = m.header(NET);
        g.bench_with_input(
            BenchmarkId::new("payload", name),
            &bytes[8..],
            |b, payload| b.iter(|| Message::decode(&header, black_box(payload))),
        );
    }
    // The allocation-free vote view against the owned decode above.
    let bytes = samples()[4].1.encode(NET);
    let ext = Extensions(u16::from_le_bytes([bytes[6], bytes[7]]));
    g.bench_function("confirm_ack_12_view", |b| {
        b.iter(|| {
            let v = VoteView::new(ext, black_box(&bytes[8..])).unwrap();
            (v.account(), v.timestamp(), v.hash_bytes().len())
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_into");
    let mut buf = Vec::with_capacity(16 * 1024);
    for (name, m) in samples() {
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(name), &m, |b, m| {
            b.iter(|| {
                buf.clear();
                black_box(m).encode_into(NET, &mut buf);
                buf.len()
            })
        });
    }
    g.finish();
}

/// About 1 MiB of traffic shaped like a live channel: mostly small votes, then
/// confirm_req, publish, keepalive, telemetry, asc_pull, and now and then a 255-hash vote.
/// Returns the stream and its frame count.
fn mixed_stream() -> (Vec<u8>, usize) {
    let s = samples();
    let pick = |name: &str| s.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    let pattern = [
        "confirm_ack_1",
        "confirm_ack_12",
        "confirm_ack_1",
        "confirm_req_1",
        "publish_state",
        "confirm_ack_1",
        "confirm_ack_12",
        "keepalive",
        "confirm_ack_1",
        "telemetry_ack",
        "asc_pull_req",
        "confirm_ack_1",
    ];
    let msgs: Vec<Message> = pattern.iter().map(|n| pick(n)).collect();
    let big = pick("confirm_ack_255");
    let mut stream = Vec::new();
    let mut frames = 0;
    let mut round = 0;
    while stream.len() < 1 << 20 {
        for m in &msgs {
            m.encode_into(NET, &mut stream);
            frames += 1;
        }
        round += 1;
        if round % 8 == 0 {
            big.encode_into(NET, &mut stream);
            frames += 1;
        }
    }
    (stream, frames)
}

fn deframer(c: &mut Criterion) {
    let (stream, frames) = mixed_stream();
    println!(
        "deframer stream: {} bytes, {frames} frames, {} bytes/frame",
        stream.len(),
        stream.len() / frames
    );
    let mut g = c.benchmark_group("deframer");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    for chunk in [1500usize, 64 * 1024] {
        g.bench_with_input(BenchmarkId::new("frames", chunk), &chunk, |b, &chunk| {
            b.iter(|| {
                let mut d = Deframer::new(NET);
                let mut n = 0usize;
                for c in stream.chunks(chunk) {
                    d.feed(c, |_, p| n += p.len() + 1).unwrap();
                }
                n
            })
        });
        g.bench_with_input(
            BenchmarkId::new("frames+decode", chunk),
            &chunk,
            |b, &chunk| {
                b.iter(|| {
                    let mut d = Deframer::new(NET);
                    let mut n = 0usize;
                    for c in stream.chunks(chunk) {
                        d.feed(c, |h, p| {
                            if Message::decode(&h, p).is_ok() {
                                n += 1
                            }
                        })
                        .unwrap();
                    }
                    assert_eq!(n, frames);
                    n
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, decode, encode, deframer);

criterion_main!(benches);
