//! Memberships and member list rows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::role::Role;

/// A user's membership in an organization (seed 001's membership object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct Membership {
    /// `mem_…`
    pub id: String,
    /// The organization.
    pub organization_id: String,
    /// The member.
    pub user_id: String,
    /// Organization role.
    pub role: Role,
    /// When the user joined.
    #[serde(with = "crate::model::time")]
    pub joined_at: DateTime<Utc>,
    /// Last role change (or `joined_at`).
    #[serde(with = "crate::model::time")]
    pub updated_at: DateTime<Utc>,
    /// `active`, or `deactivated` (holds no seat, cannot act; see `Db::deactivate_member`).
    #[serde(default)]
    pub status: MemberStatus,
    /// When the member was deactivated; null while active.
    #[serde(default, with = "crate::model::time::option")]
    pub deactivated_at: Option<DateTime<Utc>>,
}

impl Membership {
    /// Whether the member is active: holds a seat and may act in the organization.
    pub fn is_active(&self) -> bool {
        self.status == MemberStatus::Active
    }

    /// A new active membership, joined at `at`.
    pub(crate) fn joined(id: String, org: &str, user: &str, role: Role, at: DateTime<Utc>) -> Self {
        Membership {
            id,
            organization_id: org.to_owned(),
            user_id: user.to_owned(),
            role,
            joined_at: at,
            updated_at: at,
            status: MemberStatus::Active,
            deactivated_at: None,
        }
    }

    /// The role the member acts with: `None` while deactivated (they cannot act).
    pub(crate) fn acting_role(&self) -> Option<Role> {
        self.is_active().then_some(self.role)
    }
}

/// Whether a member is active or deactivated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Holds a seat and acts with their role.
    #[default]
    Active,
    /// Keeps the membership, its history and project memberships, holds no seat and cannot
    /// act in the organization until reactivated.
    Deactivated,
}

impl MemberStatus {
    /// The lower-case name (`"deactivated"`).
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Active => "active",
            MemberStatus::Deactivated => "deactivated",
        }
    }
}

/// One row of a member list: seed 000's member object, plus the membership id of seed 001.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct Member {
    /// The user's id.
    pub id: String,
    /// The membership's id (`mem_…`).
    pub membership_id: String,
    /// The user's email.
    pub email: String,
    /// The user's name.
    pub name: String,
    /// Organization role.
    pub role: Role,
    /// When the user joined.
    #[serde(with = "crate::model::time")]
    pub joined_at: DateTime<Utc>,
    /// Last role change (or `joined_at`).
    #[serde(with = "crate::model::time")]
    pub updated_at: DateTime<Utc>,
    /// Last activity (`touch_user`); null until then.
    #[serde(with = "crate::model::time::option")]
    pub last_active: Option<DateTime<Utc>>,
    /// `active` or `deactivated`.
    pub status: MemberStatus,
    /// When the member was deactivated; null while active.
    #[serde(with = "crate::model::time::option")]
    pub deactivated_at: Option<DateTime<Utc>>,
}

/// Which member an operation addresses: by user id (seed 000) or by membership id (seed 001).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRef {
    /// A user id (`user_…`).
    User(String),
    /// A membership id (`mem_…`).
    Membership(String),
}

impl MemberRef {
    /// Guesses the kind from the id's prefix: `mem_…` is a membership, anything else a user.
    pub fn parse(id: &str) -> MemberRef {
        if id.starts_with("mem_") {
            MemberRef::Membership(id.to_owned())
        } else {
            MemberRef::User(id.to_owned())
        }
    }
}

impl From<&str> for MemberRef {
    fn from(id: &str) -> MemberRef {
        MemberRef::parse(id)
    }
}

/// Query of `list_members`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct MemberQuery {
    /// Page number, from 1 (default 1).
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub page: Option<u32>,
    /// Rows per page, 1–100 (default 20).
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub per_page: Option<u32>,
    /// Role filter, case-insensitive.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub role: Option<String>,
    /// Status filter: `active` (the default), `deactivated`, or `all` (active members first,
    /// then deactivated ones, each by join time).
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub status: Option<String>,
    /// Case-insensitive prefix of the member's email, of their whole name, or of a later word
    /// of their name (`love` finds "Ada Lovelace"); combined with the other filters, in the
    /// same order and paging. Blank: no search.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub search: Option<String>,
    /// Keyset cursor from a previous page's `next_cursor`; when given, the page starts right
    /// after it and `page` only labels the result.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub cursor: Option<String>,
}

/// Result of `remove_member` (seed 000's response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct RemovedMember {
    /// Always true.
    pub removed: bool,
    /// The removed user.
    pub user_id: String,
    /// The removed membership.
    pub membership_id: String,
}
