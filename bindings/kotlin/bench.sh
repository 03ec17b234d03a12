#!/usr/bin/env bash
# The Kotlin bindings benchmark: the same calls through the Kotlin binding (JNA) and through
# the Rust API, on the same data, round after round in one run; prints the table with the
# median rates and the ratio Kotlin / Rust (the boundary's cost).
#
#   bindings/kotlin/bench.sh [--rounds N] [--seconds S]
#
# Builds liborgdb in release mode (the Python bench shares that build), generates and compiles
# the Kotlin bindings with bindings/kotlin/bench/Bench.kt, and runs benches/boundary.rs with
# `cargo bench`. Needs what run-tests.sh needs. Not part of the test command: figures go to
# BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=3
SECONDS_A_ROUND=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECONDS_A_ROUND=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--seconds S]" >&2; exit 2 ;;
  esac
done

OUT="${CARGO_TARGET_DIR:-target}/bindings/kotlin-bench"
source bindings/kotlin/tools.sh

echo "-- cargo build --release -p orgdb --lib --features ffi,mimalloc"
cargo build --quiet --release -p orgdb --lib --features ffi,mimalloc
LIB_DIR="$TARGET_DIR/release"
echo "-- generating and compiling the Kotlin bindings with Bench.kt"
generate_kotlin "$LIB_DIR/liborgdb.so" "$OUT/generated"
"$KOTLINC" -nowarn -include-runtime -cp "$JNA_JAR" -d "$OUT/bench.jar" \
  "$OUT/generated/dev/orgdb/orgdb.kt" bindings/kotlin/bench/Bench.kt
echo "-- building benches/boundary.rs"
cargo bench --quiet --bench boundary --no-run

RESULTS="$OUT/results.txt"
: > "$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
  # Alternate which side runs first.
  sides=(kotlin rust)
  if [ $((round % 2)) -eq 0 ]; then sides=(rust kotlin); fi
  for side in "${sides[@]}"; do
    if [ "$side" = kotlin ]; then
      java -Djna.library.path="$LIB_DIR" -cp "$OUT/bench.jar:$JNA_JAR" BenchKt \
        --rounds 1 --seconds "$SECONDS_A_ROUND" | sed "s/^RATE/kotlin $round/" | tee -a "$RESULTS"
    else
      cargo bench --quiet --bench boundary -- --rounds 1 --seconds "$SECONDS_A_ROUND" \
        | grep '^RATE' | sed "s/^RATE/rust $round/" | tee -a "$RESULTS"
    fi
  done
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
rates = {}
for line in open(sys.argv[1]):
    side, rnd, name, rate = line.split()
    rates.setdefault(name, {}).setdefault(int(rnd), {})[side] = float(rate)
print()
print("| workload | Kotlin (JNA) | Rust | Kotlin/Rust | per-round ratios |")
print("|---|---:|---:|---:|---|")
for name, by_round in rates.items():
    rows = [r for r in by_round.values() if "kotlin" in r and "rust" in r]
    k = statistics.median(r["kotlin"] for r in rows)
    r_ = statistics.median(r["rust"] for r in rows)
    ratios = [r["kotlin"] / r["rust"] for r in rows]
    unit = " events" if name.endswith("record_many") else ""
    print(f"| {name} | {k:,.0f}{unit}/s | {r_:,.0f}{unit}/s | **{k / r_:.2f}** | "
          f"{min(ratios):.2f}..{max(ratios):.2f} |")
PY
