//! The stored records: what each table's values hold, apart from the public types.
//!
//! The public types (`User`, `Membership`, `Organization`…) are what hosts receive; they may
//! grow a field without touching the disk. A table's value is a record of this file, in its
//! own shape, with its own format tag ([`Tag`]); [`Stored`] converts between the two, in one
//! place. A record changes only when what is stored changes, and then it takes a new tag and
//! a migration step (`store::schema`), with a test that opens a file of the old format.
//!
//! The layouts are bincode's (`store::codec`): fields in order, integers as varints, strings
//! with their length, `Option` with a tag byte, enums as their variant's index. Timestamps are
//! microseconds since the epoch (`i64`), roles their rank (`u8`). Records borrow on the way out
//! (`Cow`), so writing one copies no string.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::{self, Tag};
use super::keys::{self, Key};
use super::{journal, KeyReader, Table};
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
use crate::model::time::from_micros;
use crate::model::user::User;

/// A value kept in a table: its format tag, and how it becomes bytes and back.
pub(crate) trait Stored: Sized {
    /// The record type and layout, the first byte of every stored value.
    const TAG: Tag;
    /// The value's bytes (tag, checksum, record).
    fn encode(&self) -> Result<Vec<u8>>;
    /// The value of stored bytes; `corrupted` when they are not a readable record of this type.
    fn decode(bytes: &[u8]) -> Result<Self>;
    /// The key the value is stored under, when the value names it (`check()` verifies it: a
    /// record under a damaged key is one that no look-up finds).
    fn own_key(&self) -> Option<Vec<u8>> {
        None
    }
}

fn time(micros: i64) -> Result<DateTime<Utc>> {
    from_micros(micros).ok_or_else(|| Error::corrupted("a stored timestamp is out of range"))
}

fn time_opt(micros: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    micros.map(time).transpose()
}

fn role(rank: u8) -> Result<Role> {
    Role::from_rank(rank).ok_or_else(|| Error::corrupted("a stored role is out of range"))
}

fn text(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

fn text_opt(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(Cow::Borrowed)
}

fn owned_opt(s: Option<Cow<'_, str>>) -> Option<String> {
    s.map(Cow::into_owned)
}

// Entitlement overrides (tag 13), under `org ∅ name`.

#[derive(Serialize, Deserialize)]
enum OverrideV1 {
    Feature(bool),
    Limit(Option<u64>),
}

impl Stored for EntitlementValue {
    const TAG: Tag = Tag::EntitlementOverride;

    fn encode(&self) -> Result<Vec<u8>> {
        let record = match *self {
            EntitlementValue::Feature { enabled } => OverrideV1::Feature(enabled),
            EntitlementValue::Limit { limit } => OverrideV1::Limit(limit),
        };
        codec::encode(Self::TAG, &record)
    }

    fn decode(bytes: &[u8]) -> Result<EntitlementValue> {
        Ok(match codec::decode(Self::TAG, bytes)? {
            OverrideV1::Feature(enabled) => EntitlementValue::Feature { enabled },
            OverrideV1::Limit(limit) => EntitlementValue::Limit { limit },
        })
    }
}

// Usage reservations (tag 16), under `org ∅ id`.

#[derive(Serialize, Deserialize)]
struct ReservationV1<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    organization_id: Cow<'a, str>,
    count: u64,
    resource_id: Option<Cow<'a, str>>,
    created_at: i64,
    expires_at: i64,
    /// The period it was made in, as day numbers.
    period: (u32, u32),
}

impl Stored for Reservation {
    const TAG: Tag = Tag::Reservation;

    fn own_key(&self) -> Option<Vec<u8>> {
        Some(keys::two(&self.organization_id, &self.id))
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let record = ReservationV1 {
            id: text(&self.id),
            organization_id: text(&self.organization_id),
            count: self.count,
            resource_id: text_opt(&self.resource_id),
            created_at: self.created_at.timestamp_micros(),
            expires_at: self.expires_at.timestamp_micros(),
            period: (
                keys::day_number(self.period_start),
                keys::day_number(self.period_end),
            ),
        };
        codec::encode(Self::TAG, &record)
    }

