//! The per-connection node_id handshake (§6.2, §6.3), for initiator and responder.
//!
//! ```text
//! initiator A                                   responder B
//!   Handshake::initiate ── query (0x0005) ─────►  Handshake::respond + on_message
//!   on_message ◄──── query + response (0x0007) ─  (cookie_B from SynCookies::assign)
//!   ── response (0x0006) ──►, then checks response_B   on_message: checks response_A
//!   signature → VerifyRequest … result → admit()        signature → … → admit()
//! ```
//!
//! v2 is the default; a peer's v1 query (ext bit 2 clear) gets a v1 response, and a v1 response
//! to our query is accepted. The checks run in the order of §6.3: own node id, genesis (v2),
//! cookie (taken and erased), signature (handed out as a verify request: the shard batches
//! them), then channel admission ([`admit`]). Every failure is its own [`HandshakeOutcome`].

use std::net::{SocketAddr, SocketAddrV6};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::RngCore;

use super::addr::not_a_peer;
use super::config::ProtoConfig;
use super::cookies::SynCookies;
use super::events::HandshakeOutcome;
use super::exclusion::PeerExclusion;
use super::identity::NodeIdentity;
use crate::channels::{Channel, ChannelError, ChannelMap, Direction, NewChannel};
use crate::types::{BlockHash, Cookie, PublicKey, Signature};
use crate::wire::{NodeIdHandshake, SignedData};

/// Which side of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We dialed and sent the first query.
    Initiator,
    /// We accepted the connection.
    Responder,
}

/// A response whose signature is being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingResponse {
    /// The peer's node id.
    pub node_id: PublicKey,
    /// `version_using` of the message that carried it.
    pub version_using: u8,
}

/// The signature check a response needs (becomes a `VerifyRequest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCheck {
    /// The signer: the peer's node id.
    pub key: PublicKey,
    /// The bytes it must have signed.
    pub signed: SignedData,
    /// The signature.
    pub signature: Signature,
}

/// What the handshake wants after a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// A handshake message to send first, if any.
    pub reply: Option<NodeIdHandshake>,
    /// What happens next.
    pub verdict: Verdict,
}

/// The state change after a handshake message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Wait for the next handshake message.
    Continue,
    /// Check this signature; the result goes to [`Handshake::on_verified`].
    Verify(ResponseCheck),
    /// Close the connection.
    Abort(HandshakeOutcome),
}

/// What a handshake step needs from its shard.
#[derive(Debug)]
pub struct HandshakeCtx<'a> {
    /// The shard's syn cookies.
    pub cookies: &'a mut SynCookies,
    /// Our node id.
    pub identity: &'a NodeIdentity,
    /// Our genesis hash.
    pub genesis: BlockHash,
    /// The remote endpoint as we see it (ip and port of the TCP peer).
    pub remote: SocketAddr,
    /// Now.
    pub now_ms: u64,
}

/// The handshake state of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    role: Role,
    query_sent: bool,
    query_received: bool,
    pending: Option<PendingResponse>,
}

impl Handshake {
    /// Starts as initiator: assigns a cookie for `remote` and returns the query (ext 0x0005).
    /// No cookie (limit or outstanding) is [`HandshakeOutcome::CookieLimit`]: close rather
    /// than send a flagless message.
    pub fn initiate(
        ctx: &mut HandshakeCtx<'_>,
        rng: &mut impl RngCore,
    ) -> Result<(Handshake, NodeIdHandshake), HandshakeOutcome> {
        let cookie = ctx
            .cookies
            .assign(ctx.remote, ctx.now_ms, rng)
            .map_err(|_| HandshakeOutcome::CookieLimit)?;
        let hs = Handshake {
            role: Role::Initiator,
            query_sent: true,
            query_received: false,
            pending: None,
        };
        Ok((hs, NodeIdHandshake::query(cookie)))
    }

