//! The wire codec against the spec's byte examples (§10, §11, §11a), the decode vectors of
//! tests/data/decode.jsonl, property round trips, the deframer under every split, and the
//! error classes.

use std::net::{Ipv6Addr, SocketAddrV6};

use nanopeer::types::{Amount, BlockHash, Cookie, Network, PublicKey, Signature};
use nanopeer::wire::*;
use proptest::prelude::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Allocation counting, to check the no-allocation claims.

fn allocations<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let mut out = None;
    let info = allocation_counter::measure(|| out = Some(f()));
    (info.count_total as usize, out.expect("closure ran"))
}

// ---------------------------------------------------------------------------------------
// Helpers and known values.

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '‖'], "")).expect("test hex")
}

const DEV_KEY: &str = "B0311EA55708D6A53C75CDBF88300259C6D018522FE3D4D0A242E431F9E8B6D0";
const LIVE_GENESIS: &str = "991CF190094C00F0B68E2E5F75F6BEE95A2E0BD93CEAA4A6734DB9F19B728948";
const FIRST_SEND: &str = "A170D51B94E00371ACE76E35AC81DC9405D5D04D4CEBC399AEACE07AE05DD293";
const SIG_V2: &str = "4C6A11AA18278F238BFBAC3B4BF08D1B869072D5B95BFB7C5BBDBAA2495842389ABB8836249A5254147112B9153923EB21434A5C103174E2BA5F89F1A48F4D0A";
const SIG_V1: &str = "A7254E3007652C2F2CFE642C94FAEA041171EF1F7A45491B64560650E84506FFA61552D59259A73E842C3EB21F8051C51938951ABA384DD5E69EF507CE7CA308";
const SIG_VOTE: &str = "CCFCBF0F451A69BA8C391A40D89381A068EADC6A80DB8F04B7F12502C871419C28DF4A18F072857166D723B3827F31CE4C5E5EC2A706A53C4DE8CA7C47A81102";

fn cookie_01_20() -> Cookie {
    let mut c = [0u8; 32];
    for (i, b) in c.iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    Cookie(c)
}

fn roundtrip(m: &Message, net: Network) -> Vec<u8> {
    let bytes = m.encode(net);
    assert_eq!(bytes.len(), m.encoded_len());
    let (h, d) = decode_message(&bytes, net).expect("own encoding decodes");
    assert_eq!(&d, m);
    assert_eq!(h, m.header(net));
    assert_eq!(h.payload_len(), m.payload_len());
    let mut again = vec![0xEE];
    d.encode_into(net, &mut again);
    assert_eq!(&again[1..], &bytes[..]);
    bytes
}

// ---------------------------------------------------------------------------------------
// §11 worked examples, byte-exact.

#[test]
fn s11_keepalive() {
    let mut k = Keepalive::default();
    k.peers[0] = "[::ffff:1.2.3.4]:7075".parse().unwrap();
    let expected = [
        hex("524315151402 0000 00000000000000000000FFFF01020304 A31B"),
        vec![0u8; 7 * 18],
    ]
    .concat();
    assert_eq!(expected.len(), 152);
    let bytes = roundtrip(&Message::Keepalive(k), Network::Live);
    assert_eq!(bytes, expected);
    assert_eq!(k.non_empty().count(), 1);
}

#[test]
fn s11_handshake_query() {
    let m = Message::NodeIdHandshake(NodeIdHandshake::query(cookie_01_20()));
    let bytes = roundtrip(&m, Network::Live);
    let mut expected = hex("52431515140A0500");
    expected.extend(1u8..=32);
    assert_eq!(bytes, expected);
}

fn v2_response() -> HandshakeResponse {
    HandshakeResponse {
        node_id: DEV_KEY.parse().unwrap(),
        v2: Some(ResponseV2 {
            salt: Cookie([0xAA; 32]),
            genesis: LIVE_GENESIS.parse().unwrap(),
        }),
        signature: SIG_V2.parse().unwrap(),
    }
}

fn v1_response() -> HandshakeResponse {
    HandshakeResponse {
        node_id: DEV_KEY.parse().unwrap(),
        v2: None,
        signature: SIG_V1.parse().unwrap(),
    }
}

#[test]
fn s11_handshake_v2_response() {
    let m = Message::NodeIdHandshake(NodeIdHandshake::response(v2_response()));
    let bytes = roundtrip(&m, Network::Live);
    let expected = hex(&format!(
        "52431515140A0600{DEV_KEY}{}{LIVE_GENESIS}{SIG_V2}",
        "AA".repeat(32)
    ));
    assert_eq!(bytes.len(), 168);
    assert_eq!(bytes, expected);
    let signed = v2_response().signed_data(&cookie_01_20());
    assert_eq!(signed.len(), 96);
    assert_eq!(&signed[..32], &cookie_01_20().0);
    assert_eq!(&signed[32..64], &[0xAA; 32]);
    assert_eq!(&signed[64..], &hex(LIVE_GENESIS)[..]);
}

#[test]
fn s11_handshake_v1_response() {
    let m = Message::NodeIdHandshake(NodeIdHandshake::response(v1_response()));
    let bytes = roundtrip(&m, Network::Live);
    assert_eq!(bytes.len(), 104);
    assert_eq!(bytes, hex(&format!("52431515140A0200{DEV_KEY}{SIG_V1}")));
    let signed = v1_response().signed_data(&cookie_01_20());
    assert_eq!(signed.as_bytes(), &cookie_01_20().0);
}

#[test]
fn s45_sender_flag_rule() {
    let c = cookie_01_20();
    let ext = |h: NodeIdHandshake| h.extensions().bits();
    assert_eq!(ext(NodeIdHandshake::query(c)), 0x0005);
    assert_eq!(
        ext(NodeIdHandshake::query_response(c, v2_response())),
        0x0007
    );
    assert_eq!(ext(NodeIdHandshake::response(v2_response())), 0x0006);
    assert_eq!(ext(NodeIdHandshake::response(v1_response())), 0x0002);
    // The response is applied last: query (v2 support) + v1 response clears bit 2.
    assert_eq!(
        ext(NodeIdHandshake::query_response(c, v1_response())),
        0x0003
    );
    let bytes = Message::NodeIdHandshake(NodeIdHandshake::query_response(c, v1_response()))
        .encode(Network::Live);
    let (_, m) = decode_message(&bytes, Network::Live).unwrap();
    let Message::NodeIdHandshake(h) = m else {
        panic!("not a handshake")
    };
    assert_eq!(
        h.query,
        Some(HandshakeQuery {
            cookie: c,
            v2: false
        })
    );
    assert_eq!(h.response, Some(v1_response()));
}

#[test]
fn s11_confirm_ack_final_vote() {
    let vote = Vote {
        account: DEV_KEY.parse().unwrap(),
        signature: SIG_VOTE.parse().unwrap(),
        timestamp: u64::MAX,
        hashes: vec![LIVE_GENESIS.parse().unwrap()],
    };
    let m = Message::ConfirmAck(ConfirmAck {
        vote,
        rebroadcasted: false,
    });
    let bytes = roundtrip(&m, Network::Live);
    assert_eq!(
        bytes,
        hex(&format!(
            "5243151514050011{DEV_KEY}{SIG_VOTE}FFFFFFFFFFFFFFFF{LIVE_GENESIS}"
        ))
    );
    assert_eq!(bytes.len(), 144);
    let (h, _) = decode_message(&bytes, Network::Live).unwrap();
    assert_eq!(h.extensions.bits(), 0x1100);
    assert_eq!(h.extensions.confirm_count(), 1);
    let view = VoteView::new(h.extensions, &bytes[8..]).unwrap();
    assert_eq!(view.account(), DEV_KEY.parse().unwrap());
    assert_eq!(view.signature(), SIG_VOTE.parse().unwrap());
    assert_eq!(view.timestamp(), u64::MAX);
    assert_eq!(view.hash_bytes(), &hex(LIVE_GENESIS)[..]);
    assert_eq!(view.len(), 1);
}

