#!/usr/bin/env bash
# The Python package (crates/multiproc-py + python/multiproc): builds the extension into a
# virtual environment under target/ (created on first use, with maturin and pytest from
# PyPI), runs our pytest tests (python/tests), then CPython's own multiprocessing test
# classes against our context under fork, spawn and forkserver (MULTIPROC_SUITE_METHODS
# chooses), printing how many passed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV="$PWD/target/pyenv"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "test-python: needs CPython >= 3.11 ($PY is $("$PY" --version 2>&1))" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.16,<2" "pytest>=8"
# `maturin develop` installs into the environment named by VIRTUAL_ENV (no activation).
VIRTUAL_ENV="$VENV" "$VENV/bin/maturin" develop --quiet
cd python/tests
"$VENV/bin/python" -m pytest -q -p no:cacheprovider
for method in ${MULTIPROC_SUITE_METHODS:-fork spawn forkserver}; do
    MULTIPROC_START=$method "$VENV/bin/python" run_cpython_suite.py
done
