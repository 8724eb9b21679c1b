"""How our objects cross into another process: CPython's own reduction machinery.

A native object's ``_export()`` gives its bytes and duplicates of the fds it refers to. Each
fd is wrapped in an :class:`_FdOwner`, which pickles as ``multiprocessing.reduction.DupFd``:
under spawn and forkserver the fd rides along with the process start (``spawnv_passfds`` or
the forkserver's SCM_RIGHTS), otherwise (a Connection sent through a queue or pipe to a
running process) through CPython's ``resource_sharer``.

During one process start, fds that name the same shared segment (every lock, semaphore and
event is carved out of a few arena segments) share one ``_FdOwner``, so pickle's memo passes
each segment once: 300 locks are a handful of fds, not 300 (forkserver passes at most ~250).
"""

import os

from multiprocessing import context, reduction

from . import _native


class _FdOwner:
    """Owns one fd (from ``_export()`` or received from a parent); closes it when collected."""

    __slots__ = ("fd",)

    def __init__(self, fd):
        self.fd = fd

    def __del__(self):
        fd, self.fd = self.fd, -1
        if fd >= 0:
            _native._close_fd(fd)

    def __reduce__(self):
        return (_rebuild_fd, (reduction.DupFd(self.fd),))


def _rebuild_fd(dupfd):
    return _FdOwner(dupfd.detach())


def _owner_for(fd):
    """An owner of ``fd`` for the pickle being written; shared per segment during a start."""
    popen = context.get_spawning_popen()
    if popen is None:
        return _FdOwner(fd)
    # The fd must stay open until the child has started (after the dump, in Popen._launch),
    # so the Popen object keeps the owners; our contexts' Process classes drop them right
    # after the start (with CPython's own Process classes they go with the Popen object).
    cache = popen.__dict__.setdefault("_multiproc_fds", {})
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    owner = cache.get(key)
    if owner is None:
        owner = cache[key] = _FdOwner(fd)
    else:
        _native._close_fd(fd)
    return owner


def reduce_handle(obj, params=(), inherit_only=True, state=None):
    """``__reduce__`` for a native object: rebuilt by ``type(obj)(*params, _handle=...)``,
    then ``state`` (a dict, or None) goes into its ``__dict__``.

    ``inherit_only``: refuse outside process start, with CPython's message (locks, queues).
    """
    if inherit_only:
        context.assert_spawning(obj)
    data, fds = obj._export()
    owners = [_owner_for(fd) for fd in fds]
    return (_rebuild, (type(obj), params, data, owners, state))


def _rebuild(cls, params, data, owners, state):
    obj = cls(*params, _handle=(data, [o.fd for o in owners]))
    if state:
        obj.__dict__.update(state)
    return obj
