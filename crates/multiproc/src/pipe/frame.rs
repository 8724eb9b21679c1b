//! The frame codec of a connection: pure, no I/O (fuzzed by `fuzz/fuzz_targets/frame.rs`).
//!
//! A message travels as one or more `SOCK_SEQPACKET` packets ("frames"); the kernel keeps
//! packet boundaries, so a frame is never merged with or torn by another. A message that does
//! not fit one packet (the socket's send buffer bounds a packet), or carries more fds than one
//! packet may hold, is split into several frames, sent back to back under the sending end's
//! process-shared write lock. Every frame starts with this header (little-endian):
//!
//! ```text
//! 0   u8   kind     WHOLE = 1 (the entire message), FIRST = 2, MORE = 3
//! 1   u8   magic    0x4D ('M')
//! 2   u16  reserved 0
//! 4   u32  id       message id chosen by the sender (the same in every frame of a message)
//! 8   u32  index    frame number within the message: 0 for WHOLE and FIRST
//! 12  u32  count    frames in the message: 1 for WHOLE, >= 2 for FIRST and MORE
//! 16  u64  total    bytes in the whole message (the same in every frame)
//! 24  ...  payload  this frame's share of the message bytes, in order
//! ```
//!
//! Fds (SCM_RIGHTS) ride on any frame of the message; the receiver collects them in frame order.
//!
//! Reassembly ([`Assembler`]) is a small state machine:
//!
//! | state        | frame                               | action                                   |
//! |--------------|-------------------------------------|------------------------------------------|
//! | idle         | WHOLE                               | message complete                         |
//! | idle         | FIRST                               | start assembling                         |
//! | idle         | MORE                                | skip: a stray (see below)                |
//! | assembling   | MORE, same id/count/total, index+1  | append; complete at index = count-1      |
//! | assembling   | WHOLE or FIRST                      | drop the partial message, restart        |
//! | assembling   | MORE, anything else                 | drop the partial message, report corrupt |
//!
//! Strays and dropped partials come from a dead process: a sender SIGKILLed mid-message
//! leaves a FIRST and some MOREs; the next sender (after taking over the write lock) starts a
//! new message with WHOLE or FIRST, which drops the partial; or every sender is gone and the
//! receiver gets end-of-file. A receiver SIGKILLed mid-message leaves the rest of its message's
//! MORE frames, which the next receiver skips. Either way nobody ever sees a torn message.
//! Everything in a header is untrusted: lengths and indices are checked before use, and
//! memory grows only with bytes actually received (a claimed `total` reserves at most
//! [`MAX_RESERVE`] up front).

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 24;
/// The magic byte at offset 1.
// Registered in `kinds.rs` (whose test checks it is this value); written out here because the
// fuzz target `frame` compiles this file on its own.
pub const MAGIC: u8 = 0x4D;
/// Most bytes reserved up front from a FIRST frame's claimed total.
pub const MAX_RESERVE: usize = 64 << 20;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A message in one frame.
    Whole,
    /// The first frame of a multi-frame message.
    First,
    /// A later frame of a multi-frame message.
    More,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Whole => 1,
            Kind::First => 2,
            Kind::More => 3,
        }
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the frame is.
    pub kind: Kind,
    /// Message id.
    pub id: u32,
    /// Frame number within the message.
    pub index: u32,
    /// Frames in the message.
    pub count: u32,
    /// Bytes in the whole message.
    pub total: u64,
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.kind.code();
        b[1] = MAGIC;
        b[4..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..12].copy_from_slice(&self.index.to_le_bytes());
        b[12..16].copy_from_slice(&self.count.to_le_bytes());
        b[16..24].copy_from_slice(&self.total.to_le_bytes());
        b
    }

    /// Decodes and checks the header at the start of `frame`; returns it and the payload.
    ///
    /// # Errors
    /// A description of what is wrong when `frame` is not a well-formed frame.
    pub fn decode(frame: &[u8]) -> Result<(Header, &[u8]), String> {
        if frame.len() < HEADER_LEN {
            return Err(format!(
                "frame of {} bytes is shorter than its header",
                frame.len()
            ));
        }
        let (h, payload) = frame.split_at(HEADER_LEN);
        let kind = match h[0] {
            1 => Kind::Whole,
            2 => Kind::First,
            3 => Kind::More,
            k => return Err(format!("unknown frame kind {k}")),
        };
        if h[1] != MAGIC || h[2] != 0 || h[3] != 0 {
            return Err("bad frame magic".into());
        }
        let word = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&h[16..24]);
        let hdr = Header {
            kind,
            id: word(4),
            index: word(8),
            count: word(12),
            total: u64::from_le_bytes(t),
        };
        let plen = payload.len() as u64;
        let ok = match kind {
            Kind::Whole => hdr.index == 0 && hdr.count == 1 && hdr.total == plen,
            Kind::First => hdr.index == 0 && hdr.count >= 2 && plen <= hdr.total,
            Kind::More => hdr.index >= 1 && hdr.index < hdr.count && plen <= hdr.total,
        };
        if !ok {
            return Err(format!(
                "inconsistent frame header {hdr:?} with {plen} payload bytes"
            ));
        }
        Ok((hdr, payload))
    }
}

