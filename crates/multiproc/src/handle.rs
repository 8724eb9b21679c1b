//! How handles (shared segments, connection ends) cross into another process.
//!
//! A handle's `Serialize` impl does not write its fd number — that number means nothing in
//! another process — but calls [`export_fd`], which puts a duplicate of the fd into the
//! *fd table* of the message being built and returns its index in that table. The table
//! travels beside the bytes: as `SCM_RIGHTS` over a Unix socket (a `Connection`, the spawn
//! bootstrap, a child's result). On the receiving side [`with_imported_fds`] installs the
//! received fds while the bytes are deserialized, and the handle's `Deserialize` impl claims
//! its fd with [`import_fd`], then validates what it got (magic, version, kind, size) before
//! trusting it.
//!
//! Outside such a context (say, `serde_json::to_string(&lock)`, or a `Queue::put` of a
//! `Lock`, whose ring cannot carry fds) serializing a handle fails with a clear message.
//!
//! Fork children need none of this: they inherit the mappings and fds.

use std::cell::RefCell;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::error::Result;

/// Message used when a handle is serialized outside a message that can carry fds.
pub(crate) const NO_FD_CONTEXT: &str = "multiproc handles can only be serialized into a \
message that carries file descriptors (Spawn arguments and results, Connection::send)";

#[derive(Default)]
struct Export {
    fds: Vec<OwnedFd>,
    /// Key (e.g. a segment id) -> index, so a segment referenced many times travels once.
    /// (A short list: a message names few segments; and no `HashMap`, whose random keys
    /// cost a syscall and page faults in every freshly forked child.)
    by_key: Vec<(u64, u32)>,
}

struct Import {
    fds: Vec<Option<OwnedFd>>,
}

thread_local! {
    /// The message of the last handle (de)serialization failure on this thread: serde
    /// formats like postcard drop custom messages, so the codec looks here for the detail.
    static NOTE: RefCell<Option<String>> = const { RefCell::new(None) };
    /// True while `NOTE` may hold a message: a plain flag (no destructor, no lazy
    /// initialization), so the codec's "clear any stale note" before every encode and
    /// decode is one load in the common case instead of a `RefCell` access.
    static NOTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static EXPORT: RefCell<Option<Export>> = const { RefCell::new(None) };
    static IMPORT: RefCell<Option<Import>> = const { RefCell::new(None) };
}

/// Runs `f` (which serializes something) with an fd table open; returns `f`'s result and the
/// fds that handles inside it exported, in index order.
pub(crate) fn with_exported_fds<R>(f: impl FnOnce() -> Result<R>) -> Result<(R, Vec<OwnedFd>)> {
    let saved = EXPORT.with(|e| e.replace(Some(Export::default())));
    let r = f();
    let table = EXPORT.with(|e| e.replace(saved)).unwrap_or_default();
    Ok((r?, table.fds))
}

/// Called by a handle's `Serialize`: adds a duplicate of `fd` to the current message's fd
/// table and returns its index. With `key`, an fd already added under the same key is reused.
///
/// # Errors
/// When no message is being built ([`NO_FD_CONTEXT`]), or `dup` fails.
pub(crate) fn export_fd(fd: BorrowedFd<'_>, key: Option<u64>) -> std::result::Result<u32, String> {
    EXPORT.with(|e| {
        let mut e = e.borrow_mut();
        let table = e.as_mut().ok_or_else(|| NO_FD_CONTEXT.to_string())?;
        if let Some(k) = key {
            if let Some(&(_, i)) = table.by_key.iter().find(|(key, _)| *key == k) {
                return Ok(i);
            }
        }
        let dup = fd
            .try_clone_to_owned()
            .map_err(|e| format!("cannot duplicate fd for sending: {e}"))?;
        let i = table.fds.len() as u32;
        table.fds.push(dup);
        if let Some(k) = key {
            table.by_key.push((k, i));
        }
        Ok(i)
    })
}

/// Runs `f` (which deserializes something) with `fds` available to [`import_fd`]. Fds that
/// no handle claimed are closed afterwards.
pub(crate) fn with_imported_fds<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    let table = Import {
        fds: fds.into_iter().map(Some).collect(),
    };
    let saved = IMPORT.with(|i| i.replace(Some(table)));
    let r = f();
    IMPORT.with(|i| i.replace(saved));
    r
}

/// Called by a handle's `Deserialize`: a duplicate of fd number `index` of the message being
/// decoded. (A duplicate, because one fd may back several handles in the same message.)
///
/// # Errors
/// When no fds came with the message or `index` is out of range: the bytes were not written
/// by a matching sender, or were tampered with.
pub(crate) fn import_fd(index: u32) -> std::result::Result<OwnedFd, String> {
    IMPORT.with(|i| {
        let i = i.borrow();
        let table = i.as_ref().ok_or_else(|| {
            "a multiproc handle can only be deserialized from a message that carried its file \
             descriptors"
                .to_string()
        })?;
        let fd = table
            .fds
            .get(index as usize)
            .and_then(|f| f.as_ref())
            .ok_or_else(|| {
                format!(
                    "message refers to fd #{index} but carried only {}",
                    table.fds.len()
                )
            })?;
        fd.try_clone()
            .map_err(|e| format!("cannot duplicate received fd: {e}"))
    })
}

/// A serde serialization error for a handle, remembering its message for [`take_note`].
pub(crate) fn ser_err<E: serde::ser::Error>(msg: impl std::fmt::Display) -> E {
    E::custom(note(msg))
}

/// A serde deserialization error for a handle, remembering its message for [`take_note`].
pub(crate) fn de_err<E: serde::de::Error>(msg: impl std::fmt::Display) -> E {
    E::custom(note(msg))
}

/// Remembers `msg` as this thread's note and returns it.
fn note(msg: impl std::fmt::Display) -> String {
    let m = msg.to_string();
    NOTE.with(|n| *n.borrow_mut() = Some(m.clone()));
    NOTED.with(|f| f.set(true));
    m
}

/// The message of the last handle failure on this thread, if any (and forgets it).
#[inline]
pub(crate) fn take_note() -> Option<String> {
    if !NOTED.with(|f| f.replace(false)) {
        return None;
    }
    NOTE.with(|n| n.borrow_mut().take())
}

/// Initializes this thread's fd-table slots. Called before `fork`, so the child does not
/// register thread-local destructors (a `malloc` and several copy-on-write faults) itself.
pub(crate) fn warm_up() {
    NOTE.with(|_| ());
    EXPORT.with(|_| ());
    IMPORT.with(|_| ());
}
