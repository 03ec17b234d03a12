#![no_main]

use libfuzzer_sys::fuzz_target;

// The body lives in fuzz/src/bodies.rs, shared with tests/fuzz_smoke.rs.
fuzz_target!(|data: &[u8]| orgdb_fuzz::bodies::import_lines(data));
