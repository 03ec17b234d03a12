#!/usr/bin/env bash
# Runs each cargo-fuzz target of fuzz/ for a bounded time and prints its executions.
#
#   scripts/fuzz.sh                       # every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh      # longer
#   FUZZ_TARGETS="import_lines" scripts/fuzz.sh
#   FUZZ_KEEP_GOING=1 scripts/fuzz.sh     # fork mode: record every crash, do not stop at one
#
# Exits non-zero when a target crashed (the input is in fuzz/artifacts/<target>/; reproduce
# with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>` in fuzz/, minimize with
# `cargo fuzz tmin <target> <file>`).
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --version 0.13.2 --locked`). On the stable
# toolchain every cargo fuzz command needs RUSTC_BOOTSTRAP=1 (set here; mixing builds with
# and without it spoils fuzz/target). The first build takes several minutes.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1

seconds="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-decode_stored validate_inputs import_lines}"
keep_going="${FUZZ_KEEP_GOING:-0}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --version 0.13.2 --locked" >&2
    exit 2
fi

# Debug assertions and overflow checks stay on (cargo fuzz's default without -O).
cargo fuzz build

failed=0
summary=""
for target in $targets; do
    corpus="corpus/$target"
    artifacts="artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    before=$(find "$artifacts" -type f | wc -l)
    log=$(mktemp)
    case "$target" in
        import_lines) max_len=65536 ;;
        *) max_len=8192 ;;
    esac
    args=(-max_total_time="$seconds" -max_len="$max_len" -timeout=20 -rss_limit_mb=4096
          -print_final_stats=1)
    if [ "$keep_going" = "1" ]; then
        args+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    fi
    # Read-only inputs: the seeds and the regressions (crashes found before).
    seeds=()
    for extra in "seeds/$target" "regressions/$target"; do
        if [ -d "$extra" ]; then
            seeds+=("$extra")
        fi
    done
    echo "== $target: ${seconds}s"
    started=$SECONDS
    set +e
    cargo fuzz run "$target" "$corpus" "${seeds[@]}" -- "${args[@]}" >"$log" 2>&1
    status=$?
    set -e
    elapsed=$((SECONDS - started))
    # Executions: the final stats line, else the last status line (fork mode).
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
    if [ -z "$execs" ]; then
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
    fi
    execs=${execs:-0}
    after=$(find "$artifacts" -type f | wc -l)
    crashes=$((after - before))
    corpus_size=$(find "$corpus" -type f | wc -l)
    line="$target: $execs executions in ${elapsed}s, corpus $corpus_size, new artifacts $crashes, exit $status"
    echo "$line"
    summary+="$line"$'\n'
    if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ]; then
        failed=1
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | sort | uniq -c | head -20 || true
        echo "   full log: $log"
    else
        rm -f "$log"
    fi
done

echo
echo "fuzz summary ($(date -u +%Y-%m-%dT%H:%MZ)):"
printf '%s' "$summary"
exit "$failed"
