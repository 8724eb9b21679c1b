//! postcard's wire format, written and read by our own serde serializer and deserializer,
//! and the pool's variant of it (fixed-width integers): one implementation, generic over
//! how integers are written ([`Ints`]).
//!
//! Byte for byte the format of the `postcard` crate (1.x; the tests below check both
//! directions against it), implemented here for speed on what queues and connections carry
//! most: a byte vector (`Vec<u8>`, `[u8]`) is one length and one copy, where serde's generic
//! path hands a format every byte as a sequence element (postcard pushes them one at a time
//! on encode and a `Vec` grows by one element at a time on decode: about 1 GB/s). The fast
//! paths are taken only for exactly those types (see `cast.rs`); everything else goes through
//! the ordinary serde calls, each one written as a direct append or a bounds-checked read.
//!
//! ```text
//! bool, u8, i8           1 byte (bool: 0 or 1, anything else is an error)
//! u16..u128              Ints: varint (LEB128: 7 bits a byte, high bit set on all but the
//!                        last) with `Varint`; fixed width with the pool's `Fixed`
//! i16..i128              Ints: zigzag, then varint (`Varint`); fixed width (`Fixed`)
//! f32, f64               IEEE bits, little-endian
//! str, bytes, char       varint length | bytes (char: as its UTF-8 string)
//! seq, map               varint length | elements (map: key, value, ...)
//! option                 0 | 1 value
//! enum                   varint variant index | fields
//! tuple, struct          fields back to back; unit: nothing
//! ```
//! Lengths and variant indices are varints in every format: only the integers a value holds
//! differ, so [`Ints`] is all a format supplies ([`Varint`] here, the pool's `Fixed` in
//! `pool/wire.rs`); the serde plumbing is written once, monomorphized per format.
//!
//! Everything decoded is untrusted (it may come from another process or from shared memory):
//! every read is bounds-checked and malformed input is an error, never a panic.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

use super::cast;

/// A codec error.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The input ended inside a value.
    End,
    /// A message of our own (static).
    Msg(&'static str),
    /// A message from a `Serialize` / `Deserialize` impl.
    Custom(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::End => f.write_str("hit the end of the message, expected more data"),
            WireError::Msg(m) => f.write_str(m),
            WireError::Custom(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for WireError {}

impl ser::Error for WireError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WireError::Custom(msg.to_string())
    }
}

impl de::Error for WireError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WireError::Custom(msg.to_string())
    }
}

pub(crate) type Result<T> = std::result::Result<T, WireError>;

// ----- integers -----