    fn decode(bytes: &[u8]) -> Result<Reservation> {
        let r: ReservationV1 = codec::decode(Self::TAG, bytes)?;
        let day =
            |n| keys::day_from_number(n).ok_or_else(|| Error::corrupted("a reservation's period"));
        Ok(Reservation {
            id: r.id.into_owned(),
            organization_id: r.organization_id.into_owned(),
            count: r.count,
            resource_id: owned_opt(r.resource_id),
            created_at: time(r.created_at)?,
            expires_at: time(r.expires_at)?,
            period_start: day(r.period.0)?,
            period_end: day(r.period.1)?,
        })
    }
}

// Users (tag 1).

#[derive(Serialize, Deserialize)]
struct UserV1<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    email: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    created_at: i64,
    last_active: Option<i64>,
}

impl Stored for User {
    const TAG: Tag = Tag::User;

    fn own_key(&self) -> Option<Vec<u8>> {
        Some(keys::one(&self.id))
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let record = UserV1 {
            id: text(&self.id),
            email: text(&self.email),
            name: text(&self.name),
            created_at: self.created_at.timestamp_micros(),
            last_active: self.last_active.map(|t| t.timestamp_micros()),
        };
        codec::encode(Self::TAG, &record)
    }

    fn decode(bytes: &[u8]) -> Result<User> {
        let r: UserV1 = codec::decode(Self::TAG, bytes)?;
        Ok(User {
            id: r.id.into_owned(),
            email: r.email.into_owned(),
            name: r.name.into_owned(),
            created_at: time(r.created_at)?,
            last_active: time_opt(r.last_active)?,
        })
    }
}

// Organizations (tag 2): the public fields, then the limit overrides.

/// A limit override as stored: 0 unlimited, 1 a count.
#[derive(Serialize, Deserialize)]
enum LimitV1 {
    Unlimited,
    Count(u64),
}

fn limit_out(limit: Option<Limit>) -> Option<LimitV1> {
    limit.map(|l| match l {
        Limit::Unlimited => LimitV1::Unlimited,
        Limit::Count(n) => LimitV1::Count(n),
    })
}

fn limit_in(limit: Option<LimitV1>) -> Option<Limit> {
    limit.map(|l| match l {
        LimitV1::Unlimited => Limit::Unlimited,
        LimitV1::Count(n) => Limit::Count(n),
    })
}

#[derive(Serialize, Deserialize)]
struct OrgV1<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    slug: Cow<'a, str>,
    external_id: Option<Cow<'a, str>>,
    description: Option<Cow<'a, str>>,
    #[serde(borrow)]
    plan: Cow<'a, str>,
    address_line1: Option<Cow<'a, str>>,
    address_line2: Option<Cow<'a, str>>,
    city: Option<Cow<'a, str>>,
    state: Option<Cow<'a, str>>,
    zipcode: Option<Cow<'a, str>>,
    country: Option<Cow<'a, str>>,
    pin_protection: bool,
    settings: Cow<'a, BTreeMap<String, String>>,
    metadata: Cow<'a, BTreeMap<String, String>>,
    created_at: i64,
    updated_at: i64,
    mcps: Option<LimitV1>,
    api_keys: Option<LimitV1>,
    team_members: Option<LimitV1>,
    monthly_requests: Option<LimitV1>,
}

/// An organization with its quota period (tag 14, schema 6). A tag-2 record ([`OrgV1`]) reads
/// as one on calendar months; a tag-14 one, with the default alert thresholds.
#[derive(Serialize, Deserialize)]
struct OrgV2<'a> {
    #[serde(borrow)]
    org: OrgV1<'a>,
    /// 0 calendar month, 1 day, 2 week, 3 year, 4 anchored.
    period: u8,
    /// The billing anchor (days from the common era), when anchored.
    anchor: Option<i32>,
}

/// An organization with its quota period and usage alert thresholds (tag 15, schema 7): every
/// write is tag 15.
#[derive(Serialize, Deserialize)]
struct OrgV3<'a> {
    #[serde(borrow)]
    org: OrgV2<'a>,
    /// Usage alert thresholds in percent, ascending; `None`: the defaults.
    alerts: Option<Vec<u32>>,
}

fn period_out(p: QuotaPeriod) -> (u8, Option<i32>) {
    match p {
        QuotaPeriod::CalendarMonth => (0, None),
        QuotaPeriod::Day => (1, None),
        QuotaPeriod::Week => (2, None),
        QuotaPeriod::Year => (3, None),
        QuotaPeriod::Anchored { anchor } => (4, Some(chrono::Datelike::num_days_from_ce(&anchor))),
    }
}

