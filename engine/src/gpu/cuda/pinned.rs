//! Batch buffers in write-combined pinned host memory: the batcher writes each image straight
//! into the memory the copy engine reads, and the copy of a batch is a real asynchronous DMA.

use std::sync::Arc;

use cudarc::driver::{CudaContext, PinnedHostSlice};

use crate::{BatchBuffer, HostMemory, SLOT_BYTES};

struct Pinned {
    _slice: PinnedHostSlice<u8>,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the pinned allocation is owned by this value and only reached through it (`&self` for
// reads, `&mut self` for writes); cudarc's PinnedHostSlice is itself Send.
unsafe impl Send for Pinned {}

impl HostMemory for Pinned {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is the start of the `len`-byte allocation `_slice` owns, alive as long
        // as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// A batch buffer for `capacity` images in pinned memory; the heap when pinning fails (then the
/// copies are synchronous, and a warning says so).
pub(super) fn batch(ctx: &Arc<CudaContext>, capacity: usize) -> BatchBuffer {
    let len = capacity * SLOT_BYTES;
    // SAFETY: a fresh allocation; its contents are only ever written before they are read.
    let pinned = unsafe { ctx.alloc_pinned::<u8>(len.max(1)) }.and_then(|mut slice| {
        let ptr = slice.as_mut_ptr()?;
        Ok(Pinned {
            _slice: slice,
            ptr,
            len,
        })
    });
    match pinned {
        Ok(p) => BatchBuffer::with_memory(Box::new(p), capacity),
        Err(e) => {
            tracing::warn!(error = ?e, "cannot pin a batch buffer; using the heap (slower copies)");
            BatchBuffer::new(capacity)
        }
    }
}