/// How a format writes and reads the integers wider than a byte (`u16`..`u128`,
/// `i16`..`i128`); everything else is the same in every format. Implemented by unit types
/// and used only as a type parameter: each format gets its own monomorphized serializer and
/// deserializer, with these calls inlined.
pub(crate) trait Ints: Sized {
    /// Signed integers are zigzag-encoded into their unsigned counterparts (postcard, so
    /// that small negative numbers make short varints) rather than reinterpreted as their
    /// two's-complement bits.
    const ZIGZAG: bool;
    fn put_u16<W: Out>(out: &mut W, v: u16) -> Result<()>;
    fn put_u32<W: Out>(out: &mut W, v: u32) -> Result<()>;
    fn put_u64<W: Out>(out: &mut W, v: u64) -> Result<()>;
    fn put_u128<W: Out>(out: &mut W, v: u128) -> Result<()>;
    fn get_u16(de: &mut De<'_, Self>) -> Result<u16>;
    fn get_u32(de: &mut De<'_, Self>) -> Result<u32>;
    fn get_u64(de: &mut De<'_, Self>) -> Result<u64>;
    fn get_u128(de: &mut De<'_, Self>) -> Result<u128>;
}

/// postcard's integers: varints, signed ones zigzag-encoded first.
pub(crate) struct Varint;

/// [`Ints`] methods writing and reading a number as a varint of its width.
macro_rules! varint_ints {
    ($($put:ident $get:ident $t:ty: $write:ident $read:ident;)*) => { $(
        #[inline(always)]
        fn $put<W: Out>(out: &mut W, v: $t) -> Result<()> {
            $write(out, v.into())
        }
        #[inline(always)]
        fn $get(de: &mut De<'_, Self>) -> Result<$t> {
            de.$read()
        }
    )* };
}

impl Ints for Varint {
    const ZIGZAG: bool = true;
    varint_ints! {
        put_u16 get_u16 u16: varint varint16;
        put_u32 get_u32 u32: varint varint32;
        put_u64 get_u64 u64: varint varint64;
        put_u128 get_u128 u128: varint128 varint128;
    }
}

// ----- serializer -----

/// Where a serializer's bytes go: a `Vec` (grows), a counter (the exact length, without
/// writing), or a slice of exactly the right size (filled in place).
pub(crate) trait Out {
    fn push(&mut self, b: u8) -> Result<()>;
    fn extend(&mut self, b: &[u8]) -> Result<()>;
}

impl Out for Vec<u8> {
    #[inline(always)]
    fn push(&mut self, b: u8) -> Result<()> {
        Vec::push(self, b);
        Ok(())
    }
    #[inline(always)]
    fn extend(&mut self, b: &[u8]) -> Result<()> {
        self.extend_from_slice(b);
        Ok(())
    }
}

/// Counts the bytes an encoding takes.
#[derive(Default)]
pub(crate) struct Count(pub(crate) usize);

impl Out for Count {
    #[inline(always)]
    fn push(&mut self, _b: u8) -> Result<()> {
        self.0 += 1;
        Ok(())
    }
    #[inline(always)]
    fn extend(&mut self, b: &[u8]) -> Result<()> {
        self.0 += b.len();
        Ok(())
    }
}

/// Fills a slice from its start; writing past its end is an error.
pub(crate) struct Fill<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

const OVERFLOW: WireError =
    WireError::Msg("the value's encoding changed size between measuring and writing it");

impl Out for Fill<'_> {
    #[inline(always)]
    fn push(&mut self, b: u8) -> Result<()> {
        let slot = self.buf.get_mut(self.pos).ok_or(OVERFLOW)?;
        *slot = b;
        self.pos += 1;
        Ok(())
    }
    #[inline(always)]
    fn extend(&mut self, b: &[u8]) -> Result<()> {
        let end = self.pos.checked_add(b.len()).ok_or(OVERFLOW)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(OVERFLOW)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }
}

/// Appends `v` as a LEB128 varint.
#[inline(always)]
fn varint<W: Out>(out: &mut W, v: u64) -> Result<()> {
    if v < 0x80 {
        out.push(v as u8)
    } else {
        varint_long(out, v)
    }
}

/// Writers of a LEB128 varint of any length, for `$t` (at most `$max` bytes).
macro_rules! varint_writer {
    ($(#[$attr:meta])* $name:ident, $t:ty, $max:expr) => {
        $(#[$attr])*
        fn $name<W: Out>(out: &mut W, mut v: $t) -> Result<()> {
            let mut buf = [0u8; $max];
            let mut n = 0;
            while v >= 0x80 {
                buf[n] = (v as u8) | 0x80;
                v >>= 7;
                n += 1;
            }
            buf[n] = v as u8;
            out.extend(&buf[..=n])
        }
    };
}
varint_writer!(
    #[inline]
    varint_long,
    u64,
    10
);
varint_writer!(varint128, u128, 19);

/// A serializer appending the format `F` to an [`Out`].
pub(crate) struct Ser<'a, W: Out, F: Ints> {
    /// Where the bytes go (the pool rolls it back to a mark after a failed value).
    pub(crate) out: &'a mut W,
    ints: PhantomData<F>,
}

impl<'a, W: Out, F: Ints> Ser<'a, W, F> {
    pub(crate) fn new(out: &'a mut W) -> Ser<'a, W, F> {
        Ser {
            out,
            ints: PhantomData,
        }
    }

    #[inline(always)]
    fn bytes(&mut self, b: &[u8]) -> Result<()> {
        varint(self.out, b.len() as u64)?;
        self.out.extend(b)
    }

    /// A sequence's or map's length, which the format needs up front.
    #[inline(always)]
    fn len(&mut self, len: Option<usize>, unknown: &'static str) -> Result<()> {
        varint(self.out, len.ok_or(WireError::Msg(unknown))? as u64)
    }
}

/// Serializer methods for an unsigned integer and its signed counterpart, through `F`.
macro_rules! ser_ints {
    ($($ser_u:ident $ser_i:ident $put:ident $u:ty, $i:ty;)*) => { $(
        #[inline]
        fn $ser_u(self, v: $u) -> Result<()> {
            F::$put(self.out, v)
        }
        #[inline]
        fn $ser_i(self, v: $i) -> Result<()> {
            let u = if F::ZIGZAG {
                ((v << 1) ^ (v >> (<$i>::BITS - 1))) as $u
            } else {
                v as $u
            };
            F::$put(self.out, u)
        }
    )* };
}

impl<W: Out, F: Ints> ser::Serializer for &mut Ser<'_, W, F> {
    type Ok = ();
    type Error = WireError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        false
    }
    #[inline]
    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.push(v as u8)
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.out.push(v as u8)
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.out.push(v)
    }
    ser_ints! {
        serialize_u16 serialize_i16 put_u16 u16, i16;
        serialize_u32 serialize_i32 put_u32 u32, i32;
        serialize_u64 serialize_i64 put_u64 u64, i64;
        serialize_u128 serialize_i128 put_u128 u128, i128;
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.out.extend(&v.to_bits().to_le_bytes())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.out.extend(&v.to_bits().to_le_bytes())
    }
    fn serialize_char(self, v: char) -> Result<()> {
        let mut buf = [0u8; 4];
        self.bytes(v.encode_utf8(&mut buf).as_bytes())
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<()> {
        self.bytes(v.as_bytes())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.bytes(v)
    }
    #[inline]
    fn serialize_none(self) -> Result<()> {
        self.out.push(0)
    }
    #[inline]
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<()> {
        self.out.push(1)?;
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<()> {
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        Ok(())
    }
    #[inline]
    fn serialize_unit_variant(self, _n: &'static str, index: u32, _v: &'static str) -> Result<()> {
        varint(self.out, index.into())
    }
    #[inline]
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }
    #[inline]
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<()> {
        varint(self.out, index.into())?;
        value.serialize(self)
    }
    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self> {
        self.len(len, "a sequence of unknown length cannot be serialized")?;
        Ok(self)
    }
    #[inline]
    fn serialize_tuple(self, _len: usize) -> Result<Self> {
        Ok(self)
    }
    #[inline]
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }
    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self> {
        varint(self.out, index.into())?;
        Ok(self)
    }
    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self> {
        self.len(len, "a map of unknown length cannot be serialized")?;
        Ok(self)
    }
    #[inline]
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }
    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self> {
        self.serialize_tuple_variant(name, index, variant, len)
    }

    /// A byte vector or slice is one length and one copy; anything else as serde does it
    /// (a length known up front, then the elements).
    #[inline]
    fn collect_seq<I>(self, iter: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        if let Some(b) = cast::as_byte_slice(&iter) {
            return self.bytes(b);
        }
        let iter = iter.into_iter();
        let len = match iter.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(lo),
            _ => None,
        };
        let mut s = ser::Serializer::serialize_seq(self, len)?;
        for item in iter {
            ser::SerializeSeq::serialize_element(&mut s, &item)?;
        }
        ser::SerializeSeq::end(s)
    }