fn period_in(kind: u8, anchor: Option<i32>) -> Result<QuotaPeriod> {
    let bad = || Error::corrupted("a stored quota period is out of range");
    Ok(match (kind, anchor) {
        (0, None) => QuotaPeriod::CalendarMonth,
        (1, None) => QuotaPeriod::Day,
        (2, None) => QuotaPeriod::Week,
        (3, None) => QuotaPeriod::Year,
        (4, Some(days)) => QuotaPeriod::Anchored {
            anchor: chrono::NaiveDate::from_num_days_from_ce_opt(days).ok_or_else(bad)?,
        },
        _ => return Err(bad()),
    })
}

impl Stored for OrgRecord {
    const TAG: Tag = Tag::OrgV3;

    fn own_key(&self) -> Option<Vec<u8>> {
        Some(keys::one(&self.org.id))
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let (o, l) = (&self.org, &self.overrides);
        let record = OrgV1 {
            id: text(&o.id),
            name: text(&o.name),
            slug: text(&o.slug),
            external_id: text_opt(&o.external_id),
            description: text_opt(&o.description),
            plan: text(&o.plan),
            address_line1: text_opt(&o.address_line1),
            address_line2: text_opt(&o.address_line2),
            city: text_opt(&o.city),
            state: text_opt(&o.state),
            zipcode: text_opt(&o.zipcode),
            country: text_opt(&o.country),
            pin_protection: o.settings.pin_protection,
            settings: Cow::Borrowed(&o.settings.extra),
            metadata: Cow::Borrowed(&o.metadata),
            created_at: o.created_at.timestamp_micros(),
            updated_at: o.updated_at.timestamp_micros(),
            mcps: limit_out(l.mcps),
            api_keys: limit_out(l.api_keys),
            team_members: limit_out(l.team_members),
            monthly_requests: limit_out(l.monthly_requests),
        };
        let (period, anchor) = period_out(self.period);
        let record = OrgV3 {
            org: OrgV2 {
                org: record,
                period,
                anchor,
            },
            alerts: self.alerts.clone(),
        };
        codec::encode(Self::TAG, &record)
    }

    fn decode(bytes: &[u8]) -> Result<OrgRecord> {
        let (r, alerts) = match bytes.first() {
            Some(&t) if t == Tag::Org as u8 => {
                let r: OrgV1 = codec::decode(Tag::Org, bytes)?;
                return org_of(r, QuotaPeriod::CalendarMonth, None);
            }
            Some(&t) if t == Tag::OrgV2 as u8 => (codec::decode(Tag::OrgV2, bytes)?, None),
            _ => {
                let r: OrgV3 = codec::decode(Self::TAG, bytes)?;
                (r.org, r.alerts)
            }
        };
        let r: OrgV2 = r;
        let period = period_in(r.period, r.anchor)?;
        org_of(r.org, period, alerts)
    }
}

/// The record of a stored organization.
fn org_of(r: OrgV1<'_>, period: QuotaPeriod, alerts: Option<Vec<u32>>) -> Result<OrgRecord> {
    {
        Ok(OrgRecord {
            org: Organization {
                id: r.id.into_owned(),
                name: r.name.into_owned(),
                slug: r.slug.into_owned(),
                external_id: owned_opt(r.external_id),
                description: owned_opt(r.description),
                plan: r.plan.into_owned(),
                address_line1: owned_opt(r.address_line1),
                address_line2: owned_opt(r.address_line2),
                city: owned_opt(r.city),
                state: owned_opt(r.state),
                zipcode: owned_opt(r.zipcode),
                country: owned_opt(r.country),
                settings: OrganizationSettings {
                    pin_protection: r.pin_protection,
                    extra: r.settings.into_owned(),
                },
                metadata: r.metadata.into_owned(),
                created_at: time(r.created_at)?,
                updated_at: time(r.updated_at)?,
            },
            overrides: LimitOverrides {
                mcps: limit_in(r.mcps),
                api_keys: limit_in(r.api_keys),
                team_members: limit_in(r.team_members),
                monthly_requests: limit_in(r.monthly_requests),
            },
            period,
            alerts,
        })
    }
}