/// The message id of a frame from its first bytes (at least [`HEADER_LEN`] of them), when
/// they look like a frame header (kind and magic); the rest is checked by [`Header::decode`]
/// once the whole frame is read. Used to look at a frame before taking it off the socket.
pub fn peek_id(start: &[u8]) -> Option<u32> {
    let h = start.get(..HEADER_LEN)?;
    let known = matches!(h[0], 1..=3) && h[1] == MAGIC && h[2] == 0 && h[3] == 0;
    known.then(|| u32::from_le_bytes([h[4], h[5], h[6], h[7]]))
}

/// How a message of `len` bytes with `nfds` fds is split: frames of at most `max_payload`
/// bytes and `max_fds` fds each. Returns the frame count (at least 1).
///
/// # Panics
/// If `max_payload` or `max_fds` is 0.
pub fn frame_count(len: usize, nfds: usize, max_payload: usize, max_fds: usize) -> usize {
    assert!(max_payload > 0 && max_fds > 0);
    len.div_ceil(max_payload).max(nfds.div_ceil(max_fds)).max(1)
}

/// One frame of a split message: its header and which bytes and fds it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// The header to send.
    pub header: Header,
    /// Range of the message bytes in this frame.
    pub bytes: std::ops::Range<usize>,
    /// Range of the message's fds attached to this frame.
    pub fds: std::ops::Range<usize>,
}

/// The frames for a message of `len` bytes and `nfds` fds (see [`frame_count`]).
pub fn plan(
    id: u32,
    len: usize,
    nfds: usize,
    max_payload: usize,
    max_fds: usize,
) -> impl Iterator<Item = Planned> {
    let count = frame_count(len, nfds, max_payload, max_fds);
    (0..count).map(move |i| {
        let kind = match (count, i) {
            (1, _) => Kind::Whole,
            (_, 0) => Kind::First,
            _ => Kind::More,
        };
        let b0 = (i * max_payload).min(len);
        let f0 = (i * max_fds).min(nfds);
        Planned {
            header: Header {
                kind,
                id,
                index: i as u32,
                count: count as u32,
                total: len as u64,
            },
            bytes: b0..(b0 + max_payload).min(len),
            fds: f0..(f0 + max_fds).min(nfds),
        }
    })
}

/// What [`Assembler::push`] made of a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The frame belongs to a message still being assembled.
    Pending,
    /// The message is complete.
    Complete(Vec<u8>),
    /// The message is complete but was longer than the limit; its bytes were not kept.
    TooLong(u64),
    /// The frame was skipped: a stray from a message whose start was taken by someone else.
    Skipped,
    /// The frame is malformed or does not continue the partial message, which is dropped.
    Corrupt(String),
}

/// The result of pushing one frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Push {
    /// This frame starts a new message (the fds of earlier frames, if any, belong to a
    /// dropped partial message).
    pub started: bool,
    /// What happened.
    pub outcome: Outcome,
}

impl Push {
    /// True when the frame's fds belong to the message being received.
    pub fn keeps_fds(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Pending | Outcome::Complete(_) | Outcome::TooLong(_)
        )
    }
}

