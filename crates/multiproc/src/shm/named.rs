//! Named objects: queues, locks and the other shared primitives under a name in `/dev/shm`,
//! which unrelated processes of the same user open (`Queue::create_named("jobs")` in one,
//! `Queue::open_named("jobs")` in another). The user's documentation is
//! `docs/names.md`; this is the mechanism.
//!
//! # Files
//!
//! An object named `jobs` is the file `/dev/shm/mp.jobs` (the `mp.` prefix keeps our names
//! apart from [`SharedMemory`](super::SharedMemory)'s and Python's, which are the bare
//! name): a [`Segment`] like an anonymous one — the same header, layout and objects — whose
//! header also says *what* it is (the facade type, `kinds::named`) and the type tag of its
//! contents ([`Identity`]). Mode 0600: only its user opens it.
//!
//! # Creation is atomic
//!
//! The creator makes the file without a name (`O_TMPFILE`), sets the object up, and only
//! then links it under its name, failing with [`ErrorKind::AlreadyExists`] if the name is
//! taken (`linkat` never replaces). So a process that opens a name always finds a complete
//! object — there is no "being initialized" state to wait for or to be left behind by a
//! creator killed half-way — and `open_or_create` is a simple loop: open, else create,
//! else (someone created it meanwhile) open.
//!
//! # Validation (nothing in the file is trusted)
//!
//! Opening by name checks, before anything inside is used: a regular file (no symlink,
//! FIFO or device: `O_NOFOLLOW`, `fstat`), owned by this user with no access for anyone
//! else (so no other user can have written or can truncate it), a plausible size (whole
//! pages, at least a header, at most 1 TiB), the segment magic, layout version, segment kind
//! and length, then `what` and the type tag; each failure is an
//! [`ErrorKind::InvalidHandle`] error that says which and how to remove the name. The
//! facade then validates its own layout as it does for a handle received in a message
//! (a queue's geometry, an array's length and element size, all bounds-checked).
//!
//! # What is not defended
//!
//! A named file cannot be sealed (only memfds can), so another process *of the same user*
//! may truncate it while we map it, and our next access to a lost page is SIGBUS — as for
//! Python's and C's POSIX shared memory. That user could equally `ptrace` us; the defence is
//! against garbage and mistakes (a stale file, a file of another kind or version, a
//! wrong type), not against one's own user. The same rule lets a named object travel in a
//! message as its fd ([`Segment::open`] accepts an unsealed fd only for a named segment
//! in a private file of this user).

use std::os::fd::AsFd;

use super::segment::{Identity, Segment, SegmentKind, HEADER_LEN};
use crate::error::{Error, ErrorKind, Result};
use crate::kinds::named::describe;
use crate::sys::mem;

/// Prefix of the files in `/dev/shm` that hold named objects.
pub(crate) const PREFIX: &str = "mp.";

/// The file name in `/dev/shm` for the object name `name`, checked (one non-empty path
/// component, not too long, no `/` or NUL).
fn file_name(name: &str) -> Result<String> {
    if name.is_empty() || name.starts_with('/') {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("invalid object name {name:?}: it is empty or starts with '/'"),
        ));
    }
    let f = format!("{PREFIX}{name}");
    super::shared_memory::check_name(&f).map_err(|_| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "invalid object name {name:?}: use a non-empty name without '/' or NUL, at \
                 most {} bytes",
                255 - PREFIX.len()
            ),
        )
    })?;
    Ok(f)
}

fn os_error(what: &str, name: &str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EEXIST) => Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "a shared object named {name:?} exists already (open it, or remove a stale \
                 one with multiproc::shm::unlink_named)"
            ),
        )
        .with_source(e),
        Some(libc::ENOENT) => Error::new(
            ErrorKind::NotFound,
            format!("no shared object named {name:?}"),
        )
        .with_source(e),
        _ => Error::os(format!("cannot {what} shared object {name:?}"), e),
    }
}

/// A new segment for a named object, not yet visible under any name: set the object up in
/// it, then [`publish`] it. `alloc` bytes from the start get their pages now (a full
/// `/dev/shm` is then an error here rather than a SIGBUS later).
pub(crate) fn create_segment(
    kind: SegmentKind,
    payload_len: usize,
    identity: Identity,
    alloc: usize,
) -> Result<Segment> {
    let total = Segment::total_len(payload_len)?;
    // Pages past `alloc` come when first written; a `/dev/shm` too small for them would
    // make that write a SIGBUS, so an object larger than the free space is refused now
    // (a check, not a reservation: other files may fill it later; see docs/names.md).
    if let Ok(free) = mem::shm_available() {
        if total as u64 > free {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "a named object of {total} bytes does not fit in /dev/shm ({free} bytes \
                     free): make it smaller (a queue: QueueBuilder::capacity_bytes)"
                ),
            ));
        }
    }
    let fd = mem::shm_tmpfile(total, alloc.saturating_add(HEADER_LEN))
        .map_err(|e| Error::os("cannot create a shared object in /dev/shm", e))?;
    Segment::init(fd, kind, total, Some(identity))
}

