"""Lock, RLock, Semaphore, BoundedSemaphore, Event and Barrier on multiproc's primitives.

Condition (and a Barrier with an action) stay CPython's classes, built on our Lock, RLock and
Semaphore through the ``_semlock`` internals those classes read.
"""

import threading

from . import _native
from ._handles import reduce_handle

__all__ = ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event", "Barrier"]


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


# For ``except threading.BrokenBarrierError``: the native module raises that very class.
BrokenBarrierError = threading.BrokenBarrierError
