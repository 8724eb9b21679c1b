//! [`SharedMemory`]: a block of bytes shared between processes, anonymous or under a name in
//! `/dev/shm` (Python's `multiprocessing.shared_memory.SharedMemory`), and [`View`], a typed
//! window onto it for arrays of numbers.
//!
//! The user's documentation (layout, lifecycle, sharing rules) is on [`SharedMemory`].
//!
//! # Safety
//!
//! Safe methods reach the shared bytes only through relaxed atomic loads and stores, within
//! bounds checked against the mapping; the `unsafe` slice accessors state their contract.
//! Received fds are checked (`SharedMemory::received`) before they are mapped.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicIsize, AtomicU16, AtomicU32, AtomicU64,
    AtomicU8, AtomicUsize, Ordering,
};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::handle;
use crate::sys::mem::{self, Mapping};

/// Largest block we create or agree to map (1 TiB): a bound on what a hostile file can ask.
const MAX_SIZE: u64 = 1 << 40;
/// Longest name: one path component (`NAME_MAX`).
const MAX_NAME: usize = 255;
/// Prefix of made-up names, as Python's (`multiprocessing.shared_memory._SHM_NAME_PREFIX`).
const AUTO_PREFIX: &str = "psm_";

/// A block of bytes shared between processes: anonymous, or named in `/dev/shm` so that
/// unrelated processes (Python's among them) can open it (Python's
/// `multiprocessing.shared_memory.SharedMemory`).
///
/// ```
/// use multiproc::{Process, SharedMemory};
///
/// let shm = SharedMemory::create(4096)?;
/// let child = {
///     let shm = shm.clone();
///     Process::fork(move || shm.write_at(0, b"hello from the child").unwrap())?
/// };
/// child.join()?;
/// let mut buf = [0u8; 20];
/// shm.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"hello from the child");
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// A cheap `Clone` handle; it travels to Spawn children and over a
/// [`Connection`](crate::Connection) as its fd (a named block keeps its name).
///
/// # Layout and compatibility
///
/// The block is the bytes and nothing else: no header, so that Python's
/// `SharedMemory(name=...)` opens a named block of ours and sees exactly our bytes, and we
/// open one of Python's. Names are what `shm_open(3)` takes, without the leading `/`: the
/// file `/dev/shm/<name>` (Python, glibc and we agree on that). Names made up for
/// [`SharedMemory::create_unique`] look like Python's: `psm_` and 8 hex digits.
///
/// # Lifecycle
///
/// - An anonymous block ([`SharedMemory::create`]) is a sealed memfd: nothing is left behind
///   by a crash, the kernel frees it when the last process that maps it is gone. It reaches
///   children by fork, by Spawn arguments and inside [`Connection::send`](crate::Connection::send)
///   (as an fd), never by name.
/// - A named block ([`SharedMemory::create_named`]) outlives every process until someone
///   calls [`SharedMemory::unlink`] (or [`SharedMemory::unlink_name`]), as in Python and C.
///   Creating a name that exists fails with [`ErrorKind::AlreadyExists`] (Python's
///   `FileExistsError`): a name left by a crashed creator is never reused by accident. A
///   later run removes it with `unlink_name` and creates it anew. Unlinking removes the name
///   only; processes that have the block mapped keep using it.
/// - Dropping the last handle in a process unmaps the block there (Python's `close()`).
///
/// # Sharing rules
///
/// Other processes read and write the bytes at any time, so no safe method hands out a
/// `&[u8]` or `&mut [u8]` into them. The safe accesses copy with relaxed atomic loads and
/// stores ([`read_at`](SharedMemory::read_at), [`write_at`](SharedMemory::write_at),
/// [`View`]), or are atomics ([`View::atomics`]); a plain slice is there through the
/// `unsafe` [`as_slice`](SharedMemory::as_slice) / [`as_mut_slice`](SharedMemory::as_mut_slice),
/// whose callers promise that no one writes (or, for the mutable one, touches) those bytes
/// meanwhile. Every offset and length is checked against the block's size.
///
/// A named block cannot be sealed: another process of the same user may truncate
/// `/dev/shm/<name>`, and a process that then touches the lost pages gets SIGBUS (as in
/// Python and C). Anonymous blocks are sealed against that. Creating a named block allocates
/// its pages at once, so a `/dev/shm` that is too small (Docker's default is 64 MiB) is an
/// error at creation ([`ErrorKind::Os`], `ENOSPC`), not a SIGBUS later.
#[derive(Clone)]
pub struct SharedMemory {
    inner: Arc<Inner>,
}

