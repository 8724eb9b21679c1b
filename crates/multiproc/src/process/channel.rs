//! Framed messages with attached fds over a stream socket between a parent and its child:
//! the Spawn bootstrap (parent to child), the child's result (child to parent), and the
//! messages of whoever else talks over such a socket (the pool: several frames in a row).
//!
//! ```text
//! frame := magic u32 = "MPRF" | kind u8 | len u64 | len bytes
//! ```
//! The fds of the frame ride on the `sendmsg` that carries the header. The reader trusts
//! nothing: a wrong magic or a length over [`MAX_FRAME`] is an error.
//!
//! A frame's kind is a byte the channel does not interpret: the process's own frames use the
//! kinds of [`Tag`] (below [`FIRST_FREE_KIND`]); a user of the channel defines its own kinds
//! from [`FIRST_FREE_KIND`] on (the pool's are in `pool/protocol.rs`), and checks the kind of
//! every frame it reads.

use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::socket;

const MAGIC: u32 = u32::from_le_bytes(crate::kinds::magic::RESULT_FRAME);
/// Bytes of a frame header.
pub(crate) const HEADER: usize = 13;
/// Largest frame accepted (4 GiB): bounds what a corrupt peer can make us allocate.
const MAX_FRAME: u64 = 1 << 32;

/// The first frame kind the process's frames never use: kinds from here on are for other
/// users of the channel to define.
pub(crate) const FIRST_FREE_KIND: u8 = 16;

/// The kinds of the process's own frames (the bootstrap and the result).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tag {
    /// Spawn bootstrap: entry point and arguments.
    Boot = 1,
    /// The child's return value, encoded.
    Value = 2,
    /// The child panicked; the bytes are the panic message.
    Panic = 3,
    /// The child failed before or after running the target; the bytes say why.
    Failed = 4,
    /// Spawn: the child's arguments did not decode (a type mismatch, or bad bytes); the
    /// bytes say why. The parent's `join` reports it as an `ErrorKind::Codec` error.
    BadArgs = 10,
}

const _: () = assert!((Tag::BadArgs as u8) < FIRST_FREE_KIND);

impl Tag {
    /// The tag of a frame kind; `None` for a kind that is not the process's.
    pub(crate) fn from_u8(b: u8) -> Option<Tag> {
        Some(match b {
            1 => Tag::Boot,
            2 => Tag::Value,
            3 => Tag::Panic,
            4 => Tag::Failed,
            10 => Tag::BadArgs,
            _ => return None,
        })
    }

    /// Whether `frame` is of this kind.
    pub(crate) fn of(self, frame: &Frame) -> bool {
        frame.kind == self as u8
    }
}

/// Appends a whole frame header for a body of `len` bytes to `out` (for callers that
/// build and send frames themselves, e.g. without blocking).
pub(crate) fn push_header(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&(len as u64).to_le_bytes());
}

