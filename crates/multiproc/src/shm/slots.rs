//! Result slots: one shared page per forked child, where the child leaves its result.
//!
//! Each thread that forks children maps one table of [`SLOTS`] pages (`MAP_SHARED`, allocated
//! lazily by the kernel, so only pages in use cost memory). Before forking, the parent resets
//! a free slot; the child writes its encoded result there and publishes it with one release
//! store of `state`; the parent reads it after it has reaped the child. A result that does not
//! fit, or that carries fds, goes over a socket instead (see `process::results`): the slot
//! then says so.
//!
//! The slot's bytes come from another process and are treated as untrusted: `state`, `tag`
//! and `len` are validated before use and the body is copied out, never referenced.
//!
//! # Safety
//!
//! Typed references into a mapped segment: the segment's size and the slot's alignment are
//! checked before a reference is made.

#![allow(unsafe_code)]

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::sys::mem::{self, Mapping};

/// Bytes per slot (one page).
pub(crate) const SLOT: usize = 4096;
/// Where the body starts in a slot.
const BODY: usize = 64;
/// The largest result body kept in the slot itself.
pub(crate) const INLINE: usize = SLOT - BODY;
/// Slots in the table (address space only: 64 MiB of it, pages allocated on first use).
pub(crate) const SLOTS: usize = 16384;

/// `state`: the child has not published anything (still running, or died first).
pub(crate) const RUNNING: u32 = 0;
/// `state`: the body is in the slot.
pub(crate) const INLINE_BODY: u32 = 1;
/// `state`: the result went over the socket (body in a memfd when `flags & IN_MEMFD`).
pub(crate) const SENT: u32 = 2;
/// `flags`: the first fd of the socket message is a memfd holding the body.
pub(crate) const IN_MEMFD: u32 = 1;

/// The head of a slot (the rest of the page is the body).
#[repr(C)]
struct Head {
    state: AtomicU32,
    /// 1 while the child waits (stopped) for its parent to drain the result socket.
    request: AtomicU32,
    tag: AtomicU32,
    flags: AtomicU32,
    len: AtomicU64,
    token: AtomicU64,
    nfds: AtomicU32,
}

/// What a child published in its slot (unvalidated beyond `state`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Published {
    pub(crate) state: u32,
    pub(crate) tag: u32,
    pub(crate) flags: u32,
    pub(crate) len: u64,
    pub(crate) token: u64,
    pub(crate) nfds: u32,
}

/// The table of slots (see the module docs).
#[derive(Debug)]
pub(crate) struct SlotTable {
    map: Mapping,
}

impl SlotTable {
    /// Maps a fresh table.
    pub(crate) fn new() -> io::Result<SlotTable> {
        let fd = mem::memfd(c"multiproc-results", SLOTS * SLOT)?;
        // The mapping keeps the memory; the fd is not needed after it.
        let map = Mapping::map(&fd, SLOTS * SLOT)?;
        Ok(SlotTable { map })
    }

    fn head(&self, slot: u32) -> &Head {
        let slot = slot as usize;
        assert!(slot < SLOTS, "slot {slot} out of range");
        // SAFETY: `slot * SLOT` is inside the mapping (checked above) and page aligned, so
        // aligned for `Head` (64 bytes, all atomics: valid for every bit pattern, and shared
        // access through `&` is what atomics are for). The mapping lives as long as `self`.
        unsafe { &*self.map.as_ptr().add(slot * SLOT).cast::<Head>() }
    }

    /// Parent, before the fork: an empty slot for a child whose result is matched by `token`.
    pub(crate) fn reset(&self, slot: u32, token: u64) {
        let h = self.head(slot);
        h.request.store(0, Ordering::Relaxed);
        h.token.store(token, Ordering::Relaxed);
        h.state.store(RUNNING, Ordering::Release);
    }

