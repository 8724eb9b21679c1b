//! The pool's messages between the parent and a worker: every header and record, each with
//! its encoding and a checked decoding. Nothing here trusts the bytes it decodes (they come
//! from another process): a short, long or out-of-range field is a [`Malformed`] error that
//! says which, never a panic.
//!
//! Each worker has its own stream socket to the parent, carrying frames of
//! `process/channel.rs` whose kinds are the pool's ([`Kind`], from the channel's first free
//! kind on):
//!
//! ```text
//! parent -> worker   Task     seq u64 | code u8 (0 fn, 1 closure, 2 fn with context)
//!                             | trampoline i64 | target i64 | slot u8 | place u8
//!                             | [code 2: context] | [place 1: len u64] | [place 0: payload]
//!                    Quit     (empty): finish and exit
//! worker -> parent   Ready    (empty): the initializer ran
//!                    InitFailed  the initializer's panic message
//!                    Failed   why the worker gives up (a protocol failure): it exits
//!                    Results  seq u64 | count u32 | place u8 | [place 1: len u64]
//!                             | [place 0: outcomes]
//! payload  := count u32 | tag(A) u64 | count encoded arguments, back to back (wire.rs)
//! context  := id u64 | 0                     the worker holds context `id` already
//!           | id u64 | 1 | len u64 | bytes   context `id` (its encoded value), from now on
//! place    := 0, then the bytes (payload or outcomes) follow in the message
//!           | 1, then len u64: the bytes are in the chunk's mailbox slot (`slot`)
//! outcomes := failed u32 | vlen u64
//!             | vlen bytes: tag(R) u64, then enc(R) of each task that returned, in task
//!               order, back to back
//!             | failed times: index u32 | 1 | enc(String)   the task panicked: the message
//!                           | index u32 | 2 | enc(String)   it could not run (codec)
//! ```
//! What the fields mean, and who checks what beyond their shape (a `seq` the parent handed
//! out, a context the worker holds, the type tags), is in `worker.rs`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::wire::{De, Ser};
use crate::process::channel::{self, FIRST_FREE_KIND};

/// What is wrong with a message: which field is short or out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The result of a decoding.
pub(crate) type Decoded<T> = std::result::Result<T, Malformed>;

/// The kind of a pool message (the frame's kind byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// Parent to worker: a chunk of tasks ([`Task`]).
    Task = FIRST_FREE_KIND,
    /// Parent to worker: finish and exit (empty).
    Quit,
    /// Worker to parent: the initializer ran; tasks may come (empty).
    Ready,
    /// Worker to parent: the initializer panicked; the bytes are the message.
    InitFailed,
    /// Worker to parent: the outcomes of one chunk ([`ResultsHead`]).
    Results,
    /// Worker to parent: it gives up (a protocol failure) and exits; the bytes say why.
    Failed,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Task,
        Kind::Quit,
        Kind::Ready,
        Kind::InitFailed,
        Kind::Results,
        Kind::Failed,
    ];

    /// The kind of a frame's kind byte.
    pub(crate) fn decode(b: u8) -> Decoded<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| *k as u8 == b)
            .ok_or(Malformed("a message of an unknown kind"))
    }
}

/// Reads fields off the front of a message, each checked.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn bytes(&mut self, n: usize, what: &'static str) -> Decoded<&'a [u8]> {
        if self.0.len() < n {
            return Err(Malformed(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Decoded<[u8; N]> {
        Ok(self.bytes(N, what)?.try_into().expect("N bytes"))
    }

    fn u8(&mut self, what: &'static str) -> Decoded<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Decoded<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Decoded<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn i64(&mut self, what: &'static str) -> Decoded<i64> {
        self.array(what).map(i64::from_le_bytes)
    }

    /// `len u64 | len bytes`.
    fn counted(&mut self, what: &'static str) -> Decoded<&'a [u8]> {
        let len = self.u64(what)?;
        let len = usize::try_from(len).map_err(|_| Malformed(what))?;
        self.bytes(len, what)
    }

    fn end(self, what: &'static str) -> Decoded<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed(what))
        }
    }
}

/// Which code a chunk runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CodeKind {
    /// A `fn(A) -> R` (by reference: trampoline and target).
    Fn = 0,
    /// The closure the worker was forked with.
    Closure = 1,
    /// A `fn(&C, A) -> R` (by reference), with a context part.
    Context = 2,
}

/// The context part of a Task for a `fn(&C, A) -> R`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContextPart<'a> {
    /// The worker holds context `id` already.
    Held { id: u64 },
    /// Context `id`, its encoded value: the worker holds it from now on.
    New { id: u64, bytes: &'a [u8] },
}

impl ContextPart<'_> {
    fn len(&self) -> usize {
        match self {
            ContextPart::Held { .. } => 9,
            ContextPart::New { bytes, .. } => 17 + bytes.len(),
        }
    }
}

