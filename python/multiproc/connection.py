"""Pipe and Connection on multiproc's SEQPACKET connections (messages of any size)."""

from multiprocessing import BufferTooShort
from multiprocessing.reduction import ForkingPickler

from . import _native
from ._handles import reduce_handle
from .queues import _dumps

__all__ = ["Connection", "Pipe"]


class Connection(_native.Connection):
    """``multiprocessing.connection.Connection``."""

    __slots__ = ()

    def __reduce__(self):
        # As CPython: a Connection may travel anywhere (to a running process through
        # resource_sharer), not only at process start.
        return reduce_handle(self, inherit_only=False)

    def __repr__(self):
        state = "closed" if self.closed else f"fd={self.fileno()}"
        return f"<{type(self).__name__} {state}>"

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()

    def _check(self, writing):
        if self.closed:
            raise OSError("handle is closed")
        if writing and not self.writable:
            raise OSError("connection is read-only")
        if not writing and not self.readable:
            raise OSError("connection is write-only")

    def send_bytes(self, buf, offset=0, size=None):
        self._check(True)
        m = memoryview(buf)
        if m.itemsize > 1:
            m = m.cast("B")
        n = len(m)
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        self._send_bytes(bytes(m[offset:offset + size]))

    def send(self, obj):
        self._check(True)
        self._send_bytes(_dumps(obj))

    def recv_bytes(self, maxlength=None):
        self._check(False)
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        return self._recv_bytes(maxlength)

    def recv_bytes_into(self, buf, offset=0):
        self._check(False)
        with memoryview(buf) as m:
            itemsize = m.itemsize
            bytesize = itemsize * len(m)
            if offset < 0:
                raise ValueError("negative offset")
            if offset > bytesize:
                raise ValueError("offset too large")
            data = self._recv_bytes()
            size = len(data)
            if bytesize - offset < size:
                raise BufferTooShort(data)
            m.cast("B")[offset:offset + size] = data
            return size

    def recv(self):
        self._check(False)
        return ForkingPickler.loads(self._recv_bytes())


def Pipe(duplex=True):
    """Two connected ends; ``duplex=False`` gives (receive-only, send-only)."""
    a, b = _native.pipe(duplex)
    # The Python subclass takes the native ends over (moved, not copied).
    return Connection(_from=a), Connection(_from=b)
