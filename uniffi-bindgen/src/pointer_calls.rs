//! The third change of the generated Kotlin: native calls that pass only integers.
//!
//! UniFFI declares each scaffolding function as a JNA `external fun` taking `RustBuffer.ByValue`
//! structures and a `UniffiRustCallStatus` by reference. For each structure JNA calls back into
//! the JVM before and after the call (and builds a `Structure` per returned buffer), which a
//! profile of `get_organization` put above the engine's own time. This change keeps each
//! declaration's name and signature, so every generated call site stays as it is, but turns it
//! into a Kotlin function that calls one of orgdb's pointer-only entry points
//! (`src/ffi/jna.rs`) with the scaffolding function's address: buffers go as the address of
//! their three fields in a per-thread scratch block, the result comes back in the same block,
//! and the status as the address of the pooled status structure's own memory, whose code
//! (and error buffer, on error) are read back after the call. A function with no buffer gets
//! an overload that takes the status' address. A shape with no entry point keeps UniFFI's
//! declaration, with a warning.

use std::collections::BTreeSet;

/// The entry points orgdb exports, from the list the library is built from.
macro_rules! jna_shapes {
    ($( $name:ident ( $($arg:ident : $kind:ident),* ) -> $ret:ident ; )*) => {
        /// The names of orgdb's pointer-only entry points.
        const SHAPES: &[&str] = &[$(concat!("orgdb_jna_", stringify!($name))),*];
    };
}
include!("../../src/ffi/jna_shapes.rs");

/// Where the helpers go: before the object that declares the native functions.
const LIB_OBJECT: &str = "internal object UniffiLib {\n";

/// Where the entry points' declarations go, inside that object.
const LIB_ANCHOR: &str = "    internal fun ensureInitialized() = Unit\n";

/// How many buffer arguments the scratch block holds (`UniffiJnaScratch.ARGS`).
const SCRATCH_ARGS: usize = 8;

/// Marks a module that has had this change.
pub const MARKER: &str = "uniffiJnaScratch";

/// The helpers the rewritten functions use.
const HELPERS: &str =
    "// orgdb: native calls that pass only integers (uniffi-bindgen/src/pointer_calls.rs says why).
// A thread's scratch block holds the fields of a call's buffer arguments, read by the entry
// point before the scaffolding function runs, and of its result, written when it returns and
// read right after: a nested call (a callback) never overlaps either use.
//
// It also holds the bytes of an argument being lowered, which one call copies into a new Rust
// buffer (UniFFI allocates the buffer first, then writes through a new direct view of it), and
// results are copied out into a Java array by one call (where UniFFI makes a direct view).
internal class UniffiJnaScratch {
    private val block = com.sun.jna.Memory(LOWER_AT + LOWER)
    private val base = Pointer.nativeValue(block)
    private val bytes = block.getByteBuffer(0, LOWER_AT).order(ByteOrder.nativeOrder())
    private val lowerView = block.getByteBuffer(LOWER_AT, LOWER).order(ByteOrder.BIG_ENDIAN)
    private var lowering = false
    val out: Long = base + ARGS * 24L

    fun arg(i: Int, buf: RustBuffer): Long {
        val at = i * 24
        bytes.putLong(at, buf.capacity)
        bytes.putLong(at + 8, buf.len)
        bytes.putLong(at + 16, Pointer.nativeValue(buf.data))
        buf.uniffiCarried = false
        return base + at
    }

    // A result's fields come back in one of a ring of carriers, so that no structure is built
    // per call. A carrier is marked from when it is handed out until its fields are passed on
    // to a native call (`arg`: as an argument, or to be freed after it was lifted); a marked
    // one is never handed out again, whatever runs meanwhile (a lowered argument waits while
    // the next one is lowered, and that may run a host's code that calls in again). A carrier
    // never passed on (a call abandoned half-way) stays marked: its place gets a new one.
    private val carriers = arrayOfNulls<RustBuffer.ByValue>(CARRIERS)
    private var nextCarrier = 0

