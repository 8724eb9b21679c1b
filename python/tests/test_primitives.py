"""Each primitive between real processes, under fork and spawn. Every blocking call has a
timeout, every child is joined with one, so a bug fails a test instead of hanging it."""

import array
import os
import queue
import threading
import time

import multiproc
import pytest
from multiprocessing.reduction import ForkingPickler

T = 10  # seconds: the bound on every wait that should succeed


def start(ctx, target, *args):
    p = ctx.Process(target=target, args=args, daemon=True)
    p.start()
    return p


def finish(p):
    p.join(T)
    if p.exitcode is None:
        p.kill()
        p.join(T)
        pytest.fail("child did not finish in time")
    assert p.exitcode == 0


# -- children (module level, so that spawn can import them) ---------------------------------

def hold_lock_then_report(lock, held, release, result):
    assert lock.acquire(timeout=T)
    held.set()
    assert release.wait(T)
    lock.release()
    result.put("released")


def rlock_child(rlock, q):
    # The parent holds it: this thread is not the owner.
    assert not rlock.acquire(timeout=0.05)
    try:
        rlock.release()
    except AssertionError:
        q.put("not owner")
    assert rlock.acquire(timeout=T)
    assert rlock.acquire(timeout=T)
    rlock.release()
    rlock.release()
    q.put("ok")


def semaphore_child(sem, q):
    for _ in range(3):
        assert sem.acquire(timeout=T)
        q.put("took")


def event_child(ev, back):
    assert ev.wait(T)
    back.set()


def condition_child(cond, flag, q):
    with cond:
        assert cond.wait_for(lambda: flag.is_set(), T)
    q.put("woken")


def condition_notifier(cond, flag):
    time.sleep(0.1)
    with cond:
        flag.set()
        cond.notify_all()


def value_child(counter, arr, n):
    for _ in range(n):
        with counter.get_lock():
            counter.value += 1
    with arr.get_lock():
        for i in range(len(arr)):
            arr[i] = arr[i] * 2


def raw_child(raw_value, raw_array, done):
    raw_value.value = 2.5
    raw_array[:] = b"child"
    done.set()


def barrier_child(barrier, q):
    q.put(barrier.wait(T))


def queue_producer(q, n):
    for i in range(n):
        q.put({"i": i, "pid": os.getpid()})


def joinable_consumer(q, n):
    for _ in range(n):
        q.get(timeout=T)
        q.task_done()


def simple_echo(inq, outq):
    outq.put(inq.get() * 2)


def pipe_echo(conn):
    while True:
        msg = conn.recv_bytes()
        if msg == b"STOP":
            break
        conn.send_bytes(msg)
    conn.send({"done": True})
    conn.close()


# -- tests ----------------------------------------------------------------------------------

def test_lock(ctx):
    lock, held, release = ctx.Lock(), ctx.Event(), ctx.Event()
    result = ctx.Queue()
    p = start(ctx, hold_lock_then_report, lock, held, release, result)
    assert held.wait(T)
    assert not lock.acquire(False)
    t0 = time.monotonic()
    assert not lock.acquire(timeout=0.2)
    assert time.monotonic() - t0 >= 0.15
    release.set()
    assert lock.acquire(timeout=T)
    assert not lock.owner_died
    assert result.get(timeout=T) == "released"
    lock.release()
    with pytest.raises(ValueError):
        lock.release()
    finish(p)


def test_rlock(ctx):
    rlock, q = ctx.RLock(), ctx.Queue()
    assert rlock.acquire() and rlock.acquire()
    assert rlock._count() == 2
    p = start(ctx, rlock_child, rlock, q)
    assert q.get(timeout=T) == "not owner"
    rlock.release()
    rlock.release()
    assert q.get(timeout=T) == "ok"
    finish(p)
    with pytest.raises(AssertionError):
        rlock.release()


def test_semaphore(ctx):
    sem, q = ctx.Semaphore(1), ctx.Queue()
    p = start(ctx, semaphore_child, sem, q)
    assert q.get(timeout=T) == "took"
    sem.release()
    assert q.get(timeout=T) == "took"
    sem.release()
    assert q.get(timeout=T) == "took"
    finish(p)
    assert sem.get_value() == 0


def test_bounded_semaphore(ctx):
    sem = ctx.BoundedSemaphore(2)
    with pytest.raises(ValueError):
        sem.release()
    assert sem.acquire(timeout=T)
    sem.release()
    assert sem.get_value() == 2


def test_event(ctx):
    ev, back = ctx.Event(), ctx.Event()
    p = start(ctx, event_child, ev, back)
    assert not back.wait(0.1)
    ev.set()
    assert back.wait(T)
    finish(p)
    ev.clear()
    assert not ev.is_set()