/// Where a chunk's arguments or outcomes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place<'a> {
    /// In the message, after the header.
    Inline(&'a [u8]),
    /// In the chunk's mailbox slot: this many bytes of it.
    InSlot(u64),
}

const INLINE: u8 = 0;
const IN_SLOT: u8 = 1;

impl Place<'_> {
    /// Bytes the place takes in the message.
    fn len(&self) -> usize {
        match self {
            Place::Inline(b) => b.len(),
            Place::InSlot(_) => 8,
        }
    }

    fn tag(&self) -> u8 {
        match self {
            Place::Inline(_) => INLINE,
            Place::InSlot(_) => IN_SLOT,
        }
    }

    /// The place whose tag byte `tag` was read, from what follows it in the message (`rest`:
    /// all of it is the place's).
    fn decode<'a>(tag: u8, mut rest: Fields<'a>) -> Decoded<Place<'a>> {
        match tag {
            INLINE => Ok(Place::Inline(rest.0)),
            IN_SLOT => {
                let len = rest.u64("a truncated mailbox length")?;
                rest.end("bytes after a mailbox length")?;
                Ok(Place::InSlot(len))
            }
            _ => Err(Malformed("an unknown place")),
        }
    }
}

/// A Task message: a chunk of tasks for a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Task<'a> {
    /// The chunk's number (unique among the chunks this parent hands out).
    pub(crate) seq: u64,
    pub(crate) code: CodeKind,
    /// For `Fn` and `Context`: the function's offsets (`process/spawn.rs`); 0 otherwise.
    pub(crate) trampoline: i64,
    pub(crate) target: i64,
    /// The chunk's mailbox slot.
    pub(crate) slot: u8,
    /// Present exactly when `code` is `Context`.
    pub(crate) context: Option<ContextPart<'a>>,
    /// The payload.
    pub(crate) args: Place<'a>,
}

/// Bytes of a Task body before the context part: seq, code, trampoline, target, slot, place.
const TASK_FIXED: usize = 8 + 1 + 8 + 8 + 1 + 1;

impl<'a> Task<'a> {
    /// Appends the whole frame to `out` except the inline payload, if any, which the caller
    /// sends right after these bytes (so that the payload is not copied).
    pub(crate) fn encode_head(&self, out: &mut Vec<u8>) {
        let context = self.context.map_or(0, |c| c.len());
        let body = TASK_FIXED + context + self.args.len();
        out.reserve(channel::HEADER + TASK_FIXED + context + 8);
        channel::push_header(out, Kind::Task as u8, body);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.push(self.code as u8);
        out.extend_from_slice(&self.trampoline.to_le_bytes());
        out.extend_from_slice(&self.target.to_le_bytes());
        out.push(self.slot);
        out.push(self.args.tag());
        match self.context {
            None => {}
            Some(ContextPart::Held { id }) => {
                out.extend_from_slice(&id.to_le_bytes());
                out.push(0);
            }
            Some(ContextPart::New { id, bytes }) => {
                out.extend_from_slice(&id.to_le_bytes());
                out.push(1);
                out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                out.extend_from_slice(bytes);
            }
        }
        if let Place::InSlot(len) = self.args {
            out.extend_from_slice(&len.to_le_bytes());
        }
    }

