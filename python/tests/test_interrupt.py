"""Ctrl-C (SIGINT) interrupts every blocking call at once with KeyboardInterrupt, also when
the signal is handled by a thread other than the blocked main thread."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

SETUP = {
    "lock.acquire": "x = ctx.Lock(); x.acquire(); block = lambda: x.acquire()",
    # Held by a thread that lives on (one that ended would count as dead: taken over).
    "rlock.acquire": ("x = ctx.RLock(); held = threading.Event()\n"
                      "threading.Thread(target=lambda: (x.acquire(), held.set(),"
                      " time.sleep(30)), daemon=True).start()\n"
                      "held.wait(10); block = lambda: x.acquire()"),
    "semaphore.acquire": "x = ctx.Semaphore(0); block = lambda: x.acquire()",
    "event.wait": "x = ctx.Event(); block = lambda: x.wait()",
    "queue.get": "x = ctx.Queue(); block = lambda: x.get()",
    "queue.put": "x = ctx.Queue(1); x.put(0); block = lambda: x.put(1)",
    "joinable.join": "x = ctx.JoinableQueue(); x.put(0); x.get(); block = lambda: x.join()",
    "simplequeue.get": "x = ctx.SimpleQueue(); block = lambda: x.get()",
    "condition.wait": "x = ctx.Condition(); x.acquire(); block = lambda: x.wait()",
    "barrier.wait": "x = ctx.Barrier(2); block = lambda: x.wait()",
    # Nobody reads: a message larger than the socket buffer waits for room mid-message.
    "connection.send_bytes_16MiB": ("a, b = ctx.Pipe(); big = bytes(16 << 20)\n"
                                    "block = lambda: a.send_bytes(big)"),
    "listener.accept": ("from multiproc.connection import Listener\n"
                        "x = Listener(); block = lambda: x.accept()"),
    "connection.recv": "a, b = ctx.Pipe(); block = lambda: a.recv()",
    "connection.poll": "a, b = ctx.Pipe(); block = lambda: a.poll(None)",
}

SCRIPT = """
import faulthandler, os, signal, sys, threading, time
import multiproc
faulthandler.dump_traceback_later(20, exit=True)  # the watchdog: never hang the test
ctx = multiproc.get_context("fork")
{setup}
if {other_thread}:
    # Block SIGINT in the main thread: the kernel hands it to the helper thread, whose
    # handler only sets Python's flag; the blocked main thread must still notice.
    helper = threading.Thread(target=time.sleep, args=(30,), daemon=True)
    helper.start()
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
print("blocking", flush=True)
t0 = time.monotonic()
try:
    block()
except KeyboardInterrupt:
    latency = time.monotonic() - t0
    {after}
    print("interrupted %.3f" % latency, flush=True)
    os._exit(0)
print("returned", flush=True)
os._exit(1)
"""


# What must hold after the interrupted call (in the interrupted process).
AFTER = {
    # The abandoned message is skipped whole; the pipe carries the next one.
    "connection.send_bytes_16MiB": ("a.send_bytes(b'next'); assert b.poll(10); "
                                    "assert b.recv_bytes() == b'next'"),
    # Ctrl-C broke the barrier (as a timeout would), for every party.
    "barrier.wait": "assert x.broken",
    # The lock is held again after an interrupted wait.
    "condition.wait": "assert x._lock._is_mine()",
}


def run(call, other_thread):
    src = SCRIPT.format(setup=SETUP[call], other_thread=other_thread,
                        after=AFTER.get(call, "pass"))
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(src)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "blocking"
        time.sleep(0.3)
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        out = p.stdout.readline().strip()
        latency = time.monotonic() - sent
        assert p.wait(10) == 0, out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out.startswith("interrupted"), out
    return latency


# A generous bound (the machine may be loaded): without the signal checks the call would
# not return at all.
PROMPT = 5.0


@pytest.mark.parametrize("call", sorted(SETUP))
def test_ctrl_c(call):
    assert run(call, other_thread=False) < PROMPT


@pytest.mark.parametrize("call", ["lock.acquire", "queue.get", "event.wait",
                                  "condition.wait", "barrier.wait",
                                  "connection.send_bytes_16MiB", "connection.recv"])
def test_ctrl_c_handled_by_another_thread(call):
    assert run(call, other_thread=True) < PROMPT
