//! A message's type identity: the 8 bytes that make a value of the wrong type a
//! [`ErrorKind::Codec`] error at the receiver instead of a silently wrong value.
//!
//! postcard (like any compact, non-self-describing format) decodes whatever bytes it is
//! given as whatever type it is asked for when the shapes happen to fit: `(1u8, 2u8)` read
//! as a `String` is a string of length 1 holding `"\u{2}"`. So every *typed* message (a
//! queue's `put`, a connection's `send`, a child's return value, Spawn arguments, a pool
//! chunk's arguments and its results, a pool initializer's arguments) starts with the
//! sender's **type tag**, and the receiver compares it with the tag of the type it asks for
//! before the codec sees a byte:
//!
//! ```text
//! 0   u64 LE   tag      FNV-1a (64 bits) of the canonical form of type_name::<T>()
//! 8   ...      value    the codec's encoding of the value (a pool chunk: its values)
//! ```
//!
//! Whether a message is typed at all is said by the frame that carries it, outside the
//! payload (a queue frame's header check word; for a connection, the check word of the
//! ring frame of its record or marker: see `ring/geometry.rs`, `pipe/dir.rs`), so raw-bytes
//! messages (`put_bytes`, `send_bytes`) stay
//! exactly the caller's bytes, and each side can tell the other kind apart:
//!
//! | sent by            | received by             | result                                      |
//! |--------------------|-------------------------|---------------------------------------------|
//! | typed `T`          | typed `T`               | the value                                   |
//! | typed `T`          | typed `U` (`U` ≠ `T`)   | `Codec` error naming `U` (and `T` when this process knows its name); the message is consumed |
//! | raw bytes          | typed `U`               | `Codec` error naming `U`; consumed          |
//! | typed `T`          | raw bytes               | `Codec` error (naming `T` when known); consumed |
//! | raw bytes          | raw bytes               | the bytes                                   |
//!
//! A refused message is consumed, like one that does not decode (and as Python's `recv()`
//! of bytes that don't unpickle): a receiver that kept it at the head would get the same
//! error forever. The queue or connection goes on with the next message.
//!
//! # The tag
//!
//! - **Same binary** (a parent and its forked or spawned child): the same `type_name`, so
//!   the same tag.
//! - **Borrowed and owned forms agree** ([`canonical`]): `send(&"hi")` writes a `&str`,
//!   which serde encodes exactly as a `String`, and Python users expect to receive it as
//!   one; so references, lifetimes, `Box`/`Rc`/`Arc`/`Cow` are dropped from the name, `str`
//!   reads `String` and a slice `[T]` reads `Vec<T>` before hashing. Other types with equal
//!   encodings stay apart (`u32` and `i32`, `Vec<T>` and `VecDeque<T>`, `[T; N]` and
//!   `Vec<T>`): send and receive the same type.
//! - **Different binaries built from the same types** (named objects opened by unrelated
//!   processes, a remote backend): `type_name` is the type's path with its generic
//!   arguments (`alloc::vec::Vec<u8>`, `(u8, alloc::string::String)`), the same in every
//!   binary built by the same compiler from the same source. Rust does not promise its
//!   exact text across compiler versions: binaries built by different compilers may
//!   disagree and then refuse each other's messages (an error, never a wrong value).
//!   `TypeId` was not used: it is a per-build hash that differs between binaries.
//! - **What it does not tell apart**: two types with the same path and arguments (the same
//!   type from two semver-incompatible versions of a crate); a type whose `Serialize` impl
//!   changed between builds; lifetimes (erased: they don't change an encoding). Neither
//!   the codec nor the type's size or layout is part of the tag: the encoding depends on
//!   the `Serialize` impl, not on the memory layout (which may legally change between
//!   builds while the encoding does not), and a custom codec ([`QueueBuilder::codec`])
//!   changes the bytes after the tag, not the tag.
//! - **Not a defence**: a hostile process can write any tag. Everything after it is
//!   decoded as untrusted input (bounds-checked, errors not panics) as before.
//!
//! Cost: hashing a `type_name` (FNV-1a over its bytes) is folded into a constant by the
//! optimizer when the name is hashed as is (checked: a release build turned the hash of a
//! 529-byte name into one `mov`), but the canonical form below is built at run time, so
//! each thread computes a type's tag once and keeps it in a 16-entry direct-mapped cache
//! keyed by the address of the `type_name` string (a thread-local load and two compares).
//! A queue handle computes its `T`'s tag once, when it is made. Per message the price is
//! 8 more bytes to copy and one compare; `bench/RESULTS.md` has the benchmark's
//! small-message rows before and after.
//!
//! # Naming the sender's type
//!
//! The tag is a hash; the receiver names its own type from `type_name`, and the sender's
//! from a small table of the types this process has computed tags for (sent, received,
//! or made typed handles of). A message from another process whose type this process never used is
//! reported by its tag alone.
//!
//! [`ErrorKind::Codec`]: crate::ErrorKind::Codec
//! [`QueueBuilder::codec`]: crate::queue::QueueBuilder::codec