struct Inner {
    map: Mapping,
    fd: OwnedFd,
    /// The name in `/dev/shm`, without a leading `/`; `None` for an anonymous block.
    name: Option<String>,
    size: usize,
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.inner.name)
            .field("size", &self.inner.size)
            .finish()
    }
}

fn bad_size(size: usize) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("shared memory size must be between 1 byte and 1 TiB, not {size}"),
    )
}

/// The name as `/dev/shm` knows it: leading `/`s stripped (as glibc's `shm_open` does), then
/// one non-empty path component.
pub(super) fn check_name(name: &str) -> Result<&str> {
    let n = name.trim_start_matches('/');
    let why = if n.is_empty() {
        Some("it is empty")
    } else if n.len() > MAX_NAME {
        Some("it is longer than 255 bytes")
    } else if n.contains('/') {
        Some("it contains '/'")
    } else if n.contains('\0') {
        Some("it contains a NUL byte")
    } else if n == "." || n == ".." {
        Some("it is not a file name")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("invalid shared memory name {name:?}: {why}"),
        )),
        None => Ok(n),
    }
}

fn os_error(what: String, name: &str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EEXIST) => Error::new(
            ErrorKind::AlreadyExists,
            format!("shared memory {name:?} exists already (remove a stale one with SharedMemory::unlink_name)"),
        )
        .with_source(e),
        Some(libc::ENOENT) => Error::new(
            ErrorKind::NotFound,
            format!("no shared memory named {name:?}"),
        )
        .with_source(e),
        _ => Error::os(what, e),
    }
}

impl SharedMemory {
    /// A new anonymous block of `size` zero bytes (a sealed memfd: nothing to unlink, nothing
    /// left by a crash). Share it by fork, Spawn arguments or a [`Connection`](crate::Connection).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a size of 0 or over 1 TiB; an OS error when the
    /// memory cannot be had.
    pub fn create(size: usize) -> Result<SharedMemory> {
        if size == 0 || size as u64 > MAX_SIZE {
            return Err(bad_size(size));
        }
        let fd = mem::memfd(c"multiproc-shm", size)
            .map_err(|e| Error::os("cannot create shared memory (memfd)", e))?;
        Self::map(fd, None, size)
    }

