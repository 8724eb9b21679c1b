"""Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier on multiproc's
primitives.

A Barrier with an action stays CPython's class, built on our Condition.
"""

import threading
import time

from . import _native
from ._handles import reduce_handle

__all__ = ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event", "Condition", "Barrier"]


class _SemLockCompat:
    # CPython's Condition and Queue read ``x._semlock._is_mine()``, ``._count()``,
    # ``._get_value()``, ``._is_zero()``: the native class has them itself.
    @property
    def _semlock(self):
        return self

    def __reduce__(self):
        return reduce_handle(self)


class Lock(_SemLockCompat, _native.Lock):
    """``multiprocessing.Lock``; if a holder dies holding it, the next ``acquire`` takes it
    over and ``owner_died`` is True afterwards (CPython's would wait forever)."""

    __slots__ = ()

    def __repr__(self):
        return f"<{type(self).__name__}(locked={self.locked()})>"


class RLock(_SemLockCompat, _native.RLock):
    """``multiprocessing.RLock``: re-entrant per thread; ``release`` by a non-owner raises
    ``AssertionError``."""

    __slots__ = ()

    def __repr__(self):
        return f"<{type(self).__name__}(count={self._count()})>"


class Semaphore(_SemLockCompat, _native.Semaphore):
    """``multiprocessing.Semaphore``."""

    __slots__ = ()

    def __new__(cls, value=1, *, _handle=None):
        return super().__new__(cls, value, bounded=False, _handle=_handle)

    def __repr__(self):
        return f"<{type(self).__name__}(value={self.get_value()})>"


class BoundedSemaphore(Semaphore):
    """``multiprocessing.BoundedSemaphore``: releasing past the initial value raises
    ``ValueError``."""

    __slots__ = ()

    def __new__(cls, value=1, *, _handle=None):
        return _native.Semaphore.__new__(cls, value, bounded=True, _handle=_handle)


class Event(_native.Event):
    """``multiprocessing.Event``."""

    __slots__ = ()

    def __reduce__(self):
        return reduce_handle(self)

    def __repr__(self):
        set_status = "set" if self.is_set() else "unset"
        return f"<{type(self).__qualname__} at {id(self):#x} {set_status}>"


class Barrier(_native.Barrier):
    """``multiprocessing.Barrier`` (without an action: the context gives CPython's Barrier,
    on our locks, for one with an action). A party killed inside ``wait`` breaks it instead
    of hanging the others."""

    def __new__(cls, parties=1, action=None, timeout=None, *, _handle=None):
        if action is not None:
            raise ValueError("multiproc's Barrier takes no action (use the context's Barrier)")
        return super().__new__(cls, parties, _handle=_handle)

    def __init__(self, parties=1, action=None, timeout=None, *, _handle=None):
        self._timeout = timeout

    def wait(self, timeout=None):
        if timeout is None:
            timeout = self._timeout
        return self._wait(timeout)

    def __reduce__(self):
        return reduce_handle(self, state={"_timeout": self._timeout})

    def __repr__(self):
        return (f"<{type(self).__name__}(parties={self.parties}, "
                f"waiting={self.n_waiting}, broken={self.broken})>")


class _Count:
    """A read-only view with ``get_value()``, for the counters of CPython's Condition that
    stock code (CPython's own tests) reads: ``_sleeping_count``, ``_woken_count``,
    ``_wait_semaphore``."""

    __slots__ = ("_get",)

    def __init__(self, get):
        self._get = get

    def get_value(self):
        return self._get()


class Condition(_native.Condition):
    """``multiprocessing.Condition`` over our ``RLock`` (default) or ``Lock``. ``wait()``
    returns True only when a ``notify`` chose this waiter; ``notify(n)`` wakes the ``n``
    oldest waiters; a waiter killed inside ``wait`` is skipped. Ctrl-C interrupts ``wait``
    (``KeyboardInterrupt``, raised with the lock held again)."""

    def __new__(cls, lock=None, *, ctx=None, _handle=None):
        if _handle is not None:
            return super().__new__(cls, _handle=_handle)
        if lock is None:
            lock = RLock()
        elif not isinstance(lock, (Lock, RLock)):
            raise TypeError(f"a multiproc Condition needs a multiproc Lock or RLock, not "
                            f"{type(lock).__name__}")
        obj = super().__new__(cls, lock)
        obj._lock = lock
        return obj

    def __init__(self, lock=None, *, ctx=None, _handle=None):
        pass

    def __reduce__(self):
        return reduce_handle(self, state={"_lock": self._lock})

    def acquire(self, block=True, timeout=None):
        return self._lock.acquire(block, timeout)

    def release(self):
        self._lock.release()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    # CPython's counters, as read-only views (sleepers = sleeping - woken).
    @property
    def _sleeping_count(self):
        return _Count(lambda: self._waiting() + self._notified())

    @property
    def _woken_count(self):
        return _Count(lambda: 0)

    @property
    def _wait_semaphore(self):
        return _Count(self._notified)

    def wait_for(self, predicate, timeout=None):
        """Waits until ``predicate()`` is true (checked first); returns its last value."""
        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else time.monotonic() + timeout
        waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result

    def __repr__(self):
        return f"<{type(self).__name__}({self._lock}, {self._waiting()})>"


# For ``except threading.BrokenBarrierError``: the native module raises that very class.
BrokenBarrierError = threading.BrokenBarrierError