    fn collect_str<T: ?Sized + fmt::Display>(self, value: &T) -> Result<()> {
        // Formatted once into a string (postcard formats twice: to count, then to write).
        self.bytes(value.to_string().as_bytes())
    }
}

macro_rules! compound {
    ($($tr:ident :: $f:ident),*) => {$(
        impl<W: Out, F: Ints> ser::$tr for &mut Ser<'_, W, F> {
            type Ok = ();
            type Error = WireError;
            #[inline]
            fn $f<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
                value.serialize(&mut **self)
            }
            #[inline]
            fn end(self) -> Result<()> {
                Ok(())
            }
        }
    )*};
}
compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl<W: Out, F: Ints> ser::SerializeMap for &mut Ser<'_, W, F> {
    type Ok = ();
    type Error = WireError;
    #[inline]
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<()> {
        key.serialize(&mut **self)
    }
    #[inline]
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

/// The two struct compounds: a field is its value (names are not written).
macro_rules! struct_compound {
    ($($tr:ident),*) => {$(
        impl<W: Out, F: Ints> ser::$tr for &mut Ser<'_, W, F> {
            type Ok = ();
            type Error = WireError;
            #[inline]
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                _k: &'static str,
                v: &T,
            ) -> Result<()> {
                v.serialize(&mut **self)
            }
            #[inline]
            fn end(self) -> Result<()> {
                Ok(())
            }
        }
    )*};
}
struct_compound!(SerializeStruct, SerializeStructVariant);

/// Appends the postcard encoding of `value` to `out`.
#[inline]
pub(crate) fn encode_into<T: ?Sized + Serialize>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    value.serialize(&mut Ser::<_, Varint>::new(out))
}

/// The length of `value`'s postcard encoding (running its `Serialize` without writing; a
/// byte vector is O(1)).
#[inline]
pub(crate) fn encoded_len<T: ?Sized + Serialize>(value: &T) -> Result<usize> {
    let mut n = Count(0);
    value.serialize(&mut Ser::<_, Varint>::new(&mut n))?;
    Ok(n.0)
}

/// Writes the postcard encoding of `value` into `buf`, which must be exactly its length.
#[inline]
pub(crate) fn encode_to_slice<T: ?Sized + Serialize>(value: &T, buf: &mut [u8]) -> Result<()> {
    let mut f = Fill { buf, pos: 0 };
    value.serialize(&mut Ser::<_, Varint>::new(&mut f))?;
    if f.pos == f.buf.len() {
        Ok(())
    } else {
        Err(OVERFLOW)
    }
}