    fun result(): RustBuffer.ByValue {
        val at = ARGS * 24
        val ring = carriers[nextCarrier]
        val buf = if (ring == null || ring.uniffiCarried) {
            RustBuffer.ByValue().also { carriers[nextCarrier] = it }
        } else {
            ring
        }
        buf.uniffiCarried = true
        nextCarrier = (nextCarrier + 1) % CARRIERS
        buf.capacity = bytes.getLong(at)
        buf.len = bytes.getLong(at + 8)
        val data = bytes.getLong(at + 16)
        buf.data = if (data == 0L) null else Pointer(data)
        return buf
    }

    // The view to lower a value of `size` bytes into, or null when it does not fit or is in
    // use (the caller then lowers as UniFFI does). `lowered` or `abandon` ends the use.
    fun lowering(size: ULong): ByteBuffer? {
        if (lowering || size > LOWER.toULong()) return null
        lowering = true
        lowerView.clear()
        lowerView.limit(size.toInt())
        return lowerView
    }

    fun lowered(): RustBuffer.ByValue {
        try {
            UniffiLib.orgdb_jna_buffer_from(base + LOWER_AT, lowerView.position().toLong(), out)
            return result()
        } finally {
            lowering = false
        }
    }

    fun abandon() {
        lowering = false
    }

    // `bytes` as a new Rust buffer, or null when the lowering view cannot take them.
    fun copied(bytes: ByteBuffer): RustBuffer.ByValue? {
        val view = lowering(bytes.remaining().toULong()) ?: return null
        view.put(bytes)
        return lowered()
    }

    companion object {
        const val ARGS = 8
        const val CARRIERS = 64
        const val LOWER_AT = (ARGS + 1) * 24L
        const val LOWER = 16384L

        // A result's bytes, copied into a Java array.
        fun lifting(buf: RustBuffer): ByteBuffer {
            val array = ByteArray(buf.len.toInt())
            if (array.isNotEmpty()) buf.data!!.read(0, array, 0, array.size)
            return ByteBuffer.wrap(array)
        }
    }
}

internal val uniffiJnaScratch: ThreadLocal<UniffiJnaScratch> =
    ThreadLocal.withInitial { UniffiJnaScratch() }

// The status crosses as the address of its structure's memory: its code is written before the
// call, and read back after it with the error buffer when the call failed.
internal fun uniffiStatusToNative(status: UniffiRustCallStatus): Long {
    // Zeroed as a new status is (code and error buffer): Rust leaves the buffer as it finds
    // it in some failures, and it must not be the last error's, which was freed.
    val p = status.pointer
    p.setMemory(0, 32, 0)
    return Pointer.nativeValue(p)
}

// The scratch block and the status' memory are laid out for 64-bit pointers.
private val uniffiJnaPointerSize = check(Native.POINTER_SIZE == 8) {
    \"orgdb's Kotlin binding needs a 64-bit JVM\"
}

internal fun uniffiStatusFromNative(status: UniffiRustCallStatus) {
    val p = status.pointer
    val code = p.getByte(0)
    status.code = code
    if (code != UNIFFI_CALL_SUCCESS) {
        status.error_buf.capacity = p.getLong(8)
        status.error_buf.len = p.getLong(16)
        status.error_buf.data = p.getPointer(24)
    }
}

";

