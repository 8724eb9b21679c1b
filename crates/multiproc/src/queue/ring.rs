//! Ring arithmetic: where the next frame goes and where the oldest one is, as pure functions
//! over a small state value. No memory is touched here; `shared.rs` applies the results to the
//! shared segment. Everything is unit- and property-tested below.
//!
//! # The ring
//!
//! A byte area of `cap` bytes holds *frames*, each `FRAME_HEADER` bytes (the payload length
//! and a check word) followed by the payload, padded to 8 bytes. Frames never wrap: the ring
//! is a bip-buffer. Its state is either
//!
//! ```text
//! linear (end == 0):  [ free | head ..data.. tail | free ]         0 <= head <= tail <= cap
//! split  (end != 0):  [ ..data.. tail | free | head ..data.. end | unused ]
//!                                                                  tail <= head < end <= cap
//! ```
//!
//! In the split state the older frames are in `[head, end)` and the newer in `[0, tail)`.
//! An empty ring is always `head == tail == 0` (reset on the get that empties it), so a
//! consumer that keeps up keeps the producer writing into the same warm first pages.
//!
//! A put in the linear state appends at `tail` when the frame fits before `cap`, and otherwise
//! starts the split at offset 0 when it fits before `head`. Once `tail` has passed `warm` it
//! prefers the wrap (when the frame fits before `head`), so a backlog that stays small keeps
//! the ring inside its first `warm` bytes; pages past `warm` are touched only by a real
//! backlog, and given back to the kernel as the consumer passes them (see [`Discard`]).
//!
//! All offsets are multiples of 8, so a frame header (8 bytes, read as one `AtomicU64`) is
//! always aligned and never wraps.

/// Bytes of a frame header: `u32` payload length, `u32` check word.
pub(crate) const FRAME_HEADER: u64 = 8;

/// The warm area's size for large rings: pages below it stay mapped once touched (so large
/// messages with a small backlog don't fault in fresh pages every time); pages past it are
/// given back as soon as a backlog drains past them.
pub(crate) const WARM_MAX: u64 = 16 << 20;

/// Pages past `warm` are given back in chunks of this many bytes.
pub(crate) const DISCARD_CHUNK: u64 = 256 * 1024;

/// The largest payload one frame can carry (its length is a `u32`).
pub(crate) const MAX_PAYLOAD: u64 = u32::MAX as u64 - 7;

/// Frame bytes for a payload of `len` bytes: header plus payload rounded up to 8.
pub(crate) const fn frame_len(len: u64) -> u64 {
    FRAME_HEADER + len.div_ceil(8) * 8
}

/// The frame header word for a payload of `len` bytes: length in the low half, and in the
/// high half a check derived from it, so that garbage is very unlikely to pass as a header.
pub(crate) const fn encode_header(len: u32) -> u64 {
    (len as u64) | ((check_word(len) as u64) << 32)
}

const fn check_word(len: u32) -> u32 {
    !len ^ 0x5a17_c3e9
}

/// The payload length in a frame header word, if its check word matches.
pub(crate) const fn decode_header(word: u64) -> Option<u32> {
    let len = word as u32;
    if (word >> 32) as u32 == check_word(len) {
        Some(len)
    } else {
        None
    }
}

/// The fixed shape of a ring, from its creator; validated locally on open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Byte size of the ring, a multiple of 8.
    pub(crate) cap: u64,
    /// Past this offset a put prefers wrapping to offset 0; pages past it are discarded
    /// once consumed.
    pub(crate) warm: u64,
    /// Discard granularity (a local constant, [`DISCARD_CHUNK`]; smaller in tests).
    pub(crate) chunk: u64,
}

impl Geometry {
    /// A geometry for `cap` bytes (rounded down to 8), with the warm area the smaller of
    /// [`WARM_MAX`] and half the ring.
    pub(crate) fn new(cap: u64) -> Geometry {
        let cap = cap / 8 * 8;
        Geometry {
            cap,
            warm: (cap / 2).min(WARM_MAX) / 8 * 8,
            chunk: DISCARD_CHUNK,
        }
    }

    /// True when the values make sense (they come from shared memory).
    pub(crate) fn is_valid(&self) -> bool {
        self.cap >= 16
            && self.cap % 8 == 0
            && self.warm % 8 == 0
            && self.warm <= self.cap
            && self.chunk > 0
    }

    /// The largest payload a single message may have in this ring.
    pub(crate) fn max_payload(&self) -> u64 {
        (self.cap - FRAME_HEADER).min(MAX_PAYLOAD)
    }
}

/// The positions that define what the ring holds. Only a committed copy counts (see
/// `shared.rs`); a writer works on a local copy and commits it whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ring {
    pub(crate) head: u64,
    pub(crate) tail: u64,
    /// 0 in the linear state; the end of the older part in the split state.
    pub(crate) end: u64,
    /// Number of frames held.
    pub(crate) count: u64,
}

