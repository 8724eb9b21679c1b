"""Queue, JoinableQueue and SimpleQueue on multiproc's shared-memory ring.

Objects are pickled with ``ForkingPickler`` in the caller (no feeder thread): an object that
cannot be pickled raises from ``put`` itself, and a ``put`` that returned has delivered.
``close()`` means what it means in CPython ("this process puts no more"); ``shutdown()``
ends the stream for everyone (Python 3.13's ``queue.Queue.shutdown``).
"""

import copyreg
import functools
import pickle
import queue as _queue
import weakref

from multiprocessing.reduction import ForkingPickler

from . import _native
from ._handles import reduce_handle

__all__ = ["Queue", "JoinableQueue", "SimpleQueue", "ShutDown"]

ShutDown = _native.ShutDown
Empty = _queue.Empty
Full = _queue.Full


class _Sink:
    """A pickler's output: what it writes (one ``bytes`` per dump, for small objects) is
    appended to ``chunks``."""

    __slots__ = ("chunks", "write")

    def __init__(self):
        self.chunks = []
        self.write = self.chunks.append


# The two tables a ForkingPickler's dispatch table is made of (both only ever updated in
# place: ``copyreg.pickle``, ``ForkingPickler.register``); their sizes say whether a kept
# pickler's copy is current.
_copyreg_table = copyreg.dispatch_table
_extra_reducers = ForkingPickler._extra_reducers


def _new_pickler():
    sink = _Sink()
    pickler = pickle.Pickler(sink)
    table = _copyreg_table.copy()
    table.update(_extra_reducers)
    pickler.dispatch_table = table
    return len(_copyreg_table), len(_extra_reducers), pickler, sink.chunks


# Idle picklers, each (the two tables' sizes when made, pickler, its output list). A dump
# takes one (``list.pop`` is atomic under the GIL, so each thread, and a dump from inside a
# ``__reduce__`` that puts, gets its own) and gives it back afterwards.
_idle = []


def _dumps(obj):
    """``ForkingPickler.dumps(obj)`` as bytes, without its cost per call: making a
    ``ForkingPickler`` (which copies ``copyreg.dispatch_table``) costs several times the
    pickling of a small object, so picklers are kept and reused. Same output: the same
    dispatch table (made again when a reducer was registered since), the same protocol, a
    fresh memo per message."""
    try:
        entry = _idle.pop()
        if entry[0] != len(_copyreg_table) or entry[1] != len(_extra_reducers):
            entry = _new_pickler()
    except IndexError:
        entry = _new_pickler()
    pickler = entry[2]
    chunks = entry[3]
    try:
        pickler.dump(obj)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        chunks.clear()
        pickler.clear_memo()  # let go of the objects just pickled
    _idle.append(entry)
    return data


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
        if self._closed:  # (not _check_closed(): a call less per message)
            raise ValueError(f"Queue {self!r} is closed")
        self.put_bytes(_dumps(obj), block, timeout)

    def get(self, block=True, timeout=None):
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
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


class _End:
    """What the two stand-in ends share: the queue, held weakly (the queue caches its ends:
    no reference cycle keeps a dropped queue's memory and fds until a garbage collection),
    and a ``closed`` flag."""

    __slots__ = ("_ref", "_closed")

    def __init__(self, q):
        self._ref = weakref.ref(q)
        self._closed = False

    def _queue(self):
        q = self._ref() if not self._closed else None
        if q is None:
            raise OSError("handle is closed")
        return q

    @property
    def closed(self):
        return self._closed

    def close(self):
        """This object answers no more (the queue stays: other handles use it)."""
        self._closed = True


class _ReadEnd(_End):
    """``SimpleQueue._reader``: what CPython code does with a SimpleQueue's read end (a
    ``Connection`` there). ``multiprocessing.connection.wait([q._reader])`` (as
    ``concurrent.futures.process`` does) waits on ``fileno()``, the queue's readiness fd,
    settled when asked for: readable while a message is waiting (or the queue is shut down),
    so a wait that says ready is followed by a ``recv()`` that does not block, as long as
    nobody else takes the message first. ``recv()`` is the queue's ``get()``."""

    __slots__ = ()

    def fileno(self):
        return self._queue()._settled_fd()

    def poll(self, timeout=0.0):
        """Whether a message is waiting, waiting at most ``timeout`` seconds (``None``:
        forever)."""
        if not self._queue().empty():
            return True
        from multiprocessing.connection import wait
        return bool(wait([self], timeout))

    def recv(self):
        return self._queue().get()

    def recv_bytes(self):
        return self._queue().get_bytes()


class _WriteEnd(_End):
    """``SimpleQueue._writer``: ``send(obj)`` is the queue's ``put(obj)``."""

    __slots__ = ()

    def send(self, obj):
        self._queue().put(obj)

    def send_bytes(self, buf):
        self._queue().put_bytes(bytes(buf))


class SimpleQueue(_native.Queue):
    """``multiprocessing.SimpleQueue``. ``_reader`` and ``_writer``, the private ends stock
    code reads, are stand-ins over the queue: ``multiprocessing.connection.wait`` accepts
    ``_reader`` (see :class:`_ReadEnd`)."""

    @functools.cached_property
    def _reader(self):
        return _ReadEnd(self)

    @functools.cached_property
    def _writer(self):
        return _WriteEnd(self)

    def __new__(cls, *, ctx=None, _handle=None):
        return super().__new__(cls, 0, kind="simple", _handle=_handle)

    def __reduce__(self):
        return reduce_handle(self)

    _closed = False

    def put(self, obj):
        if self._closed:
            raise OSError("handle is closed")
        self.put_bytes(_dumps(obj))

    def get(self):
        if self._closed:
            raise OSError("handle is closed")
        return _loads(self.get_bytes())

    def close(self):
        """This process puts and gets no more here, as CPython's (whose pipe ends close:
        ``_reader.closed`` and ``_writer.closed`` say so); the ring goes when the last
        process lets go."""
        self._closed = True
        self._reader.close()
        self._writer.close()