// Memberships (tag 4, and tag 12 since schema 4: the deactivation time). A tag-4 record is
// an active membership: files of schema 3 and before keep theirs, and every write is tag 12.

#[derive(Serialize, Deserialize)]
struct MembershipV1<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    organization_id: Cow<'a, str>,
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    role: u8,
    joined_at: i64,
    updated_at: i64,
}

#[derive(Serialize, Deserialize)]
struct MembershipV2<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    organization_id: Cow<'a, str>,
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    role: u8,
    joined_at: i64,
    updated_at: i64,
    /// `None` while active.
    deactivated_at: Option<i64>,
}

impl Stored for Membership {
    const TAG: Tag = Tag::MembershipV2;

    fn own_key(&self) -> Option<Vec<u8>> {
        Some(keys::two(&self.organization_id, &self.user_id))
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let record = MembershipV2 {
            id: text(&self.id),
            organization_id: text(&self.organization_id),
            user_id: text(&self.user_id),
            role: self.role.rank(),
            joined_at: self.joined_at.timestamp_micros(),
            updated_at: self.updated_at.timestamp_micros(),
            deactivated_at: self.deactivated_at.map(|t| t.timestamp_micros()),
        };
        codec::encode(Self::TAG, &record)
    }

    fn decode(bytes: &[u8]) -> Result<Membership> {
        let r = if bytes.first() == Some(&(Tag::Membership as u8)) {
            let r: MembershipV1 = codec::decode(Tag::Membership, bytes)?;
            MembershipV2 {
                id: r.id,
                organization_id: r.organization_id,
                user_id: r.user_id,
                role: r.role,
                joined_at: r.joined_at,
                updated_at: r.updated_at,
                deactivated_at: None,
            }
        } else {
            codec::decode(Self::TAG, bytes)?
        };
        let deactivated_at = time_opt(r.deactivated_at)?;
        Ok(Membership {
            id: r.id.into_owned(),
            organization_id: r.organization_id.into_owned(),
            user_id: r.user_id.into_owned(),
            role: role(r.role)?,
            joined_at: time(r.joined_at)?,
            updated_at: time(r.updated_at)?,
            status: if deactivated_at.is_some() {
                MemberStatus::Deactivated
            } else {
                MemberStatus::Active
            },
            deactivated_at,
        })
    }
}

// Invitations (tag 5): the public fields, the token's hash, the lifetime it was created with.

/// An invitation's stored status, by index: pending, accepted, declined, revoked, expired.
#[derive(Serialize, Deserialize)]
enum StatusV1 {
    Pending,
    Accepted,
    Declined,
    Revoked,
    Expired,
}

#[derive(Serialize, Deserialize)]
struct InvitationV1<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    organization_id: Cow<'a, str>,
    #[serde(borrow)]
    email: Cow<'a, str>,
    role: u8,
    project_id: Option<Cow<'a, str>>,
    project_role: Option<u8>,
    status: StatusV1,
    #[serde(borrow)]
    invited_by: Cow<'a, str>,
    created_at: i64,
    expires_at: i64,
    accepted_at: Option<i64>,
    token_hash: [u8; 32],
    lifetime_secs: i64,
}

impl Stored for InvitationRecord {
    const TAG: Tag = Tag::Invitation;

    fn own_key(&self) -> Option<Vec<u8>> {
        Some(keys::one(&self.invitation.id))
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let i = &self.invitation;
        let record = InvitationV1 {
            id: text(&i.id),
            organization_id: text(&i.organization_id),
            email: text(&i.email),
            role: i.role.rank(),
            project_id: text_opt(&i.project_id),
            project_role: i.project_role.map(Role::rank),
            status: match i.status {
                InvitationStatus::Pending => StatusV1::Pending,
                InvitationStatus::Accepted => StatusV1::Accepted,
                InvitationStatus::Declined => StatusV1::Declined,
                InvitationStatus::Revoked => StatusV1::Revoked,
                InvitationStatus::Expired => StatusV1::Expired,
            },
            invited_by: text(&i.invited_by),
            created_at: i.created_at.timestamp_micros(),
            expires_at: i.expires_at.timestamp_micros(),
            accepted_at: i.accepted_at.map(|t| t.timestamp_micros()),
            token_hash: self.token_hash,
            lifetime_secs: self.lifetime_secs,
        };
        codec::encode(Self::TAG, &record)
    }

