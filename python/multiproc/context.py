"""Contexts: CPython's fork, spawn and forkserver contexts with our primitives.

``Process`` (and so ``Pool``, ``Manager``, ``ProcessPoolExecutor``) stays CPython's; the
primitives a context makes are ours. ``get_context(method)`` on one of ours returns ours.
"""

import multiprocessing
from multiprocessing import context as _cpython
from multiprocessing import queues as _cpython_queues
from multiprocessing import synchronize as _cpython_sync

from . import connection, queues, sharedctypes, synchronize

__all__ = ["get_context", "ForkContext", "SpawnContext", "ForkServerContext"]


class _Primitives:
    """The factories of ``multiprocessing.context.BaseContext`` that we replace."""

    def get_context(self, method=None):
        if method is None:
            return self
        return get_context(method)

    def Lock(self):
        return synchronize.Lock()

    def RLock(self):
        return synchronize.RLock()

    def Semaphore(self, value=1):
        return synchronize.Semaphore(value)

    def BoundedSemaphore(self, value=1):
        return synchronize.BoundedSemaphore(value)

    def Event(self):
        return synchronize.Event()

    def Condition(self, lock=None):
        if lock is not None and not isinstance(lock, (synchronize.Lock, synchronize.RLock)):
            # A lock that is not ours (CPython's, say): CPython's Condition, over it.
            return _cpython_sync.Condition(lock, ctx=self.get_context())
        return synchronize.Condition(lock)

    def RawValue(self, typecode_or_type, *args):
        return sharedctypes.RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type, size_or_initializer):
        return sharedctypes.RawArray(typecode_or_type, size_or_initializer)

    def Value(self, typecode_or_type, *args, lock=True):
        return sharedctypes.Value(typecode_or_type, *args, lock=lock, ctx=self.get_context())

    def Array(self, typecode_or_type, size_or_initializer, *, lock=True):
        return sharedctypes.Array(typecode_or_type, size_or_initializer, lock=lock,
                                  ctx=self.get_context())

    def Barrier(self, parties, action=None, timeout=None):
        if action is not None:
            # CPython's Barrier (on our Condition) runs the action.
            return _cpython_sync.Barrier(parties, action, timeout, ctx=self.get_context())
        return synchronize.Barrier(parties, timeout=timeout)

    def Queue(self, maxsize=0):
        return queues.Queue(maxsize)

    def JoinableQueue(self, maxsize=0):
        return queues.JoinableQueue(maxsize)

    def SimpleQueue(self):
        # Ours also for concurrent.futures.process, which waits on its `_reader` with
        # connection.wait (the queue's readiness fd) and then calls `_reader.recv()`.
        return queues.SimpleQueue()

    def Pipe(self, duplex=True):
        return connection.Pipe(duplex)

    def Pool(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None):
        # CPython's Pool reads its SimpleQueues' private `_reader`/`_writer`: give it
        # CPython's SimpleQueue (its locks are still ours).
        from multiprocessing.pool import Pool
        return Pool(processes, initializer, initargs, maxtasksperchild,
                    context=_stock_simplequeue[self._name])


def _launched(popen):
    # The fds our objects passed to the child (kept open by the Popen until it had
    # started, see _handles._owner_for) are closed now: otherwise this process would keep
    # a copy of, say, a Connection end, and its peer would never see EOF.
    popen.__dict__.pop("_multiproc_fds", None)
    return popen


class SpawnProcess(_cpython.SpawnProcess):
    """CPython's SpawnProcess; closes the fds passed to the child once it has started."""

    @staticmethod
    def _Popen(process_obj):
        return _launched(_cpython.SpawnProcess._Popen(process_obj))


class ForkServerProcess(_cpython.ForkServerProcess):
    """CPython's ForkServerProcess; closes the fds passed to the child once it has started."""

    @staticmethod
    def _Popen(process_obj):
        return _launched(_cpython.ForkServerProcess._Popen(process_obj))


class ForkContext(_Primitives, _cpython.ForkContext):
    pass


class SpawnContext(_Primitives, _cpython.SpawnContext):
    Process = SpawnProcess


class ForkServerContext(_Primitives, _cpython.ForkServerContext):
    Process = ForkServerProcess


_contexts = {
    "fork": ForkContext(),
    "spawn": SpawnContext(),
    "forkserver": ForkServerContext(),
}


class _StockSimpleQueue:
    def SimpleQueue(self):
        return _cpython_queues.SimpleQueue(ctx=self.get_context())

    def get_context(self, method=None):
        return self if method is None else get_context(method)


_stock_simplequeue = {
    name: type(f"_Pool{type(ctx).__name__}", (_StockSimpleQueue, type(ctx)), {})()
    for name, ctx in _contexts.items()
}


def get_context(method=None):
    """Our context for ``method`` ("fork", "spawn", "forkserver"; ``None``: the start
    method ``multiprocessing`` would use)."""
    if method is None:
        method = multiprocessing.get_start_method()
    try:
        return _contexts[method]
    except KeyError:
        raise ValueError(f"cannot find context for {method!r}") from None


_NAMES = ("Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event", "Condition", "Barrier",
          "Queue", "JoinableQueue", "SimpleQueue", "Pipe", "Pool", "Value", "Array", "RawValue",
          "RawArray")


def install():
    """Makes plain ``multiprocessing`` code use ours: ``multiprocessing.Lock()``,
    ``multiprocessing.get_context("spawn")`` and the rest. Call it before other modules do
    ``from multiprocessing import Lock``; a spawned child must call it too (import the module
    that does) for objects it creates itself — objects from the parent arrive as ours anyway.
    """
    _cpython._concrete_contexts.update(_contexts)
    default = _cpython._default_context
    default._default_context = _contexts[default._default_context._name]
    if default._actual_context is not None:
        default._actual_context = _contexts[default._actual_context._name]
    for name in _NAMES:
        setattr(multiprocessing, name, _forwarder(name))


def _forwarder(name):
    def factory(*args, **kwargs):
        return getattr(multiprocessing.get_context(), name)(*args, **kwargs)
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"multiprocessing.{name}, made by the current context (multiproc's)."
    return factory