    /// A new block of `size` zero bytes named `name` in `/dev/shm` (mode 0600), which
    /// unrelated processes of the same user open with [`open`](Self::open) — or Python's
    /// `SharedMemory(name=name)`. The name stays until [`unlink`](Self::unlink).
    ///
    /// ```
    /// use multiproc::{ErrorKind, SharedMemory};
    /// # let name = format!("doc_create_named_{}", std::process::id());
    /// let shm = SharedMemory::create_named(&name, 1024)?;
    /// assert_eq!(shm.name(), Some(name.as_str()));
    /// // A second creation of the same name is refused.
    /// let again = SharedMemory::create_named(&name, 1024).unwrap_err();
    /// assert_eq!(again.kind(), ErrorKind::AlreadyExists);
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] when the name is taken; [`ErrorKind::InvalidArgument`]
    /// for a bad name (empty, with `/` inside, over 255 bytes) or size; an OS error otherwise
    /// (`ENOSPC`: `/dev/shm` is too small).
    pub fn create_named(name: &str, size: usize) -> Result<SharedMemory> {
        let name = check_name(name)?;
        if size == 0 || size as u64 > MAX_SIZE {
            return Err(bad_size(size));
        }
        let fd = mem::shm_create(name, size).map_err(|e| {
            os_error(
                format!("cannot create shared memory {name:?} in /dev/shm"),
                name,
                e,
            )
        })?;
        Self::map(fd, Some(name.to_string()), size).inspect_err(|_| {
            let _ = mem::shm_unlink(name);
        })
    }

    /// A new named block under a fresh name like Python's (`psm_` and 8 hex digits; Python's
    /// `SharedMemory(create=True, size=size)`); [`name`](Self::name) tells it.
    ///
    /// # Errors
    /// As [`create_named`](Self::create_named).
    pub fn create_unique(size: usize) -> Result<SharedMemory> {
        loop {
            let mut b = [0u8; 4];
            rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())
                .map_err(|e| Error::os("cannot make up a shared memory name", e.into()))?;
            let name = format!("{AUTO_PREFIX}{:08x}", u32::from_ne_bytes(b));
            match Self::create_named(&name, size) {
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                r => return r,
            }
        }
    }

    /// Opens the block named `name` (made by [`create_named`](Self::create_named) in any
    /// process, or by Python's `SharedMemory(create=True, ...)`); its size is the file's.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when no block has that name; [`ErrorKind::InvalidHandle`] when
    /// `/dev/shm/<name>` is not a plausible block (a symlink, a directory or device, empty,
    /// over 1 TiB); [`ErrorKind::InvalidArgument`] for a bad name; an OS error otherwise
    /// (`EACCES`: another user's).
    pub fn open(name: &str) -> Result<SharedMemory> {
        let name = check_name(name)?;
        let fd = mem::shm_open(name).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | None => Error::new(
                ErrorKind::InvalidHandle,
                format!("/dev/shm/{name} is not shared memory (a symlink or special file)"),
            )
            .with_source(e),
            _ => os_error(format!("cannot open shared memory {name:?}"), name, e),
        })?;
        let size = mem::file_size(fd.as_fd())
            .map_err(|e| Error::os(format!("cannot stat shared memory {name:?}"), e))?;
        if size == 0 || size > MAX_SIZE {
            return Err(Error::new(
                ErrorKind::InvalidHandle,
                format!("shared memory {name:?} has an implausible size of {size} bytes"),
            ));
        }
        Self::map(fd, Some(name.to_string()), size as usize)
    }

    /// Removes the name `name` from `/dev/shm` without opening it: cleaning up a block left
    /// by a crashed process (Python's `SharedMemory(name).unlink()`). Processes that have it
    /// mapped keep it.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when there is no such name; [`ErrorKind::InvalidArgument`] for
    /// a bad name; an OS error otherwise.
    pub fn unlink_name(name: &str) -> Result<()> {
        let name = check_name(name)?;
        mem::shm_unlink(name)
            .map_err(|e| os_error(format!("cannot unlink shared memory {name:?}"), name, e))
    }

    fn map(fd: OwnedFd, name: Option<String>, size: usize) -> Result<SharedMemory> {
        let map = Mapping::map(&fd, size).map_err(|e| Error::os("cannot map shared memory", e))?;
        Ok(SharedMemory {
            inner: Arc::new(Inner {
                map,
                fd,
                name,
                size,
            }),
        })
    }

    /// Removes this block's name from `/dev/shm` (Python's `unlink()`): no process can open
    /// it any more; those that have it keep using it, and the memory is freed when the last
    /// one lets go. Call it once, in the process that owns the name.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] for an anonymous block; [`ErrorKind::NotFound`] when the
    /// name is gone already; [`ErrorKind::InvalidState`] too when the name now belongs to
    /// another block (removed and created again since): that one is left alone.
    pub fn unlink(&self) -> Result<()> {
        let Some(name) = self.inner.name.as_deref() else {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "anonymous shared memory has no name to unlink",
            ));
        };
        let same = mem::shm_names_file(name, self.inner.fd.as_fd())
            .map_err(|e| os_error(format!("cannot look up shared memory {name:?}"), name, e))?;
        if !same {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!("shared memory {name:?} was replaced by another block: not unlinked"),
            ));
        }
        Self::unlink_name(name)
    }

    /// The size in bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// The name in `/dev/shm` (without a leading `/`, as Python's `name`), or `None` for an
    /// anonymous block.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// The start of the block in this process. Reading or writing through it is `unsafe` and
    /// races with every other process: see the [sharing rules](SharedMemory#sharing-rules).
    pub fn as_ptr(&self) -> *mut u8 {
        self.inner.map.as_ptr()
    }

    fn range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.inner.size => Ok(()),
            _ => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "range {offset}+{len} is outside shared memory of {} bytes",
                    self.inner.size
                ),
            )),
        }
    }

    /// Copies `buf.len()` bytes from offset `offset` into `buf`. Other processes may write
    /// meanwhile: then `buf` holds a mix of old and new bytes (never undefined behavior).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when the range is outside the block (nothing copied).
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.range(offset, buf.len())?;
        // SAFETY: the range lies inside the mapping (checked above), which `&self` keeps.
        unsafe { copy_out(self.as_ptr().add(offset), buf) };
        Ok(())
    }

    /// Copies `bytes` into the block at offset `offset`, as atomic stores (no torn words of
    /// 8 bytes on 8-byte boundaries; no order between words).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when the range is outside the block (nothing written).
    pub fn write_at(&self, offset: usize, bytes: &[u8]) -> Result<()> {
        self.range(offset, bytes.len())?;
        // SAFETY: the range lies inside the mapping (checked above), which `&self` keeps.
        unsafe { copy_in(bytes, self.as_ptr().add(offset)) };
        Ok(())
    }

    /// A copy of the whole block.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.inner.size];
        // SAFETY: the whole mapping, which `&self` keeps.
        unsafe { copy_out(self.as_ptr(), &mut v) };
        v
    }

    /// The block as a byte slice, without copying (Python's `buf`, read-only).
    ///
    /// # Safety
    /// While the slice lives, no one — no other process, no other handle or thread in this
    /// one — may write to the block (a plain shared slice must not change under it). Use
    /// [`read_at`](Self::read_at) or a [`View`] when others write.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `size` readable bytes kept by `&self`; the caller promises
        // that nothing writes them while the slice lives.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.inner.size) }
    }

    /// The block as a mutable byte slice, without copying (Python's `buf`).
    ///
    /// # Safety
    /// While the slice lives, no one else — no other process, no other handle or thread in
    /// this one — may read or write the block.
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `size` writable bytes kept by `&mut self`; the caller
        // promises exclusive access to them while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.inner.size) }
    }

    /// The whole block as an array of `T` (`size / size_of::<T>()` elements; trailing bytes
    /// left out), shared with other processes without copying.
    ///
    /// ```
    /// use multiproc::{Process, SharedMemory};
    /// let shm = SharedMemory::create(8 * 1000)?;
    /// let child = {
    ///     let shm = shm.clone();
    ///     Process::fork(move || {
    ///         let v = shm.view::<f64>();
    ///         for i in 0..v.len() {
    ///             v.set(i, i as f64 / 2.0);
    ///         }
    ///     })?
    /// };
    /// child.join()?;
    /// let v = shm.view::<f64>();
    /// assert_eq!(v.len(), 1000);
    /// assert_eq!(v.get(3), Some(1.5));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn view<T: Element>(&self) -> View<'_, T> {
        let len = self.inner.size / std::mem::size_of::<T>();
        // The mapping is page-aligned: aligned for every element type.
        View::new(self.as_ptr(), len)
    }

    /// `len` elements of type `T` starting at byte `offset`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when they do not fit in the block or `offset` is not a
    /// multiple of `T`'s alignment.
    pub fn view_at<T: Element>(&self, offset: usize, len: usize) -> Result<View<'_, T>> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "view length overflows"))?;
        self.range(offset, bytes)?;
        if !offset.is_multiple_of(std::mem::align_of::<T::Atomic>()) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "offset {offset} is not aligned for {} (a multiple of {} bytes)",
                    std::any::type_name::<T>(),
                    std::mem::align_of::<T::Atomic>()
                ),
            ));
        }
        // SAFETY: `offset` is inside the mapping (range checked above).
        Ok(View::new(unsafe { self.as_ptr().add(offset) }, len))
    }
}

