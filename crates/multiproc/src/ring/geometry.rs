//! Ring arithmetic: where the next frame goes, how the oldest one is read, and which pages
//! may be given back, as pure functions over positions. No memory is touched here;
//! `mod.rs`, `put.rs` and `get.rs` apply the results to the shared segment. Everything is unit- and
//! property-tested below.
//!
//! # The ring
//!
//! A byte area of `cap` bytes holds *frames*, each `FRAME_HEADER` bytes (the payload length
//! and a check word) followed by the payload, padded to 8 bytes. Positions are *virtual*:
//! monotonic `u64` byte counts, at physical offset `pos % cap`. Three of them describe the
//! ring:
//!
//! ```text
//! reclaimed <= head <= tail <= reclaimed + cap
//!   [head, tail)            committed frames (written by producers, not yet taken)
//!   [reclaimed, head)       taken, but not yet given back to producers (pages being discarded)
//!   [tail, reclaimed + cap) free: a producer may write there
//! ```
//!
//! Producers own `tail` (under the producer lock), consumers own `head` and `reclaimed`
//! (under the consumer lock), so a producer and a consumer never wait for each other.
//!
//! Frames never wrap: a frame that does not fit before the end of the lap is preceded by a
//! *skip* header ([`SKIP`]) that sends the reader to the next lap's start. The bytes after a
//! skip, up to the lap's end, stay unusable until a consumer has passed it.
//!
//! # When a put waits
//!
//! A put waits only when the queue is full: `maxsize` items are queued, or the bytes in use
//! (frames queued, skip headers, taken bytes not yet given back) leave no room for the
//! frame. "No room" allows for what contiguous frames cannot avoid: the free bytes may lie in
//! two pieces (before the lap's end, and at the next lap's start before `reclaimed`), each
//! too short, and the lap's end after one skip is lost; so a put of a frame of `flen` bytes
//! never waits while `in use + 2 * flen + largest frame - 32 < cap` ([`place`] always finds
//! room then; the property test below and the model check in `model.rs` check it). For the
//! 1 GiB ring of `Queue::new()` and messages of a few MiB, that is the whole ring.
//!
//! Until issue 17 the ring broke this. Once `tail` had passed `wrap_at`, a put *preferred*
//! wrapping to the next lap's start whenever the frame fit before `reclaimed`, even with
//! frames still queued: the skip then made the rest of the lap (most of a 1 GiB ring)
//! unusable until a consumer passed it, and the next puts had only the bytes the consumer
//! had already freed. One thread doing `put(1 MiB)`, `get()`, `put(1 MiB)` then waited
//! forever on its next put, and a producer that put 8 x 1 MiB and exited before anyone read
//! them hung (CPython's "join the producer before reading" deadlock, which we remove).
//! That trade cannot be made safely: after an early wrap behind queued frames, the producer
//! can only use the bytes in front of them, and only a get makes more.
//!
//! So the warm start is now kept by an early wrap that loses nothing: a put that finds the
//! ring *empty* with `tail` past `wrap_at` first moves the whole (empty) ring to the next
//! lap's start ([`rewind_wanted`], then [`realign`]: the producer, holding both mutexes,
//! writes a skip and moves `head` and `reclaimed` past it at once), so the next lap has the
//! whole ring free. A consumer that keeps up empties the queue often and so keeps the ring
//! in its first, cache-warm bytes; a real backlog appends, touching pages past `warm` only
//! then, and they are given back to the kernel as the consumer passes them ([`reclaim`]).
//!
//! All positions are multiples of 8, so a frame header (8 bytes, read as one `AtomicU64`) is
//! always aligned and never wraps.

/// Bytes of a frame header: `u32` payload length, `u32` check word. The check word also
/// says whether the payload is raw bytes (`put_bytes`) or a typed message (a type tag, then
/// the codec's bytes: `codec/ident.rs`), so a raw payload stays exactly the caller's bytes.
pub(crate) const FRAME_HEADER: u64 = 8;

/// The warm area's size for large rings: pages below it stay mapped once touched (so large
/// messages with a small backlog don't fault in fresh pages every time); pages past it are
/// given back as soon as a backlog drains past them.
pub(crate) const WARM_MAX: u64 = 16 << 20;

