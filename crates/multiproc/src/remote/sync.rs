//! [`Lock`] (a lease with a fencing token), [`Semaphore`] (leased permits) and [`Event`].
//
// Keys of lock NAME:
//   {mpl:NAME}         STRING with TTL   the holder's token; the lease is its TTL
//   {mpl:NAME}:fence   counter           incremented at each acquisition: the fencing token
//   {mpl:NAME}:holder  STRING, no TTL    the last holder's token, deleted by a release: still
//                                        there at the next acquisition means the previous
//                                        holder's lease ran out without a release (OwnerDied)
//   {mpl:NAME}:wake    LIST              a wake-up token pushed by each release
//
// Keys of semaphore NAME:
//   {mps:NAME}:value   counter   free permits
//   {mps:NAME}:holders ZSET      permit token -> lease deadline (ms, server clock); expired
//                                 ones are given back by the next acquire
//   {mps:NAME}:initial STRING    the value it was created with
//   {mps:NAME}:wake    LIST      wake-up tokens
//
// Keys of event NAME: {mpe:NAME} (present = set), channel {mpe:NAME}:set.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Script, Value};

use super::conn::{self, Conn};
use super::keeper::Keeper;
use crate::api::{LockError, LockTimeoutError, TryLockError, TryWaitError, WaitTimeoutError};
use crate::error::{Error, ErrorKind, OwnerDied, Result};
use crate::sys::Deadline;

/// The default lease of a [`Lock`] or a [`Semaphore`] permit: how long a holder that stopped
/// renewing (dead, stopped, cut off) keeps it.
pub const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(30);

/// KEYS lock fence holder; ARGV token lease_ms -> {fence, previous-holder-died} or {0, pttl}
const LOCK_ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local prev = redis.call('GET', KEYS[3])
  redis.call('SET', KEYS[3], ARGV[1])
  local f = redis.call('INCR', KEYS[2])
  if prev then return {f, 1} end
  return {f, 0}
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl < 0 then pttl = 0 end
return {0, pttl}
";

/// KEYS lock wake holder; ARGV token
const LOCK_RELEASE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[3])
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], '1')
redis.call('PEXPIRE', KEYS[2], 60000)
return 1
";

/// KEYS lock; ARGV token lease_ms
const LOCK_EXTEND: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
";

const NOW: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// KEYS value holders; ARGV initial. Gives back expired permits.
const SEM_PRUNE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[1]) end
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #dead > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('INCRBY', KEYS[1], #dead)
end
";

/// KEYS value holders; ARGV initial token lease_ms -> 0 acquired, else ms to wait
const SEM_ACQUIRE: &str = r"
local v = tonumber(redis.call('GET', KEYS[1])) or 0
if v > 0 then
  redis.call('DECR', KEYS[1])
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
  return 0
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #first == 2 then return math.max(1, tonumber(first[2]) - now) end
return 1000
";

/// KEYS value holders; ARGV initial -> free permits
const SEM_VALUE: &str = r"
return tonumber(redis.call('GET', KEYS[1])) or 0
";

/// KEYS value holders wake; ARGV token
const SEM_GIVE_BACK: &str = r"
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[3], '1')
redis.call('LTRIM', KEYS[3], -16, -1)
redis.call('PEXPIRE', KEYS[3], 60000)
return 1
";

/// KEYS value wake initial
const SEM_RELEASE: &str = r"
redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[2], '1')
redis.call('LTRIM', KEYS[2], -16, -1)
redis.call('PEXPIRE', KEYS[2], 60000)
return 1
";

/// KEYS holders; ARGV token lease_ms
const SEM_EXTEND: &str = r"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
return 1
";

/// KEYS holders; ARGV token
const SEM_FORGET: &str = r"
return redis.call('ZREM', KEYS[1], ARGV[1])
";

/// KEYS flag; ARGV channel
const EVENT_SET: &str = r"
redis.call('SET', KEYS[1], '1')
redis.call('PUBLISH', ARGV[1], '1')
return 1
";

fn with_now(body: &str) -> Script {
    Script::new(&format!("{NOW}{body}"))
}

