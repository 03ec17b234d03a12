//! The inputs UniFFI cannot derive from the model types, each for a reason:
//! - [`Actor`]: the Rust enum's variant holds a bare id (`Actor::User(String)`); the bindings
//!   name it (`Actor.USER(id=...)`).
//! - [`OrganizationPatch`], [`ProjectPatch`], [`LimitOverridesPatch`]: the Rust patches say
//!   "clear" with `Option<Option<T>>`, which UniFFI flattens into one optional; here a field
//!   takes a [`FieldUpdate`] / [`LimitUpdate`].
//! - [`Limit`]: `Limit::Count(u64)` has an unnamed field (and its JSON shape is fixed); the
//!   bindings name it (`Limit.COUNT(value=...)`).
//! - [`UsageQuery`]: its dates arrive as text so that a bad one is a `validation_error` naming
//!   `start_date` or `end_date` (a custom type cannot know its field).
//!
//! Every other input (`NewUser`, `UserPatch`, `NewOrganization`, `MemberQuery`,
//! `NewInvitation`, `InvitationQuery`, `NewProject`, `UsageEvent`) is the model type itself.

use super::custom::{date_opt, StringMap};
use super::error::OrgDbError;
use crate::model;
use crate::model::org::OrganizationSettings;
use crate::model::usage::Period;

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
    pub metadata: Option<StringMap>,
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
            settings: p.settings,
            metadata: p.metadata,
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
            period: q.period,
            start_date: date_opt(q.start_date, "start_date")?,
            end_date: date_opt(q.end_date, "end_date")?,
        })
    }
}
