//! The one public error type and its stable codes.

use std::collections::BTreeMap;

use serde_json::Value;

/// Per-field or per-quota details attached to an error, rendered as the `details` object of the
/// JSON error envelope.
pub type Details = BTreeMap<String, Value>;

/// Every failure orgdb reports.
///
/// Match on [`Error::code`] (stable) rather than on messages (which may change). Bad input never
/// writes anything: an operation that returns an error has changed nothing.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The entity does not exist, or belongs to another organization. The message names it
    /// ("Member not found").
    #[error("{message}")]
    NotFound {
        /// Human-readable message naming the entity.
        message: String,
    },
    /// The actor's role does not allow the action.
    #[error("{message}")]
    Forbidden {
        /// Human-readable message.
        message: String,
    },
    /// Bad input; `details` maps each bad field to a reason.
    #[error("{message}")]
    Validation {
        /// Human-readable summary.
        message: String,
        /// Field name → reason.
        details: Details,
    },
    /// A uniqueness rule or an invariant would be broken (slug taken, duplicate invitation,
    /// last owner).
    #[error("{message}")]
    Conflict {
        /// Human-readable message.
        message: String,
        /// Context a caller can act on (for example `invitation_id`).
        details: Details,
    },
    /// A limit would be passed.
    #[error("{quota} limit exceeded: limit {limit}, used {used}, requested {requested}")]
    QuotaExceeded {
        /// The limit's name (`team_members`, `mcps`, `api_keys`, `monthly_requests`,
        /// `projects`).
        quota: String,
        /// The limit in force.
        limit: u64,
        /// What is used now.
        used: u64,
        /// What the refused call asked for.
        requested: u64,
        /// More context beside the figures, such as the `email` of a bulk invitation that
        /// did not fit (empty when there is none).
        context: Details,
    },
    /// Accepting an invitation whose expiry has passed.
    #[error("Invitation has expired")]
    InvitationExpired {
        /// The invitation's id.
        invitation_id: String,
    },
    /// The file or the disk failed, or the database is in use by another handle or process.
    #[error("storage error: {message}")]
    Storage {
        /// What failed.
        message: String,
    },
    /// The file (or a journal record, or an export) was written by a newer version of
    /// orgdb.
    #[error("{format} version {found} is newer than the supported version {supported}")]
    IncompatibleVersion {
        /// What carries the version: `database schema`, `journal record`, `export`.
        format: &'static str,
        /// Version found in the file.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
    /// Stored bytes could not be decoded or an internal invariant of the file is broken.
    #[error("database corrupted: {message}")]
    Corrupted {
        /// What was found to be wrong.
        message: String,
    },
}