fn with_prune(body: &str) -> Script {
    Script::new(&format!("{NOW}{SEM_PRUNE}{body}"))
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

fn check_lease(lease: Duration) {
    assert!(
        lease >= Duration::from_millis(30),
        "a lease must be at least 30 ms (got {lease:?})"
    );
}

/// Waits on a wake-up list for at most `hint` (and the deadline, and one slice).
fn wait_wake(
    conn: &Conn,
    wake: &str,
    hint: Duration,
    deadline: Deadline,
) -> std::result::Result<(), Error> {
    let rem = deadline.remaining().unwrap_or(Some(Duration::ZERO));
    let block = conn::slice(Some(rem.map_or(hint, |r| r.min(hint))));
    conn.session()
        .blocking(redis::cmd("BLPOP").arg(wake).arg(conn::secs(block)), block)?;
    Ok(())
}

// ---- Lock -----------------------------------------------------------------------------------

/// A lock on a Redis-protocol server, for processes on any machine: a **lease** with a
/// **fencing token**.
///
/// Acquiring sets the lock's key with a random token and a time to live (the lease,
/// default [`DEFAULT_LOCK_LEASE`]); a thread renews it every third of the lease while the
/// guard lives. A holder that dies, stops or is cut off stops renewing: the lease runs out
/// and the next locker gets the lock with [`OwnerDied`] (the protected state may be
/// half-updated, as with the local lock). Release compares the token, so a holder whose lease
/// ran out can never release someone else's lock: its `unlock` fails with
/// [`ErrorKind::LeaseLost`].
///
/// **Fencing.** A lease cannot protect against a holder paused longer than its lease (it
/// does not know it lost the lock). Each acquisition gets a fencing token,
/// [`LockGuard::fence`], larger than every earlier one: a resource that remembers the
/// largest token it has seen and refuses writes with a smaller one is safe even then. The
/// counter is as durable as the server (see the module docs).
pub struct Lock {
    conn: Conn,
    watch: Arc<Conn>,
    name: String,
    key: String,
    fence: String,
    holder: String,
    wake: String,
    lease: Duration,
    acquire: Script,
    release: Script,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("remote::Lock")
            .field("server", &self.conn.shown())
            .field("name", &self.name)
            .field("lease", &self.lease)
            .finish()
    }
}

impl Clone for Lock {
    fn clone(&self) -> Self {
        Lock {
            conn: self.conn.fresh(),
            watch: Arc::new(self.conn.fresh()),
            name: self.name.clone(),
            key: self.key.clone(),
            fence: self.fence.clone(),
            holder: self.holder.clone(),
            wake: self.wake.clone(),
            lease: self.lease,
            acquire: Script::new(LOCK_ACQUIRE),
            release: Script::new(LOCK_RELEASE),
        }
    }
}

/// Holding a remote [`Lock`]; released on drop (or with [`unlock`](Self::unlock), which
/// says whether the lease was still held).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    token: String,
    fence: u64,
    lost: Arc<AtomicBool>,
    keeper: Option<Keeper>,
    released: bool,
}

enum Busy {
    Busy,
    Failed(Error),
}

impl From<Error> for Busy {
    fn from(e: Error) -> Busy {
        Busy::Failed(e)
    }
}

impl Lock {
    /// Opens the lock `name` on the server at `url` (see
    /// [`Queue::open`](super::Queue::open) for the URL forms). Nothing is written until the
    /// first acquisition.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a bad URL or name.
    pub fn open(url: &str, name: &str) -> Result<Lock> {
        conn::check_name(name)?;
        let conn = Conn::open(url)?;
        let base = format!("{{mpl:{name}}}");
        Ok(Lock {
            watch: Arc::new(conn.fresh()),
            conn,
            name: name.to_string(),
            fence: format!("{base}:fence"),
            holder: format!("{base}:holder"),
            wake: format!("{base}:wake"),
            key: base,
            lease: DEFAULT_LOCK_LEASE,
            acquire: Script::new(LOCK_ACQUIRE),
            release: Script::new(LOCK_RELEASE),
        })
    }

    /// This handle with leases of `lease` (at least 30 ms).
    ///
    /// # Panics
    /// If `lease` is shorter than 30 ms.
    pub fn with_lease(mut self, lease: Duration) -> Lock {
        check_lease(lease);
        self.lease = lease;
        self
    }

