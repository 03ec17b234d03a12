//! The export format: JSON lines, one [`Record`] a line, in dependency order. Secrets never
//! appear: invitations are exported without their token hash (an imported pending invitation
//! needs `resend_invitation` before its invitee can accept it).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::audit::AuditEvent;
use super::invitation::Invitation;
use super::membership::Membership;
use super::org::{LimitOverrides, Organization};
use super::project::{Project, ProjectMembership};
use super::resource::Resource;
use super::user::User;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Record {
    /// First line: the format and the audit sequence.
    Header {
        /// Version of the export format (1 today; it changes only when a record's shape
        /// does, not with the storage layout). An import refuses a newer one.
        schema_version: u32,
        /// Last audit sequence number.
        audit_seq: u64,
    },
    /// A user.
    User(User),
    /// An organization with its limit overrides.
    Organization {
        /// The organization.
        organization: Box<Organization>,
        /// Its overrides.
        limit_overrides: LimitOverrides,
    },
    /// A membership.
    Membership(Membership),
    /// A project.
    Project(Project),
    /// A project membership.
    ProjectMember(ProjectMembership),
    /// A resource (live or removed).
    Resource(Resource),
    /// An invitation, with its stored status (expiry is derived when read) and lifetime.
    Invitation {
        /// The invitation.
        invitation: Invitation,
        /// Lifetime granted on each (re)send, in seconds.
        lifetime_secs: i64,
    },
    /// A month's usage total.
    UsageMonth {
        /// The organization.
        organization_id: String,
        /// `YYYY-MM`.
        month: String,
        /// Requests counted in that month.
        total: u64,
    },
    /// A day's usage.
    UsageDay {
        /// The organization.
        organization_id: String,
        /// The day.
        date: NaiveDate,
        /// Requests that day.
        total: u64,
        /// Requests per resource id (events without a resource are only in `total`).
        by_resource: BTreeMap<String, u64>,
    },
    /// A remembered idempotency key.
    IdempotencyKey {
        /// The organization.
        organization_id: String,
        /// The key.
        key: String,
        /// When it was recorded.
        #[serde(with = "crate::model::time")]
        recorded_at: DateTime<Utc>,
    },
    /// An audit event.
    AuditEvent(AuditEvent),
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct ImportReport {
    /// Records read.
    pub records: u64,
    /// Transactions committed.
    pub transactions: u64,
}
