#!/usr/bin/env bash
# Checks of the Python client: installs it into a virtualenv under target/
# with pinned test dependencies, type-checks it and its tests (mypy
# --strict), then runs the tests against real tenure processes.
#
#   clients/python/ci.sh [TENURE_BINARY]
#
# TENURE_BINARY defaults to target/debug/tenure (relative paths are taken
# from the repository root). Needs python3 >= 3.10 and access to PyPI (or
# to the index PIP_INDEX_URL names); nothing else from the network.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-target/debug/tenure}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
if [ ! -x "$bin" ]; then
    echo "ci.sh: no tenure binary at $bin: build it first (cargo build), or pass its path" >&2
    exit 1
fi

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "ci.sh: $python is older than 3.10" >&2
    exit 1
fi

venv="$root/target/python-client-venv"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install -r "$here/requirements-test.txt"
# Not editable: the tests import the package as a user would install it.
"${pip[@]}" install --no-build-isolation --no-deps --force-reinstall "$here"

cd "$here"
echo "== mypy --strict"
"$venv/bin/mypy" --strict --cache-dir "$root/target/python-client-mypy-cache" src tests
echo "== pytest (tenure: $bin)"
TENURE_BIN="$bin" "$venv/bin/pytest" -p no:cacheprovider -q --durations=5 tests