    fn decode(bytes: &[u8]) -> Result<InvitationRecord> {
        let r: InvitationV1 = codec::decode(Self::TAG, bytes)?;
        Ok(InvitationRecord {
            invitation: Invitation {
                id: r.id.into_owned(),
                organization_id: r.organization_id.into_owned(),
                email: r.email.into_owned(),
                role: role(r.role)?,
                project_id: owned_opt(r.project_id),
                project_role: r.project_role.map(role).transpose()?,
                status: match r.status {
                    StatusV1::Pending => InvitationStatus::Pending,
                    StatusV1::Accepted => InvitationStatus::Accepted,
                    StatusV1::Declined => InvitationStatus::Declined,
                    StatusV1::Revoked => InvitationStatus::Revoked,
                    StatusV1::Expired => InvitationStatus::Expired,
                },
                invited_by: r.invited_by.into_owned(),
                created_at: time(r.created_at)?,
                expires_at: time(r.expires_at)?,
                accepted_at: time_opt(r.accepted_at)?,
            },
            token_hash: r.token_hash,
            lifetime_secs: r.lifetime_secs,
        })
    }
}

// Projects (tag 6) and project members (tag 7).

#[derive(Serialize, Deserialize)]
struct ProjectV1<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    organization_id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    description: Option<Cow<'a, str>>,
    created_at: i64,
    updated_at: i64,
}

impl Stored for Project {
    const TAG: Tag = Tag::Project;

    fn own_key(&self) -> Option<Vec<u8>> {
        Some(keys::one(&self.id))
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let record = ProjectV1 {
            id: text(&self.id),
            organization_id: text(&self.organization_id),
            name: text(&self.name),
            description: text_opt(&self.description),
            created_at: self.created_at.timestamp_micros(),
            updated_at: self.updated_at.timestamp_micros(),
        };
        codec::encode(Self::TAG, &record)
    }

    fn decode(bytes: &[u8]) -> Result<Project> {
        let r: ProjectV1 = codec::decode(Self::TAG, bytes)?;
        Ok(Project {
            id: r.id.into_owned(),
            organization_id: r.organization_id.into_owned(),
            name: r.name.into_owned(),
            description: owned_opt(r.description),
            created_at: time(r.created_at)?,
            updated_at: time(r.updated_at)?,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct ProjectMemberV1<'a> {
    #[serde(borrow)]
    project_id: Cow<'a, str>,
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    role: u8,
    added_at: i64,
    updated_at: i64,
}

impl Stored for ProjectMembership {
    const TAG: Tag = Tag::ProjectMember;

    fn own_key(&self) -> Option<Vec<u8>> {
        Some(keys::two(&self.project_id, &self.user_id))
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let record = ProjectMemberV1 {
            project_id: text(&self.project_id),
            user_id: text(&self.user_id),
            role: self.role.rank(),
            added_at: self.added_at.timestamp_micros(),
            updated_at: self.updated_at.timestamp_micros(),
        };
        codec::encode(Self::TAG, &record)
    }

    fn decode(bytes: &[u8]) -> Result<ProjectMembership> {
        let r: ProjectMemberV1 = codec::decode(Self::TAG, bytes)?;
        Ok(ProjectMembership {
            project_id: r.project_id.into_owned(),
            user_id: r.user_id.into_owned(),
            role: role(r.role)?,
            added_at: time(r.added_at)?,
            updated_at: time(r.updated_at)?,
        })
    }
}

// Resources (tag 8): the public fields and the resource's column in the usage rows.

/// A resource's stored kind, by index: MCP server, API key.
#[derive(Serialize, Deserialize)]
enum KindV1 {
    Mcp,
    ApiKey,
}

#[derive(Serialize, Deserialize)]
struct ResourceV1<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    organization_id: Cow<'a, str>,
    kind: KindV1,
    #[serde(borrow)]
    name: Cow<'a, str>,
    created_at: i64,
    removed_at: Option<i64>,
    column: u32,
}

impl Stored for ResourceRecord {
    const TAG: Tag = Tag::Resource;

    fn own_key(&self) -> Option<Vec<u8>> {
        Some(keys::one(&self.resource.id))
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let r = &self.resource;
        let record = ResourceV1 {
            id: text(&r.id),
            organization_id: text(&r.organization_id),
            kind: match r.kind {
                ResourceKind::Mcp => KindV1::Mcp,
                ResourceKind::ApiKey => KindV1::ApiKey,
            },
            name: text(&r.name),
            created_at: r.created_at.timestamp_micros(),
            removed_at: r.removed_at.map(|t| t.timestamp_micros()),
            column: self.column,
        };
        codec::encode(Self::TAG, &record)
    }

    fn decode(bytes: &[u8]) -> Result<ResourceRecord> {
        let r: ResourceV1 = codec::decode(Self::TAG, bytes)?;
        Ok(ResourceRecord {
            resource: Resource {
                id: r.id.into_owned(),
                organization_id: r.organization_id.into_owned(),
                kind: match r.kind {
                    KindV1::Mcp => ResourceKind::Mcp,
                    KindV1::ApiKey => ResourceKind::ApiKey,
                },
                name: r.name.into_owned(),
                created_at: time(r.created_at)?,
                removed_at: time_opt(r.removed_at)?,
            },
            column: r.column,
        })
    }
}

// Audit events (tag 10): the details as JSON text.

#[derive(Serialize, Deserialize)]
struct AuditV1<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    seq: u64,
    at: i64,
    #[serde(borrow)]
    actor: Cow<'a, str>,
    organization_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    target: Cow<'a, str>,
    #[serde(borrow)]
    details: Cow<'a, str>,
}

impl Stored for AuditEvent {
    const TAG: Tag = Tag::Audit;

