//! orgdb: an embedded, transactional engine for multi-tenant SaaS state.
//!
//! Organizations, users, memberships and roles, invitations, projects, plans with limits and
//! usage quotas, in one database file. Every method of [`Db`] is one ACID transaction that
//! checks permissions, input, invariants and quotas before it writes, and appends an audit
//! event with the change.
//!
//! ```
//! use orgdb::{Actor, Db, MemberQuery, NewOrganization, NewUser, Role};
//!
//! # fn main() -> Result<(), orgdb::Error> {
//! let db = Db::in_memory()?;
//! let alice = db.create_user(&NewUser { email: "Alice@Example.com".into(), name: "Alice".into() })?;
//! let bob = db.create_user(&NewUser { email: "bob@example.com".into(), name: "Bob".into() })?;
//!
//! let created = db.create_organization(&alice.id, &NewOrganization {
//!     name: "My Company".into(),
//!     plan: Some("pro".into()),
//!     ..Default::default()
//! })?;
//! let org = created.organization.id;
//! assert_eq!(created.organization.slug, "my-company");
//!
//! let owner = Actor::user(&alice.id);
//! db.add_member(&owner, &org, &bob.id, Role::Admin)?; // or a name an edge received: "ADMIN"
//! let page = db.list_members(&owner, &org, &MemberQuery::default())?;
//! assert_eq!(page.pagination.total, 2);
//!
//! // Bob is an admin: he may not make himself an owner.
//! let err = db.update_member_role(&Actor::user(&bob.id), &org, &bob.id.as_str().into(), Role::Owner)
//!     .unwrap_err();
//! assert_eq!(err.code(), "forbidden");
//!
//! let details = db.get_organization(&owner, &org)?;
//! assert_eq!(details.limits.team_members, Some(5));
//! assert_eq!(details.usage.team_members, 2);
//! # Ok(())
//! # }
//! ```

mod authz;
mod db;
mod error;
// The UniFFI surface for the Python and Kotlin bindings: only with the `ffi` feature, so a
// Rust host never compiles UniFFI.
#[cfg(feature = "ffi")]
mod ffi;
#[doc(hidden)]
pub mod fuzzing;
mod ids;
#[cfg(feature = "json")]
pub mod json;
mod ledger;
pub mod model;
mod ops;
mod options;
mod store;
mod validate;

#[cfg(feature = "ffi")]
uniffi::setup_scaffolding!("orgdb");

// The Python and Kotlin libraries' allocator (the `mimalloc` feature, which only their builds
// enable): their calls build and free many small records.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use authz::Actor;
pub use db::{Db, UsageRecorder};
pub use error::{Details, Error, Result};
pub use model::alert::{UsageAlert, UsageAlerts};
pub use model::audit::AuditEvent;
pub use model::entitlement::{
    Enforcement, Entitlement, EntitlementKind, EntitlementSource, EntitlementValue, SEED_LIMITS,
};
pub use model::invitation::{
    CreatedInvitation, Invitation, InvitationPreview, InvitationQuery, InvitationStatus,
    NewInvitation, PendingInvitation,
};
pub use model::membership::{
    Member, MemberQuery, MemberRef, MemberStatus, Membership, RemovedMember,
};
pub use model::org::{
    Address, Limit, LimitOverrides, LimitOverridesPatch, Limits, NewOrganization, Organization,
    OrganizationDetails, OrganizationPatch, OrganizationSettings, OrganizationWithMembership,
    SlugCheck, Usage, UserWithOrganization,
};
pub use model::page::{ListQuery, Page, Pagination};
pub use model::period::{BillingPeriod, QuotaPeriod};
pub use model::permission::{Action, Permissions};
pub use model::plan::{Plan, PlanCatalog};
pub use model::project::{
    NewProject, Project, ProjectMember, ProjectMembership, ProjectPatch, UserProject,
};
pub use model::reservation::{NewReservation, Reservation};
pub use model::resource::{Resource, ResourceKind};
pub use model::role::{Role, RoleArg};
pub use model::usage::{
    ApiKeyUsage, CorrectedUsage, DayUsage, Period, RequestTotals, ResourceUsage, UsageCorrection,
    UsageEvent, UsageQuery, UsageReceipt, UsageReport,
};
pub use model::user::{NewUser, User, UserPatch};
pub use ops::usage::PruneReport;
pub use options::{Clock, Durability, ManualClock, Options, SystemClock};
pub use store::CheckReport;
pub use validate::normalize_email;
