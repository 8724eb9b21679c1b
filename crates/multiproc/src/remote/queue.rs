//! [`Queue`] and [`JoinableQueue`] on a Redis list.
//
// Keys of queue NAME (one hash tag, so one cluster slot):
//
//   {mpq:NAME}:items          LIST    ready envelopes; the head is the next to get
//   {mpq:NAME}:meta           HASH    kind ("queue" | "joinable"), maxsize (0 = unbounded),
//                                     closed (present once closed), unfinished (joinable)
//   {mpq:NAME}:notfull        LIST    wake-up tokens for producers blocked on a full queue
//                                     (hints: a missing or extra token costs a re-check)
//   {mpq:NAME}:consumers      ZSET    consumer id -> lease deadline, ms on the server's clock
//   {mpq:NAME}:inflight:<cid> LIST    envelopes taken by consumer <cid>, not yet task_done
//   {mpq:NAME}:alldone        channel published when `unfinished` reaches 0
//   {mpq:NAME}:lost           HASH    envelope -> how many times it went back from a consumer
//                                     whose lease ran out (joinable; removed by task_done)
//
// Envelope: one tag byte, then for a joinable queue a 16-byte id (so that equal items are
// distinct in an in-flight list), then the item in the codec's format. `close()` appends the
// one-byte CLOSE marker after the last item; a consumer that meets it puts it back at the head
// and returns `Closed`, so every blocked consumer wakes in turn, with no sentinel per consumer.
// The `closed` field is the truth and the marker only a wake-up: a consumer that dies holding
// the marker leaves the others to see `closed` and an empty list at their next slice.
//
// At-least-once (joinable): BLMOVE moves an envelope from `items` to the consumer's in-flight
// list atomically, so it is always in exactly one of them. A consumer renews its lease every
// lease/3 (a thread). Anyone may reap a consumer whose lease ran out: `reap` re-checks the
// deadline on the server, moves its in-flight envelopes back to the head of `items` in their
// order, and forgets the consumer, all in one script. `task_done` removes the envelope from
// the in-flight list and decrements `unfinished` in one script, or, if the envelope is no
// longer there (reaped), refuses with `LeaseLost` and does not decrement: each item is counted
// done once.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::{Script, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::conn::{self, Conn, Session};
use super::keeper::Keeper;
use crate::api::{TryWaitError, WaitTimeoutError};
use crate::codec::{Codec, Postcard};
use crate::error::{Error, ErrorKind, Result};
use crate::queue::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};
use crate::sys::Deadline;

const TAG_QUEUE: u8 = b'Q';
const TAG_JOINABLE: u8 = b'J';
const MARKER: &[u8] = b"C";
const ID_LEN: usize = 16;

/// The default lease of a [`JoinableQueue`] consumer.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// How long a remote pool's replies stay on the server after the last one was added.
pub(crate) const REPLY_TTL: Duration = Duration::from_secs(24 * 3600);

const PUT: &str = r"
local m = redis.call('HMGET', KEYS[2], 'kind', 'closed', 'maxsize')
if not m[1] then
  redis.call('HSET', KEYS[2], 'kind', ARGV[2], 'maxsize', ARGV[3])
  m[3] = ARGV[3]
elseif m[1] ~= ARGV[2] then
  return -2
end
if m[2] then return -1 end
local max = tonumber(m[3] or '0') or 0
if max > 0 and redis.call('LLEN', KEYS[1]) >= max then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
if ARGV[2] == 'joinable' then redis.call('HINCRBY', KEYS[2], 'unfinished', 1) end
return 1
";

/// KEYS items meta notfull [inflight consumers lost]; ARGV marker [cid lease_ms] ->
/// {1, env[, times lost]} | {-1} closed | {0} empty
const TRY_GET: &str = r"
local v
if #KEYS == 6 then
  v = redis.call('LMOVE', KEYS[1], KEYS[4], 'LEFT', 'RIGHT')
else
  v = redis.call('LPOP', KEYS[1])
end
if v == ARGV[1] then
  if #KEYS == 6 then redis.call('LREM', KEYS[4], -1, v) end
  redis.call('LPUSH', KEYS[1], v)
  return {-1}
end
if v then
  if tonumber(redis.call('HGET', KEYS[2], 'maxsize') or '0') ~= 0 then
    redis.call('RPUSH', KEYS[3], '1')
    redis.call('LTRIM', KEYS[3], -16, -1)
    redis.call('PEXPIRE', KEYS[3], 60000)
  end
  if #KEYS == 6 then return {1, v, tonumber(redis.call('HGET', KEYS[6], v) or '0')} end
  return {1, v}
end
if redis.call('HEXISTS', KEYS[2], 'closed') == 1 then return {-1} end
return {0}
";

/// KEYS items meta notfull; ARGV kind maxsize env... -> how many were put (from the first),
/// -1 closed, -2 another kind
const PUT_MANY: &str = r"
local kind = redis.call('HGET', KEYS[2], 'kind')
if not kind then
  redis.call('HSET', KEYS[2], 'kind', ARGV[1], 'maxsize', ARGV[2])
elseif kind ~= ARGV[1] then
  return -2
end
if redis.call('HEXISTS', KEYS[2], 'closed') == 1 then return -1 end
local n = #ARGV - 2
local max = tonumber(redis.call('HGET', KEYS[2], 'maxsize') or '0') or 0
if max > 0 then
  local room = max - redis.call('LLEN', KEYS[1])
  if room < n then n = math.max(room, 0) end
end
for i = 3, n + 2 do redis.call('RPUSH', KEYS[1], ARGV[i]) end
if n > 0 and ARGV[1] == 'joinable' then redis.call('HINCRBY', KEYS[2], 'unfinished', n) end
return n
";

/// KEYS items meta notfull [inflight]; ARGV marker count -> {1, {env...}} | {-1} | {0}
const TRY_GET_MANY: &str = r"
local out = {}
local closed = false
for i = 1, tonumber(ARGV[2]) do
  local v
  if #KEYS == 4 then
    v = redis.call('LMOVE', KEYS[1], KEYS[4], 'LEFT', 'RIGHT')
  else
    v = redis.call('LPOP', KEYS[1])
  end
  if not v then break end
  if v == ARGV[1] then
    if #KEYS == 4 then redis.call('LREM', KEYS[4], -1, v) end
    redis.call('LPUSH', KEYS[1], v)
    closed = true
    break
  end
  out[#out + 1] = v
end
if #out > 0 then
  if tonumber(redis.call('HGET', KEYS[2], 'maxsize') or '0') ~= 0 then
    for i = 1, math.min(#out, 16) do redis.call('RPUSH', KEYS[3], '1') end
    redis.call('LTRIM', KEYS[3], -16, -1)
    redis.call('PEXPIRE', KEYS[3], 60000)
  end
  return {1, out}
end
if closed or redis.call('HEXISTS', KEYS[2], 'closed') == 1 then return {-1} end
return {0}
";

/// KEYS items [inflight]; ARGV env... : taken envelopes go back to the head, in order.
const GIVE_BACK: &str = r"
for i = #ARGV, 1, -1 do
  if #KEYS == 2 then redis.call('LREM', KEYS[2], -1, ARGV[i]) end
  redis.call('LPUSH', KEYS[1], ARGV[i])
end
return #ARGV
";

/// After a blocking take: KEYS meta notfull
const TOOK: &str = r"
if tonumber(redis.call('HGET', KEYS[1], 'maxsize') or '0') ~= 0 then
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('LTRIM', KEYS[2], -16, -1)
  redis.call('PEXPIRE', KEYS[2], 60000)
end
return 1
";

/// The marker taken by a blocking get goes back: KEYS items [inflight]; ARGV marker
const UNMARK: &str = r"
if #KEYS == 2 then redis.call('LREM', KEYS[2], -1, ARGV[1]) end
redis.call('LPUSH', KEYS[1], ARGV[1])
return 1
";

/// KEYS meta items notfull; ARGV marker
const CLOSE: &str = r"
if redis.call('HEXISTS', KEYS[1], 'closed') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'closed', '1')
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], '1')
redis.call('PEXPIRE', KEYS[3], 60000)
return 1
";

/// KEYS items; ARGV marker
const LEN: &str = r"
local n = redis.call('LLEN', KEYS[1])
if n > 0 and redis.call('LINDEX', KEYS[1], -1) == ARGV[1] then n = n - 1 end
return n
";

/// KEYS meta; ARGV kind maxsize-or-empty
const INIT: &str = r"
local k = redis.call('HGET', KEYS[1], 'kind')
if not k then
  local m = ARGV[2]
  if m == '' then m = '0' end
  redis.call('HSET', KEYS[1], 'kind', ARGV[1], 'maxsize', m)
  return {ARGV[1], m}
end
return {k, redis.call('HGET', KEYS[1], 'maxsize') or '0'}
";

/// KEYS consumers; ARGV cid lease_ms
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return now
";

/// KEYS consumers: the ids whose lease ran out (at most 16)
const EXPIRED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 16)
";