    fn own_key(&self) -> Option<Vec<u8>> {
        Some(Key::new().u64(self.seq).into_vec())
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let record = AuditV1 {
            id: text(&self.id),
            seq: self.seq,
            at: self.at.timestamp_micros(),
            actor: text(&self.actor),
            organization_id: text_opt(&self.organization_id),
            action: text(&self.action),
            target: text(&self.target),
            details: Cow::Owned(self.details.to_string()),
        };
        codec::encode(Self::TAG, &record)
    }

    fn decode(bytes: &[u8]) -> Result<AuditEvent> {
        let r: AuditV1 = codec::decode(Self::TAG, bytes)?;
        let details = serde_json::from_str(&r.details)
            .map_err(|e| Error::corrupted(format!("an audit event's details: {e}")))?;
        Ok(AuditEvent {
            id: r.id.into_owned(),
            seq: r.seq,
            at: time(r.at)?,
            actor: r.actor.into_owned(),
            organization_id: owned_opt(r.organization_id),
            action: r.action.into_owned(),
            target: r.target.into_owned(),
            details,
        })
    }
}

// Store-internal records: their types are the records.

impl Stored for OrgStats {
    const TAG: Tag = Tag::OrgStats;

    fn encode(&self) -> Result<Vec<u8>> {
        codec::encode(Self::TAG, self)
    }

    fn decode(bytes: &[u8]) -> Result<OrgStats> {
        codec::decode(Self::TAG, bytes)
    }
}

impl Stored for DayRow {
    const TAG: Tag = Tag::UsageDay;

    fn encode(&self) -> Result<Vec<u8>> {
        codec::encode(Self::TAG, self)
    }

    fn decode(bytes: &[u8]) -> Result<DayRow> {
        codec::decode(Self::TAG, bytes)
    }
}

/// Every decoder of stored bytes, for the fuzz targets: record types, counters, keys, journal
/// records. Returns how many accepted the bytes.
pub(crate) fn fuzz_decode_all(bytes: &[u8]) -> usize {
    fn ok<T>(r: Result<T>) -> usize {
        usize::from(r.is_ok())
    }
    let mut n = 0;
    n += ok(User::decode(bytes));
    n += ok(OrgRecord::decode(bytes));
    n += ok(OrgStats::decode(bytes));
    n += ok(Membership::decode(bytes));
    n += ok(InvitationRecord::decode(bytes));
    n += ok(Project::decode(bytes));
    n += ok(ProjectMembership::decode(bytes));
    n += ok(ResourceRecord::decode(bytes));
    n += ok(AuditEvent::decode(bytes));
    n += ok(DayRow::decode(bytes));
    n += ok(EntitlementValue::decode(bytes));
    n += ok(Reservation::decode(bytes));
    n += ok(codec::decode_u64(bytes));
    n += ok(codec::decode_pending(bytes));
    let mut r = KeyReader::new(bytes);
    while r.str().is_some() {
        n += 1;
    }
    let generation = bytes
        .get(8..12)
        .map_or(0, |g| u32::from_le_bytes(g.try_into().unwrap_or_default()));
    n += usize::from(matches!(journal::decode(generation, bytes), Ok(Some(_))));
    n
}

/// An organization as the store holds it: the public fields plus what only orgdb reads
/// (stored as `records::OrgV2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrgRecord {
    pub(crate) org: Organization,
    pub(crate) overrides: LimitOverrides,
    /// How the usage quota resets (schema 6; older records read as calendar months).
    pub(crate) period: QuotaPeriod,
    /// Usage alert thresholds in percent, ascending (schema 7); `None`: the defaults.
    pub(crate) alerts: Option<Vec<u32>>,
}

