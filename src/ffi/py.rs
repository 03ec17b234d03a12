//! Direct entry points for the Python binding: a method call in one foreign call.
//!
//! UniFFI's generated Python makes several foreign calls for one method: it clones the
//! object's handle (the scaffolding function takes ownership of one reference), copies each
//! buffer argument into a new Rust buffer, calls the scaffolding function, and frees the
//! returned buffer after reading it. Through `ctypes` each of those costs about a
//! microsecond, as much as the engine's work for a small call (BENCHMARKS.md, "From Python").
//! The functions here do all of it in one call: given the clone function's and the
//! scaffolding function's addresses, they clone the handle, turn each argument's bytes
//! (Python's own `bytes`, passed without a copy) into a Rust buffer, call the scaffolding
//! function with the exact signature it was compiled with, and copy a returned buffer into
//! the caller's scratch memory and free it there, or hand it over whole when it does not fit.
//! The package's `_runtime.py` rewrites the generated methods to call them.
//!
//! One function serves every scaffolding function of one signature shape (`jna_shapes.rs`,
//! shared with the Kotlin entry points of [`super::jna`]). Ownership moves exactly as in the
//! generated call: the cloned handle and the argument buffers to the scaffolding function, a
//! returned buffer to this function (freed after the copy) or to the caller (`out`), an error
//! buffer to the caller through the status.

use std::ffi::c_void;

// The shapes' kinds are the Kotlin entry points' (`L`, `I`, `B`, `R`, `U`); how each crosses
// from Python is this module's `Param` and `Return`.
use super::jna::{Buf, B, I, L, R, U};

/// UniFFI's call status as the scaffolding functions write it: a code (0 success) and an error
/// buffer.
#[repr(C)]
pub struct Status {
    code: i8,
    error: Buf,
}

/// A call context, allocated by the caller (a slot of the Python thread's free list) and passed
/// by address: where a returned buffer is copied (`scratch`, `cap` bytes) or written whole
/// (`out`), and the call status the scaffolding function writes (its code 0 before the call).
#[repr(C)]
pub struct Context {
    scratch: *mut u8,
    cap: u64,
    out: Buf,
    status: Status,
}

/// What an entry point returning a buffer or nothing returns after an error: the status says
/// which.
const FAILED: i64 = -2;

/// The handle clone function UniFFI exports per object: takes a handle, returns a new one.
type Clone = unsafe extern "C" fn(u64, *mut c_void) -> u64;

/// How one parameter of a shape crosses from Python: `Passed` is what `ctypes` gives,
/// `Native` what the scaffolding function takes.
pub trait Param {
    /// The type `ctypes` passes.
    type Passed;
    /// The scaffolding function's parameter type.
    type Native;
    /// Turns the passed value into the scaffolding function's argument.
    ///
    /// # Safety
    /// For a buffer, the pointer must be valid for reading the length it starts with and
    /// that many bytes after it.
    unsafe fn take(passed: Self::Passed) -> Self::Native;
    /// The argument with its handle cloned by `clone`, for the first parameter of a method:
    /// what the generated code's `_uniffi_clone_handle()` does. Only handles (`L`) clone.
    ///
    /// # Safety
    /// `clone` is the address of the handle's clone function (or 0: no clone), `status` a
    /// valid call status.
    unsafe fn cloned(native: Self::Native, _clone: usize, _status: *mut c_void) -> Self::Native {
        native
    }
}

/// How a shape's return value crosses back.
pub trait Return {
    /// The scaffolding function's return type.
    type Native;
    /// The type `ctypes` gets back.
    type Passed;
    /// What is returned when the call failed (the status code is nonzero).
    const FAILED: Self::Passed;
    /// Hands the result over: a buffer is copied into the context's scratch memory (its
    /// length returned) when it fits and freed, else written to its `out` whole (-1
    /// returned).
    ///
    /// # Safety
    /// The context's `scratch` is valid for writing `cap` bytes.
    unsafe fn give(native: Self::Native, context: &mut Context) -> Self::Passed;
}

