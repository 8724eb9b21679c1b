//! Every code that tells one kind of shared object, segment or message from another, in one
//! place, so that no two collide (the tests below check it).
//!
//! A handle that arrives from another process names a segment and a kind; opening it checks
//! the segment's magic, layout version and kind code before anything inside is read (see
//! `shm/segment.rs`), so a handle of the wrong kind is an error and never a reinterpretation.
//! The codes live in three spaces:
//!
//! - **object kinds** (`u8`): the kind of one object in an arena slot
//!   (`ShmObject::KIND`), also the code of a segment that holds one large object
//!   (`SegmentKind::Object`);
//! - **other segment kinds** (`u8`, `SegmentKind::Other`): segments with their own layout
//!   (a connection's directory, a pool worker's mailbox);
//! - **magics**: the first bytes of a segment's header or of a frame, different from every
//!   other magic so that a buffer of one kind is never read as another.
//!
//! Changing a layout means a new magic (or a new `LAYOUT_VERSION` in `shm/segment.rs`), never
//! reusing an old one: processes built from different versions then refuse each other's
//! objects instead of misreading them.

/// Object kinds: one per type that lives in an arena slot or in an object segment.
pub(crate) mod object {
    /// `sync::Lock`.
    pub(crate) const LOCK: u8 = 1;
    /// `sync::RLock`.
    pub(crate) const RLOCK: u8 = 2;
    /// `sync::Semaphore`.
    pub(crate) const SEMAPHORE: u8 = 3;
    /// `sync::BoundedSemaphore`.
    pub(crate) const BOUNDED_SEMAPHORE: u8 = 4;
    /// `sync::Event`.
    pub(crate) const EVENT: u8 = 5;
    /// `sync::Condition`.
    pub(crate) const CONDITION: u8 = 6;
    /// `sync::Barrier`.
    pub(crate) const BARRIER: u8 = 7;
    /// `sync::Value` (small ones in the arena, large ones in their own segment).
    pub(crate) const VALUE: u8 = 8;
    /// `sync::Array` (always its own segment).
    pub(crate) const ARRAY: u8 = 9;
    /// `sync::Dict` (always its own segment).
    pub(crate) const DICT: u8 = 10;
    /// `sync::List` (always its own segment).
    pub(crate) const LIST: u8 = 11;
    /// The fuzz targets' probe object (`fuzz.rs`, feature `fuzzing`).
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
    pub(crate) const FUZZ_PROBE: u8 = 14;
    /// The raw mutex's own unit tests.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) const TEST_RAW_MUTEX: u8 = 15;

    /// Every code above, for the uniqueness test.
    #[cfg(test)]
    pub(crate) const ALL: &[u8] = &[
        LOCK,
        RLOCK,
        SEMAPHORE,
        BOUNDED_SEMAPHORE,
        EVENT,
        CONDITION,
        BARRIER,
        VALUE,
        ARRAY,
        DICT,
        LIST,
        FUZZ_PROBE,
        TEST_RAW_MUTEX,
    ];
}

/// Codes of `SegmentKind::Other`: segments with a layout of their own.
pub(crate) mod segment {
    /// A connection's directory and rings (`pipe/dir.rs`).
    pub(crate) const CONNECTION: u8 = 24;
    /// A pool worker's mailbox (`pool/worker.rs`).
    pub(crate) const POOL_MAILBOX: u8 = 32;

    /// Every code above, for the uniqueness test.
    #[cfg(test)]
    pub(crate) const ALL: &[u8] = &[CONNECTION, POOL_MAILBOX];
}

/// What a *named* segment holds (its header's `what`, `shm/named.rs`): the facade type, so
/// that opening a name as the wrong type says which type it is. Sync objects use their
/// object kind; queues, whose segments all have kind `Queue`, codes of their own.
pub(crate) mod named {
    use super::object;

