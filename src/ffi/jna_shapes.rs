// The pointer-only entry points of the Kotlin binding, one per signature shape of UniFFI's
// scaffolding functions (src/ffi/jna.rs says what they are for). This file is read by two
// crates, each with its own `jna_shapes!`: orgdb makes the functions, and the workspace's
// `uniffi-bindgen` takes the names, so the generated Kotlin calls only entry points that
// exist. A name spells the shape: the parameters before the status (`L` a 64-bit integer or
// handle, `I` a 32-bit one, `R` a `RustBuffer`), then the return (`R`, `L`, `I`, `B` for a
// byte, `U` for none). A scaffolding function whose shape is missing here keeps UniFFI's own
// call (slower), and `uniffi-bindgen` warns, which fails bindings/kotlin/run-tests.sh.
jna_shapes! {
    orgdb_jna_L_R(a: L) -> R;
    orgdb_jna_R_R(a: R) -> R;
    orgdb_jna_LR_R(a: L, b: R) -> R;
    orgdb_jna_RL_R(a: R, b: L) -> R;
    orgdb_jna_LRR_R(a: L, b: R, c: R) -> R;
    orgdb_jna_LRL_R(a: L, b: R, c: L) -> R;
    orgdb_jna_LRRR_R(a: L, b: R, c: R, d: R) -> R;
    orgdb_jna_LRRL_R(a: L, b: R, c: R, d: L) -> R;
    orgdb_jna_LRRRR_R(a: L, b: R, c: R, d: R, e: R) -> R;
    orgdb_jna_LRRLI_R(a: L, b: R, c: R, d: L, e: I) -> R;
    orgdb_jna_LRRRRR_R(a: L, b: R, c: R, d: R, e: R, f: R) -> R;
    orgdb_jna_R_U(a: R) -> U;
    orgdb_jna_LR_U(a: L, b: R) -> U;
    orgdb_jna_LRR_U(a: L, b: R, c: R) -> U;
    orgdb_jna_LRRR_U(a: L, b: R, c: R, d: R) -> U;
    orgdb_jna_LRRRR_U(a: L, b: R, c: R, d: R, e: R) -> U;
    orgdb_jna_R_L(a: R) -> L;
    orgdb_jna_LR_L(a: L, b: R) -> L;
    orgdb_jna_RR_L(a: R, b: R) -> L;
    orgdb_jna_R_I(a: R) -> I;
    orgdb_jna_LRR_B(a: L, b: R, c: R) -> B;
}
