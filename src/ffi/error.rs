//! The one error type of the bindings.
//!
//! `details` crosses as a string → string map: string values as themselves, every other JSON
//! value (numbers, booleans, arrays, objects) as its compact JSON text. So a quota error has
//! `details["quota"] == "team_members"` and `details["limit"] == "5"`, and a validation
//! error `details["role"] == "Must be one of: viewer, member, admin, owner"`.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::{Details, Error};

/// Every failure of an orgdb call. One variant per stable `code`; each carries the code, the
/// human-readable message and the structured details.
///
/// Python: `orgdb.OrgDbError.NotFound` and so on, with `.code`, `.message`, `.details`.
/// Kotlin: the sealed `OrgDbException` with `code`, `errorMessage` and `details` (the field is
/// renamed there because `message` belongs to `Throwable`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum OrgDbError {
    /// `not_found`: the entity does not exist, or belongs to another organization.
    #[error("{message}")]
    NotFound {
        /// Always `not_found`.
        code: String,
        /// Names the entity ("Member not found").
        message: String,
        /// Usually empty.
        details: HashMap<String, String>,
    },
    /// `forbidden`: the actor's role does not allow the action.
    #[error("{message}")]
    Forbidden {
        /// Always `forbidden`.
        code: String,
        /// Human-readable message.
        message: String,
        /// Usually empty.
        details: HashMap<String, String>,
    },
    /// `validation_error`: bad input.
    #[error("{message}")]
    Validation {
        /// Always `validation_error`.
        code: String,
        /// Human-readable summary.
        message: String,
        /// Each bad field → the reason.
        details: HashMap<String, String>,
    },
    /// `conflict`: a uniqueness rule or an invariant (slug taken, duplicate invitation, last
    /// owner).
    #[error("{message}")]
    Conflict {
        /// Always `conflict`.
        code: String,
        /// Human-readable message.
        message: String,
        /// Context a caller can act on (`invitation_id`, `email`, `organizations`).
        details: HashMap<String, String>,
    },
    /// `quota_exceeded`: a limit would be passed.
    #[error("{message}")]
    QuotaExceeded {
        /// Always `quota_exceeded`.
        code: String,
        /// Human-readable message.
        message: String,
        /// `quota` (the limit's name), `limit`, `used`, `requested` (integers as text).
        details: HashMap<String, String>,
    },
    /// `invitation_expired`: accepting an invitation whose expiry has passed.
    #[error("{message}")]
    InvitationExpired {
        /// Always `invitation_expired`.
        code: String,
        /// Human-readable message.
        message: String,
        /// `invitation_id`.
        details: HashMap<String, String>,
    },
    /// `storage_error`: the file or the disk failed, or the database is in use elsewhere.
    #[error("{message}")]
    Storage {
        /// Always `storage_error`.
        code: String,
        /// What failed.
        message: String,
        /// Usually empty.
        details: HashMap<String, String>,
    },
    /// `incompatible_version`: a newer orgdb wrote the file.
    #[error("{message}")]
    IncompatibleVersion {
        /// Always `incompatible_version`.
        code: String,
        /// Human-readable message.
        message: String,
        /// `found` and `supported` schema versions.
        details: HashMap<String, String>,
    },
    /// `corrupted`: stored bytes could not be decoded, or an invariant of the file is broken.
    #[error("{message}")]
    Corrupted {
        /// Always `corrupted`.
        code: String,
        /// What was found wrong.
        message: String,
        /// Usually empty.
        details: HashMap<String, String>,
    },
}

#[uniffi::export]
impl OrgDbError {
    /// The HTTP status a host would answer with (404, 403, 422, 409, 429 or 403, 410, 500):
    /// [`Error::http_status`] of the error this one was made from.
    pub fn http_status(&self) -> u16 {
        let (code, details) = self.parts();
        crate::error::http_status_of(code, details.get("quota").map(String::as_str))
    }
}

impl OrgDbError {
    /// The code and the details, whatever the variant.
    fn parts(&self) -> (&str, &HashMap<String, String>) {
        match self {
            OrgDbError::NotFound { code, details, .. }
            | OrgDbError::Forbidden { code, details, .. }
            | OrgDbError::Validation { code, details, .. }
            | OrgDbError::Conflict { code, details, .. }
            | OrgDbError::QuotaExceeded { code, details, .. }
            | OrgDbError::InvitationExpired { code, details, .. }
            | OrgDbError::Storage { code, details, .. }
            | OrgDbError::IncompatibleVersion { code, details, .. }
            | OrgDbError::Corrupted { code, details, .. } => (code, details),
        }
    }
}

