//! Decoding handle descriptions a peer controls: the body of the `handles` fuzz target
//! (`fuzz/fuzz_targets/handles.rs`, through the `fuzzing` feature) and of the property test
//! below, which replays the committed corpus (`fuzz/corpus/handles/`) too.
//!
//! A handle (a `Lock`, a `Queue`, a `Connection`...) travels as a few numbers (an index into
//! the message's fd table, a segment id, kinds, offsets) plus the fds themselves. Whatever a
//! peer puts in either — forged segments, sockets where memfds belong, offsets outside the
//! segment, the wrong kinds — decoding must give an error, never a panic (issue 17.6).
//!
//! # Safety
//!
//! `Probe` is declared [`ShmSafe`]: plain atomics, every bit pattern valid.

#![allow(unsafe_code)]

use std::os::fd::OwnedFd;

use crate::codec::{Codec, Postcard};
use crate::shm::{Segment, SegmentKind, Shared, ShmObject, ShmSafe};
use crate::sys::mem;

/// A stand-in object of the `Lock`'s kind, to have a live arena slot to name.
#[repr(C)]
struct Probe(std::sync::atomic::AtomicU32);

// SAFETY: one atomic word: valid for every bit pattern, no pointers.
unsafe impl ShmSafe for Probe {}

impl ShmObject for Probe {
    const KIND: u8 = crate::kinds::object::FUZZ_PROBE;
}

/// An fd a fuzz input can put into a message's fd table (by its number in this list).
fn candidate_fd(which: u8, real: &[Segment]) -> Option<OwnedFd> {
    let forged = |len: u64, kind: u32, id: u64| -> Option<OwnedFd> {
        let mut h = Vec::with_capacity(len as usize);
        h.extend_from_slice(&crate::kinds::magic::SEGMENT);
        h.extend_from_slice(&1u32.to_ne_bytes());
        h.extend_from_slice(&kind.to_ne_bytes());
        h.extend_from_slice(&len.to_ne_bytes());
        h.extend_from_slice(&id.to_ne_bytes());
        h.resize(len as usize, 0);
        mem::memfd_with(c"forged", &h).ok()
    };
    match which % 10 {
        // The real segments of this process: an arena, a queue, a big object.
        n @ 0..=2 => real
            .get(n as usize)
            .and_then(|s| s.fd().try_clone_to_owned().ok()),
        // Forged segments with a valid header: too small an arena, a one-page queue, an
        // object segment, a kind nobody uses.
        3 => forged(4096, 1, 0x1111),
        4 => forged(64 * 1024, 1, 0x2222),
        5 => forged(4096, 2, 0x3333),
        6 => forged(4096, 0x100 | 4, 0x4444),
        7 => forged(8192, 0x2ff, 0x5555),
        // Not a segment: a socket, an unsealed memfd.
        8 => crate::sys::socket::stream_pair().ok().map(|(a, _b)| a),
        _ => rustix::fs::memfd_create(c"unsealed", rustix::fs::MemfdFlags::CLOEXEC).ok(),
    }
}

/// Decodes `bytes` (with the fd table `fds`) as handle type number `which`; the result is
/// dropped. Only a panic is a failure.
fn decode_as(which: u8, bytes: &[u8], fds: Vec<OwnedFd>) {
    use crate::{
        Array, Barrier, BoundedSemaphore, Condition, Connection, Event, JoinableQueue, Lock, Queue,
        RLock, Semaphore, SimpleQueue, Value,
    };
    fn go<T: serde::de::DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) {
        let _ = crate::handle::with_imported_fds(fds, || Postcard::decode::<T>(bytes));
    }
    match which % 16 {
        0 => go::<Lock>(bytes, fds),
        1 => go::<RLock>(bytes, fds),
        2 => go::<Semaphore>(bytes, fds),
        3 => go::<BoundedSemaphore>(bytes, fds),
        4 => go::<Event>(bytes, fds),
        5 => go::<Condition>(bytes, fds),
        6 => go::<Barrier>(bytes, fds),
        7 => go::<Value<u64>>(bytes, fds),
        8 => go::<Value<[u64; 16]>>(bytes, fds),
        9 => go::<Array<u32>>(bytes, fds),
        10 => go::<Queue<u32>>(bytes, fds),
        11 => go::<JoinableQueue<u32>>(bytes, fds),
        12 => go::<SimpleQueue<u32>>(bytes, fds),
        13 => go::<Connection>(bytes, fds),
        14 => go::<Segment>(bytes, fds),
        _ => go::<(Lock, Queue<u8>, Value<u8>)>(bytes, fds),
    }
}

thread_local! {
    /// Real segments to name: an arena (a live `Lock`'s), a queue, a big `Value`'s.
    static REAL: (Vec<Segment>, Vec<u64>) = {
        // A live object of the Lock's kind in an arena slot, kept for the thread's life.
        let live = Shared::<Probe>::new(|_| ()).expect("an arena object");
        let arena = live.segment().clone();
        std::mem::forget(live);
        let queue = Segment::create(SegmentKind::Queue, 4096).expect("a queue segment");
        let object = Segment::create(SegmentKind::Object(crate::kinds::object::BARRIER), 128).expect("an object segment");
        let segs = vec![arena, queue, object];
        let ids = segs.iter().map(Segment::id).collect();
        (segs, ids)
    };
}

