// The signature shapes of UniFFI's scaffolding functions that the bindings' direct entry points
// serve: one `<shape>` for Kotlin (src/ffi/jna.rs says what they are for) and one
// `orgdb_py_<shape>` for Python (src/ffi/py.rs). This file is read by two crates, each with its
// own `jna_shapes!`: orgdb makes the functions, and the workspace's `uniffi-bindgen` takes the
// Kotlin names, so the generated Kotlin calls only entry points that exist (the Python runtime
// looks its names up in the library when it loads). A name spells the shape: the parameters
// before the status (`L` a 64-bit integer or handle, `I` a 32-bit one, `R` a `RustBuffer`),
// then the return (`R`, `L`, `I`, `B` for a byte, `U` for none). A scaffolding function whose
// shape is missing here keeps UniFFI's own call (slower); for Kotlin `uniffi-bindgen` warns,
// which fails bindings/kotlin/run-tests.sh.
jna_shapes! {
    L_R(a: L) -> R;
    R_R(a: R) -> R;
    LR_R(a: L, b: R) -> R;
    RL_R(a: R, b: L) -> R;
    LRR_R(a: L, b: R, c: R) -> R;
    LRL_R(a: L, b: R, c: L) -> R;
    LRRR_R(a: L, b: R, c: R, d: R) -> R;
    LRRL_R(a: L, b: R, c: R, d: L) -> R;
    LRRRR_R(a: L, b: R, c: R, d: R, e: R) -> R;
    LRRLI_R(a: L, b: R, c: R, d: L, e: I) -> R;
    LRRRRR_R(a: L, b: R, c: R, d: R, e: R, f: R) -> R;
    R_U(a: R) -> U;
    LR_U(a: L, b: R) -> U;
    LRR_U(a: L, b: R, c: R) -> U;
    LRRR_U(a: L, b: R, c: R, d: R) -> U;
    LRRRR_U(a: L, b: R, c: R, d: R, e: R) -> U;
    R_L(a: R) -> L;
    LR_L(a: L, b: R) -> L;
    RR_L(a: R, b: R) -> L;
    R_I(a: R) -> I;
    LRR_B(a: L, b: R, c: R) -> B;
    // Shapes without a buffer: Kotlin calls these as UniFFI declares them; Python saves the
    // handle's clone, a foreign call of its own.
    L_U(a: L) -> U;
    L_L(a: L) -> L;
    L_B(a: L) -> B;
    LL_U(a: L, b: L) -> U;
    LL_L(a: L, b: L) -> L;
}