/// Past this physical offset (or `warm`, if smaller) a put that finds the ring empty moves
/// it to the next lap's start ([`rewind_wanted`]): a consumer that keeps up keeps the ring in
/// its cache-warm first bytes.
pub(crate) const WRAP_MAX: u64 = 256 * 1024;

/// Pages past `warm` are given back in chunks of this many bytes.
pub(crate) const DISCARD_CHUNK: u64 = 256 * 1024;

/// The largest payload one frame can carry (its length is a `u32`).
pub(crate) const MAX_PAYLOAD: u64 = u32::MAX as u64 - 7;

/// The header of a skip frame: the rest of the lap is padding, the next frame is at the
/// start of the next lap. Not a valid length header (see the tests).
pub(crate) const SKIP: u64 = u64::from_le_bytes(crate::kinds::magic::RING_SKIP);

/// Frame bytes for a payload of `len` bytes: header plus payload rounded up to 8.
pub(crate) const fn frame_len(len: u64) -> u64 {
    FRAME_HEADER + len.div_ceil(8) * 8
}

/// The frame header word for a payload of `len` bytes, raw or `typed`: length in the low
/// half, and in the high half a check derived from it (and the kind), so that garbage is
/// very unlikely to pass as a header.
pub(crate) const fn encode_header(len: u32, typed: bool) -> u64 {
    (len as u64) | ((check_word(len, typed) as u64) << 32)
}

const fn check_word(len: u32, typed: bool) -> u32 {
    !len ^ if typed { 0xe3a4_5b71 } else { 0x5a17_c3e9 }
}

/// The payload length in a frame header word and whether the payload is typed, if its
/// check word matches.
pub(crate) const fn decode_header(word: u64) -> Option<(u32, bool)> {
    let len = word as u32;
    let check = (word >> 32) as u32;
    if check == check_word(len, false) {
        Some((len, false))
    } else if check == check_word(len, true) {
        Some((len, true))
    } else {
        None
    }
}

/// The fixed shape of a ring, from its creator; validated locally on open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Byte size of the ring, a multiple of 8.
    pub(crate) cap: u64,
    /// Pages past this offset are discarded once consumed.
    pub(crate) warm: u64,
    /// Discard granularity (a local constant, [`DISCARD_CHUNK`]; smaller in tests).
    pub(crate) chunk: u64,
    /// `cap - 1` when `cap` is a power of two, else 0 (derived: see [`Geometry::with`]).
    mask: u64,
    /// [`punch_from`](Geometry::punch_from), derived once.
    punch_from: u64,
}

/// The positions are impossible: shared memory was corrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) &'static str);

impl Geometry {
    /// A geometry for `cap` bytes (rounded down to 8), with the warm area the smaller of
    /// [`WARM_MAX`] and half the ring.
    pub(crate) fn new(cap: u64) -> Geometry {
        let cap = cap / 8 * 8;
        Geometry::with(cap, (cap / 2).min(WARM_MAX) / 8 * 8, DISCARD_CHUNK)
    }

    /// A geometry of these sizes (any values: [`is_valid`](Geometry::is_valid) judges them),
    /// with the derived values every put and get uses computed once: a power-of-two ring's
    /// mask (no division, and no test for a power of two, on every position) and the first
    /// offset ever discarded.
    pub(crate) const fn with(cap: u64, warm: u64, chunk: u64) -> Geometry {
        let mask = if cap.is_power_of_two() { cap - 1 } else { 0 };
        let punch_from = if chunk == 0 {
            warm
        } else {
            let r = warm % chunk;
            if r == 0 {
                warm
            } else {
                warm.saturating_add(chunk - r)
            }
        };
        Geometry {
            cap,
            warm,
            chunk,
            mask,
            punch_from,
        }
    }

    /// True when the values make sense (they come from shared memory).
    pub(crate) fn is_valid(&self) -> bool {
        self.cap >= 16
            && self.cap.is_multiple_of(8)
            && self.warm.is_multiple_of(8)
            && self.warm <= self.cap
            && self.chunk > 0
            && self.chunk.is_multiple_of(8)
    }

    /// The largest payload a single message may have in this ring.
    #[inline]
    pub(crate) fn max_payload(&self) -> u64 {
        (self.cap - FRAME_HEADER).min(MAX_PAYLOAD)
    }

    /// Past this physical offset a put that finds the ring empty starts the next lap.
    #[inline]
    pub(crate) fn wrap_at(&self) -> u64 {
        self.warm.min(WRAP_MAX)
    }

