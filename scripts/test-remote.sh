#!/usr/bin/env bash
# The remote backend's tests (`multiproc::remote`, feature `remote`) against a real
# redis-server, which the tests start and stop themselves on private unix sockets and
# loopback ports in temporary directories. On a fresh Debian-like machine (CI runs as root)
# the server is installed first; elsewhere, install `redis-server` (Redis >= 6.2) yourself.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test-remote: redis-server is not on PATH and this is not root: install the" >&2
        echo "test-remote: redis-server package (Redis >= 6.2) and run again" >&2
        exit 1
    fi
    echo "== installing redis-server (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server
fi
redis-server --version

# A missing server is a failure here, never a skip.
export MULTIPROC_REQUIRE_REDIS=1
echo "== cargo test -p multiproc --features remote --test remote"
cargo test -p multiproc --features remote --test remote
