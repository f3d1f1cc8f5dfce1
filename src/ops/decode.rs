//! `nanopeer decode`: one captured message (hex) → one JSON object, for operators.
//!
//! Every message gives `network`, `version_max`, `version_using`, `version_min`, `type` and
//! `extensions`; each type adds its fields by their spec names. Hex is upper-case, amounts are
//! decimal strings, and a fact that does not apply is `null`.

use serde_json::{Map, Value, json};

use crate::crypto;
use crate::types::{Cookie, Network};
use crate::wire::{
    Block, DecodeError, HandshakeResponse, Header, Message, Publish, TelemetryData, decode_message,
};

/// Why a message could not be decoded; its Display is the one line printed on stderr.
#[derive(Debug, thiserror::Error)]
pub enum DecodeFailure {
    /// The input is not hex.
    #[error("hex: {0}")]
    Hex(String),
    /// The bytes are not a valid message.
    #[error("{0}")]
    Wire(#[from] DecodeError),
}

/// Decodes one hex message on `network` into the JSON object `nanopeer decode` prints.
/// `cookie` is the syn cookie a handshake response signs, when known.
pub fn decode_hex(
    hex_text: &str,
    network: Network,
    cookie: Option<&Cookie>,
) -> Result<Value, DecodeFailure> {
    let text: String = hex_text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = hex::decode(&text).map_err(|e| DecodeFailure::Hex(e.to_string()))?;
    let (header, message) = decode_message(&bytes, network)?;
    Ok(render(&header, &message, network, cookie))
}

/// Renders a decoded message as the JSON object of `nanopeer decode`.
pub fn render(
    header: &Header,
    message: &Message,
    network: Network,
    cookie: Option<&Cookie>,
) -> Value {
    let mut o = Map::new();
    o.insert("network".into(), json!(header.network.name()));
    o.insert("version_max".into(), json!(header.version_max));
    o.insert("version_using".into(), json!(header.version_using));
    o.insert("version_min".into(), json!(header.version_min));
    o.insert("type".into(), json!(header.message_type.name()));
    o.insert("extensions".into(), json!(header.extensions.bits()));
    match message {
        Message::Keepalive(k) => {
            let peers: Vec<String> = k
                .peers
                .iter()
                .map(|p| format!("[{}]:{}", p.ip(), p.port()))
                .collect();
            o.insert("peers".into(), json!(peers));
        }
        Message::Publish(p) => {
            o.insert("originator".into(), json!(p.originator));
            o.insert("block".into(), block_json(p, network));
        }
        Message::ConfirmReq(r) => {
            let pairs: Vec<Value> = r
                .pairs
                .iter()
                .map(|p| json!({"hash": p.hash.to_hex(), "root": p.root.to_hex()}))
                .collect();
            o.insert("pairs".into(), json!(pairs));
        }
        Message::ConfirmAck(a) => {
            let v = &a.vote;
            let vote_hash = crypto::vote_hash(&v.hashes, v.timestamp);
            o.insert("account".into(), json!(v.account.to_hex()));
            o.insert("signature".into(), json!(v.signature.to_hex()));
            o.insert("timestamp".into(), json!(v.timestamp));
            o.insert("final".into(), json!(v.is_final()));
            o.insert("rebroadcasted".into(), json!(a.rebroadcasted));
            o.insert(
                "hashes".into(),
                json!(v.hashes.iter().map(|h| h.to_hex()).collect::<Vec<_>>()),
            );
            o.insert("vote_hash".into(), json!(vote_hash.to_hex()));
            o.insert(
                "signature_valid".into(),
                json!(crypto::verify(
                    vote_hash.as_bytes(),
                    &v.signature,
                    &v.account
                )),
            );
        }
        Message::NodeIdHandshake(h) => {
            o.insert(
                "query".into(),
                h.query
                    .as_ref()
                    .map_or(Value::Null, |q| json!(q.cookie.to_hex())),
            );
            o.insert(
                "response".into(),
                h.response.as_ref().map_or(Value::Null, response_json),
            );
            let valid = match (&h.response, cookie) {
                (Some(r), Some(c)) => {
                    json!(crypto::verify(
                        r.signed_data(c).as_bytes(),
                        &r.signature,
                        &r.node_id
                    ))
                }
                _ => Value::Null,
            };
            o.insert("signature_valid".into(), valid);
        }
        Message::TelemetryAck(t) => match &t.data {
            Some(d) => telemetry_json(&mut o, d),
            None => {
                o.insert("empty".into(), json!(true));
            }
        },
        Message::BulkPull(_)
        | Message::BulkPush
        | Message::FrontierReq(_)
        | Message::BulkPullAccount(_)
        | Message::TelemetryReq
        | Message::AscPullReq(_)
        | Message::AscPullAck(_) => {}
    }
    Value::Object(o)
}

fn response_json(r: &HandshakeResponse) -> Value {
    json!({
        "node_id": r.node_id.to_hex(),
        "salt": r.v2.as_ref().map(|v| v.salt.to_hex()),
        "genesis": r.v2.as_ref().map(|v| v.genesis.to_hex()),
        "signature": r.signature.to_hex(),
        "v2": r.v2.is_some(),
    })
}

fn block_json(p: &Publish, network: Network) -> Value {
    let block = &p.block;
    let mut b = Map::new();
    b.insert("type".into(), json!(block_type_name(block)));
    match block {
        Block::Send(s) => {
            b.insert("previous".into(), json!(s.previous.to_hex()));
            b.insert("destination".into(), json!(s.destination.to_hex()));
            b.insert("balance".into(), json!(s.balance.0.to_string()));
        }
        Block::Receive(r) => {
            b.insert("previous".into(), json!(r.previous.to_hex()));
            b.insert("source".into(), json!(r.source.to_hex()));
        }
        Block::Open(o) => {
            b.insert("source".into(), json!(o.source.to_hex()));
            b.insert("representative".into(), json!(o.representative.to_hex()));
            b.insert("account".into(), json!(o.account.to_hex()));
        }
        Block::Change(c) => {
            b.insert("previous".into(), json!(c.previous.to_hex()));
            b.insert("representative".into(), json!(c.representative.to_hex()));
        }
        Block::State(s) => {
            b.insert("account".into(), json!(s.account.to_hex()));
            b.insert("previous".into(), json!(s.previous.to_hex()));
            b.insert("representative".into(), json!(s.representative.to_hex()));
            b.insert("balance".into(), json!(s.balance.0.to_string()));
            b.insert("link".into(), json!(s.link.to_hex()));
        }
    }
    let hash = crypto::block_hash(block);
    let difficulty = crypto::work_value(&block.root(), block.work());
    b.insert("hash".into(), json!(hash.to_hex()));
    b.insert("signature".into(), json!(block.signature().to_hex()));
    b.insert(
        "signature_valid".into(),
        block.signing_account().map_or(Value::Null, |acc| {
            json!(crypto::verify(hash.as_bytes(), block.signature(), &acc))
        }),
    );
    b.insert("work".into(), json!(format!("{:016X}", block.work())));
    b.insert("difficulty".into(), json!(format!("{difficulty:016X}")));
    b.insert(
        "work_valid".into(),
        json!(
            difficulty
                >= crypto::WorkThresholds::for_network(network).entry_for(block.block_type())
        ),
    );
    Value::Object(b)
}

fn block_type_name(block: &Block) -> &'static str {
    match block {
        Block::Send(_) => "send",
        Block::Receive(_) => "receive",
        Block::Open(_) => "open",
        Block::Change(_) => "change",
        Block::State(_) => "state",
    }
}