/// KEYS consumers inflight items workers lost; ARGV cid [only_expired]. Moves a consumer's
/// items back to the head and forgets it (with its description, if it was a pool's
/// worker): a consumer going away, or — with `only_expired` — a dead one, its deadline
/// re-checked here (-1 when it is alive), each item's count of times lost incremented.
const REAP: &str = r"
if ARGV[2] then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local dl = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if dl and tonumber(dl) > now then return -1 end
end
local n = 0
while true do
  local v = redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'LEFT')
  if not v then break end
  if ARGV[2] then redis.call('HINCRBY', KEYS[5], v, 1) end
  n = n + 1
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return n
";

/// KEYS inflight meta lost [replies]; ARGV envelope channel [reply ttl_ms]. With a reply
/// (a remote pool's result), it is appended to the replies stream in the same step, so a
/// result is published exactly when its item is acknowledged, once.
const TASK_DONE: &str = r"
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return -1 end
redis.call('HDEL', KEYS[3], ARGV[1])
if #KEYS == 4 then
  redis.call('XADD', KEYS[4], '*', 'r', ARGV[3])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
end
local n = redis.call('HINCRBY', KEYS[2], 'unfinished', -1)
if n <= 0 then redis.call('PUBLISH', ARGV[2], n) end
return n
";

/// A remote pool worker's step: TASK_DONE with a reply, then a take of the next ready item
/// (as TRY_GET, without waiting), in one round trip.
/// KEYS inflight meta lost replies items notfull; ARGV envelope channel reply ttl_ms marker
/// -> {acked (1, or -1: refused, lease lost), 1, env, times lost} | {acked, 0} (nothing
/// ready, or the close marker: the next get sees it)
const ACK_TAKE: &str = r"
local acked = -1
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  acked = 1
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('XADD', KEYS[4], '*', 'r', ARGV[3])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
  local n = redis.call('HINCRBY', KEYS[2], 'unfinished', -1)
  if n <= 0 then redis.call('PUBLISH', ARGV[2], n) end
end
local v = redis.call('LMOVE', KEYS[5], KEYS[1], 'LEFT', 'RIGHT')
if not v then return {acked, 0} end
if v == ARGV[5] then
  redis.call('LREM', KEYS[1], -1, v)
  redis.call('LPUSH', KEYS[5], v)
  return {acked, 0}
end
if tonumber(redis.call('HGET', KEYS[2], 'maxsize') or '0') ~= 0 then
  redis.call('RPUSH', KEYS[6], '1')
  redis.call('LTRIM', KEYS[6], -16, -1)
  redis.call('PEXPIRE', KEYS[6], 60000)
end
return {acked, 1, v, tonumber(redis.call('HGET', KEYS[3], v) or '0')}
";

/// KEYS inflight items; ARGV the envelopes this consumer knows it holds. Every other
/// envelope of the in-flight list (taken by a command whose reply was lost) goes back to
/// the head.
const RECOVER: &str = r"
local known = {}
for i = 1, #ARGV do known[ARGV[i]] = (known[ARGV[i]] or 0) + 1 end
local all = redis.call('LRANGE', KEYS[1], 0, -1)
local n = 0
for i = #all, 1, -1 do
  local v = all[i]
  if (known[v] or 0) > 0 then
    known[v] = known[v] - 1
  else
    redis.call('LREM', KEYS[1], -1, v)
    redis.call('LPUSH', KEYS[2], v)
    n = n + 1
  end
end
return n
";

/// KEYS meta items consumers; ARGV marker -> {kind, maxsize, closed, unfinished, ready, now,
/// {cid, deadline, cid, deadline, ...}}
const INFO: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = redis.call('HMGET', KEYS[1], 'kind', 'maxsize', 'closed', 'unfinished')
local n = redis.call('LLEN', KEYS[2])
if n > 0 and redis.call('LINDEX', KEYS[2], -1) == ARGV[1] then n = n - 1 end
local c = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
return {m[1] or '', m[2] or '0', m[3] and 1 or 0, m[4] or '0', n, now, c}
";

struct Scripts {
    put: Script,
    put_many: Script,
    try_get_many: Script,
    give_back: Script,
    try_get: Script,
    took: Script,
    unmark: Script,
    close: Script,
    len: Script,
    init: Script,
    heartbeat: Script,
    expired: Script,
    reap: Script,
    task_done: Script,
    ack_take: Script,
    recover: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            put: Script::new(PUT),
            put_many: Script::new(PUT_MANY),
            try_get_many: Script::new(TRY_GET_MANY),
            give_back: Script::new(GIVE_BACK),
            try_get: Script::new(TRY_GET),
            took: Script::new(TOOK),
            unmark: Script::new(UNMARK),
            close: Script::new(CLOSE),
            len: Script::new(LEN),
            init: Script::new(INIT),
            heartbeat: Script::new(HEARTBEAT),
            expired: Script::new(EXPIRED),
            reap: Script::new(REAP),
            task_done: Script::new(TASK_DONE),
            ack_take: Script::new(ACK_TAKE),
            recover: Script::new(RECOVER),
        }
    }
}

#[derive(Clone)]
struct Keys {
    base: String,
    items: String,
    meta: String,
    notfull: String,
    consumers: String,
    alldone: String,
    /// HASH consumer id -> a description, for the consumers that are a remote pool's workers.
    workers: String,
    /// HASH envelope -> times it went back from a consumer whose lease ran out.
    lost: String,
}

impl Keys {
    fn new(name: &str) -> Keys {
        let base = format!("{{mpq:{name}}}");
        Keys {
            items: format!("{base}:items"),
            meta: format!("{base}:meta"),
            notfull: format!("{base}:notfull"),
            consumers: format!("{base}:consumers"),
            alldone: format!("{base}:alldone"),
            workers: format!("{base}:workers"),
            lost: format!("{base}:lost"),
            base,
        }
    }

    fn inflight(&self, cid: &str) -> String {
        format!("{}:inflight:{cid}", self.base)
    }

    /// The replies stream of a remote pool's batch `batch` (in the queue's slot).
    fn replies(&self, batch: &str) -> String {
        format!("{}:replies:{batch}", self.base)
    }
}

/// What the queue kinds share: a connection, the keys, the scripts, the capacity.
struct Core {
    conn: Conn,
    name: String,
    keys: Keys,
    scripts: Scripts,
    maxsize: usize,
    joinable: bool,
    /// Random prefix of this handle's message ids, and a counter.
    id_prefix: [u8; 8],
    id_next: AtomicU64,
}

enum PutStop {
    Full,
    Closed,
    Failed(Error),
}

enum GetStop {
    Empty,
    Closed,
    Failed(Error),
}

impl From<Error> for PutStop {
    fn from(e: Error) -> PutStop {
        PutStop::Failed(e)
    }
}

impl From<Error> for GetStop {
    fn from(e: Error) -> GetStop {
        GetStop::Failed(e)
    }
}

