//! Projects and project members.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::role::Role;

/// A project inside an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct Project {
    /// `proj_…`
    pub id: String,
    /// The organization.
    pub organization_id: String,
    /// Name, 1–200 characters.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Creation time.
    #[serde(with = "crate::model::time")]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(with = "crate::model::time")]
    pub updated_at: DateTime<Utc>,
}

/// Input of `create_project`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct NewProject {
    /// Name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub description: Option<String>,
}

/// PATCH of a project; `description: Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectPatch {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New or cleared description.
    #[serde(default, deserialize_with = "double_option")]
    pub description: Option<Option<String>>,
}

fn double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A user's role in a project (always an organization member too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProjectMembership {
    /// The project.
    pub project_id: String,
    /// The member.
    pub user_id: String,
    /// Project role.
    pub role: Role,
    /// When added.
    #[serde(with = "crate::model::time")]
    pub added_at: DateTime<Utc>,
    /// Last role change.
    #[serde(with = "crate::model::time")]
    pub updated_at: DateTime<Utc>,
}

/// A row of `list_project_members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct ProjectMember {
    /// The user's id.
    pub id: String,
    /// The project.
    pub project_id: String,
    /// The user's email.
    pub email: String,
    /// The user's name.
    pub name: String,
    /// Project role.
    pub role: Role,
    /// When added.
    #[serde(with = "crate::model::time")]
    pub added_at: DateTime<Utc>,
    /// Last role change.
    #[serde(with = "crate::model::time")]
    pub updated_at: DateTime<Utc>,
}

/// One project of a user in an organization (`Db::list_user_projects`): the project, with the
/// user's role in it (the project's fields are flattened into the JSON object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct UserProject {
    /// The project.
    #[serde(flatten)]
    pub project: Project,
    /// The user's project role.
    pub project_role: crate::model::role::Role,
}