/// One details value as text: strings as themselves, anything else as compact JSON.
fn value_text(value: Value) -> String {
    match value {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

fn details_map(details: Details) -> HashMap<String, String> {
    details
        .into_iter()
        .map(|(k, v)| (k, value_text(v)))
        .collect()
}

/// An exception of another type raised by a callback (such as `ImportProgress`):
/// `storage_error` with the exception's text, since orgdb cannot carry a foreign exception
/// through.
impl From<uniffi::UnexpectedUniFFICallbackError> for OrgDbError {
    fn from(err: uniffi::UnexpectedUniFFICallbackError) -> OrgDbError {
        OrgDbError::from(Error::storage(format!("a callback failed: {}", err.reason)))
    }
}

impl From<Error> for OrgDbError {
    fn from(err: Error) -> OrgDbError {
        let code = err.code().to_owned();
        let message = err.message();
        let details = details_map(err.details());
        // Exhaustive on purpose: a new core variant must pick its binding variant here.
        match err {
            Error::NotFound { .. } => OrgDbError::NotFound {
                code,
                message,
                details,
            },
            Error::Forbidden { .. } => OrgDbError::Forbidden {
                code,
                message,
                details,
            },
            Error::Validation { .. } => OrgDbError::Validation {
                code,
                message,
                details,
            },
            Error::Conflict { .. } => OrgDbError::Conflict {
                code,
                message,
                details,
            },
            Error::QuotaExceeded { .. } => OrgDbError::QuotaExceeded {
                code,
                message,
                details,
            },
            Error::InvitationExpired { .. } => OrgDbError::InvitationExpired {
                code,
                message,
                details,
            },
            Error::Storage { .. } => OrgDbError::Storage {
                code,
                message,
                details,
            },
            Error::IncompatibleVersion { .. } => OrgDbError::IncompatibleVersion {
                code,
                message,
                details,
            },
            Error::Corrupted { .. } => OrgDbError::Corrupted {
                code,
                message,
                details,
            },
        }
    }
}

/// A `validation_error` naming `field`, for values that cannot be converted at the boundary.
pub(crate) fn invalid(field: &str, reason: &str) -> OrgDbError {
    Error::invalid(field, reason).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_keeps_code_message_and_details() {
        let cases = [
            (Error::not_found("Member"), "not_found", 404),
            (Error::forbidden(), "forbidden", 403),
            (Error::invalid("role", "bad"), "validation_error", 422),
            (
                Error::conflict_with("dup", "invitation_id", "inv_1"),
                "conflict",
                409,
            ),
            (Error::quota("team_members", 5, 5, 1), "quota_exceeded", 403),
            (
                Error::quota("monthly_requests", 5, 5, 1),
                "quota_exceeded",
                429,
            ),
            (
                Error::InvitationExpired {
                    invitation_id: "inv_1".into(),
                },
                "invitation_expired",
                410,
            ),
            (Error::storage("disk"), "storage_error", 500),
            (
                Error::IncompatibleVersion {
                    format: "database schema",
                    found: 9,
                    supported: 1,
                },
                "incompatible_version",
                500,
            ),
            (Error::corrupted("bad"), "corrupted", 500),
        ];
        for (err, code, status) in cases {
            let message = err.message();
            let ffi = OrgDbError::from(err);
            assert_eq!(ffi.http_status(), status, "{code}");
            let (got_code, got_message) = match &ffi {
                OrgDbError::NotFound { code, message, .. }
                | OrgDbError::Forbidden { code, message, .. }
                | OrgDbError::Validation { code, message, .. }
                | OrgDbError::Conflict { code, message, .. }
                | OrgDbError::QuotaExceeded { code, message, .. }
                | OrgDbError::InvitationExpired { code, message, .. }
                | OrgDbError::Storage { code, message, .. }
                | OrgDbError::IncompatibleVersion { code, message, .. }
                | OrgDbError::Corrupted { code, message, .. } => (code, message),
            };
            assert_eq!(got_code, code);
            assert_eq!(got_message, &message);
        }
    }

    #[test]
    fn details_values_are_text() {
        let ffi = OrgDbError::from(Error::quota("team_members", 5, 4, 2));
        let OrgDbError::QuotaExceeded { details, .. } = ffi else {
            panic!("wrong variant")
        };
        assert_eq!(details["quota"], "team_members");
        assert_eq!(details["limit"], "5");
        assert_eq!(details["used"], "4");
        assert_eq!(details["requested"], "2");
    }
}