impl AsFd for SharedMemory {
    /// The memfd or `/dev/shm` file behind the block.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}

/// Copies `dst.len()` bytes out of shared memory at `src`: relaxed atomic loads, 8 bytes at
/// a time where aligned.
///
/// # Safety
/// `src..src + dst.len()` must lie inside a live shared mapping.
unsafe fn copy_out(src: *const u8, dst: &mut [u8]) {
    let n = dst.len();
    let mut i = 0;
    let head = (src as usize).wrapping_neg() % 8;
    while i < n && i < head {
        // SAFETY: in bounds (caller); an `AtomicU8` has no alignment requirement.
        dst[i] = unsafe { &*(src.add(i) as *const AtomicU8) }.load(Ordering::Relaxed);
        i += 1;
    }
    let words = (n - i) / 8;
    let src_words: &[AtomicU64] = if words == 0 {
        &[]
    } else {
        // SAFETY: in bounds (caller), and 8-aligned: with a whole word left, the head loop
        // ran to the alignment boundary.
        unsafe { std::slice::from_raw_parts(src.add(i) as *const AtomicU64, words) }
    };
    for (chunk, w) in dst[i..i + words * 8].chunks_exact_mut(8).zip(src_words) {
        chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
    }
    i += words * 8;
    while i < n {
        // SAFETY: as for the head.
        dst[i] = unsafe { &*(src.add(i) as *const AtomicU8) }.load(Ordering::Relaxed);
        i += 1;
    }
}

/// Copies `src` into shared memory at `dst`: relaxed atomic stores, 8 bytes at a time where
/// aligned.
///
/// # Safety
/// `dst..dst + src.len()` must lie inside a live shared mapping.
unsafe fn copy_in(src: &[u8], dst: *mut u8) {
    let n = src.len();
    let mut i = 0;
    let head = (dst as usize).wrapping_neg() % 8;
    while i < n && i < head {
        // SAFETY: in bounds (caller); an `AtomicU8` has no alignment requirement.
        unsafe { &*(dst.add(i) as *const AtomicU8) }.store(src[i], Ordering::Relaxed);
        i += 1;
    }
    let words = (n - i) / 8;
    let dst_words: &[AtomicU64] = if words == 0 {
        &[]
    } else {
        // SAFETY: in bounds (caller), and 8-aligned: with a whole word left, the head loop
        // ran to the alignment boundary.
        unsafe { std::slice::from_raw_parts(dst.add(i) as *const AtomicU64, words) }
    };
    for (chunk, w) in src[i..i + words * 8].chunks_exact(8).zip(dst_words) {
        let bytes: [u8; 8] = chunk.try_into().expect("8 bytes");
        w.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
    }
    i += words * 8;
    while i < n {
        // SAFETY: as for the head.
        unsafe { &*(dst.add(i) as *const AtomicU8) }.store(src[i], Ordering::Relaxed);
        i += 1;
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A number type a [`View`] can hold: `u8`..`u64`, `i8`..`i64`, `usize`, `isize`, `f32`,
/// `f64` (every bit pattern valid, no pointers). Each is accessed through its atomic twin
/// (`f32` through `AtomicU32`'s bits), so other processes may write at the same time.
/// Sealed: not implementable outside this crate.
pub trait Element: Copy + sealed::Sealed + 'static {
    /// The atomic type of the same size and bits: `AtomicU32` for `u32` and `f32`, ...
    type Atomic: Sync + 'static;
    /// Loads the element.
    fn load(a: &Self::Atomic, order: Ordering) -> Self;
    /// Stores the element.
    fn store(a: &Self::Atomic, value: Self, order: Ordering);
}

macro_rules! element {
    ($($t:ty => $a:ty),*) => { $(
        impl sealed::Sealed for $t {}
        const _: () = assert!(
            std::mem::size_of::<$t>() == std::mem::size_of::<$a>()
                && std::mem::align_of::<$t>() <= std::mem::align_of::<$a>()
        );
        impl Element for $t {
            type Atomic = $a;
            #[inline]
            fn load(a: &$a, order: Ordering) -> $t {
                a.load(order)
            }
            #[inline]
            fn store(a: &$a, value: $t, order: Ordering) {
                a.store(value, order)
            }
        }
    )* };
}
element!(
    u8 => AtomicU8, i8 => AtomicI8, u16 => AtomicU16, i16 => AtomicI16,
    u32 => AtomicU32, i32 => AtomicI32, u64 => AtomicU64, i64 => AtomicI64,
    usize => AtomicUsize, isize => AtomicIsize
);

macro_rules! float_element {
    ($($t:ty => $a:ty),*) => { $(
        impl sealed::Sealed for $t {}
        const _: () = assert!(std::mem::size_of::<$t>() == std::mem::size_of::<$a>());
        impl Element for $t {
            type Atomic = $a;
            #[inline]
            fn load(a: &$a, order: Ordering) -> $t {
                <$t>::from_bits(a.load(order))
            }
            #[inline]
            fn store(a: &$a, value: $t, order: Ordering) {
                a.store(value.to_bits(), order)
            }
        }
    )* };
}
float_element!(f32 => AtomicU32, f64 => AtomicU64);

/// A typed window onto a [`SharedMemory`]: `len` elements of `T`, read and written in place
/// (no copy) by every process that maps the block — Python's
/// `np.ndarray(shape, dtype, buffer=shm.buf)` or `shm.buf.cast('d')`.
///
/// Each element access is one atomic load or store (relaxed by default; [`load`](Self::load)
/// and [`store`](Self::store) take an ordering), so concurrent writers never make a torn
/// element. For read-modify-write (`fetch_add`, `compare_exchange`) use
/// [`atomics`](Self::atomics); for a plain slice (say, for a numeric library) while nobody
/// writes, the `unsafe` [`as_slice`](Self::as_slice).
pub struct View<'a, T: Element> {
    ptr: NonNull<T::Atomic>,
    len: usize,
    _shm: PhantomData<&'a SharedMemory>,
}

impl<T: Element> fmt::Debug for View<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .finish()
    }
}