/// A range of the ring whose pages may be given back to the kernel (nothing lives there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Discard {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// The ring's positions are impossible: shared memory was corrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) &'static str);

impl Ring {
    /// An empty ring.
    pub(crate) const EMPTY: Ring = Ring {
        head: 0,
        tail: 0,
        end: 0,
        count: 0,
    };

    /// Checks the invariants (the state came from shared memory).
    pub(crate) fn validate(&self, g: &Geometry) -> Result<(), Corrupt> {
        let aligned = self.head % 8 == 0 && self.tail % 8 == 0 && self.end % 8 == 0;
        if !aligned {
            return Err(Corrupt("ring offsets not aligned"));
        }
        if self.end == 0 {
            if !(self.head <= self.tail && self.tail <= g.cap) {
                return Err(Corrupt("ring offsets out of order"));
            }
            let empty = self.head == self.tail;
            if empty != (self.count == 0) || (empty && self.head != 0) {
                return Err(Corrupt("ring count does not match its offsets"));
            }
            if self.count > (self.tail - self.head) / FRAME_HEADER {
                return Err(Corrupt("ring count too large"));
            }
        } else {
            if !(self.tail <= self.head && self.head < self.end && self.end <= g.cap) {
                return Err(Corrupt("split ring offsets out of order"));
            }
            if self.tail == 0 || self.count < 2 || self.count > self.used() / FRAME_HEADER {
                return Err(Corrupt("split ring count does not match its offsets"));
            }
        }
        Ok(())
    }

    /// True when no frame is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes occupied by frames.
    pub(crate) fn used(&self) -> u64 {
        if self.end == 0 {
            self.tail - self.head
        } else {
            (self.end - self.head) + self.tail
        }
    }

    /// Where a frame of `flen` bytes (from [`frame_len`]) goes, and the state once it is
    /// written; `None` when it does not fit now. Assumes a valid state.
    pub(crate) fn place(&self, g: &Geometry, flen: u64) -> Option<(u64, Ring)> {
        debug_assert!(flen % 8 == 0 && flen >= FRAME_HEADER);
        let mut next = *self;
        next.count += 1;
        if self.end == 0 {
            let fits_after = self.tail.checked_add(flen).is_some_and(|e| e <= g.cap);
            let fits_before = flen <= self.head;
            let prefer_wrap = self.tail >= g.warm && fits_before;
            if fits_after && !prefer_wrap {
                next.tail = self.tail + flen;
                Some((self.tail, next))
            } else if fits_before {
                next.end = self.tail;
                next.tail = flen;
                Some((0, next))
            } else {
                None
            }
        } else if self.tail.checked_add(flen).is_some_and(|e| e <= self.head) {
            next.tail = self.tail + flen;
            Some((self.tail, next))
        } else {
            None
        }
    }

    /// Where the oldest frame starts and the end of the contiguous data it lies in (its
    /// frame must end at or before that); `None` when empty.
    pub(crate) fn front(&self) -> Option<(u64, u64)> {
        if self.count == 0 {
            None
        } else if self.end == 0 {
            Some((self.head, self.tail))
        } else {
            Some((self.head, self.end))
        }
    }

    /// The state once the oldest frame, `flen` bytes long, is removed, and pages that may be
    /// given back. Fails when the frame overruns the data it lies in.
    pub(crate) fn pop(&self, g: &Geometry, flen: u64) -> Result<(Ring, Option<Discard>), Corrupt> {
        let (at, limit) = self.front().ok_or(Corrupt("pop from an empty ring"))?;
        let new_head = at
            .checked_add(flen)
            .filter(|&e| e <= limit && flen >= FRAME_HEADER && flen % 8 == 0)
            .ok_or(Corrupt("frame length runs past the data"))?;
        let mut next = *self;
        next.count -= 1;
        // The range consumed by this pop, in which no data lives any more.
        let consumed_end;
        let live_below = if self.end == 0 { 0 } else { self.tail };
        if self.end == 0 {
            if new_head == self.tail {
                if next.count != 0 {
                    return Err(Corrupt("ring count does not match its frames"));
                }
                next = Ring::EMPTY;
            } else {
                next.head = new_head;
            }
            consumed_end = new_head;
        } else if new_head == self.end {
            // The older part is used up: back to linear over [0, tail).
            next.head = 0;
            next.end = 0;
            // Everything up to the old end is free, including padding past the last frame.
            consumed_end = self.end;
        } else {
            next.head = new_head;
            consumed_end = new_head;
        }
        if next.count == 0 && next != Ring::EMPTY {
            return Err(Corrupt("ring count does not match its frames"));
        }
        let open_end = next.end == 0 && (next.count == 0 || self.end != 0);
        Ok((
            next,
            discard_range(g, at, consumed_end, live_below, open_end),
        ))
    }
}