    /// Takes the lock, waiting as long as it takes (blocking on the server, in slices).
    ///
    /// # Errors
    /// `OwnerDied(guard)`: acquired, but the previous holder's lease ran out without a
    /// release; `Failed(e)`: the server was lost ([`ErrorKind::Disconnected`]).
    pub fn lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        match self.acquire_until(Deadline::never()) {
            Ok((g, false)) => Ok(g),
            Ok((g, true)) => Err(LockError::OwnerDied(OwnerDied::new(g))),
            Err(Busy::Failed(e)) => Err(LockError::Failed(e)),
            Err(Busy::Busy) => unreachable!("an unbounded wait does not stop while busy"),
        }
    }

    /// Takes the lock if it is free now.
    ///
    /// # Errors
    /// `WouldBlock`, `OwnerDied(guard)` or `Failed(e)`.
    pub fn try_lock(&self) -> std::result::Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        match self.acquire_until(Deadline::passed()) {
            Ok((g, false)) => Ok(g),
            Ok((g, true)) => Err(TryLockError::OwnerDied(OwnerDied::new(g))),
            Err(Busy::Failed(e)) => Err(TryLockError::Failed(e)),
            Err(Busy::Busy) => Err(TryLockError::WouldBlock),
        }
    }

    /// Takes the lock, waiting at most `timeout` (any `Duration`).
    ///
    /// # Errors
    /// `Timeout`, `OwnerDied(guard)` or `Failed(e)`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<LockGuard<'_>, LockTimeoutError<LockGuard<'_>>> {
        self.timed(Deadline::within(timeout))
    }

    /// Takes the lock, waiting until `deadline` at most.
    ///
    /// # Errors
    /// As [`lock_timeout`](Self::lock_timeout).
    pub fn lock_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<LockGuard<'_>, LockTimeoutError<LockGuard<'_>>> {
        self.timed(Deadline::at(deadline))
    }

    fn timed(
        &self,
        deadline: Deadline,
    ) -> std::result::Result<LockGuard<'_>, LockTimeoutError<LockGuard<'_>>> {
        match self.acquire_until(deadline) {
            Ok((g, false)) => Ok(g),
            Ok((g, true)) => Err(LockTimeoutError::OwnerDied(OwnerDied::new(g))),
            Err(Busy::Failed(e)) => Err(LockTimeoutError::Failed(e)),
            Err(Busy::Busy) => Err(LockTimeoutError::Timeout),
        }
    }

    /// True if someone holds the lock now (a snapshot).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn is_locked(&self) -> Result<bool> {
        let r = self
            .conn
            .session()
            .query(redis::cmd("EXISTS").arg(&self.key))?;
        Ok(conn::int("EXISTS", &r)? == 1)
    }

    /// The lock's name on the server.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn acquire_until(
        &self,
        deadline: Deadline,
    ) -> std::result::Result<(LockGuard<'_>, bool), Busy> {
        let token = conn::token();
        loop {
            let r = self.conn.session().script(
                self.acquire
                    .key(&self.key)
                    .key(&self.fence)
                    .key(&self.holder)
                    .arg(&token)
                    .arg(millis(self.lease)),
            )?;
            let parts = conn::array("lock", r)?;
            let (a, b) = match parts.as_slice() {
                [a, b] => (conn::int("lock", a)?, conn::int("lock", b)?),
                _ => return Err(conn::bad_reply("lock", &Value::Array(parts)).into()),
            };
            if a > 0 {
                return Ok((self.guard(token, a as u64), b == 1));
            }
            if deadline.expired() {
                return Err(Busy::Busy);
            }
            // Wait for a release, or at most until the holder's lease runs out.
            let hint = Duration::from_millis(b.max(1) as u64 + 1);
            wait_wake(&self.conn, &self.wake, hint, deadline)?;
        }
    }

    fn guard(&self, token: String, fence: u64) -> LockGuard<'_> {
        let lost = Arc::new(AtomicBool::new(false));
        let (watch, key, tok, flag, lease) = (
            Arc::clone(&self.watch),
            self.key.clone(),
            token.clone(),
            Arc::clone(&lost),
            self.lease,
        );
        let extend = Script::new(LOCK_EXTEND);
        let keeper = Keeper::spawn("multiproc-lock", lease / 3, move || {
            let r = watch
                .session()
                .script_repeatable(extend.key(&key).arg(&tok).arg(millis(lease)));
            match r.and_then(|v| conn::int("extend", &v)) {
                Ok(0) => {
                    flag.store(true, Ordering::Relaxed);
                    false
                }
                Ok(_) => true,
                Err(e) => {
                    log::debug!("multiproc::remote: lock lease renewal failed (will retry): {e}");
                    true
                }
            }
        });
        LockGuard {
            lock: self,
            token,
            fence,
            lost,
            keeper: Some(keeper),
            released: false,
        }
    }
}

