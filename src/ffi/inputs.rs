//! What callers pass in: actors, new entities, patches and queries. Every optional field has a
//! default, so hosts name only what they set.

use std::collections::HashMap;
use std::time::SystemTime;

use super::convert::{btree_map, date_opt, date_time_opt};
use super::error::OrgDbError;
use super::records::{OrganizationSettings, Period};
use crate::model;

/// Who acts: a user (checked against their role in the organization) or the trusted host.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Actor {
    /// A user, by id; checked against the permission matrix.
    User {
        /// The user's id (`user_…`).
        id: String,
    },
    /// The trusted host (billing, admin tools): never checked, but invariants hold.
    System,
}

impl From<Actor> for crate::Actor {
    fn from(actor: Actor) -> crate::Actor {
        match actor {
            Actor::User { id } => crate::Actor::User(id),
            Actor::System => crate::Actor::System,
        }
    }
}

/// Input of `create_user`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NewUser {
    /// Email; normalized (trimmed, lower-cased) before it is stored.
    pub email: String,
    /// Display name, 1–200 characters after trimming.
    pub name: String,
}

impl From<NewUser> for model::user::NewUser {
    fn from(u: NewUser) -> model::user::NewUser {
        model::user::NewUser {
            email: u.email,
            name: u.name,
        }
    }
}

/// Input of `update_user`: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct UserPatch {
    /// New email (must stay unique).
    #[uniffi(default)]
    pub email: Option<String>,
    /// New display name.
    #[uniffi(default)]
    pub name: Option<String>,
}

impl From<UserPatch> for model::user::UserPatch {
    fn from(p: UserPatch) -> model::user::UserPatch {
        model::user::UserPatch {
            email: p.email,
            name: p.name,
        }
    }
}

/// Input of `create_organization`.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct NewOrganization {
    /// Display name (required).
    pub name: String,
    /// Explicit slug; derived from the name when absent.
    #[uniffi(default)]
    pub slug: Option<String>,
    /// The host's own id.
    #[uniffi(default)]
    pub external_id: Option<String>,
    /// Free text.
    #[uniffi(default)]
    pub description: Option<String>,
    /// Plan name; the default plan when absent.
    #[uniffi(default)]
    pub plan: Option<String>,
    /// Address, first line.
    #[uniffi(default)]
    pub address_line1: Option<String>,
    /// Address, second line.
    #[uniffi(default)]
    pub address_line2: Option<String>,
    /// City.
    #[uniffi(default)]
    pub city: Option<String>,
    /// State or province.
    #[uniffi(default)]
    pub state: Option<String>,
    /// Postal code.
    #[uniffi(default)]
    pub zipcode: Option<String>,
    /// Country.
    #[uniffi(default)]
    pub country: Option<String>,
    /// Settings (all off when absent).
    #[uniffi(default)]
    pub settings: Option<OrganizationSettings>,
    /// Host metadata (at most 64 keys).
    #[uniffi(default)]
    pub metadata: HashMap<String, String>,
}

impl From<NewOrganization> for model::org::NewOrganization {
    fn from(o: NewOrganization) -> model::org::NewOrganization {
        model::org::NewOrganization {
            name: o.name,
            slug: o.slug,
            external_id: o.external_id,
            description: o.description,
            plan: o.plan,
            address_line1: o.address_line1,
            address_line2: o.address_line2,
            city: o.city,
            state: o.state,
            zipcode: o.zipcode,
            country: o.country,
            settings: o.settings.map(Into::into),
            metadata: btree_map(o.metadata),
        }
    }
}

/// A change to an optional text field in a patch: set it, or clear it. A patch field left
/// null keeps the current value.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum FieldUpdate {
    /// Set the field to `value`.
    Set {
        /// The new value.
        value: String,
    },
    /// Clear the field (make it null).
    Clear,
}

fn field_update(update: Option<FieldUpdate>) -> Option<Option<String>> {
    update.map(|u| match u {
        FieldUpdate::Set { value } => Some(value),
        FieldUpdate::Clear => None,
    })
}

