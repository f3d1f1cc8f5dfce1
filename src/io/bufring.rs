//! The provided buffer ring: `count` receive buffers of `size` bytes that the kernel picks from
//! for multishot receives. A buffer is handed back to the ring right after the handler saw it.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;

use super::IoError;

/// Size of one `struct io_uring_buf` { addr: u64, len: u32, bid: u16, resv: u16 }.
const ENTRY_SIZE: usize = 16;
/// The ring's tail is the `resv` field of entry 0.
const TAIL_OFFSET: usize = 14;
/// The kernel wants the ring page aligned.
const RING_ALIGN: usize = 4096;

/// A registered provided-buffer ring and its buffers. Memory shared with the kernel is only
/// touched through raw pointers.
pub(crate) struct BufRing {
    ring: NonNull<u8>,
    ring_layout: Layout,
    bufs: NonNull<u8>,
    bufs_layout: Layout,
    count: u16,
    size: u32,
    mask: u16,
    tail: u16,
    bgid: u16,
}

impl BufRing {
    /// Allocates `count` buffers of `size` bytes, registers them as group `bgid` on `ring` and
    /// hands all of them to the kernel. `count` must be a power of two ≤ 32768.
    pub(crate) fn new(ring: &IoUring, bgid: u16, count: u16, size: u32) -> Result<Self, IoError> {
        debug_assert!(count.is_power_of_two());
        let ring_layout = Layout::from_size_align(usize::from(count) * ENTRY_SIZE, RING_ALIGN)
            .map_err(|_| IoError::Config("buffer ring too large"))?;
        let bufs_layout = Layout::from_size_align(usize::from(count) * size as usize, 64)
            .map_err(|_| IoError::Config("receive buffers too large"))?;
        // SAFETY: both layouts have a non-zero size (count ≥ 1, size ≥ 1 are validated).
        let ring_ptr = unsafe { alloc::alloc_zeroed(ring_layout) };
        // SAFETY: as above.
        let bufs_ptr = unsafe { alloc::alloc_zeroed(bufs_layout) };
        let (Some(ring_nn), Some(bufs_nn)) = (NonNull::new(ring_ptr), NonNull::new(bufs_ptr))
        else {
            alloc::handle_alloc_error(ring_layout)
        };
        let mut this = BufRing {
            ring: ring_nn,
            ring_layout,
            bufs: bufs_nn,
            bufs_layout,
            count,
            size,
            mask: count - 1,
            tail: 0,
            bgid,
        };
        // SAFETY: the ring memory is page aligned, `count` entries long, and lives until
        // `Drop`, which runs after the io_uring is dropped (field order in the shard) or after
        // an explicit unregister.
        let reg = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ring_nn.as_ptr() as u64, count, bgid, 0)
        };
        if let Err(e) = reg {
            return Err(match e.raw_os_error() {
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
                    IoError::Unsupported {
                        feature: "IORING_REGISTER_PBUF_RING (provided buffer rings, kernel ≥ 5.19)",
                        reason: e.to_string(),
                    }
                }
                _ => IoError::Setup {
                    what: "register buffer ring",
                    source: e,
                },
            });
        }
        for bid in 0..count {
            this.push(bid);
        }
        this.publish();
        Ok(this)
    }

    /// The buffer group id to name in receive requests.
    pub(crate) fn bgid(&self) -> u16 {
        self.bgid
    }

    /// The first `len` bytes of buffer `bid`, as filled by a receive completion.
    ///
    /// The caller must only pass a `bid` the kernel returned in a completion and not yet
    /// recycled, so the kernel does not write to it while the slice lives.
    pub(crate) fn data(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.count && len <= self.size as usize);
        // SAFETY: the range lies inside the allocation (asserted above); the buffer belongs to
        // us until `recycle(bid)`, so the kernel does not write to it meanwhile; `recycle` takes
        // `&mut self`, so the slice cannot outlive that.
        unsafe {
            std::slice::from_raw_parts(
                self.bufs
                    .as_ptr()
                    .add(usize::from(bid) * self.size as usize),
                len,
            )
        }
    }

    /// Hands buffer `bid` back to the kernel.
    pub(crate) fn recycle(&mut self, bid: u16) {
        debug_assert!(bid < self.count);
        self.push(bid);
        self.publish();
    }

    /// Writes the entry for `bid` at the local tail (not yet visible to the kernel).
    fn push(&mut self, bid: u16) {
        let idx = usize::from(self.tail & self.mask);
        let addr = self.bufs.as_ptr() as u64 + u64::from(bid) * u64::from(self.size);
        // SAFETY: `idx < count`, so the entry lies inside the ring allocation. The slot at the
        // tail is not owned by the kernel (it only reads entries in [head, tail)), and the
        // writes leave the `resv` field (the tail, in entry 0) untouched.
        unsafe {
            let entry = self.ring.as_ptr().add(idx * ENTRY_SIZE);
            entry.cast::<u64>().write(addr);
            entry.add(8).cast::<u32>().write(self.size);
            entry.add(12).cast::<u16>().write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the entries written so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field is an aligned u16 inside the ring allocation that the kernel
        // reads concurrently; all our accesses to it are atomic.
        let tail = unsafe { AtomicU16::from_ptr(self.ring.as_ptr().add(TAIL_OFFSET).cast()) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both pointers come from `alloc_zeroed` with these layouts; the owning shard
        // drops the ring (or unregisters the group) before this runs.
        unsafe {
            alloc::dealloc(self.ring.as_ptr(), self.ring_layout);
            alloc::dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}
