"""``python -m multiproc script.py [args]``: runs a ``multiprocessing`` program on ours.

Installs multiproc (``multiproc.install()``) and then runs the script as ``__main__``, so
``multiprocessing.Lock()``, ``Queue()``, ``get_context(...)`` and the rest give ours.
"""

import runpy
import sys

from . import install


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print("usage: python -m multiproc script.py [args...]", file=sys.stderr)
        return 2
    install()
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
