#!/usr/bin/env bash
# All the tests: the Rust library's, then every `scripts/test-*.sh` (the Python package, the
# remote backend), each of which installs or starts what it needs on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")"
echo "== cargo test -p multiproc"
cargo test -p multiproc
shopt -s nullglob
for part in scripts/test-*.sh; do
    echo "== $part"
    bash "$part"
done
