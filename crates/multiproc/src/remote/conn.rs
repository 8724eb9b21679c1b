//! One connection to the server, owned by one handle: connected lazily, dropped on any
//! transport error (the next call connects again), and never used by a process other than
//! the one that made it (a forked child connects anew).
//!
//! Every read is bounded: a plain command's reply must come within [`REPLY_TIMEOUT`], a
//! blocking command's within its own block time plus [`REPLY_MARGIN`]. A dead server or a
//! half-open TCP connection is noticed that way, as [`ErrorKind::Disconnected`].

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::sys::Deadline;

/// How long a connection attempt may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the reply to a non-blocking command may take.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Added to a blocking command's block time to bound the wait for its reply.
pub(crate) const REPLY_MARGIN: Duration = Duration::from_secs(2);
/// The longest one blocking command blocks on the server; longer waits are made of slices.
pub(crate) const SLICE: Duration = Duration::from_secs(1);
/// The shortest block time sent to the server (0 would mean "forever").
pub(crate) const MIN_BLOCK: Duration = Duration::from_millis(10);

/// A server address and one lazily made connection to it.
pub(crate) struct Conn {
    client: redis::Client,
    /// The address without credentials, for messages.
    shown: String,
    slot: Mutex<Slot>,
}

struct Slot {
    pid: u32,
    conn: Option<redis::Connection>,
    /// Counts connections made by this handle in this process; a consumer compares it to
    /// know that its connection was replaced (see `JoinableQueue`'s recovery).
    generation: u64,
    /// The read timeout set on `conn` (set again only when another is wanted: one system
    /// call less per command).
    read_timeout: Duration,
}

/// The locked connection of a [`Conn`], for a few commands in a row.
pub(crate) struct Session<'a> {
    conn: &'a Conn,
    slot: MutexGuard<'a, Slot>,
}

impl Conn {
    /// Parses `url` (`redis://host:port/db`, `redis+unix:///path`, `unix:///path`, ...);
    /// connects only when first used.
    pub(crate) fn open(url: &str) -> Result<Conn> {
        let client = redis::Client::open(url).map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("not a usable Redis URL ({}): {e}", redact(url)),
            )
        })?;
        Ok(Conn {
            client,
            shown: redact(url),
            slot: Mutex::new(Slot {
                pid: std::process::id(),
                conn: None,
                generation: 0,
                read_timeout: REPLY_TIMEOUT,
            }),
        })
    }

    /// Another connection to the same server (not connected yet).
    pub(crate) fn fresh(&self) -> Conn {
        Conn {
            client: self.client.clone(),
            shown: self.shown.clone(),
            slot: Mutex::new(Slot {
                pid: std::process::id(),
                conn: None,
                generation: 0,
                read_timeout: REPLY_TIMEOUT,
            }),
        }
    }

    /// The server's address, without credentials.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// Locks the connection for a few commands.
    pub(crate) fn session(&self) -> Session<'_> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let pid = std::process::id();
        if slot.pid != pid {
            // A forked child: the socket is shared with the parent; never speak on it. Closing
            // our copy of the fd (a client connection sends nothing on drop) leaves the
            // parent's connection as it was.
            drop(slot.conn.take());
            slot.pid = pid;
            slot.generation = 0;
        }
        Session { conn: self, slot }
    }

    /// A new dedicated connection (for pub/sub), bounded by the usual timeouts.
    pub(crate) fn dedicated(&self) -> Result<redis::Connection> {
        let mut attempts = 0;
        let c = loop {
            match self.client.get_connection_with_timeout(CONNECT_TIMEOUT) {
                Ok(c) => break c,
                // The handshake's reads, interrupted by a stop and continue: try again.
                Err(e) if is_interrupted(&e) && attempts < 3 => attempts += 1,
                Err(e) => return Err(self.error(e)),
            }
        };
        c.set_write_timeout(Some(REPLY_TIMEOUT))
            .map_err(|e| self.error(e))?;
        c.set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(|e| self.error(e))?;
        Ok(c)
    }

    /// Waits for `ready()` to say yes: subscribes to `channel` on a dedicated connection,
    /// then looks, then waits for a message in slices of at most [`SLICE`], looking again
    /// after each (so a message lost, or published before the subscription, costs at most a
    /// slice). `Ok(false)` when `deadline` passes first. A wait interrupted by a stop and
    /// continue of this process starts again with a new subscription.
    pub(crate) fn wait_published(
        &self,
        channel: &str,
        deadline: Deadline,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<bool> {
        'subscribe: loop {
            if ready()? {
                return Ok(true);
            }
            let mut sub = self.dedicated()?;
            let mut ps = sub.as_pubsub();
            if let Err(e) = ps.subscribe(channel) {
                if is_interrupted(&e) {
                    continue 'subscribe;
                }
                return Err(self.error(e));
            }
            loop {
                if ready()? {
                    return Ok(true);
                }
                let Ok(rem) = deadline.remaining() else {
                    return Ok(false);
                };
                ps.set_read_timeout(Some(slice(rem)))
                    .map_err(|e| self.error(e))?;
                match ps.get_message() {
                    Ok(_) => {}
                    Err(e) if e.is_timeout() => {}
                    Err(e) if is_interrupted(&e) => continue 'subscribe,
                    Err(e) => return Err(self.error(e)),
                }
            }
        }
    }

    /// Turns a client error into ours: transport failures are [`ErrorKind::Disconnected`].
    pub(crate) fn error(&self, e: redis::RedisError) -> Error {
        if is_transport(&e) {
            Error::new(
                ErrorKind::Disconnected,
                format!(
                    "lost the connection to the Redis server at {} (the next call connects \
                     again): {e}",
                    self.shown
                ),
            )
        } else {
            Error::new(
                ErrorKind::Remote,
                format!(
                    "the Redis server at {} answered with an error: {e}",
                    self.shown
                ),
            )
        }
    }
}

