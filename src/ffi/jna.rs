//! Pointer-only entry points for the Kotlin binding.
//!
//! UniFFI's scaffolding functions take and return `RustBuffer`s by value. JNA can pass a
//! structure by value only through its slowest path: for each one it calls back into the JVM
//! to write or read the structure, and it builds a new `Structure` object for every returned
//! one (a profile of `get_organization` from Kotlin put more of a call's time there than in
//! the engine; BENCHMARKS.md, "From Kotlin"). The functions here take the scaffolding
//! function's address and its arguments as plain integers and pointers, and call it with the
//! exact signature it was compiled with: a `RustBuffer` argument is read from the address the
//! caller gives, a returned one is written to `out`, and the call status is passed through
//! untouched. So JNA sees only integers, which it passes without any call back into the JVM.
//!
//! One function serves every scaffolding function of one signature shape; the shapes are
//! listed in `jna_shapes.rs`, which the workspace's `uniffi-bindgen` reads too, so the
//! generated Kotlin calls only shapes that exist here. Nothing here reads, allocates or frees
//! a buffer's bytes: ownership moves exactly as in the direct call (arguments to Rust, the
//! result to the caller).

use std::ffi::c_void;

/// A `RustBuffer` as UniFFI lays it out (`#[repr(C)]`: capacity, length, data pointer). The
/// scaffolding functions are called with this type in place of theirs: the same layout, so the
/// same calling convention.
#[repr(C)]
pub struct Buf {
    pub(super) capacity: u64,
    pub(super) len: u64,
    pub(super) data: *mut u8,
}

/// How one parameter of a shape crosses: `Passed` is what the Kotlin side gives, `Native` what
/// the scaffolding function takes.
pub trait Param {
    /// The type JNA passes.
    type Passed;
    /// The scaffolding function's parameter type.
    type Native;
    /// Turns the passed value into the scaffolding function's argument.
    ///
    /// # Safety
    /// For a buffer, the pointer must be valid for reading one [`Buf`].
    unsafe fn take(passed: Self::Passed) -> Self::Native;
}

/// How a shape's return value crosses back.
pub trait Return {
    /// The scaffolding function's return type.
    type Native;
    /// The type JNA gets back.
    type Passed;
    /// Hands the result over, writing a buffer to `out`.
    ///
    /// # Safety
    /// For a buffer, `out` must be valid for writing one [`Buf`].
    unsafe fn give(native: Self::Native, out: *mut Buf) -> Self::Passed;
}

/// A 64-bit integer or handle (Kotlin `Long`).
pub struct L;
/// A 32-bit integer (Kotlin `Int`).
pub struct I;
/// A byte (Kotlin `Byte`).
pub struct B;
/// A `RustBuffer`: for Kotlin a pointer to its three fields as a parameter, written to `out`
/// as a return (Python's way is `py.rs`'s).
pub struct R;
/// No return value.
pub struct U;

/// Integers cross as they are, in both directions.
macro_rules! integers {
    ($($kind:ident = $t:ty),*) => {$(
        impl Param for $kind {
            type Passed = $t;
            type Native = $t;
            unsafe fn take(passed: $t) -> $t {
                passed
            }
        }

        impl Return for $kind {
            type Native = $t;
            type Passed = $t;
            unsafe fn give(native: $t, _out: *mut Buf) -> $t {
                native
            }
        }
    )*};
}

integers!(L = u64, I = i32, B = i8);

impl Param for R {
    type Passed = *const Buf;
    type Native = Buf;
    unsafe fn take(passed: *const Buf) -> Buf {
        // SAFETY: the caller passes the address of three written fields (the contract).
        unsafe { passed.read_unaligned() }
    }
}

impl Return for U {
    type Native = ();
    type Passed = ();
    unsafe fn give(_native: (), _out: *mut Buf) {}
}

impl Return for R {
    type Native = Buf;
    type Passed = ();
    unsafe fn give(native: Buf, out: *mut Buf) {
        // SAFETY: the caller passes room for one `Buf` (the contract).
        unsafe { out.write_unaligned(native) }
    }
}

/// Copies `len` bytes at `data` into a new Rust-owned buffer, written to `out`: the Kotlin
/// side lowers an argument into its own scratch memory and hands it over with this one call,
/// where UniFFI's lowering allocates the buffer first (a call returning a structure) and then
/// writes into it through a JNA view of Rust's memory (a new direct buffer, made by a call
/// back into the JVM).
///
/// # Safety
/// `data` is valid for reading `len` bytes (or `len` is 0); `out` has room for one buffer.
#[no_mangle]
pub unsafe extern "C" fn orgdb_jna_buffer_from(data: *const u8, len: u64, out: *mut Buf) {
    let bytes = match usize::try_from(len) {
        // SAFETY: `data` holds `len` bytes (the contract).
        Ok(len) if len > 0 && !data.is_null() => unsafe { std::slice::from_raw_parts(data, len) },
        _ => &[],
    };
    let buffer = uniffi::RustBuffer::from_vec(bytes.to_vec());
    // SAFETY: `RustBuffer` is `#[repr(C)]` with `Buf`'s three fields; `out` has room for one
    // (the contract). The buffer's bytes are freed by whoever it is passed to, as for any
    // buffer UniFFI makes.
    unsafe { out.write_unaligned(std::mem::transmute::<uniffi::RustBuffer, Buf>(buffer)) }
}