impl Core {
    fn open(url: &str, name: &str, maxsize: Option<usize>, joinable: bool) -> Result<Core> {
        conn::check_name(name)?;
        let conn = Conn::open(url)?;
        let keys = Keys::new(name);
        let scripts = Scripts::new();
        let kind = if joinable { "joinable" } else { "queue" };
        let want = maxsize.map(|m| m.to_string()).unwrap_or_default();
        let reply = conn
            .session()
            .script_repeatable(scripts.init.key(&keys.meta).arg(kind).arg(&want))?;
        let parts = conn::array("opening a queue", reply)?;
        let [k, m] = <[Value; 2]>::try_from(parts)
            .map_err(|p| conn::bad_reply("opening a queue", &Value::Array(p)))?;
        let k = conn::bytes("opening a queue", k)?;
        let stored = conn::count("opening a queue", &m)?;
        if k != kind.as_bytes() {
            return Err(Error::new(
                ErrorKind::InvalidHandle,
                format!(
                    "the remote object {name:?} at {} is a {}, not a {kind}",
                    conn.shown(),
                    String::from_utf8_lossy(&k)
                ),
            ));
        }
        if let Some(m) = maxsize {
            if m != stored {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "the remote queue {name:?} at {} exists with maxsize {stored} \
                         (0: unbounded), not {m}",
                        conn.shown()
                    ),
                ));
            }
        }
        let mut id_prefix = [0u8; 8];
        id_prefix.copy_from_slice(&conn::token().as_bytes()[..8]);
        Ok(Core {
            conn,
            name: name.to_string(),
            keys,
            scripts,
            maxsize: stored,
            joinable,
            id_prefix,
            id_next: AtomicU64::new(0),
        })
    }

    fn fresh(&self) -> Core {
        let mut id_prefix = [0u8; 8];
        id_prefix.copy_from_slice(&conn::token().as_bytes()[..8]);
        Core {
            conn: self.conn.fresh(),
            name: self.name.clone(),
            keys: self.keys.clone(),
            scripts: Scripts::new(),
            maxsize: self.maxsize,
            joinable: self.joinable,
            id_prefix,
            id_next: AtomicU64::new(0),
        }
    }

    fn kind(&self) -> &'static str {
        if self.joinable {
            "joinable"
        } else {
            "queue"
        }
    }

    fn encode<T: Serialize, C: Codec>(&self, item: &T) -> Result<Vec<u8>> {
        let mut env = Vec::with_capacity(64);
        if self.joinable {
            env.push(TAG_JOINABLE);
            env.extend_from_slice(&self.id_prefix);
            let n = self.id_next.fetch_add(1, Ordering::Relaxed);
            env.extend_from_slice(&n.to_be_bytes());
        } else {
            env.push(TAG_QUEUE);
        }
        C::encode(item, &mut env)?;
        Ok(env)
    }

    fn decode<T: DeserializeOwned, C: Codec>(&self, env: &[u8]) -> Result<T> {
        let (tag, skip) = if self.joinable {
            (TAG_JOINABLE, 1 + ID_LEN)
        } else {
            (TAG_QUEUE, 1)
        };
        if env.len() < skip || env[0] != tag {
            return Err(Error::new(
                ErrorKind::Codec,
                format!(
                    "a message of the remote queue {:?} is not in this queue's format \
                     ({} bytes); it was taken and dropped",
                    self.name,
                    env.len()
                ),
            ));
        }
        C::decode(&env[skip..])
    }

    fn put_env(&self, env: &[u8], deadline: Deadline) -> std::result::Result<(), PutStop> {
        let mut s = self.conn.session();
        loop {
            let r = s.script(
                self.scripts
                    .put
                    .key(&self.keys.items)
                    .key(&self.keys.meta)
                    .arg(env)
                    .arg(self.kind())
                    .arg(self.maxsize),
            )?;
            match conn::int("put", &r)? {
                1 => return Ok(()),
                0 => {}
                -1 => {
                    // Pass the wake-up on to the next blocked producer.
                    let _ = s.query(redis::cmd("LPUSH").arg(&self.keys.notfull).arg("1"));
                    return Err(PutStop::Closed);
                }
                -2 => {
                    return Err(PutStop::Failed(Error::new(
                        ErrorKind::InvalidHandle,
                        format!(
                            "the remote queue {:?} was re-created as another kind of object",
                            self.name
                        ),
                    )))
                }
                _ => return Err(PutStop::Failed(conn::bad_reply("put", &r))),
            }
            let Ok(rem) = deadline.remaining() else {
                return Err(PutStop::Full);
            };
            let block = conn::slice(rem);
            s.wait_hint(
                redis::cmd("BLPOP")
                    .arg(&self.keys.notfull)
                    .arg(conn::secs(block)),
                block,
            )?;
        }
    }

    /// Puts `envs` in order, as many as fit each time; returns how many were put when it
    /// stops (with why).
    fn put_many_envs(
        &self,
        envs: &[Vec<u8>],
        deadline: Deadline,
    ) -> std::result::Result<(), (usize, PutStop)> {
        let mut s = self.conn.session();
        let mut done = 0;
        while done < envs.len() {
            // Batches of at most 1,000 per script, so one call never holds the server long.
            let chunk = &envs[done..envs.len().min(done + 1000)];
            let mut inv = self.scripts.put_many.prepare_invoke();
            inv.key(&self.keys.items)
                .key(&self.keys.meta)
                .key(&self.keys.notfull)
                .arg(self.kind())
                .arg(self.maxsize);
            for e in chunk {
                inv.arg(e.as_slice());
            }
            let r = s.script(&inv).map_err(|e| (done, e.into()))?;
            match conn::int("put_many", &r).map_err(|e| (done, e.into()))? {
                -1 => {
                    let _ = s.query(redis::cmd("LPUSH").arg(&self.keys.notfull).arg("1"));
                    return Err((done, PutStop::Closed));
                }
                -2 => {
                    let e = Error::new(
                        ErrorKind::InvalidHandle,
                        format!(
                            "the remote queue {:?} was re-created as another kind of object",
                            self.name
                        ),
                    );
                    return Err((done, PutStop::Failed(e)));
                }
                n if n >= 0 && (n as usize) <= chunk.len() => {
                    done += n as usize;
                    if n as usize == chunk.len() {
                        continue;
                    }
                }
                _ => return Err((done, PutStop::Failed(conn::bad_reply("put_many", &r)))),
            }
            let Ok(rem) = deadline.remaining() else {
                return Err((done, PutStop::Full));
            };
            let block = conn::slice(rem);
            s.wait_hint(
                redis::cmd("BLPOP")
                    .arg(&self.keys.notfull)
                    .arg(conn::secs(block)),
                block,
            )
            .map_err(|e| (done, e.into()))?;
        }
        Ok(())
    }

    /// Takes up to `max` envelopes (at least one, waiting for it until `deadline`): one
    /// script when items are ready, else a wait for one and a second script for the rest.
    fn get_many_envs(
        &self,
        s: &mut Session<'_>,
        consumer: Option<(&str, &str, Duration)>,
        max: usize,
        deadline: Deadline,
    ) -> std::result::Result<Vec<Vec<u8>>, GetStop> {
        let ready = self.take_ready(s, consumer, max)?;
        if !ready.is_empty() {
            return Ok(ready);
        }
        if deadline.remaining().is_err() {
            return Err(GetStop::Empty);
        }
        let mut out = vec![self.get_env(s, consumer, deadline)?];
        if max > 1 {
            // The first item is ours already: a failure here only ends the batch early.
            if let Ok(more) = self.take_ready(s, consumer, max - 1) {
                out.extend(more);
            }
        }
        Ok(out)
    }

    /// Takes up to `max` ready envelopes without waiting (none: empty); `Closed` when the
    /// queue is closed and nothing is left before the marker.
    fn take_ready(
        &self,
        s: &mut Session<'_>,
        consumer: Option<(&str, &str, Duration)>,
        max: usize,
    ) -> std::result::Result<Vec<Vec<u8>>, GetStop> {
        const W: &str = "get_many";
        let mut inv = self.scripts.try_get_many.prepare_invoke();
        inv.key(&self.keys.items)
            .key(&self.keys.meta)
            .key(&self.keys.notfull)
            .arg(MARKER)
            .arg(max);
        if let Some((inflight, ..)) = consumer {
            inv.key(inflight);
        }
        let r = conn::array(W, s.script(&inv)?)?;
        match r.first().map(|v| conn::int(W, v)).transpose()? {
            Some(1) if r.len() == 2 => {
                let [_, list] = <[Value; 2]>::try_from(r).expect("length checked");
                let mut out = Vec::new();
                for v in conn::array(W, list)? {
                    out.push(conn::bytes(W, v)?);
                }
                Ok(out)
            }
            Some(0) => Ok(Vec::new()),
            Some(-1) => Err(GetStop::Closed),
            _ => Err(GetStop::Failed(conn::bad_reply(W, &Value::Array(r)))),
        }
    }

    /// Gives taken envelopes back to the head of the queue, in order.
    fn give_back(&self, s: &mut Session<'_>, inflight: Option<&str>, envs: &[Vec<u8>]) {
        if envs.is_empty() {
            return;
        }
        let mut inv = self.scripts.give_back.prepare_invoke();
        inv.key(&self.keys.items);
        if let Some(l) = inflight {
            inv.key(l);
        }
        for e in envs {
            inv.arg(e.as_slice());
        }
        if let Err(e) = s.script(&inv) {
            log::warn!(
                "multiproc::remote: queue {:?}: could not give back {} item(s) after a batch \
                 failed to decode: {e}",
                self.name,
                envs.len()
            );
        }
    }

    /// Takes an envelope; `consumer` is the in-flight list and id of a joinable consumer.
    fn get_env(
        &self,
        s: &mut Session<'_>,
        consumer: Option<(&str, &str, Duration)>,
        deadline: Deadline,
    ) -> std::result::Result<Vec<u8>, GetStop> {
        Ok(self.get_env_counted(s, consumer, deadline)?.0)
    }

    /// [`get_env`](Core::get_env), with how many times the envelope went back from a
    /// consumer whose lease ran out when the take said it (a joinable consumer's take that
    /// did not block), else `None`.
    fn get_env_counted(
        &self,
        s: &mut Session<'_>,
        consumer: Option<(&str, &str, Duration)>,
        deadline: Deadline,
    ) -> std::result::Result<(Vec<u8>, Option<u64>), GetStop> {
        loop {
            let mut inv = self.scripts.try_get.prepare_invoke();
            inv.key(&self.keys.items)
                .key(&self.keys.meta)
                .key(&self.keys.notfull)
                .arg(MARKER);
            if let Some((inflight, cid, lease)) = consumer {
                inv.key(inflight)
                    .key(&self.keys.consumers)
                    .key(&self.keys.lost)
                    .arg(cid)
                    .arg(lease.as_millis() as u64);
            }
            let r = conn::array("get", s.script(&inv)?)?;
            match r.first().map(|v| conn::int("get", v)).transpose()? {
                Some(1) if r.len() == 2 && consumer.is_none() => {
                    let [_, env] = <[Value; 2]>::try_from(r).expect("length checked");
                    return Ok((conn::bytes("get", env)?, None));
                }
                Some(1) if r.len() == 3 && consumer.is_some() => {
                    let [_, env, lost] = <[Value; 3]>::try_from(r).expect("length checked");
                    let lost = conn::int("get", &lost)?.max(0) as u64;
                    return Ok((conn::bytes("get", env)?, Some(lost)));
                }
                Some(-1) => return Err(GetStop::Closed),
                Some(0) => {}
                _ => return Err(GetStop::Failed(conn::bad_reply("get", &Value::Array(r)))),
            }
            let Ok(rem) = deadline.remaining() else {
                return Err(GetStop::Empty);
            };
            let block = conn::slice(rem);
            let reply = match consumer {
                Some((inflight, ..)) => s.blocking(
                    redis::cmd("BLMOVE")
                        .arg(&self.keys.items)
                        .arg(inflight)
                        .arg("LEFT")
                        .arg("RIGHT")
                        .arg(conn::secs(block)),
                    block,
                )?,
                None => match s.blocking(
                    redis::cmd("BLPOP")
                        .arg(&self.keys.items)
                        .arg(conn::secs(block)),
                    block,
                )? {
                    Value::Nil => Value::Nil,
                    Value::Array(kv) if kv.len() == 2 => kv.into_iter().nth(1).expect("len 2"),
                    other => return Err(GetStop::Failed(conn::bad_reply("BLPOP", &other))),
                },
            };
            let env = match reply {
                Value::Nil => continue,
                v => conn::bytes("a blocking get", v)?,
            };
            if env == MARKER {
                let mut inv = self.scripts.unmark.prepare_invoke();
                inv.key(&self.keys.items).arg(MARKER);
                if let Some((inflight, ..)) = consumer {
                    inv.key(inflight);
                }
                s.script(&inv)?;
                return Err(GetStop::Closed);
            }
            if self.maxsize != 0 {
                s.script(
                    self.scripts
                        .took
                        .key(&self.keys.meta)
                        .key(&self.keys.notfull),
                )?;
            }
            return Ok((env, None));
        }
    }

    fn close(&self) -> Result<()> {
        self.conn.session().script_repeatable(
            self.scripts
                .close
                .key(&self.keys.meta)
                .key(&self.keys.items)
                .key(&self.keys.notfull)
                .arg(MARKER),
        )?;
        Ok(())
    }

    fn is_closed(&self) -> Result<bool> {
        let r = self
            .conn
            .session()
            .query(redis::cmd("HEXISTS").arg(&self.keys.meta).arg("closed"))?;
        Ok(conn::int("HEXISTS", &r)? == 1)
    }

    fn len(&self) -> Result<usize> {
        let r = self
            .conn
            .session()
            .script_repeatable(self.scripts.len.key(&self.keys.items).arg(MARKER))?;
        conn::count("len", &r)
    }

    /// Reaps every consumer whose lease ran out; returns how many items went back.
    fn reap(&self, s: &mut Session<'_>) -> Result<u64> {
        reap(
            s,
            &self.keys,
            &self.scripts.expired,
            &self.scripts.reap,
            &self.name,
        )
    }
}

