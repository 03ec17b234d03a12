//! `uniffi-bindgen`: generates the Python and Kotlin bindings from the built cdylib.
//!
//! For Kotlin, the generated module is then given four changes (the text rewrites of
//! [`REWRITES`], then [`pointer_calls`]), each because a profile of the Kotlin benchmark put
//! most of a call's time in JNA's `Structure` machinery (BENCHMARKS.md, "From Kotlin"):
//!
//! - **Call statuses reused per thread.** Every native call of UniFFI's Kotlin allocates a
//!   `UniffiRustCallStatus`, a JNA `Structure` that allocates native memory of its own, which
//!   JNA registers in a global map and a cleaner. The change takes the status from a per-thread
//!   pool instead, zeroed before each call, as a new one is. A call made while another is in
//!   flight on the same thread (a callback) takes another status from the pool, so nested
//!   calls never share one.
//! - **Rust buffers without an allocation or reflection each.** Every argument and result
//!   crosses as a `RustBuffer.ByValue`, a new `Structure` per value whose native memory JNA
//!   allocates and registers the same way, and whose three fields it moves by reflection. The
//!   change gives `RustBuffer` its memory from a per-thread ring of 256 slots of one block
//!   (`autoAllocate`) and moves its fields with three reads or writes (`read` / `write`). A
//!   buffer's memory holds its fields only from JNA's write before a native call to the call,
//!   or from the call's return to JNA's read right after it; a by-value structure always keeps
//!   dedicated memory (JNA copies into it, and a nested one, the call status' error buffer,
//!   uses its parent's). A slot is taken again only after 255 more buffers were made on that
//!   thread, and one call makes one per argument and one for its result, so no two buffers
//!   of a call share a slot. Rust owns what `data` points to, never the structure's memory.
//!   The field list JNA reads by reflection for every new structure is kept once, and the
//!   generated lowering sets a buffer's length directly instead of through `writeField`.
//! - **Native calls that pass only integers** ([`pointer_calls`]): each scaffolding function
//!   is called through one of orgdb's pointer-only entry points (`src/ffi/jna.rs`), so JNA
//!   never converts a structure at the call.
//!
//! If the generated text is not the one expected (another UniFFI version), the module is left
//! as generated for that change and a warning says so (bindings/kotlin/tools.sh fails on any
//! warning, and run-tests.sh on a missing marker).

mod pointer_calls;

use std::path::{Path, PathBuf};

/// The generated helper every Kotlin call goes through (UniFFI 0.32).
const CALL_HELPER: &str = "private inline fun <U, E: kotlin.Exception> uniffiRustCallWithError(errorHandler: UniffiRustCallStatusErrorHandler<E>, callback: (UniffiRustCallStatus) -> U): U {
    var status = UniffiRustCallStatus()
    val return_value = callback(status)
    uniffiCheckCallStatus(errorHandler, status)
    return return_value
}";

/// The same helper with a status taken from the thread's pool and given back after.
const CALL_HELPER_POOLED: &str = "// orgdb: call statuses are reused per thread (uniffi-bindgen/src/main.rs says why).
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

/// The start of the generated `RustBuffer` class (UniFFI 0.32).
const RUST_BUFFER: &str = "@Structure.FieldOrder(\"capacity\", \"len\", \"data\")
open class RustBuffer : Structure() {
";

/// The same, with its memory from the thread's ring of slots and its fields moved directly.
const RUST_BUFFER_SLOTTED: &str = "// orgdb: Rust buffers' structure memory comes from a per-thread ring of slots
// (uniffi-bindgen/src/main.rs says why it is never shared by two live buffers).
internal class UniffiRustBufferSlots {
    private val block = com.sun.jna.Memory(SLOTS * SLOT)
    private var next = 0L

    fun take(size: Int): com.sun.jna.Memory {
        if (size > SLOT) return com.sun.jna.Memory(size.toLong())
        val at = next
        next = (next + 1) % SLOTS
        return block.share(at * SLOT, SLOT) as com.sun.jna.Memory
    }

