//! `uniffi-bindgen`: generates the Python and Kotlin bindings from the built cdylib.
fn main() {
    uniffi::uniffi_bindgen_main()
}
