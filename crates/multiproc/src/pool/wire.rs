//! The pool's codec for task arguments and results: a serde format built for speed over
//! a socket between two processes of the same binary.
//!
//! ```text
//! bool, u8, i8           1 byte
//! u16..u128, i16..i128   fixed width, little-endian (2, 4, 8, 16 bytes)
//! f32, f64               IEEE bits, little-endian
//! str, bytes, char       varint length | bytes (char: as its UTF-8 string)
//! seq, map               varint length | elements (map: key, value, ...)
//! option                 0 | 1 value
//! enum                   varint variant index | fields
//! tuple, struct          fields back to back; unit: nothing
//! varint := LEB128 (7 bits a byte, high bit set on all bytes but the last)
//! ```
//! It is postcard's layout except for integers, which postcard writes as varints: a map over
//! small values spends most of its time encoding and decoding integers (an argument and a
//! result per task, twice each), and a fixed-width integer is one store or one load where a
//! varint is a loop over its bytes (measured on the 2-core VM: 0.8 ns to encode a `u64` and
//! 0.6 to decode it, against 3.3 and 2.3 as a varint; the few extra bytes through the
//! socket cost less than that).
//!
//! Everything decoded is untrusted (it comes from another process): every read is bounds
//! checked and a malformed input is an error, never a panic.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

/// A codec error (its message).
#[derive(Debug)]
pub(crate) struct WireError(pub(crate) String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

impl ser::Error for WireError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WireError(msg.to_string())
    }
}

impl de::Error for WireError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WireError(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, WireError>;

fn err<T>(msg: &str) -> Result<T> {
    Err(WireError(msg.to_string()))
}

/// Appends `v` as a LEB128 varint (lengths and variant indices).
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A serializer writing the pool's format to a `Vec`.
pub(crate) struct Ser<'a> {
    pub(crate) out: &'a mut Vec<u8>,
}

impl<'a> Ser<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Ser<'a> {
        Ser { out }
    }
}

/// Serializer methods that append a number's fixed-width little-endian bytes.
macro_rules! le_bytes {
    ($($name:ident: $t:ty),*) => { $(
        #[inline]
        fn $name(self, v: $t) -> Result<()> {
            self.out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
    )* };
}

impl<'s> ser::Serializer for &mut Ser<'s> {
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
        self.out.push(v as u8);
        Ok(())
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.out.push(v as u8);
        Ok(())
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.out.push(v);
        Ok(())
    }
    // Integers and floats: fixed-width little-endian (the one difference from postcard).
    le_bytes!(
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_i128: i128,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_u128: u128,
        serialize_f32: f32,
        serialize_f64: f64
    );
    fn serialize_char(self, v: char) -> Result<()> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<()> {
        self.serialize_bytes(v.as_bytes())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        put_varint(self.out, v.len() as u64);
        self.out.extend_from_slice(v);
        Ok(())
    }
    #[inline]
    fn serialize_none(self) -> Result<()> {
        self.out.push(0);
        Ok(())
    }
    #[inline]
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<()> {
        self.out.push(1);
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
        put_varint(self.out, index.into());
        Ok(())
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
        put_varint(self.out, index.into());
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self> {
        match len {
            Some(n) => {
                put_varint(self.out, n as u64);
                Ok(self)
            }
            None => err("a sequence of unknown length cannot be serialized"),
        }
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self> {
        put_varint(self.out, index.into());
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self> {
        self.serialize_seq(len)
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self> {
        put_varint(self.out, index.into());
        Ok(self)
    }
    fn collect_str<T: ?Sized + fmt::Display>(self, value: &T) -> Result<()> {
        self.serialize_str(&value.to_string())
    }
}

/// Deserializer methods for fixed-width little-endian numbers.
macro_rules! fixed_width_de {
    ($($name:ident $visit:ident $t:ty;)*) => { $(
        #[inline]
        fn $name<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
            v.$visit(<$t>::from_le_bytes(self.fixed()?))
        }
    )* };
}

macro_rules! compound {
    ($($tr:ident :: $f:ident),*) => {$(
        impl ser::$tr for &mut Ser<'_> {
            type Ok = ();
            type Error = WireError;
            #[inline]
            fn $f<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
                value.serialize(&mut **self)
            }
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

impl ser::SerializeMap for &mut Ser<'_> {
    type Ok = ();
    type Error = WireError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<()> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Ser<'_> {
    type Ok = ();
    type Error = WireError;
    #[inline]
    fn serialize_field<T: ?Sized + Serialize>(&mut self, _k: &'static str, v: &T) -> Result<()> {
        v.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Ser<'_> {
    type Ok = ();
    type Error = WireError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, _k: &'static str, v: &T) -> Result<()> {
        v.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

/// Encodes one value at the end of `out` (used by the tests).
#[cfg(test)]
pub(crate) fn encode_into<T: ?Sized + Serialize>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    value.serialize(&mut Ser::new(out))
}

/// A deserializer reading the pool's format from a slice.
pub(crate) struct De<'de> {
    input: &'de [u8],
}

impl<'de> De<'de> {
    pub(crate) fn new(input: &'de [u8]) -> De<'de> {
        De { input }
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
            None => err("unexpected end of input"),
        }
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if n > self.input.len() {
            return err("unexpected end of input");
        }
        let (a, b) = self.input.split_at(n);
        self.input = b;
        Ok(a)
    }

    /// `N` bytes, as an array.
    #[inline(always)]
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        match self.input.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.input = rest;
                Ok(*head)
            }
            None => err("unexpected end of input"),
        }
    }

    /// A LEB128 varint of at most 64 bits.
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return err("a varint is out of range");
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return err("a varint is too long");
            }
        }
    }

    fn len(&mut self) -> Result<usize> {
        usize::try_from(self.varint()?).or_else(|_| err("a length is out of range"))
    }

    fn bytes(&mut self) -> Result<&'de [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'de str> {
        std::str::from_utf8(self.bytes()?).or_else(|_| err("a string is not UTF-8"))
    }
}