/// Reaps every consumer of the queue whose lease ran out (each re-checked atomically on the
/// server); returns how many items went back.
fn reap(
    s: &mut Session<'_>,
    keys: &Keys,
    expired: &Script,
    reap: &Script,
    name: &str,
) -> Result<u64> {
    let r = conn::array(
        "looking for expired consumers",
        s.script_repeatable(&expired.key(&keys.consumers))?,
    )?;
    let mut moved = 0;
    for v in r {
        let cid = conn::bytes("looking for expired consumers", v)?;
        let cid = std::str::from_utf8(&cid)
            .ok()
            .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric()))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidHandle,
                    format!("the consumer set of the remote queue {name:?} holds a malformed id"),
                )
            })?
            .to_string();
        let n = s.script_repeatable(
            reap.key(&keys.consumers)
                .key(keys.inflight(&cid))
                .key(&keys.items)
                .key(&keys.workers)
                .key(&keys.lost)
                .arg(&cid)
                .arg("only_expired"),
        )?;
        let n = conn::int("reap", &n)?;
        if n > 0 {
            log::debug!(
                "multiproc::remote: queue {name:?}: consumer {cid} missed its lease; {n} item(s) \
                 went back"
            );
            moved += n as u64;
        }
    }
    Ok(moved)
}

/// A snapshot of a remote queue, for inspection (a command-line tool, a dashboard):
/// [`Queue::info`], [`JoinableQueue::info`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// `"queue"` or `"joinable"` (empty if the queue does not exist on the server).
    pub kind: String,
    /// The queue's `maxsize`; `None` when unbounded.
    pub maxsize: Option<usize>,
    /// Items ready to be taken.
    pub ready: usize,
    /// True once the queue is closed.
    pub closed: bool,
    /// Items put and not acknowledged (joinable queues; 0 for plain ones).
    pub unfinished: u64,
    /// The consumers of a joinable queue, with their leases and items in flight.
    pub consumers: Vec<ConsumerInfo>,
}

/// One consumer of a remote [`JoinableQueue`], in a [`QueueInfo`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerInfo {
    /// The consumer's id (random, one per handle and process).
    pub id: String,
    /// How long its lease still runs; `None` when it ran out (it is dead, stopped or cut
    /// off, and the next reaper gives its items back).
    pub lease_left: Option<Duration>,
    /// Items it took and has not acknowledged.
    pub in_flight: usize,
    /// For a remote [`Pool`](super::Pool)'s worker: where it runs (host, pid) and the tasks
    /// it serves.
    pub worker: Option<String>,
}

/// A snapshot of the remote queue `name` (plain or joinable) without opening it: nothing is
/// created or changed on the server (a name that is no queue gives an empty `kind`).
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] for a bad URL or name; [`ErrorKind::Disconnected`] when
/// the server cannot be reached.
pub fn inspect(url: &str, name: &str) -> Result<QueueInfo> {
    conn::check_name(name)?;
    let core = Core {
        conn: Conn::open(url)?,
        name: name.to_string(),
        keys: Keys::new(name),
        scripts: Scripts::new(),
        maxsize: 0,
        joinable: false,
        id_prefix: [0; 8],
        id_next: AtomicU64::new(0),
    };
    core.info()
}

impl Core {
    fn unlink(&self) -> Result<()> {
        let mut s = self.conn.session();
        let ids = conn::array(
            "unlink",
            s.query(
                redis::cmd("ZRANGE")
                    .arg(&self.keys.consumers)
                    .arg(0)
                    .arg(-1),
            )?,
        )?;
        let mut del = redis::cmd("DEL");
        del.arg(&self.keys.items)
            .arg(&self.keys.meta)
            .arg(&self.keys.notfull)
            .arg(&self.keys.consumers)
            .arg(&self.keys.workers)
            .arg(&self.keys.lost);
        for id in ids {
            let id = String::from_utf8(conn::bytes("unlink", id)?)
                .map_err(|_| conn::bad_reply("unlink", &Value::Nil))?;
            del.arg(self.keys.inflight(&id));
        }
        s.query(&del)?;
        Ok(())
    }

    fn info(&self) -> Result<QueueInfo> {
        const W: &str = "queue info";
        let mut s = self.conn.session();
        let r = s.script_repeatable(
            Script::new(INFO)
                .key(&self.keys.meta)
                .key(&self.keys.items)
                .key(&self.keys.consumers)
                .arg(MARKER),
        )?;
        let parts = conn::array(W, r)?;
        let [kind, maxsize, closed, unfinished, ready, now, consumers] =
            <[Value; 7]>::try_from(parts).map_err(|p| conn::bad_reply(W, &Value::Array(p)))?;
        let kind = String::from_utf8(conn::bytes(W, kind)?)
            .map_err(|_| conn::bad_reply(W, &Value::Nil))?;
        let maxsize = conn::count(W, &maxsize)?;
        let now = conn::int(W, &now)?;
        let list = conn::array(W, consumers)?;
        if list.len() % 2 != 0 {
            return Err(conn::bad_reply(W, &Value::Array(list)));
        }
        let mut out = Vec::with_capacity(list.len() / 2);
        let mut it = list.into_iter();
        while let (Some(id), Some(deadline)) = (it.next(), it.next()) {
            let id = String::from_utf8(conn::bytes(W, id)?)
                .ok()
                .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric()))
                .ok_or_else(|| conn::bad_reply(W, &Value::Nil))?;
            // Scores come back as strings, possibly with a fraction.
            let deadline = match &deadline {
                Value::BulkString(b) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| conn::bad_reply(W, &deadline))?
                    as i64,
                Value::Double(f) if f.is_finite() => *f as i64,
                v => conn::int(W, v)?,
            };
            let in_flight = conn::count(
                W,
                &s.query(redis::cmd("LLEN").arg(self.keys.inflight(&id)))?,
            )?;
            let worker = match s.query(redis::cmd("HGET").arg(&self.keys.workers).arg(&id))? {
                Value::Nil => None,
                v => Some(String::from_utf8_lossy(&conn::bytes(W, v)?).into_owned()),
            };
            out.push(ConsumerInfo {
                worker,
                lease_left: (deadline > now)
                    .then(|| Duration::from_millis((deadline - now) as u64)),
                id,
                in_flight,
            });
        }
        Ok(QueueInfo {
            name: self.name.clone(),
            kind,
            maxsize: (maxsize != 0).then_some(maxsize),
            ready: conn::count(W, &ready)?,
            closed: conn::int(W, &closed)? == 1,
            unfinished: conn::opt_int(W, &unfinished)?.unwrap_or(0).max(0) as u64,
            consumers: out,
        })
    }
}

