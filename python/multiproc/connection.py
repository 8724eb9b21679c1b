"""Pipe and Connection on multiproc's SEQPACKET connections (messages of any size), and
Listener/Client between unrelated processes (CPython's wire format and handshake, so either
side may be CPython's)."""

import os
import socket
import tempfile

from multiprocessing import AuthenticationError, BufferTooShort, util

from . import _native
from ._handles import reduce_handle
from .queues import _dumps, _loads

__all__ = ["Connection", "Pipe", "Listener", "Client", "AuthenticationError"]

# As CPython's multiprocessing.connection on Linux.
families = ["AF_UNIX", "AF_INET"]
default_family = "AF_UNIX"


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
        # (No _check: the native call checks, with the same errors, a call less per message.)
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
        # (No _check, as in send.)
        return _loads(self._recv_bytes())


def Pipe(duplex=True):
    """Two connected ends; ``duplex=False`` gives (receive-only, send-only)."""
    a, b = _native.pipe(duplex)
    # The Python subclass takes the native ends over (moved, not copied).
    return Connection(_from=a), Connection(_from=b)


def address_type(address):
    """``'AF_INET'`` for a ``(host, port)`` tuple, ``'AF_UNIX'`` for a path."""
    if type(address) == tuple:
        return "AF_INET"
    if type(address) is str:
        return "AF_UNIX"
    raise ValueError(f"address type of {address!r} unrecognized")


def arbitrary_address(family):
    """A fresh address of ``family`` (as CPython's: a path in a temporary directory, or
    ``('localhost', 0)``)."""
    if family == "AF_INET":
        return ("localhost", 0)
    if family == "AF_UNIX":
        return tempfile.mktemp(prefix="listener-", dir=util.get_temp_dir())
    raise ValueError(f"unrecognized family {family!r}")


def _check_authkey(authkey):
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError("authkey should be a byte string")


class Listener:
    """``multiprocessing.connection.Listener``: ``accept()`` gives a :class:`Connection`
    (Ctrl-C interrupts the wait). Clients may be CPython's."""

    def __init__(self, address=None, family=None, backlog=1, authkey=None):
        family = family or (address and address_type(address)) or default_family
        if family not in families:
            raise ValueError(f"Family {family} is not recognized.")
        address = address or arbitrary_address(family)
        _check_authkey(authkey)
        self._listener = _native.Listener(address, authkey)
        self._address = self._listener.address
        self._family = family
        self._last_accepted = None

    def accept(self):
        if self._listener is None:
            raise OSError("listener is closed")
        c = Connection(_from=self._listener._accept())
        # CPython keeps the peer's address (empty for an unnamed Unix client).
        s = socket.socket(fileno=os.dup(c.fileno()))
        try:
            self._last_accepted = s.getpeername()
        except OSError:
            self._last_accepted = None
        finally:
            s.close()
        return c

    def close(self):
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    @property
    def address(self):
        return self._address

    @property
    def last_accepted(self):
        return self._last_accepted

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()


def Client(address, family=None, authkey=None):
    """``multiprocessing.connection.Client``: a :class:`Connection` to ``address`` (the
    listener may be CPython's)."""
    family = family or address_type(address)
    if family not in families:
        raise ValueError(f"Family {family} is not recognized.")
    _check_authkey(authkey)
    return Connection(_from=_native.client(address, authkey))
