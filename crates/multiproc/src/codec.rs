//! How values become bytes: the [`Codec`] trait and [`Postcard`], the default.
//!
//! Queues and connections are generic over a codec; [`Postcard`] (compact, serde-based,
//! maintained) is used unless another is named. Decoding never trusts its input: bytes from
//! another process that do not decode as `T` give an [`ErrorKind::Codec`] error.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

/// Turns values into bytes and back.
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
}

/// The default codec: [postcard](https://docs.rs/postcard).
#[derive(Clone, Copy, Debug, Default)]
pub struct Postcard;

impl Codec for Postcard {
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
        crate::handle::take_note();
        let buf = std::mem::take(out);
        match postcard::to_extend(value, buf) {
            Ok(v) => {
                *out = v;
                Ok(())
            }
            Err(e) => Err(Error::new(
                ErrorKind::Codec,
                match crate::handle::take_note() {
                    Some(detail) => format!("cannot serialize value: {detail}"),
                    None => format!("cannot serialize value: {e}"),
                },
            )),
        }
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
        crate::handle::take_note();
        match postcard::take_from_bytes::<T>(bytes) {
            Ok((v, [])) => Ok(v),
            Ok((_, rest)) => Err(Error::new(
                ErrorKind::Codec,
                format!(
                    "message does not decode as the expected type ({} bytes left over)",
                    rest.len()
                ),
            )),
            Err(e) => Err(Error::new(
                ErrorKind::Codec,
                match crate::handle::take_note() {
                    Some(detail) => format!("message holds an invalid handle: {detail}"),
                    None => format!("message does not decode as the expected type: {e}"),
                },
            )),
        }
    }
}

/// Encodes with the default codec into a fresh vector.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    Postcard::encode(value, &mut v)?;
    Ok(v)
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
}