/// Text changes of the generated converters that lower into and lift from the scratch block:
/// the generated text, and what replaces it. All are made, or the whole change is not.
const CONVERTERS: &[(&str, &str)] = &[
    (
        "    fun lowerIntoRustBuffer(value: KotlinType): RustBuffer.ByValue {
        val rbuf = RustBuffer.alloc(allocationSize(value))
",
        "    fun lowerIntoRustBuffer(value: KotlinType): RustBuffer.ByValue {
        val uniffiScratch = uniffiJnaScratch.get()
        val view = uniffiScratch.lowering(allocationSize(value))
        if (view != null) {
            try {
                write(value, view)
            } catch (e: Throwable) {
                uniffiScratch.abandon()
                throw e
            }
            return uniffiScratch.lowered()
        }
        val rbuf = RustBuffer.alloc(allocationSize(value))
",
    ),
    (
        "    fun liftFromRustBuffer(rbuf: RustBuffer.ByValue): KotlinType {
        val byteBuf = rbuf.asByteBuffer()!!
",
        "    fun liftFromRustBuffer(rbuf: RustBuffer.ByValue): KotlinType {
        val byteBuf = UniffiJnaScratch.lifting(rbuf)
",
    ),
    (
        "            val byteArr = ByteArray(value.len.toInt())
            value.asByteBuffer()!!.get(byteArr)
",
        "            val byteArr = ByteArray(value.len.toInt())
            if (byteArr.isNotEmpty()) value.data!!.read(0, byteArr, 0, byteArr.size)
",
    ),
    (
        "        val byteBuf = toUtf8(value)
        // Ideally we'd pass these bytes to `ffi_bytebuffer_from_bytes`, but doing so would require us
        // to copy them into a JNA `Memory`. So we might as well directly copy them into a `RustBuffer`.
",
        "        val byteBuf = toUtf8(value)
        uniffiJnaScratch.get().copied(byteBuf)?.let { return it }
",
    ),
];

/// One `external fun` of the generated module.
struct Declaration<'a> {
    /// The whole declaration, as generated.
    text: &'a str,
    name: &'a str,
    /// The parameter list as generated, status included, up to the closing parenthesis.
    params_text: &'a str,
    /// Parameter names and Kotlin types, the status excluded.
    params: Vec<(&'a str, &'a str)>,
    ret: &'a str,
}

/// Every `external fun` taking a call status, in order; `None` if a declaration is not in
/// the form UniFFI generates (then no declaration is changed).
fn declarations(text: &str) -> Option<Vec<Declaration<'_>>> {
    const START: &str = "    external fun ";
    const CLOSE: &str = "\n    ): ";
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(START).map(|i| from + i) {
        let rest = &text[at + START.len()..];
        let open = rest.find('(')?;
        let close = rest.find(CLOSE)?;
        let params_text = rest.get(open + 1..close)?;
        // One declaration's parameters are on one line: anything else is another form.
        if params_text.contains('\n')
            || !rest[..open]
                .chars()
                .all(|c| c == '_' || c.is_ascii_alphanumeric())
        {
            return None;
        }
        let end_of_ret = rest[close + CLOSE.len()..]
            .find('\n')
            .map_or(rest.len(), |i| close + CLOSE.len() + i);
        let mut params = Vec::new();
        for p in params_text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (n, t) = p.split_once(':')?;
            params.push((n.trim(), t.trim()));
        }
        from = at + START.len() + end_of_ret;
        if params.pop() != Some(("uniffi_out_err", "UniffiRustCallStatus")) {
            continue;
        }
        out.push(Declaration {
            text: &text[at..from],
            name: &rest[..open],
            params_text,
            params,
            ret: rest[close + CLOSE.len()..end_of_ret].trim(),
        });
    }
    Some(out)
}

/// The letter of a parameter type in a shape's name.
fn param_code(kotlin: &str) -> Option<char> {
    match kotlin {
        "Long" => Some('L'),
        "Int" => Some('I'),
        "RustBuffer.ByValue" => Some('R'),
        _ => None,
    }
}

/// The letter of a return type, and the Kotlin type the entry point returns.
fn return_code(kotlin: &str) -> Option<(char, &'static str)> {
    match kotlin {
        "RustBuffer.ByValue" => Some(('R', "Unit")),
        "Long" => Some(('L', "Long")),
        "Int" => Some(('I', "Int")),
        "Byte" => Some(('B', "Byte")),
        "Unit" => Some(('U', "Unit")),
        _ => None,
    }
}