#[test]
fn s11_confirm_req() {
    let m = Message::ConfirmReq(ConfirmReq {
        pairs: vec![HashRoot {
            hash: FIRST_SEND.parse().unwrap(),
            root: LIVE_GENESIS.parse().unwrap(),
        }],
    });
    let bytes = roundtrip(&m, Network::Live);
    assert_eq!(
        bytes,
        hex(&format!("5243151514040011{FIRST_SEND}{LIVE_GENESIS}"))
    );
}

fn vote_with(n: usize) -> Vote {
    Vote {
        account: PublicKey([7; 32]),
        signature: Signature([9; 64]),
        timestamp: 0x18bcfe56804,
        hashes: (0..n).map(|i| BlockHash([i as u8 ^ 0x5A; 32])).collect(),
    }
}

#[test]
fn s11_v2_count_examples() {
    let ack = |n| {
        Message::ConfirmAck(ConfirmAck {
            vote: vote_with(n),
            rebroadcasted: false,
        })
    };
    let b16 = roundtrip(&ack(16), Network::Live);
    assert_eq!(&b16[5..8], &[0x05, 0x01, 0x11]);
    assert_eq!(b16.len(), 8 + 104 + 16 * 32);
    let b255 = roundtrip(&ack(255), Network::Live);
    assert_eq!(&b255[6..8], &[0xF1, 0xF1]);
    let b15 = roundtrip(&ack(15), Network::Live);
    assert_eq!(&b15[6..8], &[0x00, 0xF1]);
    let b0 = roundtrip(&ack(0), Network::Live);
    assert_eq!(&b0[6..8], &[0x00, 0x01]);
    // 0b0110_1001 with no block type: ext 0x6091, 105 hashes.
    let mut raw = hex("5243151514059160");
    let mut payload = Vec::new();
    ConfirmAckPayload::write(&vote_with(105), &mut payload);
    raw.extend_from_slice(&payload);
    let (h, m) = decode_message(&raw, Network::Live).unwrap();
    assert_eq!(h.extensions.bits(), 0x6091);
    let Message::ConfirmAck(a) = m else {
        panic!("not confirm_ack")
    };
    assert_eq!(a.vote, vote_with(105));
    // Re-encoded the sender's way: not_a_block added.
    assert_eq!(Message::ConfirmAck(a).extensions().bits(), 0x6091 | 0x0100);
    // confirm_req with 16 and 255 pairs.
    let req = |n: usize| {
        Message::ConfirmReq(ConfirmReq {
            pairs: (0..n)
                .map(|i| HashRoot {
                    hash: BlockHash([i as u8; 32]),
                    root: BlockHash([1; 32]),
                })
                .collect(),
        })
    };
    assert_eq!(&roundtrip(&req(16), Network::Live)[6..8], &[0x01, 0x11]);
    assert_eq!(&roundtrip(&req(255), Network::Live)[6..8], &[0xF1, 0xF1]);
}

/// Writes a vote payload by hand (independent of the codec under test).
struct ConfirmAckPayload;
impl ConfirmAckPayload {
    fn write(v: &Vote, out: &mut Vec<u8>) {
        out.extend_from_slice(&v.account.0);
        out.extend_from_slice(&v.signature.0);
        out.extend_from_slice(&v.timestamp.to_le_bytes());
        for h in &v.hashes {
            out.extend_from_slice(&h.0);
        }
    }
}

#[test]
fn s11a_rsnano_confirm_ack_block_type_zero() {
    // Dev network, ext 0x1000: count 1, block type 0 (invalid), as RsNano sends it.
    let mut raw = hex("5241151514050010");
    ConfirmAckPayload::write(&vote_with(1), &mut raw);
    let (h, m) = decode_message(&raw, Network::Dev).unwrap();
    assert_eq!(h.extensions.block_type_bits(), 0);
    assert_eq!(h.version_max, 0x15);
    assert_eq!(h.version_min, 0x14);
    assert_eq!(
        m,
        Message::ConfirmAck(ConfirmAck {
            vote: vote_with(1),
            rebroadcasted: false
        })
    );
    // Any block type nibble is ignored, on confirm_req too.
    for bt in 0..16u16 {
        let mut raw = hex("5241151514050000");
        raw[6..8].copy_from_slice(&(0x1000 | (bt << 8)).to_le_bytes());
        ConfirmAckPayload::write(&vote_with(1), &mut raw);
        assert!(
            decode_message(&raw, Network::Dev).is_ok(),
            "block type {bt}"
        );
        let mut req = hex("5241151514040000");
        req[6..8].copy_from_slice(&(0x1000 | (bt << 8)).to_le_bytes());
        req.extend_from_slice(&[3; 64]);
        assert!(
            decode_message(&req, Network::Dev).is_ok(),
            "block type {bt}"
        );
    }
}

#[test]
fn s11a_unasked_traffic_is_skipped_by_length() {
    // keepalive, confirm_req, telemetry_ack (202), asc_pull_req ext 0x0022 (43 bytes).
    let net = Network::Dev;
    let mut stream = Vec::new();
    let mut k = Keepalive::default();
    k.peers[0] = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 44000, 0, 0);
    Message::Keepalive(k).encode_into(net, &mut stream);
    let mut asc = hex("52411515140E2200");
    asc.push(1); // blocks
    asc.extend_from_slice(&0x0102030405060708u64.to_be_bytes());
    asc.extend_from_slice(&[0x11; 34]);
    assert_eq!(asc.len(), 8 + 43);
    stream.extend_from_slice(&asc);
    Message::TelemetryAck(TelemetryAck {
        data: Some(TelemetryData::default()),
    })
    .encode_into(net, &mut stream);
    assert_eq!(
        &stream[stream.len() - 210..stream.len() - 202],
        &hex("52411515140DCA00")[..]
    );
    let mut types = Vec::new();
    Deframer::new(net)
        .feed(&stream, |h, p| {
            let m = Message::decode(&h, p).expect("decodes");
            types.push(m.message_type());
            if let Message::AscPullReq(a) = m {
                assert_eq!(a.kind, AscPullType::Blocks);
                assert_eq!(a.id, 0x0102030405060708);
                assert_eq!(a.body, vec![0x11; 34]);
            }
        })
        .unwrap();
    assert_eq!(
        types,
        [
            MessageType::Keepalive,
            MessageType::AscPullReq,
            MessageType::TelemetryAck
        ]
    );
}

