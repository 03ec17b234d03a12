//! `uniffi-bindgen`: generates the Python and Kotlin bindings from the built cdylib.
//!
//! For Kotlin, the generated module is then given one change (`reuse_call_status`): every
//! native call of UniFFI's Kotlin allocates a `UniffiRustCallStatus`, a JNA `Structure` that
//! allocates native memory of its own (and another for its error buffer), which JNA registers
//! in a global map and a cleaner: most of a call's time (BENCHMARKS.md, "From Kotlin"). The
//! change takes the status from a per-thread pool instead, zeroed before each call, as a new
//! one is. A call made while another is in flight on the same thread (a callback) takes
//! another status from the pool, so nested calls never share one. If the generated text is not
//! the one expected (another UniFFI version), the module is left as generated and a warning
//! says so.

use std::path::{Path, PathBuf};

/// The generated helper every Kotlin call goes through (UniFFI 0.32).
const GENERATED: &str = "private inline fun <U, E: kotlin.Exception> uniffiRustCallWithError(errorHandler: UniffiRustCallStatusErrorHandler<E>, callback: (UniffiRustCallStatus) -> U): U {
    var status = UniffiRustCallStatus()
    val return_value = callback(status)
    uniffiCheckCallStatus(errorHandler, status)
    return return_value
}";

/// The same helper with a status taken from the thread's pool and given back after.
const POOLED: &str = "// orgdb: call statuses are reused per thread (uniffi-bindgen/src/main.rs says why).
private val uniffiCallStatusPool = ThreadLocal.withInitial { java.util.ArrayDeque<UniffiRustCallStatus>() }

private inline fun <U, E: kotlin.Exception> uniffiRustCallWithError(errorHandler: UniffiRustCallStatusErrorHandler<E>, callback: (UniffiRustCallStatus) -> U): U {
    val pool = uniffiCallStatusPool.get()
    val status = pool.pollFirst() ?: UniffiRustCallStatus()
    status.code = UNIFFI_CALL_SUCCESS
    status.error_buf.capacity = 0
    status.error_buf.len = 0
    status.error_buf.data = null
    try {
        val return_value = callback(status)
        uniffiCheckCallStatus(errorHandler, status)
        return return_value
    } finally {
        pool.addFirst(status)
    }
}";

fn main() {
    uniffi::uniffi_bindgen_main();
    let args: Vec<String> = std::env::args().collect();
    let value_of = |long: &str, short: &str| {
        args.iter()
            .position(|a| a == long || a == short)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .or_else(|| {
                let prefix = format!("{long}=");
                args.iter()
                    .find_map(|a| a.strip_prefix(&prefix).map(str::to_owned))
            })
    };
    if value_of("--language", "-l").as_deref() != Some("kotlin") {
        return;
    }
    let Some(out_dir) = value_of("--out-dir", "-o") else {
        return;
    };
    for file in kotlin_files(Path::new(&out_dir)) {
        if let Err(e) = reuse_call_status(&file) {
            eprintln!("warning: {}: {e}", file.display());
        }
    }
}

/// Every `.kt` file under `dir`.
fn kotlin_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(kotlin_files(&path));
        } else if path.extension().is_some_and(|e| e == "kt") {
            out.push(path);
        }
    }
    out
}

/// Replaces the generated call helper of one Kotlin file by the pooled one.
fn reuse_call_status(file: &Path) -> std::io::Result<()> {
    let text = std::fs::read_to_string(file)?;
    if text.contains(POOLED) || !text.contains("uniffiRustCallWithError") {
        return Ok(());
    }
    if text.matches(GENERATED).count() != 1 {
        return Err(std::io::Error::other(
            "the generated call helper is not the expected one: call statuses are not \
             reused (the module works as generated, with a slower call)",
        ));
    }
    std::fs::write(file, text.replacen(GENERATED, POOLED, 1))
}