def test_condition(ctx):
    cond, flag, q = ctx.Condition(), ctx.Event(), ctx.Queue()
    waiter = start(ctx, condition_child, cond, flag, q)
    notifier = start(ctx, condition_notifier, cond, flag)
    assert q.get(timeout=T) == "woken"
    finish(waiter)
    finish(notifier)


def test_condition_is_ours(ctx):
    cond = ctx.Condition()
    assert isinstance(cond, multiproc.Condition)
    assert isinstance(cond._lock, multiproc.RLock)
    with pytest.raises(AssertionError, match="must acquire"):
        cond.wait(0.01)
    with pytest.raises(AssertionError):
        cond.notify()
    with cond:
        with cond:  # an RLock: wait releases both levels and takes both back
            t0 = time.monotonic()
            assert not cond.wait(0.1)
            assert time.monotonic() - t0 >= 0.09
            assert cond._lock._count() == 2
        assert cond.wait_for(lambda: 42, 0) == 42
        assert not cond.wait_for(lambda: False, 0.05)
    plain = ctx.Condition(ctx.Lock())
    with plain:
        assert not plain.wait(0)
        plain.notify_all()
    assert cond._sleeping_count.get_value() == 0
    assert cond._wait_semaphore.get_value() == 0


def test_value_and_array(ctx):
    counter = ctx.Value("i", 0)
    arr = ctx.Array("d", [1.0, 2.0, 3.0])
    assert isinstance(counter.get_lock(), multiproc.RLock)
    assert isinstance(counter.get_obj()._wrapper, multiproc.sharedctypes.SharedBuffer)
    ps = [start(ctx, value_child, counter, arr, 500) for _ in range(2)]
    for p in ps:
        finish(p)
    assert counter.value == 1000
    assert arr[:] == [4.0, 8.0, 12.0]
    assert ctx.Value("d", lock=False).value == 0.0
    assert list(ctx.Array("q", 4)) == [0, 0, 0, 0]
    with pytest.raises(AttributeError):
        ctx.Value("i", lock=object())


def test_raw_value_and_array(ctx):
    raw_value, raw_array, done = ctx.RawValue("d", 1.0), ctx.RawArray("c", b"xxxxx"), ctx.Event()
    p = start(ctx, raw_child, raw_value, raw_array, done)
    assert done.wait(T)
    finish(p)
    assert raw_value.value == 2.5
    assert raw_array.raw == b"child"
    copied = multiproc.sharedctypes.copy(raw_value)
    raw_value.value = 0.0
    assert copied.value == 2.5


def test_barrier(ctx):
    barrier, q = ctx.Barrier(3), ctx.Queue()
    ps = [start(ctx, barrier_child, barrier, q) for _ in range(2)]
    mine = barrier.wait(T)
    got = sorted([mine, q.get(timeout=T), q.get(timeout=T)])
    assert got == [0, 1, 2]
    for p in ps:
        finish(p)


def test_barrier_timeout_breaks():
    b = multiproc.get_context("fork").Barrier(2)
    with pytest.raises(threading.BrokenBarrierError):
        b.wait(0.05)
    assert b.broken
    b.reset()
    assert not b.broken


def test_queue(ctx):
    q = ctx.Queue()
    ps = [start(ctx, queue_producer, q, 200) for _ in range(2)]
    got = [q.get(timeout=T) for _ in range(400)]
    for p in ps:
        finish(p)
    by_pid = {}
    for item in got:
        by_pid.setdefault(item["pid"], []).append(item["i"])
    assert sorted(by_pid) == sorted(p.pid for p in ps)
    for seq in by_pid.values():
        assert seq == list(range(200))  # per producer, in order
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)


def test_bounded_queue():
    q = multiproc.get_context("fork").Queue(2)
    q.put(1)
    q.put(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.05)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    assert q.get_nowait() == 1


def test_queue_close_is_local(ctx):
    q = ctx.Queue()
    q.close()
    with pytest.raises(ValueError, match="is closed"):
        q.put(1)
    with pytest.raises(ValueError, match="is closed"):
        q.get()


def test_queue_shutdown_ends_every_consumer():
    q = multiproc.get_context("fork").Queue()
    q.put("last")
    q.shutdown()
    with pytest.raises(multiproc.ShutDown):
        q.put("more")
    assert q.get(timeout=T) == "last"
    with pytest.raises(multiproc.ShutDown):
        q.get(timeout=T)


def test_joinable_queue(ctx):
    q = ctx.JoinableQueue()
    for i in range(20):
        q.put(i)
    p = start(ctx, joinable_consumer, q, 20)
    q.join()
    finish(p)
    with pytest.raises(ValueError):
        q.task_done()


