//! [`Listener`] and [`Client`]: connections between unrelated processes, over a Unix socket
//! (a path, or a name in Linux's abstract namespace) or TCP, with Python's authentication
//! handshake — Python's `multiprocessing.connection.Listener` and `Client`, on the wire too.
//!
//! The user's documentation (which `Connection`, authentication) is on [`Listener`].

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{auth, stream, Connection};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{socket, Deadline};

/// Default bound on the authentication handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a [`Listener`] listens and a [`Client`] connects (Python's `address` and `family`).
///
/// From a path (`&str`, `&Path`, `PathBuf`): a Unix socket, Python's `'AF_UNIX'` (a string
/// starting with a NUL byte is a name in the abstract namespace, as in Python). From a
/// `SocketAddr` or `(host, port)`: TCP, Python's `'AF_INET'` (`("127.0.0.1", 6000)`,
/// `("localhost", 6000)`; a host name is resolved when binding or connecting).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A Unix socket at this path.
    Unix(PathBuf),
    /// A Unix socket named in Linux's abstract namespace (no file; gone with its listener).
    Abstract(Vec<u8>),
    /// A TCP address.
    Tcp(SocketAddr),
    /// A TCP address by host name and port, resolved when binding or connecting (the first
    /// address that works).
    Host(String, u16),
}

impl Address {
    /// The TCP address `host:port` resolves to (the first, if several): `Address::tcp(("localhost", 6000))`.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when it resolves to nothing; an OS error when resolving fails.
    pub fn tcp(addr: impl ToSocketAddrs) -> Result<Address> {
        addr.to_socket_addrs()
            .map_err(|e| Error::os("cannot resolve the address", e))?
            .next()
            .map(Address::Tcp)
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "the address resolves to nothing"))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Abstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Host(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Address {
        match p.as_os_str().as_encoded_bytes() {
            [0, name @ ..] => Address::Abstract(name.to_vec()),
            _ => Address::Unix(p.to_path_buf()),
        }
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Address {
        Address::from(p.as_path())
    }
}

impl From<&PathBuf> for Address {
    fn from(p: &PathBuf) -> Address {
        Address::from(p.as_path())
    }
}

impl From<&str> for Address {
    fn from(p: &str) -> Address {
        Address::from(Path::new(p))
    }
}

impl From<&String> for Address {
    fn from(p: &String) -> Address {
        Address::from(Path::new(p))
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Tcp(a)
    }
}

macro_rules! from_ip_port {
    ($($t:ty),*) => { $(
        impl From<($t, u16)> for Address {
            fn from((ip, port): ($t, u16)) -> Address {
                Address::Tcp(SocketAddr::new(ip.into(), port))
            }
        }
    )* };
}
from_ip_port!(
    std::net::IpAddr,
    std::net::Ipv4Addr,
    std::net::Ipv6Addr,
    [u8; 4]
);

impl From<(&str, u16)> for Address {
    /// An IP address literal is used as it is; anything else is a host name.
    fn from((host, port): (&str, u16)) -> Address {
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Address::Tcp(SocketAddr::new(ip, port)),
            Err(_) => Address::Host(host.to_string(), port),
        }
    }
}

impl From<(String, u16)> for Address {
    fn from((host, port): (String, u16)) -> Address {
        Address::from((host.as_str(), port))
    }
}

/// The socket addresses of a `Host` address.
fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let v: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    if v.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the host name resolves to no address",
        ));
    }
    Ok(v)
}

fn connect_error(addr: &Address, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ECONNREFUSED) => {
            Error::new(ErrorKind::NotFound, format!("nobody listens at {addr}")).with_source(e)
        }
        Some(libc::ETIMEDOUT) => Error::new(
            ErrorKind::Timeout,
            format!("timed out connecting to {addr}"),
        )
        .with_source(e),
        _ => Error::os(format!("cannot connect to {addr}"), e),
    }
}

