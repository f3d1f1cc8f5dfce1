//! node_id_handshake (§4.5): an optional query cookie followed by an optional response,
//! v1 (node_id ‖ signature) or v2 (node_id ‖ salt ‖ genesis ‖ signature).

use std::ops::Deref;

use super::error::DecodeError;
use super::header::{Extensions, MessageType};
use super::reader::Reader;
use crate::types::{BlockHash, Cookie, PublicKey, Signature};

/// Payload bytes of a query.
pub const QUERY_LEN: usize = 32;
/// Payload bytes of a v1 response.
pub const RESPONSE_V1_LEN: usize = 96;
/// Payload bytes of a v2 response.
pub const RESPONSE_V2_LEN: usize = 160;
/// The largest node_id_handshake payload: a query and a v2 response (192 bytes). Until a peer
/// is authenticated no larger frame is accepted.
pub const MAX_HANDSHAKE_PAYLOAD: usize = QUERY_LEN + RESPONSE_V2_LEN;

/// The query part of a node_id_handshake (ext bit 0): a cookie for the peer to sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HandshakeQuery {
    /// The syn cookie the peer must sign.
    pub cookie: Cookie,
    /// Ext bit 2. In a query-only message: the sender accepts a v2 response (nano-node
    /// always sets it). In a query+response message the bit describes the response layout:
    /// decoding copies it here, encoding takes it from the response.
    pub v2: bool,
}

/// The v2 part of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResponseV2 {
    /// 32 random bytes chosen by the responder.
    pub salt: Cookie,
    /// The responder's genesis block hash.
    pub genesis: BlockHash,
}

/// A handshake response: the responder's node id and its signature over the cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HandshakeResponse {
    /// The node id (public key).
    pub node_id: PublicKey,
    /// Salt and genesis for a v2 response; `None` for v1.
    pub v2: Option<ResponseV2>,
    /// Signature by the node id key over [`HandshakeResponse::signed_data`].
    pub signature: Signature,
}

/// The bytes a handshake response signs, held inline (at most 96 bytes, no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignedData {
    buf: [u8; 96],
    len: usize,
}

impl SignedData {
    /// The signed bytes: 32 for a v1 response, 96 for v2.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&self.buf)
    }
}

impl Deref for SignedData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for SignedData {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for SignedData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignedData({})", hex::encode_upper(self.as_bytes()))
    }
}

impl HandshakeResponse {
    /// True for the v2 layout.
    pub fn is_v2(&self) -> bool {
        self.v2.is_some()
    }

    /// Exactly what the signature covers (§4.5): v1 the 32 cookie bytes; v2
    /// cookie ‖ salt ‖ genesis (96 bytes).
    pub fn signed_data(&self, cookie: &Cookie) -> SignedData {
        let mut buf = [0u8; 96];
        buf[..32].copy_from_slice(&cookie.0);
        let len = match &self.v2 {
            None => 32,
            Some(v2) => {
                buf[32..64].copy_from_slice(&v2.salt.0);
                buf[64..96].copy_from_slice(&v2.genesis.0);
                96
            }
        };
        SignedData { buf, len }
    }

    fn wire_len(&self) -> usize {
        if self.is_v2() {
            RESPONSE_V2_LEN
        } else {
            RESPONSE_V1_LEN
        }
    }
}

/// A node_id_handshake: query, response or both (never neither).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeIdHandshake {
    /// The query, if present (ext bit 0).
    pub query: Option<HandshakeQuery>,
    /// The response, if present (ext bit 1); its layout follows ext bit 2.
    pub response: Option<HandshakeResponse>,
}

impl NodeIdHandshake {
    /// A query as nano-node sends it (v2 support advertised): ext 0x0005.
    pub fn query(cookie: Cookie) -> NodeIdHandshake {
        NodeIdHandshake {
            query: Some(HandshakeQuery { cookie, v2: true }),
            response: None,
        }
    }

    /// A response only: ext 0x0006 (v2) or 0x0002 (v1).
    pub fn response(response: HandshakeResponse) -> NodeIdHandshake {
        NodeIdHandshake {
            query: None,
            response: Some(response),
        }
    }

