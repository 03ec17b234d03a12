//! The UniFFI surface: the only module that knows UniFFI. It converts arguments and errors;
//! all logic stays in the plain Rust API.
//!
//! Conventions at the boundary (the binding READMEs repeat them for users):
//! - Timestamps are `SystemTime` (Python: a timezone-aware UTC `datetime`; Kotlin:
//!   `java.time.Instant`), with microsecond precision like everything orgdb stores.
//! - Dates (usage days, report ranges, `prune_usage`) are ISO `YYYY-MM-DD` strings.
//! - Roles, statuses and kinds come back as enums; roles and statuses go in as
//!   case-insensitive strings, as in the Rust API, so a bad one is a `validation_error`.
//! - Every failure is one [`OrgDbError`] whose variants carry `code`, `message` and
//!   `details` (string → string; see [`error`]).
//! - Nothing exported is `async`, and no conversion here can panic: bad values become
//!   `validation_error`s naming the field.

mod clock;
mod convert;
mod db;
mod error;
mod inputs;
mod records;

/// Trims and lower-cases an email, as orgdb does everywhere.
#[uniffi::export]
pub fn normalize_email(email: String) -> String {
    crate::validate::normalize_email(&email)
}
