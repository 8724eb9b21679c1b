"""Queue, JoinableQueue and SimpleQueue on multiproc's shared-memory ring.

Objects are pickled with ``ForkingPickler`` in the caller (no feeder thread): an object that
cannot be pickled raises from ``put`` itself, and a ``put`` that returned has delivered.
``close()`` means what it means in CPython ("this process puts no more"); ``shutdown()``
ends the stream for everyone (Python 3.13's ``queue.Queue.shutdown``).
"""

import io
import queue as _queue

from multiprocessing.reduction import ForkingPickler

from . import _native
from ._handles import reduce_handle

__all__ = ["Queue", "JoinableQueue", "SimpleQueue", "ShutDown"]

ShutDown = _native.ShutDown
Empty = _queue.Empty
Full = _queue.Full


def _dumps(obj):
    buf = io.BytesIO()
    ForkingPickler(buf).dump(obj)
    return buf.getvalue()


_loads = ForkingPickler.loads


class Queue(_native.Queue):
    """``multiprocessing.Queue`` (``maxsize`` <= 0: unbounded)."""

    _kind = "queue"

    def __new__(cls, maxsize=0, *, ctx=None, _handle=None):
        return super().__new__(cls, maxsize, kind=cls._kind, _handle=_handle)

    def __init__(self, maxsize=0, *, ctx=None, _handle=None):
        self._closed = False

    def __reduce__(self):
        return reduce_handle(self)

    def _check_closed(self):
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")

    def put(self, obj, block=True, timeout=None):
        self._check_closed()
        self.put_bytes(_dumps(obj), block, timeout)

    def get(self, block=True, timeout=None):
        self._check_closed()
        return _loads(self.get_bytes(block, timeout))

    def put_nowait(self, obj):
        return self.put(obj, False)

    def get_nowait(self):
        return self.get(False)

    def close(self):
        """This process puts no more (other processes may)."""
        self._closed = True

    def join_thread(self):
        """Nothing to wait for: there is no feeder thread."""
        if not self._closed:
            raise ValueError(f"Queue {self!r} not closed")

    def cancel_join_thread(self):
        """Nothing to cancel: there is no feeder thread."""


class JoinableQueue(Queue):
    """``multiprocessing.JoinableQueue``."""

    _kind = "joinable"

    def join(self):
        self._join(None)


class SimpleQueue(_native.Queue):
    """``multiprocessing.SimpleQueue``."""

    def __new__(cls, *, ctx=None, _handle=None):
        return super().__new__(cls, 0, kind="simple", _handle=_handle)

    def __reduce__(self):
        return reduce_handle(self)

    def put(self, obj):
        self.put_bytes(_dumps(obj))

    def get(self):
        return _loads(self.get_bytes())

    def close(self):
        """Nothing to release here: the ring goes when the last process lets go."""