    /// The first physical offset whose pages are ever given back (a chunk boundary).
    #[inline(always)]
    fn punch_from(&self) -> u64 {
        self.punch_from
    }

    /// Physical offset of a virtual position.
    #[inline(always)]
    pub(crate) fn phys(&self, pos: u64) -> u64 {
        // A power-of-two ring (the default size) needs no division, which costs as much as
        // the rest of a small put.
        if self.mask != 0 {
            pos & self.mask
        } else {
            pos % self.cap
        }
    }

    /// Checks `reclaimed <= head <= tail <= reclaimed + cap`, all aligned.
    #[inline]
    pub(crate) fn validate(&self, reclaimed: u64, head: u64, tail: u64) -> Result<(), Corrupt> {
        if !(reclaimed | head | tail).is_multiple_of(8) {
            return Err(Corrupt("ring positions not aligned"));
        }
        let ok = reclaimed <= head
            && head <= tail
            && reclaimed.checked_add(self.cap).is_some_and(|l| tail <= l);
        if ok {
            Ok(())
        } else {
            Err(Corrupt("ring positions out of order"))
        }
    }
}

/// `x % m` (`m > 0`), without a division when `m` is a power of two (ring sizes and discard
/// chunks usually are; this runs on every put and get).
#[inline(always)]
fn rem(x: u64, m: u64) -> u64 {
    if m.is_power_of_two() {
        x & (m - 1)
    } else {
        x % m
    }
}

/// Where a put writes a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Placement {
    /// A skip header goes here first (the frame starts the next lap).
    pub(crate) skip: Option<u64>,
    /// The frame's position.
    pub(crate) at: u64,
    /// The tail once the frame is written.
    pub(crate) tail: u64,
}

/// Where a frame of `flen` bytes goes, given the producer's `tail` and the consumers'
/// `reclaimed` (validated: `reclaimed <= tail <= reclaimed + cap`); `None` when it does not
/// fit now. The frame goes at `tail` when it fits before the lap's end, else at the next
/// lap's start after a skip: never to the next lap while it fits here, since a skip makes
/// the rest of the lap unusable until a get passes it (see "When a put waits"). An empty
/// ring is moved to the lap start by the caller instead ([`rewind_wanted`], [`realign`]).
#[inline]
pub(crate) fn place(g: &Geometry, tail: u64, reclaimed: u64, flen: u64) -> Option<Placement> {
    debug_assert!(flen.is_multiple_of(8) && flen >= FRAME_HEADER);
    let limit = reclaimed.checked_add(g.cap)?;
    let phys = g.phys(tail);
    let lap_end = tail - phys + g.cap;
    if tail.checked_add(flen)? <= lap_end.min(limit) {
        Some(Placement {
            skip: None,
            at: tail,
            tail: tail + flen,
        })
    // Wrapping needs phys != 0, which `lap_end + flen <= limit` implies (flen > 0).
    } else if lap_end.checked_add(flen)? <= limit {
        Some(Placement {
            skip: Some(tail),
            at: lap_end,
            tail: lap_end + flen,
        })
    } else {
        None
    }
}

/// True when a put finds the ring empty (`reclaimed == tail`, hence `head == tail`) past
/// `wrap_at`: it should first move the ring to the next lap's start ([`realign`]), where the
/// whole ring is free and the first bytes are warm. Only an empty ring: see "When a put
/// waits" for why a put must never wrap early with frames queued.
#[inline(always)]
pub(crate) fn rewind_wanted(g: &Geometry, tail: u64, reclaimed: u64) -> bool {
    reclaimed == tail && g.phys(tail) >= g.wrap_at().max(FRAME_HEADER)
}

