//! The UniFFI surface: the only module that knows UniFFI. It converts arguments and errors;
//! all logic stays in the plain Rust API.
//!
//! The records and enums are the model types themselves: `crate::model` derives
//! `uniffi::Record` / `uniffi::Enum` on them behind this feature, with the custom types of
//! [`custom`] for chrono timestamps and dates, sorted maps and JSON values. What is left here:
//! the exported objects ([`db`], the manual clock and options of [`clock`]), the error
//! ([`error`]), the custom types, and the few inputs and results UniFFI cannot derive from the
//! model ([`inputs`], [`records`], each saying why).
//!
//! Conventions at the boundary (the binding READMEs repeat them for users):
//! - Timestamps are instants (Python: a timezone-aware UTC `datetime`; Kotlin:
//!   `java.time.Instant`), with microsecond precision like everything orgdb stores.
//! - Dates (usage days, report ranges, `prune_usage`) are ISO `YYYY-MM-DD` strings.
//! - Roles, statuses and kinds come back as enums; roles and statuses go in as
//!   case-insensitive strings, as in the Rust API, so a bad one is a `validation_error`.
//! - Every failure is one [`OrgDbError`](error::OrgDbError) whose variants carry `code`,
//!   `message` and `details` (string → string; see [`error`]).
//! - Nothing exported is `async`, and no conversion here can panic: bad values become
//!   `validation_error`s.

mod clock;
mod custom;
mod db;
mod error;
mod inputs;
mod jna;
mod py;
mod records;

/// Trims and lower-cases an email, as orgdb does everywhere.
#[uniffi::export]
pub fn normalize_email(email: String) -> String {
    crate::validate::normalize_email(&email)
}
