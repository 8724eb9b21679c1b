"""What CPython's primitives cannot do: survive a process SIGKILLed inside them; and the
fd budget (many locks, few fds)."""

import os
import signal
import time

import multiproc
import pytest

from test_primitives import T, finish, start


def hold_forever(lock, held):
    lock.acquire()
    held.set()
    time.sleep(60)


def wait_forever(cond, inside):
    with cond:
        inside.release()
        cond.wait()


def wait_and_report(cond, inside, q):
    with cond:
        inside.release()
        q.put(cond.wait(T))


def hold_value_forever(value, held):
    value.get_lock().acquire()
    value.value = 7
    held.set()
    time.sleep(60)


def consume_forever(q, inside):
    inside.set()
    q.get()  # blocks until killed


def test_lock_holder_killed(ctx):
    lock, held = ctx.Lock(), ctx.Event()
    p = start(ctx, hold_forever, lock, held)
    assert held.wait(T)
    assert not lock.acquire(timeout=0.1)
    os.kill(p.pid, signal.SIGKILL)
    p.join(T)
    assert lock.acquire(timeout=T)  # CPython's would wait forever
    assert lock.owner_died
    lock.release()
    assert lock.acquire(timeout=T)
    assert not lock.owner_died
    lock.release()


def test_rlock_holder_killed(ctx):
    lock, held = ctx.RLock(), ctx.Event()
    p = start(ctx, hold_forever, lock, held)
    assert held.wait(T)
    os.kill(p.pid, signal.SIGKILL)
    p.join(T)
    assert lock.acquire(timeout=T)
    assert lock.owner_died
    assert lock.acquire(timeout=T)  # re-entering keeps what the first level found
    assert lock.owner_died
    lock.release()
    lock.release()
    assert lock.acquire(timeout=T)  # a clean acquisition says so
    assert not lock.owner_died
    lock.release()


def test_consumer_killed_inside_get(ctx):
    q, inside = ctx.Queue(), ctx.Event()
    p = start(ctx, consume_forever, q, inside)
    assert inside.wait(T)
    time.sleep(0.2)  # let it block inside get
    os.kill(p.pid, signal.SIGKILL)
    p.join(T)
    for i in range(100):
        q.put(i)
    assert [q.get(timeout=T) for _ in range(100)] == list(range(100))


def count_locks(locks, q):
    for lock in locks:
        assert lock.acquire(timeout=T)
        lock.release()
    q.put((len(locks), len(os.listdir("/proc/self/fd"))))


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_30000_locks_few_fds():
    before = open_fds()
    locks = [multiproc.Lock() for _ in range(30_000)]
    assert open_fds() - before < 100
    assert all(lock.acquire(False) for lock in locks[::1000])


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_300_locks_to_a_child(method):
    ctx = multiproc.get_context(method)
    locks = [ctx.Lock() for _ in range(300)]
    q = ctx.Queue()
    p = start(ctx, count_locks, locks, q)
    n, fds = q.get(timeout=60)
    finish(p)
    assert n == 300
    assert fds < 100  # a few arena segments, not one fd per lock


def test_condition_waiter_killed(ctx):
    """notify(1) that would pick a waiter SIGKILLed inside wait goes to a live one."""
    cond, inside, q = ctx.Condition(), ctx.Semaphore(0), ctx.Queue()
    victim = start(ctx, wait_forever, cond, inside)
    assert inside.acquire(timeout=T)
    survivor = start(ctx, wait_and_report, cond, inside, q)
    assert inside.acquire(timeout=T)
    with cond:  # both released the lock inside wait: both are waiting
        assert cond._waiting() == 2
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(T)
    with cond:
        cond.notify(1)
    assert q.get(timeout=T) is True
    finish(survivor)


def test_value_lock_holder_killed(ctx):
    value, held = ctx.Value("i", 0), ctx.Event()
    p = start(ctx, hold_value_forever, value, held)
    assert held.wait(T)
    assert not value.get_lock().acquire(timeout=0.1)
    os.kill(p.pid, signal.SIGKILL)
    p.join(T)
    lock = value.get_lock()
    assert lock.acquire(timeout=T)
    assert lock.owner_died
    assert value.value == 7  # the shared memory outlives its writer
    lock.release()
