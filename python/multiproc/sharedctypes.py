"""Value, Array, RawValue and RawArray: ctypes objects in multiproc's shared memory.

The memory is ours (a ``_native.SharedBuffer``: an anonymous, sealed memfd per object, which
reaches children under every start method); the lock of ``Value``/``Array`` is our
``RLock`` (taken over if its holder dies); the Python faces are CPython's own
``multiprocessing.sharedctypes`` classes (``Synchronized``, ``SynchronizedArray``, ...), whose
pickling (``rebuild_ctype``) only needs the buffer's ``create_memoryview()``.
"""

import ctypes

from multiprocessing import sharedctypes as _cpython

from . import _native
from ._handles import reduce_handle

__all__ = ["RawValue", "RawArray", "Value", "Array", "copy"]


class SharedBuffer(_native.SharedBuffer):
    """Shared memory a ctypes object lies over (its ``_wrapper``)."""

    __slots__ = ()

    def create_memoryview(self):
        # The ctypes array keeps nothing alive: the object built over it keeps this buffer
        # (as ``_wrapper``), which keeps the mapping.
        return memoryview((ctypes.c_char * self.size).from_address(self.address))

    def __reduce__(self):
        return reduce_handle(self)

    def __repr__(self):
        return f"<{type(self).__name__} size={self.size}>"


def _new_value(type_):
    wrapper = SharedBuffer(max(ctypes.sizeof(type_), 1))
    return _cpython.rebuild_ctype(type_, wrapper, None)


def RawValue(typecode_or_type, *args):
    """A ctypes object in shared memory (zeroed, then initialized with ``args``)."""
    type_ = _cpython.typecode_to_type.get(typecode_or_type, typecode_or_type)
    obj = _new_value(type_)
    obj.__init__(*args)
    return obj


def RawArray(typecode_or_type, size_or_initializer):
    """A ctypes array in shared memory: ``size`` zeros, or a copy of an initializer."""
    type_ = _cpython.typecode_to_type.get(typecode_or_type, typecode_or_type)
    if isinstance(size_or_initializer, int):
        return _new_value(type_ * size_or_initializer)
    result = _new_value(type_ * len(size_or_initializer))
    result.__init__(*size_or_initializer)
    return result


def _with_lock(obj, lock, ctx):
    if lock is False:
        return obj
    if lock in (True, None):
        from .context import get_context
        ctx = ctx or get_context()
        lock = ctx.RLock()
    if not hasattr(lock, "acquire"):
        raise AttributeError(f"{lock!r} has no method 'acquire'")
    return _cpython.synchronized(obj, lock, ctx=ctx)


def Value(typecode_or_type, *args, lock=True, ctx=None):
    """``multiprocessing.Value``: a ``RawValue`` behind a lock (ours, an RLock, unless
    ``lock`` is given; ``lock=False``: no lock)."""
    return _with_lock(RawValue(typecode_or_type, *args), lock, ctx)


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None):
    """``multiprocessing.Array``: a ``RawArray`` behind a lock (as ``Value``)."""
    return _with_lock(RawArray(typecode_or_type, size_or_initializer), lock, ctx)


def copy(obj):
    """A copy of a ctypes object, in new shared memory."""
    new_obj = _new_value(type(obj))
    ctypes.pointer(new_obj)[0] = obj
    return new_obj
