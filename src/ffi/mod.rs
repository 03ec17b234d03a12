//! The UniFFI surface: the only module that knows UniFFI. It converts arguments and errors;
//! all logic stays in the plain Rust API.
