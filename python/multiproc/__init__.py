"""multiproc: ``multiprocessing`` with robust, faster primitives.

Change one line::

    ctx = multiproc.get_context()        # was: multiprocessing.get_context()

and ``ctx.Lock()``, ``ctx.Queue()``, ``ctx.Pipe()`` ... are multiproc's: locks in shared
memory that survive a holder killed while holding them, queues on a shared-memory ring,
pipes that carry messages of any size. ``ctx.Process`` is CPython's.
"""

from . import _native
from .connection import Connection, Pipe
from .context import ForkContext, ForkServerContext, SpawnContext, get_context, install
from .queues import JoinableQueue, Queue, ShutDown, SimpleQueue
from .sharedctypes import Array, RawArray, RawValue, Value
from .synchronize import Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore

__all__ = [
    "get_context", "install", "ForkContext", "SpawnContext", "ForkServerContext",
    "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event", "Condition", "Barrier",
    "Value", "Array", "RawValue", "RawArray",
    "Queue", "JoinableQueue", "SimpleQueue", "ShutDown", "Pipe", "Connection",
]