#[test]
fn s10_header_examples() {
    // message.publish_serialization: dev publish of a send block.
    let send = Block::Send(SendBlock {
        previous: BlockHash([1; 32]),
        destination: PublicKey([2; 32]),
        balance: Amount(3),
        signature: Signature([4; 64]),
        work: 5,
    });
    let bytes = roundtrip(
        &Message::Publish(Publish {
            block: send,
            originator: false,
        }),
        Network::Dev,
    );
    assert_eq!(&bytes[..8], &hex("5241151514030002")[..]);
    // rs message_header_to_string: Extensions 000E on dev.
    let h = Header::new(
        Network::Dev,
        MessageType::NodeIdHandshake,
        Extensions(0x000E),
    );
    assert_eq!(h.encode(), [0x52, 0x41, 0x15, 0x15, 0x14, 0x0A, 0x0E, 0x00]);
    // §11 publish headers.
    let state = |originator| {
        Message::Publish(Publish {
            block: Block::State(StateBlock {
                account: PublicKey([1; 32]),
                previous: BlockHash::ZERO,
                representative: PublicKey([2; 32]),
                balance: Amount(u128::MAX),
                link: BlockHash([3; 32]),
                signature: Signature([4; 64]),
                work: 0x0102030405060708,
            }),
            originator,
        })
    };
    let b = roundtrip(&state(false), Network::Live);
    assert_eq!(&b[..8], &hex("5243151514030006")[..]);
    assert_eq!(&b[8 + 208..], &[1, 2, 3, 4, 5, 6, 7, 8], "state work is BE");
    let b = roundtrip(&state(true), Network::Live);
    assert_eq!(&b[..8], &hex("5243151514030406")[..]);
    let b = roundtrip(&Message::TelemetryReq, Network::Live);
    assert_eq!(b, hex("52431515140C0000"));
}

#[test]
fn legacy_work_is_little_endian() {
    let blocks = [
        Block::Send(SendBlock {
            previous: BlockHash([1; 32]),
            destination: PublicKey([2; 32]),
            balance: Amount(0x0102),
            signature: Signature([4; 64]),
            work: 0x0102030405060708,
        }),
        Block::Receive(ReceiveBlock {
            previous: BlockHash([1; 32]),
            source: BlockHash([2; 32]),
            signature: Signature([4; 64]),
            work: 0x0102030405060708,
        }),
        Block::Open(OpenBlock {
            source: BlockHash([1; 32]),
            representative: PublicKey([2; 32]),
            account: PublicKey([3; 32]),
            signature: Signature([4; 64]),
            work: 0x0102030405060708,
        }),
        Block::Change(ChangeBlock {
            previous: BlockHash([1; 32]),
            representative: PublicKey([2; 32]),
            signature: Signature([4; 64]),
            work: 0x0102030405060708,
        }),
    ];
    for block in blocks {
        let t = block.block_type();
        let b = roundtrip(
            &Message::Publish(Publish {
                block,
                originator: false,
            }),
            Network::Beta,
        );
        assert_eq!(b.len(), 8 + t.wire_len());
        assert_eq!(&b[b.len() - 8..], &[8, 7, 6, 5, 4, 3, 2, 1], "{t:?}");
        assert_eq!(b[7], t as u8);
    }
}

// ---------------------------------------------------------------------------------------
// tests/data/decode.jsonl: structural fields (crypto fields are another module's job).

fn s(v: &Value) -> &str {
    v.as_str().expect("string")
}

fn check_block(block: &Block, e: &Value) {
    let t = s(&e["type"]);
    let hex_eq = |field: &str, bytes: &[u8]| {
        assert_eq!(
            hex::encode_upper(bytes),
            s(&e[field]).to_uppercase(),
            "{field}"
        );
    };
    let balance_eq = |b: &Amount| assert_eq!(b.0.to_string(), s(&e["balance"]));
    assert_eq!(
        format!("{:016X}", block.work()),
        s(&e["work"]).to_uppercase()
    );
    hex_eq("signature", &block.signature().0);
    match block {
        Block::Send(b) => {
            assert_eq!(t, "send");
            hex_eq("previous", &b.previous.0);
            hex_eq("destination", &b.destination.0);
            balance_eq(&b.balance);
        }
        Block::Receive(b) => {
            assert_eq!(t, "receive");
            hex_eq("previous", &b.previous.0);
            hex_eq("source", &b.source.0);
        }
        Block::Open(b) => {
            assert_eq!(t, "open");
            hex_eq("source", &b.source.0);
            hex_eq("representative", &b.representative.0);
            hex_eq("account", &b.account.0);
        }
        Block::Change(b) => {
            assert_eq!(t, "change");
            hex_eq("previous", &b.previous.0);
            hex_eq("representative", &b.representative.0);
        }
        Block::State(b) => {
            assert_eq!(t, "state");
            hex_eq("account", &b.account.0);
            hex_eq("previous", &b.previous.0);
            hex_eq("representative", &b.representative.0);
            hex_eq("link", &b.link.0);
            balance_eq(&b.balance);
        }
    }
}