use std::sync::atomic::{AtomicU64, Ordering};

use crate::fork::OnceBox;

use crate::error::{Error, ErrorKind, Result};

/// Bytes of a type tag at the start of a typed message.
pub(crate) const TAG_LEN: usize = 8;

/// The type tag of `T`: FNV-1a (64-bit) of `T`'s canonical name ([`canonical`]). Computed
/// once per type and thread, then found in a small per-thread cache keyed by the address
/// of the `type_name` string (about a nanosecond).
#[inline]
pub(crate) fn tag_of<T: ?Sized>() -> u64 {
    cached_tag(std::any::type_name::<T>())
}

/// Entries of the per-thread cache of tags (direct-mapped, by the name's address).
const CACHE_SLOTS: usize = 16;

thread_local! {
    /// `(name address, name length, tag)`; address 0 is an empty slot.
    static CACHE: [std::cell::Cell<(usize, usize, u64)>; CACHE_SLOTS] =
        const { [const { std::cell::Cell::new((0, 0, 0)) }; CACHE_SLOTS] };
}

#[inline]
fn cached_tag(name: &'static str) -> u64 {
    // A `&'static str` never changes: the same address and length are the same text, so
    // the same tag (another type's name at the same address cannot exist while this one
    // does).
    let (addr, len) = (name.as_ptr() as usize, name.len());
    CACHE.with(|c| {
        let slot = &c[((addr >> 3) ^ len) % CACHE_SLOTS];
        let (a, l, tag) = slot.get();
        if a == addr && l == len {
            return tag;
        }
        let tag = tag_and_remember(name);
        slot.set((addr, len, tag));
        tag
    })
}

/// The tag of a type named `name` (a `type_name`).
#[cfg(test)]
fn tag_of_name(name: &str) -> u64 {
    fnv1a(canonical(name).as_bytes())
}

/// The tag of a type named `name` (a `type_name`), remembering its canonical name for error
/// messages (the canonical one: `&str` and `String` share a tag, and are named `String`).
#[cold]
#[inline(never)]
fn tag_and_remember(name: &str) -> u64 {
    let c = canonical(name);
    let tag = fnv1a(c.as_bytes());
    remember_name(tag, c);
    tag
}

