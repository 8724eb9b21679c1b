//! How values become bytes: the [`Codec`] trait and [`Postcard`], the default.
//!
//! Queues and connections are generic over a codec; [`Postcard`] (compact, serde-based,
//! maintained) is used unless another is named. Decoding never trusts its input: bytes from
//! another process that do not decode as `T` give an [`ErrorKind::Codec`] error.
//!
//! A message of another type must not decode into a wrong value either (postcard, like any
//! compact format, would read `(1u8, 2u8)` as the string `"\u{2}"`): every typed message
//! carries its type's identity, an 8-byte tag in front of the codec's bytes, checked by the
//! receiver before decoding. The tag belongs to the message frame, not to the codec (a custom
//! codec gets it too, and raw-bytes messages have none); what it is and how each pair of
//! typed and raw senders and receivers behaves is in `codec/ident.rs` and in the
//! [`Codec`] docs below.
//!
//! [`Postcard`] writes and reads postcard's wire format with our own serializer
//! (`codec/wire.rs`, byte-identical to the `postcard` crate, checked by its tests), which
//! moves byte vectors with one copy instead of one serde call per byte.

#[cfg(test)]
pub(crate) mod alloc_probe;
mod cast;
pub(crate) mod ident;
pub(crate) mod wire;

use serde::de::DeserializeOwned;
use serde::Serialize;

use std::os::fd::OwnedFd;

use crate::error::{Error, ErrorKind, Result};

/// Turns values into bytes and back.
///
/// A codec sees only the value's bytes: queues, connections and processes put the type
/// identity in front of them and check it before calling [`decode`](Codec::decode), so a
/// message of another type is an [`ErrorKind::Codec`] error (naming the expected type, and
/// the sent one when this process knows it) whatever the codec, never a wrong value:
///
/// ```
/// let (a, b) = multiproc::pipe(true)?;
/// a.send(&(1u8, 2u8))?;
/// let err = b.recv::<String>().unwrap_err();
/// assert_eq!(err.kind(), multiproc::ErrorKind::Codec);
/// assert!(err.to_string().contains("alloc::string::String"));
/// a.send(&"fine")?;                    // the connection goes on
/// assert_eq!(b.recv::<String>()?, "fine");
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// `&str` and `String` are different types to the check (as are `[T]`/`Vec<T>`, `u32`/`i32`):
/// send and receive the same type.
pub trait Codec: Send + Sync + 'static {
    /// Appends the encoding of `value` to `out`. On error `out` may hold a partial encoding
    /// beyond its original length; callers truncate it.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] when the value cannot be serialized.
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()>;

    /// Decodes a whole `T` from `bytes`.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] when the bytes are not a valid `T` (or have bytes left over).
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T>;

    /// Decodes a whole `T` from `bytes` into `place`, reusing what `place` owns where the
    /// codec and type allow (a `Vec`'s or `String`'s buffer). The default decodes a new
    /// value and assigns it.
    ///
    /// # Errors
    /// As [`decode`](Self::decode); then `place` holds some valid value, not necessarily
    /// the one it held.
    fn decode_into<T: DeserializeOwned>(bytes: &[u8], place: &mut T) -> Result<()> {
        *place = Self::decode(bytes)?;
        Ok(())
    }

    /// The exact length of `value`'s encoding when the codec can tell it without building
    /// the encoding; then [`encode_to_slice`](Self::encode_to_slice) writes it in place
    /// (a queue encodes straight into its shared ring that way, saving a copy). The default
    /// says `None`: callers encode into a buffer with [`encode`](Self::encode) instead.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] when the value cannot be serialized.
    fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<Option<usize>> {
        let _ = value;
        Ok(None)
    }

    /// Writes the encoding of `value` into `out`, which has exactly the length that
    /// [`encoded_len`](Self::encoded_len) gave. The default encodes into a buffer and copies.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] when the value cannot be serialized, or when its encoding turns
    /// out not to be `out.len()` bytes long (a `Serialize` impl that changed its output
    /// between the two calls).
    fn encode_to_slice<T: Serialize + ?Sized>(value: &T, out: &mut [u8]) -> Result<()> {
        let mut v = Vec::with_capacity(out.len());
        Self::encode(value, &mut v)?;
        if v.len() != out.len() {
            return Err(Error::new(
                ErrorKind::Codec,
                "the value's encoding changed size between measuring and writing it",
            ));
        }
        out.copy_from_slice(&v);
        Ok(())
    }
}