/// Makes the change; returns the new text, or `None` with a reason when it cannot be made.
/// Declarations whose shape has no entry point stay as generated; each is named in
/// `warnings`.
pub fn rewrite(text: &str, warnings: &mut Vec<String>) -> Option<String> {
    if text.contains(MARKER) || !text.contains(LIB_OBJECT) || !text.contains(LIB_ANCHOR) {
        return None;
    }
    if CONVERTERS
        .iter()
        .any(|(generated, _)| text.matches(generated).count() != 1)
    {
        return None;
    }
    let mut converted = text.to_owned();
    for (generated, replacement) in CONVERTERS {
        converted = converted.replacen(generated, replacement, 1);
    }
    let text = converted.as_str();
    let mut out = String::with_capacity(text.len() * 11 / 10);
    let mut addresses = Vec::new();
    let mut entry_points = BTreeSet::new();
    let mut copied = 0;
    for d in declarations(text)? {
        const BUFFER: &str = "RustBuffer.ByValue";
        let has_buffer = d.ret == BUFFER || d.params.iter().any(|(_, t)| *t == BUFFER);
        let at = d.text.as_ptr() as usize - text.as_ptr() as usize;
        out.push_str(&text[copied..at]);
        copied = at + d.text.len();
        if !has_buffer {
            // JNA passes these types as they are: only the status changes.
            out.push_str(&status_overload(&d));
            continue;
        }
        let codes: Option<String> = d.params.iter().map(|(_, t)| param_code(t)).collect();
        let shape = match (codes, return_code(d.ret)) {
            (Some(codes), Some((ret_code, ret_kotlin)))
                if codes.matches('R').count() <= SCRATCH_ARGS =>
            {
                let shape = format!("orgdb_jna_{codes}_{ret_code}");
                SHAPES
                    .contains(&shape.as_str())
                    .then_some((shape, codes, ret_code, ret_kotlin))
            }
            _ => None,
        };
        let Some((shape, codes, ret_code, ret_kotlin)) = shape else {
            // UniFFI's own constructor of a buffer from foreign bytes takes a `ForeignBytes`
            // structure; the scratch block's lowering replaces it, so it may stay.
            if !d.name.ends_with("_rustbuffer_from_bytes") {
                warnings.push(format!(
                    "{} keeps UniFFI's slower call: no entry point of its shape (parameters {}, \
                     returning {}; add one to src/ffi/jna_shapes.rs)",
                    d.name,
                    d.params
                        .iter()
                        .map(|(_, t)| *t)
                        .collect::<Vec<_>>()
                        .join(", "),
                    d.ret
                ));
            }
            out.push_str(d.text);
            continue;
        };
        out.push_str(&through_entry_point(&d, &shape, &codes, ret_code));
        addresses.push(d.name);
        entry_points.insert((shape, codes, ret_kotlin));
    }
    out.push_str(&text[copied..]);

    let mut decls = String::from(
        "    external fun orgdb_jna_buffer_from(data: Long, len: Long, out: Long): Unit\n",
    );
    for (shape, codes, ret) in &entry_points {
        let mut params = vec!["entry: Long".to_owned()];
        params.extend(
            codes
                .chars()
                .enumerate()
                .map(|(i, c)| format!("p{i}: {}", if c == 'I' { "Int" } else { "Long" })),
        );
        params.push("out: Long".to_owned());
        params.push("status: Long".to_owned());
        decls.push_str(&format!(
            "    external fun {shape}({}): {ret}\n",
            params.join(", ")
        ));
    }
    // One loaded library for the addresses and the registered functions: JNA keeps a library
    // per name and options, and one bundled in a jar is unpacked to a new file for each.
    let register = "        Native.register(UniffiLib::class.java, ";
    if out.matches(register).count() != 1 {
        return None;
    }
    let object = out.find(LIB_OBJECT)?;
    let at = object + out[object..].find(register)?;
    let end = at + out[at..].find(")\n")?;
    let library = &out[at + register.len()..end];
    let mut fns = format!(
        "// orgdb: the scaffolding functions' addresses, for the pointer-only entry points.\n\
         internal object UniffiFns {{\n\
         \x20   // The instance `UniffiLib` registers its functions on (`Native.register(cls, name)`'s).\n\
         \x20   val lib: com.sun.jna.NativeLibrary = com.sun.jna.NativeLibrary.getInstance(\n\
         \x20       {library},\n\
         \x20       mapOf(com.sun.jna.Library.OPTION_CLASSLOADER to UniffiLib::class.java.classLoader),\n\
         \x20   )\n\
         \x20   private fun at(name: String): Long = Pointer.nativeValue(lib.getFunction(name))\n",
    );
    for name in &addresses {
        fns.push_str(&format!("    val {name}: Long = at(\"{name}\")\n"));
    }
    fns.push_str("}\n\n");
    let out = format!("{}{register}UniffiFns.lib{}", &out[..at], &out[end..]);
    let anchor = object + out[object..].find(LIB_ANCHOR)? + LIB_ANCHOR.len();
    Some(format!(
        "{}{HELPERS}{fns}{}{decls}{}",
        &out[..object],
        &out[object..anchor],
        &out[anchor..]
    ))
}

