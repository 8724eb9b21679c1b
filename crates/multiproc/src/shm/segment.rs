//! A [`Segment`]: one sealed memfd, mapped whole, starting with a validated header.
//!
//! Layout (all little-endian native words, offsets in bytes):
//! ```text
//! 0   magic    u64  b"MPROCSEG"
//! 8   version  u32  LAYOUT_VERSION
//! 12  kind     u32  SegmentKind code
//! 16  len      u64  total length of the file (must equal its size)
//! 24  id       u64  random id, the same in every process (dedupes mappings)
//! 32  what     u32  a named segment's facade type (`kinds::named`); 0 when anonymous
//! 36  reserved u32
//! 40  tag      u64  a named segment's type tag (`codec/ident.rs`); 0 when anonymous
//! 48  reserved up to HEADER_LEN
//! 64  payload  len - 64 bytes
//! ```
//!
//! # Safety
//!
//! This module maps segments and hands out pointers into them: every block says why the mapping
//! is live, large enough and aligned for what is read there.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ShmSafe;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::handle;
use crate::sys::mem::{self, Mapping};

const MAGIC: u64 = u64::from_le_bytes(crate::kinds::magic::SEGMENT);
const LAYOUT_VERSION: u32 = 1;
/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 64;
/// Largest segment we agree to map from a peer (1 TiB): a bound on what a hostile fd can ask.
const MAX_LEN: u64 = 1 << 40;

/// What a segment holds; checked on open so a handle of one kind can't map another's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SegmentKind {
    /// Many small objects (see `arena.rs`).
    Arena,
    /// One object too large for an arena slot, of the given object kind.
    Object(u8),
    /// A queue's ring.
    Queue,
    /// Free for other users inside the crate (pool bookkeeping, ...), by code.
    Other(u8),
}

impl SegmentKind {
    fn code(self) -> u32 {
        match self {
            SegmentKind::Arena => 1,
            SegmentKind::Queue => 2,
            SegmentKind::Object(k) => 0x100 | k as u32,
            SegmentKind::Other(k) => 0x200 | k as u32,
        }
    }
}

#[repr(C)]
pub(super) struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    kind: AtomicU32,
    len: AtomicU64,
    id: AtomicU64,
    /// See [`Identity`]; zero in anonymous segments (the bytes were reserved before).
    pub(super) what: AtomicU32,
    _reserved: AtomicU32,
    pub(super) tag: AtomicU64,
}

/// What a named segment holds beyond its [`SegmentKind`], written in its header by the
/// creator and compared by every process that opens it by name: the facade type (`what`,
/// a code of `kinds::named`, never 0) and the type tag of its contents (`codec/ident.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The facade type (`kinds::named`).
    pub(crate) what: u32,
    /// The type tag of what it holds (0 when the facade is not generic).
    pub(crate) tag: u64,
}

pub(super) struct Inner {
    map: Mapping,
    fd: OwnedFd,
    id: u64,
    kind: SegmentKind,
    /// The name in `/dev/shm` once published or opened by name (`named.rs`).
    pub(super) name: std::sync::OnceLock<String>,
}

/// A shared segment; clones share one mapping. Dropping the last clone in a process unmaps it;
/// the memory is freed when no process maps it or holds its fd.
#[derive(Clone)]
pub(crate) struct Segment(Arc<Inner>);

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("id", &format_args!("{:016x}", self.0.id))
            .field("kind", &self.0.kind)
            .field("len", &self.0.map.len())
            .finish()
    }
}

static REGISTRY: Mutex<Option<HashMap<u64, Weak<Inner>>>> = Mutex::new(None);

pub(super) fn lock_registry() -> MutexGuard<'static, Option<HashMap<u64, Weak<Inner>>>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_id() -> u64 {
    let mut b = [0u8; 8];
    if rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).is_err() {
        // Fall back to time and pid: uniqueness, not secrecy, is what matters.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return t ^ ((std::process::id() as u64) << 40);
    }
    u64::from_ne_bytes(b)
}

