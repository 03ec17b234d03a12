//! Users.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A person who can belong to organizations. Emails are unique and normalized (trimmed,
/// lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct User {
    /// `user_…`
    pub id: String,
    /// Normalized email, unique in the database.
    pub email: String,
    /// Display name.
    pub name: String,
    /// When the user was created.
    #[serde(with = "crate::model::time")]
    pub created_at: DateTime<Utc>,
    /// Set by `touch_user`; null until then.
    #[serde(with = "crate::model::time::option")]
    pub last_active: Option<DateTime<Utc>>,
}

/// Input of `create_user`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct NewUser {
    /// Email; normalized before it is stored.
    pub email: String,
    /// Display name, 1–200 characters after trimming.
    pub name: String,
}

/// Input of `update_user`: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct UserPatch {
    /// New email (must stay unique).
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub email: Option<String>,
    /// New display name.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub name: Option<String>,
}
