#!/usr/bin/env bash
# Runs every test of the project: Rust (unit, integration, doc), then the Python and Kotlin
# binding suites when their directories exist. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Rust tests"
cargo test --all-targets
cargo test --doc

if [ -x bindings/python/run-tests.sh ]; then
  echo "== Python binding tests"
  bindings/python/run-tests.sh
fi
if [ -x bindings/kotlin/run-tests.sh ]; then
  echo "== Kotlin binding tests"
  bindings/kotlin/run-tests.sh
fi
echo "== all tests passed"