    /// A query and a response: ext 0x0007 (v2 response) or 0x0003 (v1 response).
    pub fn query_response(cookie: Cookie, response: HandshakeResponse) -> NodeIdHandshake {
        NodeIdHandshake {
            query: Some(HandshakeQuery { cookie, v2: true }),
            response: Some(response),
        }
    }

    /// Header extensions by the C++ sender rule (§4.5): a query sets bits 0 and 2 (bit 2
    /// from [`HandshakeQuery::v2`]); a response then sets bit 1 and sets or clears bit 2 by
    /// its own layout, so query + v1 response gives 0x0003.
    pub fn extensions(&self) -> Extensions {
        let mut e = Extensions(0);
        if let Some(q) = &self.query {
            e = e
                .with(Extensions::QUERY, true)
                .with(Extensions::HANDSHAKE_V2, q.v2);
        }
        if let Some(r) = &self.response {
            e = e
                .with(Extensions::RESPONSE, true)
                .with(Extensions::HANDSHAKE_V2, r.is_v2());
        }
        e
    }

    pub(crate) fn payload_len(&self) -> usize {
        self.query.map_or(0, |_| QUERY_LEN) + self.response.map_or(0, |r| r.wire_len())
    }

    pub(crate) fn encode_payload(&self, out: &mut Vec<u8>) {
        if let Some(q) = &self.query {
            out.extend_from_slice(&q.cookie.0);
        }
        if let Some(r) = &self.response {
            out.extend_from_slice(&r.node_id.0);
            if let Some(v2) = &r.v2 {
                out.extend_from_slice(&v2.salt.0);
                out.extend_from_slice(&v2.genesis.0);
            }
            out.extend_from_slice(&r.signature.0);
        }
    }

    #[inline]
    pub(crate) fn decode_payload(
        ext: Extensions,
        payload: &[u8],
    ) -> Result<NodeIdHandshake, DecodeError> {
        if !ext.query() && !ext.response() {
            return Err(DecodeError::EmptyHandshake);
        }
        let v2 = ext.handshake_v2();
        let mut r = Reader::new(MessageType::NodeIdHandshake, payload);
        let query = if ext.query() {
            Some(HandshakeQuery {
                cookie: Cookie(r.array()?),
                v2,
            })
        } else {
            None
        };
        let response = if ext.response() {
            let node_id = PublicKey(r.array()?);
            let v2 = if v2 {
                Some(ResponseV2 {
                    salt: Cookie(r.array()?),
                    genesis: BlockHash(r.array()?),
                })
            } else {
                None
            };
            Some(HandshakeResponse {
                node_id,
                v2,
                signature: Signature(r.array()?),
            })
        } else {
            None
        };
        r.finish()?;
        Ok(NodeIdHandshake { query, response })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_data_layouts() {
        let cookie = Cookie([1; 32]);
        let mut r = HandshakeResponse {
            node_id: PublicKey([2; 32]),
            v2: None,
            signature: Signature([3; 64]),
        };
        assert_eq!(r.signed_data(&cookie).as_bytes(), &[1; 32]);
        r.v2 = Some(ResponseV2 {
            salt: Cookie([4; 32]),
            genesis: BlockHash([5; 32]),
        });
        let s = r.signed_data(&cookie);
        assert_eq!(&s[..], &[[1; 32], [4; 32], [5; 32]].concat()[..]);
    }

    #[test]
    fn every_flag_combination_has_its_length() {
        for flags in 0u16..8 {
            let ext = Extensions(flags);
            let len = 32 * usize::from(ext.query())
                + if !ext.response() {
                    0
                } else if ext.handshake_v2() {
                    160
                } else {
                    96
                };
            let payload = vec![9u8; len];
            let r = NodeIdHandshake::decode_payload(ext, &payload);
            if flags & 3 == 0 {
                assert_eq!(r, Err(DecodeError::EmptyHandshake));
            } else {
                let h = r.unwrap();
                assert_eq!(h.payload_len(), len);
                if let Some(q) = h.query {
                    assert_eq!(q.v2, ext.handshake_v2());
                }
                // The C++ sender rule reproduces the flags (query-only keeps bit 2 as is).
                assert_eq!(h.extensions(), ext);
            }
        }
    }
}
