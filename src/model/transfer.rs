//! The export format: JSON lines, one [`Record`] a line, in dependency order. Secrets never
//! appear: invitations are exported without their token hash (an imported pending invitation
//! needs `resend_invitation` before its invitee can accept it).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::audit::AuditEvent;
use super::entitlement::EntitlementValue;
use super::invitation::Invitation;
use super::membership::Membership;
use super::org::{LimitOverrides, Organization};
use super::period::QuotaPeriod;
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
        /// Last audit sequence number (with [`AuditFeeds::PerOrganization`], the highest
        /// number any feed handed out).
        audit_seq: u64,
        /// How the source numbers its audit events. Absent (exports written before the field
        /// existed, and every export of a single-feed database) means
        /// [`AuditFeeds::Global`].
        #[serde(default, skip_serializing_if = "AuditFeeds::is_global")]
        audit_feeds: AuditFeeds,
        /// The first day whose usage rows the source never pruned (`prune_usage`'s highest
        /// `before`): period totals are not computed again from days before it. Absent when
        /// nothing was pruned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage_pruned_before: Option<chrono::NaiveDate>,
    },
    /// A user.
    User(User),
    /// An organization with its limit overrides and quota period.
    Organization {
        /// The organization.
        organization: Box<Organization>,
        /// Its overrides.
        limit_overrides: LimitOverrides,
        /// How its usage quota resets (export format 4; absent: the calendar month).
        #[serde(default, skip_serializing_if = "is_calendar_month")]
        quota_period: QuotaPeriod,
        /// Its usage alert thresholds in percent (export format 5; absent: the defaults).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage_alerts: Option<Vec<u32>>,
    },
    /// An organization's override of a named limit or feature (export format 3).
    EntitlementOverride {
        /// The organization.
        organization_id: String,
        /// The name (`sso`, `projects`…).
        name: String,
        /// What it sets.
        value: EntitlementValue,
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
    /// A calendar month's usage total (export formats 1 to 3; format 4 writes
    /// [`Record::UsagePeriod`]).
    UsageMonth {
        /// The organization.
        organization_id: String,
        /// `YYYY-MM`.
        month: String,
        /// Requests counted in that month.
        total: u64,
    },
    /// A quota period's usage total (export format 4).
    UsagePeriod {
        /// The organization.
        organization_id: String,
        /// The period's first day.
        period_start: NaiveDate,
        /// The period's last day.
        period_end: NaiveDate,
        /// Requests counted in the period.
        total: u64,
    },
    /// A usage alert announced: a threshold reached in a quota period under a limit (export
    /// format 5), so an import announces nothing twice.
    UsageAlertFired {
        /// The organization.
        organization_id: String,
        /// The period's first day.
        period_start: NaiveDate,
        /// Its last day.
        period_end: NaiveDate,
        /// The threshold, in percent.
        threshold_percent: u32,
        /// The `monthly_requests` limit it was reached under.
        limit: u64,
    },
    /// A live (or expired, not yet removed) usage reservation (export format 5).
    Reservation(crate::model::reservation::Reservation),
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

/// How the database that wrote an export numbers its audit change feed, so that an import
/// into a backend that numbers it another way can renumber the events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditFeeds {
    /// One feed for the whole database: every event's `seq` is unique (the embedded backend).
    #[default]
    Global,
    /// One feed per organization, plus one for events outside any organization: a `seq` is
    /// unique only within its feed (PostgreSQL). An import into a single-feed database
    /// renumbers every event 1, 2, 3… in the order the export lists them.
    PerOrganization,
}

impl AuditFeeds {
    /// Whether this is [`AuditFeeds::Global`] (the default, left out of a written header).
    pub fn is_global(&self) -> bool {
        *self == AuditFeeds::Global
    }
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

fn is_calendar_month(p: &QuotaPeriod) -> bool {
    *p == QuotaPeriod::CalendarMonth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_without_audit_feeds_is_global_and_global_is_not_written() {
        let old: Record =
            serde_json::from_str(r#"{"type":"header","data":{"schema_version":1,"audit_seq":7}}"#)
                .unwrap();
        let global = Record::Header {
            schema_version: 1,
            audit_seq: 7,
            audit_feeds: AuditFeeds::Global,
            usage_pruned_before: None,
        };
        assert_eq!(old, global);
        assert_eq!(
            serde_json::to_string(&global).unwrap(),
            r#"{"type":"header","data":{"schema_version":1,"audit_seq":7}}"#
        );
        let per_org = Record::Header {
            schema_version: 1,
            audit_seq: 7,
            audit_feeds: AuditFeeds::PerOrganization,
            usage_pruned_before: None,
        };
        let text = serde_json::to_string(&per_org).unwrap();
        assert_eq!(
            text,
            r#"{"type":"header","data":{"schema_version":1,"audit_seq":7,"audit_feeds":"per_organization"}}"#
        );
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), per_org);
        let explicit: Record = serde_json::from_str(
            r#"{"type":"header","data":{"schema_version":1,"audit_seq":7,"audit_feeds":"global"}}"#,
        )
        .unwrap();
        assert_eq!(explicit, global);
        let bad = serde_json::from_str::<Record>(
            r#"{"type":"header","data":{"schema_version":1,"audit_seq":7,"audit_feeds":"sharded"}}"#,
        )
        .unwrap_err();
        assert!(bad.to_string().contains("sharded"), "{bad}");
    }
}
