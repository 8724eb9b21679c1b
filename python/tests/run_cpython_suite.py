"""Runs CPython's multiprocessing tests against multiproc (see cpython_suite.py)."""

import sys

if __name__ == "__main__":
    import cpython_suite

    sys.exit(cpython_suite.main(sys.argv[1:]))
