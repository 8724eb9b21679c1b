//! Shared memory: anonymous `memfd_create` segments, and named files in `/dev/shm` (what
//! `shm_open(3)` makes), mapped `MAP_SHARED`.
//!
//! # Safety
//!
//! [`Mapping`] owns a `MAP_SHARED` mapping of a whole memfd and unmaps it on drop; it hands
//! out only its base address and length. The memfd is sealed against shrinking and growing
//! before it is mapped by anyone who validates it ([`check_sealed`]), so no peer can truncate
//! it under a mapping (which would turn loads into SIGBUS).

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// Creates a sealed anonymous memfd of `len` bytes (zero-filled; pages are allocated lazily).
pub(crate) fn memfd(name: &CStr, len: usize) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
    Ok(fd)
}

/// A sealed memfd holding a copy of `bytes`.
pub(crate) fn memfd_with(name: &CStr, bytes: &[u8]) -> io::Result<OwnedFd> {
    let fd = memfd(name, bytes.len())?;
    let mut done = 0;
    while done < bytes.len() {
        match rustix::io::pwrite(&fd, &bytes[done..], done as u64) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(fd)
}

/// The first `len` bytes of the file behind `fd` (an error if it is shorter).
pub(crate) fn read_prefix(fd: BorrowedFd<'_>, len: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match rustix::io::pread(fd, &mut out[done..], done as u64) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Size in bytes of the file behind `fd`.
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_size as u64)
}

/// True when `fd` is a memfd that can no longer shrink or grow.
pub(crate) fn check_sealed(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let seals = rustix::fs::fcntl_get_seals(fd)?;
    Ok(seals.contains(SealFlags::SHRINK | SealFlags::GROW))
}

/// Frees the pages backing `[offset, offset + len)` of a memfd; the range reads as zeros after.
pub(crate) fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    rustix::fs::fallocate(
        fd,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        len,
    )?;
    Ok(())
}

/// A read-write `MAP_SHARED` mapping of a whole file, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; all access to the shared bytes
// goes through atomics or through raw pointers whose users document their synchronization.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only exposes the base pointer and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0, shared and read-write.
    pub(crate) fn map(fd: impl AsFd, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        // SAFETY: a fresh mapping chosen by the kernel (null hint) aliases no Rust object.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd.as_fd(),
                0,
            )?
        };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }

    /// Base address of the mapping.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created and still owns; nobody
        // can use it after drop since every borrower borrows `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Where POSIX shared memory names live (what glibc's `shm_open(3)` opens).
const SHM_DIR: &str = "/dev/shm/";

fn shm_path(name: &str) -> String {
    format!("{SHM_DIR}{name}")
}

/// Creates `/dev/shm/<name>` (exclusively: `EEXIST` when the name is taken), mode 0600, of
/// `len` bytes, with its pages allocated now (`fallocate`), so a full `/dev/shm` is an error
/// here (`ENOSPC`) instead of a SIGBUS at the first write. `name` must be validated (one path
/// component). On failure after the file was created, it is removed again.
///
/// # References
/// `shm_open(3)`, `fallocate(2)`.
pub(crate) fn shm_create(name: &str, len: usize) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let path = shm_path(name);
    let fd = rustix::fs::open(
        path.as_str(),
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )?;
    let sized = rustix::fs::ftruncate(&fd, len as u64).and_then(|()| {
        match rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, len as u64) {
            // A file system without fallocate: the pages come lazily, as in Python.
            Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
            r => r,
        }
    });
    if let Err(e) = sized {
        let _ = rustix::fs::unlink(path.as_str());
        return Err(e.into());
    }
    Ok(fd)
}

/// Opens an existing `/dev/shm/<name>` read-write, refusing symlinks (`O_NOFOLLOW`) and
/// anything but a regular file (a FIFO or device there must not block or be mapped).
pub(crate) fn shm_open(name: &str) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        shm_path(name).as_str(),
        OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    if !is_regular_file(fd.as_fd())? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(fd)
}

/// Removes the name `/dev/shm/<name>` (the memory lives on while anyone maps it).
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    Ok(rustix::fs::unlink(shm_path(name).as_str())?)
}

/// True when `/dev/shm/<name>` is the same file as `fd` (same device and inode).
pub(crate) fn shm_names_file(name: &str, fd: BorrowedFd<'_>) -> io::Result<bool> {
    use rustix::fs::{AtFlags, CWD};
    let by_name = rustix::fs::statat(CWD, shm_path(name).as_str(), AtFlags::SYMLINK_NOFOLLOW)?;
    let by_fd = rustix::fs::fstat(fd)?;
    Ok(by_name.st_dev == by_fd.st_dev && by_name.st_ino == by_fd.st_ino)
}

/// True when `fd` is a regular file (a memfd is one too).
pub(crate) fn is_regular_file(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let st = rustix::fs::fstat(fd)?;
    Ok(rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile)
}

/// True when `fd` and `other` are the same file (same device and inode).
pub(crate) fn same_file(fd: BorrowedFd<'_>, other: BorrowedFd<'_>) -> bool {
    match (rustix::fs::fstat(fd), rustix::fs::fstat(other)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// True when `fd` is a regular file owned by this process's effective user, with no
/// permission bits for group or others: only this user can truncate it.
pub(crate) fn is_private_file(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let st = rustix::fs::fstat(fd)?;
    Ok(
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
            && st.st_uid == rustix::process::geteuid().as_raw()
            && st.st_mode & 0o077 == 0,
    )
}

/// A new file of `len` bytes in `/dev/shm` without a name (`O_TMPFILE`, mode 0600), to be
/// set up and then given a name at once by [`shm_link`]: no process can open a half-made
/// one, and a crash before the link leaves nothing. The first `alloc` bytes get their pages
/// now (`fallocate`), so a full `/dev/shm` is an error here rather than a SIGBUS later.
///
/// # References
/// `open(2)` (`O_TMPFILE`, and its example of `linkat` through `/proc/self/fd`).
pub(crate) fn shm_tmpfile(len: usize, alloc: usize) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        SHM_DIR,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    if alloc > 0 {
        match rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, alloc.min(len) as u64) {
            Err(rustix::io::Errno::OPNOTSUPP) | Ok(()) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(fd)
}

/// Gives the unnamed file `fd` (from [`shm_tmpfile`]) the name `/dev/shm/<name>`; `EEXIST`
/// when the name is taken (nothing is replaced). `name` must be validated.
pub(crate) fn shm_link(fd: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    use rustix::fs::{AtFlags, CWD};
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    rustix::fs::linkat(
        CWD,
        proc_path.as_str(),
        CWD,
        shm_path(name).as_str(),
        AtFlags::SYMLINK_FOLLOW,
    )?;
    Ok(())
}

/// Bytes still free in `/dev/shm` for this user (`statvfs`: available blocks).
pub(crate) fn shm_available() -> io::Result<u64> {
    let st = rustix::fs::statvfs(SHM_DIR)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}
