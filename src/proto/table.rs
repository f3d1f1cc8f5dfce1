//! The crawler's table of channels: its own copy of the channel map's alive channels, ordered
//! by id so that sampling from it is deterministic, with an index by remote IP for the
//! peering-endpoint checks of reachout. The crawler core keeps it and reachout reads it.

use std::collections::{HashMap, HashSet};
use std::net::Ipv6Addr;
use std::sync::Arc;

use crate::channels::{Channel, ChannelId};
use crate::endpoint::Endpoint;

/// The crawler's own view of the channels: ordered by id (for deterministic sampling), with
/// an index by remote IP (for peering-endpoint lookups). Kept current by ChannelUp /
/// ChannelDown and re-synchronised with the map at every cleanup.
#[derive(Debug, Default)]
pub struct ChannelTable {
    list: Vec<Arc<Channel>>,
    by_ip: HashMap<Ipv6Addr, Vec<Arc<Channel>>>,
}

impl ChannelTable {
    /// An empty table.
    pub fn new() -> ChannelTable {
        ChannelTable::default()
    }

    /// Adds a channel; false if its id is present already.
    pub fn insert(&mut self, ch: Arc<Channel>) -> bool {
        match self.list.binary_search_by_key(&ch.id(), |c| c.id()) {
            Ok(_) => false,
            Err(pos) => {
                self.by_ip
                    .entry(*ch.remote().ip())
                    .or_default()
                    .push(ch.clone());
                self.list.insert(pos, ch);
                true
            }
        }
    }

    /// Removes a channel by id.
    pub fn remove(&mut self, id: ChannelId) -> Option<Arc<Channel>> {
        let pos = self.list.binary_search_by_key(&id, |c| c.id()).ok()?;
        let ch = self.list.remove(pos);
        let ip = *ch.remote().ip();
        if let Some(v) = self.by_ip.get_mut(&ip) {
            v.retain(|c| c.id() != id);
            if v.is_empty() {
                self.by_ip.remove(&ip);
            }
        }
        Some(ch)
    }

    /// The channel with this id.
    pub fn get(&self, id: ChannelId) -> Option<&Arc<Channel>> {
        self.list
            .binary_search_by_key(&id, |c| c.id())
            .ok()
            .map(|i| &self.list[i])
    }

    /// Every channel, by id.
    pub fn list(&self) -> &[Arc<Channel>] {
        &self.list
    }

    /// The alive channels, by id.
    pub fn alive(&self) -> Vec<Arc<Channel>> {
        self.list.iter().filter(|c| c.is_alive()).cloned().collect()
    }

    /// Number of channels in the table.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// True when an alive channel has `ep` as its remote or peering endpoint.
    pub fn has_peering_endpoint(&self, ep: &Endpoint) -> bool {
        let ep = *ep;
        self.by_ip.get(ep.ip()).is_some_and(|v| {
            v.iter()
                .any(|c| c.is_alive() && (c.peering_endpoint() == ep || c.remote() == ep))
        })
    }

    /// Makes the table equal to the alive channels of `snapshot`; returns the ids removed.
    pub fn sync(&mut self, snapshot: Vec<Arc<Channel>>) -> Vec<ChannelId> {
        let live: HashSet<ChannelId> = snapshot
            .iter()
            .filter(|c| c.is_alive())
            .map(|c| c.id())
            .collect();
        let gone: Vec<ChannelId> = self
            .list
            .iter()
            .filter(|c| !live.contains(&c.id()))
            .map(|c| c.id())
            .collect();
        for id in &gone {
            self.remove(*id);
        }
        let mut fresh: Vec<Arc<Channel>> = snapshot.into_iter().filter(|c| c.is_alive()).collect();
        fresh.sort_by_key(|c| c.id());
        for c in fresh {
            self.insert(c);
        }
        gone
    }
}
