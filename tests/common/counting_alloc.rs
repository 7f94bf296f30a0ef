//! A counting global allocator, shared by the budget tests and the fuzz
//! targets (each declares its own `#[global_allocator]` static of
//! [`Counting`]).
//!
//! It counts the heap the process has in use ([`CURRENT`]) and its highest
//! value since the user last reset [`PEAK`], and refuses any allocation that
//! would take the heap past [`CAP`]: the allocation returns null (the
//! process then aborts) after [`ON_REFUSED`], if set, is told how much the
//! heap would have reached. That hook runs inside the allocator and must
//! not allocate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Heap in use by the process, in bytes.
pub static CURRENT: AtomicUsize = AtomicUsize::new(0);
/// Highest `CURRENT` since the user last stored into it.
pub static PEAK: AtomicUsize = AtomicUsize::new(0);
/// `CURRENT` beyond which allocations fail; `usize::MAX` for none.
pub static CAP: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Called with the heap an allocation would have reached when it is refused.
pub static ON_REFUSED: OnceLock<fn(usize)> = OnceLock::new();

/// The allocator: `System`, counted.
pub struct Counting;

impl Counting {
    /// Accounts for `size` more bytes; false, with nothing accounted, if
    /// that would pass the cap.
    fn grow(size: usize) -> bool {
        let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
        if now > CAP.load(Ordering::Relaxed) {
            CURRENT.fetch_sub(size, Ordering::Relaxed);
            if let Some(hook) = ON_REFUSED.get() {
                hook(now);
            }
            return false;
        }
        PEAK.fetch_max(now, Ordering::Relaxed);
        true
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments and
// only adds atomic bookkeeping; a refused allocation returns null, which
// `GlobalAlloc` allows.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Counting::grow(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `alloc` is passed on.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Counting::grow(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !Counting::grow(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `realloc` is passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                CURRENT.fetch_sub(new_size - old, Ordering::Relaxed);
            }
        } else if new_size < old {
            CURRENT.fetch_sub(old - new_size, Ordering::Relaxed);
        }
        p
    }
}