fn telemetry_json(o: &mut Map<String, Value>, d: &TelemetryData) {
    o.insert("signature".into(), json!(d.signature.to_hex()));
    o.insert("node_id".into(), json!(d.node_id.to_hex()));
    o.insert("block_count".into(), json!(d.block_count));
    o.insert("cemented_count".into(), json!(d.cemented_count));
    o.insert("unchecked_count".into(), json!(d.unchecked_count));
    o.insert("account_count".into(), json!(d.account_count));
    o.insert("bandwidth_cap".into(), json!(d.bandwidth_cap));
    o.insert("peer_count".into(), json!(d.peer_count));
    o.insert("protocol_version".into(), json!(d.protocol_version));
    o.insert("uptime".into(), json!(d.uptime));
    o.insert("genesis_block".into(), json!(d.genesis_block.to_hex()));
    o.insert("major_version".into(), json!(d.major_version));
    o.insert("minor_version".into(), json!(d.minor_version));
    o.insert("patch_version".into(), json!(d.patch_version));
    o.insert("pre_release_version".into(), json!(d.pre_release_version));
    o.insert("maker".into(), json!(d.maker));
    o.insert("timestamp".into(), json!(d.timestamp));
    o.insert("active_difficulty".into(), json!(d.active_difficulty));
    o.insert(
        "unknown_data".into(),
        json!(hex::encode_upper(&d.unknown_data)),
    );
    o.insert(
        "signature_valid".into(),
        json!(crypto::verify(&d.signed_bytes(), &d.signature, &d.node_id)),
    );
}