/// FNV-1a, 64 bits.
const fn fnv1a(s: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < s.len() {
        h ^= s[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

/// Wrappers that serde writes exactly as what they hold.
const TRANSPARENT: [&str; 4] = [
    "alloc::boxed::Box",
    "alloc::rc::Rc",
    "alloc::sync::Arc",
    "alloc::borrow::Cow",
];

/// `name` (a `type_name`) with the differences that serde does not write taken out, so
/// that a borrowed form and its owned form have one tag and `send(&"hi")` can be received
/// as a `String`:
///
/// - references and lifetimes go: `&T`, `&'a T` and `&mut T` are `T`, `Foo<'a, T>` is
///   `Foo<T>`;
/// - `str` is `alloc::string::String`;
/// - a slice `[T]` is `alloc::vec::Vec<T>` (an array `[T; N]` stays: serde writes it
///   without a length);
/// - `Box<T>`, `Rc<T>`, `Arc<T>` and `Cow<T>` are `T` (so `Cow<str>` is a `String`).
///
/// Anything it does not understand (closures, `dyn`, function types) is kept as written:
/// both sides make the same text of the same name, which is all the tag needs.
pub(crate) fn canonical(name: &str) -> String {
    #[derive(Clone, Copy)]
    enum Open {
        /// `<` of a type that is kept.
        Angle,
        /// `<` of a transparent wrapper: neither it nor its `>` is written.
        Wrapper,
        /// `[` written at this output position; `true` once a `;` made it an array.
        Bracket(usize, bool),
    }
    let b = name.as_bytes();
    let mut out = String::with_capacity(name.len() + 16);
    let mut stack: Vec<Open> = Vec::new();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    while i < b.len() {
        let c = b[i];
        match c {
            b'&' => {
                i += 1;
                if name[i..].starts_with("mut ") {
                    i += 4;
                }
                continue;
            }
            b'\'' => {
                // A lifetime (`Cow<'_, str>`, `Foo<'a>`): not written by serde.
                i += 1;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                if name[i..].starts_with(", ") {
                    i += 2;
                } else if name[i..].starts_with(' ') {
                    i += 1;
                }
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'>') => {
                out.push_str("->");
                i += 2;
                continue;
            }
            b'<' => {
                stack.push(Open::Angle);
                out.push('<');
            }
            b'>' => match stack.pop() {
                Some(Open::Wrapper) => {}
                // `Foo<'a>` without its lifetime is `Foo`.
                _ if out.ends_with('<') => {
                    out.pop();
                }
                _ => out.push('>'),
            },
            b'[' => {
                stack.push(Open::Bracket(out.len(), false));
                out.push('[');
            }
            b';' => {
                if let Some(Open::Bracket(at, _)) = stack.last().copied() {
                    *stack.last_mut().expect("just seen") = Open::Bracket(at, true);
                }
                out.push(';');
            }
            b']' => match stack.pop() {
                Some(Open::Bracket(at, false)) => {
                    out.replace_range(at..at + 1, "alloc::vec::Vec<");
                    out.push('>');
                }
                _ => out.push(']'),
            },
            _ if ident(c) => {
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let tok = &name[start..i];
                if tok == "str" {
                    out.push_str("alloc::string::String");
                } else if TRANSPARENT.contains(&tok) && b.get(i) == Some(&b'<') {
                    stack.push(Open::Wrapper);
                    i += 1;
                } else {
                    out.push_str(tok);
                }
                continue;
            }
            _ => out.push(c as char),
        }
        i += 1;
    }
    out
}

/// One entry of [`NAMES`]: a tag (0: free), claimed by compare-and-swap, and its name.
struct NameSlot {
    tag: AtomicU64,
    name: OnceBox<&'static str>,
}

impl NameSlot {
    const fn new() -> NameSlot {
        NameSlot {
            tag: AtomicU64::new(0),
            name: OnceBox::new(),
        }
    }
}

/// Slots of [`NAMES`]; a process that uses more types than this names the rest by tag.
const NAME_SLOTS: usize = 512;

/// Types whose names this process knows, by tag (for error messages only): an open-
/// addressing table, lock-free, so that a fork while another thread writes it leaves the
/// child nothing to wait for (`crate::fork`).
static NAMES: [NameSlot; NAME_SLOTS] = [const { NameSlot::new() }; NAME_SLOTS];

/// Remembers `name` under its tag (on a miss of the tag cache: once per type and thread),
/// so that a receiver in this process can name the type in a type-mismatch error. A name
/// that gets a slot is leaked (at most [`NAME_SLOTS`] of them).
#[cold]
fn remember_name(tag: u64, name: String) {
    if tag == 0 {
        return;
    }
    for i in 0..NAME_SLOTS {
        let s = &NAMES[(tag as usize).wrapping_add(i) % NAME_SLOTS];
        let claimed = match s.tag.load(Ordering::Acquire) {
            0 => match s
                .tag
                .compare_exchange(0, tag, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => true,
                Err(now) => now == tag,
            },
            t => t == tag,
        };
        if claimed {
            s.name.get_or_init(|| Box::leak(name.into_boxed_str()));
            return;
        }
    }
}

/// The name of the type with `tag`, when this process knows it.
fn name_of(tag: u64) -> Option<&'static str> {
    for i in 0..NAME_SLOTS {
        let s = &NAMES[(tag as usize).wrapping_add(i) % NAME_SLOTS];
        match s.tag.load(Ordering::Acquire) {
            0 => return None,
            t if t == tag => return s.name.get().copied(),
            _ => {}
        }
    }
    None
}

/// Describes the type of a message tagged `tag`.
fn describe(tag: u64) -> String {
    match name_of(tag) {
        Some(n) => format!("a `{n}`"),
        None => format!("a value of another type (type tag {tag:016x})"),
    }
}

/// Appends `T`'s tag to `out` (the start of a typed message).
#[inline(always)]
pub(crate) fn put_tag<T: ?Sized>(out: &mut Vec<u8>) {
    out.extend_from_slice(&tag_of::<T>().to_le_bytes());
}

/// The value bytes of a typed message, after checking that its tag is `T`'s.
///
/// # Errors
/// [`ErrorKind::Codec`] naming both types when the tags differ, or when the message is too
/// short to hold a tag.
#[inline(always)]
pub(crate) fn check<T: ?Sized>(msg: &[u8]) -> Result<&[u8]> {
    check_tag::<T>(tag_of::<T>(), msg)
}

/// The value bytes of a message that a typed receive of `T` took: `typed` says whether its
/// frame marked it typed (else it is raw bytes: an error), and its tag must be `expected`,
/// `T`'s ([`tag_of`]).
///
/// # Errors
/// [`ErrorKind::Codec`], as [`check`] and [`raw_where_typed`].
#[inline(always)]
pub(crate) fn value_of<T: ?Sized>(expected: u64, msg: &[u8], typed: bool) -> Result<&[u8]> {
    if !typed {
        return Err(raw_where_typed::<T>());
    }
    check_tag::<T>(expected, msg)
}

/// [`check`] with `T`'s tag already at hand (`expected`, from [`tag_of`]).
#[inline(always)]
pub(crate) fn check_tag<T: ?Sized>(expected: u64, msg: &[u8]) -> Result<&[u8]> {
    match msg.split_first_chunk::<TAG_LEN>() {
        Some((tag, rest)) if u64::from_le_bytes(*tag) == expected => Ok(rest),
        Some((tag, _)) => Err(mismatch(
            std::any::type_name::<T>(),
            u64::from_le_bytes(*tag),
        )),
        None => Err(Error::new(
            ErrorKind::Codec,
            format!(
                "a typed message of {} bytes is too short for its type tag (expected a `{}`)",
                msg.len(),
                std::any::type_name::<T>()
            ),
        )),
    }
}

#[cold]
#[inline(never)]
fn mismatch(expected: &str, got: u64) -> Error {
    Error::new(
        ErrorKind::Codec,
        format!(
            "type mismatch: expected a `{expected}`, the message holds {}",
            describe(got)
        ),
    )
}

/// The error for a raw-bytes message (`put_bytes`, `send_bytes`) met by a typed receive of
/// `T`.
#[cold]
#[inline(never)]
pub(crate) fn raw_where_typed<T: ?Sized>() -> Error {
    Error::new(
        ErrorKind::Codec,
        format!(
            "type mismatch: expected a `{}`, the message is raw bytes (sent by put_bytes or \
             send_bytes; receive it with get_bytes or recv_bytes)",
            std::any::type_name::<T>()
        ),
    )
}

/// The error for a typed message met by a raw-bytes receive; `msg` is the whole message.
#[cold]
#[inline(never)]
pub(crate) fn typed_where_raw(msg: &[u8]) -> Error {
    let what = match msg.first_chunk::<TAG_LEN>() {
        Some(tag) => describe(u64::from_le_bytes(*tag)),
        None => "a typed value".to_string(),
    };
    Error::new(
        ErrorKind::Codec,
        format!(
            "expected raw bytes, the message holds {what} (sent by put or send: receive it \
             with get or recv of its type)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_differ_by_type_and_agree_with_the_name() {
        assert_ne!(tag_of::<String>(), tag_of::<(u8, u8)>());
        assert_ne!(tag_of::<Vec<u8>>(), tag_of::<Vec<i8>>());
        assert_ne!(tag_of::<u32>(), tag_of::<i32>());
        assert_ne!(tag_of::<Vec<u8>>(), tag_of::<[u8; 3]>());
        assert_eq!(tag_of::<String>(), fnv1a(b"alloc::string::String"));
        // The FNV-1a test vector: the hash is the documented one, not an accident of
        // this build (another binary computes the same).
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        // Cached or not, the same.
        for _ in 0..3 {
            assert_eq!(
                tag_of::<(u8, String)>(),
                tag_of_name("(u8, alloc::string::String)")
            );
        }
    }

    /// A borrowed form and its owned form are one type on the wire.
    #[test]
    fn borrowed_and_owned_forms_agree() {
        use std::borrow::Cow;
        use std::rc::Rc;
        use std::sync::Arc;
        assert_eq!(tag_of::<&str>(), tag_of::<String>());
        assert_eq!(tag_of::<str>(), tag_of::<String>());
        assert_eq!(tag_of::<&mut str>(), tag_of::<String>());
        assert_eq!(tag_of::<(&str, i32)>(), tag_of::<(String, i32)>());
        assert_eq!(tag_of::<&[u8]>(), tag_of::<Vec<u8>>());
        assert_eq!(tag_of::<[Vec<&str>]>(), tag_of::<Vec<Vec<String>>>());
        assert_eq!(tag_of::<Box<str>>(), tag_of::<String>());
        assert_eq!(tag_of::<Box<[u8]>>(), tag_of::<Vec<u8>>());
        assert_eq!(tag_of::<Cow<'_, str>>(), tag_of::<String>());
        assert_eq!(tag_of::<Rc<Option<u8>>>(), tag_of::<Option<u8>>());
        assert_eq!(
            tag_of::<Arc<&[(u8, &str)]>>(),
            tag_of::<Vec<(u8, String)>>()
        );
        assert_eq!(tag_of::<Vec<[u8; 4]>>(), tag_of::<&[[u8; 4]]>());
        assert_ne!(tag_of::<[u8; 4]>(), tag_of::<Vec<u8>>());
        assert_ne!(tag_of::<Option<&str>>(), tag_of::<Option<u8>>());
        assert_eq!(
            canonical("&[&str]"),
            "alloc::vec::Vec<alloc::string::String>"
        );
        assert_eq!(canonical("[u8; 3]"), "[u8; 3]");
        assert_eq!(canonical("a::Foo<'_>"), "a::Foo");
        assert_eq!(
            canonical("a::Foo<'a, &'a str>"),
            "a::Foo<alloc::string::String>"
        );
        assert_eq!(canonical("fn(u8) -> u8"), "fn(u8) -> u8");
        assert_eq!(canonical("core::str::Utf8Error"), "core::str::Utf8Error");
    }

    #[test]
    fn check_accepts_its_own_type_and_names_both_otherwise() {
        let mut m = Vec::new();
        put_tag::<(u8, u8)>(&mut m);
        m.extend_from_slice(&[1, 2]);
        assert_eq!(check::<(u8, u8)>(&m).unwrap(), &[1, 2]);
        let e = check::<String>(&m).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Codec);
        assert!(e.message().contains("alloc::string::String"), "{e}");
        assert!(e.message().contains("(u8, u8)"), "{e}");
        let e = check::<String>(&[1, 2, 3]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Codec);
        let mut unknown = 0x1234_5678_9abc_def0u64.to_le_bytes().to_vec();
        unknown.push(0);
        let e = check::<u8>(&unknown).unwrap_err();
        assert!(e.message().contains("123456789abcdef0"), "{e}");
        let e = typed_where_raw(&m);
        assert!(e.message().contains("(u8, u8)"), "{e}");
        // A borrowed form names its owned form (they are one type on the wire).
        let _ = tag_of::<&str>();
        let mut s = Vec::new();
        put_tag::<String>(&mut s);
        let e = check::<u8>(&s).unwrap_err();
        assert!(
            e.message().contains("holds a `alloc::string::String`"),
            "{e}"
        );
        assert!(raw_where_typed::<u64>().message().contains("`u64`"));
    }
}