// ----- deserializer -----

/// [`WireError::End`], out of line: with the error built inline, LLVM compiled the pool's
/// loop of fixed-width reads (`decode_values` over `u64` results) about 20% slower.
#[cold]
#[inline(never)]
fn ended() -> WireError {
    WireError::End
}

/// A deserializer reading the format `F` from a slice.
pub(crate) struct De<'de, F> {
    input: &'de [u8],
    ints: PhantomData<F>,
}

/// Reads a varint into `$t`, rejecting one longer than `$t` needs or with bits past its
/// width (as postcard does).
macro_rules! varint_fn {
    ($name:ident, $t:ty) => {
        #[inline]
        fn $name(&mut self) -> Result<$t> {
            const BITS: usize = <$t>::BITS as usize;
            const MAX: usize = BITS.div_ceil(7);
            const LAST: u8 = ((1u16 << (BITS % 7)) - 1) as u8;
            let mut out: $t = 0;
            for i in 0..MAX {
                let b = self.byte()?;
                out |= <$t>::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    if i == MAX - 1 && b > LAST {
                        return Err(WireError::Msg("a varint is out of range"));
                    }
                    return Ok(out);
                }
            }
            Err(WireError::Msg("a varint is too long"))
        }
    };
}

impl<'de, F> De<'de, F> {
    pub(crate) fn new(input: &'de [u8]) -> De<'de, F> {
        De {
            input,
            ints: PhantomData,
        }
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'de [u8] {
        self.input
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8> {
        match self.input.split_first() {
            Some((&b, rest)) => {
                self.input = rest;
                Ok(b)
            }
            None => Err(WireError::End),
        }
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        match self.input.split_at_checked(n) {
            Some((a, b)) => {
                self.input = b;
                Ok(a)
            }
            None => Err(WireError::End),
        }
    }

    /// The next `N` bytes, as an array (a fixed-width number).
    #[inline(always)]
    pub(crate) fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        match self.input.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.input = rest;
                Ok(*head)
            }
            None => Err(ended()),
        }
    }

    varint_fn!(varint16, u16);
    varint_fn!(varint32, u32);
    varint_fn!(varint64, u64);
    varint_fn!(varint128, u128);

    /// A length (a varint of `usize` width).
    #[inline(always)]
    fn len(&mut self) -> Result<usize> {
        // Lengths below 128 are one byte: the common case.
        if let Some((&b, rest)) = self.input.split_first() {
            if b < 0x80 {
                self.input = rest;
                return Ok(b.into());
            }
        }
        usize::try_from(self.varint64()?).map_err(|_| WireError::Msg("a length is out of range"))
    }

    #[inline]
    fn bytes(&mut self) -> Result<&'de [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'de str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| WireError::Msg("a string is not UTF-8"))
    }
}

/// Decodes one postcard value from the start of `bytes`; returns it and the bytes after it.
#[inline]
pub(crate) fn take_from_bytes<'a, T: de::Deserialize<'a>>(
    bytes: &'a [u8],
) -> Result<(T, &'a [u8])> {
    let mut de = De::<Varint>::new(bytes);
    let v = T::deserialize(&mut de)?;
    Ok((v, de.rest()))
}

/// Decodes one postcard value from the start of `bytes` into `place` (serde's
/// `deserialize_in_place`: a `Vec` or `String` keeps its buffer); returns the bytes after it.
/// On error `place` holds some valid value.
#[inline]
pub(crate) fn take_in_place<'a, T: de::Deserialize<'a>>(
    bytes: &'a [u8],
    place: &mut T,
) -> Result<&'a [u8]> {
    let mut de = De::<Varint>::new(bytes);
    T::deserialize_in_place(&mut de, place)?;
    Ok(de.rest())
}

/// Decodes one postcard `Vec<u8>` from the start of `bytes` into `out`, reusing its buffer
/// (one copy, where serde's in-place path would visit every byte); returns the bytes after
/// it. On error `out` is unchanged.
#[inline]
pub(crate) fn take_byte_vec_into<'a>(bytes: &'a [u8], out: &mut Vec<u8>) -> Result<&'a [u8]> {
    let mut de = De::<Varint>::new(bytes);
    let b = de.bytes()?;
    out.clear();
    out.extend_from_slice(b);
    Ok(de.rest())
}

struct Access<'a, 'de, F> {
    de: &'a mut De<'de, F>,
    len: usize,
}