impl LockGuard<'_> {
    /// The fencing token of this acquisition: larger than that of every earlier
    /// acquisition of the lock. Pass it to the protected resource, which should refuse a
    /// token smaller than the largest it has seen.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// True if this guard still holds the lease (asks the server).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn is_held(&self) -> Result<bool> {
        if self.lost.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let r = self
            .lock
            .conn
            .session()
            .query(redis::cmd("GET").arg(&self.lock.key))?;
        Ok(matches!(r, Value::BulkString(b) if b == self.token.as_bytes()))
    }

    /// Releases the lock, saying whether it was still held.
    ///
    /// # Errors
    /// [`ErrorKind::LeaseLost`] when the lease had run out (someone else may hold the lock
    /// now; it was not touched); [`ErrorKind::Disconnected`] when the server is lost (the
    /// lease runs out by itself).
    pub fn unlock(mut self) -> Result<()> {
        self.release()
    }

    fn release(&mut self) -> Result<()> {
        self.released = true;
        self.keeper = None;
        let l = self.lock;
        let r = l.conn.session().script(
            l.release
                .key(&l.key)
                .key(&l.wake)
                .key(&l.holder)
                .arg(&self.token),
        )?;
        match conn::int("unlock", &r)? {
            1 => Ok(()),
            0 => Err(Error::new(
                ErrorKind::LeaseLost,
                format!(
                    "the lease on the remote lock {:?} ran out before unlock (fence {}); \
                     it was not released",
                    l.name, self.fence
                ),
            )),
            _ => Err(conn::bad_reply("unlock", &r)),
        }
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            if let Err(e) = self.release() {
                log::debug!("multiproc::remote: releasing a lock on drop: {e}");
            }
        }
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("remote::LockGuard")
            .field("lock", &self.lock.name)
            .field("fence", &self.fence)
            .finish()
    }
}

impl crate::api::Lock for Lock {
    type Guard<'a> = LockGuard<'a>;

    fn lock(&self) -> std::result::Result<Self::Guard<'_>, LockError<Self::Guard<'_>>> {
        Lock::lock(self)
    }
    fn try_lock(&self) -> std::result::Result<Self::Guard<'_>, TryLockError<Self::Guard<'_>>> {
        Lock::try_lock(self)
    }
    fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Self::Guard<'_>, LockTimeoutError<Self::Guard<'_>>> {
        Lock::lock_timeout(self, timeout)
    }
    fn lock_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<Self::Guard<'_>, LockTimeoutError<Self::Guard<'_>>> {
        Lock::lock_deadline(self, deadline)
    }
    fn is_locked(&self) -> Result<bool> {
        Lock::is_locked(self)
    }
}

// ---- Semaphore ------------------------------------------------------------------------------

/// A counting semaphore on a Redis-protocol server whose permits are leases: a permit
/// held by a process that died or stopped renewing comes back when its lease runs out
/// (default [`DEFAULT_LOCK_LEASE`]), as permits of killed holders come back locally.
///
/// [`release`](Self::release) adds a permit without a guard (Python's `release()`), so the
/// count can exceed the initial value, as with Python's (unbounded) `Semaphore`.
pub struct Semaphore {
    conn: Conn,
    watch: Arc<Conn>,
    name: String,
    initial: u32,
    value_key: String,
    holders: String,
    wake: String,
    lease: Duration,
    acquire: Script,
    give_back: Script,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("remote::Semaphore")
            .field("server", &self.conn.shown())
            .field("name", &self.name)
            .field("initial", &self.initial)
            .finish()
    }
}