impl Segment {
    /// Creates a zero-filled segment with at least `payload_len` payload bytes.
    pub(crate) fn create(kind: SegmentKind, payload_len: usize) -> Result<Segment> {
        let total = Self::total_len(payload_len)?;
        let fd = mem::memfd(c"multiproc", total).context("cannot create shared memory (memfd)")?;
        Self::init(fd, kind, total, None)
    }

    /// The file length for `payload_len` payload bytes: header included, whole pages.
    pub(super) fn total_len(payload_len: usize) -> Result<usize> {
        HEADER_LEN
            .checked_add(payload_len)
            .and_then(|t| t.checked_next_multiple_of(4096))
            .filter(|&t| t as u64 <= MAX_LEN)
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "shared segment size too large"))
    }

    /// Maps `fd` (a fresh zero-filled file of `total` bytes that no one else has) and
    /// writes its header, `identity` included for a named segment.
    pub(super) fn init(
        fd: OwnedFd,
        kind: SegmentKind,
        total: usize,
        identity: Option<Identity>,
    ) -> Result<Segment> {
        let map = Mapping::map(&fd, total).context("cannot map shared memory")?;
        let id = random_id();
        // SAFETY: the mapping is at least HEADER_LEN bytes, page-aligned, and Header is
        // ShmSafe-like (atomics only); no one else has the fd yet.
        let h = unsafe { &*(map.as_ptr() as *const Header) };
        h.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.kind.store(kind.code(), Ordering::Relaxed);
        h.len.store(total as u64, Ordering::Relaxed);
        h.id.store(id, Ordering::Relaxed);
        if let Some(i) = identity {
            h.what.store(i.what, Ordering::Relaxed);
            h.tag.store(i.tag, Ordering::Relaxed);
        }
        h.magic.store(MAGIC, Ordering::Release);
        let inner = Arc::new(Inner {
            map,
            fd,
            id,
            kind,
            name: Default::default(),
        });
        lock_registry()
            .get_or_insert_with(HashMap::new)
            .insert(id, Arc::downgrade(&inner));
        Ok(Segment(inner))
    }

    /// The header (mapped at least HEADER_LEN bytes: checked at create and open).
    pub(super) fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_LEN bytes and page-aligned; the header holds
        // only atomics, valid for any bytes a peer wrote; it lives as long as `&self`.
        unsafe { &*(self.0.map.as_ptr() as *const Header) }
    }

    /// Opens a segment from an fd received from another process, checking that it is a sealed
    /// memfd of a plausible size whose header has our magic, version, `kind` and length. A
    /// segment already mapped in this process is reused.
    ///
    /// A named segment (`named.rs`: a file in `/dev/shm`, which cannot be sealed) is
    /// accepted unsealed only when its header says it is named and the file belongs to this
    /// process's user with no access for others: then only this user can truncate it, who
    /// can open it by name anyway.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidHandle`] when any check fails.
    pub(crate) fn open(fd: OwnedFd, kind: SegmentKind) -> Result<Segment> {
        let sealed = mem::check_sealed(fd.as_fd()).unwrap_or(false);
        if !sealed && !mem::is_private_file(fd.as_fd()).unwrap_or(false) {
            return Err(Self::bad(kind, "not a sealed memfd"));
        }
        let seg = Self::validate(fd, kind)?;
        if !sealed && seg.header().what.load(Ordering::Relaxed) == 0 {
            return Err(Self::bad(kind, "not a sealed memfd"));
        }
        Ok(seg)
    }

    fn bad(kind: SegmentKind, why: &str) -> Error {
        Error::new(
            ErrorKind::InvalidHandle,
            format!("received fd is not a valid multiproc segment of kind {kind:?}: {why}"),
        )
    }

    /// Maps `fd` and checks its size and header (magic, version, `kind`, length); a segment
    /// already mapped in this process is reused.
    pub(super) fn validate(fd: OwnedFd, kind: SegmentKind) -> Result<Segment> {
        let bad = |why: &str| Self::bad(kind, why);
        let size = mem::file_size(fd.as_fd()).map_err(|e| bad(&e.to_string()))?;
        if size < HEADER_LEN as u64 || size > MAX_LEN || size % 4096 != 0 {
            return Err(bad(&format!("implausible size {size}")));
        }
        let map = Mapping::map(&fd, size as usize).context("cannot map received segment")?;
        // SAFETY: the mapping is at least HEADER_LEN bytes and page-aligned; the header holds
        // only atomics, valid for any bytes a peer wrote.
        let h = unsafe { &*(map.as_ptr() as *const Header) };
        if h.magic.load(Ordering::Acquire) != MAGIC {
            return Err(bad("bad magic"));
        }
        if h.version.load(Ordering::Relaxed) != LAYOUT_VERSION {
            return Err(bad("layout version mismatch"));
        }
        if h.kind.load(Ordering::Relaxed) != kind.code() {
            return Err(bad("wrong kind"));
        }
        if h.len.load(Ordering::Relaxed) != size {
            return Err(bad("length in header does not match the file"));
        }
        let id = h.id.load(Ordering::Relaxed);
        let mut reg = lock_registry();
        let reg = reg.get_or_insert_with(HashMap::new);
        if let Some(existing) = reg.get(&id).and_then(Weak::upgrade) {
            if existing.kind == kind && mem::same_file(existing.fd.as_fd(), fd.as_fd()) {
                return Ok(Segment(existing));
            }
        }
        let inner = Arc::new(Inner {
            map,
            fd,
            id,
            kind,
            name: Default::default(),
        });
        reg.retain(|_, w| w.strong_count() > 0);
        reg.insert(id, Arc::downgrade(&inner));
        Ok(Segment(inner))
    }

    /// The name in `/dev/shm` of a named segment (`named.rs`).
    pub(crate) fn name(&self) -> Option<&str> {
        self.0.name.get().map(String::as_str)
    }

    /// Remembers the name a segment was published or opened under.
    pub(super) fn set_name(&self, name: &str) {
        let _ = self.0.name.set(name.to_string());
    }

    /// The fd behind the segment.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.0.fd.as_fd()
    }

    /// The segment's id, equal in every process.
    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    /// The segment's kind.
    pub(crate) fn kind(&self) -> SegmentKind {
        self.0.kind
    }

    /// Start of the payload.
    pub(crate) fn payload(&self) -> *mut u8 {
        // SAFETY: the mapping is at least HEADER_LEN bytes long (checked at create/open).
        unsafe { self.0.map.as_ptr().add(HEADER_LEN) }
    }

    /// Payload length in bytes.
    pub(crate) fn payload_len(&self) -> usize {
        self.0.map.len() - HEADER_LEN
    }

    /// A reference to the `T` at payload `offset`, if it lies wholly inside the payload and is
    /// aligned for `T`. The reference lives as long as this handle.
    pub(crate) fn get<T: ShmSafe>(&self, offset: usize) -> Option<&T> {
        let end = offset.checked_add(std::mem::size_of::<T>())?;
        if end > self.payload_len()
            || !(self.payload() as usize + offset).is_multiple_of(std::mem::align_of::<T>())
        {
            return None;
        }
        // SAFETY: in bounds and aligned (checked above); T is ShmSafe, so any bytes are a
        // valid T and shared access through `&T` is sound; the mapping outlives `&self`.
        Some(unsafe { &*(self.payload().add(offset) as *const T) })
    }

    /// Copies `bytes` into the payload at `offset`; false (nothing written) unless the range
    /// lies wholly inside the payload. For ranges a protocol gives the caller alone (the
    /// other process reads them only after it is told, by a message).
    pub(crate) fn write_bytes(&self, offset: usize, bytes: &[u8]) -> bool {
        match offset.checked_add(bytes.len()) {
            Some(end) if end <= self.payload_len() => {}
            _ => return false,
        }
        // SAFETY: the destination lies inside the mapping (checked above), which outlives
        // `&self`; `ptr::copy` allows the ranges to overlap. Another process writing the same
        // bytes at the same time (a dishonest one: the protocol gives them to us) can only
        // change their values, and every byte value is valid.
        unsafe { std::ptr::copy(bytes.as_ptr(), self.payload().add(offset), bytes.len()) };
        true
    }

    /// Appends the `len` payload bytes at `offset` to `out`; false (nothing appended) unless
    /// the range lies wholly inside the payload. The bytes are untrusted (another process may
    /// have written anything there, even while they are copied).
    pub(crate) fn read_bytes(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool {
        match offset.checked_add(len) {
            Some(end) if end <= self.payload_len() => {}
            _ => return false,
        }
        out.reserve(len);
        let start = out.len();
        // SAFETY: the source lies inside the mapping (checked above), which outlives `&self`;
        // the destination is `len` bytes of spare capacity reserved above in a private `Vec`
        // (heap memory, not this mapping: no overlap), initialized by the copy before
        // `set_len`. A concurrent writer in another process can only change the values
        // copied, and every byte value is valid.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.payload().add(offset),
                out.as_mut_ptr().add(start),
                len,
            );
            out.set_len(start + len);
        }
        true
    }

    /// Frees the pages backing payload range `[offset, offset+len)` (rounded inward to pages).
    pub(crate) fn discard(&self, offset: usize, len: usize) -> Result<()> {
        let start = (HEADER_LEN + offset).next_multiple_of(4096);
        let end = (HEADER_LEN + offset + len) / 4096 * 4096;
        if end > start && end <= self.0.map.len() {
            mem::punch_hole(self.fd(), start as u64, (end - start) as u64)
                .context("cannot release shared memory pages")?;
        }
        Ok(())
    }
}