fn put_error<T>((item, s): (T, PutStop)) -> PutError<T> {
    match s {
        PutStop::Closed => PutError::Closed(item),
        PutStop::Failed(e) => PutError::Failed(item, e),
        PutStop::Full => unreachable!("an unbounded wait does not stop at Full"),
    }
}

fn try_put_error<T>((item, s): (T, PutStop)) -> TryPutError<T> {
    match s {
        PutStop::Full => TryPutError::Full(item),
        PutStop::Closed => TryPutError::Closed(item),
        PutStop::Failed(e) => TryPutError::Failed(item, e),
    }
}

fn put_timeout_error<T>((item, s): (T, PutStop)) -> PutTimeoutError<T> {
    match s {
        PutStop::Full => PutTimeoutError::Timeout(item),
        PutStop::Closed => PutTimeoutError::Closed(item),
        PutStop::Failed(e) => PutTimeoutError::Failed(item, e),
    }
}

fn get_error(s: GetStop) -> GetError {
    match s {
        GetStop::Closed => GetError::Closed,
        GetStop::Failed(e) => GetError::Failed(e),
        GetStop::Empty => unreachable!("an unbounded wait does not stop at Empty"),
    }
}

fn try_get_error(s: GetStop) -> TryGetError {
    match s {
        GetStop::Empty => TryGetError::Empty,
        GetStop::Closed => TryGetError::Closed,
        GetStop::Failed(e) => TryGetError::Failed(e),
    }
}

fn get_timeout_error(s: GetStop) -> GetTimeoutError {
    match s {
        GetStop::Empty => GetTimeoutError::Timeout,
        GetStop::Closed => GetTimeoutError::Closed,
        GetStop::Failed(e) => GetTimeoutError::Failed(e),
    }
}

