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
//! So the serializer and deserializer are the codec's (`codec/wire.rs`, which also moves
//! byte vectors with one copy), instantiated with [`Fixed`] integers. Everything decoded is
//! untrusted (it comes from another process): every read is bounds checked and a malformed
//! input is an error, never a panic.

use crate::codec::wire::{self, Ints, Out, Result};

/// Integers as their fixed-width little-endian bytes (signed ones as their two's-complement
/// bits, no zigzag).
pub(crate) struct Fixed;

/// [`Ints`] methods writing and reading a number's fixed-width little-endian bytes.
macro_rules! fixed_width {
    ($($put:ident $get:ident $t:ty;)*) => { $(
        #[inline(always)]
        fn $put<W: Out>(out: &mut W, v: $t) -> Result<()> {
            out.extend(&v.to_le_bytes())
        }
        #[inline(always)]
        fn $get(de: &mut wire::De<'_, Self>) -> Result<$t> {
            Ok(<$t>::from_le_bytes(de.fixed()?))
        }
    )* };
}

impl Ints for Fixed {
    const ZIGZAG: bool = false;
    fixed_width! {
        put_u16 get_u16 u16;
        put_u32 get_u32 u32;
        put_u64 get_u64 u64;
        put_u128 get_u128 u128;
    }
}

/// A serializer writing the pool's format to a `Vec` (its `out` is the vector).
pub(crate) type Ser<'a> = wire::Ser<'a, Vec<u8>, Fixed>;

/// A deserializer reading the pool's format from a slice.
pub(crate) type De<'de> = wire::De<'de, Fixed>;

/// Encodes one value at the end of `out` (used by the tests).
#[cfg(test)]
pub(crate) fn encode_into<T: ?Sized + serde::Serialize>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<()> {
    value.serialize(&mut Ser::new(out))
}

/// Decodes one value from the start of `bytes`; returns it and the bytes after it (used by
/// the tests).
#[cfg(test)]
pub(crate) fn take_from_bytes<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
) -> Result<(T, &'a [u8])> {
    let mut de = De::new(bytes);
    let v = T::deserialize(&mut de)?;
    Ok((v, de.rest()))
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

    /// A value with every shape serde has.
    fn sample() -> S {
        S {
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
        }
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
        let s = sample();
        round_trip(&s);
        round_trip(&"x".repeat(300));
        round_trip(&vec![(); 1000]);
        // Byte vectors (one copy each way) and other byte sequences (element by element).
        round_trip(&vec![7u8; 300]);
        round_trip(&std::collections::VecDeque::from(vec![1u8, 2, 3]));
        round_trip(&vec![vec![1u8, 2], vec![], vec![3]]);
        // The layout: fixed-width integers, varint lengths.
        let mut out = Vec::new();
        encode_into(&(7u32, -1i16, vec![1u8; 200]), &mut out).unwrap();
        assert_eq!(&out[..8], &[7, 0, 0, 0, 0xff, 0xff, 0xc8, 0x01]);
        assert_eq!(out.len(), 8 + 200);
        // Lengths are postcard's varints (a `Vec<()>` is its length alone).
        for n in edge_u64().into_iter().filter(|&n| n <= 1 << 16) {
            let units = vec![(); n as usize];
            let mut a = Vec::new();
            encode_into(&units, &mut a).unwrap();
            assert_eq!(a, postcard::to_allocvec(&units).unwrap(), "{n}");
            assert_eq!(take_from_bytes::<Vec<()>>(&a).unwrap().0.len(), n as usize);
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
        let s = sample();
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 500,
            ..Default::default()
        })]

        /// Arguments and results are bytes another process wrote: decoded as any type, they
        /// give a value or an error, never a panic, and allocate in proportion to the bytes
        /// there (`codec/wire.rs` checks the same decoder with more types).
        #[test]
        fn arbitrary_bytes_decode_or_fail_cleanly(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            fn check<T: for<'a> Deserialize<'a>>(bytes: &[u8]) {
                let (r, peak) = crate::codec::alloc_probe::peak_bytes(|| {
                    take_from_bytes::<T>(bytes).map(|(_, rest)| rest.len())
                });
                assert!(peak <= (1 << 20) + 512 * bytes.len(), "{peak} bytes");
                if let Ok(rest) = r {
                    assert!(rest <= bytes.len());
                }
            }
            check::<S>(&bytes);
            check::<Vec<E>>(&bytes);
            check::<(Vec<u64>, String, Option<i32>, BTreeMap<u16, Vec<u8>>)>(&bytes);
            check::<(u128, i64, f32, char, bool)>(&bytes);
        }
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
        // A length varint too long, or with bits past 64.
        assert!(take_from_bytes::<Vec<u8>>(&[0xff; 12]).is_err());
        assert!(take_from_bytes::<Vec<u8>>(&[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02
        ])
        .is_err());
        assert!(take_from_bytes::<bool>(&[2]).is_err());
        assert!(take_from_bytes::<Option<u8>>(&[2, 0]).is_err());
        assert!(take_from_bytes::<E>(&[9]).is_err());
        assert!(take_from_bytes::<char>(&[2, b'a', b'b']).is_err());
        // A huge sequence length with no bytes behind it: an error, not an allocation.
        let mut huge = vec![0xff; 8];
        huge.push(0x7f); // u64::MAX >> 1
        assert!(take_from_bytes::<Vec<u8>>(&huge).is_err());
        assert!(take_from_bytes::<Vec<u64>>(&huge).is_err());
        assert!(take_from_bytes::<String>(&[2, 0xff, 0xfe]).is_err());
    }
}
