#!/usr/bin/env bash
# Runs every test of the project: Rust (unit, integration, doc) over the whole workspace (the
# library, the CLI in cli/, the bindings generator), then the Python and Kotlin binding suites
# when their directories exist. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# One package selection and feature set for both cargo commands, so cargo builds the library
# once: the whole workspace, with the library's `ffi` feature, so the UniFFI surface (src/ffi/)
# and its unit tests are compiled and run too. (.ci/run lints and documents the same set.)
WORKSPACE=(--workspace --features orgdb/ffi)

echo "== Rust tests"
cargo test "${WORKSPACE[@]}" --all-targets
cargo test "${WORKSPACE[@]}" --doc

if [ -x bindings/python/run-tests.sh ]; then
  echo "== Python binding tests"
  bindings/python/run-tests.sh
fi
if [ -x bindings/kotlin/run-tests.sh ]; then
  echo "== Kotlin binding tests"
  bindings/kotlin/run-tests.sh
fi
echo "== all tests passed"