/// The four forms of one blocking call — plain (waits forever), `try_` (does not wait),
/// `_timeout` and `_deadline` — over one `wait(args, Deadline)`, each turning the stop into
/// its own error type with a function of `(stop)` or `((item, stop))`.
macro_rules! four {
    (
        $(#[$d0:meta])* fn $plain:ident, $e0:ty, $m0:path;
        $(#[$d1:meta])* fn $try_:ident, $e1:ty, $m1:path;
        $(#[$d2:meta])* fn $timeout:ident, $e2:ty, $m2:path;
        $(#[$d3:meta])* fn $deadline:ident, $e3:ty, $m3:path;
        ($($a:ident: $t:ty)?) -> $ok:ty => $wait:ident
    ) => {
        $(#[$d0])*
        pub fn $plain(&self, $($a: $t)?) -> std::result::Result<$ok, $e0> {
            self.$wait($($a,)? Deadline::never()).map_err($m0)
        }

        $(#[$d1])*
        pub fn $try_(&self, $($a: $t)?) -> std::result::Result<$ok, $e1> {
            self.$wait($($a,)? Deadline::passed()).map_err($m1)
        }

        $(#[$d2])*
        pub fn $timeout(
            &self,
            $($a: $t,)?
            timeout: Duration,
        ) -> std::result::Result<$ok, $e2> {
            self.$wait($($a,)? Deadline::within(timeout)).map_err($m2)
        }

        $(#[$d3])*
        pub fn $deadline(
            &self,
            $($a: $t,)?
            deadline: Instant,
        ) -> std::result::Result<$ok, $e3> {
            self.$wait($($a,)? Deadline::at(deadline)).map_err($m3)
        }
    };
}

/// The four forms of `put` over a `put_wait(item, deadline) -> Result<(), (T, PutStop)>`,
/// and of `get` over a `get_wait(deadline) -> Result<T, GetStop>`.
macro_rules! four_forms {
    () => {
        four! {
            /// Puts `item`, waiting for room as long as it takes (Python's `put(item)`). When
            /// it returns `Ok`, the item is on the server.
            ///
            /// # Errors
            /// `Closed(item)`; `Failed(item, e)`: the item does not serialize, or the server was
            /// lost ([`ErrorKind::Disconnected`]: the item may or may not have been put).
            fn put, PutError<T>, put_error;
            /// Puts `item` if there is room now (Python's `put_nowait`).
            ///
            /// # Errors
            /// `Full(item)`, `Closed(item)` or `Failed(item, e)`.
            #[doc(alias = "put_nowait")]
            fn try_put, TryPutError<T>, try_put_error;
            /// Puts `item`, waiting at most `timeout` for room (any `Duration`).
            ///
            /// # Errors
            /// `Timeout(item)`, `Closed(item)` or `Failed(item, e)`.
            fn put_timeout, PutTimeoutError<T>, put_timeout_error;
            /// Puts `item`, waiting until `deadline` at most for room.
            ///
            /// # Errors
            /// As [`put_timeout`](Self::put_timeout).
            fn put_deadline, PutTimeoutError<T>, put_timeout_error;
            (item: T) -> () => put_wait
        }

        four! {
            /// Takes the next item, waiting as long as it takes (Python's `get()`); the wait
            /// blocks on the server, in slices of at most a second.
            ///
            /// # Errors
            /// `Closed` once the queue is closed and drained; `Failed(e)`: the message does not
            /// decode as `T`, or the server was lost ([`ErrorKind::Disconnected`]).
            fn get, GetError, get_error;
            /// Takes the next item if there is one now (Python's `get_nowait`).
            ///
            /// # Errors
            /// `Empty`, `Closed` or `Failed(e)`.
            #[doc(alias = "get_nowait")]
            fn try_get, TryGetError, try_get_error;
            /// Takes the next item, waiting at most `timeout` (any `Duration`).
            ///
            /// # Errors
            /// `Timeout`, `Closed` or `Failed(e)`.
            fn get_timeout, GetTimeoutError, get_timeout_error;
            /// Takes the next item, waiting until `deadline` at most.
            ///
            /// # Errors
            /// As [`get_timeout`](Self::get_timeout).
            fn get_deadline, GetTimeoutError, get_timeout_error;
            () -> T => get_wait
        }

        four! {
            /// Puts all `items` in order, a script per batch of up to 1,000 (as many as fit in a
            /// bounded queue, waiting for room for the rest).
            ///
            /// # Errors
            /// `Closed` or `Failed`, handing back the items that were *not* put (the ones before
            /// them are on the server). A serialization failure is reported before any is put.
            fn put_many, PutError<Vec<T>>, put_error;
            /// Puts as many of `items`, in order, as there is room for now.
            ///
            /// # Errors
            /// `Full` with the items that did not fit, `Closed` or `Failed` with those not put.
            fn try_put_many, TryPutError<Vec<T>>, try_put_error;
            /// [`put_many`](Self::put_many), waiting at most `timeout` for room.
            ///
            /// # Errors
            /// `Timeout`, `Closed` or `Failed`, with the items not put.
            fn put_many_timeout, PutTimeoutError<Vec<T>>, put_timeout_error;
            /// [`put_many`](Self::put_many), waiting until `deadline` at most for room.
            ///
            /// # Errors
            /// As [`put_many_timeout`](Self::put_many_timeout).
            fn put_many_deadline, PutTimeoutError<Vec<T>>, put_timeout_error;
            (items: Vec<T>) -> () => put_many_wait
        }

        four! {
            /// Takes between one and `max` items, waiting as long as it takes for the first.
            ///
            /// # Errors
            /// As [`get`](Self::get). A message that does not decode ends the batch: the items
            /// before it are returned, it and those after it go back to the head of the queue
            /// (its error comes when it is first).
            ///
            /// # Panics
            /// If `max` is 0.
            fn get_many, GetError, get_error;
            /// Takes between one and `max` items if there are any now.
            ///
            /// # Errors
            /// As [`try_get`](Self::try_get).
            ///
            /// # Panics
            /// If `max` is 0.
            fn try_get_many, TryGetError, try_get_error;
            /// Takes between one and `max` items, waiting at most `timeout` for the first.
            ///
            /// # Errors
            /// As [`get_timeout`](Self::get_timeout).
            ///
            /// # Panics
            /// If `max` is 0.
            fn get_many_timeout, GetTimeoutError, get_timeout_error;
            /// Takes between one and `max` items, waiting until `deadline` at most for the first.
            ///
            /// # Errors
            /// As [`get_timeout`](Self::get_timeout).
            ///
            /// # Panics
            /// If `max` is 0.
            fn get_many_deadline, GetTimeoutError, get_timeout_error;
            (max: usize) -> Vec<T> => get_many_wait
        }

        fn put_many_wait(
            &self,
            mut items: Vec<T>,
            deadline: Deadline,
        ) -> std::result::Result<(), (Vec<T>, PutStop)> {
            let mut envs = Vec::with_capacity(items.len());
            for item in &items {
                match self.core.encode::<T, C>(item) {
                    Ok(e) => envs.push(e),
                    Err(e) => return Err((items, PutStop::Failed(e))),
                }
            }
            self.core
                .put_many_envs(&envs, deadline)
                .map_err(|(done, s)| {
                    items.drain(..done);
                    (items, s)
                })
        }

        fn put_wait(&self, item: T, deadline: Deadline) -> std::result::Result<(), (T, PutStop)> {
            let env = match self.core.encode::<T, C>(&item) {
                Ok(env) => env,
                Err(e) => return Err((item, PutStop::Failed(e))),
            };
            self.core.put_env(&env, deadline).map_err(|s| (item, s))
        }

        /// Closes the queue for everyone, on every machine: puts fail with `Closed`,
        /// consumers drain what is left and then get `Closed`; blocked callers wake at once.
        ///
        /// # Errors
        /// [`ErrorKind::Disconnected`] when the server is lost.
        pub fn close(&self) -> Result<()> {
            self.core.close()
        }

        /// True once the queue is closed (by anyone).
        ///
        /// # Errors
        /// [`ErrorKind::Disconnected`] when the server is lost.
        pub fn is_closed(&self) -> Result<bool> {
            self.core.is_closed()
        }

        /// The number of items ready to be taken now (a snapshot, as Python's `qsize()`;
        /// items in flight are not counted).
        ///
        /// # Errors
        /// [`ErrorKind::Disconnected`] when the server is lost.
        #[doc(alias = "qsize")]
        pub fn len(&self) -> Result<usize> {
            self.core.len()
        }

        /// True when no item is ready now (a snapshot).
        ///
        /// # Errors
        /// [`ErrorKind::Disconnected`] when the server is lost.
        pub fn is_empty(&self) -> Result<bool> {
            Ok(self.core.len()? == 0)
        }

        /// True when a bounded queue holds `maxsize` items now (a snapshot).
        ///
        /// # Errors
        /// [`ErrorKind::Disconnected`] when the server is lost.
        pub fn is_full(&self) -> Result<bool> {
            Ok(self.core.maxsize != 0 && self.core.len()? >= self.core.maxsize)
        }

        /// The queue's `maxsize`, or `None` when unbounded.
        pub fn maxsize(&self) -> Option<usize> {
            (self.core.maxsize != 0).then_some(self.core.maxsize)
        }

        /// The queue's name on the server.
        pub fn name(&self) -> &str {
            &self.core.name
        }

        /// Deletes the queue from the server: its items, in-flight lists, counters and
        /// closed flag. Meant for when no one uses it any more (a process still using it
        /// re-creates it empty, unbounded and open at its next put, with its own view of
        /// `maxsize`); nothing is deleted by dropping handles.
        ///
        /// # Errors
        /// [`ErrorKind::Disconnected`] when the server is lost.
        pub fn unlink(&self) -> Result<()> {
            self.core.unlink()
        }

        /// A snapshot of the queue: ready items, whether closed, and for a joinable queue
        /// the unfinished count and every consumer with its lease and items in flight.
        ///
        /// # Errors
        /// [`ErrorKind::Disconnected`] when the server is lost.
        pub fn info(&self) -> Result<QueueInfo> {
            self.core.info()
        }
    };
}

/// A FIFO queue on a Redis-protocol server, shared by processes on any machine (Python's
/// `multiprocessing.Queue`, remote). **At-most-once**: `get` removes the item; a consumer
/// killed after `get` loses it, as with the local queue.
///
/// Each handle has its own connection; a [`Clone`] opens another (clone a handle per
/// thread for calls in parallel). A handle captured by a forked child connects anew in
/// the child.
///
/// ```text
/// use multiproc::remote::Queue;
/// let q: Queue<String> = Queue::open("redis://127.0.0.1:6379/0", "jobs")?;
/// q.put("hello".into())?;
/// assert_eq!(q.get()?, "hello");
/// ```
pub struct Queue<T, C: Codec = Postcard> {
    core: Core,
    _marker: PhantomData<fn(T) -> T>,
    _codec: PhantomData<fn() -> C>,
}

impl<T, C: Codec> Clone for Queue<T, C> {
    fn clone(&self) -> Self {
        Queue {
            core: self.core.fresh(),
            _marker: PhantomData,
            _codec: PhantomData,
        }
    }
}

impl<T, C: Codec> fmt::Debug for Queue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("remote::Queue")
            .field("server", &self.core.conn.shown())
            .field("name", &self.core.name)
            .field("maxsize", &self.core.maxsize)
            .finish()
    }
}

impl<T, C: Codec> Queue<T, C> {
    /// Opens the queue `name` on the server at `url` (`redis://host:port/db`,
    /// `unix:///path/to/socket`, `redis+unix:///path?db=N`), creating it unbounded if it
    /// does not exist; an existing queue keeps its `maxsize`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a bad URL or name; [`ErrorKind::Disconnected`]
    /// when the server cannot be reached; [`ErrorKind::InvalidHandle`] when `name` is
    /// another kind of object.
    pub fn open(url: &str, name: &str) -> Result<Self> {
        Self::with_core(Core::open(url, name, None, false)?)
    }

    /// Opens the queue `name`, creating it with room for `maxsize` items (0: unbounded).
    ///
    /// # Errors
    /// As [`open`](Self::open), and [`ErrorKind::InvalidArgument`] when the queue exists
    /// with another `maxsize`.
    pub fn open_bounded(url: &str, name: &str, maxsize: usize) -> Result<Self> {
        Self::with_core(Core::open(url, name, Some(maxsize), false)?)
    }

    fn with_core(core: Core) -> Result<Self> {
        Ok(Queue {
            core,
            _marker: PhantomData,
            _codec: PhantomData,
        })
    }
}

impl<T: Serialize + DeserializeOwned, C: Codec> Queue<T, C> {
    four_forms!();

    fn get_many_wait(
        &self,
        max: usize,
        deadline: Deadline,
    ) -> std::result::Result<Vec<T>, GetStop> {
        assert!(max > 0, "get_many(0): a batch takes at least one item");
        let mut s = self.core.conn.session();
        let envs = self.core.get_many_envs(&mut s, None, max, deadline)?;
        let mut out = Vec::with_capacity(envs.len());
        for (i, env) in envs.iter().enumerate() {
            match self.core.decode::<T, C>(env) {
                Ok(t) => out.push(t),
                Err(e) => {
                    // The bad message comes first next time (and is dropped then), unless it
                    // is first now.
                    if out.is_empty() {
                        self.core.give_back(&mut s, None, &envs[1..]);
                        return Err(GetStop::Failed(e));
                    }
                    self.core.give_back(&mut s, None, &envs[i..]);
                    break;
                }
            }
        }
        Ok(out)
    }

    fn get_wait(&self, deadline: Deadline) -> std::result::Result<T, GetStop> {
        let env = self
            .core
            .get_env(&mut self.core.conn.session(), None, deadline)?;
        Ok(self.core.decode::<T, C>(&env)?)
    }
}

/// A [`Queue`] with `task_done` and `join`, **at-least-once** across consumer crashes
/// (Python's `JoinableQueue`, remote).
///
/// An item taken with `get` stays on the server, in this handle's in-flight list, until
/// `task_done` acknowledges it. The handle holds a lease (default [`DEFAULT_LEASE`],
/// renewed every third of it by a thread); if its process dies or stops for longer than
/// the lease, anyone reaps it: its items go back to the head of the queue, each exactly
/// once, and its late `task_done` gets [`ErrorKind::LeaseLost`] without counting twice.
/// `join` waits for `task_done` of every item put, and does not hang on a dead consumer:
/// its items are delivered again and `join` returns once someone finishes them.
///
/// `task_done` acknowledges the oldest item *this handle* took and has not acknowledged
/// (Python's takes no argument either); call it on the handle whose `get` returned the
/// item. A [`Clone`] is another consumer (its own connection, lease and in-flight list).
/// Dropping a handle gives its unacknowledged items back.
pub struct JoinableQueue<T, C: Codec = Postcard> {
    core: Core,
    lease: Duration,
    consumer: Mutex<Consumer>,
    _marker: PhantomData<fn(T) -> T>,
    _codec: PhantomData<fn() -> C>,
}

struct Consumer {
    pid: u32,
    cid: String,
    inflight: String,
    /// Envelopes taken and not acknowledged, oldest first.
    held: VecDeque<Vec<u8>>,
    /// The connection generation the in-flight list was last checked against.
    generation: u64,
    keeper: Option<Keeper>,
}

impl Consumer {
    fn new(keys: &Keys) -> Consumer {
        let cid = conn::token();
        Consumer {
            pid: std::process::id(),
            inflight: keys.inflight(&cid),
            cid,
            held: VecDeque::new(),
            generation: 0,
            keeper: None,
        }
    }
}

impl<T, C: Codec> Clone for JoinableQueue<T, C> {
    fn clone(&self) -> Self {
        Self::with_core(self.core.fresh(), self.lease)
    }
}

impl<T, C: Codec> fmt::Debug for JoinableQueue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("remote::JoinableQueue")
            .field("server", &self.core.conn.shown())
            .field("name", &self.core.name)
            .field("maxsize", &self.core.maxsize)
            .field("lease", &self.lease)
            .finish()
    }
}

impl<T, C: Codec> JoinableQueue<T, C> {
    /// Opens the joinable queue `name` on the server at `url`, creating it unbounded if it
    /// does not exist, with consumer leases of [`DEFAULT_LEASE`].
    ///
    /// # Errors
    /// As [`Queue::open`].
    pub fn open(url: &str, name: &str) -> Result<Self> {
        Ok(Self::with_core(
            Core::open(url, name, None, true)?,
            DEFAULT_LEASE,
        ))
    }

    /// Opens the joinable queue `name`, creating it with room for `maxsize` items
    /// (0: unbounded).
    ///
    /// # Errors
    /// As [`Queue::open_bounded`].
    pub fn open_bounded(url: &str, name: &str, maxsize: usize) -> Result<Self> {
        Ok(Self::with_core(
            Core::open(url, name, Some(maxsize), true)?,
            DEFAULT_LEASE,
        ))
    }

    /// This handle with consumer leases of `lease` (at least 30 ms): how long this
    /// consumer may be silent (dead, stopped, cut off) before its items go to others.
    /// Set it before the first `get`.
    ///
    /// # Panics
    /// If `lease` is shorter than 30 ms.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        assert!(
            lease >= Duration::from_millis(30),
            "a consumer lease must be at least 30 ms (got {lease:?})"
        );
        self.lease = lease;
        self
    }

    fn with_core(core: Core, lease: Duration) -> Self {
        let consumer = Mutex::new(Consumer::new(&core.keys));
        JoinableQueue {
            core,
            lease,
            consumer,
            _marker: PhantomData,
            _codec: PhantomData,
        }
    }

    /// The consumer, reset in a forked child (the parent's items and lease are not its).
    fn consumer(&self) -> MutexGuard<'_, Consumer> {
        let mut c = self.consumer.lock().unwrap_or_else(|e| e.into_inner());
        if c.pid != std::process::id() {
            if let Some(k) = c.keeper.take() {
                std::mem::forget(k);
            }
            *c = Consumer::new(&self.core.keys);
        }
        c
    }

    /// Registers the consumer's lease and starts renewing it (first `get`), and after a
    /// reconnection gives back what a lost reply may have moved to the in-flight list.
    fn prepare(&self, c: &mut Consumer, s: &mut Session<'_>) -> Result<()> {
        let generation = s.generation()?;
        if c.keeper.is_none() {
            s.script_repeatable(
                self.core
                    .scripts
                    .heartbeat
                    .key(&self.core.keys.consumers)
                    .arg(&c.cid)
                    .arg(self.lease.as_millis() as u64),
            )?;
            self.core.reap(s)?;
            let conn = self.core.conn.fresh();
            let keys = self.core.keys.clone();
            let (cid, lease) = (c.cid.clone(), self.lease);
            let name = self.core.name.clone();
            let scripts = Scripts::new();
            c.keeper = Some(Keeper::spawn("multiproc-lease", lease / 3, move || {
                let mut s = conn.session();
                let r = s
                    .script_repeatable(
                        scripts
                            .heartbeat
                            .key(&keys.consumers)
                            .arg(&cid)
                            .arg(lease.as_millis() as u64),
                    )
                    .and_then(|_| reap(&mut s, &keys, &scripts.expired, &scripts.reap, &name));
                if let Err(e) = r {
                    log::debug!("multiproc::remote: lease renewal failed (will retry): {e}");
                }
                true
            }));
        }
        if c.generation != 0 && c.generation != generation {
            let mut inv = self.core.scripts.recover.prepare_invoke();
            inv.key(&c.inflight).key(&self.core.keys.items);
            for env in &c.held {
                inv.arg(env.as_slice());
            }
            let n = conn::int("recover", &s.script_repeatable(&inv)?)?;
            if n > 0 {
                log::debug!(
                    "multiproc::remote: queue {:?}: {n} item(s) taken by a lost reply went back",
                    self.core.name
                );
            }
        }
        c.generation = generation;
        Ok(())
    }

    /// Acknowledges the oldest item this handle took and has not acknowledged (Python's
    /// `task_done()`); when every item put is acknowledged, `join` returns.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when this handle holds no unacknowledged item;
    /// [`ErrorKind::LeaseLost`] when this consumer's lease ran out and the item went back
    /// to the queue (another consumer will, or did, get it; nothing is counted);
    /// [`ErrorKind::Disconnected`] when the server is lost (the item stays held: call
    /// `task_done` again).
    pub fn task_done(&self) -> Result<()> {
        self.task_done_with(None)
    }

    /// `task_done`, appending `reply` (batch, bytes) to that batch's replies stream in the
    /// same atomic step (a remote pool's result: published once, with its acknowledgement).
    pub(crate) fn task_done_with(&self, reply: Option<(&str, &[u8])>) -> Result<()> {
        let mut c = self.consumer();
        let Some(env) = c.held.pop_front() else {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "task_done() called more times than this handle took items with get()",
            ));
        };
        let mut inv = self.core.scripts.task_done.prepare_invoke();
        inv.key(&c.inflight)
            .key(&self.core.keys.meta)
            .key(&self.core.keys.lost)
            .arg(env.as_slice())
            .arg(&self.core.keys.alldone);
        if let Some((batch, bytes)) = reply {
            inv.key(self.core.keys.replies(batch))
                .arg(bytes)
                .arg(REPLY_TTL.as_millis() as u64);
        }
        let r = self.core.conn.session().script(&inv);
        match r.and_then(|v| conn::int("task_done", &v)) {
            Ok(-1) => Err(Error::new(
                ErrorKind::LeaseLost,
                format!(
                    "task_done() refused: this consumer of the remote queue {:?} missed its \
                     lease and the item went back to the queue",
                    self.core.name
                ),
            )),
            Ok(_) => Ok(()),
            Err(e) => {
                if e.kind() == ErrorKind::Disconnected {
                    c.held.push_front(env);
                }
                Err(e)
            }
        }
    }

    /// The number of items put and not yet acknowledged (ready or in flight).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn unfinished_tasks(&self) -> Result<u64> {
        let r = self.core.conn.session().query(
            redis::cmd("HGET")
                .arg(&self.core.keys.meta)
                .arg("unfinished"),
        )?;
        Ok(conn::opt_int("unfinished", &r)?.unwrap_or(0).max(0) as u64)
    }

    /// Waits until every item put has been acknowledged (Python's `join()`). Blocks on the
    /// server (pub/sub), re-checking at least every second; reaps dead consumers on the way,
    /// so their items are delivered again instead of hanging the join.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn join(&self) -> Result<()> {
        self.join_until(Deadline::never()).map_err(Error::from)
    }

    /// `Ok` if every item put has been acknowledged now.
    ///
    /// # Errors
    /// `WouldBlock` when not, or `Failed(e)`.
    pub fn try_join(&self) -> std::result::Result<(), TryWaitError> {
        match self.unfinished_tasks()? {
            0 => Ok(()),
            _ => Err(TryWaitError::WouldBlock),
        }
    }

    /// [`join`](Self::join), waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, or `Failed(e)`.
    pub fn join_timeout(&self, timeout: Duration) -> std::result::Result<(), WaitTimeoutError> {
        self.join_until(Deadline::within(timeout))
    }

    /// [`join`](Self::join), waiting until `deadline` at most.
    ///
    /// # Errors
    /// `Timeout`, or `Failed(e)`.
    pub fn join_deadline(&self, deadline: Instant) -> std::result::Result<(), WaitTimeoutError> {
        self.join_until(Deadline::at(deadline))
    }

    fn join_until(&self, deadline: Deadline) -> std::result::Result<(), WaitTimeoutError> {
        let done = self
            .core
            .conn
            .wait_published(&self.core.keys.alldone, deadline, || {
                if self.unfinished_tasks()? == 0 {
                    return Ok(true);
                }
                // A dead consumer's items go back, so that someone finishes them.
                self.core.reap(&mut self.core.conn.session())?;
                Ok(false)
            })?;
        if done {
            Ok(())
        } else {
            Err(WaitTimeoutError::Timeout)
        }
    }

    /// Items this handle took and has not acknowledged.
    pub fn held(&self) -> usize {
        self.consumer().held.len()
    }

    /// Describes this consumer as a pool worker (`multiproc inspect` shows it); removed
    /// when the consumer is reaped or dropped.
    pub(crate) fn describe_worker(&self, what: &str) -> Result<()> {
        let cid = self.consumer().cid.clone();
        self.core.conn.session().query(
            redis::cmd("HSET")
                .arg(&self.core.keys.workers)
                .arg(cid)
                .arg(what),
        )?;
        Ok(())
    }

    /// Forgets the oldest item held, without acknowledging it (its lease brings it back).
    pub(crate) fn forget_held(&self) -> Option<Vec<u8>> {
        self.consumer().held.pop_front()
    }

    /// The key of batch `batch`'s replies stream.
    pub(crate) fn replies_key(&self, batch: &str) -> String {
        self.core.keys.replies(batch)
    }
}