impl<'a, T: Element> View<'a, T> {
    /// `ptr` must point into a mapping kept for `'a`, aligned for `T::Atomic`, with `len`
    /// elements in bounds (the callers in `SharedMemory` check).
    fn new(ptr: *mut u8, len: usize) -> View<'a, T> {
        debug_assert!((ptr as usize).is_multiple_of(std::mem::align_of::<T::Atomic>()));
        View {
            ptr: NonNull::new(ptr.cast()).expect("a mapping is never at address 0"),
            len,
            _shm: PhantomData,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements as atomics, for read-modify-write from several processes:
    /// `view.atomics()[i].fetch_add(1, Ordering::Relaxed)` (floats as their bits).
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// let shm = multiproc::SharedMemory::create(64)?;
    /// let counters = shm.view::<u64>();
    /// counters.atomics()[0].fetch_add(5, Ordering::Relaxed);
    /// assert_eq!(counters.get(0), Some(5));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn atomics(&self) -> &'a [T::Atomic] {
        // SAFETY: `len` aligned atomics inside a mapping kept for `'a` (checked by the
        // constructor's callers); atomics allow shared mutation, and every bit pattern is a
        // valid value of these integer atomics.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Element `i` (a relaxed load), or `None` past the end.
    pub fn get(&self, i: usize) -> Option<T> {
        self.atomics().get(i).map(|a| T::load(a, Ordering::Relaxed))
    }

    /// Sets element `i` (a relaxed store).
    ///
    /// # Panics
    /// When `i` is past the end.
    pub fn set(&self, i: usize, value: T) {
        self.store(i, value, Ordering::Relaxed)
    }

    /// Element `i`, loaded with `order`.
    ///
    /// # Panics
    /// When `i` is past the end, or `order` is `Release` or `AcqRel`.
    pub fn load(&self, i: usize, order: Ordering) -> T {
        T::load(self.at(i), order)
    }

    /// Stores `value` into element `i` with `order`.
    ///
    /// # Panics
    /// When `i` is past the end, or `order` is `Acquire` or `AcqRel`.
    pub fn store(&self, i: usize, value: T, order: Ordering) {
        T::store(self.at(i), value, order)
    }

    fn at(&self, i: usize) -> &'a T::Atomic {
        let len = self.len;
        self.atomics()
            .get(i)
            .unwrap_or_else(|| panic!("index {i} out of range for a view of {len} elements"))
    }