fn ser_error(e: wire::WireError) -> Error {
    codec_error(e, "cannot serialize value", "cannot serialize value")
}

/// A codec error: `noted` with the handle note a failed handle left (see `handle.rs`), else
/// `plain` with the format's own error.
#[cold]
fn codec_error(e: wire::WireError, noted: &str, plain: &str) -> Error {
    Error::new(
        ErrorKind::Codec,
        match crate::handle::take_note() {
            Some(detail) => format!("{noted}: {detail}"),
            None => format!("{plain}: {e}"),
        },
    )
}

/// The default codec: [postcard](https://docs.rs/postcard).
#[derive(Clone, Copy, Debug, Default)]
pub struct Postcard;

impl Codec for Postcard {
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
        crate::handle::take_note();
        wire::encode_into(value, out).map_err(ser_error)
    }

    #[inline]
    fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<Option<usize>> {
        if let Some(b) = cast::as_byte_slice(&value).filter(|b| b.len() < SMALL_BYTES) {
            return Ok(Some(1 + b.len()));
        }
        crate::handle::take_note();
        wire::encoded_len(value).map(Some).map_err(ser_error)
    }

    #[inline]
    fn encode_to_slice<T: Serialize + ?Sized>(value: &T, out: &mut [u8]) -> Result<()> {
        // No stale handle note to clear: `encoded_len` just did (and a stale one would only
        // change an error's wording).
        if let Some(b) = cast::as_byte_slice(&value).filter(|b| b.len() < SMALL_BYTES) {
            if let Some((len, rest)) = out.split_first_mut() {
                if rest.len() == b.len() {
                    *len = b.len() as u8;
                    rest.copy_from_slice(b);
                    return Ok(());
                }
            }
        }
        wire::encode_to_slice(value, out).map_err(ser_error)
    }

    #[inline]
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
        if typeid::of::<T>() == std::any::TypeId::of::<Vec<u8>>() {
            if let Some((&len, rest)) = bytes.split_first() {
                if (len as usize) < SMALL_BYTES && rest.len() == len as usize {
                    return Ok(cast::byte_vec_into::<T>(rest.to_vec()));
                }
            }
            // Longer, or not a valid encoding: the general path (and its errors).
        }
        crate::handle::take_note();
        let (v, rest) = wire::take_from_bytes::<T>(bytes).map_err(de_error)?;
        whole(rest)?;
        Ok(v)
    }

    /// `Vec<u8>` with one copy into its buffer; other types through serde's
    /// `deserialize_in_place` (which reuses a `Vec`'s or `String`'s buffer, and otherwise
    /// assigns a new value).
    #[inline]
    fn decode_into<T: DeserializeOwned>(bytes: &[u8], place: &mut T) -> Result<()> {
        if let Some(v) = cast::as_byte_vec_mut(place) {
            return whole(wire::take_byte_vec_into(bytes, v).map_err(de_error)?);
        }
        crate::handle::take_note();
        whole(wire::take_in_place(bytes, place).map_err(de_error)?)
    }
}

/// Ok when a decoded message left no bytes over.
#[inline(always)]
fn whole(rest: &[u8]) -> Result<()> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Codec,
            format!(
                "message does not decode as the expected type ({} bytes left over)",
                rest.len()
            ),
        ))
    }
}

#[cold]
fn de_error(e: wire::WireError) -> Error {
    codec_error(
        e,
        "message holds an invalid handle",
        "message does not decode as the expected type",
    )
}

