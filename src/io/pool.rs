//! The shard's pool of send buffers: a buffer comes back once its send is done (or its
//! connection closed) and is handed out again, so steady-state sends allocate nothing. A
//! buffer is kept only while the pool has room and its capacity is near the coalescing size.

/// Reusable send buffers.
pub(crate) struct Pool {
    pub(crate) bufs: Vec<Vec<u8>>,
    pub(crate) max: usize,
    pub(crate) capacity: usize,
}

impl Pool {
    pub(crate) fn get(&mut self) -> Vec<u8> {
        self.bufs
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.capacity))
    }

    pub(crate) fn put(&mut self, mut v: Vec<u8>) {
        let cap = v.capacity();
        if self.bufs.len() < self.max && cap >= self.capacity && cap <= 4 * self.capacity {
            v.clear();
            self.bufs.push(v);
        }
    }
}