    /// Starts as responder: waits for the peer's query.
    pub fn respond() -> Handshake {
        Handshake {
            role: Role::Responder,
            query_sent: false,
            query_received: false,
            pending: None,
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// True once we sent a query (a cookie for the remote may be outstanding).
    pub fn query_sent(&self) -> bool {
        self.query_sent
    }

    /// The response whose signature is being checked, if any.
    pub fn pending(&self) -> Option<PendingResponse> {
        self.pending
    }

    /// Processes a node_id_handshake. A second query, a response we did not ask for, or any
    /// message while a response is being checked aborts with [`HandshakeOutcome::Protocol`].
    pub fn on_message(
        &mut self,
        msg: &NodeIdHandshake,
        version_using: u8,
        ctx: &mut HandshakeCtx<'_>,
        rng: &mut impl RngCore,
    ) -> Step {
        let abort = |o| Step {
            reply: None,
            verdict: Verdict::Abort(o),
        };
        if self.pending.is_some() || (msg.query.is_none() && msg.response.is_none()) {
            return abort(HandshakeOutcome::Protocol);
        }
        if msg.response.is_some() && !self.query_sent {
            return abort(HandshakeOutcome::Protocol);
        }
        let mut reply = None;
        if let Some(q) = &msg.query {
            if self.query_received {
                return abort(HandshakeOutcome::Protocol);
            }
            self.query_received = true;
            // Bit 2 of the message: v2 support (query only) or the layout of the response
            // part; either way a v1 message gets a v1 answer.
            let v2 = q.v2.then(|| {
                let mut salt = [0u8; 32];
                rng.fill_bytes(&mut salt);
                (Cookie(salt), ctx.genesis)
            });
            let response = ctx.identity.handshake_response(&q.cookie, v2);
            if self.query_sent {
                reply = Some(NodeIdHandshake::response(response));
            } else {
                match ctx.cookies.assign(ctx.remote, ctx.now_ms, rng) {
                    Ok(cookie) => {
                        self.query_sent = true;
                        reply = Some(NodeIdHandshake::query_response(cookie, response));
                    }
                    Err(_) => return abort(HandshakeOutcome::CookieLimit),
                }
            }
        }
        let Some(r) = &msg.response else {
            return Step {
                reply,
                verdict: Verdict::Continue,
            };
        };
        let verdict = if r.node_id == ctx.identity.node_id() {
            Verdict::Abort(HandshakeOutcome::OwnNodeId)
        } else if r.v2.is_some_and(|v2| v2.genesis != ctx.genesis) {
            Verdict::Abort(HandshakeOutcome::InvalidGenesis)
        } else {
            match ctx.cookies.take(ctx.remote) {
                None => Verdict::Abort(HandshakeOutcome::MissingCookie),
                Some(cookie) => {
                    self.pending = Some(PendingResponse {
                        node_id: r.node_id,
                        version_using,
                    });
                    Verdict::Verify(ResponseCheck {
                        key: r.node_id,
                        signed: r.signed_data(&cookie),
                        signature: r.signature,
                    })
                }
            }
        };
        Step { reply, verdict }
    }

    /// The signature result of the pending response: the peer to admit, or
    /// [`HandshakeOutcome::InvalidSignature`] (also when nothing was pending).
    pub fn on_verified(&mut self, ok: bool) -> Result<PendingResponse, HandshakeOutcome> {
        match self.pending.take() {
            Some(p) if ok => Ok(p),
            _ => Err(HandshakeOutcome::InvalidSignature),
        }
    }
}

/// Channel admission (§6.3 item 5, §7.2): not a peer (unspecified, reserved unless local peers
/// are allowed, ourselves), excluded, then the map's per-IP and per-subnet limits, same node id
/// from the same IP, and the channel cap. Takes the exclusion lock briefly. `counted`: the
/// connection is counted as an unverified inbound one ([`ChannelMap::add_inbound`]); the
/// channel takes over that count.
///
/// A channel of the same node id from the same IP is resolved by [`keep_new_channel`]
/// (`own_id` is our node id): when the new one wins, the old one leaves the map and is
/// returned, for the caller to close its connection.
pub fn admit(
    channels: &ChannelMap,
    exclusion: &Mutex<PeerExclusion>,
    config: &ProtoConfig,
    new: NewChannel,
    counted: bool,
    own_id: &PublicKey,
) -> Result<(Arc<Channel>, Option<Arc<Channel>>), HandshakeOutcome> {
    let own = SocketAddrV6::new(std::net::Ipv6Addr::LOCALHOST, config.listen_port, 0, 0);
    if not_a_peer(new.remote, config.allow_local_peers, own) {
        return Err(HandshakeOutcome::NotAPeer);
    }
    if exclusion.lock().check(*new.remote.ip(), new.now_ms) {
        return Err(HandshakeOutcome::Excluded);
    }
    let (peer, direction) = (new.node_id, new.direction);
    let keep_new = |old: &Channel| keep_new_channel(own_id, &peer, old.direction(), direction);
    channels
        .try_insert_resolving(new, counted, keep_new)
        .map_err(|e| match e {
            ChannelError::DuplicateNodeId => HandshakeOutcome::DuplicateNodeId,
            ChannelError::IpLimit => HandshakeOutcome::MaxPerIp,
            ChannelError::SubnetLimit => HandshakeOutcome::MaxPerSubnet,
            ChannelError::EndpointExists
            | ChannelError::ChannelLimit
            | ChannelError::AttemptedRecently
            | ChannelError::AttemptsFull => HandshakeOutcome::ChannelLimit,
        })
}

/// Which of two authenticated connections to the same node (same IP) to keep, decided the
/// same way on both sides so they always end with the same one:
/// - **crossed dial** (one inbound, one outbound: each side dialed the other at once): keep
///   the connection dialed by the node with the smaller node id. On our side that is the
///   outbound one when our id is smaller, the inbound one otherwise; the peer, applying the
///   rule from its side, keeps the same TCP connection.
/// - **same direction** (a second connection of a node that already has one the same way,
///   e.g. a reconnect while the old channel is still in the map): the existing channel stays
///   and the new one is refused (`DuplicateNodeId`, as the reference does). A peer that
///   restarts closes its old connection (FIN or RST), which frees the place at once; only
///   a silent loss waits for the idle timeout.
///
/// Both connections are authenticated (the node id's key signed our cookie on each), so no
/// stranger can use this to displace a peer.
pub fn keep_new_channel(
    own: &PublicKey,
    peer: &PublicKey,
    existing: Direction,
    new: Direction,
) -> bool {
    if existing == new {
        return false;
    }
    // Keep the new one when its dialer has the smaller node id.
    match new {
        Direction::Outbound => own.0 < peer.0,
        Direction::Inbound => peer.0 < own.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{genesis_hash, verify};
    use crate::types::Network;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    struct Side {
        cookies: SynCookies,
        id: NodeIdentity,
    }

    fn ctx<'a>(s: &'a mut Side, remote: &str) -> HandshakeCtx<'a> {
        HandshakeCtx {
            cookies: &mut s.cookies,
            identity: &s.id,
            genesis: genesis_hash(Network::Dev),
            remote: remote.parse().unwrap(),
            now_ms: 0,
        }
    }

    fn check(v: Verdict) -> bool {
        match v {
            Verdict::Verify(c) => verify(&c.signed, &c.signature, &c.key),
            other => panic!("expected a signature check, got {other:?}"),
        }
    }

    #[test]
    fn v2_both_ways_and_protocol_errors() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut a = Side {
            cookies: SynCookies::new(4, 100),
            id: NodeIdentity::from_private([1; 32]),
        };
        let mut b = Side {
            cookies: SynCookies::new(4, 100),
            id: NodeIdentity::from_private([2; 32]),
        };
        let (mut ha, q) =
            Handshake::initiate(&mut ctx(&mut a, "127.0.0.1:2000"), &mut rng).unwrap();
        assert_eq!(q.extensions().0, 0x0005);
        let mut hb = Handshake::respond();
        let s1 = hb.on_message(&q, 0x15, &mut ctx(&mut b, "127.0.0.1:5000"), &mut rng);
        assert_eq!(s1.verdict, Verdict::Continue);
        let qr = s1.reply.unwrap();
        assert_eq!(qr.extensions().0, 0x0007);
        // A second query aborts.
        let again = hb
            .clone()
            .on_message(&q, 0x15, &mut ctx(&mut b, "127.0.0.1:5000"), &mut rng);
        assert_eq!(again.verdict, Verdict::Abort(HandshakeOutcome::Protocol));
        let s2 = ha.on_message(&qr, 0x15, &mut ctx(&mut a, "127.0.0.1:2000"), &mut rng);
        let r = s2.reply.unwrap();
        assert_eq!(r.extensions().0, 0x0006);
        assert!(check(s2.verdict));
        assert_eq!(ha.on_verified(true).unwrap().node_id, b.id.node_id());
        let s3 = hb.on_message(&r, 0x15, &mut ctx(&mut b, "127.0.0.1:5000"), &mut rng);
        assert!(s3.reply.is_none());
        assert!(check(s3.verdict));
        assert_eq!(hb.on_verified(true).unwrap().node_id, a.id.node_id());
        // A response to a responder that never asked.
        let mut fresh = Handshake::respond();
        let s = fresh.on_message(&r, 0x15, &mut ctx(&mut b, "127.0.0.1:5001"), &mut rng);
        assert_eq!(s.verdict, Verdict::Abort(HandshakeOutcome::Protocol));
    }