#[derive(Debug)]
struct Partial {
    id: u32,
    count: u32,
    next: u32,
    total: u64,
    received: u64,
    /// `None` when the message is over the limit and being discarded.
    buf: Option<Vec<u8>>,
}

/// Reassembles frames into messages (see the state table in the module docs).
#[derive(Debug)]
pub struct Assembler {
    max: Option<usize>,
    partial: Option<Partial>,
    /// The buffer the next message is assembled into, if one was given (its contents are
    /// cleared, its capacity used): see [`Assembler::with_buffer`].
    spare: Option<Vec<u8>>,
}

impl Assembler {
    /// An idle assembler; messages longer than `max` bytes come out as [`Outcome::TooLong`].
    pub fn new(max: Option<usize>) -> Assembler {
        Assembler {
            max,
            partial: None,
            spare: None,
        }
    }

    /// An idle assembler that assembles the next message into `buf` (cleared first, its
    /// capacity kept): the message [`Outcome::Complete`] hands back is that buffer. A
    /// receiver that decodes the message and then drops its bytes gives the same buffer
    /// for every message, so it allocates (and faults in) no memory for the bytes.
    #[allow(dead_code)] // not used by the fuzz target, which compiles this file alone
    pub fn with_buffer(max: Option<usize>, buf: Vec<u8>) -> Assembler {
        Assembler {
            max,
            partial: None,
            spare: Some(buf),
        }
    }

    /// An empty buffer with room for `reserve` bytes: the given one, or the one of a dropped
    /// partial message, or a new one.
    fn buffer(&mut self, reserve: usize) -> Vec<u8> {
        match self.spare.take() {
            Some(mut b) => {
                b.clear();
                b.reserve(reserve);
                b
            }
            None => Vec::with_capacity(reserve),
        }
    }

    /// Takes back the buffer given to [`with_buffer`](Self::with_buffer) (or that of the
    /// partial message, which is dropped), if the assembler still holds one: for a receiver
    /// that stops before a message is complete.
    #[allow(dead_code)] // not used by the fuzz target, which compiles this file alone
    pub fn take_buffer(&mut self) -> Option<Vec<u8>> {
        self.drop_partial();
        self.spare.take()
    }

    /// Drops the partial message, keeping its buffer for the next one.
    fn drop_partial(&mut self) {
        if let Some(Partial { buf: Some(b), .. }) = self.partial.take() {
            if self
                .spare
                .as_ref()
                .is_none_or(|s| s.capacity() < b.capacity())
            {
                self.spare = Some(b);
            }
        }
    }

    /// True when a message has been started and not finished.
    #[allow(dead_code)] // used by the fuzz target (fuzz/) and the corpus replay test
    pub fn is_partial(&self) -> bool {
        self.partial.is_some()
    }

    /// The limit given to [`new`](Self::new).
    #[allow(dead_code)] // not used by the fuzz target, which compiles this file alone
    pub fn max(&self) -> Option<usize> {
        self.max
    }

    fn over(&self, len: u64) -> bool {
        self.max.is_some_and(|m| len > m as u64)
    }