/// Connects to the first of `addrs` that answers, until `deadline`.
fn connect_tcp(addrs: &[SocketAddr], deadline: Deadline) -> std::io::Result<TcpStream> {
    let mut last = None;
    for a in addrs {
        let r = match deadline.remaining() {
            Ok(None) => TcpStream::connect(a),
            Ok(Some(t)) => TcpStream::connect_timeout(a, t),
            Err(()) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        };
        match r {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound)))
}

enum Sock {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Accepts connections from unrelated processes (Python's
/// `multiprocessing.connection.Listener`); a Python `Client` may connect too.
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Client, Listener, Process};
///
/// let listener = Listener::bind(("127.0.0.1", 0))?.with_authkey(b"secret");
/// let address = listener.address().clone(); // the port the system chose
/// let client = Process::fork(move || {
///     let conn = Client::new(address).authkey(b"secret").connect().unwrap();
///     conn.send_bytes(b"hello").unwrap();
///     conn.recv::<String>().unwrap()
/// })?;
/// let conn = listener.accept_timeout(Duration::from_secs(30))?;
/// assert_eq!(conn.recv_bytes()?, b"hello");
/// conn.send(&"welcome".to_string())?;
/// assert_eq!(client.join()?, "welcome");
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// A listener on a Unix path removes its socket file when dropped (as Python's does).
///
/// # Which `Connection`
///
/// Both return the [`Connection`] of [`pipe`](super::pipe), with the same calls (`send`,
/// `recv`, `send_bytes`, `recv_bytes`, `poll`, their timed forms, [`wait`](super::wait)).
/// Underneath it is a socket-only end ([`Connection::is_socket`]): no shared-memory ring (the
/// peer may be another program or machine), CPython's framing (a 4-byte big-endian length,
/// or `-1` and an 8-byte one), so a Python `Client` or `Listener` talks to it with
/// `send_bytes`/`recv_bytes`. What differs from a pipe's end:
///
/// - `send`/`recv` use our codec (postcard), not pickle: between Rust processes. Talk to
///   Python with bytes.
/// - Handles (fds) cannot travel in it, and it cannot itself be sent to another process
///   (fork children inherit it).
/// - One message at a time per end *in each process*: threads of one process may share it,
///   processes that share it by fork must not send (or receive) at the same time, as in
///   Python.
/// - A timed send that runs out mid-message breaks the end for sends (a byte stream cannot
///   take back half a message); a timed receive that runs out mid-message keeps what it has.
/// - A received message over the end's limit (1 GiB unless set) is an error, not an
///   allocation: the peer is not trusted.
///
/// # Authentication
///
/// With an `authkey` on both sides, the listener and the client each prove to the other that
/// they know the key (HMAC challenges), exactly as CPython does (3.11's
/// HMAC-MD5 and 3.12's HMAC-SHA256 dialects). Without one, anyone who can reach the address
/// may connect: keep such listeners on Unix sockets or loopback. The handshake is bounded by
/// a timeout (30 s unless set), so a silent client cannot stall [`Listener::accept`].
pub struct Listener {
    sock: Sock,
    address: Address,
    authkey: Option<Vec<u8>>,
    max_message_len: usize,
    handshake_timeout: Duration,
    /// Remove this path on drop (a Unix socket we created).
    unlink: Option<PathBuf>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authkey", &self.authkey.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Listener {
    /// Listens at `address` (Python's `Listener(address)`), without authentication until
    /// [`with_authkey`](Self::with_authkey). A TCP port of 0 lets the system choose;
    /// [`address`](Self::address) tells which.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] when the address is in use (for a Unix path: a file is
    /// there, maybe a crashed listener's socket — remove it); an OS error otherwise.
    pub fn bind(address: impl Into<Address>) -> Result<Listener> {
        let address = address.into();
        let in_use = |e: std::io::Error| {
            if e.raw_os_error() == Some(libc::EADDRINUSE) {
                Error::new(
                    ErrorKind::AlreadyExists,
                    format!("address {address} is in use (a stale socket file of a crashed listener? remove it)"),
                )
                .with_source(e)
            } else {
                Error::os(format!("cannot listen at {address}"), e)
            }
        };
        let (sock, bound, unlink) = match &address {
            Address::Unix(p) => {
                let l = UnixListener::bind(p).map_err(in_use)?;
                (Sock::Unix(l), address.clone(), Some(p.clone()))
            }
            Address::Abstract(n) => {
                let a = UnixAddr::from_abstract_name(n).map_err(in_use)?;
                let l = UnixListener::bind_addr(&a).map_err(in_use)?;
                (Sock::Unix(l), address.clone(), None)
            }
            Address::Tcp(a) => {
                let l = TcpListener::bind(a).map_err(in_use)?;
                (Sock::Tcp(l), address.clone(), None)
            }
            Address::Host(h, p) => {
                let all = resolve(h, *p).map_err(in_use)?;
                let l = TcpListener::bind(&all[..]).map_err(in_use)?;
                (Sock::Tcp(l), address.clone(), None)
            }
        };
        let mut listener = Listener {
            sock,
            address: bound,
            authkey: None,
            max_message_len: stream::DEFAULT_MAX_MESSAGE,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            unlink,
        };
        // (From here on, dropping `listener` on an error removes its socket file.)
        let nonblocking = match &listener.sock {
            Sock::Unix(l) => l.set_nonblocking(true),
            Sock::Tcp(l) => l.set_nonblocking(true),
        };
        nonblocking.map_err(|e| Error::os("cannot make the listener non-blocking", e))?;
        if let Sock::Tcp(l) = &listener.sock {
            let real = l
                .local_addr()
                .map_err(|e| Error::os("cannot read the listening address", e))?;
            listener.address = Address::Tcp(real);
        }
        Ok(listener)
    }