    /// Child: copies `body` into the slot (not yet published). False (nothing written) when
    /// it is longer than [`INLINE`].
    pub(crate) fn write_body(&self, slot: u32, body: &[u8]) -> bool {
        if body.len() > INLINE {
            return false;
        }
        let _ = self.head(slot); // range check
                                 // SAFETY: the body area `[BODY, BODY + body.len())` of this slot lies inside the
                                 // mapping (`body.len() <= INLINE`, slot checked); it is plain bytes that only this
                                 // child writes, and its parent reads them only after reaping it (ordered by the
                                 // release store in `publish` and the parent's acquire load); `body` is a separate
                                 // Rust allocation.
        unsafe {
            let dst = self.map.as_ptr().add(slot as usize * SLOT + BODY);
            std::ptr::copy_nonoverlapping(body.as_ptr(), dst, body.len());
        }
        true
    }

    /// Child: publishes the result's description with one release store of `state`.
    pub(crate) fn publish(&self, slot: u32, state: u32, tag: u32, flags: u32, len: u64, nfds: u32) {
        let h = self.head(slot);
        h.tag.store(tag, Ordering::Relaxed);
        h.flags.store(flags, Ordering::Relaxed);
        h.nfds.store(nfds, Ordering::Relaxed);
        h.len.store(len, Ordering::Relaxed);
        h.state.store(state, Ordering::Release);
    }

    /// The token the parent gave this slot.
    pub(crate) fn token(&self, slot: u32) -> u64 {
        self.head(slot).token.load(Ordering::Relaxed)
    }

    /// The "waiting for a drain" flag of a slot.
    pub(crate) fn request(&self, slot: u32) -> &AtomicU32 {
        &self.head(slot).request
    }

    /// Parent, after reaping: what the child published.
    pub(crate) fn published(&self, slot: u32) -> Published {
        let h = self.head(slot);
        let state = h.state.load(Ordering::Acquire);
        Published {
            state,
            tag: h.tag.load(Ordering::Relaxed),
            flags: h.flags.load(Ordering::Relaxed),
            len: h.len.load(Ordering::Relaxed),
            token: h.token.load(Ordering::Relaxed),
            nfds: h.nfds.load(Ordering::Relaxed),
        }
    }

    /// Parent, after reaping: a copy of the inline body, `None` when `len` is out of range.
    pub(crate) fn inline_body(&self, slot: u32, len: u64) -> Option<Vec<u8>> {
        let len = usize::try_from(len).ok().filter(|&l| l <= INLINE)?;
        let _ = self.head(slot); // range check
        let mut out = vec![0u8; len];
        // SAFETY: `[BODY, BODY + len)` of the slot is inside the mapping (`len <= INLINE`,
        // slot checked by `head`); the child that wrote it has been reaped. Another process
        // writing it at the same time could only garble bytes that are decoded as untrusted
        // input anyway; `out` is our own allocation of `len` bytes.
        unsafe {
            let src = self.map.as_ptr().add(slot as usize * SLOT + BODY);
            std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), len);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_round_trip_and_limits() {
        let t = SlotTable::new().unwrap();
        t.reset(3, 77);
        assert_eq!(t.published(3).state, RUNNING);
        assert_eq!(t.token(3), 77);
        assert!(t.write_body(3, b"hello"));
        t.publish(3, INLINE_BODY, 1, 0, 5, 0);
        let p = t.published(3);
        assert_eq!((p.state, p.tag, p.len, p.token), (INLINE_BODY, 1, 5, 77));
        assert_eq!(t.inline_body(3, p.len).unwrap(), b"hello");
        assert!(!t.write_body(4, &vec![0u8; INLINE + 1]));
        assert!(t.write_body(4, &vec![7u8; INLINE]));
        assert_eq!(t.inline_body(4, INLINE as u64).unwrap().len(), INLINE);
        assert!(t.inline_body(4, INLINE as u64 + 1).is_none());
        assert!(t.inline_body(4, u64::MAX).is_none());
    }
}
