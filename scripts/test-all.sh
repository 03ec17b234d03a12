#!/usr/bin/env bash
# Runs every test of the project: Rust (unit, integration, doc) over the whole workspace (the
# library, the CLI in cli/, the bindings generator), the backend-independent integration tests
# again on PostgreSQL, then the Python and Kotlin binding suites when their directories exist.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# One package selection and feature set for both cargo commands, so cargo builds the library
# once: the whole workspace, with the library's `ffi` feature, so the UniFFI surface (src/ffi/)
# and its unit tests are compiled and run too. (.ci/run lints and documents the same set.)
WORKSPACE=(--workspace --features orgdb/ffi)

echo "== Rust tests"
cargo test "${WORKSPACE[@]}" --all-targets
cargo test "${WORKSPACE[@]}" --doc

# The integration tests that go through `tests/common::db()` run a second time against a
# throwaway PostgreSQL server (scripts/pg-server.sh: started here, stopped and removed after,
# also on failure). The same tests, chosen by ORGDB_TEST_BACKEND; the others open files and
# test the embedded backend itself (crash, corruption, upgrade, persistence).
BACKEND_SUITE=(
  --test audit_feeds --test concurrency --test deactivation --test invitations --test ownership --test search --test directory --test corrections --test json_shapes --test maintenance --test members
  --test model --test orgs --test permissions --test projects_resources --test usage
  --test validation --test postgres --test cli
)
echo "== Rust tests on PostgreSQL"
scripts/pg-server.sh run -- env ORGDB_TEST_BACKEND=postgres \
  cargo test "${WORKSPACE[@]}" "${BACKEND_SUITE[@]}"

# The binding suites run beside a throwaway server too: each opens a PostgreSQL URL once.
if [ -x bindings/python/run-tests.sh ]; then
  echo "== Python binding tests"
  scripts/pg-server.sh run -- bindings/python/run-tests.sh
fi
if [ -x bindings/kotlin/run-tests.sh ]; then
  echo "== Kotlin binding tests"
  scripts/pg-server.sh run -- bindings/kotlin/run-tests.sh
fi
echo "== all tests passed"