/// A PATCH of an organization: null fields keep their value; optional text fields take a
/// [`FieldUpdate`] so they can be cleared; `metadata` replaces the whole map.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct OrganizationPatch {
    /// New name.
    #[uniffi(default)]
    pub name: Option<String>,
    /// New slug (must be free; an organization may keep its own).
    #[uniffi(default)]
    pub slug: Option<String>,
    /// New or cleared external id.
    #[uniffi(default)]
    pub external_id: Option<FieldUpdate>,
    /// New or cleared description.
    #[uniffi(default)]
    pub description: Option<FieldUpdate>,
    /// Address line 1.
    #[uniffi(default)]
    pub address_line1: Option<FieldUpdate>,
    /// Address line 2.
    #[uniffi(default)]
    pub address_line2: Option<FieldUpdate>,
    /// City.
    #[uniffi(default)]
    pub city: Option<FieldUpdate>,
    /// State.
    #[uniffi(default)]
    pub state: Option<FieldUpdate>,
    /// Postal code.
    #[uniffi(default)]
    pub zipcode: Option<FieldUpdate>,
    /// Country.
    #[uniffi(default)]
    pub country: Option<FieldUpdate>,
    /// Replacement settings.
    #[uniffi(default)]
    pub settings: Option<OrganizationSettings>,
    /// Replacement metadata map.
    #[uniffi(default)]
    pub metadata: Option<HashMap<String, String>>,
}

impl From<OrganizationPatch> for model::org::OrganizationPatch {
    fn from(p: OrganizationPatch) -> model::org::OrganizationPatch {
        model::org::OrganizationPatch {
            name: p.name,
            slug: p.slug,
            external_id: field_update(p.external_id),
            description: field_update(p.description),
            address_line1: field_update(p.address_line1),
            address_line2: field_update(p.address_line2),
            city: field_update(p.city),
            state: field_update(p.state),
            zipcode: field_update(p.zipcode),
            country: field_update(p.country),
            settings: p.settings.map(Into::into),
            metadata: p.metadata.map(btree_map),
        }
    }
}

/// One limit override: unlimited, or a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Limit {
    /// No limit.
    Unlimited,
    /// At most `value`.
    Count {
        /// The limit.
        value: u64,
    },
}

impl From<Limit> for model::org::Limit {
    fn from(l: Limit) -> model::org::Limit {
        match l {
            Limit::Unlimited => model::org::Limit::Unlimited,
            Limit::Count { value } => model::org::Limit::Count(value),
        }
    }
}

/// A change to one limit override in a [`LimitOverridesPatch`]: set it, or clear it back to
/// the plan's limit. A patch field left null keeps the current override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum LimitUpdate {
    /// Override the plan with `limit`.
    Set {
        /// The new limit.
        limit: Limit,
    },
    /// Remove the override: the plan's limit applies again.
    Plan,
}

/// A PATCH of an organization's limit overrides: fields left null stay as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, uniffi::Record)]
pub struct LimitOverridesPatch {
    /// Change of `mcps`.
    #[uniffi(default)]
    pub mcps: Option<LimitUpdate>,
    /// Change of `api_keys`.
    #[uniffi(default)]
    pub api_keys: Option<LimitUpdate>,
    /// Change of `team_members`.
    #[uniffi(default)]
    pub team_members: Option<LimitUpdate>,
    /// Change of `monthly_requests`.
    #[uniffi(default)]
    pub monthly_requests: Option<LimitUpdate>,
}

impl From<LimitOverridesPatch> for model::org::LimitOverridesPatch {
    fn from(p: LimitOverridesPatch) -> model::org::LimitOverridesPatch {
        let update = |u: Option<LimitUpdate>| {
            u.map(|u| match u {
                LimitUpdate::Set { limit } => Some(limit.into()),
                LimitUpdate::Plan => None,
            })
        };
        model::org::LimitOverridesPatch {
            mcps: update(p.mcps),
            api_keys: update(p.api_keys),
            team_members: update(p.team_members),
            monthly_requests: update(p.monthly_requests),
        }
    }
}

/// Query of `list_members`.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct MemberQuery {
    /// Page number, from 1 (default 1).
    #[uniffi(default)]
    pub page: Option<u32>,
    /// Rows per page, 1–100 (default 20).
    #[uniffi(default)]
    pub per_page: Option<u32>,
    /// Role filter, case-insensitive.
    #[uniffi(default)]
    pub role: Option<String>,
    /// `next_cursor` of a previous page: the page starts right after it.
    #[uniffi(default)]
    pub cursor: Option<String>,
}

impl From<MemberQuery> for model::membership::MemberQuery {
    fn from(q: MemberQuery) -> model::membership::MemberQuery {
        model::membership::MemberQuery {
            page: q.page,
            per_page: q.per_page,
            role: q.role,
            cursor: q.cursor,
        }
    }
}