/// Gives `seg` (from [`create_segment`], set up) the name `name`.
///
/// # Errors
/// [`ErrorKind::AlreadyExists`] when the name is taken (the existing object is left alone,
/// and `seg` is freed when dropped); [`ErrorKind::InvalidArgument`] for a bad name.
pub(crate) fn publish(seg: &Segment, name: &str) -> Result<()> {
    let file = file_name(name)?;
    mem::shm_link(seg.fd(), &file).map_err(|e| os_error("create", name, e))?;
    seg.set_name(name);
    Ok(())
}

fn invalid(name: &str, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidHandle,
        format!(
            "shared object {name:?} (/dev/shm/{PREFIX}{name}) cannot be opened: {why} (a \
             stale or foreign file can be removed with multiproc::shm::unlink_named)"
        ),
    )
}

/// Opens the object named `name`, which must be a segment of `kind` holding `identity`
/// (`expected` names that type for messages, e.g. "a Queue of alloc::string::String").
pub(crate) fn open_segment(
    name: &str,
    kind: SegmentKind,
    identity: Identity,
    expected: &dyn Fn() -> String,
) -> Result<Segment> {
    let file = file_name(name)?;
    let fd = mem::shm_open(&file).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) | None => invalid(name, "it is not a regular file"),
        _ => os_error("open", name, e),
    })?;
    if !mem::is_private_file(fd.as_fd()).unwrap_or(false) {
        return Err(invalid(
            name,
            "the file is not private to this user (mode 0600, owned by us)",
        ));
    }
    // Read the header first, for messages that say what is wrong; `validate` checks it
    // again on the mapping (a file changed in between is an error there).
    let head = mem::read_prefix(fd.as_fd(), HEADER_LEN)
        .map_err(|_| invalid(name, "the file is too short to be a multiproc object"))?;
    let word = |at: usize, n: usize| {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&head[at..at + n]);
        u64::from_ne_bytes(b)
    };
    if word(0, 8) != u64::from_ne_bytes(crate::kinds::magic::SEGMENT) {
        return Err(invalid(name, "it is not a multiproc object (bad magic)"));
    }
    let what = word(32, 4) as u32;
    if what == 0 {
        return Err(invalid(name, "it is not a named multiproc object"));
    }
    if what != identity.what {
        return Err(Error::new(
            ErrorKind::InvalidHandle,
            format!(
                "shared object {name:?} is {}, not {}",
                describe(what),
                expected()
            ),
        ));
    }
    let seg = Segment::validate(fd, kind).map_err(|e| invalid(name, e))?;
    if seg.header().tag.load(std::sync::atomic::Ordering::Relaxed) != identity.tag {
        return Err(Error::new(
            ErrorKind::InvalidHandle,
            format!(
                "shared object {name:?} is {} of another type, not {}",
                describe(what),
                expected()
            ),
        ));
    }
    seg.set_name(name);
    Ok(seg)
}

/// Removes the name `name` (whatever the file holds, garbage included): cleaning up after a
/// crashed run, or a name another process will not remove. Processes that have the object
/// keep using it; it is freed when the last one lets go.
///
/// ```
/// use multiproc::{shm, ErrorKind, Lock};
/// # let name = format!("doc_unlink_named_{}", std::process::id());
/// let lock = Lock::create_named(&name)?;
/// shm::unlink_named(&name)?;
/// assert_eq!(Lock::open_named(&name).unwrap_err().kind(), ErrorKind::NotFound);
/// let _g = lock.lock(); // still usable by those who have it
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::NotFound`] when there is no such name; [`ErrorKind::InvalidArgument`] for a
/// bad name; an OS error otherwise.
pub fn unlink_named(name: &str) -> Result<()> {
    let file = file_name(name)?;
    mem::shm_unlink(&file).map_err(|e| os_error("unlink", name, e))
}

/// Removes the name of the named segment `seg`, if it still names it.
pub(crate) fn unlink_segment(seg: &Segment) -> Result<()> {
    let Some(name) = seg.name() else {
        return Err(Error::new(
            ErrorKind::InvalidState,
            "this object has no name to unlink (it was not created or opened by name)",
        ));
    };
    let file = file_name(name)?;
    let same = mem::shm_names_file(&file, seg.fd()).map_err(|e| os_error("look up", name, e))?;
    if !same {
        return Err(Error::new(
            ErrorKind::InvalidState,
            format!("the name {name:?} now belongs to another object: not unlinked"),
        ));
    }
    unlink_named(name)
}

/// Opens with `open`, or creates with `create` when the name does not exist; a creation that
/// loses the race to another process's opens that one. Bounded: a name that keeps
/// appearing and vanishing (another process creating and unlinking it in a loop) is an error
/// after a few rounds.
pub(crate) fn open_or_create<R>(
    name: &str,
    open: impl Fn() -> Result<R>,
    create: impl Fn() -> Result<R>,
) -> Result<R> {
    for _ in 0..64 {
        match open() {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            r => return r,
        }
        match create() {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            r => return r,
        }
    }
    Err(Error::new(
        ErrorKind::InvalidState,
        format!("shared object {name:?} keeps being created and removed by others"),
    ))
}