fn check_vector(v: &Value) {
    let name = s(&v["name"]);
    let net: Network = s(&v["network"]).parse().unwrap();
    let bytes = hex::decode(s(&v["hex"])).unwrap();
    let e = &v["expect"];
    let result = decode_message(&bytes, net);
    if e.get("error").is_some() {
        let err = result.expect_err(name);
        assert!(
            err.to_string().starts_with("header: ") || err.to_string().starts_with("payload: "),
            "{name}: {err}"
        );
        return;
    }
    let (header, message) = result.unwrap_or_else(|err| panic!("{name}: {err}"));
    assert_eq!(header.network, net);
    assert_eq!(header.encode(), bytes[..8], "{name}: header re-encodes");
    assert_eq!(header.message_type.name(), s(&e["type"]), "{name}");
    assert_eq!(message.message_type(), header.message_type);
    // Everything the vectors hold re-encodes byte-exactly, except the block-type bits of
    // confirm_* headers, which receivers ignore (some vectors carry 0, senders set 1).
    let mut re = message.encode(net);
    if matches!(message, Message::ConfirmAck(_) | Message::ConfirmReq(_)) {
        assert_eq!(re[7] & 0xF0, bytes[7] & 0xF0, "{name}");
        re[7] = bytes[7];
    }
    assert_eq!(re, bytes, "{name}: re-encoding");
    let hx = |b: &[u8]| hex::encode_upper(b);
    match &message {
        Message::ConfirmAck(a) => {
            assert_eq!(hx(&a.vote.account.0), s(&e["account"]), "{name}");
            assert_eq!(hx(&a.vote.signature.0), s(&e["signature"]), "{name}");
            assert_eq!(a.vote.timestamp, e["timestamp"].as_u64().unwrap(), "{name}");
            assert_eq!(a.vote.is_final(), e["final"].as_bool().unwrap(), "{name}");
            let hashes: Vec<String> = a.vote.hashes.iter().map(|h| hx(&h.0)).collect();
            let want: Vec<&str> = e["hashes"].as_array().unwrap().iter().map(s).collect();
            assert_eq!(hashes, want, "{name}");
            assert_eq!(header.extensions.confirm_count() as usize, want.len());
        }
        Message::ConfirmReq(r) => {
            let want = e["pairs"].as_array().unwrap();
            assert_eq!(r.pairs.len(), want.len(), "{name}");
            for (p, w) in r.pairs.iter().zip(want) {
                assert_eq!(hx(&p.hash.0), s(&w["hash"]), "{name}");
                assert_eq!(hx(&p.root.0), s(&w["root"]), "{name}");
            }
        }
        Message::NodeIdHandshake(h) => {
            match (&h.query, e["query"].as_str()) {
                (Some(q), Some(w)) => assert_eq!(hx(&q.cookie.0), w, "{name}"),
                (None, None) => {}
                other => panic!("{name}: query {other:?}"),
            }
            let wr = &e["response"];
            match &h.response {
                None => assert!(wr.is_null(), "{name}"),
                Some(r) => {
                    assert_eq!(hx(&r.node_id.0), s(&wr["node_id"]), "{name}");
                    assert_eq!(hx(&r.signature.0), s(&wr["signature"]), "{name}");
                    assert_eq!(r.is_v2(), wr["v2"].as_bool().unwrap(), "{name}");
                    match &r.v2 {
                        Some(v2) => {
                            assert_eq!(hx(&v2.salt.0), s(&wr["salt"]), "{name}");
                            assert_eq!(hx(&v2.genesis.0), s(&wr["genesis"]), "{name}");
                        }
                        None => assert!(wr["salt"].is_null() && wr["genesis"].is_null()),
                    }
                    // The signed bytes are built from the vector's cookie.
                    let cookie: Cookie = s(&v["cookie"]).parse().unwrap();
                    let signed = r.signed_data(&cookie);
                    assert_eq!(&signed[..32], &cookie.0);
                    assert_eq!(signed.len(), if r.is_v2() { 96 } else { 32 });
                }
            }
        }
        Message::Keepalive(k) => {
            let want: Vec<SocketAddrV6> = e["peers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| s(p).parse().unwrap())
                .collect();
            assert_eq!(k.peers.to_vec(), want, "{name}");
        }
        Message::Publish(p) => check_block(&p.block, &e["block"]),
        Message::TelemetryAck(t) => {
            let d = t.data.as_ref().expect("non-empty telemetry");
            assert_eq!(hx(&d.signature.0), s(&e["signature"]), "{name}");
            assert_eq!(hx(&d.node_id.0), s(&e["node_id"]), "{name}");
            assert_eq!(hx(&d.genesis_block.0), s(&e["genesis_block"]), "{name}");
            let n = |f: &str| e[f].as_u64().unwrap_or_else(|| panic!("{name}: {f}"));
            assert_eq!(d.block_count, n("block_count"));
            assert_eq!(d.cemented_count, n("cemented_count"));
            assert_eq!(d.unchecked_count, n("unchecked_count"));
            assert_eq!(d.account_count, n("account_count"));
            assert_eq!(d.bandwidth_cap, n("bandwidth_cap"));
            assert_eq!(d.peer_count as u64, n("peer_count"));
            assert_eq!(d.protocol_version as u64, n("protocol_version"));
            assert_eq!(d.uptime, n("uptime"));
            assert_eq!(d.major_version as u64, n("major_version"));
            assert_eq!(d.minor_version as u64, n("minor_version"));
            assert_eq!(d.patch_version as u64, n("patch_version"));
            assert_eq!(d.pre_release_version as u64, n("pre_release_version"));
            assert_eq!(d.maker as u64, n("maker"));
            assert_eq!(d.timestamp, n("timestamp"));
            assert_eq!(d.active_difficulty, n("active_difficulty"));
            let size = header.extensions.telemetry_size() as usize;
            assert_eq!(d.unknown_data.len(), size - TELEMETRY_LEN);
            assert_eq!(d.signed_bytes(), &bytes[8 + 64..]);
            assert_eq!(
                TelemetryData::signed_region(&bytes[8..]),
                Some(&bytes[8 + 64..])
            );
        }
        other => panic!("{name}: unexpected {other:?}"),
    }
}

#[test]
fn decode_vectors() {
    let text = include_str!("data/decode.jsonl");
    let mut counts = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        check_vector(&v);
        let kind = v["expect"]["type"].as_str().unwrap_or("error").to_string();
        *counts.entry(kind).or_insert(0) += 1;
    }
    // Every kind present, so a silently skipped family fails the test.
    for kind in [
        "confirm_ack",
        "confirm_req",
        "node_id_handshake",
        "keepalive",
        "publish",
        "telemetry_ack",
        "error",
    ] {
        assert!(
            counts.get(kind).copied().unwrap_or(0) > 0,
            "{kind}: {counts:?}"
        );
    }
    assert_eq!(counts.values().sum::<i32>(), 108);
}