/// True when a frame of `flen` bytes at virtual position `at`, with `backlog` bytes in use
/// before it (`tail - reclaimed`), goes far enough into the ring that the producer should
/// first let the consumers empty it and start the next lap at the ring's start
/// (`SharedQueue::drain_then_rewind`): when it would touch pages past the warm area (given
/// back to the kernel as consumers pass them, so faulted in and zeroed afresh on every lap),
/// or end past [`DRAIN_MIN`] and more than two frames of its size past the backlog's
/// length (so a ring that has moved on keeps its bytes in use near the start).
///
/// Why the second case: the bytes a queue cycles through are its cache footprint. A
/// producer ahead of its consumer keeps a backlog, so the ring is never found empty and
/// went on to the warm area's end (16 MiB) before each drain: 16 MiB of ring plus the
/// messages' copies outgrow the cache. Measured (issue 19, 2-core AMD EPYC VM with 32 MiB
/// of L3, quiet, `Queue::bounded(8)`, 1 MiB `Vec<u8>` messages, scratch probe in a fresh
/// process, three alternated rounds of 5 samples with the drain point forced to each size):
/// 9-10 MiB 22.1-24.8 GB/s, 12 MiB 20.8-22.4, 16 MiB 16.6-20.3, 32 MiB 6.9-8.9, 64 MiB
/// 5.7-6.3 (memory-bound).
#[inline(always)]
pub(crate) fn wants_drain(g: &Geometry, at: u64, flen: u64, backlog: u64) -> bool {
    let end = g.phys(at) + flen;
    end > g.punch_from() || (end > DRAIN_MIN && end > backlog.saturating_add(2 * flen))
}

/// A put does not stop to drain the ring before its frames reach this physical offset (see
/// [`wants_drain`]): each drain costs about one message's time in which the consumer waits
/// for the next message, so the laps are kept at least this long.
pub(crate) const DRAIN_MIN: u64 = 4 << 20;

/// When the ring is empty (`reclaimed == head == tail`): a skip at `tail` moves everything
/// to the next lap start, where any frame of `flen <= cap` bytes fits. Returns that position
/// (`None` at a lap start). Used when a frame fits neither before the lap's end nor before
/// `tail` in the next lap, and past `wrap_at` ([`rewind_wanted`]).
pub(crate) fn realign(g: &Geometry, tail: u64) -> Option<u64> {
    let phys = g.phys(tail);
    (phys != 0).then(|| tail - phys + g.cap)
}

/// The oldest frame, as read at `head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Front {
    /// A skip frame: the next frame is at `next`.
    Skip { next: u64 },
    /// A frame with a payload of `len` bytes at physical offset `payload`, typed or raw;
    /// the next frame is at `next`.
    Frame {
        payload: u64,
        len: u64,
        next: u64,
        typed: bool,
    },
}

/// Interprets the header `word` found at `head` (`head < tail`, validated).
#[inline]
pub(crate) fn front(g: &Geometry, head: u64, tail: u64, word: u64) -> Result<Front, Corrupt> {
    let phys = g.phys(head);
    if word == SKIP {
        let next = head - phys + g.cap;
        return if phys != 0 && next <= tail {
            Ok(Front::Skip { next })
        } else {
            Err(Corrupt("skip frame runs past the data"))
        };
    }
    let (len, typed) = decode_header(word).ok_or(Corrupt("frame header is damaged"))?;
    let len = len as u64;
    let flen = frame_len(len);
    if phys + flen <= g.cap && head + flen <= tail {
        Ok(Front::Frame {
            payload: phys + FRAME_HEADER,
            len,
            next: head + flen,
            typed,
        })
    } else {
        Err(Corrupt("frame runs past the data"))
    }
}

/// A physical range of the ring whose pages may be given back (nothing lives there and no
/// producer may write there until `reclaimed` passes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Discard {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// After a get moved `head` to `head` (`reclaimed <= head`): the new `reclaimed`, and the
/// physical ranges to discard before publishing it (they lie in `[reclaimed, new)`).
///
/// Past `warm`, `reclaimed` stays at the start of `head`'s discard chunk, so a chunk is
/// given back whole once the consumer has passed it (a chunk's bytes below `head` may not be
/// discarded once producers may write there). When the get emptied the ring (`emptied`),
/// nothing is held back: no later get may come to release it, and a producer may need the
/// whole ring for one large message.
#[inline(always)]
pub(crate) fn reclaim(
    g: &Geometry,
    reclaimed: u64,
    head: u64,
    emptied: bool,
) -> (u64, [Option<Discard>; 2]) {
    let phys = g.phys(head);
    let punch_from = g.punch_from();
    if phys < punch_from && head >= reclaimed && head - reclaimed <= phys {
        // The common case, on every get: `[reclaimed, head)` lies in this lap's warm area,
        // where nothing is ever discarded (what the general path below finds too).
        return (head, [None, None]);
    }
    let held = if emptied || phys < punch_from {
        head
    } else {
        head - rem(phys, g.chunk)
    };
    let new = held.max(reclaimed);
    (new, discard_ranges(g, reclaimed, new))
}