/// One `T` at a fixed payload offset of a segment, checked (in bounds, aligned) once when
/// made; keeps the segment mapped. For objects at a known place in a segment laid out by its
/// user (a connection's cells), rather than in an arena slot.
pub(crate) struct Placed<T: ShmSafe> {
    seg: Segment,
    offset: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T: ShmSafe> Placed<T> {
    /// The `T` at payload `offset` of `seg`, if it lies wholly inside the payload and is
    /// aligned (see [`Segment::get`]).
    pub(crate) fn new(seg: &Segment, offset: usize) -> Option<Placed<T>> {
        seg.get::<T>(offset)?;
        Some(Placed {
            seg: seg.clone(),
            offset,
            _t: PhantomData,
        })
    }

    /// The object.
    #[inline]
    pub(crate) fn get(&self) -> &T {
        // SAFETY: `offset` was checked in bounds and aligned for `T` by `Segment::get` in
        // `new`; `T` is ShmSafe (any bytes are a valid `T`, shared access through `&T` is
        // sound), and the mapping lives as long as `self.seg`, which `&self` borrows.
        unsafe { &*(self.seg.payload().add(self.offset) as *const T) }
    }
}

impl<T: ShmSafe> Clone for Placed<T> {
    fn clone(&self) -> Self {
        Placed {
            seg: self.seg.clone(),
            offset: self.offset,
            _t: PhantomData,
        }
    }
}

impl<T: ShmSafe> std::fmt::Debug for Placed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placed")
            .field("segment", &format_args!("{:016x}", self.seg.id()))
            .field("offset", &self.offset)
            .finish()
    }
}