    #[test]
    fn v1_query_gets_v1_answer() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut b = Side {
            cookies: SynCookies::new(4, 100),
            id: NodeIdentity::from_private([2; 32]),
        };
        let mut q = NodeIdHandshake::query(Cookie([5; 32]));
        q.query.as_mut().unwrap().v2 = false;
        assert_eq!(q.extensions().0, 0x0001);
        let mut hb = Handshake::respond();
        let s = hb.on_message(&q, 0x14, &mut ctx(&mut b, "127.0.0.1:1"), &mut rng);
        let reply = s.reply.unwrap();
        assert_eq!(reply.extensions().0, 0x0003);
        let resp = reply.response.unwrap();
        assert!(resp.v2.is_none());
        assert!(verify(&[5; 32], &resp.signature, &b.id.node_id()));
    }

    #[test]
    fn both_sides_of_a_crossed_dial_keep_the_same_connection() {
        use crate::channels::Direction::{Inbound, Outbound};
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        // The connection a (smaller) dialed: outbound on a's side, inbound on b's side.
        for (existing, new) in [(Inbound, Outbound), (Outbound, Inbound)] {
            let a_keeps_new = keep_new_channel(&a, &b, existing, new);
            // On b's side the same two connections have the opposite directions.
            let flip = |d| if d == Inbound { Outbound } else { Inbound };
            let b_keeps_new = keep_new_channel(&b, &a, flip(existing), flip(new));
            assert_eq!(a_keeps_new, b_keeps_new, "{existing:?} then {new:?}");
            assert_eq!(a_keeps_new, new == Outbound, "a dialed the winner");
        }
        // Same direction: the established channel stays.
        assert!(!keep_new_channel(&a, &b, Inbound, Inbound));
        assert!(!keep_new_channel(&b, &a, Outbound, Outbound));
    }

    #[test]
    fn cookie_limit_refuses_to_start() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut a = Side {
            cookies: SynCookies::new(1, 100),
            id: NodeIdentity::from_private([1; 32]),
        };
        Handshake::initiate(&mut ctx(&mut a, "127.0.0.1:2000"), &mut rng).unwrap();
        assert_eq!(
            Handshake::initiate(&mut ctx(&mut a, "127.0.0.1:2001"), &mut rng).err(),
            Some(HandshakeOutcome::CookieLimit)
        );
    }
}