    /// Decodes a Task body (the frame's bytes after its header).
    pub(crate) fn decode(body: &'a [u8]) -> Decoded<Task<'a>> {
        let mut f = Fields(body);
        let seq = f.u64("a truncated task header")?;
        let code = match f.u8("a truncated task header")? {
            0 => CodeKind::Fn,
            1 => CodeKind::Closure,
            2 => CodeKind::Context,
            _ => return Err(Malformed("an unknown code kind")),
        };
        let trampoline = f.i64("a truncated task header")?;
        let target = f.i64("a truncated task header")?;
        let slot = f.u8("a truncated task header")?;
        let place = f.u8("a truncated task header")?;
        let context = if code == CodeKind::Context {
            let id = f.u64("a truncated context")?;
            Some(match f.u8("a truncated context")? {
                0 => ContextPart::Held { id },
                1 => ContextPart::New {
                    id,
                    bytes: f.counted("a truncated context")?,
                },
                _ => return Err(Malformed("an unknown context flag")),
            })
        } else {
            None
        };
        Ok(Task {
            seq,
            code,
            trampoline,
            target,
            slot,
            context,
            args: Place::decode(place, f)?,
        })
    }
}

/// Splits a payload (or any `count u32 | items` record) into its count and its items.
pub(crate) fn split_count(input: &[u8]) -> Decoded<(u32, &[u8])> {
    let mut f = Fields(input);
    let count = f.u32("a truncated task count")?;
    Ok((count, f.0))
}

/// The header of a Results message; the outcomes follow it when they are inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResultsHead<'a> {
    /// The chunk's `seq`, as in its Task.
    pub(crate) seq: u64,
    /// Tasks in the chunk.
    pub(crate) count: u32,
    /// The outcomes.
    pub(crate) outcomes: Place<'a>,
}

/// Bytes of a Results body before inline outcomes: seq, count, place.
pub(crate) const RESULTS_INLINE_HEAD: usize = 8 + 4 + 1;

impl<'a> ResultsHead<'a> {
    /// Appends the message body to `out`: all of it for outcomes in the mailbox; for inline
    /// outcomes, just the header (the caller appends the outcomes after it, whose slice in
    /// `outcomes` is not read).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.push(self.outcomes.tag());
        if let Place::InSlot(len) = self.outcomes {
            out.extend_from_slice(&len.to_le_bytes());
        }
    }

    /// Decodes a Results body (the frame's bytes after its header).
    pub(crate) fn decode(body: &'a [u8]) -> Decoded<ResultsHead<'a>> {
        let mut f = Fields(body);
        let seq = f.u64("a truncated results header")?;
        let count = f.u32("a truncated results header")?;
        let place = f.u8("a truncated results header")?;
        Ok(ResultsHead {
            seq,
            count,
            outcomes: Place::decode(place, f)?,
        })
    }
}

/// The header of a chunk's outcomes: how many tasks failed, and the bytes of the values
/// before the failure entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutcomesHead {
    pub(crate) failed: u32,
    pub(crate) vlen: u64,
}

/// Bytes of an [`OutcomesHead`].
pub(crate) const OUTCOMES_HEAD: usize = 12;

impl OutcomesHead {
    /// Its bytes.
    pub(crate) fn to_bytes(self) -> [u8; OUTCOMES_HEAD] {
        let mut b = [0; OUTCOMES_HEAD];
        b[..4].copy_from_slice(&self.failed.to_le_bytes());
        b[4..].copy_from_slice(&self.vlen.to_le_bytes());
        b
    }

    /// Decodes the outcomes of a chunk: the header, the values (`vlen` bytes) and the failure
    /// entries after them.
    pub(crate) fn decode(bytes: &[u8]) -> Decoded<(OutcomesHead, &[u8], &[u8])> {
        let mut f = Fields(bytes);
        let failed = f.u32("truncated outcomes")?;
        let vlen = f.u64("truncated outcomes")?;
        let values = usize::try_from(vlen)
            .map_err(|_| Malformed("truncated outcomes"))
            .and_then(|n| f.bytes(n, "truncated outcomes"))?;
        Ok((OutcomesHead { failed, vlen }, values, f.0))
    }
}

/// Why a task failed, in its failure entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Failure {
    /// The task panicked: the message is the panic's.
    Panicked = 1,
    /// It could not run (its argument or result did not go through the codec).
    Failed = 2,
}

/// A failure entry: `index u32 | failure u8 | enc(String)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FailureEntry {
    /// The task's index in its chunk.
    pub(crate) index: u32,
    pub(crate) failure: Failure,
    pub(crate) message: String,
}

