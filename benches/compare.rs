//! Placeholder replaced by the comparison harness.
fn main() {}