/// Decodes one value from the start of `bytes`; returns it and the bytes after it (used by
/// the tests).
#[cfg(test)]
pub(crate) fn take_from_bytes<'a, T: de::Deserialize<'a>>(
    bytes: &'a [u8],
) -> Result<(T, &'a [u8])> {
    let mut de = De::new(bytes);
    let v = T::deserialize(&mut de)?;
    Ok((v, de.rest()))
}

struct Access<'a, 'de> {
    de: &'a mut De<'de>,
    len: usize,
}

impl<'de> de::SeqAccess<'de> for Access<'_, 'de> {
    type Error = WireError;
    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        // Never more than there are bytes left (the length is untrusted).
        Some(self.len.min(self.de.input.len()))
    }
}

impl<'de> de::MapAccess<'de> for Access<'_, 'de> {
    type Error = WireError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.len.min(self.de.input.len()))
    }
}

impl<'de> de::EnumAccess<'de> for &mut De<'de> {
    type Error = WireError;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let index =
            u32::try_from(self.varint()?).or_else(|_| err("a variant index is out of range"))?;
        let v = seed.deserialize(index.into_deserializer())?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut De<'de> {
    type Error = WireError;
    fn unit_variant(self) -> Result<()> {
        Ok(())
    }
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
        visitor.visit_seq(Access {
            de: self,
            len: fields.len(),
        })
    }
}

