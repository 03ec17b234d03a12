//! Entry points for the fuzz targets (`fuzz/`) and their smoke tests: they reach the decoders
//! of stored bytes, which are not public API. Each must return (an error or a value) on any
//! input, never panic, never allocate without bound.

use crate::store::fuzz_decode_all;

/// Decodes `bytes` as every stored record type, a counter, and a journal record of any
/// generation. Returns how many decodings succeeded.
pub fn decode_stored(bytes: &[u8]) -> usize {
    fuzz_decode_all(bytes)
}
