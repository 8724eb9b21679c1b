//! Hostile or corrupt handle descriptions received from a peer: each is an error at the
//! receiver, never a panic, and the connection stays usable.

use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::time::Duration;

use multiproc::codec::{Codec, Postcard};
use multiproc::pipe::Fd;
use multiproc::{pipe_with, Event, Lock, Semaphore, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::util::with_watchdog;

const LIMIT: Duration = Duration::from_secs(60);

/// A forged handle description: `((segment fd, id, segment kind), offset, object kind)`.
type Forged = ((Fd, u64, u32), u64, u8);

/// Writes a forged value in place of the next one [`Forge`] is given.
type Forgery = Box<dyn FnOnce(&mut Vec<u8>) -> multiproc::Result<()>>;

thread_local! {
    /// What [`Forge`] writes instead of the next value it is given.
    static FORGED: RefCell<Option<Forgery>> = const { RefCell::new(None) };
}

/// A codec that writes a forged value (e.g. a handle description) in place of the value it
/// is asked to encode, once: a hostile peer's message that claims to be a `Lock` (or any
/// type: the type tag in front is the sent type's, see `codec/ident.rs`), which a
/// well-behaved sender cannot make. Otherwise postcard.
pub struct Forge;

impl Codec for Forge {
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> multiproc::Result<()> {
        match FORGED.with(|f| f.borrow_mut().take()) {
            Some(forgery) => forgery(out),
            None => Postcard::encode(value, out),
        }
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> multiproc::Result<T> {
        Postcard::decode(bytes)
    }
}

/// Sends `forged` on `c` as a message of type `T` (`as_if` is only its type).
pub fn send_forged<T: Serialize, F: Serialize + 'static>(
    c: &multiproc::Connection<Forge>,
    as_if: &T,
    forged: F,
) {
    FORGED.with(|f| *f.borrow_mut() = Some(Box::new(move |out| Postcard::encode(&forged, out))));
    c.send(as_if).unwrap();
}

fn forged(fd: OwnedFd, id: u64, kind: u8) -> Forged {
    ((Fd(fd), id, 1u32), 65600u64, kind)
}

/// A sealed memfd of `len` bytes whose first 32 bytes are a valid segment header: magic,
/// layout version 1, `kind`, length `len`, `id`.
fn forged_segment(len: u64, kind: u32, id: u64) -> std::os::fd::OwnedFd {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create(c"forged", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .unwrap();
    rustix::fs::ftruncate(&fd, len).unwrap();
    let mut header = Vec::new();
    header.extend_from_slice(b"MPROCSEG");
    header.extend_from_slice(&1u32.to_ne_bytes());
    header.extend_from_slice(&kind.to_ne_bytes());
    header.extend_from_slice(&len.to_ne_bytes());
    header.extend_from_slice(&id.to_ne_bytes());
    assert_eq!(rustix::io::pwrite(&fd, &header, 0).unwrap(), header.len());
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
        .unwrap();
    fd
}

/// Issue 17.6: an arena segment too small for its slot table, named by an otherwise valid
/// handle description (`(segment (fd, id, kind), offset, object kind)`), made `recv` panic
/// with "arena table in bounds".
#[test]
fn a_forged_handle_naming_a_too_small_arena_is_an_error() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe_with::<Forge>(true).unwrap();
        let lock = Lock::new().unwrap();
        for (len, id) in [(4096u64, 0x1234_5678u64), (64 * 1024, 0x2345_6789)] {
            // Kind 1 (arena), slot offset 65600 (the first slot), object kind 1 (Lock).
            let fd = forged_segment(len, 1, id);
            send_forged(&b, &lock, forged(fd, id, 1));
            let e = a
                .recv::<Lock>()
                .expect_err("a forged arena must be refused");
            assert!(e.to_string().contains("too small"), "{e}");
        }
        // The same description for other kinds of object.
        let fd = forged_segment(4096, 1, 0x3456_789a);
        send_forged(&b, &Semaphore::new(1).unwrap(), forged(fd, 0x3456_789a, 3));
        assert!(a.recv::<Semaphore>().is_err());
        // The connection still works.
        let ev = Event::new().unwrap();
        ev.set();
        b.send(&ev).unwrap();
        assert!(a.recv::<Event>().unwrap().is_set());
        let v = Value::new(5u32).unwrap();
        b.send(&v).unwrap();
        assert_eq!(a.recv::<Value<u32>>().unwrap().get(), 5);
    });
}