    /// Feeds one received frame.
    pub fn push(&mut self, frame: &[u8]) -> Push {
        let (h, payload) = match Header::decode(frame) {
            Ok(x) => x,
            Err(why) => {
                self.drop_partial();
                return Push {
                    started: false,
                    outcome: Outcome::Corrupt(why),
                };
            }
        };
        match h.kind {
            Kind::Whole => {
                self.drop_partial();
                let outcome = if self.over(h.total) {
                    Outcome::TooLong(h.total)
                } else {
                    let mut v = self.buffer(payload.len());
                    v.extend_from_slice(payload);
                    Outcome::Complete(v)
                };
                Push {
                    started: true,
                    outcome,
                }
            }
            Kind::First => {
                self.drop_partial();
                let buf = if self.over(h.total) {
                    None
                } else {
                    let reserve = usize::try_from(h.total)
                        .unwrap_or(usize::MAX)
                        .min(MAX_RESERVE);
                    let mut v = self.buffer(reserve.max(payload.len()));
                    v.extend_from_slice(payload);
                    Some(v)
                };
                self.partial = Some(Partial {
                    id: h.id,
                    count: h.count,
                    next: 1,
                    total: h.total,
                    received: payload.len() as u64,
                    buf,
                });
                Push {
                    started: true,
                    outcome: Outcome::Pending,
                }
            }
            Kind::More => {
                let Some(p) = self.partial.as_mut() else {
                    return Push {
                        started: false,
                        outcome: Outcome::Skipped,
                    };
                };
                let plen = payload.len() as u64;
                if h.id != p.id
                    || h.count != p.count
                    || h.total != p.total
                    || h.index != p.next
                    || p.received + plen > p.total
                {
                    let why = format!(
                        "frame {h:?} does not continue message {} (frame {} of {}, {} of {} bytes)",
                        p.id, p.next, p.count, p.received, p.total
                    );
                    self.drop_partial();
                    return Push {
                        started: false,
                        outcome: Outcome::Corrupt(why),
                    };
                }
                p.received += plen;
                p.next += 1;
                if let Some(b) = p.buf.as_mut() {
                    b.extend_from_slice(payload);
                }
                if p.next < p.count {
                    return Push {
                        started: false,
                        outcome: Outcome::Pending,
                    };
                }
                let p = self.partial.take().expect("partial present");
                let outcome = if p.received != p.total {
                    Outcome::Corrupt(format!(
                        "message {} ended after {} of {} bytes",
                        p.id, p.received, p.total
                    ))
                } else {
                    match p.buf {
                        Some(b) => Outcome::Complete(b),
                        None => Outcome::TooLong(p.total),
                    }
                };
                Push {
                    started: false,
                    outcome,
                }
            }
        }
    }
}

/// Feeds `frames` to a fresh assembler (without a limit) and returns every completed message
/// and every corruption report, in order. Used by the fuzz target and the corpus replay test:
/// it must never panic, whatever the input.
#[allow(dead_code)] // used by the fuzz target (fuzz/) and the corpus replay test
pub fn reassemble_all<'a>(
    max: Option<usize>,
    frames: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Outcome> {
    let mut a = Assembler::new(max);
    let mut out = Vec::new();
    for f in frames {
        match a.push(f).outcome {
            Outcome::Pending | Outcome::Skipped => {}
            o => out.push(o),
        }
    }
    out
}

/// Splits fuzzer input into frames: each frame is a little-endian u16 length then that many
/// bytes (the last frame takes whatever is left).
#[allow(dead_code)] // used by the fuzz target (fuzz/) and the corpus replay test
pub fn split_fuzz_input(data: &[u8]) -> Vec<&[u8]> {
    let mut v = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let n = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        let n = n.min(rest.len());
        v.push(&rest[..n]);
        rest = &rest[n..];
    }
    v
}

