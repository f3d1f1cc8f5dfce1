//! The node's identity: the node-id key pair of the handshake (§4.5) and telemetry (§4.6).

use std::fmt;

use rand::CryptoRng;

use crate::crypto::{KeyPair, NodeSecret, encode_node_id};
use crate::types::{BlockHash, Cookie, PublicKey, Signature};
use crate::wire::{HandshakeResponse, ResponseV2};

/// The node id key pair and its `node_…` text. `Debug` shows the public node id only.
#[derive(Clone)]
pub struct NodeIdentity {
    key: KeyPair,
    text: String,
}

impl NodeIdentity {
    /// The identity of a stored node-id secret (`node_id_private.key`).
    pub fn from_secret(secret: &NodeSecret) -> NodeIdentity {
        NodeIdentity::from_private(*secret.expose_secret())
    }

    /// The identity of a raw 32-byte private key.
    pub fn from_private(private: [u8; 32]) -> NodeIdentity {
        NodeIdentity::from_key(KeyPair::from_private(private))
    }

    /// A fresh random identity (V21-style ephemeral node id, tests).
    pub fn generate(rng: &mut impl CryptoRng) -> NodeIdentity {
        NodeIdentity::from_key(KeyPair::generate(rng))
    }

    fn from_key(key: KeyPair) -> NodeIdentity {
        let text = encode_node_id(&key.public());
        NodeIdentity { key, text }
    }

    /// The node id (public key).
    pub fn node_id(&self) -> PublicKey {
        self.key.public()
    }

    /// The node id as `node_…` text (§5.4).
    pub fn node_id_text(&self) -> &str {
        &self.text
    }

    /// Signs `msg` with the node id key.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        self.key.sign(msg)
    }

    /// Our handshake response to `cookie` (§4.5): v2 signs cookie ‖ salt ‖ genesis, v1 signs
    /// the raw cookie (`v2 = None`).
    pub fn handshake_response(
        &self,
        cookie: &Cookie,
        v2: Option<(Cookie, BlockHash)>,
    ) -> HandshakeResponse {
        let mut response = HandshakeResponse {
            node_id: self.node_id(),
            v2: v2.map(|(salt, genesis)| ResponseV2 { salt, genesis }),
            signature: Signature([0; 64]),
        };
        response.signature = self.sign(&response.signed_data(cookie));
        response
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node_id", &self.text)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::verify;

    #[test]
    fn responses_verify_and_debug_hides_the_secret() {
        let id = NodeIdentity::from_private([7; 32]);
        assert!(id.node_id_text().starts_with("node_"));
        let cookie = Cookie([1; 32]);
        let v1 = id.handshake_response(&cookie, None);
        assert!(verify(&cookie.0, &v1.signature, &id.node_id()));
        let v2 = id.handshake_response(&cookie, Some((Cookie([2; 32]), BlockHash([3; 32]))));
        assert!(verify(
            &v2.signed_data(&cookie),
            &v2.signature,
            &id.node_id()
        ));
        assert!(!verify(&cookie.0, &v2.signature, &id.node_id()));
        let dbg = format!("{id:?}");
        assert!(dbg.contains(id.node_id_text()));
        assert!(!dbg.to_lowercase().contains(&hex::encode([7u8; 32])));
        let secret = NodeSecret::from_bytes([7; 32]);
        assert_eq!(NodeIdentity::from_secret(&secret).node_id(), id.node_id());
    }
}