/// Wire form of a segment reference: its fd's index in the message's fd table, and its id.
#[derive(Serialize, Deserialize)]
pub(crate) struct WireSegment {
    pub(crate) fd: u32,
    pub(crate) id: u64,
    pub(crate) kind: u32,
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let fd = handle::export_fd(self.fd(), Some(self.id()))
            .map_err(crate::handle::ser_err::<S::Error>)?;
        WireSegment {
            fd,
            id: self.id(),
            kind: self.0.kind.code(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Segment, D::Error> {
        let w = WireSegment::deserialize(d)?;
        let kind = match w.kind {
            1 => SegmentKind::Arena,
            2 => SegmentKind::Queue,
            k if k & !0xff == 0x100 => SegmentKind::Object(k as u8),
            k if k & !0xff == 0x200 => SegmentKind::Other(k as u8),
            k => {
                return Err(crate::handle::de_err::<D::Error>(format!(
                    "unknown segment kind {k}"
                )))
            }
        };
        let fd = handle::import_fd(w.fd).map_err(crate::handle::de_err::<D::Error>)?;
        let seg = Segment::open(fd, kind).map_err(crate::handle::de_err::<D::Error>)?;
        if seg.id() != w.id {
            return Err(crate::handle::de_err::<D::Error>(
                "segment id does not match its description",
            ));
        }
        Ok(seg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, Postcard};

    #[test]
    fn open_validates_what_it_receives() {
        let seg = Segment::create(SegmentKind::Queue, 100).unwrap();
        let dup = || seg.fd().try_clone_to_owned().unwrap();
        // The right fd and kind: the same mapping comes back (deduplicated by id).
        let again = Segment::open(dup(), SegmentKind::Queue).unwrap();
        assert_eq!(again.id(), seg.id());
        assert_eq!(again.payload(), seg.payload());
        // The wrong kind.
        let e = Segment::open(dup(), SegmentKind::Arena).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidHandle);
        // Not a memfd at all.
        let (a, _b) = crate::sys::socket::stream_pair().unwrap();
        let e = Segment::open(a, SegmentKind::Queue).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidHandle);
        // A sealed memfd without our header.
        let fd = mem::memfd(c"stranger", 8192).unwrap();
        let e = Segment::open(fd, SegmentKind::Queue).unwrap_err();
        assert!(e.to_string().contains("magic"), "{e}");
        // An unsealed memfd (a peer could truncate it under our mapping).
        let fd = rustix::fs::memfd_create(c"unsealed", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 8192).unwrap();
        let e = Segment::open(fd, SegmentKind::Queue).unwrap_err();
        assert!(e.to_string().contains("sealed"), "{e}");
    }

    #[test]
    fn get_checks_bounds_and_alignment() {
        let seg = Segment::create(SegmentKind::Queue, 64).unwrap();
        let len = seg.payload_len();
        assert!(seg.get::<AtomicU64>(0).is_some());
        assert!(seg.get::<AtomicU64>(len - 8).is_some());
        assert!(seg.get::<AtomicU64>(len - 7).is_none());
        assert!(seg.get::<AtomicU64>(usize::MAX - 3).is_none());
        assert!(seg.get::<AtomicU64>(4).is_none());
        // `Placed` makes the same checks, once.
        let p = Placed::<AtomicU64>::new(&seg, 8).unwrap();
        p.get().store(7, Ordering::Relaxed);
        assert_eq!(seg.get::<AtomicU64>(8).unwrap().load(Ordering::Relaxed), 7);
        assert!(Placed::<AtomicU64>::new(&seg, len - 7).is_none());
        assert!(Placed::<AtomicU64>::new(&seg, 4).is_none());
    }

    #[test]
    fn handles_need_an_fd_context() {
        let seg = Segment::create(SegmentKind::Queue, 64).unwrap();
        let e = crate::codec::to_vec(&seg).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Codec);
        assert!(e.to_string().contains("file descriptors"), "{e}");
        let (bytes, fds) = handle::with_exported_fds(|| crate::codec::to_vec(&seg)).unwrap();
        assert_eq!(fds.len(), 1);
        let back: Segment = handle::with_imported_fds(fds, || Postcard::decode(&bytes)).unwrap();
        assert_eq!(back.id(), seg.id());
        // The description without its fds is refused, with a message that says why.
        let e = Postcard::decode::<Segment>(&bytes).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Codec);
        assert!(
            e.to_string().contains("carried its file descriptors"),
            "{e}"
        );
    }
}