/// Shorthand for `std::result::Result<T, orgdb::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The stable, machine-readable code: `not_found`, `forbidden`, `validation_error`,
    /// `conflict`, `quota_exceeded`, `invitation_expired`, `storage_error`,
    /// `incompatible_version` or `corrupted`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Forbidden { .. } => "forbidden",
            Error::Validation { .. } => "validation_error",
            Error::Conflict { .. } => "conflict",
            Error::QuotaExceeded { .. } => "quota_exceeded",
            Error::InvitationExpired { .. } => "invitation_expired",
            Error::Storage { .. } => "storage_error",
            Error::IncompatibleVersion { .. } => "incompatible_version",
            Error::Corrupted { .. } => "corrupted",
        }
    }

    /// The message a host shows (the `message` of the JSON error envelope).
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// Structured details: the bad fields of a validation error, `quota`/`limit`/`used`/
    /// `requested` of a quota error, the context of a conflict. Empty when there are none.
    pub fn details(&self) -> Details {
        match self {
            Error::Validation { details, .. } | Error::Conflict { details, .. } => details.clone(),
            Error::QuotaExceeded {
                quota,
                limit,
                used,
                requested,
                context,
            } => {
                let mut details = context.clone();
                details.extend([
                    ("quota".to_owned(), Value::from(quota.as_str())),
                    ("limit".to_owned(), Value::from(*limit)),
                    ("used".to_owned(), Value::from(*used)),
                    ("requested".to_owned(), Value::from(*requested)),
                ]);
                details
            }
            Error::InvitationExpired { invitation_id } => Details::from([(
                "invitation_id".to_owned(),
                Value::from(invitation_id.as_str()),
            )]),
            Error::IncompatibleVersion {
                format,
                found,
                supported,
            } => Details::from([
                ("format".to_owned(), Value::from(*format)),
                ("found".to_owned(), Value::from(*found)),
                ("supported".to_owned(), Value::from(*supported)),
            ]),
            _ => Details::new(),
        }
    }

    /// The HTTP status a host would answer with.
    pub fn http_status(&self) -> u16 {
        let quota = match self {
            Error::QuotaExceeded { quota, .. } => Some(quota.as_str()),
            _ => None,
        };
        http_status_of(self.code(), quota)
    }

    /// Adds `key` to the details of an error that carries them (validation, conflict, quota),
    /// unless it is there already; other errors come back as they are.
    pub(crate) fn with_detail(mut self, key: &str, value: impl Into<Value>) -> Error {
        if let Error::Validation { details, .. }
        | Error::Conflict { details, .. }
        | Error::QuotaExceeded {
            context: details, ..
        } = &mut self
        {
            details
                .entry(key.to_owned())
                .or_insert_with(|| value.into());
        }
        self
    }

    pub(crate) fn not_found(entity: &str) -> Error {
        Error::NotFound {
            message: format!("{entity} not found"),
        }
    }

    pub(crate) fn forbidden() -> Error {
        Error::Forbidden {
            message: "You don't have permission to perform this action".to_owned(),
        }
    }

    pub(crate) fn forbidden_because(message: impl Into<String>) -> Error {
        Error::Forbidden {
            message: message.into(),
        }
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Error {
        Error::Conflict {
            message: message.into(),
            details: Details::new(),
        }
    }

    pub(crate) fn conflict_with(
        message: impl Into<String>,
        key: &str,
        value: impl Into<Value>,
    ) -> Error {
        Error::Conflict {
            message: message.into(),
            details: Details::from([(key.to_owned(), value.into())]),
        }
    }

    /// A `validation_error` naming one field, for hosts that validate their own input before
    /// calling orgdb and want the same error shape.
    pub fn validation(field: &str, reason: impl Into<String>) -> Error {
        Error::invalid(field, reason)
    }

    /// A validation error naming one field.
    pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Error {
        let reason = reason.into();
        Error::Validation {
            message: format!("Invalid {field}: {reason}"),
            details: Details::from([(field.to_owned(), Value::from(reason))]),
        }
    }

    pub(crate) fn quota(quota: &str, limit: u64, used: u64, requested: u64) -> Error {
        Error::QuotaExceeded {
            quota: quota.to_owned(),
            limit,
            used,
            requested,
            context: Details::new(),
        }
    }

    pub(crate) fn storage(message: impl Into<String>) -> Error {
        Error::Storage {
            message: message.into(),
        }
    }

    pub(crate) fn corrupted(message: impl Into<String>) -> Error {
        Error::Corrupted {
            message: message.into(),
        }
    }
}

/// The HTTP status of an error with this `code` (and, for `quota_exceeded`, this `quota`): the
/// one table behind [`Error::http_status`], shared with the bindings' error, which keeps only
/// the code and the details.
pub(crate) fn http_status_of(code: &str, quota: Option<&str>) -> u16 {
    match code {
        "not_found" => 404,
        "forbidden" => 403,
        "validation_error" => 422,
        "conflict" => 409,
        "quota_exceeded" if quota == Some("monthly_requests") => 429,
        "quota_exceeded" => 403,
        "invitation_expired" => 410,
        _ => 500,
    }
}