impl<'de> de::Deserializer<'de> for &mut De<'de> {
    type Error = WireError;

    fn is_human_readable(&self) -> bool {
        false
    }
    fn deserialize_any<V: Visitor<'de>>(self, _v: V) -> Result<V::Value> {
        err("the format is not self-describing")
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.byte()? {
            0 => v.visit_bool(false),
            1 => v.visit_bool(true),
            _ => err("a bool is neither 0 nor 1"),
        }
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_i8(self.byte()? as i8)
    }
    fixed_width_de! {
        deserialize_i16 visit_i16 i16;
        deserialize_i32 visit_i32 i32;
        deserialize_i64 visit_i64 i64;
        deserialize_i128 visit_i128 i128;
        deserialize_u16 visit_u16 u16;
        deserialize_u32 visit_u32 u32;
        deserialize_u64 visit_u64 u64;
        deserialize_u128 visit_u128 u128;
        deserialize_f32 visit_f32 f32;
        deserialize_f64 visit_f64 f64;
    }
    #[inline]
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_u8(self.byte()?)
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let s = self.str()?;
        let mut cs = s.chars();
        match (cs.next(), cs.next()) {
            (Some(c), None) => v.visit_char(c),
            _ => err("a char is not one character"),
        }
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_borrowed_str(self.str()?)
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_borrowed_str(self.str()?)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_borrowed_bytes(self.bytes()?)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_borrowed_bytes(self.bytes()?)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.byte()? {
            0 => v.visit_none(),
            1 => v.visit_some(self),
            _ => err("an option tag is neither 0 nor 1"),
        }
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _n: &'static str, v: V) -> Result<V::Value> {
        v.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value> {
        v.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let len = self.len()?;
        v.visit_seq(Access { de: self, len })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value> {
        v.visit_seq(Access { de: self, len })
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value> {
        v.visit_seq(Access { de: self, len })
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let len = self.len()?;
        v.visit_map(Access { de: self, len })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        v.visit_seq(Access {
            de: self,
            len: fields.len(),
        })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        v.visit_enum(self)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, _v: V) -> Result<V::Value> {
        err("the format has no identifiers")
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _v: V) -> Result<V::Value> {
        err("the format is not self-describing")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
    enum E {
        Unit,
        New(i32),
        Tup(u8, String),
        Rec { a: Option<u64>, b: Vec<i16> },
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
    struct S {
        x: u32,
        y: i64,
        f: f64,
        g: f32,
        c: char,
        s: String,
        e: Vec<E>,
        m: BTreeMap<String, u128>,
        t: (bool, i8, u16, i128),
        unit: (),
    }

    fn edge_u64() -> Vec<u64> {
        let mut v = vec![0, 1, u64::MAX, u64::MAX - 1];
        for s in 0..64 {
            v.push(1 << s);
            v.push((1 << s) - 1);
            v.push((1u64 << s).wrapping_add(1));
        }
        v
    }

    fn round_trip<T: Serialize + for<'a> Deserialize<'a> + PartialEq + std::fmt::Debug>(v: &T) {
        let mut out = vec![9]; // appends after what is there
        encode_into(v, &mut out).unwrap();
        out.extend_from_slice(b"tail");
        let (back, rest): (T, _) = take_from_bytes(&out[1..]).unwrap();
        assert_eq!(&back, v);
        assert_eq!(rest, b"tail");
    }

    /// Every shape serde has comes back as it went.
    #[test]
    fn round_trips() {
        let ints = edge_u64();
        round_trip(&ints);
        let signed: Vec<i64> = ints.iter().map(|&x| x as i64).collect();
        let signed32: Vec<i32> = ints.iter().map(|&x| x as i32).collect();
        let small: Vec<u16> = ints.iter().map(|&x| x as u16).collect();
        round_trip(&(signed, signed32, small, usize::MAX, isize::MIN));
        let s = S {
            x: 300,
            y: -70_000,
            f: 1.5,
            g: -0.25,
            c: 'é',
            s: "hello".into(),
            e: vec![
                E::Unit,
                E::New(-5),
                E::Tup(7, "x".into()),
                E::Rec {
                    a: Some(1 << 40),
                    b: vec![-1, 2, i16::MIN],
                },
                E::Rec { a: None, b: vec![] },
            ],
            m: [("k".to_string(), u128::MAX), ("j".to_string(), 5)].into(),
            t: (true, -3, 65_535, i128::MIN),
            unit: (),
        };
        round_trip(&s);
        round_trip(&"x".repeat(300));
        round_trip(&vec![(); 1000]);
        // The layout: fixed-width integers, varint lengths.
        let mut out = Vec::new();
        encode_into(&(7u32, -1i16, vec![1u8; 200]), &mut out).unwrap();
        assert_eq!(&out[..8], &[7, 0, 0, 0, 0xff, 0xff, 0xc8, 0x01]);
        assert_eq!(out.len(), 8 + 200);
        for v in edge_u64() {
            let mut a = Vec::new();
            put_varint(&mut a, v);
            assert_eq!(a, postcard::to_allocvec(&v).unwrap(), "{v}");
            assert_eq!(De::new(&a).varint().unwrap(), v);
        }
    }

    /// The encoding of `v`, in hex.
    fn hex<T: Serialize + ?Sized>(v: &T) -> String {
        let mut out = Vec::new();
        encode_into(v, &mut out).unwrap();
        out.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The exact bytes of a few values (workers read them: the format must not drift).
    #[test]
    fn pinned_encodings() {
        let s = S {
            x: 300,
            y: -70_000,
            f: 1.5,
            g: -0.25,
            c: 'é',
            s: "hello".into(),
            e: vec![
                E::Unit,
                E::New(-5),
                E::Tup(7, "x".into()),
                E::Rec {
                    a: Some(1 << 40),
                    b: vec![-1, 2, i16::MIN],
                },
                E::Rec { a: None, b: vec![] },
            ],
            m: [("k".to_string(), u128::MAX), ("j".to_string(), 5)].into(),
            t: (true, -3, 65_535, i128::MIN),
            unit: (),
        };
        let want = concat!(
            "2c010000",                                 // x: u32
            "90eefeffffffffff",                         // y: i64
            "000000000000f83f",                         // f: f64
            "000080be",                                 // g: f32
            "02c3a9",                                   // c: char, as its UTF-8
            "0568656c6c6f",                             // s
            "05",                                       // e: 5 variants
            "00",                                       // Unit
            "01fbffffff",                               // New(-5)
            "02070178",                                 // Tup(7, "x")
            "0301000000000001000003ffff02000080",       // Rec { Some(1 << 40), [-1, 2, MIN] }
            "030000",                                   // Rec { None, [] }
            "02",                                       // m: 2 entries, sorted
            "016a05000000000000000000000000000000",     // "j": 5
            "016bffffffffffffffffffffffffffffffff",     // "k": u128::MAX
            "01fdffff00000000000000000000000000000080", // t
        );
        assert_eq!(hex(&s), want);
        let mut bytes = Vec::new();
        encode_into(&s, &mut bytes).unwrap();
        assert_eq!(take_from_bytes::<S>(&bytes).unwrap(), (s, &[][..]));
        assert_eq!(
            hex(&(u64::MAX, -2i64, 0x1234u16, -1i32, 1u128)),
            concat!(
                "ffffffffffffffff",
                "feffffffffffffff",
                "3412",
                "ffffffff",
                "01000000000000000000000000000000"
            )
        );
        // A byte vector (length 130: a 2-byte varint), a byte slice, a Vec<u32>.
        assert_eq!(
            hex(&(vec![7u8; 130], b"ab".as_slice(), vec![1u32, 2])),
            format!("8201{}026162020100000002000000", "07".repeat(130))
        );
    }

    /// Truncations and garbage are errors (never panics).
    #[test]
    fn hostile_input_is_an_error() {
        let s = (
            vec![u64::MAX, 5, 1 << 50],
            "text".to_string(),
            Some(-7i32),
            E::New(3),
        );
        let mut bytes = Vec::new();
        encode_into(&s, &mut bytes).unwrap();
        for cut in 0..bytes.len() {
            assert!(take_from_bytes::<(Vec<u64>, String, Option<i32>, E)>(&bytes[..cut]).is_err());
        }
        assert!(De::new(&[0xff; 12]).varint().is_err());
        assert!(
            De::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .varint()
                .is_err()
        );
        assert!(take_from_bytes::<bool>(&[2]).is_err());
        assert!(take_from_bytes::<Option<u8>>(&[2, 0]).is_err());
        assert!(take_from_bytes::<E>(&[9]).is_err());
        assert!(take_from_bytes::<char>(&[2, b'a', b'b']).is_err());
        // A huge sequence length with no bytes behind it: an error, not an allocation.
        let mut huge = Vec::new();
        put_varint(&mut huge, u64::MAX >> 1);
        assert!(take_from_bytes::<Vec<u8>>(&huge).is_err());
        assert!(take_from_bytes::<Vec<u64>>(&huge).is_err());
        assert!(take_from_bytes::<String>(&[2, 0xff, 0xfe]).is_err());
    }
}
