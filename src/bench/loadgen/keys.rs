//! A load thread's pool of node keys: generated before the run, each lent to one connection
//! at a time, so the node sees every concurrent simulated peer with a key of its own.

use std::collections::VecDeque;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::proto::identity::NodeIdentity;

/// The node keys of one load thread and which of them are free (lent in turn: a key comes
/// back after every other free key has been lent once).
pub(super) struct KeyPool {
    keys: Vec<NodeIdentity>,
    /// Indices of the keys not lent, the next to lend first.
    free: VecDeque<u32>,
}

impl KeyPool {
    /// `n` fresh keys drawn from `rng`, all free.
    pub(super) fn generate(n: usize, rng: &mut ChaCha8Rng) -> KeyPool {
        let keys: Vec<NodeIdentity> = (0..n)
            .map(|_| NodeIdentity::from_private(rng.random()))
            .collect();
        KeyPool {
            free: (0..keys.len() as u32).collect(),
            keys,
        }
    }

    /// Lends the next free key; `None` when every key is lent.
    pub(super) fn lend(&mut self) -> Option<u32> {
        self.free.pop_front()
    }

    /// Takes back a key whose connection ended (or could not be made): it is lent again
    /// after the other free keys.
    pub(super) fn give_back(&mut self, key: u32) {
        self.free.push_back(key);
    }

    /// Takes back a key lent for a dial that was not attempted: it is the next one lent.
    pub(super) fn unlend(&mut self, key: u32) {
        self.free.push_front(key);
    }

    /// The identity (private key) of key `key`.
    pub(super) fn identity(&self, key: u32) -> &NodeIdentity {
        &self.keys[key as usize]
    }
}