/// The fuzz target's body (also run by the corpus replay test): feeds `data` as frames and
/// checks the reassembler's promises, then round-trips `data` as a message.
///
/// # Panics
/// When a promise is broken — that is the bug the fuzzer looks for.
#[allow(dead_code)] // used by the fuzz target (fuzz/) and the corpus replay test
pub fn check_fuzz_input(data: &[u8]) {
    let frames = split_fuzz_input(data);
    for f in &frames {
        // A well-formed frame's id is what a look at its first bytes says.
        if let Ok((h, _)) = Header::decode(f) {
            assert_eq!(peek_id(f), Some(h.id), "peek_id disagrees with decode");
        }
    }
    let fed: usize = frames
        .iter()
        .map(|f| f.len().saturating_sub(HEADER_LEN))
        .sum();
    for max in [None, Some(0), Some(7)] {
        for o in reassemble_all(max, frames.iter().copied()) {
            match o {
                Outcome::Complete(m) => {
                    assert!(m.len() <= fed, "a message longer than the bytes fed");
                    if let Some(max) = max {
                        assert!(m.len() <= max, "a message over the limit came out");
                    }
                }
                Outcome::TooLong(len) => assert!(max.is_some_and(|m| len > m as u64)),
                Outcome::Corrupt(_) => {}
                Outcome::Pending | Outcome::Skipped => unreachable!("filtered out"),
            }
        }
    }
    // Any bytes, split with any frame size, come back whole.
    let max_payload = 1 + data.first().copied().unwrap_or(0) as usize;
    let encoded: Vec<Vec<u8>> = plan(7, data.len(), 0, max_payload, 1)
        .map(|p| {
            let mut f = p.header.encode().to_vec();
            f.extend_from_slice(&data[p.bytes]);
            f
        })
        .collect();
    let out = reassemble_all(None, encoded.iter().map(|v| v.as_slice()));
    assert_eq!(out, vec![Outcome::Complete(data.to_vec())]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_magic_is_the_registered_one() {
        assert_eq!(MAGIC, crate::kinds::magic::PIPE_FRAME);
    }

    fn frames_for(id: u32, msg: &[u8], max_payload: usize) -> Vec<Vec<u8>> {
        plan(id, msg.len(), 0, max_payload, 1)
            .map(|p| {
                let mut f = p.header.encode().to_vec();
                f.extend_from_slice(&msg[p.bytes]);
                f
            })
            .collect()
    }

    #[test]
    fn whole_and_empty() {
        let f = frames_for(7, b"", 10);
        assert_eq!(f.len(), 1);
        let out = reassemble_all(None, f.iter().map(|v| v.as_slice()));
        assert_eq!(out, vec![Outcome::Complete(vec![])]);
    }

    #[test]
    fn split_and_join() {
        let msg: Vec<u8> = (0..100u8).collect();
        let f = frames_for(1, &msg, 7);
        assert_eq!(f.len(), 15);
        let out = reassemble_all(None, f.iter().map(|v| v.as_slice()));
        assert_eq!(out, vec![Outcome::Complete(msg)]);
    }

    /// Pushes `frames` and returns the completed message (panics on anything else).
    fn complete(a: &mut Assembler, frames: &[Vec<u8>]) -> Vec<u8> {
        let mut done = None;
        for f in frames {
            match a.push(f).outcome {
                Outcome::Pending => {}
                Outcome::Complete(m) => done = Some(m),
                o => panic!("unexpected {o:?}"),
            }
        }
        done.expect("message complete")
    }

    #[test]
    fn a_given_buffer_is_cleared_used_and_handed_back() {
        let msg: Vec<u8> = (0..100u8).collect();
        // Split, and whole: both assemble in the given buffer (its old bytes gone).
        for max_payload in [7, 1000] {
            let buf = vec![0xEEu8; 500];
            let at = buf.as_ptr();
            let mut a = Assembler::with_buffer(None, buf);
            let m = complete(&mut a, &frames_for(3, &msg, max_payload));
            assert_eq!(m, msg);
            assert_eq!(m.as_ptr(), at, "assembled in the given buffer");
            assert_eq!(a.take_buffer(), None, "handed over with the message");
        }
        // A partial message dropped by a new one leaves its buffer to the new one; one left
        // unfinished is taken back.
        let buf = Vec::with_capacity(500);
        let at = buf.as_ptr();
        let mut a = Assembler::with_buffer(None, buf);
        let f = frames_for(4, &msg, 7);
        assert_eq!(a.push(&f[0]).outcome, Outcome::Pending);
        let m = complete(&mut a, &frames_for(5, b"next", 2));
        assert_eq!((m.as_slice(), m.as_ptr()), (&b"next"[..], at));
        let mut a = Assembler::with_buffer(None, m);
        assert_eq!(a.push(&f[0]).outcome, Outcome::Pending);
        let back = a.take_buffer().expect("the partial's buffer");
        assert_eq!(back.as_ptr(), at);
        assert!(!a.is_partial());
        // Without a given buffer: a new one per message, as before.
        let mut a = Assembler::new(None);
        assert_eq!(complete(&mut a, &frames_for(6, &msg, 7)), msg);
        assert_eq!(a.take_buffer(), None);
    }

    #[test]
    fn fds_need_frames_too() {
        let p: Vec<_> = plan(1, 3, 600, 100, 253).collect();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].fds, 0..253);
        assert_eq!(p[2].fds, 506..600);
        assert_eq!(p[0].bytes, 0..3);
        assert_eq!(p[1].bytes, 3..3);
    }

    #[test]
    fn dead_sender_partial_is_dropped() {
        let a = frames_for(1, &[1; 30], 10);
        let b = frames_for(2, &[2; 5], 10);
        let mut frames: Vec<&[u8]> = a[..2].iter().map(|v| v.as_slice()).collect();
        frames.extend(b.iter().map(|v| v.as_slice()));
        let out = reassemble_all(None, frames);
        assert_eq!(out, vec![Outcome::Complete(vec![2; 5])]);
    }

    #[test]
    fn dead_receiver_strays_are_skipped() {
        let a = frames_for(1, &[1; 30], 10);
        let b = frames_for(2, &[2; 25], 10);
        let mut frames: Vec<&[u8]> = a[1..].iter().map(|v| v.as_slice()).collect();
        frames.extend(b.iter().map(|v| v.as_slice()));
        let out = reassemble_all(None, frames);
        assert_eq!(out, vec![Outcome::Complete(vec![2; 25])]);
    }

    #[test]
    fn too_long_is_consumed_whole() {
        let a = frames_for(1, &[1; 30], 10);
        let b = frames_for(2, &[2; 5], 10);
        let frames = a.iter().chain(b.iter()).map(|v| v.as_slice());
        let out = reassemble_all(Some(10), frames);
        assert_eq!(
            out,
            vec![Outcome::TooLong(30), Outcome::Complete(vec![2; 5])]
        );
    }

    #[test]
    fn lies_are_caught() {
        // A FIRST claiming a huge total with a short tail.
        let h = Header {
            kind: Kind::First,
            id: 1,
            index: 0,
            count: 2,
            total: u64::MAX,
        };
        let mut f = h.encode().to_vec();
        f.push(1);
        let more = Header {
            kind: Kind::More,
            index: 1,
            ..h
        };
        let out = reassemble_all(None, [f.as_slice(), &more.encode()[..]]);
        assert!(matches!(out[..], [Outcome::Corrupt(_)]), "{out:?}");
        assert!(Header::decode(&[1, MAGIC, 0]).is_err());
        let mut bad = frames_for(1, b"abc", 10).remove(0);
        bad[20] = 9; // total no longer matches the payload
        assert!(Header::decode(&bad).is_err());
        assert_eq!(peek_id(&frames_for(9, b"abc", 10)[0]), Some(9));
        assert_eq!(peek_id(&[1, MAGIC, 0]), None);
        assert_eq!(peek_id(&[0xDB; HEADER_LEN]), None);
    }

    /// Replays every input committed under `fuzz/corpus/frame` and `fuzz/artifacts/frame`
    /// (crashes the fuzzer found stay fixed).
    #[test]
    fn replay_fuzz_corpus() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz");
        let mut n = 0;
        for dir in ["corpus/frame", "artifacts/frame"] {
            let Ok(rd) = std::fs::read_dir(format!("{root}/{dir}")) else {
                continue;
            };
            for e in rd.flatten() {
                let data = std::fs::read(e.path()).unwrap();
                check_fuzz_input(&data);
                n += 1;
            }
        }
        assert!(n > 0, "no fuzz corpus found under {root}");
    }

    proptest! {
        #[test]
        fn round_trip(msg in proptest::collection::vec(any::<u8>(), 0..2000),
                      max in 1usize..300, id: u32) {
            let f = frames_for(id, &msg, max);
            let out = reassemble_all(None, f.iter().map(|v| v.as_slice()));
            prop_assert_eq!(out, vec![Outcome::Complete(msg)]);
        }

        #[test]
        fn header_round_trip(kind in 0usize..3, id: u32, index: u32, count: u32, total: u64) {
            let kind = [Kind::Whole, Kind::First, Kind::More][kind];
            let h = Header { kind, id, index, count, total };
            let b = h.encode();
            if let Ok((d, p)) = Header::decode(&b) {
                prop_assert_eq!(d, h);
                prop_assert!(p.is_empty());
            }
        }

        #[test]
        fn garbage_never_breaks_a_promise(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            check_fuzz_input(&data);
        }
    }
}