/// Integers come back as they are; after an error the caller reads the status.
macro_rules! integers {
    ($($kind:ident = $t:ty),*) => {$(
        impl Return for $kind {
            type Native = $t;
            type Passed = $t;
            const FAILED: $t = 0;
            unsafe fn give(native: $t, _: &mut Context) -> $t {
                native
            }
        }
    )*};
}

integers!(L = u64, I = i32, B = i8);

impl Param for L {
    type Passed = u64;
    type Native = u64;
    unsafe fn take(passed: u64) -> u64 {
        passed
    }
    unsafe fn cloned(handle: u64, clone: usize, status: *mut c_void) -> u64 {
        if clone == 0 {
            return handle;
        }
        // SAFETY: `clone` is the address of a UniFFI clone function (the contract).
        unsafe { std::mem::transmute::<usize, Clone>(clone)(handle, status) }
    }
}

impl Param for I {
    type Passed = i32;
    type Native = i32;
    unsafe fn take(passed: i32) -> i32 {
        passed
    }
}

impl Param for R {
    type Passed = *const u8;
    type Native = Buf;
    unsafe fn take(passed: *const u8) -> Buf {
        let bytes = if passed.is_null() {
            &[][..]
        } else {
            // SAFETY: `passed` holds an 8-byte length and then that many bytes (the contract).
            unsafe {
                let len = u64::from_le_bytes(passed.cast::<[u8; 8]>().read_unaligned());
                std::slice::from_raw_parts(passed.add(8), len as usize)
            }
        };
        let buffer = uniffi::RustBuffer::from_vec(bytes.to_vec());
        // SAFETY: `RustBuffer` is `#[repr(C)]` with `Buf`'s three fields. The scaffolding
        // function owns it from here, as it owns any argument buffer.
        unsafe { std::mem::transmute::<uniffi::RustBuffer, Buf>(buffer) }
    }
}

impl Return for U {
    type Native = ();
    type Passed = i64;
    const FAILED: i64 = FAILED;
    unsafe fn give(_: (), _: &mut Context) -> i64 {
        0
    }
}

impl Return for R {
    type Native = Buf;
    type Passed = i64;
    const FAILED: i64 = FAILED;
    unsafe fn give(native: Buf, context: &mut Context) -> i64 {
        if native.len > context.cap || native.len > i64::MAX as u64 {
            // The caller reads and frees it.
            context.out = native;
            return -1;
        }
        // SAFETY: a returned buffer's `data` holds `len` bytes and `scratch` has room for
        // `cap` >= `len` (the contract); the buffer came from `RustBuffer::from_vec` in the
        // scaffolding function, so this function may free it once copied.
        unsafe {
            if native.len > 0 {
                std::ptr::copy_nonoverlapping(native.data, context.scratch, native.len as usize);
            }
            let len = native.len as i64;
            std::mem::transmute::<Buf, uniffi::RustBuffer>(native).destroy();
            len
        }
    }
}