impl<'de, F: Ints> de::SeqAccess<'de> for Access<'_, 'de, F> {
    type Error = WireError;
    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }
    #[inline]
    fn size_hint(&self) -> Option<usize> {
        // The length is untrusted: no hint beyond the bytes left (as postcard).
        (self.len <= self.de.input.len()).then_some(self.len)
    }
}

impl<'de, F: Ints> de::MapAccess<'de> for Access<'_, 'de, F> {
    type Error = WireError;
    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        de::SeqAccess::next_element_seed(self, seed)
    }
    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }
    fn size_hint(&self) -> Option<usize> {
        de::SeqAccess::size_hint(self)
    }
}

impl<'de, F: Ints> de::EnumAccess<'de> for &mut De<'de, F> {
    type Error = WireError;
    type Variant = Self;
    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let index = self.varint32()?;
        let v = seed.deserialize(index.into_deserializer())?;
        Ok((v, self))
    }
}

impl<'de, F: Ints> de::VariantAccess<'de> for &mut De<'de, F> {
    type Error = WireError;
    fn unit_variant(self) -> Result<()> {
        Ok(())
    }
    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Access { de: self, len })
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        de::VariantAccess::tuple_variant(self, fields.len(), visitor)
    }
}

/// Deserializer methods for an unsigned integer and its signed counterpart, through `F`.
macro_rules! de_ints {
    ($($de_u:ident $visit_u:ident $de_i:ident $visit_i:ident $get:ident $u:ty, $i:ty;)*) => { $(
        #[inline]
        fn $de_u<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
            v.$visit_u(F::$get(self)?)
        }
        #[inline]
        fn $de_i<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
            let x = F::$get(self)?;
            v.$visit_i(if F::ZIGZAG {
                ((x >> 1) as $i) ^ -((x & 1) as $i)
            } else {
                x as $i
            })
        }
    )* };
}