    /// `queue::Queue`.
    pub(crate) const QUEUE: u32 = 0x100;
    /// `queue::JoinableQueue` (the same segment as a `Queue`, but `task_done` counts).
    pub(crate) const JOINABLE_QUEUE: u32 = 0x101;
    /// `queue::SimpleQueue` (the same segment as a `Queue`, but Python's other type).
    pub(crate) const SIMPLE_QUEUE: u32 = 0x102;

    /// The type's name, for messages.
    pub(crate) fn describe(what: u32) -> String {
        let name = match what {
            QUEUE => "Queue",
            JOINABLE_QUEUE => "JoinableQueue",
            SIMPLE_QUEUE => "SimpleQueue",
            w if w == object::LOCK as u32 => "Lock",
            w if w == object::RLOCK as u32 => "RLock",
            w if w == object::SEMAPHORE as u32 => "Semaphore",
            w if w == object::BOUNDED_SEMAPHORE as u32 => "BoundedSemaphore",
            w if w == object::EVENT as u32 => "Event",
            w if w == object::CONDITION as u32 => "Condition",
            w if w == object::BARRIER as u32 => "Barrier",
            w if w == object::VALUE as u32 => "Value",
            w if w == object::ARRAY as u32 => "Array",
            w if w == object::DICT as u32 => "Dict",
            w if w == object::LIST as u32 => "List",
            w => return format!("an unknown kind of object (code {w})"),
        };
        format!("a {name}")
    }
}

/// Magics at the start of headers and frames.
pub(crate) mod magic {
    /// Every shared segment's header (`shm/segment.rs`).
    pub(crate) const SEGMENT: [u8; 8] = *b"MPROCSEG";
    /// A queue's configuration block (`ring/mod.rs`).
    pub(crate) const QUEUE: [u8; 8] = *b"MPQUEUE3";
    /// A shared dictionary's header (`sync/dict.rs`).
    pub(crate) const DICT: [u8; 8] = *b"MPDICT01";
    /// A shared list's header (`sync/list.rs`).
    pub(crate) const LIST: [u8; 8] = *b"MPLIST02";
    /// A connection's directory header (`pipe/dir.rs`).
    pub(crate) const CONNECTION: [u8; 8] = *b"MPCONN01";
    /// A skip frame in a queue's ring: the rest of the lap is padding (`ring/geometry.rs`).
    pub(crate) const RING_SKIP: [u8; 8] = *b"MPQskip!";
    /// A result frame between a child and its parent (`process/channel.rs`).
    pub(crate) const RESULT_FRAME: [u8; 4] = *b"MPRF";
    /// Byte 1 of a pipe frame header on the socket (`pipe/frame.rs`, which writes it out
    /// because the fuzz target compiles that file alone; its tests check the two agree).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) const PIPE_FRAME: u8 = 0x4D;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_distinct(codes: &[u8]) -> bool {
        let mut seen = [false; 256];
        codes
            .iter()
            .all(|&c| !std::mem::replace(&mut seen[c as usize], true))
    }

    #[test]
    fn object_kinds_are_distinct_and_not_zero() {
        assert!(all_distinct(object::ALL), "{:?}", object::ALL);
        assert!(!object::ALL.contains(&0), "0 is what a fresh slot holds");
    }

    #[test]
    fn other_segment_kinds_are_distinct() {
        assert!(all_distinct(segment::ALL), "{:?}", segment::ALL);
    }

    #[test]
    fn magics_are_distinct_even_by_their_first_bytes() {
        let eight = [
            magic::SEGMENT,
            magic::QUEUE,
            magic::CONNECTION,
            magic::RING_SKIP,
            magic::DICT,
            magic::LIST,
        ];
        for (i, a) in eight.iter().enumerate() {
            for b in &eight[i + 1..] {
                assert_ne!(a, b);
            }
            // The four-byte result magic is not the start of any eight-byte one.
            assert_ne!(a[..4], magic::RESULT_FRAME);
        }
        // A pipe frame's magic byte is not the second byte of a result frame (both travel
        // on sockets), nor printable text a stray writer would likely produce at byte 1
        // together with the header's zero bytes 2 and 3.
        assert_ne!(magic::RESULT_FRAME[1], magic::PIPE_FRAME);
    }
}