/// Input of `create_invitation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct NewInvitation {
    /// Invitee's email.
    pub email: String,
    /// Organization role (default `member`), case-insensitive.
    #[uniffi(default)]
    pub role: Option<String>,
    /// Project to join on acceptance.
    #[uniffi(default)]
    pub project_id: Option<String>,
    /// Role in that project (default `member`).
    #[uniffi(default)]
    pub project_role: Option<String>,
    /// Lifetime in seconds, 1 hour to 30 days (default from the options: 7 days).
    #[uniffi(default)]
    pub expires_in_secs: Option<u64>,
}

impl From<NewInvitation> for model::invitation::NewInvitation {
    fn from(i: NewInvitation) -> model::invitation::NewInvitation {
        model::invitation::NewInvitation {
            email: i.email,
            role: i.role,
            project_id: i.project_id,
            project_role: i.project_role,
            expires_in: i.expires_in_secs.map(std::time::Duration::from_secs),
        }
    }
}

/// Query of `list_invitations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct InvitationQuery {
    /// Status filter (`pending`, `accepted`, `declined`, `revoked`, `expired`).
    #[uniffi(default)]
    pub status: Option<String>,
    /// Page number, from 1.
    #[uniffi(default)]
    pub page: Option<u32>,
    /// Rows per page, 1–100 (default 20).
    #[uniffi(default)]
    pub per_page: Option<u32>,
}

impl From<InvitationQuery> for model::invitation::InvitationQuery {
    fn from(q: InvitationQuery) -> model::invitation::InvitationQuery {
        model::invitation::InvitationQuery {
            status: q.status,
            page: q.page,
            per_page: q.per_page,
        }
    }
}

/// Input of `create_project`.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct NewProject {
    /// Name, 1–200 characters.
    pub name: String,
    /// Free text.
    #[uniffi(default)]
    pub description: Option<String>,
}

impl From<NewProject> for model::project::NewProject {
    fn from(p: NewProject) -> model::project::NewProject {
        model::project::NewProject {
            name: p.name,
            description: p.description,
        }
    }
}

/// A PATCH of a project.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct ProjectPatch {
    /// New name.
    #[uniffi(default)]
    pub name: Option<String>,
    /// New or cleared description.
    #[uniffi(default)]
    pub description: Option<FieldUpdate>,
}

impl From<ProjectPatch> for model::project::ProjectPatch {
    fn from(p: ProjectPatch) -> model::project::ProjectPatch {
        model::project::ProjectPatch {
            name: p.name,
            description: field_update(p.description),
        }
    }
}

/// One usage event.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct UsageEvent {
    /// How many requests, 1 to 2^53.
    pub count: u64,
    /// The resource used, if any; it must belong to the organization.
    #[uniffi(default)]
    pub resource_id: Option<String>,
    /// When it happened (default now): at most 5 minutes ahead, 35 days behind.
    #[uniffi(default)]
    pub at: Option<SystemTime>,
    /// Retry key, 1–255 characters: a repeat is acknowledged with `duplicate` and counts
    /// nothing.
    #[uniffi(default)]
    pub idempotency_key: Option<String>,
}

impl UsageEvent {
    /// The model event; `field` names the event in errors (`at`, `events[3].at`).
    pub(crate) fn into_model(self, field: &str) -> Result<model::usage::UsageEvent, OrgDbError> {
        Ok(model::usage::UsageEvent {
            resource_id: self.resource_id,
            count: self.count,
            at: date_time_opt(self.at, field)?,
            idempotency_key: self.idempotency_key,
        })
    }
}

/// Query of `usage_report`: without dates, the period containing today (or `start_date`);
/// with both, exactly that range (at most 366 days). Dates are `YYYY-MM-DD`.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct UsageQuery {
    /// Granularity of the default range (month when null).
    #[uniffi(default)]
    pub period: Option<Period>,
    /// First day, inclusive, `YYYY-MM-DD`.
    #[uniffi(default)]
    pub start_date: Option<String>,
    /// Last day, inclusive, `YYYY-MM-DD`.
    #[uniffi(default)]
    pub end_date: Option<String>,
}

impl TryFrom<UsageQuery> for model::usage::UsageQuery {
    type Error = OrgDbError;

    fn try_from(q: UsageQuery) -> Result<model::usage::UsageQuery, OrgDbError> {
        Ok(model::usage::UsageQuery {
            period: q.period.map(Into::into),
            start_date: date_opt(q.start_date, "start_date")?,
            end_date: date_opt(q.end_date, "end_date")?,
        })
    }
}
