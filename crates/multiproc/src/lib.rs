// The layer rule (checked by tests/it/layers.rs): a module names only modules of lower
// layers, never a higher one nor a sibling of its own layer.
//
//   0 sys (system calls), kinds (codes and magics), error
//   1 fork (what a forked child must fix)
//   2 handle (handles in messages)       3 codec
//   4 shm (segments, arenas)             5 sync
//   6 ring (the ring engine: layout, put, get, wait, repair and its model; one engine under
//     two facades, queue/ and pipe/dir.rs)
//   7 wait (waiting on many connections, processes, fds)
//   8 queue, pipe, process (the facades) 9 pool, api (traits shared with remote types)
//  10 remote (over Redis)
//
// Unsafe code is denied at the root; a module that needs it opts in under a `# Safety`
// section of its docs.

//! # multiproc
//!
//! Python's `multiprocessing` model for Rust on Linux: real processes, process-shared locks
//! that survive a holder's death, shared-memory queues, pipes and a pool.
//!
//! ```
//! use multiproc::Process;
//!
//! // Five children, each hands a value back to the parent.
//! let workers = (0..5)
//!     .map(|n| Process::fork(move || format!("{n}: {} is done", std::process::id())))
//!     .collect::<Result<Vec<_>, _>>()?;
//! for w in workers {
//!     println!("{}", w.join()?);
//! }
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! Two start methods, one verb each: [`Process::fork`] runs a closure in a forked child (the
//! fastest); [`Process::spawn`] executes the current binary again and runs a
//! `fn(A) -> R` whose arguments are serialized — any multiproc primitive inside them travels
//! as a file descriptor and works in the child. No setup call is needed in `main`.
//!
//! ## Coming from Python
//!
//! | Python `multiprocessing` | multiproc | notes |
//! |---|---|---|
//! | `Process(target=f, args=(a,))` + `start()`, start method `fork` | [`Process::fork`]`(move \|\| f(a))` | created and started in one call; `join` returns `f`'s value; a closure that never returns (ends in `abort()`, `exit`, `panic!`) is fine |
//! | the same with start method `spawn` | [`Process::spawn`]`(f, a)` | `f: fn(A) -> R`, `a` serialized (handles inside travel as fds); a capturing closure does not compile |
//! | `Process(name=.., daemon=True)` | [`Process::builder`]`().name(..).daemon(true)` then `.fork(..)` / `.spawn(..)` | [`ProcessBuilder`]; daemons die with the parent, even when it is SIGKILLed |
//! | `set_start_method(..)`, `get_context(..)` | the verb: `fork` or `spawn` | per process, not global; [`Process::start_method`] tells which |
//! | `p.join()` | [`Process::join`] | `&self`: `p.exitcode()` works after it; failures are data: [`JoinError::Panicked`](process::JoinError::Panicked)` { message, status }`, [`JoinError::Exited`](process::JoinError::Exited)`(status)` |
//! | `p.join(timeout)`, then `p.exitcode is None` | [`Process::join_timeout`] / [`Process::join_deadline`] / [`Process::try_join`] | `Err(Timeout)` / `Err(WouldBlock)` while it runs ([`JoinTimeoutError`](process::JoinTimeoutError), [`TryJoinError`](process::TryJoinError)); `Duration::MAX` accepted |
//! | `p.exitcode`, `p.is_alive()`, `p.pid`, `p.name`, `p.daemon` | [`Process::exitcode`], [`Process::exit_status`], [`Process::is_alive`], [`Process::pid`], [`Process::name`], [`Process::daemon`] | `-N` when killed by signal N, or [`ExitStatus::Signal`](process::ExitStatus::Signal)`(N)`; pids are `u32` |
//! | `p.terminate()`, `p.kill()` | [`Process::terminate`], [`Process::kill`] | |
//! | `p.sentinel` | [`Process::sentinel`] | a pidfd |
//! | `active_children()` | [`active_children`] | their pids; reaps finished children on the way |
//! | `current_process()`: `.name`, `.pid`, `.daemon` | [`current_process`]`()`: `name()`, `pid()`, `daemon()`, `start_method()` | `MainProcess` in the main process; in a child, forked or spawned, what its parent's builder said |
//! | `parent_process()` | [`parent_process`]`()` | `None` in the main process; `pid()`, `name()`, `is_alive()` |
//! | `cpu_count()` | [`cpu_count`]`()` | the CPUs this process may use (affinity, cgroup quota): Python 3.13's `process_cpu_count()` |
//! | `log_to_stderr(logging.DEBUG)` | a `log` logger, e.g. `env_logger` with `RUST_LOG=multiproc=debug` | starts, signals and exits at debug level; silent by default ([diagnostics](process#diagnostics)) |
//! | `Queue()` / `Queue(maxsize)` | [`Queue::new`] / [`Queue::bounded`]`(maxsize)` | typed (`Queue<T>`, serde + postcard); byte capacity via [`Queue::builder`] |
//! | `q.put(x)` / `q.put(x, timeout=t)` / `q.put_nowait(x)` | [`Queue::put`] / [`Queue::put_timeout`] (or [`Queue::put_deadline`]) / [`Queue::try_put`] | errors hand the item back: `TryPutError::Full(x)`, `PutTimeoutError::Timeout(x)`; serialization fails here, in the caller |
//! | `q.get()` / `q.get(timeout=t)` / `q.get_nowait()` | [`Queue::get`] / [`Queue::get_timeout`] (or [`Queue::get_deadline`]) / [`Queue::try_get`] | `queue.Empty` is `TryGetError::Empty` / `GetTimeoutError::Timeout` |
//! | `q.qsize()`, `q.empty()`, `q.full()` | [`Queue::len`], [`Queue::is_empty`], [`Queue::is_full`] | snapshots, as in Python |
//! | one `None` sentinel per consumer | [`Queue::close`] + `for item in &q` | closing ends the stream for every consumer after draining |
//! | `q._reader.fileno()` (private), to poll a queue | `q.as_raw_fd()`, `AsFd` (also on [`SimpleQueue`], [`JoinableQueue`]) | an eventfd, readable whenever a message is waiting, for poll/epoll/mio/tokio; asking arms it ([readiness](mod@queue#readiness)) |
//! | — | [`Queue::put_many`], [`Queue::get_many`]`(n)` | one lock per batch; each in the four forms (`try_get_many`, `get_many_timeout`, ...) |
//! | `Connection.send_bytes` through a queue | [`Queue::put_bytes`], [`Queue::get_bytes`] | raw bytes, no serialization; a typed `get` refuses them (and `get_bytes` a typed message) with an [`ErrorKind::Codec`] error |
//! | `SimpleQueue()` | [`SimpleQueue::new`] | `put`, `get` (each in the four forms), `is_empty`, `close` |
//! | `JoinableQueue()`, `task_done()`, `join()` | [`JoinableQueue`], [`JoinableQueue::task_done`], [`JoinableQueue::join`] (also `try_join`, `join_timeout`, `join_deadline`: [`Timeout`]) | `task_done()` counts against items *taken*, not put: one for an item still queued is an error (Python accepts it and lets `join()` return early); past that, as Python's `ValueError` |
//! | `Lock()`; `with lock:` | [`Lock::new`]; `let _g = lock.lock()` | guard releases on scope exit, even by panic; `lock()`'s only error is [`OwnerDied`]`(guard)` — a dead holder, instead of a deadlock |
//! | `lock.acquire(False)` / `acquire(timeout=t)` | [`Lock::try_lock`] / [`Lock::lock_timeout`] (or [`Lock::lock_deadline`]) | `TryLockError::WouldBlock` / `LockTimeoutError::Timeout`; Python's `True` is `is_ok()` |
//! | `RLock()` | [`RLock::new`], [`RLock::lock`] | re-entrant per thread; [`RLock::release`] by a non-owner is an error |
//! | `Semaphore(n)`, `BoundedSemaphore(n)` | [`Semaphore::new`], [`BoundedSemaphore::new`] | `acquire` returns a guard; `try_acquire` ([`WouldBlock`]), `acquire_timeout` ([`Timeout`]), `release`, `value()`; permits of killed guard holders come back |
//! | `Event()`: `set`, `clear`, `is_set`, `wait()`, `wait(timeout)` | [`Event`]: `set`, `clear`, `is_set`, `wait()`, `wait_timeout(t).is_ok()` | `wait_timeout` says [`Timeout`] where Python returns `False`; futex on a sequence word |
//! | `Condition(lock)`: `wait`, `wait(t)`, `wait_for(pred, t)`, `notify(n)`, `notify_all` | [`Condition::with_lock`] / [`Condition::new`] (RLock); on the guard from [`Condition::lock`]: `wait`, `wait_timeout(t).is_ok()`, `wait_for_timeout(pred, t)`, `notify`, `notify_all` | the timed waits say `WaitTimeoutError::Timeout` where Python returns `False`; no `pthread_cond_t` |
//! | `Barrier(n, action, timeout)`: `wait`, `abort`, `reset`, `broken` | [`Barrier::new`] / [`Barrier::with_action`]: `wait`, `wait_timeout`, `try_wait`, `abort`, `reset`, `is_broken` | a party killed inside breaks it: [`BrokenBarrier`], no hang; one that runs out breaks it too (as in Python) and gets `BarrierTimeoutError::Timeout` |
//! | `Value('d', 1.5)`, `v.value`, `with v.get_lock(): v.value += 1` | [`Value::new`]`(1.5f64)`, [`Value::get`]/[`Value::set`], `*v.lock()? += 1` ([`Value::lock`]) | `T` checked at compile time (`ShmSafe`); the guard derefs to `T`; atomics via [`Value::atomic`] |
//! | `Array('i', [1, 2])`, `a[i]`, `a[:]`, `with a.get_lock(): a[i] = x` | [`Array::from_slice`], [`Array::get`]/[`Array::set`], [`Array::to_vec`], `a.lock()?[i] = x` ([`Array::lock`]) | fixed length, own lock; the guard derefs to `[T]`; no `a[i]` without a guard (see [`Array`]) |
//! | `Pipe()` / `Pipe(duplex=False)` | [`pipe()`]`(true)` / [`pipe()`]`(false)` | `(receive-only, send-only)` as in Python; wrong-way use is [`RecvError::SendOnly`] / [`SendError::ReceiveOnly`] |
//! | `conn.send(obj)` / `conn.recv()` | [`Connection::send`]`(&v)` / [`Connection::recv`]`::<T>()` | serde + postcard ([`pipe_with`] for another codec); handles inside (a `Connection`, `Queue`, `Lock`...) travel with their fds; a message of another type is an [`ErrorKind::Codec`] error naming both types, never a wrong value (`send(&"hi")` is received as a `String`: borrowed and owned forms agree; see [`codec::Codec`]) |
//! | `send_bytes(buf, offset, size)` | [`Connection::send_bytes`], [`Connection::send_bytes_range`] | range checked; 0 bytes is a message; any size (64 MiB tested) |
//! | `recv_bytes()` / `recv_bytes(maxlength)` | [`Connection::recv_bytes`] / [`Connection::recv_bytes_max`] | too long: [`RecvError::TooLong`] and, unlike Python, the connection stays usable |
//! | `recv_bytes_into(buf, offset)`, `BufferTooShort` | [`Connection::recv_bytes_into`], [`RecvError::BufferTooShort`]`(whole)` | the error carries the whole message |
//! | `EOFError` / `OSError` (closed) / `BrokenPipeError` | [`RecvError::Eof`] / [`RecvError::Closed`] / [`SendError::Disconnected`] | EOF once every copy of the peer end is closed, in every process |
//! | — | [`Connection::try_recv`], [`Connection::recv_timeout`], [`Connection::send_timeout`] (and `_deadline`, `_bytes` forms) | Python has no timed `recv`/`send`; a timed send that runs out delivers nothing and the connection stays usable |
//! | `conn.poll()` / `conn.poll(t)` / `conn.poll(None)`, `fileno()`, `close()` | [`Connection::try_poll`]`().is_ok()` / [`Connection::poll_timeout`]`(t).is_ok()` / [`Connection::poll`]`()`, `AsFd`/`AsRawFd`/[`Connection::try_as_fd`], [`Connection::close`], [`Connection::is_closed`] | `poll` never consumes; the fd turns readable whenever a message is waiting, for poll/epoll/mio/tokio, once asked for ([readiness](mod@pipe#readiness)) |
//! | one end used by many processes | the same, safe | messages never interleave or split (per-end robust locks); a SIGKILLed sender or receiver never leaves a torn message |
//! | `multiprocessing.connection.wait(objs)` / `wait(objs, t)` | [`wait`](fn@wait)`(&[&a, &b])` / [`wait_timeout`]`(&[&a, &b], t)` | returns the indices of ready objects (never empty: Python's `[]` is `Err(Timeout)`); accepts [`Process`] sentinels via [`Waitable`]; works beside a raw poller on the same end |
//! | `reduction.send_handle` / `recv_handle` | [`pipe::Fd`] inside any sent value | plus [`Connection::try_clone`] for another copy of an end |
//! | `connection.Listener(address, authkey=k)`, `l.accept()` | [`Listener::bind`]`(address)?.with_authkey(k)`, [`Listener::accept`] (also `accept_timeout`, `accept_deadline`) | a Unix path, an abstract name (`"\0name"`) or TCP `(ip, port)`; CPython's wire format and handshake (3.11's HMAC-MD5, 3.12's HMAC-SHA256): Python clients connect; the handshake is bounded (30 s) |
//! | `connection.Client(address, authkey=k)` | [`Client::new`]`(address).authkey(k).connect()` | the same [`Connection`], socket-only ([`Connection::is_socket`]): `send_bytes`/`recv_bytes` talk to Python, `send`/`recv` use our codec (not pickle); no handles inside; a peer's huge length is an error, not an allocation |
//! | `AuthenticationError` | [`ErrorKind::AuthenticationFailed`] | the listener goes on after a refused client |
//! | `shared_memory.SharedMemory(create=True, size=n)` / `SharedMemory(name=nm, create=True, size=n)` / `SharedMemory(nm)` | [`SharedMemory::create_unique`]`(n)` / [`SharedMemory::create_named`]`(nm, n)` / [`SharedMemory::open`]`(nm)`; anonymous: [`SharedMemory::create`]`(n)` | the same `/dev/shm` names (`psm_…`): Python opens ours and we open Python's; a taken name is [`ErrorKind::AlreadyExists`], a missing one [`ErrorKind::NotFound`]; anonymous blocks leave nothing after a crash |
//! | `shm.buf[a:b]`, `shm.buf[a:b] = data`, `shm.size`, `shm.name` | [`SharedMemory::read_at`], [`SharedMemory::write_at`] (atomic copies, bounds-checked), `unsafe` [`SharedMemory::as_slice`]; `size()`, `name()` | handles travel to children (fork, Spawn, `send`) as fds |
//! | `shm.close()`, `shm.unlink()` | drop, [`SharedMemory::unlink`]; a crashed run's name: [`SharedMemory::unlink_name`] | a named block lives until unlinked, as in Python; `unlink` leaves a block created anew under the same name alone |
//! | `np.ndarray(n, dtype, buffer=shm.buf)`, `shm.buf.cast('d')` | [`SharedMemory::view`]`::<f64>()`, [`SharedMemory::view_at`] ([`shm::View`]) | in place, no copy; each element an atomic load or store; [`shm::View::atomics`] for `fetch_add` |
//! | `shared_memory.ShareableList([1, 2.5, "s", b"b", None])`, `ShareableList(name=nm)`, `sl[i]`, `sl[i] = v` | [`shm::ShareableList::create`]`(&[Item::Int(1), ...])`, [`shm::ShareableList::open`]`(nm)`, `get(i)`, `set(i, v)` ([`shm::Item`]) | Python's layout: each side reads and writes the other's lists; every count, offset and format read is checked |
//! | a `BaseManager` serving a queue or lock to unrelated processes of one machine | [`Queue::create_named`]`(n)` / [`Queue::open_named`]`(n)` / [`Queue::open_or_create`]`(n)`, the same for [`JoinableQueue`], [`SimpleQueue`], [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`] (lock included), [`Barrier`], [`Value`], [`Array`], [`sync::Dict`], [`sync::List`], [`sync::Namespace`] | no server: `/dev/shm/mp.<n>`; kind, item type and version checked on open; `unlink()`, or [`shm::unlink_named`] for a crashed run's name (`docs/names.md`) |
//! | `Manager().dict()`: `d[k] = v`, `d.get(k)`, `d.pop(k)`, `d.items()`, a lock around `d[k] += 1` | [`sync::Dict`]: `insert(&k, &v)`, `get(&k)`, `remove(&k)`, `items()`, `update(&k, \|v\| ..)` | no manager process: a table in shared memory behind a robust lock, fixed capacity ([`sync::Dict::with_capacity`]); a writer killed mid-update leaves the entry as it was |
//! | `Manager().list()`: `l.append(x)`, `l.pop()`, `l[i]`, `l[i] = x`, `l.insert(i, x)`, `l.pop(i)` / `del l[i]`, `l[:]` | [`sync::List`]: `push(&x)`, `pop()`, `get(i)`, `set(i, &x)`, `insert(i, &x)`, `remove(i)`, `update(i, f)`, `to_vec()` | the same mechanism, fixed capacity ([`sync::List::with_capacity`]); `insert` past the end is an error (Python appends); a writer killed mid-insert or mid-remove leaves the change finished by the next caller, nothing lost or doubled |
//! | `Manager().Namespace()`: `ns.x = 1`, `ns.x` | [`sync::Namespace`]`<T>` (a serde struct): `set(&t)`, `get()`, `update(f)` | one typed value replaced whole or updated atomically; a one-item `List` underneath |
//! | `Pool(n)`, `Pool(n, initializer, initargs, maxtasksperchild)` | [`Pool::new`]`(n)`, [`Pool::builder`]`().initializer(f, args).maxtasksperchild(m).retries(r)` ([`PoolBuilder`]) | `Pool(0)` is [`ErrorKind::InvalidArgument`]; default = number of CPUs; a `Pool` is a cheap `Clone` handle |
//! | `pool.map(f, xs)`, `starmap`, `map_async`, `starmap_async` | [`Pool::map`]`(f, xs)`, [`Pool::starmap`], [`Pool::map_async`], [`Pool::starmap_async`] | `f: fn(A) -> R` with serde types (a function, or a closure that captures nothing); starmap destructures a tuple |
//! | `chunksize=n` (any call) | [`Pool::with_chunksize`]`(n).map(f, xs)`; a pool's default: [`PoolBuilder::chunksize`] | a setting of the handle, not an argument: each call exists once |
//! | `pool.imap(f, xs)`, `imap_unordered`; `it.next(timeout)` | [`Pool::imap`], [`Pool::imap_unordered`]; [`Imap::next_timeout`] | lazy input, one `Result` per task; also `try_next`, `next_deadline`; the iterator keeps its pool alive |
//! | `pool.apply(f, args)`, `apply_async` | [`Pool::apply`], [`Pool::apply_async`] | |
//! | `res.get(timeout)`, `wait(timeout)`, `ready()`, `successful()`; `TimeoutError` | [`AsyncResult`]: `get`, `try_get`, `get_timeout`, `get_deadline`, `wait`, `wait_timeout`, `wait_deadline`, `ready`, `successful` | timed out: [`pool::GetTimeoutError::Timeout`] |
//! | `apply_async(f, a, callback=cb, error_callback=ecb)` (also `map_async`, ...) | `pool.apply_async(f, a)?.callback(cb).error_callback(ecb)` ([`AsyncResult::callback`]) | run once, in this process, on the pool's callback thread; `join` waits for them |
//! | `pool.map(partial(f, cfg), xs)`, a lambda over `cfg` | [`Pool::with_context`]`(&cfg)?.map(f, xs)` with `fn f(cfg: &Cfg, x: X) -> R` | both start methods; `cfg` is serialized once and sent once to each worker |
//! | a lambda capturing anything (needs fork) | [`PoolBuilder::build_with`]`(closure)` → [`ClosurePool`] | closure fixed at creation, Fork only; the same calls as `Pool` |
//! | a task's exception, re-raised by `get` | [`ErrorKind::ChildPanicked`], with the panic message and where it happened | the workers print nothing (no interleaved backtraces) |
//! | `pool.close()`, `join()`, `terminate()`, `with Pool() as p:` | [`Pool::close`], [`Pool::join`], [`Pool::terminate`]; dropping the last handle terminates | a worker killed mid-task fails (or retries) that task and is replaced: no hang (CPython issue 66587) |
//!
//! ## Every blocking call and its four forms
//!
//! Every call that can wait comes as `op()` (waits as long as it takes), `try_op()` (never
//! waits), `op_timeout(Duration)` and `op_deadline(Instant)`. Any `Duration` is accepted, up
//! to `Duration::MAX` ("forever"). The results have one shape: `op()` returns what it can
//! fail with; `try_op()` adds one "not now" variant — `WouldBlock` for locks, semaphores,
//! barriers and waits, `Empty`/`Full` for queues and connections; the timed forms add
//! `Timeout` instead, and their errors have `is_timeout()`. Puts hand the item back in every
//! error (`Full(item)`, `Timeout(item)`); sends borrow it, so theirs carry nothing. Where
//! running out is a timed call's only failure, its error is the unit [`Timeout`] (and a
//! `try_` call's is [`WouldBlock`]). A lock's `lock()` can only say [`OwnerDied`] (with the
//! guard: the lock is held). The catch-all variant is always `Failed(Error)` (a put's:
//! `Failed(item, Error)`).
//!
//! | blocking call | `try_` (never waits) | `_timeout(Duration)`, `_deadline(Instant)` | "not now" / "ran out" |
//! |---|---|---|---|
//! | [`Lock::lock`], [`RLock::lock`], [`Condition::lock`], [`Value::lock`], [`Array::lock`] → `Result<G, OwnerDied<G>>` | `try_lock` | `lock_timeout`, `lock_deadline` | [`sync::TryLockError::WouldBlock`] / [`sync::LockTimeoutError::Timeout`] |
//! | [`Semaphore::acquire`], [`BoundedSemaphore::acquire`] → guard | `try_acquire` | `acquire_timeout`, `acquire_deadline` | [`WouldBlock`] / [`Timeout`] |
//! | [`Event::wait`] | `try_wait` (= `is_set`) | `wait_timeout`, `wait_deadline` | [`WouldBlock`] / [`Timeout`]; Python's `e.wait(t)` is `e.wait_timeout(t).is_ok()` |
//! | [`sync::ConditionGuard::wait`] → `Result<(), OwnerDied>` | — (a notification reaches only a waiter that waits) | `wait_timeout`, `wait_deadline` | [`sync::WaitTimeoutError::Timeout`]; Python's `c.wait(t)` is `g.wait_timeout(t).is_ok()` |
//! | [`sync::ConditionGuard::wait_for`]`(pred)` | — (`pred()` itself, under the lock) | `wait_for_timeout`, `wait_for_deadline` | [`sync::WaitTimeoutError::Timeout`] |
//! | [`Barrier::wait`] → `Result<u32, BrokenBarrier>` | `try_wait` (passes only as the last party) | `wait_timeout`, `wait_deadline` | [`sync::TryBarrierError::WouldBlock`] / [`sync::BarrierTimeoutError::Timeout`] (the barrier breaks, as in Python) |
//! | [`Queue::put`], [`Queue::put_ref`], [`Queue::put_bytes`], [`Queue::put_many`]; [`SimpleQueue::put`] | `try_put`, `try_put_ref`, `try_put_bytes`, `try_put_many` | `put_timeout`, `put_deadline`, `put_ref_timeout`, ... | [`queue::TryPutError::Full`]`(item)` / [`queue::PutTimeoutError::Timeout`]`(item)` |
//! | [`Queue::get`], [`Queue::get_into`], [`Queue::get_bytes`], [`Queue::get_bytes_into`], [`Queue::get_many`]`(n)`; [`SimpleQueue::get`] | `try_get`, `try_get_into`, `try_get_bytes`, ... | `get_timeout`, `get_deadline`, `get_many_timeout`, ... | [`queue::TryGetError::Empty`] / [`queue::GetTimeoutError::Timeout`] |
//! | [`JoinableQueue::join`] | `try_join` | `join_timeout`, `join_deadline` | [`WouldBlock`] / [`Timeout`] |
//! | [`Connection::send`], [`Connection::send_bytes`] | `try_send`, `try_send_bytes` | `send_timeout`, `send_deadline`, `send_bytes_timeout`, `send_bytes_deadline` | [`TrySendError::Full`] / [`SendTimeoutError::Timeout`] |
//! | [`Connection::recv`], [`Connection::recv_bytes`] | `try_recv`, `try_recv_bytes` | `recv_timeout`, `recv_deadline`, `recv_bytes_timeout`, `recv_bytes_deadline` | [`TryRecvError::Empty`] / [`RecvTimeoutError::Timeout`] |
//! | [`Connection::poll`], [`wait`](fn@wait)`(&objs)` | [`Connection::try_poll`], [`try_wait`] | `poll_timeout`, `poll_deadline`, [`wait_timeout`], [`wait_deadline`] | [`pipe::TryWaitError::WouldBlock`] / [`pipe::WaitTimeoutError::Timeout`] |
//! | [`AsyncResult::get`] | `try_get` | `get_timeout`, `get_deadline` | [`pool::TryGetError::WouldBlock`] / [`pool::GetTimeoutError::Timeout`] |
//! | [`AsyncResult::wait`] | `ready()` | `wait_timeout`, `wait_deadline` | `false` / [`Timeout`] |
//! | `Imap::next` (the iterator) | [`Imap::try_next`] | [`Imap::next_timeout`], [`Imap::next_deadline`] | [`pool::TryGetError::WouldBlock`] / [`pool::GetTimeoutError::Timeout`] |
//! | [`Process::join`] → `Result<R, JoinError>` | [`Process::try_join`] | [`Process::join_timeout`], [`Process::join_deadline`] | [`process::TryJoinError::WouldBlock`] / [`process::JoinTimeoutError::Timeout`] |
//! | [`Pool::join`] (after `close`: the workers exit, the callbacks run) | [`Pool::try_join`] | [`Pool::join_timeout`], [`Pool::join_deadline`] | [`pool::TryJoinError::WouldBlock`] / [`pool::JoinTimeoutError::Timeout`] |
//!
//! Python's own spellings [`Connection::recv_bytes_max`], [`Connection::recv_bytes_into`] and
//! [`Connection::send_bytes_range`] come in the plain form only (bound the wait with
//! `poll_timeout` first, or slice the buffer for `send_bytes_timeout`).
//!
//! ## Past one machine
//!
//! With the cargo feature `remote`, `multiproc::remote` carries [`Queue`], [`JoinableQueue`],
//! [`Lock`], [`Semaphore`] and [`Event`] over a Redis-protocol server (Redis ≥ 6.2, Valkey)
//! for processes on many machines — where Python users reach for a
//! `multiprocessing.managers.BaseManager` serving a queue: `remote::Queue::open(url, name)`,
//! the same calls in the same four forms, the same queue errors, and written guarantees
//! (at-least-once `JoinableQueue` across consumer crashes, a lease lock with a fencing token,
//! a `Disconnected` error instead of a hang when the server goes). The traits of [`api`] are
//! implemented by the local and the remote types alike, so generic code runs on either.
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
pub mod api;
pub mod codec;
pub mod error;
mod fork;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
mod handle;
mod kinds;
pub mod pipe;
pub mod pool;
pub mod process;
pub mod queue;
#[cfg(feature = "remote")]
pub mod remote;
mod ring;
pub mod shm;
pub mod sync;
mod sys;
mod wait;
pub use codec::{from_bytes_with_fds, to_bytes_with_fds};
pub use error::{Error, ErrorKind, OwnerDied, Result, Timeout, WouldBlock};
pub use pipe::{
    pipe, pipe_with, Client, Connection, Listener, RecvError, RecvTimeoutError, SendError,
    SendTimeoutError, TryRecvError, TrySendError,
};
pub use pool::{AsyncResult, ClosurePool, Imap, Pool, PoolBuilder};
pub use process::{
    active_children, cpu_count, current_process, parent_process, Process, ProcessBuilder,
    StartMethod,
};
pub use queue::{JoinableQueue, Queue, SimpleQueue};
pub use shm::SharedMemory;
pub use sync::{
    Array, Barrier, BoundedSemaphore, BrokenBarrier, Condition, Event, Lock, RLock, Semaphore,
    Value,
};
pub use wait::{try_wait, wait, wait_deadline, wait_timeout, Waitable};