impl Clone for Semaphore {
    fn clone(&self) -> Self {
        Semaphore {
            conn: self.conn.fresh(),
            watch: Arc::new(self.conn.fresh()),
            name: self.name.clone(),
            initial: self.initial,
            value_key: self.value_key.clone(),
            holders: self.holders.clone(),
            wake: self.wake.clone(),
            lease: self.lease,
            acquire: with_prune(SEM_ACQUIRE),
            give_back: Script::new(SEM_GIVE_BACK),
        }
    }
}

/// A permit of a remote [`Semaphore`]; given back on drop.
#[must_use = "the permit is given back as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
    token: String,
    keeper: Option<Keeper>,
    done: bool,
}

impl Semaphore {
    /// Opens the semaphore `name` on the server at `url`, creating it with `value` permits
    /// if it does not exist.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a bad URL or name, or when the semaphore exists
    /// with another initial value; [`ErrorKind::Disconnected`] when the server cannot be
    /// reached.
    pub fn open(url: &str, name: &str, value: u32) -> Result<Semaphore> {
        conn::check_name(name)?;
        let conn = Conn::open(url)?;
        let base = format!("{{mps:{name}}}");
        let initial_key = format!("{base}:initial");
        let value_key = format!("{base}:value");
        let r = conn.session().script_repeatable(
            Script::new(
                r"
                local i = redis.call('GET', KEYS[1])
                if not i then
                  redis.call('SET', KEYS[1], ARGV[1])
                  redis.call('SET', KEYS[2], ARGV[1])
                  return tonumber(ARGV[1])
                end
                return tonumber(i)",
            )
            .key(&initial_key)
            .key(&value_key)
            .arg(value),
        )?;
        let stored = conn::int("opening a semaphore", &r)?;
        if stored != i64::from(value) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "the remote semaphore {name:?} at {} exists with initial value {stored}, \
                     not {value}",
                    conn.shown()
                ),
            ));
        }
        Ok(Semaphore {
            watch: Arc::new(conn.fresh()),
            conn,
            name: name.to_string(),
            initial: value,
            value_key,
            holders: format!("{base}:holders"),
            wake: format!("{base}:wake"),
            lease: DEFAULT_LOCK_LEASE,
            acquire: with_prune(SEM_ACQUIRE),
            give_back: Script::new(SEM_GIVE_BACK),
        })
    }

    /// This handle with permit leases of `lease` (at least 30 ms).
    ///
    /// # Panics
    /// If `lease` is shorter than 30 ms.
    pub fn with_lease(mut self, lease: Duration) -> Semaphore {
        check_lease(lease);
        self.lease = lease;
        self
    }

    /// Takes a permit, waiting as long as it takes.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn acquire(&self) -> Result<SemaphoreGuard<'_>> {
        self.acquire_until(Deadline::never()).map_err(Error::from)
    }

    /// Takes a permit if one is free now.
    ///
    /// # Errors
    /// `WouldBlock`, or `Failed(e)`.
    pub fn try_acquire(&self) -> std::result::Result<SemaphoreGuard<'_>, TryWaitError> {
        self.acquire_until(Deadline::passed()).map_err(|e| match e {
            WaitTimeoutError::Timeout => TryWaitError::WouldBlock,
            WaitTimeoutError::Failed(e) => TryWaitError::Failed(e),
        })
    }

    /// Takes a permit, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, or `Failed(e)`.
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<SemaphoreGuard<'_>, WaitTimeoutError> {
        self.acquire_until(Deadline::within(timeout))
    }

    /// Takes a permit, waiting until `deadline` at most.
    ///
    /// # Errors
    /// `Timeout`, or `Failed(e)`.
    pub fn acquire_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<SemaphoreGuard<'_>, WaitTimeoutError> {
        self.acquire_until(Deadline::at(deadline))
    }

    /// Adds a permit (Python's `release()`), waking a waiter.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn release(&self) -> Result<()> {
        self.conn.session().script(
            Script::new(SEM_RELEASE)
                .key(&self.value_key)
                .key(&self.wake),
        )?;
        Ok(())
    }

    /// The number of free permits now (a snapshot), after giving back expired ones.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    #[doc(alias = "get_value")]
    pub fn value(&self) -> Result<u32> {
        let r = self.conn.session().script_repeatable(
            with_prune(SEM_VALUE)
                .key(&self.value_key)
                .key(&self.holders)
                .arg(self.initial),
        )?;
        u32::try_from(conn::int("value", &r)?).map_err(|_| conn::bad_reply("value", &r))
    }

    fn acquire_until(
        &self,
        deadline: Deadline,
    ) -> std::result::Result<SemaphoreGuard<'_>, WaitTimeoutError> {
        let token = conn::token();
        loop {
            let r = self.conn.session().script(
                self.acquire
                    .key(&self.value_key)
                    .key(&self.holders)
                    .arg(self.initial)
                    .arg(&token)
                    .arg(millis(self.lease)),
            )?;
            let wait = conn::int("acquire", &r)?;
            if wait == 0 {
                return Ok(self.guard(token));
            }
            if deadline.expired() {
                return Err(WaitTimeoutError::Timeout);
            }
            let hint = Duration::from_millis(wait.max(1) as u64 + 1);
            wait_wake(&self.conn, &self.wake, hint, deadline)?;
        }
    }

    fn guard(&self, token: String) -> SemaphoreGuard<'_> {
        let (watch, holders, tok, lease) = (
            Arc::clone(&self.watch),
            self.holders.clone(),
            token.clone(),
            self.lease,
        );
        let extend = with_now(SEM_EXTEND);
        let keeper = Keeper::spawn("multiproc-permit", lease / 3, move || {
            let r = watch
                .session()
                .script_repeatable(extend.key(&holders).arg(&tok).arg(millis(lease)));
            !matches!(r.and_then(|v| conn::int("extend", &v)), Ok(0))
        });
        SemaphoreGuard {
            sem: self,
            token,
            keeper: Some(keeper),
            done: false,
        }
    }
}