def test_simple_queue(ctx):
    inq, outq = ctx.SimpleQueue(), ctx.SimpleQueue()
    p = start(ctx, simple_echo, inq, outq)
    inq.put(21)
    assert outq.get() == 42
    finish(p)
    assert outq.empty()


def test_pipe(ctx):
    a, b = ctx.Pipe()
    p = start(ctx, pipe_echo, b)
    b.close()
    for msg in (b"", b"x", b"y" * 100_000):
        a.send_bytes(msg)
        assert a.poll(T)
        assert a.recv_bytes() == msg
    big = os.urandom(16 * 1024 * 1024)
    a.send_bytes(big)
    assert a.poll(T)
    assert a.recv_bytes() == big
    a.send_bytes(b"STOP")
    assert a.poll(T)
    assert a.recv() == {"done": True}
    finish(p)
    assert a.poll(T)
    with pytest.raises(EOFError):
        a.recv_bytes()


class Registered:
    """Pickled by a reducer registered with ForkingPickler (after the first message)."""

    def __init__(self, v):
        self.v = v


def rebuild_registered(v):
    return Registered(v + 1000)


class PutsWhilePickled:
    """Its pickling puts a message on a queue (a dump inside a dump)."""

    def __init__(self, q):
        self.q = q

    def __reduce__(self):
        self.q.put(("inner", b"z" * 200_000))
        return (str, ("outer",))


