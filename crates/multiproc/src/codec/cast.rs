//! Recognizing byte vectors inside serde's generic calls, so `wire.rs` can move them with
//! one copy.
//!
//! serde hands a format a `Vec<u8>` as `collect_seq(&Vec<u8>)` (a `[u8]` as
//! `collect_seq(&[u8])`), and asks for one with `deserialize_seq(VecVisitor<u8>)`: generic
//! calls, with no way to see the bytes as a slice. Types are compared with
//! [`typeid::of`], which (unlike `TypeId::of`) accepts types that are not `'static` by
//! ignoring their lifetimes, which do not change a type's layout. When the types are equal
//! we reinterpret the value as the type it is.
//!
//! The only unsafe code in the codec is here: values read, or borrowed, as their own type.
//!
//! # Safety
//!
//! A value is reinterpreted as its own type only after `typeid` proved the two types equal (the
//! `Vec<u8>` and `[u8]` fast paths); each block says which check it relies on.

#![allow(unsafe_code)]

use std::any::TypeId;
use std::mem::ManuallyDrop;

use serde::de::{self, Visitor};

use crate::fork::OnceBox;

/// The bytes of `iter` when it is a `&Vec<u8>` or a `&[u8]`.
#[inline(always)]
pub(super) fn as_byte_slice<I>(iter: &I) -> Option<&[u8]> {
    let id = typeid::of::<I>();
    if id == TypeId::of::<&'static Vec<u8>>() {
        // SAFETY: `I` is `&'x Vec<u8>` for some lifetime 'x (the ids are equal, and they
        // differ only in lifetimes, which do not change layout). `iter: &'a I` implies
        // `'x: 'a`, so reading it as `&'a &'a Vec<u8>` only shortens lifetimes.
        let v: &&Vec<u8> = unsafe { &*(iter as *const I).cast::<&Vec<u8>>() };
        Some(v.as_slice())
    } else if id == TypeId::of::<&'static [u8]>() {
        // SAFETY: as above, `I` is `&'x [u8]` with `'x: 'a`.
        let v: &&[u8] = unsafe { &*(iter as *const I).cast::<&[u8]>() };
        Some(v)
    } else {
        None
    }
}

/// True when `V` is serde's visitor for `Vec<u8>` (the one `Vec::<u8>::deserialize` passes
/// to `deserialize_seq`): then the value it would build from the elements is exactly the
/// `Vec` of the bytes, in order.
#[inline(always)]
pub(super) fn is_byte_vec_visitor<'de, V: Visitor<'de>>() -> bool {
    typeid::of::<V::Value>() == TypeId::of::<Vec<u8>>()
        && typeid::of::<V>() == byte_vec_visitor_id()
}

/// Turns a `Vec<u8>` into `T`, which must be `Vec<u8>` (asserted).
#[inline(always)]
pub(super) fn byte_vec_into<T>(v: Vec<u8>) -> T {
    assert!(
        typeid::of::<T>() == TypeId::of::<Vec<u8>>(),
        "byte_vec_into called for another type"
    );
    let v = ManuallyDrop::new(v);
    // SAFETY: `T` is `Vec<u8>` (asserted above; `Vec<u8>` has no lifetime parameters, so
    // equal lifetime-erased ids mean the very same type). `v` is not dropped, so ownership of
    // its buffer moves to the returned value exactly once.
    unsafe { std::ptr::read((&*v as *const Vec<u8>).cast::<T>()) }
}

/// `place` as the `Vec<u8>` it is, when `T` is `Vec<u8>`.
#[inline(always)]
pub(super) fn as_byte_vec_mut<T>(place: &mut T) -> Option<&mut Vec<u8>> {
    if typeid::of::<T>() == TypeId::of::<Vec<u8>>() {
        // SAFETY: `T` is `Vec<u8>` (equal lifetime-erased ids, and `Vec<u8>` has no lifetime
        // parameters, so the very same type): the pointer is the same place, with the same
        // layout, borrowed for the same lifetime.
        Some(unsafe { &mut *(place as *mut T).cast::<Vec<u8>>() })
    } else {
        None
    }
}

/// The type id of serde's `Vec<u8>` visitor (a private type), learned once by asking
/// `Vec::<u8>::deserialize` to deserialize from a probe that records its visitor's type.
fn byte_vec_visitor_id() -> TypeId {
    // (Not a `OnceLock`: see `crate::fork`.)
    static ID: OnceBox<TypeId> = OnceBox::new();
    *ID.get_or_init(|| {
        let mut seen = None;
        let _ = <Vec<u8> as de::Deserialize>::deserialize(Probe(&mut seen));
        // No `deserialize_seq` call (a serde that asks differently): an id no visitor has.
        seen.unwrap_or(TypeId::of::<Probe<'static>>())
    })
}

/// A deserializer that records the visitor type of a `deserialize_seq` call and fails.
struct Probe<'a>(&'a mut Option<TypeId>);

#[derive(Debug)]
struct ProbeError;

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        ProbeError
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, _v: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, _v: V) -> Result<V::Value, ProbeError> {
        *self.0 = Some(typeid::of::<V>());
        Err(ProbeError)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::wire;
    use serde::de::{Deserializer, SeqAccess};

    #[test]
    fn recognizes_exactly_byte_vectors() {
        let v = vec![1u8, 2, 3];
        assert_eq!(as_byte_slice(&&v), Some(&[1u8, 2, 3][..]));
        assert_eq!(as_byte_slice(&v.as_slice()), Some(&[1u8, 2, 3][..]));
        assert_eq!(as_byte_slice(&&vec![1i8]), None);
        assert_eq!(as_byte_slice(&&vec![1u16]), None);
        assert_eq!(as_byte_slice(&v), None, "a Vec by value is not a &Vec");
        assert_ne!(byte_vec_visitor_id(), TypeId::of::<Probe<'static>>());
    }

    /// A visitor that builds a `Vec<u8>` from a seq differently (reversed): not serde's, so
    /// it must see every element.
    struct Reversed;
    impl<'de> Visitor<'de> for Reversed {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
            let mut v = Vec::new();
            while let Some(b) = a.next_element::<u8>()? {
                v.insert(0, b);
            }
            Ok(v)
        }
    }

    #[test]
    fn byte_vec_borrowed_mutably_only_for_byte_vectors() {
        let mut v = vec![1u8, 2];
        as_byte_vec_mut(&mut v).unwrap().push(3);
        assert_eq!(v, [1, 2, 3]);
        assert!(as_byte_vec_mut(&mut vec![1i8]).is_none());
        assert!(as_byte_vec_mut(&mut [1u8; 3]).is_none());
        assert!(as_byte_vec_mut(&mut String::new()).is_none());
    }

    #[test]
    fn another_visitor_of_the_same_value_type_is_not_bypassed() {
        assert!(!is_byte_vec_visitor::<Reversed>());
        let bytes = [3u8, 1, 2, 3];
        let mut de = wire::De::<wire::Varint>::new(&bytes);
        assert_eq!((&mut de).deserialize_seq(Reversed).unwrap(), vec![3, 2, 1]);
    }
}