impl SemaphoreGuard<'_> {
    /// Keeps the permit taken: it is not given back on drop (someone calls
    /// [`Semaphore::release`] later, the Python way).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost (then the permit comes back when
    /// its lease runs out).
    pub fn forget(mut self) -> Result<()> {
        self.done = true;
        self.keeper = None;
        self.sem.conn.session().script(
            Script::new(SEM_FORGET)
                .key(&self.sem.holders)
                .arg(&self.token),
        )?;
        Ok(())
    }

    /// Gives the permit back (as dropping the guard does), saying whether it was still held.
    ///
    /// # Errors
    /// [`ErrorKind::LeaseLost`] when the lease had run out (the permit came back already);
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn release(mut self) -> Result<()> {
        self.give_back()
    }

    fn give_back(&mut self) -> Result<()> {
        self.done = true;
        self.keeper = None;
        let s = self.sem;
        let r = s.conn.session().script(
            s.give_back
                .key(&s.value_key)
                .key(&s.holders)
                .key(&s.wake)
                .arg(&self.token),
        )?;
        match conn::int("release", &r)? {
            1 => Ok(()),
            _ => Err(Error::new(
                ErrorKind::LeaseLost,
                format!(
                    "the lease on a permit of the remote semaphore {:?} ran out before its \
                     release; it had come back already",
                    s.name
                ),
            )),
        }
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.give_back() {
                log::debug!("multiproc::remote: giving a permit back on drop: {e}");
            }
        }
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("remote::SemaphoreGuard")
            .field("semaphore", &self.sem.name)
            .finish()
    }
}

impl crate::api::Semaphore for Semaphore {
    type Guard<'a> = SemaphoreGuard<'a>;

    fn acquire(&self) -> Result<Self::Guard<'_>> {
        Semaphore::acquire(self)
    }
    fn try_acquire(&self) -> std::result::Result<Self::Guard<'_>, TryWaitError> {
        Semaphore::try_acquire(self)
    }
    fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Self::Guard<'_>, WaitTimeoutError> {
        Semaphore::acquire_timeout(self, timeout)
    }
    fn acquire_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<Self::Guard<'_>, WaitTimeoutError> {
        Semaphore::acquire_deadline(self, deadline)
    }
    fn release(&self) -> Result<()> {
        Semaphore::release(self)
    }
    fn value(&self) -> Result<u32> {
        Semaphore::value(self)
    }
}

