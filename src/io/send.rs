//! The send path: messages are queued per connection (capped in messages and bytes, the
//! overflow dropped or the connection closed), small ones packed into the queue's tail buffer,
//! one send in flight per connection, issued at the end of the loop turn and continued after
//! a partial send.

use io_uring::opcode;
use io_uring::types::Fd;

use super::config::SendOverflow;
use super::conn::{CloseReason, Conn, ConnId, OutBuf, State};
use super::error::IoError;
use super::ring::{self, Op};
use super::slots::Io;

impl Io {
    /// An empty pooled buffer to encode a message into and pass to [`Io::send_owned`]
    /// (no allocation in steady state).
    pub fn buffer(&mut self) -> Vec<u8> {
        self.pool.get()
    }

    /// Queues a copy of `data` on `conn`. Small messages are packed together so one send
    /// carries many. Errors: `NotOpen`; `SendQueueFull` when the queue is at its cap (the
    /// message is dropped and counted, and with `SendOverflow::Close` the connection closes).
    pub fn send(&mut self, conn: ConnId, data: &[u8]) -> Result<(), IoError> {
        let idx = self.open_idx(conn).ok_or(IoError::NotOpen)?;
        if data.is_empty() {
            return Ok(());
        }
        self.admit(idx, data.len())?;
        let coalesce = self.pool.capacity;
        let c = &mut self.slab.0[idx];
        if let Some(back) = appendable_tail(c, data.len(), coalesce) {
            back.data.extend_from_slice(data);
            back.msgs += 1;
        } else {
            let mut buf = self.pool.get();
            buf.extend_from_slice(data);
            c.sendq.push_back(OutBuf { data: buf, msgs: 1 });
        }
        self.queued(idx, data.len());
        Ok(())
    }

    /// Queues `data` on `conn`, taking ownership (a small message may be copied into the tail
    /// buffer and `data` recycled). Errors as for [`Io::send`].
    pub fn send_owned(&mut self, conn: ConnId, data: Vec<u8>) -> Result<(), IoError> {
        let Some(idx) = self.open_idx(conn) else {
            self.pool.put(data);
            return Err(IoError::NotOpen);
        };
        if data.is_empty() {
            self.pool.put(data);
            return Ok(());
        }
        if let Err(e) = self.admit(idx, data.len()) {
            self.pool.put(data);
            return Err(e);
        }
        let len = data.len();
        let coalesce = self.pool.capacity;
        let c = &mut self.slab.0[idx];
        if let Some(back) = appendable_tail(c, len, coalesce) {
            back.data.extend_from_slice(&data);
            back.msgs += 1;
            self.pool.put(data);
        } else {
            c.sendq.push_back(OutBuf { data, msgs: 1 });
        }
        self.queued(idx, len);
        Ok(())
    }

    /// Cap check before queueing `len` bytes on slot `idx`.
    fn admit(&mut self, idx: usize, len: usize) -> Result<(), IoError> {
        let c = &self.slab.0[idx];
        if c.queued_msgs < self.send_queue_messages && c.queued_bytes + len <= self.send_queue_bytes
        {
            return Ok(());
        }
        self.counters.send_queue_drops += 1;
        if self.send_overflow == SendOverflow::Close {
            self.begin_close(idx, CloseReason::SendQueueFull);
        }
        Err(IoError::SendQueueFull)
    }

    /// Accounts a queued message and schedules a send at the end of the turn.
    fn queued(&mut self, idx: usize, len: usize) {
        let c = &mut self.slab.0[idx];
        c.queued_msgs += 1;
        c.queued_bytes += len;
        self.counters.send_messages += 1;
        if !c.send_armed && !c.dirty {
            c.dirty = true;
            self.flush.push(idx as u32);
        }
    }

    /// Issues the sends scheduled during this turn (one per connection, from its queue head).
    pub(crate) fn flush_sends(&mut self) {
        let mut flush = std::mem::take(&mut self.flush);
        for &idx in &flush {
            let idx = idx as usize;
            let c = &mut self.slab.0[idx];
            c.dirty = false;
            if c.state != State::Open || c.send_armed {
                continue;
            }
            let Some(front) = c.sendq.front() else {
                continue;
            };
            let rest = &front.data[c.sent..];
            let len = rest.len().min(1 << 30) as u32;
            let send = opcode::Send::new(Fd(c.fd), rest.as_ptr(), len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(ring::encode(Op::Send, idx as u32, c.generation));
            c.send_armed = true;
            // SAFETY: the buffer is the queue head's heap data, which is neither mutated nor
            // freed while `send_armed` is set (appends go to a later buffer; close keeps it).
            unsafe { self.push(send) };
        }
        flush.clear();
        self.flush = flush;
    }

    /// A send completed with `res`: advance the queue head, or close on an error.
    pub(crate) fn sent(&mut self, idx: usize, res: i32) {
        let c = &mut self.slab.0[idx];
        c.send_armed = false;
        if c.state != State::Open {
            if let Some(b) = c.sendq.pop_front() {
                self.pool.put(b.data);
            }
            self.maybe_release(idx);
            return;
        }
        if res < 0 {
            self.begin_close(idx, CloseReason::SendError(-res));
            return;
        }
        let n = res as usize;
        self.counters.sends += 1;
        self.counters.send_bytes += n as u64;
        c.queued_bytes -= n;
        c.sent += n;
        let front_len = c.sendq.front().map_or(0, |b| b.data.len());
        if c.sent >= front_len {
            c.sent = 0;
            if let Some(b) = c.sendq.pop_front() {
                c.queued_msgs -= b.msgs as usize;
                self.pool.put(b.data);
            }
        } else {
            self.counters.partial_sends += 1;
        }
        let c = &mut self.slab.0[idx];
        if !c.sendq.is_empty() && !c.dirty {
            c.dirty = true;
            self.flush.push(idx as u32);
        }
    }
}

/// The queue's tail buffer if `len` more bytes can be appended without reallocating and
/// without touching a buffer the kernel is sending from.
fn appendable_tail(c: &mut Conn, len: usize, coalesce: usize) -> Option<&mut OutBuf> {
    let in_flight_only = c.send_armed && c.sendq.len() == 1;
    let back = c.sendq.back_mut()?;
    (!in_flight_only && back.data.len() + len <= coalesce && back.data.capacity() >= coalesce)
        .then_some(back)
}
