//! Handles over a connection: a [`Connection`] end travels as its socket and its
//! connection's segment (`SCM_RIGHTS`, through the message's fd table; `dir.rs` lists the
//! checks on arrival), and [`Fd`] makes any file descriptor sendable.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::dir::Dir;
use super::Connection;
use crate::handle;
use crate::shm::Segment;
use crate::sys::socket;

/// Wire form of an end: its socket's index in the message's fd table, the connection's
/// segment (one for all directions, so a receiver maps it once), and which of the segment's
/// directions the end sends and receives on.
#[derive(Serialize, Deserialize)]
pub(super) struct Wire {
    pub(super) fd: u32,
    pub(super) seg: Segment,
    pub(super) out: Option<u8>,
    pub(super) inn: Option<u8>,
}

impl<C> Serialize for Connection<C> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let fd = self
            .fd
            .as_ref()
            .ok_or_else(|| crate::handle::ser_err::<S::Error>("cannot send a closed Connection"))?;
        if self.stream.is_some() {
            return Err(crate::handle::ser_err::<S::Error>(
                "a Listener/Client connection cannot be sent to another process (fork \
                 children inherit it)",
            ));
        }
        let seg = match (&self.out, &self.inn) {
            (Some(d), _) | (None, Some(d)) => d.segment(),
            (None, None) => {
                return Err(crate::handle::ser_err::<S::Error>(
                    "cannot send a Connection without directions",
                ))
            }
        };
        debug_assert!(
            self.inn
                .as_ref()
                .is_none_or(|d| d.segment().id() == seg.id()),
            "both directions of a connection live in one segment"
        );
        let index =
            handle::export_fd(fd.as_fd(), None).map_err(crate::handle::ser_err::<S::Error>)?;
        Wire {
            fd: index,
            seg: seg.clone(),
            out: self.out.as_ref().map(Dir::index),
            inn: self.inn.as_ref().map(Dir::index),
        }
        .serialize(s)
    }
}

impl<'de, C> Deserialize<'de> for Connection<C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        if w.out.is_none() && w.inn.is_none() {
            return Err(crate::handle::de_err::<D::Error>(
                "connection description has neither direction",
            ));
        }
        if w.out.is_some() && w.out == w.inn {
            return Err(crate::handle::de_err::<D::Error>(
                "connection description sends and receives on the same direction",
            ));
        }
        let open = |i: Option<u8>| i.map(|i| Dir::open(&w.seg, i)).transpose();
        let out = open(w.out).map_err(crate::handle::de_err::<D::Error>)?;
        let inn = open(w.inn).map_err(crate::handle::de_err::<D::Error>)?;
        let fd = handle::import_fd(w.fd).map_err(crate::handle::de_err::<D::Error>)?;
        if !socket::is_unix_seqpacket(fd.as_fd()) {
            return Err(crate::handle::de_err::<D::Error>(
                "received fd for a Connection is not a Unix SOCK_SEQPACKET socket",
            ));
        }
        Ok(Connection::from_parts(fd, out, inn))
    }
}

/// Any file descriptor, made sendable: inside a value given to [`Connection::send`] (or to a
/// Spawn child's arguments) it travels by `SCM_RIGHTS`, and the receiver gets its own copy —
/// Python's `multiprocessing.reduction.send_handle` / `recv_handle`.
///
/// ```
/// use std::io::{Read, Write};
/// use multiproc::pipe::Fd;
/// let (a, b) = multiproc::pipe(true)?;
/// let (r, w) = std::io::pipe()?;
/// a.send(&Fd(w.into()))?;
/// let Fd(w2) = b.recv()?;
/// std::fs::File::from(w2).write_all(b"through the fd")?;
/// let mut s = String::new();
/// std::fs::File::from(std::os::fd::OwnedFd::from(r)).read_to_string(&mut s)?;
/// assert_eq!(s, "through the fd");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "send_handle")]
#[doc(alias = "recv_handle")]
#[derive(Debug)]
pub struct Fd(pub OwnedFd);

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let i = handle::export_fd(self.0.as_fd(), None).map_err(handle::ser_err::<S::Error>)?;
        s.serialize_u32(i)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Fd, D::Error> {
        let i = u32::deserialize(d)?;
        Ok(Fd(handle::import_fd(i).map_err(handle::de_err::<D::Error>)?))
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