    /// Requires every client to know `authkey`, and proves to them that we do (Python's
    /// `Listener(address, authkey=...)`).
    pub fn with_authkey(mut self, authkey: impl AsRef<[u8]>) -> Listener {
        self.authkey = Some(authkey.as_ref().to_vec());
        self
    }

    /// The longest message the accepted connections receive (1 GiB unless set): a peer that
    /// announces a longer one gets an error, not that much memory.
    pub fn with_max_message_len(mut self, bytes: usize) -> Listener {
        self.max_message_len = bytes;
        self
    }

    /// How long [`accept`](Self::accept) gives a client for the authentication handshake
    /// (30 s unless set).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Listener {
        self.handshake_timeout = timeout;
        self
    }

    /// The address it listens at (with the real port when bound to port 0).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for a client as long as it takes, then authenticates it if an authkey is set
    /// (Python's `accept()`).
    ///
    /// # Errors
    /// [`ErrorKind::AuthenticationFailed`] when the client does not know the authkey (the
    /// listener goes on: accept again); [`ErrorKind::Timeout`] when its handshake takes
    /// longer than the handshake timeout; an OS error otherwise.
    pub fn accept(&self) -> Result<Connection> {
        self.accept_until(Deadline::never())
    }

    /// As [`accept`](Self::accept), waiting at most `timeout` (any `Duration`) for a client
    /// to connect.
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`] when no client came; otherwise as [`accept`](Self::accept).
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection> {
        self.accept_until(Deadline::within(timeout))
    }

    /// As [`accept`](Self::accept), waiting until `deadline` at most for a client.
    ///
    /// # Errors
    /// As [`accept_timeout`](Self::accept_timeout).
    pub fn accept_deadline(&self, deadline: Instant) -> Result<Connection> {
        self.accept_until(Deadline::at(deadline))
    }

    fn accept_until(&self, deadline: Deadline) -> Result<Connection> {
        let fd = loop {
            let r = match &self.sock {
                Sock::Unix(l) => l.accept().map(|(s, _)| OwnedFd::from(s)),
                Sock::Tcp(l) => l.accept().and_then(|(s, _)| {
                    s.set_nodelay(true)?;
                    Ok(OwnedFd::from(s))
                }),
            };
            match r {
                Ok(fd) => break fd,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Err(e) => return Err(Error::os("accept failed", e)),
            }
            let Ok(left) = deadline.remaining() else {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no client connected to {} in time", self.address),
                ));
            };
            socket::poll_rw(&[(self.as_fd(), false)], left)
                .map_err(|e| Error::os("cannot poll the listener", e))?;
        };
        let conn = Connection::from_stream(fd, self.max_message_len);
        if let Some(key) = &self.authkey {
            let hs = Deadline::within(self.handshake_timeout);
            auth::deliver_challenge(&conn, key, hs)?;
            auth::answer_challenge(&conn, key, hs)?;
        }
        Ok(conn)
    }
}

impl AsFd for Listener {
    /// The listening socket (poll it for readability to learn that a client waits).
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.sock {
            Sock::Unix(l) => l.as_fd(),
            Sock::Tcp(l) => l.as_fd(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(p) = &self.unlink {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Connects to a [`Listener`] — ours or Python's — in another process (Python's
/// `multiprocessing.connection.Client(address, authkey=...)`), as a builder:
/// `Client::new(address).authkey(key).connect()?`.
///
/// See [`Listener`] for an example.
#[doc(alias = "connect")]
#[derive(Clone)]
pub struct Client {
    address: Address,
    authkey: Option<Vec<u8>>,
    timeout: Option<Duration>,
    max_message_len: usize,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.address)
            .field("authkey", &self.authkey.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Client {
    /// A client for `address` (a path for a Unix socket, `(ip, port)` or a `SocketAddr` for
    /// TCP; see [`Address`]).
    pub fn new(address: impl Into<Address>) -> Client {
        Client {
            address: address.into(),
            authkey: None,
            timeout: None,
            max_message_len: stream::DEFAULT_MAX_MESSAGE,
        }
    }

    /// Authenticates with `authkey` (the listener's must be the same).
    pub fn authkey(mut self, authkey: impl AsRef<[u8]>) -> Client {
        self.authkey = Some(authkey.as_ref().to_vec());
        self
    }

    /// Bounds connecting and the handshake together (no bound unless set, as in Python).
    pub fn timeout(mut self, timeout: Duration) -> Client {
        self.timeout = Some(timeout);
        self
    }

    /// The longest message the connection receives (1 GiB unless set); see
    /// [`Listener::with_max_message_len`].
    pub fn max_message_len(mut self, bytes: usize) -> Client {
        self.max_message_len = bytes;
        self
    }

    /// Connects and, with an authkey, authenticates both ways.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when nobody listens at the address;
    /// [`ErrorKind::AuthenticationFailed`] when the listener has another authkey (or wants
    /// one and we have none: then it is usually [`ErrorKind::Disconnected`]);
    /// [`ErrorKind::Timeout`] past the timeout; an OS error otherwise.
    pub fn connect(&self) -> Result<Connection> {
        let deadline = Deadline::after(self.timeout);
        let addr = &self.address;
        let fd = match addr {
            Address::Unix(p) => UnixStream::connect(p).map(OwnedFd::from),
            Address::Abstract(n) => UnixAddr::from_abstract_name(n)
                .and_then(|a| UnixStream::connect_addr(&a))
                .map(OwnedFd::from),
            Address::Tcp(_) | Address::Host(..) => match addr {
                Address::Host(h, p) => resolve(h, *p),
                Address::Tcp(a) => Ok(vec![*a]),
                _ => unreachable!(),
            }
            .and_then(|all| connect_tcp(&all, deadline))
            .and_then(|s| {
                s.set_nodelay(true)?;
                Ok(OwnedFd::from(s))
            }),
        }
        .map_err(|e| connect_error(addr, e))?;
        let conn = Connection::from_stream(fd, self.max_message_len);
        if let Some(key) = &self.authkey {
            auth::answer_challenge(&conn, key, deadline)?;
            auth::deliver_challenge(&conn, key, deadline)?;
        }
        Ok(conn)
    }
}
