"""CPython 3.11's own multiprocessing tests, run against multiproc's context.

Run: ``MULTIPROC_START=spawn python run_cpython_suite.py`` from this directory. The test classes are
CPython's, unchanged (``test._test_multiprocessing``, shipped with CPython's ``test``
package); this module only installs multiproc first and lists, in ``SKIPS`` below, every
test that does not apply to multiproc, with the reason. It prints how many tests passed.

The start method comes from the environment (``MULTIPROC_START``) so that a spawned child,
which imports this module by name to unpickle a test, builds the same classes.
"""

import os
import sys
import unittest

import multiproc

multiproc.install()  # before the test module captures multiprocessing.Lock & co.

try:
    import test._test_multiprocessing as _tm
except ImportError:  # pragma: no cover - depends on the interpreter's packaging
    _tm = None

START = os.environ.get("MULTIPROC_START", "fork")

# The CPython test classes we run (more are added as multiproc covers them).
CLASSES = ["_TestLock", "_TestSemaphore", "_TestEvent", "_TestQueue", "_TestCondition",
           "_TestBarrier", "_TestConnection", "_TestPoll", "_TestPicklingConnections",
           "_TestValue", "_TestArray", "_TestPool", "_TestListenerClient"]

# Every deviation, in one place: (generated class, test method) -> reason.
SKIPS = {
    ("WithProcessesTestQueue", "test_queue_feeder_donot_stop_onexc"):
        "multiproc pickles in put() itself (no feeder thread): an unpicklable object raises "
        "from put() instead of being dropped later with a traceback on stderr",
    ("WithProcessesTestQueue", "test_queue_feeder_on_queue_feeder_error"):
        "tests the feeder thread's _on_queue_feeder_error hook of CPython's Queue class; "
        "multiproc has no feeder thread",
}

if _tm is not None:
    # A plain TestCase of CPython's on multiprocessing.SimpleQueue (ours after install()).
    TestSimpleQueue = _tm.TestSimpleQueue
    _tm.install_tests_in_module_dict(globals(), START, only_type="processes")
    _wanted = {"WithProcesses" + c[1:] for c in CLASSES}
    for _name in [n for n in globals() if n.startswith("WithProcesses")]:
        if _name not in _wanted:
            del globals()[_name]
    # The one configuration: CPython's tests reach Listener/Client through the class's
    # `connection` module (multiprocessing.connection); install() leaves that module alone
    # (CPython's managers and resource_sharer use it), so point the class at ours.
    WithProcessesTestListenerClient.connection = multiproc.connection
    for (_cls, _meth), _why in SKIPS.items():
        _obj = globals()[_cls]
        setattr(_obj, _meth, unittest.skip(_why)(getattr(_obj, _meth)))
    del _name, _obj, _cls, _meth, _why


def main(argv):
    if _tm is None:
        print("CPython's test package (test._test_multiprocessing) is not installed: "
              "the CPython suite was NOT run", flush=True)
        return 0
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=1).run(suite)
    skipped = len(result.skipped)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - skipped - failed
    print(f"CPython suite ({START}, {', '.join(CLASSES)}, TestSimpleQueue): "
          f"{passed} passed, {skipped} skipped, {failed} failed", flush=True)
    return 0 if result.wasSuccessful() else 1