    companion object {
        const val SLOTS = 256L
        const val SLOT = 32L
    }
}

internal val uniffiRustBufferSlots: ThreadLocal<UniffiRustBufferSlots> =
    ThreadLocal.withInitial { UniffiRustBufferSlots() }

private val uniffiRustBufferFields: List<java.lang.reflect.Field> =
    listOf(\"capacity\", \"len\", \"data\").map { RustBuffer::class.java.getField(it) }

@Structure.FieldOrder(\"capacity\", \"len\", \"data\")
open class RustBuffer : Structure() {
    override fun autoAllocate(size: Int): com.sun.jna.Memory = uniffiRustBufferSlots.get().take(size)

    override fun read() {
        val p = pointer
        capacity = p.getLong(0)
        len = p.getLong(8)
        data = p.getPointer(16)
    }

    override fun write() {
        val p = pointer
        p.setLong(0, capacity)
        p.setLong(8, len)
        p.setPointer(16, data)
    }

    // A carrier of the pointer-only calls (pointer_calls.rs) that was handed out and not yet
    // passed on: not a structure field (JNA maps public fields only, and `getFieldList` below).
    internal var uniffiCarried: Boolean = false

    // JNA lists a structure's fields by reflection twice for every new one; these never change.
    override fun getFieldList(): MutableList<java.lang.reflect.Field> =
        java.util.ArrayList(uniffiRustBufferFields)

";

/// The generated lowering sets a buffer's length through JNA's reflective `writeField`.
const WRITE_LEN: &str = "rbuf.writeField(\"len\", bbuf.position().toLong())";

/// The same, as a plain assignment: the structure's memory is written before any call that
/// passes it (by JNA's `write`, or by the scratch block of the pointer-only calls).
const WRITE_LEN_DIRECT: &str = "rbuf.len = bbuf.position().toLong() // orgdb: no reflection";

/// One change of the generated Kotlin: the text UniFFI generates, what replaces it, and
/// what the warning says is lost when the text is not found.
struct Rewrite {
    generated: &'static str,
    replacement: &'static str,
    lost: &'static str,
}

/// The changes, in the order they are made.
const REWRITES: &[Rewrite] = &[
    Rewrite {
        generated: CALL_HELPER,
        replacement: CALL_HELPER_POOLED,
        lost: "call statuses are not reused",
    },
    Rewrite {
        generated: RUST_BUFFER,
        replacement: RUST_BUFFER_SLOTTED,
        lost: "Rust buffers allocate their structure memory each",
    },
    Rewrite {
        generated: WRITE_LEN,
        replacement: WRITE_LEN_DIRECT,
        lost: "lowered buffers set their length by reflection",
    },
];

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
        if let Err(e) = rewrite(&file) {
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

/// Makes every change of [`REWRITES`] to one Kotlin file of the generated module; a change
/// whose generated text is not found once is left out, with a warning.
fn rewrite(file: &Path) -> std::io::Result<()> {
    let mut text = std::fs::read_to_string(file)?;
    if !text.contains("uniffiRustCallWithError") {
        return Ok(());
    }
    let mut changed = false;
    for r in REWRITES {
        if text.contains(r.replacement) {
            continue;
        }
        if text.matches(r.generated).count() == 1 {
            text = text.replacen(r.generated, r.replacement, 1);
            changed = true;
        } else {
            eprintln!(
                "warning: {}: the generated text is not the expected one: {} (the module \
                 works as generated, with a slower call)",
                file.display(),
                r.lost
            );
        }
    }
    let mut warnings = Vec::new();
    if let Some(new) = pointer_calls::rewrite(&text, &mut warnings) {
        text = new;
        changed = true;
    } else if !text.contains(pointer_calls::MARKER) {
        warnings.push(
            "the generated text is not the expected one: native calls pass JNA structures"
                .to_owned(),
        );
    }
    for w in &warnings {
        eprintln!("warning: {}: {w}", file.display());
    }
    if changed {
        std::fs::write(file, text)?;
    }
    Ok(())
}
