#!/usr/bin/env bash
# Builds and installs the Python package into a private venv, then runs its pytest suite.
#
#   bindings/python/run-tests.sh [pytest args...]
#
# The venv lives in target/bindings/python-venv (override with ORGDB_PY_VENV); it is created
# when missing and the package is reinstalled on every run. Exits non-zero when a test fails
# or when no test ran.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
VENV=${ORGDB_PY_VENV:-target/bindings/python-venv}

if [ ! -x "$VENV/bin/python" ]; then
  echo "-- creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
VENV=$(cd "$VENV" && pwd)
PY="$VENV/bin/python"
# maturin's build backend runs the `maturin` executable: it must be on PATH.
export PATH="$VENV/bin:$PATH"

echo "-- installing maturin and pytest"
"$PY" -m pip install --quiet --disable-pip-version-check "maturin>=1.16,<2" "pytest>=8"

# The dev profile, passed to maturin's PEP 517 backend (a user's `pip install` builds the
# release profile), reuses cargo's target/debug build: seconds, not minutes. No build
# isolation, so the maturin just installed is the one that builds.
export MATURIN_PEP517_ARGS="--profile dev"
echo "-- building and installing bindings/python (cargo profile dev)"
"$PY" -m pip install --quiet --disable-pip-version-check --no-build-isolation \
  --force-reinstall --no-deps ./bindings/python

echo "-- pytest"
cd bindings/python
set +e
"$PY" -m pytest -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