impl FailureEntry {
    /// Appends a failure entry to `out`.
    pub(crate) fn encode(
        index: u32,
        failure: Failure,
        message: &str,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), String> {
        out.extend_from_slice(&index.to_le_bytes());
        out.push(failure as u8);
        message
            .serialize(&mut Ser::new(out))
            .map_err(|e| e.to_string())
    }

    /// Decodes the failure entry at the start of `bytes`; returns it and the bytes after it.
    pub(crate) fn decode(bytes: &[u8]) -> Decoded<(FailureEntry, &[u8])> {
        let mut f = Fields(bytes);
        let index = f.u32("a truncated failure entry")?;
        let failure = match f.u8("a truncated failure entry")? {
            1 => Failure::Panicked,
            2 => Failure::Failed,
            _ => return Err(Malformed("an unknown failure kind")),
        };
        let mut de = De::new(f.0);
        let message = String::deserialize(&mut de)
            .map_err(|_| Malformed("a failure message that does not decode"))?;
        Ok((
            FailureEntry {
                index,
                failure,
                message,
            },
            de.rest(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// The body of an encoded Task, and the frame's kind: `encode_head` then the payload.
    fn task_body(t: &Task<'_>) -> (u8, Vec<u8>) {
        let mut out = Vec::new();
        t.encode_head(&mut out);
        if let Place::Inline(b) = t.args {
            out.extend_from_slice(b);
        }
        let len = u64::from_le_bytes(out[5..channel::HEADER].try_into().unwrap());
        assert_eq!(
            len as usize,
            out.len() - channel::HEADER,
            "the frame's length"
        );
        (out[4], out[channel::HEADER..].to_vec())
    }

    fn arb_place(bytes: &[u8], in_slot: Option<u64>) -> Place<'_> {
        match in_slot {
            Some(n) => Place::InSlot(n),
            None => Place::Inline(bytes),
        }
    }

    #[test]
    fn kinds_are_the_pools_own() {
        for k in Kind::ALL {
            assert!(k as u8 >= FIRST_FREE_KIND);
            assert_eq!(Kind::decode(k as u8), Ok(k));
        }
        assert!(Kind::decode(FIRST_FREE_KIND - 1).is_err());
        assert!(Kind::decode(Kind::Failed as u8 + 1).is_err());
    }

    /// The layout of a Task, pinned (parent and worker are one binary, but the format is
    /// the protocol's: it must not drift unnoticed).
    #[test]
    fn pinned_task_layout() {
        let t = Task {
            seq: 3,
            code: CodeKind::Context,
            trampoline: -1,
            target: 0x0102,
            slot: 1,
            context: Some(ContextPart::New {
                id: 9,
                bytes: b"ab",
            }),
            args: Place::InSlot(300),
        };
        let (kind, body) = task_body(&t);
        assert_eq!(kind, Kind::Task as u8);
        let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "0300000000000000",                   // seq
                "02",                                 // code: context
                "ffffffffffffffff",                   // trampoline
                "0201000000000000",                   // target
                "01",                                 // slot
                "01",                                 // place: in slot
                "0900000000000000010200000000000000", // context 9, new, 2 bytes
                "6162",                               // its bytes
                "2c01000000000000",                   // the payload's length
            )
        );
        assert_eq!(Task::decode(&body), Ok(t));
    }

    #[test]
    fn damaged_headers_say_what_is_wrong() {
        let t = Task {
            seq: 1,
            code: CodeKind::Fn,
            trampoline: 5,
            target: 6,
            slot: 0,
            context: None,
            args: Place::InSlot(4),
        };
        let (_, mut body) = task_body(&t);
        for cut in 0..body.len() {
            let e = Task::decode(&body[..cut]).unwrap_err();
            assert!(e.0.contains("truncated"), "{cut}: {e}");
        }
        body.push(0);
        assert_eq!(
            Task::decode(&body).unwrap_err().to_string(),
            "bytes after a mailbox length"
        );
        body[8] = 3;
        assert_eq!(
            Task::decode(&body).unwrap_err().to_string(),
            "an unknown code kind"
        );
        assert_eq!(
            ResultsHead::decode(&[0; 12]).unwrap_err().to_string(),
            "a truncated results header"
        );
        assert_eq!(
            ResultsHead::decode(&[0; 13 + 7][..]).map(|h| h.outcomes),
            Ok(Place::Inline(&[0; 7][..]))
        );
        let mut r = vec![0; 12];
        r.push(2);
        assert_eq!(
            ResultsHead::decode(&r).unwrap_err().to_string(),
            "an unknown place"
        );
        // A value length past the bytes there are.
        let mut o = OutcomesHead { failed: 0, vlen: 5 }.to_bytes().to_vec();
        o.extend_from_slice(b"1234");
        assert!(OutcomesHead::decode(&o).is_err());
        o.push(b'5');
        assert_eq!(
            OutcomesHead::decode(&o),
            Ok((OutcomesHead { failed: 0, vlen: 5 }, &b"12345"[..], &[][..]))
        );
        assert!(FailureEntry::decode(&[0, 0, 0, 0, 3, 0]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// Every decoder of the pool's messages, over arbitrary bytes: an error or a value,
        /// never a panic; a value re-encodes to the very bytes it came from.
        #[test]
        fn arbitrary_bytes_decode_or_fail_cleanly(bytes in vec(any::<u8>(), 0..300)) {
            if let Ok(t) = Task::decode(&bytes) {
                prop_assert_eq!(task_body(&t).1, bytes.clone());
            }
            if let Ok(h) = ResultsHead::decode(&bytes) {
                let mut out = Vec::new();
                h.encode(&mut out);
                if let Place::Inline(b) = h.outcomes {
                    out.extend_from_slice(b);
                }
                prop_assert_eq!(&out, &bytes);
            }
            if let Ok((h, values, rest)) = OutcomesHead::decode(&bytes) {
                prop_assert_eq!(h.vlen as usize, values.len());
                prop_assert_eq!(OUTCOMES_HEAD + values.len() + rest.len(), bytes.len());
            }
            if let Ok((e, rest)) = FailureEntry::decode(&bytes) {
                let mut out = Vec::new();
                FailureEntry::encode(e.index, e.failure, &e.message, &mut out).unwrap();
                out.extend_from_slice(rest);
                prop_assert_eq!(&out, &bytes);
            }
            if let Ok((count, rest)) = split_count(&bytes) {
                prop_assert_eq!(&count.to_le_bytes()[..], &bytes[..4]);
                prop_assert_eq!(rest, &bytes[4..]);
            }
            for b in bytes.iter().take(4) {
                let _ = Kind::decode(*b);
            }
        }

        /// Every well-formed header comes back as it went, and any cut of it is an error.
        #[test]
        fn headers_round_trip(
            seq in any::<u64>(),
            code in 0u8..3,
            trampoline in any::<i64>(),
            target in any::<i64>(),
            slot in any::<u8>(),
            context in (any::<u64>(), proptest::option::of(vec(any::<u8>(), 0..40))),
            payload in vec(any::<u8>(), 0..40),
            in_slot in proptest::option::of(any::<u64>()),
            count in any::<u32>(),
        ) {
            let code = [CodeKind::Fn, CodeKind::Closure, CodeKind::Context][code as usize];
            let context = (code == CodeKind::Context).then(|| match &context.1 {
                None => ContextPart::Held { id: context.0 },
                Some(b) => ContextPart::New { id: context.0, bytes: b },
            });
            let t = Task {
                seq,
                code,
                trampoline,
                target,
                slot,
                context,
                args: arb_place(&payload, in_slot),
            };
            let (kind, body) = task_body(&t);
            prop_assert_eq!(kind, Kind::Task as u8);
            prop_assert_eq!(Task::decode(&body), Ok(t));
            let fixed = TASK_FIXED + t.context.map_or(0, |c| c.len());
            for cut in 0..fixed.min(body.len()) {
                prop_assert!(Task::decode(&body[..cut]).is_err());
            }
            let h = ResultsHead { seq, count, outcomes: arb_place(&payload, in_slot) };
            let mut out = Vec::new();
            h.encode(&mut out);
            if let Place::Inline(b) = h.outcomes {
                out.extend_from_slice(b);
            }
            prop_assert_eq!(ResultsHead::decode(&out), Ok(h));
            for cut in 0..RESULTS_INLINE_HEAD {
                prop_assert!(ResultsHead::decode(&out[..cut]).is_err());
            }
        }
    }
}