impl<T: Serialize + DeserializeOwned, C: Codec> JoinableQueue<T, C> {
    four_forms!();

    fn get_many_wait(
        &self,
        max: usize,
        deadline: Deadline,
    ) -> std::result::Result<Vec<T>, GetStop> {
        assert!(max > 0, "get_many(0): a batch takes at least one item");
        let mut c = self.consumer();
        let mut s = self.core.conn.session();
        self.prepare(&mut c, &mut s)?;
        let (inflight, cid) = (c.inflight.clone(), c.cid.clone());
        let envs =
            self.core
                .get_many_envs(&mut s, Some((&inflight, &cid, self.lease)), max, deadline)?;
        let mut out = Vec::with_capacity(envs.len());
        for (i, env) in envs.iter().enumerate() {
            // Taken, so held (an item that does not decode too: `task_done` it).
            c.held.push_back(env.clone());
            match self.core.decode::<T, C>(env) {
                Ok(t) => out.push(t),
                Err(e) => {
                    // The bad message comes first next time (held then, to be acknowledged),
                    // unless it is first now.
                    if out.is_empty() {
                        self.core.give_back(&mut s, Some(&inflight), &envs[1..]);
                        return Err(GetStop::Failed(e));
                    }
                    c.held.pop_back();
                    self.core.give_back(&mut s, Some(&inflight), &envs[i..]);
                    break;
                }
            }
        }
        Ok(out)
    }