/// Whole discard chunks past `warm` inside the virtual range `[from, to)`, as physical
/// ranges (two when the range crosses a lap start).
#[inline]
pub(crate) fn discard_ranges(g: &Geometry, from: u64, to: u64) -> [Option<Discard>; 2] {
    let mut out = [None, None];
    if to <= from {
        return out;
    }
    if to - from >= g.cap {
        // Everything was consumed at least once: the whole discardable area.
        out[0] = chunk_range(g, 0, g.cap);
        return out;
    }
    let a = g.phys(from);
    let b = a + (to - from);
    if b <= g.punch_from() {
        return out; // the common case: all inside the warm area
    }
    if b <= g.cap {
        out[0] = chunk_range(g, a, b);
    } else {
        out[0] = chunk_range(g, a, g.cap);
        out[1] = chunk_range(g, 0, b - g.cap);
    }
    out
}

/// Whole chunks past `warm` inside the physical range `[a, b)`; the lap's last chunk may be
/// short (it ends at `cap`).
fn chunk_range(g: &Geometry, a: u64, b: u64) -> Option<Discard> {
    let lo = a.max(g.punch_from()).next_multiple_of(g.chunk);
    let hi = if b >= g.cap {
        g.cap
    } else {
        b / g.chunk * g.chunk
    };
    (hi > lo).then_some(Discard { start: lo, end: hi })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[test]
    fn header_round_trip_and_garbage() {
        for len in [0u32, 1, 7, 8, 1 << 20, u32::MAX] {
            for typed in [false, true] {
                assert_eq!(decode_header(encode_header(len, typed)), Some((len, typed)));
            }
            assert_ne!(encode_header(len, false), encode_header(len, true));
        }
        assert_eq!(decode_header(0), None);
        assert_eq!(decode_header(u64::MAX), None);
        assert_eq!(decode_header(SKIP), None, "a skip is not a length header");
        assert_eq!(frame_len(0), 8);
        assert_eq!(frame_len(1), 16);
        assert_eq!(frame_len(8), 16);
        assert_eq!(frame_len(9), 24);
    }

    fn small() -> Geometry {
        Geometry::with(64, 64, 16)
    }

    #[test]
    fn wraps_with_a_skip() {
        let g = small();
        let a = place(&g, 0, 0, 24).unwrap();
        assert_eq!(
            a,
            Placement {
                skip: None,
                at: 0,
                tail: 24
            }
        );
        let b = place(&g, 24, 0, 24).unwrap();
        assert_eq!(b.at, 24);
        assert!(
            place(&g, 48, 0, 24).is_none(),
            "16 bytes left at the end, 0 at the front"
        );
        // The first frame was taken: the third goes to the next lap after a skip.
        let c = place(&g, 48, 24, 24).unwrap();
        assert_eq!(
            c,
            Placement {
                skip: Some(48),
                at: 64,
                tail: 88
            }
        );
        assert_eq!(front(&g, 48, 88, SKIP), Ok(Front::Skip { next: 64 }));
        assert_eq!(
            front(&g, 64, 88, encode_header(16, false)),
            Ok(Front::Frame {
                payload: 8,
                len: 16,
                next: 88,
                typed: false,
            })
        );
        assert_eq!(
            front(&g, 64, 88, encode_header(16, true)),
            Ok(Front::Frame {
                payload: 8,
                len: 16,
                next: 88,
                typed: true,
            })
        );
    }

    #[test]
    fn appends_past_wrap_at_and_rewinds_only_an_empty_ring() {
        let g = Geometry::with(1024, 64, 16);
        // Frames queued from 64 on: append at 96, though 32 bytes would fit before 64 in the
        // next lap (the early wrap before issue 17, which lost the rest of the lap).
        assert_eq!(
            place(&g, 96, 64, 32),
            Some(Placement {
                skip: None,
                at: 96,
                tail: 128
            })
        );
        assert!(!rewind_wanted(&g, 96, 64));
        // Empty past wrap_at: move to the next lap start.
        assert!(rewind_wanted(&g, 96, 96));
        assert_eq!(realign(&g, 96), Some(1024));
        // Empty before wrap_at, or at a lap start (even with wrap_at 0): stay.
        assert!(!rewind_wanted(&g, 56, 56));
        assert!(!rewind_wanted(&g, 1024, 1024));
        assert!(!rewind_wanted(&Geometry::with(64, 0, 8), 64, 64));
        assert!(rewind_wanted(&Geometry::with(64, 0, 8), 72, 72));
    }

    /// Issue 19: a drain is wanted past the warm area, and past `DRAIN_MIN` once the frame
    /// ends more than two frames beyond the backlog; never before `DRAIN_MIN` while warm.
    #[test]
    fn a_drain_is_wanted_past_the_warm_area_or_well_past_the_backlog() {
        let mib = 1 << 20;
        let g = Geometry::new(1 << 30); // warm 16 MiB
        assert_eq!(g.punch_from(), WARM_MAX);
        let f = mib + 8;
        // Before DRAIN_MIN: never, whatever the backlog.
        assert!(!wants_drain(&g, 0, f, 0));
        assert!(!wants_drain(&g, DRAIN_MIN - f, f, 0));
        // Past DRAIN_MIN with a small backlog: yes.
        assert!(wants_drain(&g, DRAIN_MIN, f, f));
        // Past DRAIN_MIN, but within two frames of an 8-frame backlog: not yet.
        assert!(!wants_drain(&g, 9 * f, f, 8 * f));
        assert!(wants_drain(&g, 10 * f, f, 8 * f));
        // Past the warm area: always, and the same one lap on.
        assert!(wants_drain(&g, WARM_MAX - f + 8, f, WARM_MAX));
        assert!(wants_drain(&g, (1 << 30) + WARM_MAX, f, u64::MAX));
        // A small ring whose warm area is below DRAIN_MIN drains only past its warm area.
        let small = Geometry::new(4 * mib);
        assert!(!wants_drain(&small, 0, mib, 0));
        assert!(wants_drain(&small, mib, mib + 8, 0));
    }

    /// Issue 17: one frame put and taken, then puts and no get. They must fill the ring;
    /// before the fix, the third wrapped early behind the second and the fourth found no
    /// room (the rest of the lap lay behind the skip).
    #[test]
    fn without_gets_puts_fill_the_ring() {
        let g = Geometry::new(1 << 20); // wrap_at 256 KiB
        let flen = frame_len(100_000);
        let mut tail = place(&g, 0, 0, flen).unwrap().tail;
        let mut reclaimed = reclaim(&g, 0, tail, true).0;
        assert_eq!(reclaimed, tail);
        let mut n = 0;
        loop {
            if rewind_wanted(&g, tail, reclaimed) {
                tail = realign(&g, tail).unwrap();
                reclaimed = tail;
            }
            let Some(p) = place(&g, tail, reclaimed, flen) else {
                break;
            };
            tail = p.tail;
            n += 1;
        }
        assert_eq!(n, g.cap / flen, "frames put without a get");
    }

    #[test]
    fn realign_an_empty_ring_for_a_large_frame() {
        let g = Geometry::with(4096, 2048, 4096);
        assert!(place(&g, 2048, 2048, 4000).is_none());
        let t = realign(&g, 2048).unwrap();
        assert_eq!(t, 4096);
        assert_eq!(place(&g, t, t, 4000).unwrap().at, 4096);
        assert_eq!(realign(&g, 4096), None);
    }

    #[test]
    fn corrupt_positions_and_frames_are_rejected() {
        let g = small();
        assert!(g.validate(0, 8, 0).is_err());
        assert!(g.validate(8, 0, 16).is_err());
        assert!(g.validate(0, 0, 72).is_err());
        assert!(g.validate(0, 3, 16).is_err());
        assert!(
            g.validate(u64::MAX - 7, u64::MAX - 7, u64::MAX - 7)
                .is_err(),
            "positions about to overflow count as corrupt"
        );
        assert!(g.validate(0, 0, 64).is_ok());
        assert!(
            front(&g, 0, 16, encode_header(16, false)).is_err(),
            "runs past tail"
        );
        assert!(
            front(&g, 48, 120, encode_header(20, true)).is_err(),
            "runs past the lap"
        );
        assert!(front(&g, 0, 64, SKIP).is_err(), "skip at a lap start");
        assert!(front(&g, 8, 32, SKIP).is_err(), "skip past tail");
        assert!(front(&g, 0, 64, u64::MAX).is_err());
    }

    #[test]
    fn discards_only_whole_chunks_past_warm() {
        let c = DISCARD_CHUNK;
        let g = Geometry::with(8 * c, c, c);
        assert_eq!(discard_ranges(&g, 0, c), [None, None], "inside warm");
        assert_eq!(
            discard_ranges(&g, c + 8, 3 * c + 8),
            [
                Some(Discard {
                    start: 2 * c,
                    end: 3 * c
                }),
                None
            ]
        );
        // Held back to the chunk start, so the next get discards it whole.
        let (r, d) = reclaim(&g, c, 3 * c + 8, false);
        assert_eq!(r, 3 * c);
        assert_eq!(
            d,
            [
                Some(Discard {
                    start: c,
                    end: 3 * c
                }),
                None
            ]
        );
        let (r, d) = reclaim(&g, 3 * c, 4 * c + 8, false);
        assert_eq!(
            (r, d),
            (
                4 * c,
                [
                    Some(Discard {
                        start: 3 * c,
                        end: 4 * c
                    }),
                    None
                ]
            )
        );
        // Emptied: nothing held back.
        let (r, _) = reclaim(&g, 4 * c, 4 * c + 64, true);
        assert_eq!(r, 4 * c + 64);
        // Across a lap start.
        assert_eq!(
            discard_ranges(&g, 7 * c, 9 * c),
            [
                Some(Discard {
                    start: 7 * c,
                    end: 8 * c
                }),
                Some(Discard { start: c, end: c })
            ]
            .map(|d| d.filter(|d| d.end > d.start))
        );
    }

    #[derive(Clone, Debug)]
    enum Op {
        Put(u64),
        Get(usize),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                (0u64..200).prop_map(Op::Put),
                (1usize..4).prop_map(Op::Get),
                (1usize..4).prop_map(Op::Get)
            ],
            1..400,
        )
    }

    proptest! {
        // A simulated byte area, a model FIFO, and the positions: every frame read back is
        // the one written, live frames and skips are never overwritten, no discard touches
        // live or writable bytes, positions stay valid across many laps, an empty ring
        // always takes a frame up to its capacity (after a realign), and a put finds no room
        // only when the bytes in use say the ring is full (issue 17).
        #[test]
        fn ring_matches_a_fifo_across_laps(
            cap8 in 4u64..80, warm8 in 0u64..80, chunk8 in 1u64..8, ops in ops()
        ) {
            let cap = cap8 * 8;
            let g = Geometry::with(cap, (warm8 * 8).min(cap), chunk8 * 8);
            prop_assert!(g.is_valid());
            let mut mem = vec![0u8; cap as usize];
            // Which live frame (or skip) owns each byte; u64::MAX marks a skip header.
            let mut owner: Vec<Option<u64>> = vec![None; cap as usize];
            let (mut reclaimed, mut head, mut tail) = (0u64, 0u64, 0u64);
            let mut model: VecDeque<(u64, u64)> = VecDeque::new(); // (id, payload len)
            let mut next_id = 0u64;
            let mut largest = 0u64; // the largest frame put so far
            // Bytes in `[head, tail)` that follow a skip header up to its lap's end.
            let lost_to_skips = |mem: &[u8], head: u64, tail: u64| {
                let (mut h, mut lost) = (head, 0);
                while h < tail {
                    let ph = g.phys(h) as usize;
                    let word = u64::from_ne_bytes(mem[ph..ph + 8].try_into().unwrap());
                    h = match front(&g, h, tail, word).unwrap() {
                        Front::Skip { next } => {
                            lost += next - h - FRAME_HEADER;
                            next
                        }
                        Front::Frame { next, .. } => next,
                    };
                }
                lost
            };
            let claim = |owner: &mut Vec<Option<u64>>, at: u64, len: u64, id: u64| {
                for i in at..at + len {
                    let p = (i % cap) as usize;
                    assert!(owner[p].is_none(), "overwrote live data");
                    owner[p] = Some(id);
                }
            };
            for op in ops {
                match op {
                    Op::Put(len) => {
                        let flen = frame_len(len);
                        largest = largest.max(flen);
                        // Empty past wrap_at, or empty and the frame fits nowhere: realign
                        // (the skip is consumed at once by the producer holding both locks).
                        if rewind_wanted(&g, tail, reclaimed) {
                            let t = realign(&g, tail).unwrap();
                            (reclaimed, head, tail) = (t, t, t);
                        }
                        let mut p = place(&g, tail, reclaimed, flen);
                        if p.is_none() && reclaimed == tail && flen <= cap {
                            if let Some(t) = realign(&g, tail) {
                                (reclaimed, head, tail) = (t, t, t);
                            }
                            p = place(&g, tail, reclaimed, flen);
                            prop_assert!(p.is_some(), "an empty ring refused {flen} bytes");
                        }
                        let Some(p) = p else {
                            prop_assert!(tail + flen > reclaimed + cap || g.phys(tail) != 0);
                            // A put waits only when the queue is full ("When a put waits").
                            let in_use = tail - reclaimed - lost_to_skips(&mem, head, tail);
                            prop_assert!(
                                in_use + 2 * flen + largest - 32 >= cap,
                                "a frame of {flen} bytes found no room with {in_use} of {cap} \
                                 bytes in use (tail {tail}, head {head}, reclaimed {reclaimed})"
                            );
                            continue;
                        };
                        if let Some(s) = p.skip {
                            prop_assert_eq!(s, tail);
                            let ph = g.phys(s);
                            claim(&mut owner, s, 8, u64::MAX);
                            mem[ph as usize..ph as usize + 8].copy_from_slice(&SKIP.to_ne_bytes());
                            // The padding after the skip header is reserved too.
                            for i in s + 8..p.at {
                                prop_assert!(owner[(i % cap) as usize].is_none());
                            }
                        }
                        prop_assert!(g.phys(p.at) + flen <= cap);
                        claim(&mut owner, p.at, flen, next_id);
                        let ph = g.phys(p.at) as usize;
                        mem[ph..ph + 8].copy_from_slice(&encode_header(len as u32, len % 2 == 0).to_ne_bytes());
                        for i in 0..len as usize {
                            mem[ph + 8 + i] = (next_id as u8) ^ (i as u8);
                        }
                        model.push_back((next_id, len));
                        next_id += 1;
                        tail = p.tail;
                    }
                    Op::Get(max) => {
                        let mut n = 0;
                        while n < max && head < tail {
                            let ph = g.phys(head) as usize;
                            let word = u64::from_ne_bytes(mem[ph..ph + 8].try_into().unwrap());
                            match front(&g, head, tail, word).unwrap() {
                                Front::Skip { next } => {
                                    prop_assert_eq!(owner[ph], Some(u64::MAX));
                                    owner[ph..ph + 8].fill(None);
                                    head = next;
                                }
                                Front::Frame { payload, len, next, typed } => {
                                    prop_assert_eq!(typed, len % 2 == 0);
                                    let (id, want) = model.pop_front().unwrap();
                                    prop_assert_eq!(len, want);
                                    for i in 0..len {
                                        prop_assert_eq!(mem[(payload + i) as usize], (id as u8) ^ (i as u8));
                                    }
                                    for i in head..next {
                                        prop_assert_eq!(owner[(i % cap) as usize], Some(id));
                                        owner[(i % cap) as usize] = None;
                                    }
                                    head = next;
                                    n += 1;
                                }
                            }
                        }
                        let (r, discards) = reclaim(&g, reclaimed, head, head == tail);
                        prop_assert!(reclaimed <= r && r <= head);
                        for d in discards.into_iter().flatten() {
                            prop_assert!(d.start >= g.warm && d.end <= cap && d.start < d.end);
                            for i in d.start..d.end {
                                prop_assert!(owner[i as usize].is_none(), "discarded live data");
                                // Not writable now: inside [reclaimed, r) of this lap or a
                                // later one, i.e. not in the free space [tail, reclaimed + cap).
                                let free = (tail..reclaimed + cap).any(|v| v % cap == i);
                                prop_assert!(!free, "discarded writable bytes");
                            }
                        }
                        reclaimed = r;
                    }
                }
                prop_assert!(g.validate(reclaimed, head, tail).is_ok());
                prop_assert_eq!(model.is_empty(), {
                    // Empty of frames: only skips may remain between head and tail.
                    let mut h = head;
                    let mut only_skips = true;
                    while h < tail {
                        let ph = g.phys(h) as usize;
                        let word = u64::from_ne_bytes(mem[ph..ph + 8].try_into().unwrap());
                        match front(&g, h, tail, word).unwrap() {
                            Front::Skip { next } => h = next,
                            Front::Frame { .. } => { only_skips = false; break; }
                        }
                    }
                    only_skips
                });
            }
        }
    }
}