/// True for errors after which the connection cannot be trusted, or the server is not
/// serving yet (loading its data after a restart).
fn is_transport(e: &redis::RedisError) -> bool {
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
    {
        return true;
    }
    matches!(
        e.code(),
        Some("LOADING") | Some("MASTERDOWN") | Some("TRYAGAIN") | Some("CLUSTERDOWN")
    )
}

impl Session<'_> {
    /// The current generation (see [`Slot::generation`]), connecting if needed.
    pub(crate) fn generation(&mut self) -> Result<u64> {
        self.connection(REPLY_TIMEOUT)?;
        Ok(self.slot.generation)
    }

    fn connection(&mut self, read: Duration) -> Result<&mut redis::Connection> {
        if self.slot.conn.is_none() {
            // `dedicated` sets the read timeout to REPLY_TIMEOUT.
            let c = self.conn.dedicated()?;
            self.slot.conn = Some(c);
            self.slot.generation += 1;
            self.slot.read_timeout = REPLY_TIMEOUT;
        }
        if self.slot.read_timeout != read {
            let c = self.slot.conn.as_mut().expect("connected above");
            if let Err(e) = c.set_read_timeout(Some(read)) {
                self.slot.conn = None;
                return Err(self.conn.error(e));
            }
            self.slot.read_timeout = read;
        }
        Ok(self.slot.conn.as_mut().expect("connected above"))
    }

    /// Runs `f` on the connection with replies bounded by `read`; a transport error drops
    /// the connection.
    ///
    /// `repeatable` says that running the command twice does no harm (a read, or a wait on
    /// a wake-up list whose tokens are only hints): then a read interrupted by a stop and
    /// continue of this process (`EINTR`) is retried on a new connection (up to three
    /// times) instead of failing.
    pub(crate) fn run<R>(
        &mut self,
        read: Duration,
        repeatable: bool,
        f: impl Fn(&mut redis::Connection) -> redis::RedisResult<R>,
    ) -> Result<R> {
        let mut retries = 0;
        loop {
            let c = self.connection(read)?;
            match f(c) {
                Ok(r) => return Ok(r),
                Err(e) => {
                    if is_transport(&e) {
                        self.slot.conn = None;
                    }
                    if repeatable && retries < 3 && is_interrupted(&e) {
                        retries += 1;
                        continue;
                    }
                    return Err(self.conn.error(e));
                }
            }
        }
    }

    /// A non-blocking command that may be repeated (a read, an idempotent write).
    pub(crate) fn query(&mut self, cmd: &redis::Cmd) -> Result<Value> {
        self.run(REPLY_TIMEOUT, true, |c| cmd.query(c))
    }

    /// A script, run with EVALSHA (EVAL when the server does not know it yet).
    pub(crate) fn script(&mut self, inv: &redis::ScriptInvocation<'_>) -> Result<Value> {
        self.run(REPLY_TIMEOUT, false, |c| inv.invoke(c))
    }

    /// A script that may run twice with the same effect as once (setting a flag, renewing a
    /// lease, reading).
    pub(crate) fn script_repeatable(&mut self, inv: &redis::ScriptInvocation<'_>) -> Result<Value> {
        self.run(REPLY_TIMEOUT, true, |c| inv.invoke(c))
    }

    /// A blocking command that takes data, whose block time on the server is `block`.
    pub(crate) fn blocking(&mut self, cmd: &redis::Cmd, block: Duration) -> Result<Value> {
        self.run(block + REPLY_MARGIN, false, |c| cmd.query(c))
    }

    /// A blocking wait on a wake-up list (its tokens are hints: repeatable).
    pub(crate) fn wait_hint(&mut self, cmd: &redis::Cmd, block: Duration) -> Result<Value> {
        self.run(block + REPLY_MARGIN, true, |c| cmd.query(c))
    }
}