impl<'de, F: Ints> de::Deserializer<'de> for &mut De<'de, F> {
    type Error = WireError;

    fn is_human_readable(&self) -> bool {
        false
    }
    fn deserialize_any<V: Visitor<'de>>(self, _v: V) -> Result<V::Value> {
        Err(WireError::Msg(
            "the format is not self-describing (deserialize_any is not supported)",
        ))
    }
    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.byte()? {
            0 => v.visit_bool(false),
            1 => v.visit_bool(true),
            _ => Err(WireError::Msg("a bool is neither 0 nor 1")),
        }
    }
    #[inline]
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_i8(self.byte()? as i8)
    }
    #[inline]
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_u8(self.byte()?)
    }
    de_ints! {
        deserialize_u16 visit_u16 deserialize_i16 visit_i16 get_u16 u16, i16;
        deserialize_u32 visit_u32 deserialize_i32 visit_i32 get_u32 u32, i32;
        deserialize_u64 visit_u64 deserialize_i64 visit_i64 get_u64 u64, i64;
        deserialize_u128 visit_u128 deserialize_i128 visit_i128 get_u128 u128, i128;
    }
    #[inline]
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_f32(f32::from_bits(u32::from_le_bytes(self.fixed()?)))
    }
    #[inline]
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_f64(f64::from_bits(u64::from_le_bytes(self.fixed()?)))
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let bad = WireError::Msg("a char is not one UTF-8 character");
        let n = self.len()?;
        if n > 4 {
            return Err(bad);
        }
        let s = std::str::from_utf8(self.take(n)?)
            .map_err(|_| WireError::Msg("a char is not UTF-8"))?;
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => v.visit_char(c),
            _ => Err(bad),
        }
    }
    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_borrowed_str(self.str()?)
    }
    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_str(v)
    }
    #[inline]
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_borrowed_bytes(self.bytes()?)
    }
    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_bytes(v)
    }
    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.byte()? {
            0 => v.visit_none(),
            1 => v.visit_some(self),
            _ => Err(WireError::Msg("an option tag is neither 0 nor 1")),
        }
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(v)
    }
    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value> {
        v.visit_newtype_struct(self)
    }
    /// A `Vec<u8>` (serde's own visitor for it) is one bounds check and one copy; any other
    /// sequence goes element by element.
    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let len = self.len()?;
        if cast::is_byte_vec_visitor::<V>() {
            let bytes = self.take(len)?;
            return Ok(cast::byte_vec_into::<V::Value>(bytes.to_vec()));
        }
        v.visit_seq(Access { de: self, len })
    }
    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value> {
        v.visit_seq(Access { de: self, len })
    }
    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(len, v)
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let len = self.len()?;
        v.visit_map(Access { de: self, len })
    }
    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(fields.len(), v)
    }
    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        v.visit_enum(self)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, _v: V) -> Result<V::Value> {
        Err(WireError::Msg(
            "the format has no identifiers (deserialize_identifier is not supported)",
        ))
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _v: V) -> Result<V::Value> {
        Err(WireError::Msg(
            "the format is not self-describing (deserialize_ignored_any is not supported)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::alloc_probe;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    enum E {
        Unit,
        New(i32),
        Tup(u8, String),
        Rec { a: Option<u64>, b: Vec<i16> },
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct S {
        flag: bool,
        small: i8,
        n16: u16,
        i32_: i32,
        n64: u64,
        i64_: i64,
        big: u128,
        ibig: i128,
        f: f32,
        d: f64,
        c: char,
        s: String,
        bytes: Vec<u8>,
        words: Vec<u32>,
        opt: Option<Box<S2>>,
        map: BTreeMap<String, i64>,
        e: Vec<E>,
        arr: [u8; 3],
        unit: (),
        tup: (u8, i64, String),
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct S2(Vec<u8>, Option<u8>);

    fn arb_e() -> impl Strategy<Value = E> {
        prop_oneof![
            Just(E::Unit),
            any::<i32>().prop_map(E::New),
            (any::<u8>(), ".{0,4}").prop_map(|(a, b)| E::Tup(a, b)),
            (
                any::<Option<u64>>(),
                prop::collection::vec(any::<i16>(), 0..4)
            )
                .prop_map(|(a, b)| E::Rec { a, b }),
        ]
    }

    fn arb_s() -> impl Strategy<Value = S> {
        (
            (
                any::<bool>(),
                any::<i8>(),
                any::<u16>(),
                any::<i32>(),
                any::<u64>(),
                any::<i64>(),
            ),
            (
                any::<u128>(),
                any::<i128>(),
                any::<f32>(),
                any::<f64>(),
                any::<char>(),
            ),
            (".{0,8}", prop::collection::vec(any::<u8>(), 0..300)),
            prop::collection::vec(any::<u32>(), 0..5),
            any::<Option<(Vec<u8>, Option<u8>)>>(),
            prop::collection::btree_map(".{0,3}", any::<i64>(), 0..3),
            prop::collection::vec(arb_e(), 0..3),
            (any::<[u8; 3]>(), any::<(u8, i64, String)>()),
        )
            .prop_map(
                |(
                    (flag, small, n16, i32_, n64, i64_),
                    (big, ibig, f, d, c),
                    (s, bytes),
                    words,
                    opt,
                    map,
                    e,
                    (arr, tup),
                )| S {
                    flag,
                    small,
                    n16,
                    i32_,
                    n64,
                    i64_,
                    big,
                    ibig,
                    f,
                    d,
                    c,
                    s,
                    bytes,
                    words,
                    opt: opt.map(|(a, b)| Box::new(S2(a, b))),
                    map,
                    e,
                    arr,
                    unit: (),
                    tup,
                },
            )
    }

    fn ours<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        encode_into(v, &mut out).unwrap();
        out
    }

    fn same_float_bits(a: &S, b: &S) -> bool {
        a.f.to_bits() == b.f.to_bits() && a.d.to_bits() == b.d.to_bits()
    }

    proptest! {
        // Byte-identical to postcard, and each side decodes the other's bytes.
        #[test]
        fn matches_postcard(s in arb_s()) {
            let a = ours(&s);
            let b = postcard::to_allocvec(&s).unwrap();
            prop_assert_eq!(&a, &b);
            let (back, rest): (S, _) = take_from_bytes(&b).unwrap();
            prop_assert!(rest.is_empty());
            prop_assert!(same_float_bits(&back, &s));
            if !s.f.is_nan() && !s.d.is_nan() {
                prop_assert_eq!(&back, &s);
            }
            let back2: S = postcard::from_bytes(&a).unwrap();
            prop_assert!(same_float_bits(&back2, &s));
        }

        // Garbage: never a panic, and we accept exactly what postcard accepts.
        #[test]
        fn garbage_like_postcard(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let a = take_from_bytes::<(u16, Vec<u8>, Option<char>, E)>(&bytes).ok();
            let b = postcard::take_from_bytes::<(u16, Vec<u8>, Option<char>, E)>(&bytes).ok();
            prop_assert_eq!(a, b);
            let a = take_from_bytes::<(i128, u32, bool, String)>(&bytes).ok();
            let b = postcard::take_from_bytes::<(i128, u32, bool, String)>(&bytes).ok();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn byte_vectors_round_trip(v in prop::collection::vec(any::<u8>(), 0..2000)) {
            let a = ours(&v);
            prop_assert_eq!(&a, &postcard::to_allocvec(&v).unwrap());
            prop_assert_eq!(&ours(v.as_slice()), &a);
            let back: Vec<u8> = take_from_bytes(&a).unwrap().0;
            prop_assert_eq!(back, v);
        }
    }

    /// Decodes `bytes` as `T` from the start, with the allocations measured; checks the
    /// decoder's promises for bytes from a peer: a value or an error (never a panic), a value
    /// took bytes from the front and left the rest, and at most `budget(bytes.len())` bytes
    /// were allocated at once (in proportion to the bytes there, whatever they claim).
    fn decode_checked<'a, T: Deserialize<'a>, F: Ints>(bytes: &'a [u8]) -> Option<T> {
        let mut de = De::<F>::new(bytes);
        let (v, peak) = alloc_probe::peak_bytes(|| T::deserialize(&mut de));
        assert!(
            peak <= budget(bytes.len()),
            "{} allocated {peak} bytes at once decoding {} bytes",
            std::any::type_name::<T>(),
            bytes.len()
        );
        let v = v.ok()?;
        assert!(de.rest().len() <= bytes.len());
        assert_eq!(de.rest(), &bytes[bytes.len() - de.rest().len()..]);
        Some(v)
    }

    /// The most a decoder may allocate at once for `n` bytes of input: a few hundred bytes
    /// of value per byte of input, and serde's cap on the room a sequence reserves up front
    /// (1 MiB).
    fn budget(n: usize) -> usize {
        (1 << 20) + 512 * n
    }

    type Nested = (
        Vec<Vec<u64>>,
        BTreeMap<u32, Vec<String>>,
        std::collections::HashMap<String, Option<E>>,
        std::collections::HashSet<i64>,
    );

    /// Decodes `bytes` as each of several types, the same bytes for each: the shapes serde
    /// has, nested sequences and maps (whose claimed lengths drive allocation), the byte-vector
    /// fast paths, in place and into a reused buffer.
    fn decode_as_many_types<F: Ints>(bytes: &[u8]) {
        decode_checked::<S, F>(bytes);
        decode_checked::<Nested, F>(bytes);
        decode_checked::<(String, Vec<u8>, Box<[u8]>, char, f64), F>(bytes);
        decode_checked::<Vec<E>, F>(bytes);
        decode_checked::<(u128, i128, u16, i16, u32, i32), F>(bytes);
        decode_checked::<Vec<[u32; 4]>, F>(bytes);
        decode_checked::<(Option<bool>, std::collections::VecDeque<u8>), F>(bytes);
        if let Some(s) = decode_checked::<&str, F>(bytes) {
            assert!(std::str::from_utf8(s.as_bytes()).is_ok());
        }
        decode_checked::<&[u8], F>(bytes);
        // In place into a buffer that holds something, and the one-copy byte vector.
        let mut place = vec![String::from("old"); 3];
        let ((), peak) = alloc_probe::peak_bytes(|| {
            let mut de = De::<F>::new(bytes);
            let _ = Vec::<String>::deserialize_in_place(&mut de, &mut place);
        });
        assert!(peak <= budget(bytes.len()), "in place: {peak}");
        let mut out = vec![1, 2, 3];
        if take_byte_vec_into(bytes, &mut out).is_err() {
            assert_eq!(out, [1, 2, 3], "unchanged on error");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// Whatever another process wrote, decoding it as any of many types gives a value or
        /// an error: never a panic, never an allocation the bytes do not pay for. With
        /// postcard's integers and with the pool's fixed-width ones.
        #[test]
        fn arbitrary_bytes_decode_or_fail_cleanly(
            bytes in prop::collection::vec(any::<u8>(), 0..400),
        ) {
            decode_as_many_types::<Varint>(&bytes);
            decode_as_many_types::<FixedInts>(&bytes);
        }

        /// The same for bytes that begin as a real value and then are cut or damaged.
        #[test]
        fn damaged_values_decode_or_fail_cleanly(
            s in arb_s(),
            cut in any::<prop::sample::Index>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let mut bytes = ours(&s);
            for (at, b) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= b;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            decode_as_many_types::<Varint>(&bytes);
        }
    }

    /// Integers at fixed width (the pool's format, `pool/wire.rs`), here so that the decoders
    /// are checked with both kinds of integers.
    struct FixedInts;

    impl Ints for FixedInts {
        const ZIGZAG: bool = false;
        fn put_u16<W: Out>(out: &mut W, v: u16) -> Result<()> {
            out.extend(&v.to_le_bytes())
        }
        fn put_u32<W: Out>(out: &mut W, v: u32) -> Result<()> {
            out.extend(&v.to_le_bytes())
        }
        fn put_u64<W: Out>(out: &mut W, v: u64) -> Result<()> {
            out.extend(&v.to_le_bytes())
        }
        fn put_u128<W: Out>(out: &mut W, v: u128) -> Result<()> {
            out.extend(&v.to_le_bytes())
        }
        fn get_u16(de: &mut De<'_, Self>) -> Result<u16> {
            de.fixed().map(u16::from_le_bytes)
        }
        fn get_u32(de: &mut De<'_, Self>) -> Result<u32> {
            de.fixed().map(u32::from_le_bytes)
        }
        fn get_u64(de: &mut De<'_, Self>) -> Result<u64> {
            de.fixed().map(u64::from_le_bytes)
        }
        fn get_u128(de: &mut De<'_, Self>) -> Result<u128> {
            de.fixed().map(u128::from_le_bytes)
        }
    }

    /// Lengths that claim far more than the bytes there: errors, with next to nothing
    /// allocated.
    #[test]
    fn huge_claims_allocate_next_to_nothing() {
        let mut huge = vec![0xffu8; 8];
        huge.push(0x3f); // a varint of 2^62 - 1
        let mut with_some = huge.clone();
        with_some.extend_from_slice(&[7; 100]);
        for bytes in [&huge[..], &with_some[..]] {
            let small = |peak: usize| assert!(peak < 64 << 10, "{peak} bytes");
            let (r, peak) = alloc_probe::peak_bytes(|| take_from_bytes::<Vec<u8>>(bytes).is_err());
            assert!(r);
            small(peak);
            let (r, peak) = alloc_probe::peak_bytes(|| take_from_bytes::<Vec<u64>>(bytes).is_err());
            assert!(r);
            small(peak);
            let (r, peak) = alloc_probe::peak_bytes(|| take_from_bytes::<String>(bytes).is_err());
            assert!(r);
            small(peak);
            let (r, peak) = alloc_probe::peak_bytes(|| {
                take_from_bytes::<BTreeMap<u8, Vec<u128>>>(bytes).is_err()
            });
            assert!(r);
            small(peak);
            let (r, peak) = alloc_probe::peak_bytes(|| {
                take_from_bytes::<std::collections::HashMap<u8, u8>>(bytes).is_err()
            });
            assert!(r);
            small(peak);
        }
    }

    #[test]
    fn varint_edges_match_postcard() {
        for v in [0u64, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            assert_eq!(ours(&v), postcard::to_allocvec(&v).unwrap());
            assert_eq!(take_from_bytes::<u64>(&ours(&v)).unwrap().0, v);
        }
        for v in [i64::MIN, -1, 0, 1, i64::MAX] {
            assert_eq!(ours(&v), postcard::to_allocvec(&v).unwrap());
        }
        // Out of range for the type: u16 in 3 bytes with too many high bits; an 11-byte u64.
        assert!(take_from_bytes::<u16>(&[0xff, 0xff, 0x04]).is_err());
        assert!(take_from_bytes::<u16>(&[0xff, 0xff, 0x03]).is_ok());
        assert!(take_from_bytes::<u64>(&[0xff; 11]).is_err());
        assert!(take_from_bytes::<u64>(&[
            0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02
        ])
        .is_err());
    }

    #[test]
    fn byte_vec_length_past_the_end_is_an_error() {
        // Claims 200 bytes, has 3.
        assert!(matches!(
            take_from_bytes::<Vec<u8>>(&[0xc8, 0x01, 1, 2, 3]),
            Err(WireError::End)
        ));
        // Claims 2^63 (does not fit in memory): an error, not an allocation.
        let mut huge = vec![0x80u8; 9];
        huge.push(0x01);
        assert!(take_from_bytes::<Vec<u8>>(&huge).is_err());
        assert!(take_from_bytes::<Vec<u32>>(&huge).is_err());
    }

    #[test]
    fn other_sequences_of_bytes_still_work() {
        use std::collections::VecDeque;
        let d: VecDeque<u8> = (0..10).collect();
        let a = ours(&d);
        assert_eq!(a, postcard::to_allocvec(&d).unwrap());
        let back: VecDeque<u8> = take_from_bytes(&a).unwrap().0;
        assert_eq!(back, d);
        let boxed: Box<[u8]> = vec![1, 2, 3].into_boxed_slice();
        assert_eq!(ours(&boxed), postcard::to_allocvec(&boxed).unwrap());
        let back: Box<[u8]> = take_from_bytes(&ours(&boxed)).unwrap().0;
        assert_eq!(back, boxed);
        let nested = vec![vec![1u8, 2], vec![], vec![3]];
        assert_eq!(ours(&nested), postcard::to_allocvec(&nested).unwrap());
        let back: Vec<Vec<u8>> = take_from_bytes(&ours(&nested)).unwrap().0;
        assert_eq!(back, nested);
    }
}
