//! Test support: the unit-test binary's global allocator, which can measure how much one
//! thread allocates at its peak while it runs a closure ([`peak_bytes`]). The decoders of
//! bytes another process wrote are tested with it: whatever the bytes claim (a length of
//! 2^62, a map of a billion entries), decoding must allocate in proportion to the bytes
//! actually there, not to the claims.
//!
//! Only the measuring thread's allocations are counted (a thread-local counter, so that
//! tests running in parallel don't disturb each other); outside a measurement the allocator
//! is the system's, plus one thread-local load per call.
//!
//! # Safety
//!
//! [`Counting`] implements [`GlobalAlloc`] by forwarding every call to [`System`] unchanged;
//! it only adds bookkeeping in `const`-initialized thread-locals without destructors
//! (usable from inside the allocator, at any point of a thread's life).

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting the measuring thread's live bytes and their peak.
struct Counting;

thread_local! {
    /// A measurement is running on this thread.
    static ON: Cell<bool> = const { Cell::new(false) };
    /// Bytes allocated and not freed since the measurement began (freeing what was
    /// allocated before it can make this negative).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The largest `LIVE` seen.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = ON.try_with(|on| {
        if on.get() {
            let live = LIVE.with(|l| {
                l.set(l.get() + delta);
                l.get()
            });
            PEAK.with(|p| p.set(p.get().max(live)));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments, so `System`'s
// guarantees are ours; `count` neither allocates nor unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (the caller's contract is `System`'s).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: forwarded as is: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its value and the most bytes this thread had allocated at once
/// while it ran (above what it held before).
pub(crate) fn peak_bytes<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ON.with(|on| on.set(true));
    let v = f();
    ON.with(|on| on.set(false));
    (v, PEAK.with(Cell::get).max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_sees_what_a_thread_allocates() {
        let (v, peak) = peak_bytes(|| {
            let a = vec![1u8; 100_000];
            let b = vec![2u8; 50_000];
            drop(a);
            b.len()
        });
        assert_eq!(v, 50_000);
        assert!((150_000..200_000).contains(&peak), "{peak}");
        let ((), peak) = peak_bytes(|| {
            let mut v = Vec::new();
            for i in 0..1000u32 {
                v.push(i);
            }
        });
        assert!((4000..16_000).contains(&peak), "{peak}");
    }
}