def test_messages_are_pickled_as_forking_pickler_does():
    from multiproc.queues import _dumps

    q = multiproc.get_context("fork").Queue()
    a, b = multiproc.Pipe()
    q.put(1)
    assert q.get(timeout=T) == 1
    # The same bytes as ForkingPickler's, small and large (several writes of the pickler),
    # a bytearray too; the memo is fresh for every message.
    shared = ["x"]
    for obj in ((12345, "hello"), b"y" * 300_000, bytearray(b"w" * 100_000), [shared, shared]):
        assert _dumps(obj) == bytes(ForkingPickler.dumps(obj))
        q.put(obj)
        assert q.get(timeout=T) == obj
        a.send(obj)
        assert b.recv() == obj
    # A reducer registered after the first message is used from then on.
    ForkingPickler.register(Registered, lambda r: (rebuild_registered, (r.v,)))
    q.put(Registered(1))
    assert q.get(timeout=T).v == 1001
    a.send(Registered(2))
    assert b.recv().v == 1002
    # A message whose pickling puts another one: both arrive whole (the inner one first).
    q.put(PutsWhilePickled(q))
    assert q.get(timeout=T) == ("inner", b"z" * 200_000)
    assert q.get(timeout=T) == "outer"
    # Threads putting at once.
    def put_many(k):
        for i in range(500):
            q.put((k, i, "v" * (i % 50)))
    ts = [threading.Thread(target=put_many, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    got = [q.get(timeout=T) for _ in range(2000)]
    for t in ts:
        t.join(T)
    for k in range(4):
        assert [m for m in got if m[0] == k] == [(k, i, "v" * (i % 50)) for i in range(500)]


def test_pipe_directions_and_buffers():
    r, w = multiproc.Pipe(duplex=False)
    with pytest.raises(OSError):
        r.send(1)
    with pytest.raises(OSError):
        w.recv()
    w.send_bytes(b"abcdefgh", 2, 3)
    buf = bytearray(2)
    with pytest.raises(multiproc.connection.BufferTooShort) as e:
        r.recv_bytes_into(buf)
    assert e.value.args == (b"cde",)
    w.send_bytes(array.array("i", [1, 2]))
    out = array.array("i", [0, 0, 0])
    assert r.recv_bytes_into(out) == 8
    assert list(out) == [1, 2, 0]
    r.close()
    with pytest.raises(OSError, match="closed"):
        r.recv()


def test_locks_refuse_pickling_outside_process_start():
    ctx = multiproc.get_context("spawn")
    for obj in (ctx.Lock(), ctx.RLock(), ctx.Semaphore(), ctx.Event(), ctx.Queue(),
                ctx.Condition(), ctx.Value("i"), ctx.RawArray("i", 3)):
        with pytest.raises(RuntimeError, match="should only be shared between processes"
                                               " through inheritance"):
            ForkingPickler.dumps(obj)  # what a queue or pipe would use


def test_bad_arguments():
    ctx = multiproc.get_context("fork")
    with pytest.raises(ValueError):
        ctx.Semaphore(-1)
    with pytest.raises(ValueError):
        ctx.Barrier(0)
    with pytest.raises(ValueError):
        ctx.Lock().acquire(timeout=float("nan"))
    with pytest.raises(ValueError):
        multiproc.get_context("nope")
    with pytest.raises(ValueError):
        multiproc._native.Queue(kind="ring")
    with pytest.raises(TypeError):
        ctx.Lock().acquire(timeout="1")


def test_contexts_stay_ours():
    ctx = multiproc.get_context("spawn")
    assert ctx.get_context() is ctx
    assert isinstance(ctx.get_context("fork"), multiproc.ForkContext)
    assert isinstance(ctx.get_context("forkserver"), multiproc.ForkServerContext)
    assert isinstance(ctx.Lock(), multiproc.Lock)


PLAIN_PROGRAM = """
import multiprocessing as mp

def work(q, lock):
    with lock:
        q.put(type(lock).__module__)

if __name__ == "__main__":
    mp.set_start_method("{method}")
    q, lock = mp.Queue(), mp.Lock()
    p = mp.Process(target=work, args=(q, lock))
    p.start()
    print(type(q).__module__, q.get(timeout=10), flush=True)
    p.join(10)
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_python_m_multiproc_runs_plain_programs_on_ours(tmp_path, method):
    import subprocess
    import sys
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_PROGRAM.format(method=method))
    out = subprocess.run([sys.executable, "-m", "multiproc", str(script)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["multiproc.queues", "multiproc.synchronize"]


def square(x):
    return x * x


def test_cpython_pool_on_our_context(ctx):
    with ctx.Pool(2) as pool:
        assert pool.map(square, range(10)) == [x * x for x in range(10)]
        assert pool.apply_async(square, (7,)).get(T) == 49


def test_process_pool_executor_on_our_context(ctx):
    import concurrent.futures as cf
    with cf.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        assert list(ex.map(square, range(10), timeout=T * 3)) == [x * x for x in range(10)]


def put_later(q, go, obj):
    assert go.wait(T)
    time.sleep(0.05)
    q.put(obj)


def test_simple_queue_reader_works_with_connection_wait(ctx):
    # CPython code (concurrent.futures.process) waits on SimpleQueue._reader with
    # multiprocessing.connection.wait, then calls _reader.recv().
    from multiprocessing.connection import wait

    q = ctx.SimpleQueue()
    r = q._reader
    assert r is q._reader  # one object: `r in wait(...)` compares it
    assert wait([r], 0.05) == []
    assert not r.poll()
    go = ctx.Event()
    p = start(ctx, put_later, q, go, ("from", "child"))
    go.set()
    assert wait([r], T) == [r]
    assert r.poll()
    assert r.recv() == ("from", "child")
    finish(p)
    # Taking the last message does not leave the reader looking ready.
    assert wait([r], 0.05) == []
    assert not r.poll(0.05)
    q._writer.send(1)
    q.put(2)
    assert wait([r], T) == [r]
    assert q.get() == 1
    assert wait([r], T) == [r], "a message still waits"
    assert r.recv() == 2
    assert wait([r], 0.05) == []
    q._writer.send_bytes(ForkingPickler.dumps(3))
    assert r.poll(T) and r.recv_bytes() == bytes(ForkingPickler.dumps(3))
    r.close()
    with pytest.raises(OSError):
        r.fileno()
    # close() closes both ends, as CPython's: this process puts and gets no more.
    q.close()
    assert q._reader.closed and q._writer.closed
    with pytest.raises(OSError):
        q.put(1)
    with pytest.raises(OSError):
        q.get()


def die():
    os._exit(3)


def test_process_pool_executor_uses_our_simple_queue_and_sees_a_dead_worker(ctx):
    # Its result queue is ours (waited on through _reader with connection.wait, beside the
    # workers' sentinels): a worker that dies breaks the pool instead of hanging it.
    import concurrent.futures as cf
    from concurrent.futures.process import BrokenProcessPool

    ex = cf.ProcessPoolExecutor(2, mp_context=ctx)
    try:
        assert ex.submit(square, 7).result(timeout=T * 3) == 49
        assert isinstance(ex._result_queue, multiproc.queues.SimpleQueue)
        with pytest.raises(BrokenProcessPool):
            ex.submit(die).result(timeout=T * 3)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def test_simple_queue_ends_do_not_keep_it_alive():
    import gc
    import weakref

    gc.disable()
    try:
        q = multiproc.get_context("fork").SimpleQueue()
        r, w = q._reader, q._writer
        ref = weakref.ref(q)
        del q
        assert ref() is None, "freed without a garbage collection"
        with pytest.raises(OSError):
            r.fileno()
        with pytest.raises(OSError):
            w.send(1)
    finally:
        gc.enable()
