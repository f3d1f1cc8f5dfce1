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
//! them), then channel admission ([`admit`](super::admission::admit), run by the shard). Every
//! failure is its own [`HandshakeOutcome`].

use rand::RngCore;

use super::cookies::SynCookies;
use super::events::HandshakeOutcome;
use super::identity::NodeIdentity;
use crate::endpoint::Endpoint;
use crate::types::{BlockHash, Cookie, PublicKey, Signature};
use crate::wire::{HandshakeQuery, HandshakeResponse, NodeIdHandshake, SignedData};

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
    pub remote: Endpoint,
    /// Now.
    pub now_ms: u64,
}

/// The handshake state of one connection. Each state knows which message it waits for and
/// where that message takes it; anything else aborts with [`HandshakeOutcome::Protocol`].
///
/// ```text
/// responder  AwaitQuery ─query─► AwaitResponse ─response─► Verifying ─ok─► Done (channel)
/// initiator  QuerySent ─query+response─► Verifying ─ok─► Done (channel)
///            QuerySent ─query─► AwaitResponse;  QuerySent ─response─► Verifying
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// We accepted the connection and wait for the peer's query.
    AwaitQuery,
    /// We dialed and sent our query; the peer's query and response are still to come.
    QuerySent,
    /// Queries went both ways and ours is unanswered: we wait for the peer's response.
    AwaitResponse,
    /// The peer's response to our cookie is in; its signature is being checked.
    Verifying(PendingResponse),
    /// The check came back (the peer is admitted, or the connection closes).
    Done,
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
        Ok((Handshake::QuerySent, NodeIdHandshake::query(cookie)))
    }

    /// Starts as responder: waits for the peer's query.
    pub fn respond() -> Handshake {
        Handshake::AwaitQuery
    }

    /// True once we sent a query (a cookie for the remote may be outstanding).
    pub fn query_sent(&self) -> bool {
        !matches!(self, Handshake::AwaitQuery)
    }

    /// The response whose signature is being checked, if any.
    pub fn pending(&self) -> Option<PendingResponse> {
        match self {
            Handshake::Verifying(p) => Some(*p),
            _ => None,
        }
    }

    /// Processes a node_id_handshake: the state's transition. A second query, a response we
    /// did not ask for, an empty message, or any message while a response is being checked
    /// aborts with [`HandshakeOutcome::Protocol`].
    pub fn on_message(
        &mut self,
        msg: &NodeIdHandshake,
        version_using: u8,
        ctx: &mut HandshakeCtx<'_>,
        rng: &mut impl RngCore,
    ) -> Step {
        let protocol = Step {
            reply: None,
            verdict: Verdict::Abort(HandshakeOutcome::Protocol),
        };
        if msg.query.is_none() && msg.response.is_none() {
            return protocol;
        }
        match *self {
            // Our query is out: the peer answers it, asks its own, or both.
            Handshake::QuerySent => {
                let reply = msg
                    .query
                    .as_ref()
                    .map(|q| NodeIdHandshake::response(answer(q, ctx, rng)));
                self.take_response(msg, version_using, ctx, reply)
            }
            // The peer asks first: answer, with our own query (and cookie) alongside.
            Handshake::AwaitQuery => match (&msg.query, &msg.response) {
                (Some(q), None) => {
                    let response = answer(q, ctx, rng);
                    match ctx.cookies.assign(ctx.remote, ctx.now_ms, rng) {
                        Ok(cookie) => {
                            *self = Handshake::AwaitResponse;
                            Step {
                                reply: Some(NodeIdHandshake::query_response(cookie, response)),
                                verdict: Verdict::Continue,
                            }
                        }
                        Err(_) => Step {
                            reply: None,
                            verdict: Verdict::Abort(HandshakeOutcome::CookieLimit),
                        },
                    }
                }
                _ => protocol,
            },
            // Only the response to our query may come now.
            Handshake::AwaitResponse if msg.query.is_none() => {
                self.take_response(msg, version_using, ctx, None)
            }
            Handshake::AwaitResponse | Handshake::Verifying(_) | Handshake::Done => protocol,
        }
    }

    /// The response part of a message once our query is out (`reply`: our answer to a query
    /// in the same message): its checks in the order of §6.3, then the signature check.
    fn take_response(
        &mut self,
        msg: &NodeIdHandshake,
        version_using: u8,
        ctx: &mut HandshakeCtx<'_>,
        reply: Option<NodeIdHandshake>,
    ) -> Step {
        let Some(r) = &msg.response else {
            // A query alone: answered, and our query still waits for its response.
            *self = Handshake::AwaitResponse;
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
                    *self = Handshake::Verifying(PendingResponse {
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
    /// [`HandshakeOutcome::InvalidSignature`] (also when nothing was pending). Either way the
    /// handshake is [`Handshake::Done`].
    pub fn on_verified(&mut self, ok: bool) -> Result<PendingResponse, HandshakeOutcome> {
        match std::mem::replace(self, Handshake::Done) {
            Handshake::Verifying(p) if ok => Ok(p),
            _ => Err(HandshakeOutcome::InvalidSignature),
        }
    }
}

/// Our signed answer to the peer's query. Bit 2 of the query (v2 support) decides the layout:
/// a v1 query gets a v1 answer.
fn answer(q: &HandshakeQuery, ctx: &HandshakeCtx<'_>, rng: &mut impl RngCore) -> HandshakeResponse {
    let v2 = q.v2.then(|| {
        let mut salt = [0u8; 32];
        rng.fill_bytes(&mut salt);
        (Cookie(salt), ctx.genesis)
    });
    ctx.identity.handshake_response(&q.cookie, v2)
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
