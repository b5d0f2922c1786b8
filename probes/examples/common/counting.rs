//! The memory examples' allocator: sonde's (mimalloc), or glibc's with the `system-alloc`
//! feature so heaptrack, which hooks malloc, can attribute every byte; either way wrapped to
//! count the live heap. RSS alone cannot tell what a connection asked for from what the
//! allocator's size classes and page granularity add on top, nor show a 100-byte cut under
//! the run-to-run noise of 0.1 KiB a connection.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};

#[cfg(not(feature = "system-alloc"))]
type Inner = mimalloc::MiMalloc;
#[cfg(not(feature = "system-alloc"))]
const INNER: Inner = mimalloc::MiMalloc;
#[cfg(feature = "system-alloc")]
type Inner = std::alloc::System;
#[cfg(feature = "system-alloc")]
const INNER: Inner = std::alloc::System;

pub struct Counting;

static BYTES: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

/// Live heap: bytes asked for and blocks, as the program's layouts say (no allocator rounding).
#[derive(Clone, Copy, Debug)]
pub struct Live {
    pub bytes: isize,
    pub blocks: isize,
}

pub fn live() -> Live {
    Live {
        bytes: BYTES.load(Ordering::Relaxed),
        blocks: BLOCKS.load(Ordering::Relaxed),
    }
}

impl Live {
    /// "N bytes in M blocks per connection" above `base`.
    pub fn per(self, base: Live, n: usize) -> String {
        let n = n.max(1) as f64;
        format!(
            "{:.0} heap bytes in {:.2} blocks",
            (self.bytes - base.bytes) as f64 / n,
            (self.blocks - base.blocks) as f64 / n
        )
    }
}

fn counted(bytes: isize, blocks: isize) {
    BYTES.fetch_add(bytes, Ordering::Relaxed);
    BLOCKS.fetch_add(blocks, Ordering::Relaxed);
}

// SAFETY: every call is passed to `INNER` unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = INNER.alloc(layout);
        if !p.is_null() {
            counted(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = INNER.alloc_zeroed(layout);
        if !p.is_null() {
            counted(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        INNER.dealloc(ptr, layout);
        counted(-(layout.size() as isize), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = INNER.realloc(ptr, layout, new_size);
        if !p.is_null() {
            counted(new_size as isize - layout.size() as isize, 0);
        }
        p
    }
}