/// Sends one frame (blocking), fds attached to the header.
pub(crate) fn send_frame(
    sock: BorrowedFd<'_>,
    kind: u8,
    body: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<()> {
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&MAGIC.to_le_bytes());
    header[4] = kind;
    header[5..].copy_from_slice(&(body.len() as u64).to_le_bytes());
    let mut sent = 0usize;
    let total = HEADER + body.len();
    let mut first = true;
    while sent < total {
        let (h, b) = if sent < HEADER {
            (&header[sent..], body)
        } else {
            (&[][..], &body[sent - HEADER..])
        };
        let iov = [IoSlice::new(h), IoSlice::new(b)];
        let attach: &[BorrowedFd<'_>] = if first { fds } else { &[] };
        let n = socket::send_msg(sock, &iov, attach, false)
            .map_err(|e| Error::os("cannot send to the other process", e))?;
        first = false;
        sent += n;
    }
    Ok(())
}

/// Accumulates frames from a socket, possibly across many non-blocking reads. Bytes past
/// the end of a frame are kept for the next one.
#[derive(Default)]
pub(crate) struct FrameReader {
    /// Bytes read are `buf[..filled]`; the rest of `buf` is zeroed room for the next reads
    /// (kept between reads, so that a frame arriving in many pieces is zeroed once, not
    /// once per piece).
    /// (Without fds, `buf` holds just the bytes read: reads go to its spare capacity.)
    buf: Vec<u8>,
    filled: usize,
    fds: Vec<OwnedFd>,
    eof: bool,
    /// The peer never sends fds: read with [`socket::recv_spare`], no zeroed room.
    no_fds: bool,
}

/// A complete frame.
pub(crate) struct Frame {
    /// Its kind: not checked by the reader (see the module docs).
    pub(crate) kind: u8,
    pub(crate) body: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl FrameReader {
    /// A reader for a peer that never sends fds (the pool's workers, and the pool's parent
    /// as a worker sees it): it reads into the buffer's spare capacity, never zeroing room
    /// first. Fds the peer attaches anyway are dropped by the kernel.
    pub(crate) fn without_fds() -> FrameReader {
        FrameReader {
            no_fds: true,
            ..FrameReader::default()
        }
    }

    /// Gives back a buffer handed out by [`take_raw`](FrameReader::take_raw) once its frame
    /// is used, so that the next frame is read into memory that is mapped and warm rather
    /// than a fresh allocation. Ignored unless the reader holds nothing.
    pub(crate) fn recycle(&mut self, mut v: Vec<u8>) {
        if self.no_fds && self.filled == 0 && self.buf.capacity() < v.capacity() {
            v.clear();
            self.buf = v;
        }
    }

    /// Reads what is available (`nonblocking`) or at least one chunk (blocking). Returns
    /// false when nothing more will come (end of file, or a socket error).
    pub(crate) fn pump(&mut self, sock: impl AsFd, nonblocking: bool) -> bool {
        if self.eof {
            return false;
        }
        loop {
            // Read straight into the buffer: as much as the frame still needs once its header
            // is known, else one page. (Small reads matter: right after a fork every page the
            // parent writes costs a copy-on-write fault.)
            let want = match (self.filled >= HEADER).then(|| self.body_len()).flatten() {
                Some(len) => (HEADER as u64 + len)
                    .saturating_sub(self.filled as u64)
                    .clamp(1, 1 << 20) as usize,
                None => 4096,
            };
            if self.no_fds {
                match socket::recv_spare(sock.as_fd(), &mut self.buf, want, nonblocking) {
                    Ok(0) => {
                        self.eof = true;
                        return false;
                    }
                    Ok(_) => {
                        self.filled = self.buf.len();
                        if !nonblocking || self.complete() {
                            return true;
                        }
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                    Err(_) => {
                        self.eof = true;
                        return false;
                    }
                }
            }
            let old = self.filled;
            if self.buf.len() < old + want {
                self.buf.resize(old + want, 0);
            }
            let r = socket::recv_msg(
                sock.as_fd(),
                &mut self.buf[old..old + want],
                &mut self.fds,
                nonblocking,
                false,
            );
            let got = match &r {
                Ok(r) => r.len.min(want),
                Err(_) => 0,
            };
            self.filled = old + got;
            match r {
                Ok(r) if r.len == 0 => {
                    self.eof = true;
                    return false;
                }
                Ok(_) => {
                    if !nonblocking || self.complete() {
                        return true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(_) => {
                    self.eof = true;
                    return false;
                }
            }
        }
    }

    /// True once the peer closed its end (or the socket failed): nothing more will come.
    pub(crate) fn at_eof(&self) -> bool {
        self.eof
    }

    /// True once a whole frame (or a malformed header) is buffered.
    pub(crate) fn complete(&self) -> bool {
        if self.filled < HEADER {
            return false;
        }
        match self.body_len() {
            Some(len) => (self.filled - HEADER) as u64 >= len,
            None => true,
        }
    }

    fn body_len(&self) -> Option<u64> {
        let len = u64::from_le_bytes(self.buf[5..HEADER].try_into().ok()?);
        (len <= MAX_FRAME).then_some(len)
    }

    /// Reads blocking until a whole frame is buffered, then returns it.
    pub(crate) fn read_blocking(&mut self, sock: impl AsFd) -> Result<Frame> {
        while !self.complete() {
            if !self.pump(sock.as_fd(), false) {
                break;
            }
        }
        self.take()
    }

    /// The buffered frame. Errors when it is incomplete or malformed.
    pub(crate) fn take(&mut self) -> Result<Frame> {
        let (kind, len) = self.check()?;
        let body = self.buf[HEADER..HEADER + len].to_vec();
        self.consume(HEADER + len);
        Ok(Frame {
            kind,
            body,
            fds: std::mem::take(&mut self.fds),
        })
    }

    /// The buffered frame's bytes, header included (the body is `[HEADER..]`), for callers
    /// that read long frames with no fds: when the buffer holds just this frame (the usual
    /// case) its buffer is handed over as it is, without shifting the body in memory. Fds
    /// that came with it are closed. Errors when it is incomplete or malformed.
    pub(crate) fn take_raw(&mut self) -> Result<(u8, Vec<u8>)> {
        let (kind, len) = self.check()?;
        self.fds.clear();
        let whole = if self.filled == HEADER + len {
            let mut b = std::mem::take(&mut self.buf);
            b.truncate(self.filled);
            self.filled = 0;
            b
        } else {
            let b = self.buf[..HEADER + len].to_vec();
            self.consume(HEADER + len);
            b
        };
        Ok((kind, whole))
    }

    /// Drops the first `n` buffered bytes (a frame handed out).
    fn consume(&mut self, n: usize) {
        if n < self.filled {
            self.buf.copy_within(n..self.filled, 0);
        }
        self.filled -= n;
        if self.no_fds {
            self.buf.truncate(self.filled);
        }
    }

    /// Checks the buffered frame: its magic and body length. Returns its kind and length.
    fn check(&self) -> Result<(u8, usize)> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::Disconnected,
                format!("bad frame from the other process: {why}"),
            )
        };
        if self.filled < HEADER {
            return Err(Error::new(
                ErrorKind::Disconnected,
                "the other process ended before sending a whole message",
            ));
        }
        if u32::from_le_bytes(self.buf[..4].try_into().expect("4 bytes")) != MAGIC {
            return Err(bad("wrong magic"));
        }
        let kind = self.buf[4];
        let len = self.body_len().ok_or_else(|| bad("length too large"))? as usize;
        if self.filled - HEADER < len {
            return Err(Error::new(
                ErrorKind::Disconnected,
                "the other process ended in the middle of a message",
            ));
        }
        Ok((kind, len))
    }

    /// Reads blocking until a whole frame is buffered, then returns it as
    /// [`take_raw`](FrameReader::take_raw) does.
    pub(crate) fn read_blocking_raw(&mut self, sock: impl AsFd) -> Result<(u8, Vec<u8>)> {
        while !self.complete() {
            if !self.pump(sock.as_fd(), false) {
                break;
            }
        }
        self.take_raw()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_with_fds() {
        let (a, b) = socket::stream_pair().unwrap();
        let (x, _y) = socket::stream_pair().unwrap();
        let body = vec![7u8; 300_000];
        let t = std::thread::spawn(move || {
            send_frame(a.as_fd(), Tag::Value as u8, &body, &[x.as_fd()]).unwrap();
        });
        let mut r = FrameReader::default();
        let f = r.read_blocking(&b).unwrap();
        t.join().unwrap();
        assert!(Tag::Value.of(&f));
        assert_eq!(f.body.len(), 300_000);
        assert!(f.body.iter().all(|&v| v == 7));
        assert_eq!(f.fds.len(), 1);
    }

    /// Reads `sock` to its end, taking each complete frame with `take`.
    fn drain<T>(
        r: &mut FrameReader,
        sock: &OwnedFd,
        mut take: impl FnMut(&mut FrameReader) -> T,
    ) -> Vec<T> {
        let mut got = Vec::new();
        loop {
            let more = r.pump(sock, false);
            while r.complete() {
                got.push(take(r));
            }
            if !more {
                return got;
            }
        }
    }

    #[test]
    fn several_frames_in_a_row() {
        let (a, b) = socket::stream_pair().unwrap();
        send_frame(a.as_fd(), 20, b"one", &[]).unwrap();
        send_frame(a.as_fd(), 21, b"", &[]).unwrap();
        let mut out = Vec::new();
        push_header(&mut out, FIRST_FREE_KIND, 2);
        out.extend_from_slice(b"xy");
        socket::send_msg(a.as_fd(), &[IoSlice::new(&out)], &[], false).unwrap();
        drop(a);
        let mut r = FrameReader::default();
        let got = drain(&mut r, &b, |r| {
            let f = r.take().unwrap();
            (f.kind, f.body)
        });
        assert_eq!(
            got,
            vec![
                (20, b"one".to_vec()),
                (21, vec![]),
                (FIRST_FREE_KIND, b"xy".to_vec())
            ]
        );
        assert!(r.eof);
    }

    #[test]
    fn raw_frames_keep_their_header() {
        let (a, b) = socket::stream_pair().unwrap();
        send_frame(a.as_fd(), 20, b"one", &[]).unwrap();
        send_frame(a.as_fd(), 21, b"two!", &[]).unwrap();
        drop(a);
        let mut r = FrameReader::default();
        let got = drain(&mut r, &b, |r| {
            let (tag, raw) = r.take_raw().unwrap();
            (tag, raw[HEADER..].to_vec(), raw.len())
        });
        assert_eq!(
            got,
            vec![
                (20, b"one".to_vec(), HEADER + 3),
                (21, b"two!".to_vec(), HEADER + 4)
            ]
        );
        // A frame alone in the buffer: the buffer itself is handed over.
        let mut r = FrameReader {
            filled: 15,
            buf: b"MPRF\x06\x02\0\0\0\0\0\0\0ab".to_vec(),
            ..Default::default()
        };
        let (tag, raw) = r.take_raw().unwrap();
        assert_eq!((tag, &raw[HEADER..]), (6, &b"ab"[..]));
        assert!(r.buf.is_empty());
        let mut r = FrameReader {
            filled: 15,
            buf: b"MPRF\x06\x05\0\0\0\0\0\0\0ab".to_vec(),
            ..Default::default()
        };
        assert!(r.take_raw().is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut r = FrameReader {
            filled: 13,
            buf: b"XXXX\x09\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
            ..Default::default()
        };
        assert!(r.complete());
        assert!(r.take().is_err());
        let mut r = FrameReader {
            filled: 15,
            buf: b"MPRF\x02\x05\0\0\0\0\0\0\0ab".to_vec(),
            ..Default::default()
        };
        assert!(!r.complete());
        assert!(r.take().is_err());
    }

    /// Feeds `bytes` to a reader through a socket the writer then closes, taking every
    /// frame the reader reports complete until the end or the first error; returns the
    /// frames taken and whether it stopped at an error.
    fn read_all(bytes: &[u8], no_fds: bool, raw: bool) -> (Vec<(u8, Vec<u8>)>, bool) {
        let (a, b) = socket::stream_pair().unwrap();
        let writer = {
            let bytes = bytes.to_vec();
            std::thread::spawn(move || {
                let _ = socket::send_msg(a.as_fd(), &[IoSlice::new(&bytes)], &[], false);
            })
        };
        let mut r = if no_fds {
            FrameReader::without_fds()
        } else {
            FrameReader::default()
        };
        let mut got = Vec::new();
        let mut failed = false;
        'read: loop {
            let more = r.pump(&b, false);
            while r.complete() {
                let f = if raw {
                    r.take_raw().map(|(t, v)| (t, v[HEADER..].to_vec()))
                } else {
                    r.take().map(|f| (f.kind, f.body))
                };
                match f {
                    Ok(f) => got.push(f),
                    Err(_) => {
                        failed = true;
                        break 'read;
                    }
                }
            }
            if !more {
                // What is left is a cut-off frame (or nothing): an error, never a panic.
                if r.filled > 0 {
                    failed = r.take().is_err() || failed;
                }
                break;
            }
        }
        writer.join().unwrap();
        (got, failed)
    }

    fn frame_bytes(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (tag, body) in frames {
            push_header(&mut out, *tag, body.len());
            out.extend_from_slice(body);
        }
        out
    }

    #[test]
    fn a_huge_claimed_length_allocates_only_what_arrives() {
        let mut bytes = Vec::new();
        push_header(&mut bytes, Tag::Value as u8, MAX_FRAME as usize);
        bytes.extend_from_slice(&[1; 100]);
        for no_fds in [false, true] {
            let (a, b) = socket::stream_pair().unwrap();
            socket::send_msg(a.as_fd(), &[IoSlice::new(&bytes)], &[], false).unwrap();
            drop(a);
            let mut r = if no_fds {
                FrameReader::without_fds()
            } else {
                FrameReader::default()
            };
            while r.pump(&b, false) {}
            assert!(!r.complete());
            assert!(r.take().is_err());
            assert!(r.buf.capacity() <= 2 << 20, "{} bytes", r.buf.capacity());
        }
        let mut over = Vec::new();
        push_header(&mut over, Tag::Value as u8, MAX_FRAME as usize + 1);
        let (got, failed) = read_all(&over, false, false);
        assert!(
            got.is_empty() && failed,
            "a length over MAX_FRAME is refused at once"
        );
    }

    use proptest::collection::vec;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Whatever a peer writes, the reader returns frames or an error; it never panics.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in vec(any::<u8>(), 0..600),
            no_fds in any::<bool>(),
            raw in any::<bool>(),
        ) {
            let _ = read_all(&bytes, no_fds, raw);
        }

        /// The same, for bytes that start as well-formed frames and then go wrong: every
        /// whole frame before the damage comes back as it was sent.
        #[test]
        fn frames_before_damage_come_back_whole(
            frames in vec((any::<u8>(), vec(any::<u8>(), 0..200)), 0..6),
            damage in vec(any::<u8>(), 0..40),
            no_fds in any::<bool>(),
            raw in any::<bool>(),
        ) {
            let mut bytes = frame_bytes(&frames);
            bytes.extend_from_slice(&damage);
            let (got, failed) = read_all(&bytes, no_fds, raw);
            let sent: Vec<(u8, Vec<u8>)> = frames
                .iter()
                .map(|(t, b)| (*t, b.clone()))
                .collect();
            prop_assert!(got.len() >= sent.len(), "{} of {} frames", got.len(), sent.len());
            prop_assert_eq!(&got[..sent.len()], &sent[..]);
            if damage.is_empty() {
                prop_assert!(!failed);
                prop_assert_eq!(got.len(), sent.len());
            }
        }
    }
}