/// Makes one exported function per shape of `jna_shapes.rs`.
macro_rules! py_shapes {
    ($( $name:ident ( $first:ident : $first_kind:ident $(, $arg:ident : $kind:ident)* )
        -> $ret:ident ; )*) => {$(
        /// Clones the first argument's handle with `clone` (unless 0), then calls the
        /// scaffolding function at `entry` with this function's arguments (buffers made from
        /// the given bytes) and the context's status. A returned buffer is copied to the
        /// context's scratch memory when it fits (its length is returned) or written to its
        /// `out` (-1); after an error (a nonzero status code) a buffer or no return gives -2,
        /// an integer 0.
        ///
        /// # Safety
        /// `entry` is the address of a UniFFI scaffolding function of exactly this shape and
        /// `clone` of the clone function of the object whose handle comes first (or 0); every
        /// buffer argument points to an 8-byte little-endian length and that many bytes;
        /// `context` is valid, its scratch memory has room for `cap` bytes, and its status
        /// code is 0.
        #[allow(non_snake_case)]
        #[export_name = concat!("orgdb_py_", stringify!($name))]
        pub unsafe extern "C" fn $name(
            clone: usize,
            entry: usize,
            $first: <$first_kind as Param>::Passed,
            $($arg: <$kind as Param>::Passed,)*
            context: *mut Context,
        ) -> <$ret as Return>::Passed {
            type Entry = unsafe extern "C" fn(
                <$first_kind as Param>::Native,
                $(<$kind as Param>::Native,)*
                *mut c_void,
            ) -> <$ret as Return>::Native;
            // SAFETY: `entry` and `clone` are functions of these shapes, the buffers and
            // the context are as the contract says, and `Buf` has `RustBuffer`'s layout.
            unsafe {
                let context = &mut *context;
                if context.status.code != 0 {
                    // A status not read yet (the contract says 0): take nothing, so that
                    // nothing leaks, and leave it to its reader.
                    return <$ret as Return>::FAILED;
                }
                let status = std::ptr::addr_of_mut!(context.status).cast::<c_void>();
                let first = <$first_kind as Param>::take($first);
                let first = <$first_kind as Param>::cloned(first, clone, status);
                if context.status.code != 0 {
                    // The clone failed: nothing was taken, and the status says why.
                    return <$ret as Return>::FAILED;
                }
                let call = std::mem::transmute::<usize, Entry>(entry);
                let result = call(first, $(<$kind as Param>::take($arg),)* status);
                if context.status.code != 0 {
                    return <$ret as Return>::FAILED;
                }
                <$ret as Return>::give(result, context)
            }
        }
    )*};
}

/// The shapes' list names its macro `jna_shapes!`.
macro_rules! jna_shapes {
    ($($shapes:tt)*) => {
        py_shapes! { $($shapes)* }
    };
}

include!("jna_shapes.rs");

#[cfg(test)]
mod tests {
    use super::*;

    /// A clone function that counts its calls in the handle's high bits.
    extern "C" fn clone(handle: u64, _status: *mut c_void) -> u64 {
        handle + (1 << 32)
    }

    /// A clone function that fails as UniFFI reports a panic.
    extern "C" fn failing_clone(handle: u64, status: *mut c_void) -> u64 {
        // SAFETY: the entry point passes its context's status.
        unsafe { (*status.cast::<Status>()).code = 2 };
        handle
    }

    /// A scaffolding function: the handle, both buffers' bytes and the count, concatenated;
    /// a count of 0 fails as UniFFI reports an error.
    extern "C" fn concat(handle: u64, a: Buf, b: Buf, count: u64, status: *mut c_void) -> Buf {
        let mut v = handle.to_be_bytes().to_vec();
        for buf in [a, b] {
            // SAFETY: `take` made the buffers from vectors.
            let bytes = unsafe { std::mem::transmute::<Buf, uniffi::RustBuffer>(buf) };
            v.extend(bytes.destroy_into_vec());
        }
        v.extend_from_slice(&count.to_be_bytes());
        if count == 0 {
            // SAFETY: the entry point passes its context's status.
            let status = unsafe { &mut *status.cast::<Status>() };
            status.code = 1;
            // SAFETY: `RustBuffer` and `Buf` have one layout.
            status.error = unsafe {
                std::mem::transmute::<uniffi::RustBuffer, Buf>(uniffi::RustBuffer::from_vec(v))
            };
            return empty();
        }
        // SAFETY: `RustBuffer` and `Buf` have one layout.
        unsafe { std::mem::transmute::<uniffi::RustBuffer, Buf>(uniffi::RustBuffer::from_vec(v)) }
    }

    py_shapes! {
        LRRL_R_TEST(a: L, b: R, c: R, d: L) -> R;
    }

