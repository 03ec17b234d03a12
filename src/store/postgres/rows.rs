//! Rows and records on PostgreSQL: the conversions between typed columns and orgdb's records,
//! the shared SELECT lists, and [`Query`], what the whole-database reads (`whole.rs`) need of a
//! transaction. Imports no other module of the backend.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::error::{Error, Result};
use crate::model::audit::AuditEvent;
use crate::model::entitlement::EntitlementValue;
use crate::model::invitation::{Invitation, InvitationStatus};
use crate::model::membership::{MemberStatus, Membership};
use crate::model::org::{Limit, LimitOverrides, Organization, OrganizationSettings};
use crate::model::period::QuotaPeriod;
use crate::model::project::{Project, ProjectMembership};
use crate::model::reservation::Reservation;
use crate::model::resource::{Resource, ResourceKind};
use crate::model::role::Role;
use crate::model::user::User;
use crate::store::{
    day_from_number, day_number, AlertFired, DayRow, InvitationRecord, OrgRecord, OrgStats,
    ResourceRecord, Span,
};

pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A transaction that runs a prepared query (the backend's `PgTx`).
pub(super) trait Query {
    fn query(&self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>>;
}

// Conversions between rows and records.

pub(super) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    row.try_get(i)
        .map_err(|e| Error::corrupted(format!("PostgreSQL column {i}: {e}")))
}

pub(super) fn unsigned(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::corrupted(format!("negative count {v} in PostgreSQL")))
}

pub(super) fn signed(v: u64, field: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid(field, "Must be at most 9223372036854775807"))
}

pub(super) fn role_of(text: &str) -> Result<Role> {
    text.parse()
        .map_err(|_| Error::corrupted(format!("unknown role {text:?} in PostgreSQL")))
}

pub(super) fn limit_of(v: Option<i64>) -> Result<Option<Limit>> {
    Ok(match v {
        None => None,
        Some(-1) => Some(Limit::Unlimited),
        Some(n) => Some(Limit::Count(unsigned(n)?)),
    })
}

/// An entitlement override from the columns `kind, enabled, limit_value` starting at `at`.
pub(super) fn override_of(r: &Row, at: usize) -> Result<EntitlementValue> {
    let kind: String = get(r, at)?;
    match kind.as_str() {
        "feature" => Ok(EntitlementValue::Feature {
            enabled: get::<Option<bool>>(r, at + 1)?
                .ok_or_else(|| Error::corrupted("a feature override without `enabled`"))?,
        }),
        "limit" => Ok(EntitlementValue::Limit {
            limit: get::<Option<i64>>(r, at + 2)?.map(unsigned).transpose()?,
        }),
        other => Err(Error::corrupted(format!(
            "unknown entitlement override kind {other:?} in PostgreSQL"
        ))),
    }
}

/// An override as stored: NULL (the plan's), -1 (unlimited) or the count.
pub(super) fn limit_value(limit: Option<Limit>, field: &str) -> Result<Option<i64>> {
    Ok(match limit {
        None => None,
        Some(Limit::Unlimited) => Some(-1),
        Some(Limit::Count(n)) => Some(signed(n, field)?),
    })
}

pub(super) fn json_map(value: serde_json::Value) -> Result<BTreeMap<String, String>> {
    serde_json::from_value(value)
        .map_err(|e| Error::corrupted(format!("PostgreSQL map column: {e}")))
}

pub(super) fn map_json(map: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::to_value(map).unwrap_or_default()
}

/// The columns [`user_at_column`] reads, in its order, each after the prefix `$u`.
macro_rules! user_columns {
    ($u:literal) => {
        concat!(
            $u,
            "id, ",
            $u,
            "email, ",
            $u,
            "name, ",
            $u,
            "created_at, ",
            $u,
            "last_active"
        )
    };
}
pub(super) use user_columns;

pub(super) const USER_COLUMNS: &str = user_columns!("");

pub(super) fn user_of(r: &Row) -> Result<User> {
    user_at_column(r, 0)
}

/// A user from the columns id, email, name, created_at, last_active, starting at `at`.
pub(super) fn user_at_column(r: &Row, at: usize) -> Result<User> {
    Ok(User {
        id: get(r, at)?,
        email: get(r, at + 1)?,
        name: get(r, at + 2)?,
        created_at: get(r, at + 3)?,
        last_active: get(r, at + 4)?,
    })
}

pub(super) fn org_of(r: &Row) -> Result<OrgRecord> {
    org_at(r, 0)
}