#[test]
fn decode_vector_error_classes() {
    let text = include_str!("data/decode.jsonl");
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let name = s(&v["name"]);
        if !name.starts_with("bad-") {
            continue;
        }
        let net: Network = s(&v["network"]).parse().unwrap();
        let err = decode_message(&hex::decode(s(&v["hex"])).unwrap(), net).unwrap_err();
        let want = match name {
            "bad-truncated-keepalive" => DecodeError::PayloadTooShort {
                message_type: MessageType::Keepalive,
                expected: 144,
                got: 92,
            },
            "bad-network" => DecodeError::WrongNetwork {
                got: 0x5241,
                expected: Network::Live,
            },
            "bad-type-9" => DecodeError::UnknownMessageType(9),
            "bad-type-0" => DecodeError::UnknownMessageType(0),
            "bad-old-version" => DecodeError::VersionTooOld {
                version_using: 0x13,
            },
            "bad-trailing" => DecodeError::TrailingBytes {
                message_type: MessageType::Keepalive,
                expected: 144,
                got: 145,
            },
            "bad-hs-noflags" => DecodeError::EmptyHandshake,
            "bad-publish-notablock" => DecodeError::TrailingBytes {
                message_type: MessageType::Publish,
                expected: 0,
                got: 8,
            },
            "bad-empty" => DecodeError::HeaderTooShort { got: 0 },
            other => panic!("unknown error vector {other}"),
        };
        assert_eq!(err, want, "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// Error texts and classes.

#[test]
fn error_texts_and_classes() {
    let live = Network::Live;
    let cases: Vec<(Vec<u8>, &str, Outcome)> = vec![
        (
            hex("5243151514090000"),
            "header: unknown message type 0x09",
            Outcome::CloseConnection,
        ),
        (
            hex("5241151514020000"),
            "header: wrong network 0x5241 (expected live 0x5243)",
            Outcome::CloseConnection,
        ),
        (
            hex("5243151314020000"),
            "header: version_using 0x13 below minimum 0x14",
            Outcome::CloseConnection,
        ),
        (
            hex("524315"),
            "header: needs 8 bytes, got 3",
            Outcome::CloseConnection,
        ),
        (
            [hex("5243151514020000"), vec![0; 92]].concat(),
            "payload: keepalive needs 144 bytes, got 92",
            Outcome::DropMessage,
        ),
        (
            [hex("5243151514020000"), vec![0; 145]].concat(),
            "payload: trailing bytes: keepalive takes 144 bytes, got 145",
            Outcome::DropMessage,
        ),
        (
            hex("5243151514030001"),
            "payload: publish block type 0x01 is not a block",
            Outcome::DropMessage,
        ),
        (
            hex("52431515140A0000"),
            "payload: node_id_handshake has neither query nor response",
            Outcome::DropMessage,
        ),
        (
            [hex("52431515140D6400"), vec![0; 100]].concat(),
            "payload: telemetry_ack of 100 bytes is shorter than 202",
            Outcome::DropMessage,
        ),
        (
            [hex("5243151514040011"), vec![0; 64]].concat(),
            "payload: confirm_req has 0 non-zero hash/root pairs for a header count of 1",
            Outcome::DropMessage,
        ),
        (
            hex("5243151514040000"),
            "payload: confirm_req has 0 non-zero hash/root pairs for a header count of 0",
            Outcome::DropMessage,
        ),
        (
            [
                hex("5243151514060100"),
                vec![0; 64],
                vec![1, 0, 0, 0, 0, 0, 0, 0],
            ]
            .concat(),
            "payload: bulk_pull extended parameters start with 0x01, expected 0x00",
            Outcome::DropMessage,
        ),
        (
            [hex("52431515140E0000"), vec![9; 9]].concat(),
            "payload: asc_pull_req has unknown pull type 0x09",
            Outcome::DropMessage,
        ),
    ];
    for (bytes, text, outcome) in cases {
        let err = decode_message(&bytes, live).unwrap_err();
        assert_eq!(err.to_string(), text);
        assert_eq!(err.outcome(), outcome, "{text}");
        assert_eq!(err.is_fatal(), outcome == Outcome::CloseConnection);
    }
    let big = DecodeError::PayloadTooLarge {
        len: 70_000,
        max: MAX_PAYLOAD,
    };
    assert_eq!(
        big.to_string(),
        "header: payload of 70000 bytes exceeds the maximum 66560"
    );
    assert_eq!(big.outcome(), Outcome::CloseConnection);
}

#[test]
fn confirm_req_with_one_zero_pair_among_others_is_invalid() {
    let mut raw = hex("5243151514040031");
    raw.extend_from_slice(&[1; 64]);
    raw.extend_from_slice(&[0; 64]);
    raw.extend_from_slice(&[2; 64]);
    let err = decode_message(&raw, Network::Live).unwrap_err();
    assert_eq!(
        err,
        DecodeError::ConfirmReqPairs {
            count: 3,
            nonzero: 2
        }
    );
    // A pair with only its hash or only its root zero is fine.
    let mut raw = hex("5243151514040021");
    raw.extend_from_slice(&[[0; 32], [1; 32], [1; 32], [0; 32]].concat());
    assert!(decode_message(&raw, Network::Live).is_ok());
}

#[test]
fn telemetry_sizes() {
    let h = |size: u16| Header::new(Network::Live, MessageType::TelemetryAck, Extensions(size));
    assert_eq!(
        Message::decode(&h(0), &[]).unwrap(),
        Message::TelemetryAck(TelemetryAck { data: None })
    );
    for size in [1usize, 100, 201] {
        let err = Message::decode(&h(size as u16), &vec![0; size]).unwrap_err();
        assert_eq!(err, DecodeError::TelemetryTooShort(size));
    }
    // The largest: 0x3FF, 821 unknown bytes, kept and signed.
    let payload: Vec<u8> = (0..0x3FF).map(|i| i as u8).collect();
    let Message::TelemetryAck(t) = Message::decode(&h(0xFFFF), &payload).unwrap() else {
        panic!()
    };
    let d = t.data.unwrap();
    assert_eq!(d.unknown_data, payload[202..]);
    assert_eq!(d.signed_bytes(), payload[64..]);
    // Ext bits above the size mask are not part of the size.
    assert_eq!(h(0xFC00).payload_len(), 0);
    // Encoding caps unknown data so the size fits the 10-bit field.
    let long = TelemetryAck {
        data: Some(TelemetryData {
            unknown_data: vec![7; 2000],
            ..TelemetryData::default()
        }),
    };
    let bytes = Message::TelemetryAck(long).encode(Network::Live);
    assert_eq!(bytes.len(), 8 + 0x3FF);
    assert_eq!(&bytes[6..8], &[0xFF, 0x03]);
}

#[test]
fn encode_caps_lists_at_255() {
    let m = Message::ConfirmAck(ConfirmAck {
        vote: vote_with(300),
        rebroadcasted: true,
    });
    let bytes = m.encode(Network::Live);
    assert_eq!(bytes.len(), 8 + 104 + 255 * 32);
    let (h, d) = decode_message(&bytes, Network::Live).unwrap();
    assert_eq!(h.extensions.bits(), 0xF1F5);
    let Message::ConfirmAck(a) = d else { panic!() };
    assert!(a.rebroadcasted);
    assert_eq!(a.vote.hashes[..], vote_with(300).hashes[..255]);
}

/// A sample of every message type, with each type's exact payload length.
fn samples() -> Vec<Message> {
    let state = Block::State(StateBlock {
        account: PublicKey([1; 32]),
        previous: BlockHash([2; 32]),
        representative: PublicKey([3; 32]),
        balance: Amount(4),
        link: BlockHash([5; 32]),
        signature: Signature([6; 64]),
        work: 7,
    });
    vec![
        Message::Keepalive(Keepalive::default()),
        Message::Publish(Publish {
            block: state,
            originator: true,
        }),
        Message::ConfirmReq(ConfirmReq {
            pairs: vec![HashRoot {
                hash: BlockHash([1; 32]),
                root: BlockHash([2; 32]),
            }],
        }),
        Message::ConfirmAck(ConfirmAck {
            vote: vote_with(3),
            rebroadcasted: false,
        }),
        Message::BulkPull(BulkPull {
            start: BlockHash([1; 32]),
            end: BlockHash([2; 32]),
            count: Some(9),
            ascending: true,
        }),
        Message::BulkPush,
        Message::FrontierReq(FrontierReq {
            start: PublicKey([1; 32]),
            age: 2,
            count: u32::MAX,
            only_confirmed: true,
        }),
        Message::NodeIdHandshake(NodeIdHandshake::query_response(
            cookie_01_20(),
            v2_response(),
        )),
        Message::BulkPullAccount(BulkPullAccount {
            account: PublicKey([1; 32]),
            minimum_amount: Amount(10),
            flags: 2,
        }),
        Message::TelemetryReq,
        Message::TelemetryAck(TelemetryAck {
            data: Some(TelemetryData {
                unknown_data: vec![1, 2, 3],
                ..TelemetryData::default()
            }),
        }),
        Message::AscPullReq(AscPull {
            kind: AscPullType::Frontiers,
            id: 42,
            body: vec![0; 34],
        }),
        Message::AscPullAck(AscPull {
            kind: AscPullType::AccountInfo,
            id: 43,
            body: vec![1; 144],
        }),
    ]
}

#[test]
fn wrong_length_for_every_message_type() {
    let net = Network::Test;
    let all = samples();
    assert_eq!(all.len(), MessageType::ALL.len());
    for m in &all {
        let bytes = roundtrip(m, net);
        let header = m.header(net);
        let payload = &bytes[8..];
        let mt = m.message_type();
        // One byte short (for payload-less types there is nothing to cut).
        if !payload.is_empty() {
            let err = Message::decode(&header, &payload[..payload.len() - 1]).unwrap_err();
            assert_eq!(
                err,
                DecodeError::PayloadTooShort {
                    message_type: mt,
                    expected: payload.len(),
                    got: payload.len() - 1
                }
            );
            assert_eq!(err.outcome(), Outcome::DropMessage);
            assert!(decode_message(&bytes[..bytes.len() - 1], net).is_err());
        }
        // One byte long: nothing may trail, not even after telemetry or asc_pull (their
        // unknown data sits inside the length the header gives).
        let mut long = payload.to_vec();
        long.push(0);
        let err = Message::decode(&header, &long).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TrailingBytes {
                message_type: mt,
                expected: payload.len(),
                got: payload.len() + 1
            }
        );
        assert_eq!(err.outcome(), Outcome::DropMessage);
        let mut long_msg = bytes.clone();
        long_msg.push(0);
        assert_eq!(decode_message(&long_msg, net).unwrap_err(), err);
        // Every truncation of the whole message fails, none panics.
        for cut in 0..bytes.len() {
            let err = decode_message(&bytes[..cut], net).unwrap_err();
            assert_eq!(err.is_fatal(), cut < 8, "{mt} cut at {cut}");
        }
    }
}

#[test]
fn header_checks_every_network_and_version() {
    let bytes = Message::TelemetryReq.encode(Network::Beta);
    for n in Network::ALL {
        let r = decode_message(&bytes, n);
        assert_eq!(r.is_ok(), n == Network::Beta);
    }
    for v in 0..=255u8 {
        let mut b = bytes.clone();
        b[3] = v;
        let r = decode_message(&b, Network::Beta);
        assert_eq!(r.is_ok(), v >= 0x14, "version_using {v:#x}");
        if let Err(e) = r {
            assert_eq!(e.outcome(), Outcome::CloseConnection);
        }
        // version_max / version_min never matter.
        let mut b = bytes.clone();
        b[2] = v;
        b[4] = v;
        assert!(decode_message(&b, Network::Beta).is_ok());
    }
}

// ---------------------------------------------------------------------------------------
// Allocation.

#[test]
fn fixed_size_messages_decode_without_allocating() {
    let net = Network::Live;
    let mut k = Keepalive::default();
    k.peers[3] = "[2001:db8::1]:7075".parse().unwrap();
    let mut msgs = vec![
        Message::Keepalive(k),
        Message::NodeIdHandshake(NodeIdHandshake::query(cookie_01_20())),
        Message::NodeIdHandshake(NodeIdHandshake::query_response(
            cookie_01_20(),
            v2_response(),
        )),
        Message::NodeIdHandshake(NodeIdHandshake::response(v1_response())),
        Message::TelemetryReq,
        Message::TelemetryAck(TelemetryAck {
            data: Some(TelemetryData::default()),
        }),
        Message::BulkPush,
    ];
    for m in samples() {
        if matches!(
            m,
            Message::Publish(_)
                | Message::BulkPull(_)
                | Message::FrontierReq(_)
                | Message::BulkPullAccount(_)
        ) {
            msgs.push(m);
        }
    }
    for m in msgs {
        let bytes = m.encode(net);
        let (n, r) = allocations(|| decode_message(&bytes, net));
        assert_eq!(n, 0, "{:?} allocated", m.message_type());
        assert_eq!(r.unwrap().1, m);
    }
    // A vote view does not allocate either; the owned vote allocates once.
    let bytes = Message::ConfirmAck(ConfirmAck {
        vote: vote_with(12),
        rebroadcasted: false,
    })
    .encode(net);
    let ext = Extensions(u16::from_le_bytes([bytes[6], bytes[7]]));
    let (n, view) = allocations(|| VoteView::new(ext, &bytes[8..]).map(|v| v.hashes().count()));
    assert_eq!((n, view), (0, Ok(12)));
    let (n, _) = allocations(|| decode_message(&bytes, net));
    assert_eq!(n, 1);
}

#[test]
fn deframer_zero_copy_and_allocation_free_for_whole_messages() {
    let net = Network::Live;
    let mut stream = Vec::new();
    for m in samples() {
        m.encode_into(net, &mut stream);
    }
    let range = stream.as_ptr_range();
    let mut d = Deframer::new(net);
    let mut frames = 0;
    let (n, r) = allocations(|| {
        d.feed(&stream, |_, p| {
            frames += 1;
            if !p.is_empty() {
                assert!(range.contains(&p.as_ptr()), "payload copied");
            }
        })
    });
    r.unwrap();
    assert_eq!((n, frames), (0, samples().len()));
    assert_eq!(d.buffered(), 0);
    assert_eq!(d.spill_capacity(), 0);
}

// ---------------------------------------------------------------------------------------
// Deframer.

fn mixed_stream(net: Network) -> (Vec<u8>, Vec<(Header, Vec<u8>)>) {
    let mut stream = Vec::new();
    let mut frames = Vec::new();
    let mut all = samples();
    all.extend(samples().into_iter().rev());
    all.push(Message::ConfirmAck(ConfirmAck {
        vote: vote_with(40),
        rebroadcasted: true,
    }));
    for m in &all {
        let start = stream.len();
        m.encode_into(net, &mut stream);
        frames.push((m.header(net), stream[start + 8..].to_vec()));
    }
    // A frame whose payload fails to decode still frames (publish with block type 0).
    stream.extend_from_slice(&hex("5243151514030000"));
    frames.push((
        Header::new(net, MessageType::Publish, Extensions(0)),
        Vec::new(),
    ));
    (stream, frames)
}

fn deframe_chunks<'a>(
    d: &mut Deframer,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<(Header, Vec<u8>)>, DecodeError> {
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c, |h, p| out.push((h, p.to_vec())))?;
    }
    Ok(out)
}