    fn framed(bytes: &[u8]) -> Vec<u8> {
        let mut v = (bytes.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(bytes);
        v
    }

    fn empty() -> Buf {
        Buf {
            capacity: 0,
            len: 0,
            data: std::ptr::null_mut(),
        }
    }

    fn context(scratch: &mut [u8]) -> Context {
        Context {
            scratch: scratch.as_mut_ptr(),
            cap: scratch.len() as u64,
            out: empty(),
            status: Status {
                code: 0,
                error: empty(),
            },
        }
    }

    /// Calls the test shape with `clone`, handle 7, the two framed buffers and `count`.
    fn call(clone: usize, a: &[u8], b: Option<&[u8]>, count: u64, context: &mut Context) -> i64 {
        let (a, b) = (framed(a), b.map(framed));
        // SAFETY: `concat` has the shape L R R L -> R, the buffers are framed (or null: read
        // as empty) and live, and so is the context.
        unsafe {
            LRRL_R_TEST(
                clone,
                concat as *const () as usize,
                7,
                a.as_ptr(),
                b.as_ref().map_or(std::ptr::null(), |b| b.as_ptr()),
                count,
                context,
            )
        }
    }

    fn want(handle: u64, bytes: &[u8], count: u64) -> Vec<u8> {
        let mut want = handle.to_be_bytes().to_vec();
        want.extend_from_slice(bytes);
        want.extend_from_slice(&count.to_be_bytes());
        want
    }

    fn owned(buf: Buf) -> Vec<u8> {
        // SAFETY: `concat` made the buffer with `RustBuffer::from_vec`.
        unsafe { std::mem::transmute::<Buf, uniffi::RustBuffer>(buf) }.destroy_into_vec()
    }

    #[test]
    fn a_call_clones_the_handle_and_copies_a_result_that_fits() {
        let mut scratch = [0u8; 64];
        let mut cx = context(&mut scratch);
        let n = call(clone as *const () as usize, b"ab", Some(b"cde"), 9, &mut cx);
        assert!(
            cx.out.data.is_null(),
            "a result that fits is not handed over"
        );
        assert_eq!(cx.status.code, 0);
        let want = want((1 << 32) + 7, b"abcde", 9);
        assert_eq!(n, want.len() as i64);
        assert_eq!(&scratch[..want.len()], &want[..]);
    }

    #[test]
    fn a_result_too_big_for_the_scratch_is_handed_over_whole() {
        let mut scratch = [0u8; 4];
        let mut cx = context(&mut scratch);
        // Without a clone function the handle passes as it is.
        let n = call(0, b"ab", Some(b""), 1, &mut cx);
        assert_eq!(n, -1);
        assert_eq!(owned(cx.out), want(7, b"ab", 1));
        assert_eq!(scratch, [0u8; 4], "nothing is copied when it does not fit");
    }

    #[test]
    fn an_error_leaves_its_buffer_in_the_status() {
        let mut scratch = [0u8; 64];
        let mut cx = context(&mut scratch);
        let n = call(0, b"x", None, 0, &mut cx);
        assert_eq!((n, cx.status.code), (FAILED, 1));
        assert_eq!(owned(cx.status.error), want(7, b"x", 0));
        assert_eq!(scratch, [0u8; 64]);
    }

    #[test]
    fn a_status_not_read_yet_makes_a_call_take_nothing() {
        let mut scratch = [0u8; 64];
        let mut cx = context(&mut scratch);
        cx.status.code = 1;
        // `failing_clone` would set code 2; `concat` would write a result.
        let n = call(failing_clone as *const () as usize, b"ab", None, 1, &mut cx);
        assert_eq!((n, cx.status.code), (FAILED, 1));
        assert_eq!(scratch, [0u8; 64]);
    }

    #[test]
    fn a_failed_clone_calls_nothing_and_takes_no_argument() {
        let mut scratch = [0u8; 64];
        let mut cx = context(&mut scratch);
        // `concat` would return a result (or fail with code 1) if it ran.
        let n = call(failing_clone as *const () as usize, b"ab", None, 1, &mut cx);
        assert_eq!((n, cx.status.code), (FAILED, 2));
        assert_eq!(scratch, [0u8; 64]);
        assert!(cx.out.data.is_null() && cx.status.error.data.is_null());
    }
}
