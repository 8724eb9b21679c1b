//! What a child's target may return: any serde value, or nothing at all (a target that
//! never returns: it aborts, panics, exits or loops forever).
//!
//! A closure whose body ends in `abort()`, `panic!` or `exit` has the never type `!` as its
//! return type (edition 2024), or an inference variable that falls back to `()` and is linted
//! against because it would be `!` in 2024 (`dependency_on_unit_never_type_fallback`, an
//! error by default in 2021). A plain `R: Serialize` bound therefore rejects such closures:
//! serde implements `Serialize` for `!` only on nightly.
//!
//! The way out on stable: a trait with one impl for serde types and one for `!`. The obvious
//! pair, `impl<T: Serialize> Outcome for T` and `impl Outcome for !`, is refused by coherence
//! (E0119: serde "may add" `impl Serialize for !`, and does, behind its `unstable` feature).
//! So the trait takes a marker parameter that the two impls fill differently —
//! `Outcome<Returns>` for serde types, `Outcome<NeverReturns>` for `!` — and the two impls are
//! of different traits as far as coherence is concerned. At a call site the compiler picks
//! the one impl that fits (only one can: `!` is not `Serialize` on stable), and with the
//! never-type fallback `!: Outcome<_>` holds, so the lint has nothing to say. `!` itself is
//! not nameable on stable outside return types; `<fn() -> ! as HasOutput>::Output` is (the
//! `never-say-never` crate's trick), exported as [`Never`].
//!
//! Checked by `tests/ui/pass/*.rs` (trybuild, edition 2021) and by the `edition2024`
//! doctests of [`Process`](super::Process).

use std::os::fd::OwnedFd;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, ident, Codec, Postcard};
use crate::error::{Error, ErrorKind, Result};
use crate::handle;

mod private {
    /// The return type of a function type (only to name `!`).
    pub trait HasOutput {
        type Output;
    }

    impl<R> HasOutput for fn() -> R {
        type Output = R;
    }

    /// How an outcome crosses to the parent. Sealed: [`super::Outcome`] has exactly the two
    /// impls of this module.
    pub trait Sealed<M>: Sized {
        /// The value's bytes and the fds of the handles inside it.
        fn encode(&self) -> crate::Result<(Vec<u8>, Vec<std::os::fd::OwnedFd>)>;
        /// Back from [`encode`](Sealed::encode)'s bytes and fds.
        fn decode(body: &[u8], fds: Vec<std::os::fd::OwnedFd>) -> crate::Result<Self>;
    }
}

/// The never type `!`: the return type of a child target that never returns. Named on stable
/// Rust through a function type's output.
///
/// ```
/// use multiproc::process::Never;
/// use multiproc::Process;
///
/// fn child(code: i32) -> Never {
///     std::process::exit(code)
/// }
/// let p: Process<Never> = Process::spawn(child, 3)?;
/// assert_eq!(p.join().unwrap_err().exit_status().and_then(|s| s.code()), Some(3));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub type Never = <fn() -> ! as private::HasOutput>::Output;

/// What a child's target may return: any type that is `Serialize + DeserializeOwned`
/// (marker [`Returns`]), or [`Never`] — `!`, for a target that never returns (marker
/// [`NeverReturns`]). Sealed; the marker is inferred and never written.
///
/// So a child closure that ends in `abort()`, `panic!` or `std::process::exit` compiles as
/// written, in editions 2021 and 2024:
///
/// ```
/// use multiproc::Process;
///
/// let p = Process::fork(|| std::process::exit(3))?;
/// assert_eq!(p.join().unwrap_err().exit_status().and_then(|s| s.code()), Some(3));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait Outcome<M>: private::Sealed<M> {}

/// Marker of [`Outcome`] for values that travel with serde.
#[derive(Debug)]
pub enum Returns {}

/// Marker of [`Outcome`] for [`Never`].
#[derive(Debug)]
pub enum NeverReturns {}

impl<T: Serialize + DeserializeOwned> private::Sealed<Returns> for T {
    /// The type tag, then the value (`codec/ident.rs`).
    fn encode(&self) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        handle::with_exported_fds(|| codec::to_vec_typed(self))
    }

    /// A value of another type is refused before it is decoded: an `ErrorKind::Codec` error.
    fn decode(body: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
        handle::with_imported_fds(fds, || {
            ident::check::<T>(body).and_then(|value| Postcard::decode::<T>(value))
        })
    }
}

impl<T: Serialize + DeserializeOwned> Outcome<Returns> for T {}

impl private::Sealed<NeverReturns> for Never {
    fn encode(&self) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        match *self {}
    }

    fn decode(_: &[u8], _: Vec<OwnedFd>) -> Result<Never> {
        Err(Error::new(
            ErrorKind::ChildFailed,
            "a child whose target never returns sent a value",
        ))
    }
}

impl Outcome<NeverReturns> for Never {}

/// The decoder a [`Process`](super::Process) keeps for its `R`.
pub(crate) type Decoder<R> = fn(&[u8], Vec<OwnedFd>) -> Result<R>;

/// `R`'s decoder.
pub(crate) fn decoder<R: Outcome<M>, M>() -> Decoder<R> {
    <R as private::Sealed<M>>::decode
}

/// Encodes a target's value.
pub(crate) fn encode<R: Outcome<M>, M>(value: &R) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    <R as private::Sealed<M>>::encode(value)
}