/// The fuzz target's body. Input layout: byte 0 picks the handle type, byte 1 the number of
/// fds (0..=4), the next that many bytes pick each fd (see `candidate_fd`); byte 2 + n
/// chooses between the rest as raw message bytes and, when odd, a *structured* description
/// built from the following bytes (so that the fuzzer reaches past postcard's framing into
/// the handle checks: real segment ids, near-valid offsets and kinds).
pub fn check_handle_input(data: &[u8]) {
    let (Some(&which), Some(&nfds)) = (data.first(), data.get(1)) else {
        return;
    };
    let nfds = (nfds % 5) as usize;
    let Some(picks) = data.get(2..2 + nfds) else {
        return;
    };
    let rest = &data[2 + nfds..];
    REAL.with(|(segs, ids)| {
        let fds: Vec<OwnedFd> = picks
            .iter()
            .filter_map(|&p| candidate_fd(p, segs))
            .collect();
        match rest.split_first() {
            Some((&mode, tail)) if mode & 1 == 1 => {
                let bytes = structured(tail, which, picks, ids);
                decode_as(which, &bytes, fds);
            }
            Some((_, tail)) => decode_as(which, tail, fds),
            None => decode_as(which, &[], fds),
        }
    });
}

/// What a candidate fd's own description says: its segment id and kind code.
fn candidate_identity(which: u8, real_ids: &[u64]) -> (u64, u32) {
    match which % 10 {
        n @ 0..=2 => (
            real_ids.get(n as usize).copied().unwrap_or(0),
            [1, 2, 0x107][n as usize],
        ),
        3 => (0x1111, 1),
        4 => (0x2222, 1),
        5 => (0x3333, 2),
        6 => (0x4444, 0x104),
        7 => (0x5555, 0x2ff),
        n => (0x6666 + n as u64, 1),
    }
}

/// The object kind a handle type of [`decode_as`] expects (`sync/mod.rs` lists them).
fn expected_kind(which: u8) -> u8 {
    [1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 0, 0, 0, 0, 0, 1][which as usize % 16]
}

/// A handle description shaped like the real ones — `((fd index, id, segment kind), offset,
/// object kind)` followed by free bytes — from fuzzer bytes. Mostly self-consistent (the id
/// and kind of the fd it names, the kind the decoded type expects), so that the checks past
/// the first ones are reached; each field is sometimes replaced by a wrong one.
fn structured(b: &[u8], which: u8, picks: &[u8], real_ids: &[u64]) -> Vec<u8> {
    let byte = |i: usize| b.get(i).copied().unwrap_or(0);
    let word = |i: usize| {
        let mut w = [0u8; 8];
        for (k, x) in w.iter_mut().enumerate() {
            *x = byte(i + k);
        }
        u64::from_le_bytes(w)
    };
    let fd_index = if byte(0) & 0x80 == 0 && !picks.is_empty() {
        byte(0) as usize % picks.len()
    } else {
        byte(0) as usize % 6
    };
    let (own_id, own_kind) = picks
        .get(fd_index)
        .map_or((0, 1), |&p| candidate_identity(p, real_ids));
    let id = if byte(1) & 3 != 3 {
        own_id
    } else {
        [0x1111, 0x2222, 0x3333, 0x4444, 0x5555, word(5)][byte(2) as usize % 6]
    };
    let seg_kind: u32 = if byte(3) & 1 == 0 {
        own_kind
    } else {
        [1, 2, 0x104, 0x107, 0x2ff, 0x118, 0x120, 3][(byte(3) >> 1) as usize % 8]
    };
    // Offsets near the interesting ones: any arena slot, unaligned, 0, anything, the end.
    let offset: u64 = match byte(4) % 5 {
        0 => 65600 + 64 * (word(5) % 16384),
        1 => 65600 + (word(5) % 4096),
        2 => 0,
        3 => word(5),
        _ => 65600 + 64 * 16383 + (word(5) % 128),
    };
    let obj_kind = if byte(13) & 1 == 0 {
        expected_kind(which)
    } else {
        byte(13) >> 1
    };
    let mut out = Vec::new();
    if let Ok(head) = crate::codec::to_vec(&((fd_index as u32, id, seg_kind), offset, obj_kind)) {
        out.extend_from_slice(&head);
    }
    out.extend_from_slice(b.get(14..).unwrap_or(&[]));
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn handle_descriptions_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            super::check_handle_input(&data);
        }

        #[test]
        fn structured_descriptions_never_panic(
            which in any::<u8>(),
            picks in proptest::collection::vec(any::<u8>(), 0..4),
            tail in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut data = vec![which, picks.len() as u8];
            data.extend_from_slice(&picks);
            data.push(1); // structured
            data.extend_from_slice(&tail);
            super::check_handle_input(&data);
        }
    }

    /// Every committed input of the `handles` fuzz target, replayed.
    #[test]
    fn replay_fuzz_corpus() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/handles");
        let mut n = 0;
        for e in std::fs::read_dir(dir).expect("the handles corpus") {
            let data = std::fs::read(e.expect("corpus entry").path()).expect("corpus file");
            super::check_handle_input(&data);
            n += 1;
        }
        assert!(n > 0, "the handles corpus is empty");
    }
}