// ---- Event ----------------------------------------------------------------------------------

/// An event on a Redis-protocol server: a flag that processes on any machine set, clear and
/// wait for. `wait` subscribes to the event's channel, then looks at the flag, so a `set`
/// between the two is not missed; it re-checks at least every second.
pub struct Event {
    conn: Conn,
    name: String,
    key: String,
    channel: String,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("remote::Event")
            .field("server", &self.conn.shown())
            .field("name", &self.name)
            .finish()
    }
}

impl Clone for Event {
    fn clone(&self) -> Self {
        Event {
            conn: self.conn.fresh(),
            name: self.name.clone(),
            key: self.key.clone(),
            channel: self.channel.clone(),
        }
    }
}

impl Event {
    /// Opens the event `name` on the server at `url` (cleared until someone sets it).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a bad URL or name.
    pub fn open(url: &str, name: &str) -> Result<Event> {
        conn::check_name(name)?;
        let key = format!("{{mpe:{name}}}");
        Ok(Event {
            conn: Conn::open(url)?,
            name: name.to_string(),
            channel: format!("{key}:set"),
            key,
        })
    }

    /// Sets the flag and wakes every waiter, on every machine.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn set(&self) -> Result<()> {
        self.conn
            .session()
            .script_repeatable(Script::new(EVENT_SET).key(&self.key).arg(&self.channel))?;
        Ok(())
    }

    /// Clears the flag.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn clear(&self) -> Result<()> {
        self.conn
            .session()
            .query(redis::cmd("DEL").arg(&self.key))?;
        Ok(())
    }

    /// True if the flag is set.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn is_set(&self) -> Result<bool> {
        let r = self
            .conn
            .session()
            .query(redis::cmd("EXISTS").arg(&self.key))?;
        Ok(conn::int("EXISTS", &r)? == 1)
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn wait(&self) -> Result<()> {
        self.wait_until(Deadline::never()).map_err(Error::from)
    }

    /// `Ok` if the flag is set now.
    ///
    /// # Errors
    /// `WouldBlock` when it is not, or `Failed(e)`.
    pub fn try_wait(&self) -> std::result::Result<(), TryWaitError> {
        if self.is_set()? {
            Ok(())
        } else {
            Err(TryWaitError::WouldBlock)
        }
    }

    /// Waits at most `timeout` for the flag (Python's `wait(t)` is `wait_timeout(t).is_ok()`).
    ///
    /// # Errors
    /// `Timeout`, or `Failed(e)`.
    pub fn wait_timeout(&self, timeout: Duration) -> std::result::Result<(), WaitTimeoutError> {
        self.wait_until(Deadline::within(timeout))
    }

    /// Waits until `deadline` at most for the flag.
    ///
    /// # Errors
    /// `Timeout`, or `Failed(e)`.
    pub fn wait_deadline(&self, deadline: Instant) -> std::result::Result<(), WaitTimeoutError> {
        self.wait_until(Deadline::at(deadline))
    }

    fn wait_until(&self, deadline: Deadline) -> std::result::Result<(), WaitTimeoutError> {
        if self
            .conn
            .wait_published(&self.channel, deadline, || self.is_set())?
        {
            Ok(())
        } else {
            Err(WaitTimeoutError::Timeout)
        }
    }
}

impl crate::api::Event for Event {
    fn set(&self) -> Result<()> {
        Event::set(self)
    }
    fn clear(&self) -> Result<()> {
        Event::clear(self)
    }
    fn is_set(&self) -> Result<bool> {
        Event::is_set(self)
    }
    fn wait(&self) -> Result<()> {
        Event::wait(self)
    }
    fn try_wait(&self) -> std::result::Result<(), TryWaitError> {
        Event::try_wait(self)
    }
    fn wait_timeout(&self, timeout: Duration) -> std::result::Result<(), WaitTimeoutError> {
        Event::wait_timeout(self, timeout)
    }
    fn wait_deadline(&self, deadline: Instant) -> std::result::Result<(), WaitTimeoutError> {
        Event::wait_deadline(self, deadline)
    }
}
