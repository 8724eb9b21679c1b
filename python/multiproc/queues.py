"""Queue, JoinableQueue and SimpleQueue on multiproc's shared-memory ring.

Objects are pickled with ``ForkingPickler`` in the caller (no feeder thread): an object that
cannot be pickled raises from ``put`` itself, and a ``put`` that returned has delivered.
``close()`` means what it means in CPython ("this process puts no more"); ``shutdown()``
ends the stream for everyone (Python 3.13's ``queue.Queue.shutdown``).
"""

import copyreg
import io
import pickle
import queue as _queue
import threading

from multiprocessing.reduction import ForkingPickler

from . import _native
from ._handles import reduce_handle

__all__ = ["Queue", "JoinableQueue", "SimpleQueue", "ShutDown"]

ShutDown = _native.ShutDown
Empty = _queue.Empty
Full = _queue.Full


class _Dumper(threading.local):
    """A pickler kept per thread: making a ``ForkingPickler`` per message (which copies
    ``copyreg.dispatch_table`` each time) costs several times the pickling of a small
    object. Same output as ``ForkingPickler.dumps``: the same dispatch table, rebuilt when a
    reducer is registered."""

    busy = False
    key = None

    def dumps(self, obj):
        key = (len(copyreg.dispatch_table), len(ForkingPickler._extra_reducers))
        if self.busy:  # pickling from inside a __reduce__ that puts: a fresh pickler
            return bytes(ForkingPickler.dumps(obj))
        if key != self.key:
            table = copyreg.dispatch_table.copy()
            table.update(ForkingPickler._extra_reducers)
            self.buf = io.BytesIO()
            self.pickler = pickle.Pickler(self.buf)
            self.pickler.dispatch_table = table
            self.key = key
        buf, pickler = self.buf, self.pickler
        self.busy = True
        try:
            buf.seek(0)
            buf.truncate()
            pickler.clear_memo()
            pickler.dump(obj)
            return buf.getvalue()
        finally:
            self.busy = False
            pickler.clear_memo()  # let go of the objects just pickled


_dumps = _Dumper().dumps


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