/// An organization from [`org_columns!`] starting at column `at`.
pub(super) fn org_at(r: &Row, at: usize) -> Result<OrgRecord> {
    Ok(OrgRecord {
        org: Organization {
            id: get(r, at)?,
            name: get(r, at + 1)?,
            slug: get(r, at + 2)?,
            external_id: get(r, at + 3)?,
            description: get(r, at + 4)?,
            plan: get(r, at + 5)?,
            address_line1: get(r, at + 19)?,
            address_line2: get(r, at + 20)?,
            city: get(r, at + 6)?,
            state: get(r, at + 7)?,
            zipcode: get(r, at + 8)?,
            country: get(r, at + 9)?,
            settings: OrganizationSettings {
                pin_protection: get(r, at + 10)?,
                extra: json_map(get(r, at + 11)?)?,
            },
            metadata: json_map(get(r, at + 12)?)?,
            created_at: get(r, at + 13)?,
            updated_at: get(r, at + 14)?,
        },
        overrides: LimitOverrides {
            mcps: limit_of(get(r, at + 15)?)?,
            api_keys: limit_of(get(r, at + 16)?)?,
            team_members: limit_of(get(r, at + 17)?)?,
            monthly_requests: limit_of(get(r, at + 18)?)?,
        },
        period: period_of(get(r, at + 21)?, get(r, at + 22)?)?,
        alerts: alerts_of(get(r, at + 23)?)?,
    })
}

/// The `alert_thresholds` column of an organization's thresholds (`None`: the defaults, NULL).
pub(super) fn alerts_column(alerts: Option<&[u32]>) -> Option<Vec<i32>> {
    alerts.map(|v| v.iter().map(|&t| t.min(i32::MAX as u32) as i32).collect())
}

/// Alert thresholds from `alert_thresholds` (NULL: the defaults).
pub(super) fn alerts_of(v: Option<Vec<i32>>) -> Result<Option<Vec<u32>>> {
    v.map(|v| {
        v.into_iter()
            .map(|t| {
                u32::try_from(t)
                    .map_err(|_| Error::corrupted(format!("organizations: alert threshold {t}")))
            })
            .collect()
    })
    .transpose()
}

/// A quota period from its columns (`quota_period`, `billing_anchor`).
pub(super) fn period_of(kind: String, anchor: Option<NaiveDate>) -> Result<QuotaPeriod> {
    Ok(match (kind.as_str(), anchor) {
        ("calendar_month", None) => QuotaPeriod::CalendarMonth,
        ("day", None) => QuotaPeriod::Day,
        ("week", None) => QuotaPeriod::Week,
        ("year", None) => QuotaPeriod::Year,
        ("anchored", Some(anchor)) => QuotaPeriod::Anchored { anchor },
        _ => {
            return Err(Error::corrupted(format!(
                "organizations: quota period {kind:?} with anchor {anchor:?}"
            )))
        }
    })
}

/// The columns of a quota period (`quota_period`, `billing_anchor`).
pub(super) fn period_columns(p: QuotaPeriod) -> (&'static str, Option<NaiveDate>) {
    match p {
        QuotaPeriod::CalendarMonth => ("calendar_month", None),
        QuotaPeriod::Day => ("day", None),
        QuotaPeriod::Week => ("week", None),
        QuotaPeriod::Year => ("year", None),
        QuotaPeriod::Anchored { anchor } => ("anchored", Some(anchor)),
    }
}

/// An organization's counters from the columns of a row starting at `at`.
pub(super) fn stats_of(r: &Row, at: usize) -> Result<OrgStats> {
    let mut by_role = [0u64; 4];
    for (i, slot) in by_role.iter_mut().enumerate() {
        *slot = unsigned(get(r, at + i)?)?;
    }
    let columns: i32 = get(r, at + 6)?;
    Ok(OrgStats {
        members: by_role.iter().sum(),
        by_role,
        mcps: unsigned(get(r, at + 4)?)?,
        api_keys: unsigned(get(r, at + 5)?)?,
        resource_columns: u32::try_from(columns)
            .map_err(|_| Error::corrupted("negative resource_columns"))?,
    })
}

/// A membership from the columns of [`membership_columns`], starting at column `at`.
pub(super) fn membership_at(r: &Row, at: usize) -> Result<Membership> {
    let deactivated_at: Option<DateTime<Utc>> = get(r, at + 6)?;
    Ok(Membership {
        id: get(r, at)?,
        organization_id: get(r, at + 1)?,
        user_id: get(r, at + 2)?,
        role: role_of(&get::<String>(r, at + 3)?)?,
        joined_at: get(r, at + 4)?,
        updated_at: get(r, at + 5)?,
        status: if deactivated_at.is_some() {
            MemberStatus::Deactivated
        } else {
            MemberStatus::Active
        },
        deactivated_at,
    })
}

pub(super) fn membership_of(r: &Row) -> Result<Membership> {
    membership_at(r, 0)
}