/// Whole discard chunks past `warm` that hold no data once a pop consumed `[at, end)`.
///
/// Bytes below `at` in its chunk are free when no data lies below `at` from `live_below` on
/// (split state: `[0, tail)` is live, so `live_below = tail`; linear: 0). When `open_end`,
/// nothing lives past `end` either (the ring emptied, or the older part of a split ended
/// there), so its partial chunk goes too.
fn discard_range(
    g: &Geometry,
    at: u64,
    end: u64,
    live_below: u64,
    open_end: bool,
) -> Option<Discard> {
    let c = g.chunk;
    let lo = (at / c * c).max(g.warm).max(live_below).next_multiple_of(c);
    let hi = if open_end {
        end.next_multiple_of(c).min(g.cap / c * c)
    } else {
        end / c * c
    };
    // Only when the pop reached a chunk boundary, so small pops make no system call.
    let crossed = at / c != end / c || open_end || end % c == 0;
    (crossed && hi > lo).then_some(Discard { start: lo, end: hi })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[test]
    fn header_round_trip_and_garbage() {
        for len in [0u32, 1, 7, 8, 1 << 20, u32::MAX] {
            assert_eq!(decode_header(encode_header(len)), Some(len));
        }
        assert_eq!(decode_header(0), None);
        assert_eq!(decode_header(u64::MAX), None);
        assert_eq!(frame_len(0), 8);
        assert_eq!(frame_len(1), 16);
        assert_eq!(frame_len(8), 16);
        assert_eq!(frame_len(9), 24);
    }

    #[test]
    fn wraps_and_returns_to_linear() {
        let g = Geometry {
            cap: 64,
            warm: 64,
            chunk: 16,
        };
        let r = Ring::EMPTY;
        let (a, r) = r.place(&g, 24).unwrap();
        let (b, r) = r.place(&g, 24).unwrap();
        assert_eq!((a, b), (0, 24));
        assert!(
            r.place(&g, 24).is_none(),
            "16 bytes left at the end, 0 at the front"
        );
        let (r, _) = r.pop(&g, 24).unwrap();
        let (c, r) = r.place(&g, 24).unwrap();
        assert_eq!(c, 0, "wrapped to the front");
        assert_eq!(r.end, 48);
        r.validate(&g).unwrap();
        let (r, _) = r.pop(&g, 24).unwrap();
        assert_eq!(
            r,
            Ring {
                head: 0,
                tail: 24,
                end: 0,
                count: 1
            }
        );
        let (r, _) = r.pop(&g, 24).unwrap();
        assert_eq!(r, Ring::EMPTY);
    }

    #[test]
    fn prefers_wrap_past_warm() {
        let g = Geometry {
            cap: 1024,
            warm: 64,
            chunk: 16,
        };
        let mut r = Ring::EMPTY;
        for _ in 0..3 {
            r = r.place(&g, 32).unwrap().1;
        }
        r = r.pop(&g, 32).unwrap().0;
        r = r.pop(&g, 32).unwrap().0;
        // tail 96 >= warm 64 and 32 fits before head 64: wrap.
        let (at, r) = r.place(&g, 32).unwrap();
        assert_eq!(at, 0);
        assert_eq!(r.end, 96);
    }

    #[test]
    fn corrupt_states_are_rejected() {
        let g = Geometry {
            cap: 64,
            warm: 64,
            chunk: 16,
        };
        let bad = [
            Ring {
                head: 8,
                tail: 0,
                end: 0,
                count: 1,
            },
            Ring {
                head: 0,
                tail: 72,
                end: 0,
                count: 1,
            },
            Ring {
                head: 3,
                tail: 16,
                end: 0,
                count: 1,
            },
            Ring {
                head: 0,
                tail: 16,
                end: 0,
                count: 0,
            },
            Ring {
                head: 0,
                tail: 16,
                end: 0,
                count: 5,
            },
            Ring {
                head: 8,
                tail: 8,
                end: 0,
                count: 0,
            },
            Ring {
                head: 32,
                tail: 40,
                end: 48,
                count: 2,
            },
            Ring {
                head: 32,
                tail: 16,
                end: 80,
                count: 2,
            },
        ];
        for b in bad {
            assert!(b.validate(&g).is_err(), "{b:?}");
        }
        let r = Ring {
            head: 0,
            tail: 16,
            end: 0,
            count: 1,
        };
        assert!(r.pop(&g, 24).is_err(), "frame runs past tail");
        assert!(r.pop(&g, u64::MAX - 7).is_err());
        assert!(Ring::EMPTY.pop(&g, 8).is_err());
    }

    #[test]
    fn discards_only_whole_chunks_past_warm() {
        let g = Geometry::new(8 * DISCARD_CHUNK);
        assert_eq!(g.warm, 4 * DISCARD_CHUNK);
        let g = Geometry {
            warm: DISCARD_CHUNK,
            ..g
        };
        let c = DISCARD_CHUNK;
        assert_eq!(discard_range(&g, 0, c, 0, false), None, "inside warm");
        assert_eq!(
            discard_range(&g, c + 8, 3 * c + 8, 0, false),
            Some(Discard {
                start: c,
                end: 3 * c
            })
        );
        assert_eq!(
            discard_range(&g, c + 8, 3 * c + 8, c + 8, false),
            Some(Discard {
                start: 2 * c,
                end: 3 * c
            }),
            "live data below in the first chunk"
        );
        assert_eq!(discard_range(&g, 2 * c + 8, 2 * c + 64, 0, false), None);
        assert_eq!(
            discard_range(&g, 2 * c + 8, 2 * c + 64, 0, true),
            Some(Discard {
                start: 2 * c,
                end: 3 * c
            }),
            "emptied: the partial chunk goes too"
        );
    }

    #[derive(Clone, Debug)]
    enum Op {
        Put(u64),
        Get,
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![(0u64..200).prop_map(Op::Put), Just(Op::Get), Just(Op::Get)],
            1..400,
        )
    }

    proptest! {
        // A simulated byte area, a model FIFO, and the ring: every frame read back is the one
        // written, live frames never overlap, and the state stays valid across many wraps.
        #[test]
        fn ring_matches_a_fifo_across_wraps(
            cap8 in 4u64..80, warm8 in 0u64..80, chunk8 in 1u64..8, ops in ops()
        ) {
            let cap = cap8 * 8;
            let g = Geometry { cap, warm: (warm8 * 8).min(cap), chunk: chunk8 * 8 };
            prop_assert!(g.is_valid());
            let mut mem = vec![0u8; cap as usize];
            let mut owner: Vec<Option<u64>> = vec![None; cap as usize];
            let mut r = Ring::EMPTY;
            let mut model: VecDeque<(u64, u64)> = VecDeque::new(); // (id, payload len)
            let mut next_id = 0u64;
            for op in ops {
                match op {
                    Op::Put(len) => {
                        let flen = frame_len(len);
                        match r.place(&g, flen) {
                            Some((at, nr)) => {
                                prop_assert!(at + flen <= cap);
                                for i in at..at + flen {
                                    prop_assert!(owner[i as usize].is_none(), "overwrote live data");
                                    owner[i as usize] = Some(next_id);
                                }
                                mem[at as usize..at as usize + 8]
                                    .copy_from_slice(&encode_header(len as u32).to_ne_bytes());
                                for i in 0..len {
                                    mem[(at + 8 + i) as usize] = (next_id as u8) ^ (i as u8);
                                }
                                model.push_back((next_id, len));
                                next_id += 1;
                                r = nr;
                            }
                            None => {
                                // Refusal is only allowed when the frame can't fit now; an
                                // empty ring takes anything up to its capacity.
                                prop_assert!(!(r.is_empty() && flen <= cap));
                                prop_assert!(r.used() + flen > cap || r.end != 0 || r.tail + flen > cap);
                            }
                        }
                    }
                    Op::Get => {
                        match r.front() {
                            None => prop_assert!(model.is_empty()),
                            Some((at, limit)) => {
                                let (id, len) = model.pop_front().unwrap();
                                prop_assert!(at + 8 <= limit);
                                let word = u64::from_ne_bytes(mem[at as usize..at as usize + 8].try_into().unwrap());
                                prop_assert_eq!(decode_header(word), Some(len as u32));
                                for i in 0..len {
                                    prop_assert_eq!(mem[(at + 8 + i) as usize], (id as u8) ^ (i as u8));
                                }
                                let flen = frame_len(len);
                                let (nr, discard) = r.pop(&g, flen).unwrap();
                                for i in at..at + flen {
                                    prop_assert_eq!(owner[i as usize], Some(id));
                                    owner[i as usize] = None;
                                }
                                if let Some(d) = discard {
                                    prop_assert!(d.start >= g.warm && d.end <= cap);
                                    for i in d.start..d.end {
                                        prop_assert!(owner[i as usize].is_none(), "discarded live data");
                                    }
                                }
                                r = nr;
                            }
                        }
                    }
                }
                prop_assert!(r.validate(&g).is_ok(), "{:?}", r);
                prop_assert_eq!(r.count as usize, model.len());
                let live = owner.iter().filter(|o| o.is_some()).count() as u64;
                prop_assert_eq!(live, r.used() - padding_gap(&r));
            }
        }
    }

    /// Bytes counted by `used()` that hold no frame: none, since frames are contiguous and
    /// `end` is exactly where the last older frame ended.
    fn padding_gap(_r: &Ring) -> u64 {
        0
    }
}