/// A `Vec<u8>` or `[u8]` shorter than this is written by postcard as one length byte and the
/// bytes; `Postcard` writes and reads those without going through serde (the same bytes as
/// `wire.rs` writes: the property tests compare both with the postcard crate). A small
/// message's time was mostly serde's generic calls around one short copy.
const SMALL_BYTES: usize = 0x80;

/// Encodes with the default codec into a fresh vector, after `T`'s type tag
/// (`codec/ident.rs`): a typed message.
pub(crate) fn to_vec_typed<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    ident::put_tag::<T>(&mut v);
    Postcard::encode(value, &mut v)?;
    Ok(v)
}

/// Encodes with the default codec into a fresh vector.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    Postcard::encode(value, &mut v)?;
    Ok(v)
}

/// `C::decode`, with a panic inside the type's `Deserialize` caught into `panicked` and
/// reported as an error. Callers that decode in place under a lock (queue, pipe) use it to
/// consume the message and release the lock first, then resume the panic: otherwise the
/// message would stay at the head and every later receive would panic on it.
#[inline(always)]
pub(crate) fn decode_guarded<T: DeserializeOwned, C: Codec>(
    bytes: &[u8],
    panicked: &mut Option<Box<dyn std::any::Any + Send>>,
) -> Result<T> {
    guarded(|| C::decode::<T>(bytes), panicked)
}

/// [`decode_guarded`] for `C::decode_into`.
#[inline(always)]
pub(crate) fn decode_into_guarded<T: DeserializeOwned, C: Codec>(
    bytes: &[u8],
    place: &mut T,
    panicked: &mut Option<Box<dyn std::any::Any + Send>>,
) -> Result<()> {
    guarded(|| C::decode_into::<T>(bytes, place), panicked)
}

#[inline(always)]
fn guarded<R>(
    decode: impl FnOnce() -> Result<R>,
    panicked: &mut Option<Box<dyn std::any::Any + Send>>,
) -> Result<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)) {
        Ok(r) => r,
        Err(p) => {
            *panicked = Some(p);
            Err(Error::new(
                ErrorKind::Codec,
                "the item's Deserialize panicked",
            ))
        }
    }
}

/// Serializes `value` (a handle, or anything holding handles) into bytes plus the fds its
/// handles refer to, for a caller that moves both itself — a language binding whose own
/// machinery passes the fds (Python's pickling at process start). [`from_bytes_with_fds`]
/// turns them back into a handle in the receiving process.
///
/// ```
/// let lock = multiproc::Lock::new()?;
/// let (bytes, fds) = multiproc::to_bytes_with_fds(&lock)?;
/// let again: multiproc::Lock = multiproc::from_bytes_with_fds(&bytes, fds)?;
/// let _held = again.lock().unwrap();
/// assert!(lock.is_locked());
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Errors
///
/// When `value` cannot be serialized, or an fd cannot be duplicated.
pub fn to_bytes_with_fds<T: serde::Serialize + ?Sized>(
    value: &T,
) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    crate::handle::with_exported_fds(|| to_vec(value))
}