pub(super) fn invitation_of(r: &Row) -> Result<InvitationRecord> {
    let status: String = get(r, 6)?;
    let hash: Vec<u8> = get(r, 11)?;
    Ok(InvitationRecord {
        invitation: Invitation {
            id: get(r, 0)?,
            organization_id: get(r, 1)?,
            email: get(r, 2)?,
            role: role_of(&get::<String>(r, 3)?)?,
            project_id: get(r, 4)?,
            project_role: get::<Option<String>>(r, 5)?
                .map(|t| role_of(&t))
                .transpose()?,
            status: InvitationStatus::parse(&status)
                .ok_or_else(|| Error::corrupted(format!("unknown invitation status {status:?}")))?,
            invited_by: get(r, 7)?,
            created_at: get(r, 8)?,
            expires_at: get(r, 9)?,
            accepted_at: get(r, 10)?,
        },
        token_hash: hash
            .try_into()
            .map_err(|_| Error::corrupted("invitation token hash is not 32 bytes"))?,
        lifetime_secs: get(r, 12)?,
    })
}

pub(super) fn project_of(r: &Row) -> Result<Project> {
    Ok(Project {
        id: get(r, 0)?,
        organization_id: get(r, 1)?,
        name: get(r, 2)?,
        description: get(r, 3)?,
        created_at: get(r, 4)?,
        updated_at: get(r, 5)?,
    })
}

pub(super) fn project_membership_of(r: &Row) -> Result<ProjectMembership> {
    Ok(ProjectMembership {
        project_id: get(r, 0)?,
        user_id: get(r, 1)?,
        role: role_of(&get::<String>(r, 2)?)?,
        added_at: get(r, 3)?,
        updated_at: get(r, 4)?,
    })
}

pub(super) fn resource_of(r: &Row) -> Result<ResourceRecord> {
    let kind: String = get(r, 2)?;
    let column: i32 = get(r, 6)?;
    Ok(ResourceRecord {
        resource: Resource {
            id: get(r, 0)?,
            organization_id: get(r, 1)?,
            kind: ResourceKind::parse(&kind)
                .ok_or_else(|| Error::corrupted(format!("unknown resource kind {kind:?}")))?,
            name: get(r, 3)?,
            created_at: get(r, 4)?,
            removed_at: get(r, 5)?,
        },
        column: u32::try_from(column)
            .map_err(|_| Error::corrupted(format!("negative usage column {column}")))?,
    })
}

pub(super) fn day_of(r: &Row, first: usize) -> Result<DayRow> {
    let columns: Vec<i64> = get(r, first + 1)?;
    Ok(DayRow {
        total: unsigned(get(r, first)?)?,
        columns: columns.into_iter().map(unsigned).collect::<Result<_>>()?,
    })
}

pub(super) fn date_of(day: u32) -> Result<NaiveDate> {
    day_from_number(day).ok_or_else(|| Error::invalid("date", "Out of range"))
}

pub(super) fn audit_of(r: &Row, org: Option<String>) -> Result<AuditEvent> {
    Ok(AuditEvent {
        seq: unsigned(get(r, 0)?)?,
        id: get(r, 1)?,
        at: get(r, 2)?,
        actor: get(r, 3)?,
        action: get(r, 4)?,
        target: get(r, 5)?,
        details: get(r, 6)?,
        organization_id: org,
    })
}

/// The organization's columns in [`org_at`]'s order, then its counters in [`stats_of`]'s
/// (from [`ORG_STATS_AT`]), each name after the prefix `$o` ("o." or "").
macro_rules! org_columns {
    () => {
        org_columns!("")
    };
    ($o:literal) => {
        concat!(
            $o,
            "id, ",
            $o,
            "name, ",
            $o,
            "slug, ",
            $o,
            "external_id, ",
            $o,
            "description, ",
            $o,
            "plan, ",
            $o,
            "city, ",
            $o,
            "state, ",
            $o,
            "zipcode, ",
            $o,
            "country, ",
            $o,
            "pin_protection, ",
            $o,
            "settings, ",
            $o,
            "metadata, ",
            $o,
            "created_at, ",
            $o,
            "updated_at, ",
            $o,
            "limit_mcps, ",
            $o,
            "limit_api_keys, ",
            $o,
            "limit_team_members, ",
            $o,
            "limit_monthly_requests, ",
            $o,
            "address_line1, ",
            $o,
            "address_line2, ",
            $o,
            "quota_period, ",
            $o,
            "billing_anchor, ",
            $o,
            "alert_thresholds, ",
            $o,
            "count_viewer, ",
            $o,
            "count_member, ",
            $o,
            "count_admin, ",
            $o,
            "count_owner, ",
            $o,
            "count_mcp, ",
            $o,
            "count_api_key, ",
            $o,
            "resource_columns"
        )
    };
}