#[test]
fn deframer_every_two_way_split() {
    let net = Network::Live;
    let (stream, want) = mixed_stream(net);
    for cut in 0..=stream.len() {
        let mut d = Deframer::new(net);
        let (a, b) = stream.split_at(cut);
        let got = deframe_chunks(&mut d, [a, b]).unwrap();
        assert_eq!(got, want, "cut at {cut}");
        assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn deframer_one_byte_at_a_time() {
    let net = Network::Live;
    let (stream, want) = mixed_stream(net);
    let mut d = Deframer::new(net);
    let got = deframe_chunks(&mut d, stream.chunks(1)).unwrap();
    assert_eq!(got, want);
    // Spill never grew past the largest frame and was released after big ones.
    assert!(d.spill_capacity() <= SPILL_RETAIN);
    // Payload errors are found by decoding, per frame, and only for the bad frame.
    let bad: Vec<_> = got
        .iter()
        .filter_map(|(h, p)| Message::decode(h, p).err())
        .collect();
    assert_eq!(bad, [DecodeError::NotABlock(0)]);
}

#[test]
fn deframer_empty_feeds_and_partial_state() {
    let net = Network::Live;
    let bytes = Message::Keepalive(Keepalive::default()).encode(net);
    let mut d = Deframer::new(net);
    let mut n = 0;
    d.feed(&[], |_, _| n += 1).unwrap();
    d.feed(&bytes[..5], |_, _| n += 1).unwrap();
    assert_eq!(d.buffered(), 5);
    d.feed(&[], |_, _| n += 1).unwrap();
    d.feed(&bytes[5..20], |_, _| n += 1).unwrap();
    assert_eq!(d.buffered(), 20);
    assert!(d.spill_capacity() >= 144 && d.spill_capacity() <= 8 + MAX_PAYLOAD);
    d.feed(&bytes[20..], |_, _| n += 1).unwrap();
    assert_eq!((n, d.buffered()), (1, 0));
}

#[test]
fn deframer_header_error_is_fatal_and_sticky() {
    let net = Network::Live;
    let good = Message::TelemetryReq.encode(net);
    let mut stream = good.clone();
    stream.extend_from_slice(&hex("5243151514090000")); // unknown type
    stream.extend_from_slice(&good);
    for chunk in [1, 3, 8, 9, stream.len()] {
        let mut d = Deframer::new(net);
        let mut frames = 0;
        let mut err = None;
        for c in stream.chunks(chunk) {
            if let Err(e) = d.feed(c, |_, _| frames += 1) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(
            frames, 1,
            "chunk {chunk}: the frame before the error is delivered"
        );
        let err = err.expect("error reported");
        assert_eq!(err, DecodeError::UnknownMessageType(9));
        assert_eq!(err.outcome(), Outcome::CloseConnection);
        // Refuses more input, even valid input.
        assert_eq!(d.feed(&good, |_, _| frames += 1), Err(err.clone()));
        assert_eq!(frames, 1);
        assert_eq!(d.error(), Some(&err));
        assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn deframer_errors_each_kind() {
    let net = Network::Live;
    let cases = [
        (hex("5241151514020000"), "wrong network"),
        (hex("5243151314020000"), "old version"),
        (hex("5243151514000000"), "type 0"),
        (hex("5243151514100000"), "type 0x10"),
    ];
    for (bytes, what) in cases {
        let mut d = Deframer::new(net);
        // Detected as soon as the 8th header byte arrives.
        assert!(d.feed(&bytes[..7], |_, _| {}).is_ok(), "{what}");
        let e = d.feed(&bytes[7..], |_, _| {}).unwrap_err();
        assert!(e.is_fatal(), "{what}");
    }
    // Oversize: only reachable with a lower limit (no header computes > 66 560).
    let mut d = Deframer::with_max_payload(net, 150);
    let e = d.feed(
        &Message::Keepalive(Keepalive::default()).encode(net),
        |_, _| {},
    );
    assert_eq!(e, Ok(()));
    let ack = Message::TelemetryAck(TelemetryAck {
        data: Some(TelemetryData::default()),
    })
    .encode(net);
    let e = d.feed(&ack, |_, _| panic!("no frame")).unwrap_err();
    assert_eq!(e, DecodeError::PayloadTooLarge { len: 202, max: 150 });
    assert_eq!(e.outcome(), Outcome::CloseConnection);
}

// ---------------------------------------------------------------------------------------
// Property tests.

fn bytes32() -> impl Strategy<Value = [u8; 32]> {
    prop::array::uniform::<_, 32>(any::<u8>())
}
fn hash() -> impl Strategy<Value = BlockHash> {
    bytes32().prop_map(BlockHash)
}
fn key() -> impl Strategy<Value = PublicKey> {
    bytes32().prop_map(PublicKey)
}
fn cookie() -> impl Strategy<Value = Cookie> {
    bytes32().prop_map(Cookie)
}
fn sig() -> impl Strategy<Value = Signature> {
    prop::array::uniform::<_, 64>(any::<u8>()).prop_map(Signature)
}
fn amount() -> impl Strategy<Value = Amount> {
    any::<u128>().prop_map(Amount)
}

fn block() -> impl Strategy<Value = Block> {
    prop_oneof![
        (hash(), key(), amount(), sig(), any::<u64>()).prop_map(|(p, d, b, s, w)| {
            Block::Send(SendBlock {
                previous: p,
                destination: d,
                balance: b,
                signature: s,
                work: w,
            })
        }),
        (hash(), hash(), sig(), any::<u64>()).prop_map(|(p, src, s, w)| {
            Block::Receive(ReceiveBlock {
                previous: p,
                source: src,
                signature: s,
                work: w,
            })
        }),
        (hash(), key(), key(), sig(), any::<u64>()).prop_map(|(src, r, a, s, w)| {
            Block::Open(OpenBlock {
                source: src,
                representative: r,
                account: a,
                signature: s,
                work: w,
            })
        }),
        (hash(), key(), sig(), any::<u64>()).prop_map(|(p, r, s, w)| {
            Block::Change(ChangeBlock {
                previous: p,
                representative: r,
                signature: s,
                work: w,
            })
        }),
        (key(), hash(), key(), amount(), hash(), sig(), any::<u64>()).prop_map(
            |(a, p, r, b, l, s, w)| {
                Block::State(StateBlock {
                    account: a,
                    previous: p,
                    representative: r,
                    balance: b,
                    link: l,
                    signature: s,
                    work: w,
                })
            }
        ),
    ]
}

fn peer() -> impl Strategy<Value = SocketAddrV6> {
    (prop::array::uniform::<_, 16>(any::<u8>()), any::<u16>())
        .prop_map(|(ip, port)| SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
}

fn vote(max: usize) -> impl Strategy<Value = Vote> {
    (
        key(),
        sig(),
        any::<u64>(),
        prop::collection::vec(hash(), 0..=max),
    )
        .prop_map(|(account, signature, timestamp, hashes)| Vote {
            account,
            signature,
            timestamp,
            hashes,
        })
}

fn response() -> impl Strategy<Value = HandshakeResponse> {
    (key(), prop::option::of((cookie(), hash())), sig()).prop_map(|(node_id, v2, signature)| {
        HandshakeResponse {
            node_id,
            v2: v2.map(|(salt, genesis)| ResponseV2 { salt, genesis }),
            signature,
        }
    })
}

/// Every valid handshake; with both parts, the query's v2 bit equals the response's
/// (one ext bit describes both, §4.5).
fn handshake() -> impl Strategy<Value = NodeIdHandshake> {
    (
        prop::option::of((cookie(), any::<bool>())),
        prop::option::of(response()),
    )
        .prop_filter("query or response", |(q, r)| q.is_some() || r.is_some())
        .prop_map(|(q, response)| NodeIdHandshake {
            query: q.map(|(cookie, v2)| HandshakeQuery {
                cookie,
                v2: response.map_or(v2, |r| r.is_v2()),
            }),
            response,
        })
}

fn telemetry() -> impl Strategy<Value = TelemetryData> {
    (
        (
            sig(),
            key(),
            any::<[u64; 5]>(),
            any::<u32>(),
            any::<u8>(),
            any::<u64>(),
        ),
        (hash(), any::<[u8; 5]>(), any::<u64>(), any::<u64>()),
        prop::collection::vec(any::<u8>(), 0..=821),
    )
        .prop_map(
            |((s, n, c, peers, pv, up), (g, v, ts, diff), unknown)| TelemetryData {
                signature: s,
                node_id: n,
                block_count: c[0],
                cemented_count: c[1],
                unchecked_count: c[2],
                account_count: c[3],
                bandwidth_cap: c[4],
                peer_count: peers,
                protocol_version: pv,
                uptime: up,
                genesis_block: g,
                major_version: v[0],
                minor_version: v[1],
                patch_version: v[2],
                pre_release_version: v[3],
                maker: v[4],
                timestamp: ts,
                active_difficulty: diff,
                unknown_data: unknown,
            },
        )
}

fn asc_pull() -> impl Strategy<Value = AscPull> {
    (
        prop_oneof![
            Just(AscPullType::Blocks),
            Just(AscPullType::AccountInfo),
            Just(AscPullType::Frontiers)
        ],
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(kind, id, body)| AscPull { kind, id, body })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        prop::array::uniform::<_, 8>(peer())
            .prop_map(|peers| Message::Keepalive(Keepalive { peers })),
        (block(), any::<bool>())
            .prop_map(|(block, originator)| Message::Publish(Publish { block, originator })),
        prop::collection::vec(
            (hash(), hash())
                .prop_filter("non-zero pair", |(h, r)| !(h.is_zero() && r.is_zero()))
                .prop_map(|(hash, root)| HashRoot { hash, root }),
            1..=255
        )
        .prop_map(|pairs| Message::ConfirmReq(ConfirmReq { pairs })),
        (vote(255), any::<bool>()).prop_map(|(vote, rebroadcasted)| {
            Message::ConfirmAck(ConfirmAck {
                vote,
                rebroadcasted,
            })
        }),
        (
            hash(),
            hash(),
            prop::option::of(any::<u32>()),
            any::<bool>()
        )
            .prop_map(
                |(start, end, count, ascending)| Message::BulkPull(BulkPull {
                    start,
                    end,
                    count,
                    ascending
                })
            ),
        Just(Message::BulkPush),
        (key(), any::<u32>(), any::<u32>(), any::<bool>()).prop_map(
            |(start, age, count, only_confirmed)| Message::FrontierReq(FrontierReq {
                start,
                age,
                count,
                only_confirmed
            })
        ),
        handshake().prop_map(Message::NodeIdHandshake),
        (key(), amount(), any::<u8>()).prop_map(|(account, minimum_amount, flags)| {
            Message::BulkPullAccount(BulkPullAccount {
                account,
                minimum_amount,
                flags,
            })
        }),
        Just(Message::TelemetryReq),
        prop::option::of(telemetry()).prop_map(|data| Message::TelemetryAck(TelemetryAck { data })),
        asc_pull().prop_map(Message::AscPullReq),
        asc_pull().prop_map(Message::AscPullAck),
    ]
}

fn network() -> impl Strategy<Value = Network> {
    prop::sample::select(Network::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn prop_round_trip(m in message(), net in network()) {
        roundtrip(&m, net);
    }

    /// Every handshake flag combination with arbitrary payload bytes: decode, then
    /// re-encode to the same bytes; 0b000 and 0b100 (neither part) are rejected.
    #[test]
    fn prop_handshake_flag_combinations(flags in 0u16..8, body in prop::collection::vec(any::<u8>(), 192)) {
        let header = Header::new(Network::Live, MessageType::NodeIdHandshake, Extensions(flags));
        let payload = &body[..header.payload_len()];
        match Message::decode(&header, payload) {
            Ok(m) => {
                prop_assert!(flags & 3 != 0);
                let Message::NodeIdHandshake(h) = &m else { panic!() };
                prop_assert_eq!(h.query.is_some(), flags & 1 != 0);
                prop_assert_eq!(h.response.is_some(), flags & 2 != 0);
                let mut raw = header.encode().to_vec();
                raw.extend_from_slice(payload);
                prop_assert_eq!(m.encode(Network::Live), raw);
            }
            Err(e) => {
                prop_assert_eq!(flags & 3, 0);
                prop_assert_eq!(e, DecodeError::EmptyHandshake);
            }
        }
    }

    #[test]
    fn prop_deframer_any_chunking(
        msgs in prop::collection::vec(message(), 1..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let net = Network::Dev;
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for m in &msgs {
            m.encode_into(net, &mut stream);
            want.push(m.clone());
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let chunks = points.windows(2).map(|w| &stream[w[0]..w[1]]);
        let mut d = Deframer::new(net);
        let mut got = Vec::new();
        for c in chunks {
            d.feed(c, |h, p| got.push(Message::decode(&h, p).unwrap())).unwrap();
        }
        prop_assert_eq!(got, want);
        prop_assert_eq!(d.buffered(), 0);
    }

    /// Garbage never panics, and the deframer's verdict matches decoding message by message.
    #[test]
    fn prop_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600), net in network()) {
        let _ = decode_message(&bytes, net);
        let mut d = Deframer::new(net);
        let mut frames = 0usize;
        let r = d.feed(&bytes, |h, p| {
            frames += 1;
            let _ = Message::decode(&h, p);
        });
        if let Err(e) = r {
            prop_assert!(e.is_fatal());
        }
        for chunk in bytes.chunks(7) {
            let _ = Deframer::new(net).feed(chunk, |_, _| {});
        }
    }

    /// Any valid header with a payload of the right length but random content: decoding
    /// either succeeds or gives a payload (drop) error; it never panics.
    #[test]
    fn prop_random_payload_for_valid_headers(
        t in prop::sample::select(MessageType::ALL.to_vec()),
        ext in any::<u16>(),
        body in prop::collection::vec(any::<u8>(), 0..2_000),
    ) {
        let header = Header::new(Network::Live, t, Extensions(ext));
        let len = header.payload_len();
        let mut payload = body;
        payload.resize(len, 0xA5);
        match Message::decode(&header, &payload) {
            Ok(m) => prop_assert_eq!(m.message_type(), t),
            Err(e) => prop_assert_eq!(e.outcome(), Outcome::DropMessage),
        }
    }

    /// Re-encoding what decodes gives the input back, for every type whose encoding has
    /// no ignored bits (bytes chosen at random, header ext as the sender would set it).
    #[test]
    fn prop_decode_encode_bytes(m in message(), flip in any::<prop::sample::Index>()) {
        let net = Network::Live;
        let mut bytes = m.encode(net);
        if bytes.len() > 8 {
            // Flip a payload byte: still decodes to something that re-encodes identically,
            // unless the flip made the payload invalid.
            let i = 8 + flip.index(bytes.len() - 8);
            bytes[i] ^= 0x41;
            if let Ok((_, d)) = decode_message(&bytes, net)
                && !matches!(d, Message::BulkPull(_)) {
                prop_assert_eq!(d.encode(net), bytes);
            }
        }
    }
}

#[test]
fn bootstrap_layouts() {
    let net = Network::Live;
    let b = roundtrip(
        &Message::BulkPull(BulkPull {
            start: BlockHash([1; 32]),
            end: BlockHash([2; 32]),
            count: Some(0x01020304),
            ascending: true,
        }),
        net,
    );
    assert_eq!(&b[..8], &hex("5243151514060300")[..]);
    assert_eq!(b.len(), 8 + 72);
    assert_eq!(
        &b[72..],
        &[0, 4, 3, 2, 1, 0, 0, 0],
        "00 ‖ count LE ‖ 00 00 00"
    );
    let h = Header::decode(b[..8].try_into().unwrap(), net).unwrap();
    assert!(h.extensions.bulk_pull_count_present() && h.extensions.bulk_pull_ascending());
    let b = roundtrip(
        &Message::BulkPull(BulkPull {
            start: BlockHash([1; 32]),
            end: BlockHash([2; 32]),
            count: None,
            ascending: false,
        }),
        net,
    );
    assert_eq!((b.len(), b[6]), (8 + 64, 0));

    let b = roundtrip(
        &Message::FrontierReq(FrontierReq {
            start: PublicKey([1; 32]),
            age: 0x0A0B0C0D,
            count: 0x01020304,
            only_confirmed: true,
        }),
        net,
    );
    assert_eq!(&b[..8], &hex("5243151514080200")[..]);
    assert_eq!(
        &b[40..],
        &[0x0D, 0x0C, 0x0B, 0x0A, 4, 3, 2, 1],
        "age, count LE"
    );

    let b = roundtrip(
        &Message::BulkPullAccount(BulkPullAccount {
            account: PublicKey([1; 32]),
            minimum_amount: Amount(0x0102),
            flags: 1,
        }),
        net,
    );
    assert_eq!(&b[..8], &hex("52431515140B0000")[..]);
    assert_eq!(&b[40..57], &[[0; 14].as_slice(), &[1, 2, 1]].concat()[..]);

    let b = roundtrip(&Message::BulkPush, net);
    assert_eq!(b, hex("5243151514070000"));

    let b = roundtrip(
        &Message::AscPullAck(AscPull {
            kind: AscPullType::AccountInfo,
            id: 0x0102030405060708,
            body: vec![9; 0x123],
        }),
        net,
    );
    assert_eq!(&b[..8], &hex("52431515140F2301")[..]);
    assert_eq!(&b[8..17], &[2, 1, 2, 3, 4, 5, 6, 7, 8], "type ‖ id BE");
    assert_eq!(b.len(), 8 + 9 + 0x123);
}