/// The inverse of [`to_bytes_with_fds`]: rebuilds a value from its bytes and the fds that
/// came with them (in the same order). Every handle validates what it receives (magic,
/// version, kind, size), so wrong bytes or fds give an error, not undefined behaviour.
///
/// # Errors
///
/// When the bytes do not decode as a `T`, or a handle inside rejects its fd.
pub fn from_bytes_with_fds<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T> {
    crate::handle::with_imported_fds(fds, || Postcard::decode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let v = to_vec(&(1u32, "abc".to_string())).unwrap();
        let back: (u32, String) = Postcard::decode(&v).unwrap();
        assert_eq!(back, (1, "abc".to_string()));
        let err = Postcard::decode::<(u32, String)>(&[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Codec);
        let err = Postcard::decode::<u8>(&[1, 2]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Codec);
    }

    /// The small byte-vector shortcut (`SMALL_BYTES`) writes and reads exactly what postcard
    /// does, on both sides of its edge, and leaves malformed input to the general path's
    /// errors.
    #[test]
    fn small_byte_vectors_match_postcard() {
        for n in [0usize, 1, 8, 64, 126, 127, 128, 129, 300] {
            let v: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let expect = postcard::to_allocvec(&v).unwrap();
            let len = Postcard::encoded_len(&v).unwrap().unwrap();
            let mut out = vec![0xAA; len];
            Postcard::encode_to_slice(&v, &mut out).unwrap();
            assert_eq!(out, expect, "encode_to_slice, {n} bytes");
            let mut buf = Vec::new();
            Postcard::encode(&v, &mut buf).unwrap();
            assert_eq!(buf, expect, "encode, {n} bytes");
            assert_eq!(Postcard::decode::<Vec<u8>>(&expect).unwrap(), v);
            assert_eq!(
                Postcard::encoded_len(v.as_slice()).unwrap(),
                Some(expect.len())
            );
            // A wrong-sized destination is an error, not a short or long write.
            let mut short = vec![0; len.saturating_sub(1)];
            assert!(Postcard::encode_to_slice(&v, &mut short).is_err() || len == 0);
        }
        for bad in [&[3u8, 1, 2][..], &[1, 1, 2], &[], &[0x80], &[0x81, 0x00]] {
            let ours = Postcard::decode::<Vec<u8>>(bad);
            let theirs = postcard::from_bytes::<Vec<u8>>(bad);
            match (ours, theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{bad:?}"),
                (Err(e), _) => assert_eq!(e.kind(), ErrorKind::Codec, "{bad:?}"),
                (Ok(a), Err(_)) => panic!("{bad:?} decoded as {a:?}; postcard rejects it"),
            }
        }
    }

    /// Decoding in place gives what `decode` gives (and the same errors), keeps a byte
    /// vector's or string's buffer.
    #[test]
    fn decode_into_matches_decode() {
        let mut buf: Vec<u8> = Vec::with_capacity(1000);
        let ptr = buf.as_ptr();
        for n in [0usize, 1, 8, 127, 128, 300, 1000] {
            let v: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let enc = to_vec(&v).unwrap();
            Postcard::decode_into(&enc, &mut buf).unwrap();
            assert_eq!(buf, v, "{n} bytes");
            assert_eq!(buf.as_ptr(), ptr, "{n} bytes: the same buffer");
        }
        buf = vec![5, 5];
        for bad in [&[3u8, 1, 2][..], &[1, 1, 2], &[], &[0x80], &[0x81, 0x00]] {
            let e = Postcard::decode_into(bad, &mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Codec, "{bad:?}");
            let d = Postcard::decode::<Vec<u8>>(bad).unwrap_err();
            assert_eq!(e.message(), d.message(), "{bad:?}");
        }

        let mut s = String::with_capacity(100);
        let sptr = s.as_ptr();
        for text in [
            "",
            "abc",
            "a longer string of text, past one length byte? no",
        ] {
            Postcard::decode_into(&to_vec(text).unwrap(), &mut s).unwrap();
            assert_eq!(s, text);
            assert_eq!(s.as_ptr(), sptr, "the same buffer");
        }
        type Pair = (u32, Vec<String>);
        let mut p: Pair = (9, vec!["x".into()]);
        let want: Pair = (3, vec!["a".into(), "bc".into()]);
        Postcard::decode_into(&to_vec(&want).unwrap(), &mut p).unwrap();
        assert_eq!(p, want);
        let e = Postcard::decode_into(&[1, 2, 3], &mut p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Codec);
        let mut u = 0u8;
        let e = Postcard::decode_into(&[1, 2], &mut u).unwrap_err();
        assert!(e.message().contains("1 bytes left over"), "{e}");
    }
}