/// Where [`stats_of`]'s columns start in a row of [`ORG_SELECT`].
pub(super) const ORG_STATS_AT: usize = 24;

pub(super) const ORG_SELECT: &str = concat!("SELECT ", org_columns!(), " FROM organizations");

/// [`Reads::org_overview`](crate::store::Reads::org_overview) in one statement: the
/// organization (`$1`) with its counters, the role of user `$2` there, its pending
/// invitations unexpired at `$3`, and the total of the quota period that holds day `$4`
/// (NULL: not asked).
pub(super) const ORG_OVERVIEW: &str = concat!(
    "SELECT ",
    org_columns!(),
    ",
    (SELECT role FROM memberships m WHERE m.organization_id = o.id AND m.user_id = $2
        AND NOT m.deactivated),
    (SELECT count(*) FROM invitations i
      WHERE i.organization_id = o.id AND i.status = 'pending' AND i.expires_at > $3),
    (SELECT total FROM usage_periods u WHERE u.organization_id = o.id
        AND u.period_start <= $4 AND u.period_end >= $4
        ORDER BY u.period_start DESC LIMIT 1)
    FROM organizations o WHERE o.id = $1"
);

/// The organization `$1` with its counters, and the role of user `$2` there.
pub(super) const ORG_WITH_ROLE: &str = concat!(
    "SELECT ",
    org_columns!(),
    ",
    (SELECT role FROM memberships m WHERE m.organization_id = o.id AND m.user_id = $2
        AND NOT m.deactivated)
    FROM organizations o WHERE o.id = $1"
);

/// The columns [`membership_of`] reads, in its order.
macro_rules! membership_columns {
    ($m:literal) => {
        concat!(
            $m,
            "id, ",
            $m,
            "organization_id, ",
            $m,
            "user_id, ",
            $m,
            "role, ",
            $m,
            "joined_at, ",
            $m,
            "updated_at, ",
            $m,
            "deactivated_at"
        )
    };
}
pub(super) use membership_columns;
pub(super) use org_columns;

pub(super) const MEMBERSHIP_SELECT: &str =
    concat!("SELECT ", membership_columns!(""), " FROM memberships");

/// The columns [`invitation_of`] reads, in its order.
macro_rules! invitation_columns {
    ($i:literal) => {
        concat!(
            $i,
            "id, ",
            $i,
            "organization_id, ",
            $i,
            "email, ",
            $i,
            "role, ",
            $i,
            "project_id, ",
            $i,
            "project_role, ",
            $i,
            "status, ",
            $i,
            "invited_by, ",
            $i,
            "created_at, ",
            $i,
            "expires_at, ",
            $i,
            "accepted_at, ",
            $i,
            "token_hash, ",
            $i,
            "lifetime_secs"
        )
    };
}
pub(super) use invitation_columns;

/// How many columns [`invitation_columns`] names.
pub(super) const INVITATION_COLUMNS: usize = 13;

pub(super) const INVITATION_SELECT: &str =
    concat!("SELECT ", invitation_columns!(""), " FROM invitations");

pub(super) const PROJECT_SELECT: &str =
    "SELECT id, organization_id, name, description, created_at, updated_at FROM projects";

pub(super) const RESOURCE_SELECT: &str =
    "SELECT id, organization_id, kind, name, created_at, removed_at, usage_column FROM resources";

/// An announced usage alert from `usage_alert_state` (period_start, period_end,
/// threshold_percent, limit_value).
pub(super) fn alert_fired_of(r: &Row) -> Result<AlertFired> {
    Ok(AlertFired {
        span: Span {
            start: day_number(get::<NaiveDate>(r, 0)?),
            end: day_number(get::<NaiveDate>(r, 1)?),
        },
        percent: u32::try_from(get::<i64>(r, 2)?)
            .map_err(|_| Error::corrupted("usage_alert_state: threshold out of range"))?,
        limit: unsigned(get::<i64>(r, 3)?)?,
    })
}

/// A reservation from `usage_reservations` (id, organization_id, count, resource_id,
/// created_at, expires_at, period_start, period_end).
pub(super) fn reservation_of(r: &Row) -> Result<Reservation> {
    Ok(Reservation {
        id: get(r, 0)?,
        organization_id: get(r, 1)?,
        count: unsigned(get(r, 2)?)?,
        resource_id: get(r, 3)?,
        created_at: get(r, 4)?,
        expires_at: get(r, 5)?,
        period_start: get(r, 6)?,
        period_end: get(r, 7)?,
    })
}
