//! The invariants: after every call into the core, what came out is checked against the
//! driver's model (sends, closes, deadlines, dials, verify requests, events), and after every
//! operation the core's state is (connections, pending checks, channels and the map, limits,
//! cookies). A violation panics with the operation, the time and the invariant; the list is
//! in the [module docs](super).

use std::collections::{HashMap, HashSet};

use super::script::NETWORK;
use super::world::{Call, Driver, Inc, Req, SHARD};
use crate::channels::Direction;
use crate::endpoint::{Endpoint, IpKey, SubnetKey};
use crate::proto::addr::not_a_peer;
use crate::proto::events::{CloseReason, CrawlerEvent, IoAction, SignedMessage, VerifyRequest};
use crate::proto::shard::{MAX_INFLIGHT_PER_CONN, ShardOutput};
use crate::wire::{HEADER_LEN, MessageType, decode_message};

impl Driver<'_> {
    pub(super) fn check_output(&mut self, call: &Call, out: &ShardOutput) {
        // Calls about nothing the core knows produce nothing.
        let dead = match call {
            Call::Bytes { inc } | Call::Closed { inc } | Call::CmdClose { inc } => inc.is_none(),
            Call::CmdSend { inc, .. } => inc.is_none(),
            Call::Verified { req, .. } => req.is_none_or(|r| !self.incs[r.inc].open),
            _ => false,
        };
        inv!(
            self,
            !dead || out.is_empty(),
            "a call about a closed or unknown connection, id or channel produced {}",
            brief(out)
        );
        // The connection the call is about: requests, events and sends belong to it.
        let owner = match call {
            Call::Connect { inc, .. } => Some(*inc),
            Call::Bytes { inc } => *inc,
            Call::Verified { req, .. } => req.map(|r| r.inc),
            _ => None,
        };
        let owner_had_channel = owner.is_some_and(|i| self.incs[i].channel.is_some());
        let ok = matches!(call, Call::Verified { ok: true, .. });
        if let Call::Connect {
            replaced: Some(old),
            ..
        } = call
        {
            inv!(
                self,
                self.incs[*old].channel.is_none()
                    || out.events.iter().any(|e| matches!(e,
                        CrawlerEvent::ChannelDown(ch) if Some(ch.id()) == self.incs[*old].channel.as_ref().map(|c| c.id()))),
                "a connection replaced under its id kept its channel"
            );
        }
        for v in &out.verify {
            self.issued(owner, v);
        }
        let mut closed_now = Vec::new();
        for e in &out.events {
            self.event(call, owner, ok, e, &mut closed_now);
        }
        let mut dialed = 0;
        for a in &out.io {
            match a {
                IoAction::Send { conn, bytes } => {
                    let inc = self.open_ids.get(conn).copied();
                    inv!(
                        self,
                        inc.is_some(),
                        "Send to {conn:?}, which is not open (never opened, closed, or closed by the core)"
                    );
                    let inc = inc.expect("checked");
                    if let Call::CmdSend {
                        inc: target,
                        bytes: b,
                    } = call
                    {
                        inv!(
                            self,
                            Some(inc) == *target && b == bytes,
                            "a commanded send went to {conn:?} or changed its bytes"
                        );
                        self.summary.commanded_sends += 1;
                        continue;
                    }
                    inv!(
                        self,
                        Some(inc) == owner,
                        "the core sent on {conn:?}, not the connection it was handling"
                    );
                    let decoded = decode_message(bytes, NETWORK);
                    inv!(
                        self,
                        decoded.is_ok(),
                        "the core sent a malformed message {:?}: {decoded:?}",
                        hex::encode(bytes)
                    );
                    let (header, _) = decoded.expect("checked");
                    let has_channel = self.incs[inc].channel.is_some();
                    if header.message_type == MessageType::NodeIdHandshake {
                        inv!(
                            self,
                            !owner_had_channel,
                            "node_id_handshake sent on a realtime channel"
                        );
                    } else {
                        inv!(
                            self,
                            has_channel,
                            "{} sent before the handshake completed",
                            header.message_type
                        );
                    }
                }
                IoAction::Close { conn, reason } => {
                    let inc = self.open_ids.remove(conn);
                    inv!(self, inc.is_some(), "Close of {conn:?}, which is not open");
                    let inc = inc.expect("checked");
                    let c = &mut self.incs[inc];
                    c.open = false;
                    self.summary.core_closes += 1;
                    inv!(
                        self,
                        c.channel.is_none() || c.channel_down,
                        "{conn:?} closed without ChannelDown for its channel"
                    );
                    if *reason == CloseReason::Timeout {
                        self.summary.timeouts += 1;
                        let (opened, timeout) =
                            (c.opened_ms, self.shared.config.handshake_timeout_ms);
                        inv!(
                            self,
                            matches!(call, Call::Tick) && self.now >= opened + timeout,
                            "timeout close of {conn:?} opened at {opened} ms"
                        );
                    }
                }
                IoAction::Deadline { conn, at_ms } => {
                    let inc = self.open_ids.get(conn).copied();
                    inv!(
                        self,
                        inc.is_some() && inc == owner,
                        "Deadline for {conn:?}, which is not the open connection being handled"
                    );
                    inv!(self, *at_ms >= self.now, "deadline {at_ms} in the past");
                    self.incs[inc.expect("checked")].deadline_ms = Some(*at_ms);
                }
                IoAction::Dial { endpoint } => {
                    dialed += 1;
                    inv!(
                        self,
                        matches!(call, Call::CmdDial { endpoint: e } if e == endpoint),
                        "Dial of {endpoint} not asked for"
                    );
                    self.pending_dials.insert(*endpoint);
                    self.summary.dials += 1;
                }
            }
        }
        match call {
            Call::CmdDial { .. } => inv!(self, dialed == 1, "a dial command gave {dialed} dials"),
            Call::Tick => inv!(
                self,
                out.verify.is_empty()
                    && out.events.is_empty()
                    && out.io.iter().all(|a| matches!(a, IoAction::Close { .. })),
                "a tick produced more than closes: {}",
                brief(out)
            ),
            Call::DialFailed { .. } => inv!(
                self,
                out.io.is_empty() && out.verify.is_empty() && out.events.len() == 1,
                "a failed dial produced {}",
                brief(out)
            ),
            _ => {}
        }
        for inc in closed_now {
            inv!(
                self,
                !self.incs[inc].open,
                "{:?}: GenesisMismatch without a close",
                self.incs[inc].id
            );
        }
    }

    fn issued(&mut self, owner: Option<usize>, v: &VerifyRequest) {
        inv!(
            self,
            owner.is_some(),
            "verify request {} from a call about no connection",
            v.id
        );
        let inc = owner.expect("checked");
        inv!(
            self,
            !self.outstanding.contains_key(&v.id),
            "verify id {} issued twice",
            v.id
        );
        let handshake = matches!(v.message, SignedMessage::Handshake(_));
        if handshake {
            let c = &self.incs[inc];
            inv!(
                self,
                c.channel.is_none() && !c.handshake_checked,
                "a second handshake check, or one on a realtime channel, for {:?}",
                c.id
            );
            self.incs[inc].handshake_checked = true;
        }
        self.incs[inc].outstanding += 1;
        self.outstanding.insert(
            v.id,
            Req {
                inc,
                handshake,
                key: v.key,
            },
        );
        self.max_id = self.max_id.max(v.id);
        self.summary.verify_requests += 1;
        self.summary.max_outstanding = self.summary.max_outstanding.max(self.outstanding.len());
    }

    fn event(
        &mut self,
        call: &Call,
        owner: Option<usize>,
        ok: bool,
        e: &CrawlerEvent,
        closed_now: &mut Vec<usize>,
    ) {
        let owner_channel = owner.and_then(|i| {
            let c = &self.incs[i];
            c.channel
                .as_ref()
                .filter(|_| !c.channel_down)
                .map(|ch| ch.id())
        });
        let verified = matches!(call, Call::Verified { .. });
        match e {
            CrawlerEvent::ChannelUp(ch, _) => {
                let req = match call {
                    Call::Verified {
                        req: Some(r),
                        ok: true,
                    } if r.handshake => Some(*r),
                    _ => None,
                };
                inv!(
                    self,
                    req.is_some(),
                    "ChannelUp {:?} without a successful handshake check",
                    ch.id()
                );
                let r = req.expect("checked");
                let c = &self.incs[r.inc];
                inv!(self, c.channel.is_none(), "second channel on {:?}", c.id);
                inv!(
                    self,
                    *ch.node_id() == r.key && r.key != self.own,
                    "channel node id {:?} is not the checked key, or is ours",
                    ch.node_id()
                );
                inv!(
                    self,
                    ch.remote() == c.remote && ch.shard() == SHARD,
                    "channel remote {} / shard {} for a connection from {}",
                    ch.remote(),
                    ch.shard(),
                    c.remote
                );
                let direction = if c.outbound {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                };
                inv!(
                    self,
                    ch.direction() == direction,
                    "channel direction {:?}, connection outbound: {}",
                    ch.direction(),
                    c.outbound
                );
                let config = &self.shared.config;
                let own_ep = Endpoint::localhost(config.listen_port);
                inv!(
                    self,
                    !not_a_peer(c.remote, config.allow_local_peers, own_ep),
                    "channel to {}, which is not a peer",
                    c.remote
                );
                inv!(
                    self,
                    !self.shared.exclusion.lock().check(*c.remote.ip(), self.now),
                    "channel to excluded {}",
                    c.remote
                );
                inv!(
                    self,
                    !self.channel_inc.contains_key(&ch.id()),
                    "channel id {:?} reused",
                    ch.id()
                );
                self.channels.push(ch.id());
                self.channel_inc.insert(ch.id(), r.inc);
                self.incs[r.inc].channel = Some(ch.clone());
                self.summary.channels_up += 1;
            }
            CrawlerEvent::ChannelDown(ch) => {
                let inc = self.channel_inc.get(&ch.id()).copied();
                inv!(
                    self,
                    inc.is_some_and(|i| !self.incs[i].channel_down),
                    "ChannelDown for {:?}, which is not up",
                    ch.id()
                );
                self.incs[inc.expect("checked")].channel_down = true;
            }
            CrawlerEvent::Keepalive { channel, .. } => {
                inv!(
                    self,
                    Some(*channel) == owner_channel && (!verified || ok),
                    "Keepalive event for {channel:?}, not the handled connection's channel"
                );
                self.summary.keepalives += 1;
            }
            CrawlerEvent::Block { channel, .. } => {
                inv!(
                    self,
                    Some(*channel) == owner_channel && (!verified || ok),
                    "Block event for {channel:?}: not the handled channel, or after a failed check"
                );
                self.summary.blocks += 1;
            }
            CrawlerEvent::Vote {
                channel, hashes, ..
            } => {
                let non_hs =
                    matches!(call, Call::Verified { req: Some(r), ok: true } if !r.handshake);
                inv!(
                    self,
                    Some(*channel) == owner_channel && non_hs && hashes.len() <= 255,
                    "Vote event for {channel:?} without a successful vote check of that channel"
                );
                self.summary.votes += 1;
            }
            CrawlerEvent::Telemetry { channel, data } => {
                let node_id =
                    owner.and_then(|i| self.incs[i].channel.as_ref().map(|c| *c.node_id()));
                inv!(
                    self,
                    Some(*channel) == owner_channel
                        && verified
                        && ok
                        && Some(data.node_id) == node_id,
                    "Telemetry event for {channel:?} without a successful check of that channel's node"
                );
                self.summary.telemetry += 1;
            }
            CrawlerEvent::GenesisMismatch { channel } => {
                inv!(
                    self,
                    Some(channel.id()) == owner_channel && verified && ok,
                    "GenesisMismatch for {:?}, not the checked channel",
                    channel.id()
                );
                // What the crawler does with it: exclude the IP.
                self.shared
                    .exclusion
                    .lock()
                    .add(*channel.remote().ip(), self.now);
                closed_now.extend(owner);
                self.summary.genesis_mismatches += 1;
            }
            CrawlerEvent::Replaced(ch) => {
                // A channel of this shard that loses its place is closed here, in the same
                // call; only another shard's channel is handed to the crawler.
                inv!(
                    self,
                    ch.shard() != SHARD,
                    "Replaced event for channel {:?} of this shard",
                    ch.id()
                );
            }
            CrawlerEvent::DialFailed { endpoint } => {
                inv!(
                    self,
                    matches!(call, Call::DialFailed { endpoint: e } if e == endpoint),
                    "DialFailed for {endpoint} not reported by the loop"
                );
            }
        }
    }

    /// The core's state against the model, after every operation.
    pub(super) fn check_state(&mut self) {
        let open: Vec<&Inc> = self.incs.iter().filter(|c| c.open).collect();
        self.summary.max_connections = self.summary.max_connections.max(open.len());
        inv!(
            self,
            self.core.connections() == open.len(),
            "connections() = {}, open = {}",
            self.core.connections(),
            open.len()
        );
        inv!(
            self,
            self.core.pending_verifications() <= self.outstanding.len(),
            "{} pending verifications, {} unanswered",
            self.core.pending_verifications(),
            self.outstanding.len()
        );
        let map = &self.shared.channels;
        let mut with_channel = 0;
        let mut per_ip: HashMap<IpKey, usize> = HashMap::new();
        let mut per_subnet: HashMap<SubnetKey, usize> = HashMap::new();
        for c in &self.incs {
            let core_ch = self.core.channel_of(c.id).map(|ch| ch.id());
            if c.open {
                inv!(
                    self,
                    c.outstanding <= MAX_INFLIGHT_PER_CONN as usize,
                    "{:?} has {} checks outstanding",
                    c.id,
                    c.outstanding
                );
                let mine = c.channel.as_ref().map(|ch| ch.id());
                inv!(
                    self,
                    core_ch == mine && !c.channel_down,
                    "channel_of({:?}) = {core_ch:?}, expected {mine:?}",
                    c.id
                );
                if let Some(ch) = &c.channel {
                    with_channel += 1;
                    *per_ip.entry(IpKey::of(*c.remote.ip())).or_default() += 1;
                    *per_subnet.entry(SubnetKey::of(*c.remote.ip())).or_default() += 1;
                    inv!(
                        self,
                        self.core.conn_of(ch.id()) == Some(c.id)
                            && map.get(&c.remote).map(|m| m.id()) == Some(ch.id())
                            && ch.is_alive(),
                        "open channel {:?} of {:?} missing from conn_of or the map, or not alive",
                        ch.id(),
                        c.id
                    );
                }
            } else if let Some(ch) = &c.channel {
                inv!(
                    self,
                    c.channel_down
                        && self.core.conn_of(ch.id()).is_none()
                        && map.get(&c.remote).map(|m| m.id()) != Some(ch.id())
                        && !ch.is_alive(),
                    "channel {:?} of closed {:?} is still up somewhere",
                    ch.id(),
                    c.id
                );
            }
        }
        inv!(
            self,
            map.len() == with_channel,
            "the map has {} channels, open connections {with_channel}",
            map.len()
        );
        let limits = map.limits();
        inv!(
            self,
            map.inbound_len() + map.outbound_len() == with_channel,
            "inbound {} + outbound {} channels, open connections with a channel {with_channel}",
            map.inbound_len(),
            map.outbound_len()
        );
        inv!(
            self,
            map.inbound_len() <= limits.max_channels
                && map.outbound_len() <= limits.max_outbound
                && per_ip.values().all(|&n| n <= limits.max_peers_per_ip)
                && per_subnet
                    .values()
                    .all(|&n| n <= limits.max_peers_per_subnetwork),
            "channel limits exceeded: {with_channel} channels, per IP {per_ip:?}, per subnet {per_subnet:?}"
        );
        let endpoints: HashSet<Endpoint> = open.iter().map(|c| c.remote).collect();
        let cookies = self.core.cookies();
        inv!(
            self,
            cookies <= self.shared.config.max_cookies && cookies <= endpoints.len(),
            "{cookies} cookies for {} open endpoints (cap {})",
            endpoints.len(),
            self.shared.config.max_cookies
        );
    }
}