/// What `get_organization` reads of one organization, in one read
/// ([`Reads::org_overview`](super::Reads::org_overview)).
#[derive(Debug, Clone)]
pub(crate) struct OrgOverview {
    pub(crate) rec: OrgRecord,
    pub(crate) stats: OrgStats,
    /// The asking user's role there (`None`: not a member, or no user asked).
    pub(crate) role: Option<Role>,
    /// Pending invitations whose expiry is still ahead.
    pub(crate) pending: u64,
    /// The stored total of the quota period asked for (0 when none was asked).
    pub(crate) period_total: u64,
}

/// What admitting usage of one organization asks of the store
/// ([`Reads::usage_state`](super::Reads::usage_state)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UsageAsk<'a> {
    /// Quota periods (by their first day number) whose stored totals are wanted.
    pub(crate) periods: &'a [u32],
    /// Whether to sum what live leases (shared backends) and live usage reservations hold.
    pub(crate) leases: bool,
    /// A lease holder left out of that sum.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) except_holder: Option<&'a str>,
    /// The time of the call (micros): with `leases`, the organization's usage reservations
    /// that expire after it are summed too (they count against every period).
    pub(crate) now_micros: i64,
    /// Idempotency keys to look up.
    pub(crate) keys: &'a [&'a str],
    /// Resource ids whose usage columns are wanted.
    pub(crate) resources: &'a [&'a str],
}

/// The answer to a [`UsageAsk`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UsageState {
    /// Each asked period: (first day, stored total, quota reserved by live leases and live
    /// usage reservations).
    pub(crate) periods: Vec<(u32, u64, u64)>,
    /// The asked keys that are stored.
    pub(crate) keys: Vec<String>,
    /// Each asked resource's column; `None` when it is not a live resource of the
    /// organization.
    pub(crate) columns: Vec<(String, Option<u32>)>,
}

/// What a usage transaction will likely read of one of its organizations
/// ([`Backend::write_usage_dyn`](super::Backend::write_usage_dyn)): the organization's record
/// and the answer to its prefetched usage ask, as the caller saw them when its last usage
/// transaction of the organization committed.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct UsageGuess {
    /// The organization's record.
    pub(crate) org: OrgRecord,
    /// The answer to the prefetched ask, as the store would give it with leases asked.
    pub(crate) state: UsageState,
    /// Whether the state's holds (what leases and reservations hold) are guessed. When not,
    /// the transaction's quota leaves them out (it asks without leases: no bound to count
    /// them against), so whatever they are, they cannot change what it decides.
    pub(crate) holds: bool,
}

/// One page of a member list, as [`Reads::member_rows`](super::Reads::member_rows) takes it:
/// the list `set` (optionally of one role), strictly after `after`, skipping `skip` rows, at
/// most `limit` rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberPage<'a> {
    pub(crate) set: MemberSet,
    pub(crate) role: Option<Role>,
    pub(crate) after: Option<&'a keys::MemberPos>,
    pub(crate) skip: u64,
    pub(crate) limit: usize,
}

/// A user and their membership of an organization, if any
/// ([`Reads::invitation_with_user`](super::Reads::invitation_with_user)).
pub(crate) type UserMembership = (User, Option<Membership>);

/// An organization, a user's acting role there and one page of its members with their
/// users ([`Reads::org_with_members`](super::Reads::org_with_members)).
pub(crate) type OrgMembers = (OrgRecord, Option<Role>, Vec<(Membership, User)>);