    /// Copies the elements into `out`.
    ///
    /// # Panics
    /// When `out.len()` differs from [`len`](Self::len).
    pub fn copy_to_slice(&self, out: &mut [T]) {
        assert_eq!(out.len(), self.len, "copy_to_slice: lengths differ");
        for (o, a) in out.iter_mut().zip(self.atomics()) {
            *o = T::load(a, Ordering::Relaxed);
        }
    }

    /// Copies `items` into the view.
    ///
    /// # Panics
    /// When `items.len()` differs from [`len`](Self::len).
    pub fn copy_from_slice(&self, items: &[T]) {
        assert_eq!(items.len(), self.len, "copy_from_slice: lengths differ");
        for (a, &v) in self.atomics().iter().zip(items) {
            T::store(a, v, Ordering::Relaxed);
        }
    }

    /// A copy of the elements.
    pub fn to_vec(&self) -> Vec<T> {
        self.atomics()
            .iter()
            .map(|a| T::load(a, Ordering::Relaxed))
            .collect()
    }

    /// The elements, in order (each a relaxed load when reached).
    pub fn iter(&self) -> impl Iterator<Item = T> + 'a {
        self.atomics().iter().map(|a| T::load(a, Ordering::Relaxed))
    }

    /// The elements as a plain slice, without copying.
    ///
    /// # Safety
    /// While the slice lives, nobody (no process, no thread) may write these elements.
    pub unsafe fn as_slice(&self) -> &'a [T] {
        // SAFETY: `T` has the size of `T::Atomic` and no larger alignment (checked at
        // compile time in `element!`), the elements are in bounds of a mapping kept for
        // `'a`, every bit pattern is a valid `T`, and the caller promises no writes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<T>(), self.len) }
    }

    /// The elements as a plain mutable slice, without copying.
    ///
    /// # Safety
    /// While the slice lives, nobody else (no process, no thread, no other view) may read
    /// or write these elements.
    pub unsafe fn as_mut_slice(&mut self) -> &'a mut [T] {
        // SAFETY: as in `as_slice`, and the caller promises exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<T>(), self.len) }
    }
}