/// A one-line account of an output (message types, not bytes).
fn brief(out: &ShardOutput) -> String {
    let io = out.io.iter().map(|a| match a {
        IoAction::Send { conn, bytes } => {
            let t = bytes
                .get(..HEADER_LEN)
                .and_then(|h| MessageType::from_u8(h[5]))
                .map_or("?", MessageType::name);
            format!("Send({}, {t}, {} B)", conn.0, bytes.len())
        }
        IoAction::Close { conn, reason } => format!("Close({}, {reason:?})", conn.0),
        IoAction::Deadline { conn, at_ms } => format!("Deadline({}, {at_ms})", conn.0),
        IoAction::Dial { endpoint } => format!("Dial({endpoint})"),
    });
    let events = out.events.iter().map(|e| match e {
        CrawlerEvent::ChannelUp(ch, _) => format!("ChannelUp({})", ch.id().0),
        CrawlerEvent::ChannelDown(ch) => format!("ChannelDown({})", ch.id().0),
        CrawlerEvent::Keepalive { channel, .. } => format!("Keepalive({})", channel.0),
        CrawlerEvent::Vote { channel, .. } => format!("Vote({})", channel.0),
        CrawlerEvent::Block { channel, .. } => format!("Block({})", channel.0),
        CrawlerEvent::Telemetry { channel, .. } => format!("Telemetry({})", channel.0),
        CrawlerEvent::GenesisMismatch { channel } => format!("GenesisMismatch({})", channel.id().0),
        CrawlerEvent::DialFailed { endpoint } => format!("DialFailed({endpoint})"),
        CrawlerEvent::Replaced(ch) => format!("Replaced({})", ch.id().0),
    });
    let verify = out.verify.iter().map(|v| format!("Verify({})", v.id));
    let all: Vec<String> = io.chain(events).chain(verify).collect();
    format!("[{}]", all.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::drive::{Options, endpoint};
    use crate::proto::events::ConnId;

    #[test]
    #[should_panic(expected = "shard invariant violated")]
    fn a_violation_panics() {
        let mut d = Driver::new(0, Options::default());
        // Pretend the driver opened a connection the core never heard of.
        d.incs.push(Inc {
            id: ConnId(99),
            remote: Endpoint::from(endpoint(5, 2)),
            outbound: false,
            opened_ms: 0,
            open: true,
            deadline_ms: None,
            node_id: None,
            handshake_checked: false,
            outstanding: 0,
            channel: None,
            channel_down: false,
        });
        d.check_state();
    }
}
