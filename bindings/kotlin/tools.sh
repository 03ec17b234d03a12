# Sourced by run-tests.sh and bench.sh: finds JNA and the Kotlin compiler (installing the
# compiler from npm into target/tools/kotlin when missing) and sets JNA_JAR and KOTLINC.
KOTLIN_VERSION=2.4.20
TARGET_DIR=${CARGO_TARGET_DIR:-target}
TOOLS="$TARGET_DIR/tools/kotlin"
JNA_JAR=${JNA_JAR:-/usr/share/java/jna.jar}

if [ ! -f "$JNA_JAR" ]; then
  echo "error: JNA not found at $JNA_JAR (apt-get install libjna-java, or set JNA_JAR)" >&2
  exit 1
fi

if [ -z "${KOTLINC:-}" ]; then
  KOTLINC="$TOOLS/node_modules/kotlin-compiler/bin/kotlinc"
  if [ ! -f "$KOTLINC" ]; then
    echo "-- installing kotlin-compiler@$KOTLIN_VERSION from npm into $TOOLS"
    mkdir -p "$TOOLS"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS" "kotlin-compiler@$KOTLIN_VERSION"
  fi
  # The tarball's package.json lists only kotlinc-js as a bin: make sure the JVM compiler's
  # scripts are executable.
  chmod +x "$TOOLS/node_modules/kotlin-compiler/bin/"*
fi

# Generates the Kotlin bindings of the library $1 into directory $2 (UniFFI library mode,
# with the workspace's `uniffi-bindgen` package, which reads uniffi.toml through cargo
# metadata). Fails if the generator warns: a warning means one of its changes to the
# generated module (uniffi-bindgen/src/main.rs) was not made, and calls would be slower.
generate_kotlin() {
  rm -rf "$2"
  mkdir -p "$2"
  local log="$2/../generate-warnings.txt"
  local failed=0
  cargo run --quiet --bin uniffi-bindgen -- generate \
    --library "$1" --language kotlin --out-dir "$2" --no-format 2>"$log" || failed=1
  cat "$log" >&2
  if [ "$failed" = 1 ] || grep -q '^warning' "$log"; then
    echo "error: the Kotlin generator failed or warned (above); see uniffi-bindgen/src/main.rs" >&2
    return 1
  fi
}