/// True for a read or write interrupted by a signal (`EINTR`): Linux interrupts a socket
/// read or write that has a timeout when the process is stopped and continued, even
/// without a signal handler.
fn is_interrupted(e: &redis::RedisError) -> bool {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        // The client keeps its io::Error behind an `Arc<dyn Error>`.
        let io = s.downcast_ref::<std::io::Error>().or_else(|| {
            s.downcast_ref::<Shared>()
                .and_then(|a| a.downcast_ref::<std::io::Error>())
        });
        if let Some(io) = io {
            return io.kind() == std::io::ErrorKind::Interrupted;
        }
        src = s.source();
    }
    false
}

/// `url` without a password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// A block time for a server-side wait: at most [`SLICE`], at least [`MIN_BLOCK`].
pub(crate) fn slice(remaining: Option<Duration>) -> Duration {
    remaining.unwrap_or(SLICE).clamp(MIN_BLOCK, SLICE)
}

/// Seconds as the blocking commands take them (a double).
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// ---- reading replies, which are not trusted ---------------------------------------------

pub(crate) fn bad_reply(what: &str, v: &Value) -> Error {
    let mut shown = format!("{v:?}");
    if shown.len() > 120 {
        shown.truncate(120);
        shown.push_str("...");
    }
    Error::new(
        ErrorKind::InvalidHandle,
        format!("unexpected reply from the Redis server to {what}: {shown}"),
    )
}

pub(crate) fn int(what: &str, v: &Value) -> Result<i64> {
    match v {
        Value::Int(n) => Ok(*n),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad_reply(what, v)),
        Value::SimpleString(s) => s.parse().map_err(|_| bad_reply(what, v)),
        _ => Err(bad_reply(what, v)),
    }
}

pub(crate) fn opt_int(what: &str, v: &Value) -> Result<Option<i64>> {
    match v {
        Value::Nil => Ok(None),
        v => int(what, v).map(Some),
    }
}

pub(crate) fn bytes(what: &str, v: Value) -> Result<Vec<u8>> {
    match v {
        Value::BulkString(b) => Ok(b),
        v => Err(bad_reply(what, &v)),
    }
}

pub(crate) fn array(what: &str, v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        v => Err(bad_reply(what, &v)),
    }
}

/// A non-negative count from the server, as a `usize`.
pub(crate) fn count(what: &str, v: &Value) -> Result<usize> {
    let n = int(what, v)?;
    usize::try_from(n).map_err(|_| bad_reply(what, v))
}

/// 16 random bytes as 32 hex digits: consumer ids, lock tokens.
pub(crate) fn token() -> String {
    let mut b = [0u8; 16];
    if !crate::sys::random_bytes(&mut b) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b[..8].copy_from_slice(&t.to_ne_bytes());
        b[8..12].copy_from_slice(&std::process::id().to_ne_bytes());
        b[12..].copy_from_slice(&(N.fetch_add(1, Ordering::Relaxed) as u32).to_ne_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks an object name: not empty, no braces (they would break the cluster hash tag).
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['{', '}']) || name.len() > 1024 {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "a remote object's name must be 1 to 1024 bytes without '{{' or '}}': {name:?}"
            ),
        ));
    }
    Ok(())
}
