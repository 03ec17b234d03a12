#!/usr/bin/env bash
# Builds liborgdb, generates the Kotlin bindings from it (UniFFI library mode), compiles them
# with the Kotlin test program, and runs it against the native library: once with the library
# found on `jna.library.path`, once with it bundled inside the jar (as hosts ship it).
#
# Needs: cargo, java (17+), npm (for the compiler, unless KOTLINC points at a Kotlin >= 2
# kotlinc), and JNA at /usr/share/java/jna.jar (Debian: apt-get install libjna-java; or set
# JNA_JAR). The npm package `kotlin-compiler` is installed into target/tools/kotlin when
# missing. Build output goes to target/bindings/kotlin. Exits non-zero when a test fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT="${CARGO_TARGET_DIR:-target}/bindings/kotlin"
source bindings/kotlin/tools.sh

# The UniFFI surface is the library's `ffi` feature (off for Rust hosts).
echo "-- cargo build -p orgdb --lib --features ffi,mimalloc"
cargo build --quiet -p orgdb --lib --features ffi,mimalloc
LIB_DIR="$TARGET_DIR/debug"

# The generator is the workspace's `uniffi-bindgen` package (uniffi with its `cli` feature),
# run from the workspace root as maturin runs it, so the two share one build of it. Library
# mode: it reads the UniFFI metadata from liborgdb.so and uniffi.toml through cargo metadata.
echo "-- generating Kotlin bindings"
rm -rf "$OUT"
generate_kotlin "$LIB_DIR/liborgdb.so" "$OUT/generated"
# The generator reuses call statuses and Rust buffers' memory per thread
# (uniffi-bindgen/src/main.rs); a UniFFI whose output it does not recognize would quietly lose
# that, so the tests say so.
for marker in uniffiCallStatusPool uniffiRustBufferSlots uniffiJnaScratch; do
  if ! grep -q "$marker" "$OUT/generated/dev/orgdb/orgdb.kt"; then
    echo "error: the generated Kotlin lacks $marker (see uniffi-bindgen/src/main.rs)" >&2
    exit 1
  fi
done

echo "-- compiling ($("$KOTLINC" -version 2>&1 | grep -o 'kotlinc-jvm [0-9.]*' || echo kotlinc))"
"$KOTLINC" -nowarn -include-runtime -cp "$JNA_JAR" -d "$OUT/orgdb-tests.jar" \
  "$OUT/generated/dev/orgdb/orgdb.kt" bindings/kotlin/src/*.kt

echo "-- running"
java -Djna.library.path="$LIB_DIR" -cp "$OUT/orgdb-tests.jar:$JNA_JAR" OrgDbTestKt

# Again with the library bundled in the jar, as a host ships it: JNA unpacks it from the class
# path (to a new file for each load), so every part of the binding must use one load of it.
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) prefix=linux-x86-64 ;;
  Linux-aarch64) prefix=linux-aarch64 ;;
  *) prefix= ;;
esac
if [ -n "$prefix" ]; then
  echo "-- running with the library inside the jar ($prefix/liborgdb.so)"
  python3 - "$OUT/orgdb-tests.jar" "$OUT/orgdb-tests-bundled.jar" "$LIB_DIR/liborgdb.so" "$prefix" <<'PY'
import shutil, sys, zipfile
src, dst, lib, prefix = sys.argv[1:]
shutil.copyfile(src, dst)
with zipfile.ZipFile(dst, "a") as jar:
    jar.write(lib, f"{prefix}/liborgdb.so")
PY
  java -cp "$OUT/orgdb-tests-bundled.jar:$JNA_JAR" OrgDbTestKt
else
  echo "-- not run with the library inside the jar: no JNA resource prefix known for $(uname -sm)"
fi