/// Makes one exported function per shape of `jna_shapes.rs`.
macro_rules! jna_shapes {
    ($( $name:ident ( $($arg:ident : $kind:ident),* ) -> $ret:ident ; )*) => {$(
        /// Calls the scaffolding function at `entry`, whose parameters are this function's
        /// (buffers read from the given addresses) followed by the call status, and whose
        /// return is written to `out` if it is a buffer.
        ///
        /// # Safety
        /// `entry` is the address of a UniFFI scaffolding function of exactly this shape;
        /// every buffer address points to three written fields that the callee may own;
        /// `out` has room for one buffer; `status` is a valid `RustCallStatus`.
        #[allow(non_snake_case)]
        #[export_name = concat!("orgdb_jna_", stringify!($name))]
        pub unsafe extern "C" fn $name(
            entry: usize,
            $($arg: <$kind as Param>::Passed,)*
            out: *mut Buf,
            status: *mut c_void,
        ) -> <$ret as Return>::Passed {
            type Entry = unsafe extern "C" fn(
                $(<$kind as Param>::Native,)*
                *mut c_void,
            ) -> <$ret as Return>::Native;
            // SAFETY: `entry` is a scaffolding function of this shape (the contract), and
            // `Buf` has `RustBuffer`'s layout.
            unsafe {
                let call = std::mem::transmute::<usize, Entry>(entry);
                let result = call($(<$kind as Param>::take($arg),)* status);
                <$ret as Return>::give(result, out)
            }
        }
    )*};
}

include!("jna_shapes.rs");

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" fn concat(handle: u64, a: Buf, b: Buf, flag: i32, status: *mut c_void) -> Buf {
        // SAFETY: the test passes buffers made from live vectors below.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(a.data, a.len as usize),
                std::slice::from_raw_parts(b.data, b.len as usize),
            )
        };
        let mut v = Vec::from(a);
        v.extend_from_slice(b);
        v.push(handle as u8);
        v.push(flag as u8);
        // SAFETY: the test passes a byte to write the status to.
        unsafe { *(status as *mut i8) = 7 };
        let mut v = std::mem::ManuallyDrop::new(v);
        Buf {
            capacity: v.capacity() as u64,
            len: v.len() as u64,
            data: v.as_mut_ptr(),
        }
    }

    jna_shapes! {
        LRRI_R(a: L, b: R, c: R, d: I) -> R;
    }

    #[test]
    fn a_buffer_from_foreign_bytes_owns_a_copy() {
        let mut out = Buf {
            capacity: 0,
            len: 0,
            data: std::ptr::null_mut(),
        };
        let bytes = b"hello".to_vec();
        // SAFETY: `bytes` is live; `out` has room for one buffer.
        unsafe { orgdb_jna_buffer_from(bytes.as_ptr(), 5, &mut out) };
        drop(bytes);
        // SAFETY: the buffer was made from a vector by `RustBuffer::from_vec`.
        let got = unsafe { Vec::from_raw_parts(out.data, out.len as usize, out.capacity as usize) };
        assert_eq!(got, b"hello");
        // SAFETY: no bytes are read when the length is 0, whatever the pointer.
        unsafe { orgdb_jna_buffer_from(std::ptr::null(), 0, &mut out) };
        assert_eq!(out.len, 0);
        // SAFETY: as above: an empty vector's parts.
        drop(unsafe { Vec::from_raw_parts(out.data, 0, out.capacity as usize) });
    }

    #[test]
    fn a_shape_passes_buffers_by_address_and_writes_the_result() {
        let mut x = b"ab".to_vec();
        let mut y = b"cd".to_vec();
        let bx = Buf {
            capacity: x.capacity() as u64,
            len: x.len() as u64,
            data: x.as_mut_ptr(),
        };
        let by = Buf {
            capacity: y.capacity() as u64,
            len: y.len() as u64,
            data: y.as_mut_ptr(),
        };
        let mut out = Buf {
            capacity: 0,
            len: 0,
            data: std::ptr::null_mut(),
        };
        let mut status = 0i8;
        // SAFETY: `concat` has the shape L R R I -> R; the buffers and `out` are live.
        unsafe {
            LRRI_R(
                concat as *const () as usize,
                b'!' as u64,
                &bx,
                &by,
                i32::from(b'?'),
                &mut out,
                (&mut status as *mut i8).cast(),
            )
        };
        // SAFETY: `concat` made `out` from a vector it leaked.
        let got = unsafe { Vec::from_raw_parts(out.data, out.len as usize, out.capacity as usize) };
        assert_eq!(got, b"abcd!?");
        assert_eq!(status, 7);
    }
}