/// A function without buffers: the declaration becomes a Kotlin function with the same
/// signature, over an `external` overload that takes the status' address.
fn status_overload(d: &Declaration<'_>) -> String {
    let params: Vec<String> = d.params.iter().map(|(n, t)| format!("{n}: {t}")).collect();
    let mut native_params = params.clone();
    native_params.push("uniffi_out_err: Long".to_owned());
    let mut call_args: Vec<&str> = d.params.iter().map(|(n, _)| *n).collect();
    call_args.push("uniffiStatusToNative(uniffi_out_err)");
    format!(
        "    fun {name}({params_text}\n    ): {ret} {{\n\
         \x20       val uniffiResult = {name}({call})\n\
         \x20       uniffiStatusFromNative(uniffi_out_err)\n\
         \x20       return uniffiResult\n\
         \x20   }}\n\
         \x20   external fun {name}({native}): {ret}",
        name = d.name,
        params_text = d.params_text,
        ret = d.ret,
        call = call_args.join(", "),
        native = native_params.join(", "),
    )
}

/// A function with buffers: the declaration becomes a Kotlin function with the same
/// signature, calling the entry point of its shape with its address.
fn through_entry_point(d: &Declaration<'_>, shape: &str, codes: &str, ret_code: char) -> String {
    let mut buffers = 0;
    let mut call = vec![format!("UniffiFns.{}", d.name)];
    for ((name, _), code) in d.params.iter().zip(codes.chars()) {
        if code == 'R' {
            call.push(format!("uniffiScratch.arg({buffers}, {name})"));
            buffers += 1;
        } else {
            call.push((*name).to_owned());
        }
    }
    call.push("uniffiScratch.out".to_owned());
    call.push("uniffiStatusToNative(uniffi_out_err)".to_owned());
    let call = format!("{shape}({})", call.join(", "));
    let (run, give) = match ret_code {
        'R' => (call, "        return uniffiScratch.result()\n".to_owned()),
        'U' => (call, String::new()),
        _ => (
            format!("val uniffiResult = {call}"),
            "        return uniffiResult\n".to_owned(),
        ),
    };
    format!(
        "    fun {name}({params_text}\n    ): {ret} {{\n\
         \x20       val uniffiScratch = uniffiJnaScratch.get()\n\
         \x20       {run}\n\
         \x20       uniffiStatusFromNative(uniffi_out_err)\n\
         {give}\
         \x20   }}",
        name = d.name,
        params_text = d.params_text,
        ret = d.ret,
    )
}
