//! Sans-IO peering logic: address policy, exclusion, handshake, keepalive, rep crawler (§6–8).

pub mod addr;
pub mod exclusion;