    fn get_wait(&self, deadline: Deadline) -> std::result::Result<T, GetStop> {
        Ok(self.get_wait_counted(deadline, false)?.0)
    }

    /// `get`, and with `count`, how many times the item went back to the queue from a
    /// consumer whose lease ran out (0 without `count`).
    fn get_wait_counted(
        &self,
        deadline: Deadline,
        count: bool,
    ) -> std::result::Result<(T, u64), GetStop> {
        let mut c = self.consumer();
        let mut s = self.core.conn.session();
        self.prepare(&mut c, &mut s)?;
        let (inflight, cid) = (c.inflight.clone(), c.cid.clone());
        let r = self
            .core
            .get_env_counted(&mut s, Some((&inflight, &cid, self.lease)), deadline);
        // After a lost reply, which may have moved an item to our in-flight list, the next
        // call is on a new connection and gives that item back (see `prepare`).
        let (env, lost) = r?;
        c.held.push_back(env);
        let env = c.held.back().expect("pushed above");
        let lost = match lost {
            Some(n) => n,
            // Taken by a blocking command: ask. The item is ours now, so a failure here
            // only counts 0 (the item may run once more than the limit).
            None if count => s
                .query(redis::cmd("HGET").arg(&self.core.keys.lost).arg(env))
                .and_then(|r| conn::opt_int("times lost", &r))
                .map_or(0, |n| n.unwrap_or(0).max(0) as u64),
            None => 0,
        };
        // An item that does not decode stays held: `task_done` it like any other.
        Ok((self.core.decode::<T, C>(env)?, lost))
    }

    /// A remote pool worker's step in one round trip: `task_done_with(Some(reply))`, then a
    /// take of the next item if one is ready (with how many times it was lost, as
    /// [`get_counted_timeout`](Self::get_counted_timeout)). The outer error is the step's
    /// (as `task_done`'s: on `Disconnected` the item stays held, and an item the lost reply
    /// may have taken goes back at the next `get`); the inner ones are the acknowledgement's
    /// (`LeaseLost`) and the next item's (`Codec`: it is held, `task_done` it).
    #[allow(clippy::type_complexity)]
    pub(crate) fn task_done_then_take(
        &self,
        reply: (&str, &[u8]),
    ) -> Result<(Result<()>, Option<Result<(T, u64)>>)> {
        const W: &str = "task_done and take";
        let mut c = self.consumer();
        let mut s = self.core.conn.session();
        self.prepare(&mut c, &mut s)?;
        let Some(env) = c.held.pop_front() else {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "task_done() called more times than this handle took items with get()",
            ));
        };
        let (batch, bytes) = reply;
        let mut inv = self.core.scripts.ack_take.prepare_invoke();
        inv.key(&c.inflight)
            .key(&self.core.keys.meta)
            .key(&self.core.keys.lost)
            .key(self.core.keys.replies(batch))
            .key(&self.core.keys.items)
            .key(&self.core.keys.notfull)
            .arg(env.as_slice())
            .arg(&self.core.keys.alldone)
            .arg(bytes)
            .arg(REPLY_TTL.as_millis() as u64)
            .arg(MARKER);
        let r = match s.script(&inv) {
            Ok(r) => r,
            Err(e) => {
                if e.kind() == ErrorKind::Disconnected {
                    c.held.push_front(env);
                }
                return Err(e);
            }
        };
        let r = conn::array(W, r)?;
        let acked = match r.first().map(|v| conn::int(W, v)).transpose()? {
            Some(1) => Ok(()),
            Some(-1) => Err(Error::new(
                ErrorKind::LeaseLost,
                format!(
                    "task_done() refused: this consumer of the remote queue {:?} missed its \
                     lease and the item went back to the queue",
                    self.core.name
                ),
            )),
            _ => return Err(conn::bad_reply(W, &Value::Array(r))),
        };
        match <[Value; 4]>::try_from(r) {
            Ok([_, _, env, lost]) => {
                let lost = conn::int(W, &lost)?.max(0) as u64;
                c.held.push_back(conn::bytes(W, env)?);
                let env = c.held.back().expect("pushed above");
                let next = self.core.decode::<T, C>(env).map(|t| (t, lost));
                Ok((acked, Some(next)))
            }
            Err(r) if r.len() == 2 && conn::int(W, &r[1])? == 0 => Ok((acked, None)),
            Err(r) => Err(conn::bad_reply(W, &Value::Array(r))),
        }
    }

    /// [`get_timeout`](Self::get_timeout), with how many times the item went back to the
    /// queue from a consumer whose lease ran out (a remote pool's poison limit).
    pub(crate) fn get_counted_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<(T, u64), GetTimeoutError> {
        self.get_wait_counted(Deadline::within(timeout), true)
            .map_err(get_timeout_error)
    }
}

impl<T, C: Codec> Drop for JoinableQueue<T, C> {
    fn drop(&mut self) {
        let c = self.consumer.get_mut().unwrap_or_else(|e| e.into_inner());
        if c.pid != std::process::id() {
            if let Some(k) = c.keeper.take() {
                std::mem::forget(k);
            }
            return;
        }
        if c.keeper.take().is_none() {
            return; // never took anything
        }
        let r = self.core.conn.session().script(
            self.core
                .scripts
                .reap
                .key(&self.core.keys.consumers)
                .key(&c.inflight)
                .key(&self.core.keys.items)
                .key(&self.core.keys.workers)
                .key(&self.core.keys.lost)
                .arg(&c.cid),
        );
        if let Err(e) = r {
            log::debug!(
                "multiproc::remote: queue {:?}: could not give back this handle's items on \
                 drop (its lease will): {e}",
                self.core.name
            );
        }
    }
}

// ---- the traits -----------------------------------------------------------------------------

macro_rules! api_queue {
    ($ty:ident) => {
        impl<T: Serialize + DeserializeOwned, C: Codec> crate::api::Queue<T> for $ty<T, C> {
            fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
                $ty::put(self, item)
            }
            fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
                $ty::try_put(self, item)
            }
            fn put_timeout(
                &self,
                item: T,
                timeout: Duration,
            ) -> std::result::Result<(), PutTimeoutError<T>> {
                $ty::put_timeout(self, item, timeout)
            }
            fn put_deadline(
                &self,
                item: T,
                deadline: Instant,
            ) -> std::result::Result<(), PutTimeoutError<T>> {
                $ty::put_deadline(self, item, deadline)
            }
            fn get(&self) -> std::result::Result<T, GetError> {
                $ty::get(self)
            }
            fn try_get(&self) -> std::result::Result<T, TryGetError> {
                $ty::try_get(self)
            }
            fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
                $ty::get_timeout(self, timeout)
            }
            fn get_deadline(&self, deadline: Instant) -> std::result::Result<T, GetTimeoutError> {
                $ty::get_deadline(self, deadline)
            }
            fn close(&self) -> Result<()> {
                $ty::close(self)
            }
            fn is_closed(&self) -> Result<bool> {
                $ty::is_closed(self)
            }
            fn len(&self) -> Result<usize> {
                $ty::len(self)
            }
        }
    };
}

api_queue!(Queue);
api_queue!(JoinableQueue);

impl<T: Serialize + DeserializeOwned, C: Codec> crate::api::JoinableQueue<T>
    for JoinableQueue<T, C>
{
    fn task_done(&self) -> Result<()> {
        JoinableQueue::task_done(self)
    }
    fn join(&self) -> Result<()> {
        JoinableQueue::join(self)
    }
    fn try_join(&self) -> std::result::Result<(), TryWaitError> {
        JoinableQueue::try_join(self)
    }
    fn join_timeout(&self, timeout: Duration) -> std::result::Result<(), WaitTimeoutError> {
        JoinableQueue::join_timeout(self, timeout)
    }
    fn join_deadline(&self, deadline: Instant) -> std::result::Result<(), WaitTimeoutError> {
        JoinableQueue::join_deadline(self, deadline)
    }
}
