//! The fuzz target bodies. `bodies.rs` is also compiled into `tests/fuzz_smoke.rs` of the main
//! crate (through `#[path]`), so the CI smoke pass runs exactly the code the fuzzer runs.

pub mod bodies;
