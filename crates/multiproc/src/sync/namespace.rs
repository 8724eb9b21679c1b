//! [`Namespace`]: one typed value of any serde type, shared by processes (Python's
//! `Manager().Namespace()`, with a struct's fields for its attributes). A [`List`] of
//! exactly one item underneath, so it has the list's robustness: `set` and `update` are
//! journaled, a process killed inside leaves the old value or the new one, never a mix.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::List;
use crate::error::{Error, ErrorKind, Result};

/// A value of type `T` in shared memory that every process reads and replaces whole
/// (Python's `Manager().Namespace()`: where Python sets attributes one by one, here `T` is
/// a struct and [`update`](Namespace::update) changes fields atomically).
///
/// ```
/// use multiproc::{sync::Namespace, Process};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
/// struct Progress { done: u32, last: String }
///
/// let ns = Namespace::new(&Progress { done: 0, last: String::new() }, 256)?;
/// let child = {
///     let ns = ns.clone();
///     Process::fork(move || {
///         ns.update(|p| Progress { done: p.done + 1, last: "child".into() }).unwrap()
///     })?
/// };
/// child.join()?;
/// assert_eq!(ns.get()?, Progress { done: 1, last: "child".into() });
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Named like the other objects ([`create_named`](Namespace::create_named),
/// [`open_named`](Namespace::open_named)); underneath it is a one-item [`List`], and the
/// name's kind says `List`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "", transparent)]
pub struct Namespace<T>(List<T>);

impl<T> Clone for Namespace<T> {
    fn clone(&self) -> Self {
        Namespace(self.0.clone())
    }
}

impl<T> fmt::Debug for Namespace<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Namespace").finish()
    }
}

impl<T: Serialize + DeserializeOwned> Namespace<T> {
    /// A namespace holding `value`, whose encoding (postcard) may grow to `max_bytes`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when `value` encodes to more than `max_bytes`.
    pub fn new(value: &T, max_bytes: usize) -> Result<Namespace<T>> {
        Ok(Namespace(List::make_with(1, max_bytes, None, Some(value))?))
    }

    /// A namespace holding `value` under the name `name` (see docs/names.md).
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] when the name is taken; as [`new`](Self::new).
    pub fn create_named(name: &str, value: &T, max_bytes: usize) -> Result<Namespace<T>> {
        Ok(Namespace(List::make_with(
            1,
            max_bytes,
            Some(name),
            Some(value),
        )?))
    }

    /// Opens the namespace named `name`, for the same type.
    ///
    /// # Errors
    /// As [`List::open_named`]; [`ErrorKind::InvalidHandle`] too when the name holds a list
    /// that is not a namespace (not exactly one item of room).
    pub fn open_named(name: &str) -> Result<Namespace<T>> {
        let l = List::open_named(name)?;
        if l.capacity() != 1 {
            return Err(Error::new(
                ErrorKind::InvalidHandle,
                format!("shared object {name:?} is a List, not a Namespace"),
            ));
        }
        Ok(Namespace(l))
    }

    /// A copy of the value.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] when it does not decode; [`ErrorKind::InvalidState`] when the
    /// namespace is corrupt (or emptied by a hostile process).
    pub fn get(&self) -> Result<T> {
        self.0
            .get(0)?
            .ok_or_else(|| Error::new(ErrorKind::InvalidState, "shared Namespace has no value"))
    }

    /// Replaces the value.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when it encodes to more than the namespace's size.
    pub fn set(&self, value: &T) -> Result<()> {
        self.0.set(0, value)
    }

    /// Atomic read-modify-write of the value (`f` runs with the lock held and must not
    /// call this namespace).
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn update(&self, f: impl FnOnce(T) -> T) -> Result<()> {
        self.0.update(0, f)
    }

    /// The name it was created or opened under, if any.
    pub fn name(&self) -> Option<&str> {
        self.0.name()
    }

    /// Removes its name (those that have it keep it).
    ///
    /// # Errors
    /// As [`List::unlink`].
    pub fn unlink(&self) -> Result<()> {
        self.0.unlink()
    }
}
