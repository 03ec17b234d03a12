#!/usr/bin/env bash
# Builds the Python package in release mode (what `pip install ./bindings/python` gives a user)
# into its own venv, then runs bench.py: orgdb from Python against hand-written sqlite3.
#
#   bindings/python/bench.sh [--rounds N] [--seconds S] [--workload a,b]
#
# The venv lives in target/bindings/python-bench-venv (override with ORGDB_PY_BENCH_VENV).
# Not part of the test command: figures go to BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
VENV=${ORGDB_PY_BENCH_VENV:-target/bindings/python-bench-venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
VENV=$(cd "$VENV" && pwd)
export PATH="$VENV/bin:$PATH"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.16,<2"
echo "-- building and installing bindings/python (release)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation \
  --force-reinstall --no-deps ./bindings/python
exec "$VENV/bin/python" bindings/python/bench.py "$@"