// SAFETY: a view only reaches its elements through atomics (or `unsafe` methods whose
// callers promise exclusivity); the mapping it borrows is `Sync`.
unsafe impl<T: Element> Send for View<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Element> Sync for View<'_, T> {}

/// Wire form: the fd's index in the message's fd table, the size, and the name if any.
#[derive(Serialize, Deserialize)]
struct Wire {
    fd: u32,
    size: u64,
    name: Option<String>,
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let fd =
            handle::export_fd(self.inner.fd.as_fd(), None).map_err(handle::ser_err::<S::Error>)?;
        Wire {
            fd,
            size: self.inner.size as u64,
            name: self.inner.name.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<SharedMemory, D::Error> {
        let w = Wire::deserialize(d)?;
        let fd = handle::import_fd(w.fd).map_err(handle::de_err::<D::Error>)?;
        SharedMemory::received(fd, w.size, w.name).map_err(handle::de_err::<D::Error>)
    }
}

impl SharedMemory {
    /// Checks a block received from another process: a regular file of at least the size
    /// announced; sealed against shrinking when anonymous; a valid name when named.
    fn received(fd: OwnedFd, size: u64, name: Option<String>) -> Result<SharedMemory> {
        let bad = |why: String| {
            Error::new(
                ErrorKind::InvalidHandle,
                format!("received fd is not valid shared memory: {why}"),
            )
        };
        if size == 0 || size > MAX_SIZE {
            return Err(bad(format!("implausible size {size}")));
        }
        if !mem::is_regular_file(fd.as_fd()).unwrap_or(false) {
            return Err(bad("not a regular file".into()));
        }
        let actual = mem::file_size(fd.as_fd()).map_err(|e| bad(e.to_string()))?;
        if actual < size {
            return Err(bad(format!("the file has {actual} bytes, not {size}")));
        }
        let name = match name {
            Some(n) => Some(check_name(&n).map_err(|e| bad(e.to_string()))?.to_string()),
            None => {
                if !mem::check_sealed(fd.as_fd()).unwrap_or(false) {
                    return Err(bad("anonymous block is not a sealed memfd".into()));
                }
                None
            }
        };
        SharedMemory::map(fd, name, size as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_name(tag: &str) -> String {
        format!("mproc_unit_{tag}_{}", std::process::id())
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "/", "a/b", "..", ".", "x\0y", &"n".repeat(256)] {
            let e = SharedMemory::create_named(bad, 10).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}: {e}");
            assert_eq!(
                SharedMemory::open(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
        }
        assert_eq!(check_name("/psm_1").unwrap(), "psm_1");
    }

    #[test]
    fn sizes_are_checked() {
        assert_eq!(
            SharedMemory::create(0).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let e = SharedMemory::create_named(&test_name("zero"), 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(!std::path::Path::new(&format!("/dev/shm/{}", test_name("zero"))).exists());
    }

    #[test]
    fn copies_at_every_alignment() {
        let shm = SharedMemory::create(100).unwrap();
        let data: Vec<u8> = (0..100u8).collect();
        for off in 0..20 {
            for len in [0, 1, 7, 8, 9, 31, 80] {
                shm.write_at(off, &data[..len]).unwrap();
                let mut out = vec![0u8; len];
                shm.read_at(off, &mut out).unwrap();
                assert_eq!(out, &data[..len]);
            }
        }
        assert!(shm.write_at(95, &[0; 6]).is_err());
        assert!(shm.read_at(usize::MAX, &mut [0; 2]).is_err());
        assert!(shm.view_at::<u64>(4, 1).is_err());
        assert!(shm.view_at::<u64>(8, 12).is_err());
        assert_eq!(shm.view_at::<u32>(4, 24).unwrap().len(), 24);
    }

    #[test]
    fn unlink_checks_it_is_the_same_block() {
        let name = test_name("replaced");
        let a = SharedMemory::create_named(&name, 10).unwrap();
        SharedMemory::unlink_name(&name).unwrap();
        let b = SharedMemory::create_named(&name, 10).unwrap();
        assert_eq!(a.unlink().unwrap_err().kind(), ErrorKind::InvalidState);
        b.unlink().unwrap();
        assert_eq!(b.unlink().unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(
            SharedMemory::create(10)
                .unwrap()
                .unlink()
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidState
        );
    }
}