/// What admitted usage changes of one organization
/// ([`Writes::apply_usages`](super::Writes::apply_usages)): new period totals, increments of
/// day rows, new keys with the time each was recorded (micros).
#[derive(Debug, Clone, Copy)]
pub(crate) struct UsageWrite<'a> {
    pub(crate) org: &'a str,
    pub(crate) periods: &'a [(keys::Span, u64)],
    pub(crate) days: &'a [(u32, &'a DayRow)],
    pub(crate) keys: &'a [(String, i64)],
}

/// A system list: every organization, or every user (`Db::list_organizations`,
/// `Db::list_users`), in id (creation) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Directory {
    Orgs,
    Users,
}

impl Directory {
    /// The table of the rows, and the table of their search terms (`term ∅ id ∅`).
    pub(crate) fn tables(self) -> (Table, Table) {
        match self {
            Directory::Orgs => (Table::Orgs, Table::OrgSearch),
            Directory::Users => (Table::Users, Table::UserSearch),
        }
    }
}

/// What a search finds an organization by: its slug, its whole name and each later word of
/// its name (the rules of `model::user::search_terms`).
pub(crate) fn org_terms(org: &Organization) -> Vec<String> {
    crate::model::user::search_terms(&org.slug, &org.name)
}

/// Which members a list reads: the active ones (the default), the deactivated ones, or all
/// (active first, then deactivated, each by join time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberSet {
    Active,
    Deactivated,
    All,
}

impl MemberSet {
    /// Whether the list includes the part of active (`false`) or deactivated (`true`) members.
    pub(crate) fn includes(self, deactivated: bool) -> bool {
        match self {
            MemberSet::Active => !deactivated,
            MemberSet::Deactivated => deactivated,
            MemberSet::All => true,
        }
    }
}

/// Stored counters of one organization, kept in step by the membership and resource writers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrgStats {
    pub(crate) members: u64,
    /// Members per role, indexed by `Role::rank`.
    pub(crate) by_role: [u64; 4],
    pub(crate) mcps: u64,
    pub(crate) api_keys: u64,
    /// Resource columns handed out (live and removed resources).
    pub(crate) resource_columns: u32,
}

impl OrgStats {
    pub(crate) fn owners(&self) -> u64 {
        self.by_role[Role::Owner.rank() as usize]
    }

    pub(crate) fn with_role(&self, role: Role) -> u64 {
        self.by_role[role.rank() as usize]
    }

    pub(crate) fn resource_count(&self, kind: ResourceKind) -> u64 {
        match kind {
            ResourceKind::Mcp => self.mcps,
            ResourceKind::ApiKey => self.api_keys,
        }
    }

    pub(crate) fn resource_count_mut(&mut self, kind: ResourceKind) -> &mut u64 {
        match kind {
            ResourceKind::Mcp => &mut self.mcps,
            ResourceKind::ApiKey => &mut self.api_keys,
        }
    }
}

/// An invitation as the store holds it: the public fields plus the hash of its token (stored
/// as `records::InvitationV1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvitationRecord {
    pub(crate) invitation: Invitation,
    pub(crate) token_hash: [u8; 32],
    /// The lifetime it was created with (seconds): a resend grants the same again.
    pub(crate) lifetime_secs: i64,
}

/// A resource as the store holds it: the public fields plus its column in the organization's
/// packed usage rows (assigned once, never reused; stored as `records::ResourceV1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceRecord {
    pub(crate) resource: Resource,
    pub(crate) column: u32,
}

/// One organization's usage on one day: the total, and the count of each resource column
/// (dense; events without a resource are `total - sum(columns)`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DayRow {
    pub(crate) total: u64,
    pub(crate) columns: Vec<u64>,
}

impl DayRow {
    pub(crate) fn add(&mut self, column: Option<u32>, count: u64) {
        self.total = self.total.saturating_add(count);
        if let Some(column) = column {
            let i = column as usize;
            if self.columns.len() <= i {
                self.columns.resize(i + 1, 0);
            }
            self.columns[i] = self.columns[i].saturating_add(count);
        }
    }

    pub(crate) fn merge(&mut self, other: &DayRow) {
        self.total = self.total.saturating_add(other.total);
        if self.columns.len() < other.columns.len() {
            self.columns.resize(other.columns.len(), 0);
        }
        for (mine, theirs) in self.columns.iter_mut().zip(&other.columns) {
            *mine = mine.saturating_add(*theirs);
        }
    }
}
