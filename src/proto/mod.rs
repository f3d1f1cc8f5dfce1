//! The sans-IO peering logic (spec §6–9): syn cookies, the handshake, channel policy
//! (addresses, limits, exclusion), keepalive, the rep crawler, online weight and the
//! peer-store policy. Nothing here opens a socket, reads a clock or spawns a thread: time
//! comes in as `now_ms`, randomness as an RNG.

pub mod addr;
pub mod admission;
pub mod budget;
pub mod checks;
pub mod config;
pub mod connection;
pub mod cookies;
pub mod crawler;
#[doc(hidden)]
pub mod drive;
pub mod events;
pub mod eviction;
pub mod exclusion;
pub mod filter;
pub mod handshake;
pub mod identity;
pub mod keepalive;
pub mod online;
pub mod reachout;
pub mod realtime;
pub mod repcrawler;
pub mod shard;
pub mod stats;
pub mod table;
pub mod telemetry;
pub mod weights;
