//! The exported database object: one method per [`crate::Db`] method, each converting its
//! arguments, calling the Rust API and converting the answer.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::sync::Arc;

use super::clock::Options;
use super::custom::{date, CountList, ResourceIdList, UtcTimestamp};
use super::error::invalid;
use super::error::OrgDbError;
use super::inputs::{Actor, LimitOverridesPatch, OrganizationPatch, ProjectPatch, UsageQuery};
use super::records::{
    CheckReport, InvitationPage, MemberPage, OrganizationPage, PruneReport, TableStats, UserPage,
};
use crate::model::transfer::ImportReport;
use crate::{
    AuditEvent, BillingPeriod, CorrectedUsage, CreatedInvitation, Db, Entitlement,
    EntitlementValue, Error, Invitation, InvitationPreview, InvitationQuery, ListQuery, Member,
    MemberQuery, MemberRef, Membership, NewInvitation, NewOrganization, NewProject, NewReservation,
    NewUser, Organization, OrganizationDetails, OrganizationSettings, OrganizationWithMembership,
    PendingInvitation, Permissions, Project, ProjectMember, QuotaPeriod, RemovedMember,
    Reservation, Resource, ResourceKind, SlugCheck, UsageAlerts, UsageCorrection, UsageEvent,
    UsageReceipt, UsageReport, User, UserPatch, UserProject, UserWithOrganization,
};

type Result<T> = std::result::Result<T, OrgDbError>;

/// A handle to one orgdb database (a file, or memory). Share it freely between threads;
/// every method is one transaction.
#[derive(Debug, uniffi::Object)]
pub struct OrgDb {
    db: Db,
}

impl OrgDb {
    fn wrap(db: std::result::Result<Db, Error>) -> Result<Arc<OrgDb>> {
        Ok(Arc::new(OrgDb { db: db? }))
    }
}

#[uniffi::export]
impl OrgDb {
    /// Opens (creating if missing) the database file at `path` with default options.
    ///
    /// # Errors
    /// `storage_error` (cannot open, or in use), `incompatible_version`, `corrupted`.
    #[uniffi::constructor]
    pub fn open(path: String) -> Result<Arc<OrgDb>> {
        OrgDb::wrap(Db::open(path))
    }

    /// Opens (creating if missing) the database file at `path` with `options`.
    ///
    /// # Errors
    /// As `open`, and `validation_error` for invalid options.
    #[uniffi::constructor]
    pub fn open_with(path: String, options: Options) -> Result<Arc<OrgDb>> {
        OrgDb::wrap(Db::open_with(path, options.try_into()?))
    }

    /// A throw-away database in memory.
    ///
    /// # Errors
    /// Only if memory cannot be had.
    #[uniffi::constructor]
    pub fn in_memory() -> Result<Arc<OrgDb>> {
        OrgDb::wrap(Db::in_memory())
    }

    /// A throw-away database in memory with `options`.
    ///
    /// # Errors
    /// `validation_error` for invalid options.
    #[uniffi::constructor]
    pub fn in_memory_with(options: Options) -> Result<Arc<OrgDb>> {
        OrgDb::wrap(Db::in_memory_with(options.try_into()?))
    }

    /// The current time by this database's clock.
    pub fn now(&self) -> UtcTimestamp {
        self.db.now()
    }

    // Users.

    /// Creates a user; the email is normalized and must be unique.
    ///
    /// # Errors
    /// `validation_error` (`email`, `name`), `conflict`.
    pub fn create_user(&self, new: NewUser) -> Result<User> {
        Ok(self.db.create_user(&new)?)
    }

    /// Creates a user and their first organization (they become its owner) in one
    /// transaction.
    ///
    /// # Errors
    /// `validation_error`, `conflict`, `quota_exceeded` (`owned_organizations`).
    pub fn create_user_with_organization(
        &self,
        user: NewUser,
        organization: NewOrganization,
    ) -> Result<UserWithOrganization> {
        Ok(self
            .db
            .create_user_with_organization(&user, &organization)?)
    }

    /// A user by id.
    ///
    /// # Errors
    /// `not_found`.
    pub fn get_user(&self, id: String) -> Result<User> {
        Ok(self.db.get_user(&id)?)
    }

    /// A user by email (normalized first).
    ///
    /// # Errors
    /// `not_found`.
    pub fn find_user_by_email(&self, email: String) -> Result<User> {
        Ok(self.db.find_user_by_email(&email)?)
    }

    /// Changes a user's email or name.
    ///
    /// # Errors
    /// `not_found`, `validation_error`, `conflict`.
    pub fn update_user(&self, id: String, patch: UserPatch) -> Result<User> {
        Ok(self.db.update_user(&id, &patch)?)
    }

    /// Sets the user's `last_active` to now.
    ///
    /// # Errors
    /// `not_found`.
    pub fn touch_user(&self, id: String) -> Result<User> {
        Ok(self.db.touch_user(&id)?)
    }

    /// Deletes a user with their memberships.
    ///
    /// # Errors
    /// `not_found`; `conflict` while they are the only owner of an organization.
    pub fn delete_user(&self, id: String) -> Result<()> {
        Ok(self.db.delete_user(&id)?)
    }

    // Organizations.

    /// Creates an organization; `owner` (a user id) becomes its first owner.
    ///
    /// # Errors
    /// `validation_error`, `not_found` (owner), `conflict` (slug or external id taken).
    pub fn create_organization(
        &self,
        owner: String,
        new: NewOrganization,
    ) -> Result<OrganizationWithMembership> {
        Ok(self.db.create_organization(&owner, &new)?)
    }

    /// The organization with its limits and live usage.
    ///
    /// # Errors
    /// `not_found`, `forbidden`.
    pub fn get_organization(&self, actor: Actor, org: String) -> Result<OrganizationDetails> {
        Ok(self.db.get_organization(&actor.into(), &org)?)
    }

    /// `get_organization` as the seed's JSON response body, `{"success": true, "data": {…}}`
    /// (compact), for a host that serves it over HTTP and would serialize anyway: one string
    /// crosses the boundary instead of a record read field by field.
    ///
    /// # Errors
    /// As `get_organization`: raised, not wrapped in an error body.
    pub fn get_organization_json(&self, actor: Actor, org: String) -> Result<String> {
        let details = self.db.get_organization(&actor.into(), &org)?;
        Ok(crate::json::ok_text(&details))
    }

    /// As `get_organization`, by slug.
    ///
    /// # Errors
    /// `not_found`, `forbidden`.
    pub fn get_organization_by_slug(
        &self,
        actor: Actor,
        slug: String,
    ) -> Result<OrganizationDetails> {
        Ok(self.db.get_organization_by_slug(&actor.into(), &slug)?)
    }

    /// As `get_organization`, by the host's external id.
    ///
    /// # Errors
    /// `not_found`, `forbidden`.
    pub fn get_organization_by_external_id(
        &self,
        actor: Actor,
        external_id: String,
    ) -> Result<OrganizationDetails> {
        Ok(self
            .db
            .get_organization_by_external_id(&actor.into(), &external_id)?)
    }

    /// Every organization the user belongs to, with the user's membership, oldest first.
    ///
    /// # Errors
    /// `not_found` for an unknown user.
    pub fn list_organizations_for_user(
        &self,
        user: String,
    ) -> Result<Vec<OrganizationWithMembership>> {
        Ok(self.db.list_organizations_for_user(&user)?)
    }

    /// PATCH of an organization.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `conflict`, `not_found`.
    pub fn update_organization(
        &self,
        actor: Actor,
        org: String,
        patch: OrganizationPatch,
    ) -> Result<Organization> {
        Ok(self
            .db
            .update_organization(&actor.into(), &org, &patch.into())?)
    }

    /// Replaces the organization's settings.
    ///
    /// # Errors
    /// As `update_organization`.
    pub fn update_settings(
        &self,
        actor: Actor,
        org: String,
        settings: OrganizationSettings,
    ) -> Result<Organization> {
        Ok(self.db.update_settings(&actor.into(), &org, &settings)?)
    }

    /// Changes the plan (owners only).
    ///
    /// # Errors
    /// `forbidden`, `validation_error` (`plan`), `not_found`.
    pub fn set_plan(&self, actor: Actor, org: String, plan: String) -> Result<Organization> {
        Ok(self.db.set_plan(&actor.into(), &org, &plan)?)
    }

    /// Changes per-organization limit overrides (`Actor.System` only), as a patch: null fields
    /// stay, `LimitUpdate.Plan` clears one back to the plan's limit.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `validation_error` (a count above 2^63 - 1).
    pub fn set_limit_overrides(
        &self,
        actor: Actor,
        org: String,
        patch: LimitOverridesPatch,
    ) -> Result<OrganizationDetails> {
        Ok(self
            .db
            .set_limit_overrides(&actor.into(), &org, &patch.into())?)
    }

    /// What the organization has of one feature or limit, and why (plan, override or
    /// neither).
    ///
    /// # Errors
    /// `not_found` (organization, or a name nothing knows), `forbidden`,
    /// `validation_error` (`name`).
    pub fn entitlement(&self, actor: Actor, org: String, name: String) -> Result<Entitlement> {
        Ok(self.db.entitlement(&actor.into(), &org, &name)?)
    }

    /// Every entitlement of the organization: the four seed limits, then the others by name.
    ///
    /// # Errors
    /// `not_found`, `forbidden`.
    pub fn entitlements(&self, actor: Actor, org: String) -> Result<Vec<Entitlement>> {
        Ok(self.db.entitlements(&actor.into(), &org)?)
    }

    /// Sets (a value) or clears (null) the organization's override of one feature or limit
    /// (`Actor.System` only); returns the entitlement as it now is.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `validation_error` (`name`, `value`).
    pub fn set_entitlement_override(
        &self,
        actor: Actor,
        org: String,
        name: String,
        value: Option<EntitlementValue>,
    ) -> Result<Entitlement> {
        Ok(self
            .db
            .set_entitlement_override(&actor.into(), &org, &name, value.as_ref())?)
    }

    /// How the organization's usage quota resets, and the period that holds today.
    ///
    /// # Errors
    /// `not_found`, `forbidden`.
    pub fn billing_period(&self, actor: Actor, org: String) -> Result<BillingPeriod> {
        Ok(self.db.billing_period(&actor.into(), &org)?)
    }

    /// Sets how the organization's usage quota resets (`Actor.System` only): the calendar
    /// month, a day, a week, a year, or monthly from a billing anchor. Every period total is
    /// computed again from the day rows; nothing is lost or counted twice.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `validation_error` (`anchor`), `conflict` (`pruned_before`,
    /// `period_start`: the new rule would need days `prune_usage` removed).
    pub fn set_billing_anchor(
        &self,
        actor: Actor,
        org: String,
        rule: QuotaPeriod,
    ) -> Result<BillingPeriod> {
        Ok(self.db.set_billing_anchor(&actor.into(), &org, rule)?)
    }

    /// The organization's usage alerts: its thresholds, the current period's total against
    /// each, and the period each was last announced in.
    ///
    /// # Errors
    /// `not_found`, `forbidden`.
    pub fn usage_alerts(&self, actor: Actor, org: String) -> Result<UsageAlerts> {
        Ok(self.db.usage_alerts(&actor.into(), &org)?)
    }

    /// Sets the organization's usage alert thresholds in percent (null: the defaults, 80 and
    /// 100; an empty list: none). Owners and `Actor.System`.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `validation_error` (`thresholds`, `thresholds[i]`).
    pub fn set_usage_alerts(
        &self,
        actor: Actor,
        org: String,
        thresholds: Option<Vec<u32>>,
    ) -> Result<UsageAlerts> {
        Ok(self
            .db
            .set_usage_alerts(&actor.into(), &org, thresholds.as_deref())?)
    }

    /// Deletes the organization and everything in it, in one transaction.
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn delete_organization(&self, actor: Actor, org: String) -> Result<()> {
        Ok(self.db.delete_organization(&actor.into(), &org)?)
    }

    /// Whether an organization could take `slug` now, and why not.
    ///
    /// # Errors
    /// Only storage errors.
    pub fn check_slug(&self, slug: String) -> Result<SlugCheck> {
        Ok(self.db.check_slug(&slug)?)
    }

    // Members.

    /// One page of members, by `joined_at` then id, optionally filtered by role.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `validation_error` (`page`, `per_page`, `role`, `cursor`).
    pub fn list_members(
        &self,
        actor: Actor,
        org: String,
        query: MemberQuery,
    ) -> Result<MemberPage> {
        Ok(self.db.list_members(&actor.into(), &org, &query)?.into())
    }

    /// `list_members` as seed 000's JSON response body: `{"success": true, "data": […],
    /// "pagination": {…}}` with `next_cursor` beside them when there is a next page.
    ///
    /// # Errors
    /// As `list_members`.
    pub fn list_members_json(
        &self,
        actor: Actor,
        org: String,
        query: MemberQuery,
    ) -> Result<String> {
        let page = self.db.list_members(&actor.into(), &org, &query)?;
        Ok(crate::json::page_text(&page))
    }

    /// The projects of one member (user id or `mem_…`) in the organization, with their
    /// project role.
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn list_user_projects(
        &self,
        actor: Actor,
        org: String,
        who: String,
    ) -> Result<Vec<UserProject>> {
        Ok(self
            .db
            .list_user_projects(&actor.into(), &org, &MemberRef::parse(&who))?)
    }

    /// Every organization, oldest first, optionally searched (`Actor::System` only).
    ///
    /// # Errors
    /// `forbidden`, `validation_error`.
    pub fn list_organizations(&self, actor: Actor, query: ListQuery) -> Result<OrganizationPage> {
        Ok(self.db.list_organizations(&actor.into(), &query)?.into())
    }

    /// Every user, oldest first, optionally searched (`Actor::System` only).
    ///
    /// # Errors
    /// `forbidden`, `validation_error`.
    pub fn list_users(&self, actor: Actor, query: ListQuery) -> Result<UserPage> {
        Ok(self.db.list_users(&actor.into(), &query)?.into())
    }

    /// One member, by user id or membership id (`mem_…`).
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn get_member(&self, actor: Actor, org: String, who: String) -> Result<Member> {
        Ok(self
            .db
            .get_member(&actor.into(), &org, &MemberRef::parse(&who))?)
    }

    /// Deactivates a member: no seat, cannot act, kept with their history.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `conflict` (the last active owner).
    pub fn deactivate_member(&self, actor: Actor, org: String, who: String) -> Result<Member> {
        Ok(self
            .db
            .deactivate_member(&actor.into(), &org, &MemberRef::parse(&who))?)
    }

    /// Reactivates a deactivated member (seat-checked).
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `quota_exceeded`.
    pub fn reactivate_member(&self, actor: Actor, org: String, who: String) -> Result<Member> {
        Ok(self
            .db
            .reactivate_member(&actor.into(), &org, &MemberRef::parse(&who))?)
    }

    /// What `actor` may do in the organization: actions, grantable roles, manageable roles.
    ///
    /// # Errors
    /// `not_found`, `forbidden` for a non-member.
    pub fn permissions(&self, actor: Actor, org: String) -> Result<Permissions> {
        Ok(self.db.permissions(&actor.into(), &org)?)
    }

    /// Adds a user directly (seat-checked).
    ///
    /// # Errors
    /// `forbidden`, `validation_error` (`role`), `not_found`, `conflict`, `quota_exceeded`.
    pub fn add_member(
        &self,
        actor: Actor,
        org: String,
        user: String,
        role: String,
    ) -> Result<Member> {
        Ok(self.db.add_member(&actor.into(), &org, &user, &role)?)
    }

    /// Changes a member's role; `who` is a user id or a membership id.
    ///
    /// # Errors
    /// `forbidden`, `validation_error` (`role`), `not_found`, `conflict` (last owner).
    pub fn update_member_role(
        &self,
        actor: Actor,
        org: String,
        who: String,
        role: String,
    ) -> Result<Member> {
        Ok(self
            .db
            .update_member_role(&actor.into(), &org, &MemberRef::parse(&who), &role)?)
    }

    /// Removes a member (user id or membership id) and their project memberships.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `conflict` (last owner).
    pub fn remove_member(&self, actor: Actor, org: String, who: String) -> Result<RemovedMember> {
        Ok(self
            .db
            .remove_member(&actor.into(), &org, &MemberRef::parse(&who))?)
    }

    /// The user leaves the organization.
    ///
    /// # Errors
    /// `not_found`, `conflict` (last owner).
    pub fn leave_organization(&self, user: String, org: String) -> Result<RemovedMember> {
        Ok(self.db.leave_organization(&user, &org)?)
    }

    /// Makes `to` an owner; the calling owner becomes admin.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `validation_error`, `conflict`.
    pub fn transfer_ownership(&self, actor: Actor, org: String, to: String) -> Result<Member> {
        Ok(self.db.transfer_ownership(&actor.into(), &org, &to)?)
    }

    // Invitations.

    /// Invites an email; the token is in the result only.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `not_found`, `conflict`, `quota_exceeded`.
    pub fn create_invitation(
        &self,
        actor: Actor,
        org: String,
        new: NewInvitation,
    ) -> Result<CreatedInvitation> {
        Ok(self.db.create_invitation(&actor.into(), &org, &new)?)
    }

    /// Many invitations in one transaction: all or nothing.
    ///
    /// # Errors
    /// As `create_invitation`, with `details["email"]`.
    pub fn create_invitations(
        &self,
        actor: Actor,
        org: String,
        batch: Vec<NewInvitation>,
    ) -> Result<Vec<CreatedInvitation>> {
        Ok(self.db.create_invitations(&actor.into(), &org, &batch)?)
    }

    /// Invitations of an organization, oldest first, optionally filtered by status.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`.
    pub fn list_invitations(
        &self,
        actor: Actor,
        org: String,
        query: InvitationQuery,
    ) -> Result<InvitationPage> {
        Ok(self
            .db
            .list_invitations(&actor.into(), &org, &query)?
            .into())
    }

    /// One invitation (the admin view).
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn get_invitation(&self, actor: Actor, org: String, id: String) -> Result<Invitation> {
        Ok(self.db.get_invitation(&actor.into(), &org, &id)?)
    }

    /// What an accept page shows for a token.
    ///
    /// # Errors
    /// `not_found`.
    pub fn get_invitation_by_token(&self, token: String) -> Result<InvitationPreview> {
        Ok(self.db.get_invitation_by_token(&token)?)
    }

    /// Accepts an invitation for a user whose email matches it.
    ///
    /// # Errors
    /// `not_found`, `forbidden`, `invitation_expired`, `conflict`, `quota_exceeded`.
    pub fn accept_invitation(&self, token: String, user: String) -> Result<Membership> {
        Ok(self.db.accept_invitation(&token, &user)?)
    }

    /// Declines a pending or expired invitation.
    ///
    /// # Errors
    /// `not_found`, `conflict`.
    pub fn decline_invitation(&self, token: String) -> Result<Invitation> {
        Ok(self.db.decline_invitation(&token)?)
    }

    /// Revokes a pending or expired invitation.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `conflict`.
    pub fn revoke_invitation(&self, actor: Actor, org: String, id: String) -> Result<Invitation> {
        Ok(self.db.revoke_invitation(&actor.into(), &org, &id)?)
    }

    /// New token and expiry for a pending or expired invitation (same id).
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `conflict`, `quota_exceeded`.
    pub fn resend_invitation(
        &self,
        actor: Actor,
        org: String,
        id: String,
    ) -> Result<CreatedInvitation> {
        Ok(self.db.resend_invitation(&actor.into(), &org, &id)?)
    }

    /// Pending, unexpired invitations of an email across organizations.
    ///
    /// # Errors
    /// Only storage errors.
    pub fn list_invitations_for_email(&self, email: String) -> Result<Vec<PendingInvitation>> {
        Ok(self.db.list_invitations_for_email(&email)?)
    }

    // Projects.

    /// Creates a project.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `not_found`.
    pub fn create_project(&self, actor: Actor, org: String, new: NewProject) -> Result<Project> {
        Ok(self.db.create_project(&actor.into(), &org, &new)?)
    }

    /// One project.
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn get_project(&self, actor: Actor, org: String, id: String) -> Result<Project> {
        Ok(self.db.get_project(&actor.into(), &org, &id)?)
    }

    /// The organization's projects, oldest first.
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn list_projects(&self, actor: Actor, org: String) -> Result<Vec<Project>> {
        Ok(self.db.list_projects(&actor.into(), &org)?)
    }

    /// PATCH of a project.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `not_found`.
    pub fn update_project(
        &self,
        actor: Actor,
        org: String,
        id: String,
        patch: ProjectPatch,
    ) -> Result<Project> {
        Ok(self
            .db
            .update_project(&actor.into(), &org, &id, &patch.into())?)
    }

    /// Deletes a project and its memberships.
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn delete_project(&self, actor: Actor, org: String, id: String) -> Result<()> {
        Ok(self.db.delete_project(&actor.into(), &org, &id)?)
    }

    /// Adds an organization member to a project (role default `member`).
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `not_found`, `conflict`.
    #[uniffi::method(default(role = None))]
    pub fn add_project_member(
        &self,
        actor: Actor,
        org: String,
        project: String,
        user: String,
        role: Option<String>,
    ) -> Result<ProjectMember> {
        Ok(self.db.add_project_member(
            &actor.into(),
            &org,
            &project,
            &user,
            role.as_deref().map(crate::RoleArg::from),
        )?)
    }

    /// Changes a project member's role.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `not_found`.
    pub fn update_project_member_role(
        &self,
        actor: Actor,
        org: String,
        project: String,
        user: String,
        role: String,
    ) -> Result<ProjectMember> {
        Ok(self
            .db
            .update_project_member_role(&actor.into(), &org, &project, &user, &role)?)
    }

    /// Removes a user from a project (they stay in the organization).
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn remove_project_member(
        &self,
        actor: Actor,
        org: String,
        project: String,
        user: String,
    ) -> Result<()> {
        Ok(self
            .db
            .remove_project_member(&actor.into(), &org, &project, &user)?)
    }

    /// Members of a project, by time added.
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn list_project_members(
        &self,
        actor: Actor,
        org: String,
        project: String,
    ) -> Result<Vec<ProjectMember>> {
        Ok(self
            .db
            .list_project_members(&actor.into(), &org, &project)?)
    }

    // Resources.

    /// Registers an MCP server or API key, checked against its limit.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `quota_exceeded`, `not_found`.
    pub fn register_resource(
        &self,
        actor: Actor,
        org: String,
        kind: ResourceKind,
        name: String,
    ) -> Result<Resource> {
        Ok(self
            .db
            .register_resource(&actor.into(), &org, kind, &name)?)
    }

    /// Renames a resource.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `not_found`.
    pub fn rename_resource(
        &self,
        actor: Actor,
        org: String,
        id: String,
        name: String,
    ) -> Result<Resource> {
        Ok(self.db.rename_resource(&actor.into(), &org, &id, &name)?)
    }

    /// Removes a resource; it keeps its name in reports.
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn remove_resource(&self, actor: Actor, org: String, id: String) -> Result<Resource> {
        Ok(self.db.remove_resource(&actor.into(), &org, &id)?)
    }

    /// Live resources of an organization, of one kind (or all when null).
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn list_resources(
        &self,
        actor: Actor,
        org: String,
        kind: Option<ResourceKind>,
    ) -> Result<Vec<Resource>> {
        Ok(self.db.list_resources(&actor.into(), &org, kind)?)
    }

    // Usage.

    /// Records usage, durable when it returns; refused whole past `monthly_requests`.
    ///
    /// # Errors
    /// `validation_error`, `not_found`, `quota_exceeded`, `storage_error`.
    pub fn record_usage(&self, org: String, event: UsageEvent) -> Result<UsageReceipt> {
        Ok(self.db.record_usage(&org, &event)?)
    }

    /// Records many events of one organization: all counted or none.
    ///
    /// # Errors
    /// As `record_usage`; fields carry the index (`events[3].count`).
    pub fn record_usage_batch(
        &self,
        org: String,
        events: Vec<UsageEvent>,
    ) -> Result<Vec<UsageReceipt>> {
        Ok(self.db.record_usage_batch(&org, &events)?)
    }

    /// Admits an event in memory against the same quota; durable within the flush interval,
    /// on `flush`, or when the database is closed.
    ///
    /// # Errors
    /// As `record_usage`.
    pub fn record_usage_buffered(&self, org: String, event: UsageEvent) -> Result<UsageReceipt> {
        Ok(self.db.record_usage_buffered(&org, &event)?)
    }

    /// A recorder of buffered usage for one organization: the fastest way to count.
    ///
    /// # Errors
    /// `not_found` when the organization does not exist; `storage_error`.
    pub fn usage_recorder(&self, org: String) -> Result<Arc<UsageRecorder>> {
        Ok(Arc::new(UsageRecorder {
            recorder: self.db.usage_recorder(&org)?,
        }))
    }

    /// Holds `count` requests of the organization's quota until committed, released or
    /// expired (`expires_in`, default `Options.reservation_ttl_secs`, 5 minutes): the hold
    /// counts against the quota at once. Durable when it returns.
    ///
    /// # Errors
    /// `quota_exceeded`, `not_found` (organization, resource), `validation_error` (`count`,
    /// `expires_in`, `resource_id`).
    pub fn reserve_usage(&self, org: String, reservation: NewReservation) -> Result<Reservation> {
        Ok(self.db.reserve_usage(&org, &reservation)?)
    }

    /// Records `actual` requests of a reservation as today's usage and frees its hold; past
    /// the hold only as far as the quota allows. A repeat answers `duplicate`.
    ///
    /// # Errors
    /// `not_found` (organization, reservation), `quota_exceeded`, `validation_error`
    /// (`actual`).
    pub fn commit_reservation(
        &self,
        org: String,
        reservation_id: String,
        actual: u64,
    ) -> Result<UsageReceipt> {
        Ok(self.db.commit_reservation(&org, &reservation_id, actual)?)
    }

    /// Gives a reservation's hold back; whether a live hold was freed.
    ///
    /// # Errors
    /// `not_found` (organization), `storage_error`.
    pub fn release_reservation(&self, org: String, reservation_id: String) -> Result<bool> {
        Ok(self.db.release_reservation(&org, &reservation_id)?)
    }

    /// Raises or lowers one day's usage count (never below zero), inside the late-event
    /// window; audited, idempotent by key.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `validation_error`.
    pub fn correct_usage(
        &self,
        actor: Actor,
        org: String,
        correction: UsageCorrection,
    ) -> Result<CorrectedUsage> {
        Ok(self.db.correct_usage(&actor.into(), &org, &correction)?)
    }

    /// Whether `count` more requests fit this month, without recording anything.
    ///
    /// # Errors
    /// `quota_exceeded`, `validation_error`, `not_found`.
    pub fn check_quota(&self, org: String, count: u64) -> Result<UsageReceipt> {
        Ok(self.db.check_quota(&org, count)?)
    }

    /// Makes every admitted usage event durable now.
    ///
    /// # Errors
    /// `storage_error`.
    pub fn flush(&self) -> Result<()> {
        Ok(self.db.flush()?)
    }

    /// The usage report over a day, ISO week, month or date range.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `validation_error` (`start_date`, `end_date`).
    pub fn usage_report(
        &self,
        actor: Actor,
        org: String,
        query: UsageQuery,
    ) -> Result<UsageReport> {
        let query = query.try_into()?;
        Ok(self.db.usage_report(&actor.into(), &org, &query)?)
    }

    /// `usage_report` as seed 000's JSON response body, `{"success": true, "data": {…}}`.
    ///
    /// # Errors
    /// As `usage_report`.
    pub fn usage_report_json(
        &self,
        actor: Actor,
        org: String,
        query: UsageQuery,
    ) -> Result<String> {
        let query = query.try_into()?;
        let report = self.db.usage_report(&actor.into(), &org, &query)?;
        Ok(crate::json::ok_text(&report))
    }

    /// Removes usage day rows before `before` (`YYYY-MM-DD`) and expired idempotency keys.
    ///
    /// # Errors
    /// `validation_error` (`before`), `storage_error`.
    pub fn prune_usage(&self, before: String) -> Result<PruneReport> {
        let before = date(&before, "before")?;
        Ok(self.db.prune_usage(before)?.into())
    }

    // Audit.

    /// Audit events after `after_seq`, in order, at most `limit` (1–1 000).
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `validation_error` (`limit`).
    pub fn audit_log(
        &self,
        actor: Actor,
        org: String,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        Ok(self.db.audit_log(&actor.into(), &org, after_seq, limit)?)
    }

    // Maintenance.

    /// Verifies every invariant, index and counter.
    ///
    /// # Errors
    /// Only storage errors; violations are in the report.
    pub fn check(&self) -> Result<CheckReport> {
        Ok(self.db.check()?.into())
    }

    /// Rows per table.
    ///
    /// # Errors
    /// Only storage errors.
    pub fn stats(&self) -> Result<Vec<TableStats>> {
        Ok(self
            .db
            .stats()?
            .into_iter()
            .map(|(table, rows)| TableStats { table, rows })
            .collect())
    }

    /// Rewrites the file without free space; returns whether it compacted anything.
    ///
    /// # Errors
    /// `storage_error`.
    pub fn compact(&self) -> Result<bool> {
        Ok(self.db.compact()?)
    }

    /// Writes a consistent copy of the database to a new file at `path`.
    ///
    /// # Errors
    /// `validation_error` when `path` exists, `storage_error`.
    pub fn backup_to(&self, path: String) -> Result<()> {
        Ok(self.db.backup_to(path)?)
    }

    /// Writes the whole database as JSON lines to the file at `path` (created or replaced);
    /// returns the number of lines.
    ///
    /// # Errors
    /// `storage_error`.
    pub fn export_jsonl(&self, path: String) -> Result<u64> {
        let file = File::create(&path).map_err(|e| Error::storage(format!("{path}: {e}")))?;
        let mut out = BufWriter::new(file);
        let lines = self.db.export_jsonl(&mut out)?;
        out.flush()
            .map_err(|e| Error::storage(format!("{path}: {e}")))?;
        Ok(lines)
    }

    /// Loads an export (JSON lines at `path`) into this empty database; `batch_size` null is
    /// one all-or-nothing transaction. `progress`, when given, hears the number of records
    /// read after each one; an error it raises stops the import (see [`ImportProgress`]).
    ///
    /// # Errors
    /// `conflict` (not empty), `validation_error` (naming the line), `incompatible_version`,
    /// `storage_error`, or what `progress` raised.
    #[uniffi::method(default(progress = None))]
    pub fn import_jsonl(
        &self,
        path: String,
        batch_size: Option<u64>,
        progress: Option<Arc<dyn ImportProgress>>,
    ) -> Result<ImportReport> {
        let file = File::open(&path).map_err(|e| Error::storage(format!("{path}: {e}")))?;
        let batch = batch_size.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let mut stopped: Option<OrgDbError> = None;
        let result = self
            .db
            .import_jsonl_with(BufReader::new(file), batch, &mut |records| {
                let Some(progress) = &progress else {
                    return Ok(());
                };
                // A panic on the way back from foreign code (a value UniFFI cannot lift)
                // stops the import like an error, not as a storage engine failure.
                let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    progress.on_progress(records)
                }))
                .unwrap_or_else(|_| {
                    Err(Error::storage("the import's progress callback panicked").into())
                });
                answer.map_err(|e| {
                    stopped = Some(e);
                    Error::storage("the import was stopped by its progress callback")
                })
            });
        match (result, stopped) {
            (Err(_), Some(raised)) => Err(raised),
            (result, _) => Ok(result?),
        }
    }
}

/// Hears how far `OrgDb.import_jsonl` got. Implement it in Python or Kotlin and pass it as
/// `progress`.
///
/// `on_progress` runs on the importing thread, inside the import's write transaction: it must
/// not call into the database (a write, and several reads that first fold buffered usage,
/// would wait for the import forever). To stop the import, raise from it: an `OrgDbError`
/// comes back from `import_jsonl` as raised; any other exception comes back as
/// `storage_error` carrying its text. The batch in progress is rolled back (with
/// `batch_size` null, nothing is written).
#[uniffi::export(foreign)]
pub trait ImportProgress: Send + Sync {
    /// `records`: records read so far (blank lines not counted).
    ///
    /// # Errors
    /// Any, to stop the import.
    fn on_progress(&self, records: u64) -> Result<()>;
}

/// Records buffered usage for one organization, from `OrgDb.usage_recorder`: each call is
/// admitted in memory against the exact quota of the period and becomes durable within the flush
/// interval, on `flush`, or when the last handle on the database (recorders included) is
/// released: a recorder keeps its database open. Share it freely between threads.
#[derive(Debug, uniffi::Object)]
pub struct UsageRecorder {
    recorder: crate::UsageRecorder,
}

#[uniffi::export]
impl UsageRecorder {
    /// The organization this recorder counts for.
    pub fn organization_id(&self) -> String {
        self.recorder.organization_id().to_owned()
    }

    /// The resource `add` counts on (null: on no resource).
    pub fn resource_id(&self) -> Option<String> {
        self.recorder.resource_id().map(str::to_owned)
    }

    /// A recorder of the same organization whose `add` counts on `resource_id`, checked by
    /// each `add` as `record` checks it.
    ///
    /// # Errors
    /// `validation_error` (`resource_id`: empty).
    pub fn for_resource(&self, resource_id: String) -> Result<Arc<UsageRecorder>> {
        Ok(Arc::new(UsageRecorder {
            recorder: self.recorder.for_resource(&resource_id)?,
        }))
    }

    /// Admits `count` requests now on this recorder's resource (or on none), as `record`
    /// does, and returns the period's usage after it (a receipt's `used`): a number in, a
    /// number out, the leanest call across the boundary.
    ///
    /// # Errors
    /// As `record`.
    pub fn add(&self, count: u64) -> Result<u64> {
        Ok(self.recorder.add(count)?)
    }

    /// Admits `count` requests now, on `resource_id` or on none.
    ///
    /// # Errors
    /// `validation_error` (`count`, `resource_id`), `not_found`, `quota_exceeded`,
    /// `storage_error`.
    pub fn record(&self, resource_id: Option<String>, count: u64) -> Result<UsageReceipt> {
        Ok(self.recorder.record(resource_id.as_deref(), count)?)
    }

    /// Admits many events at once, all now, all or none: `resource_ids` holds one entry per
    /// event (null: outside any resource) and `counts` one count per event (null: 1 each).
    /// The batch counts against the monthly quota as its sum; the receipt is the period's
    /// usage after it. The fastest way to count from Python or Kotlin: one call costs far
    /// more than admitting an event.
    ///
    /// # Errors
    /// `validation_error` (`resource_ids`: 1 to 10 000, no line breaks in an id;
    /// `resource_ids[i]`: empty; `counts`: not one per id, or a period's total past 2^64;
    /// `counts[i]`: 1 to 2^53),
    /// `not_found`, `quota_exceeded` (nothing is recorded), `storage_error`.
    #[uniffi::method(default(counts = None))]
    pub fn record_many(
        &self,
        resource_ids: ResourceIdList,
        counts: Option<CountList>,
    ) -> Result<UsageReceipt> {
        if let Some(counts) = &counts {
            if counts.0.len() != resource_ids.len() {
                return Err(invalid("counts", "Must hold one count per resource id"));
            }
        }
        let count = |i: usize| counts.as_ref().map_or(1, |c| c.0[i]);
        let events: Vec<(Option<&str>, u64)> = resource_ids
            .ids()
            .enumerate()
            .map(|(i, id)| (id, count(i)))
            .collect();
        self.recorder
            .record_many(&events)
            .map_err(|e| batch_fields(e).into())
    }

    /// Admits a full event (its own time or idempotency key).
    ///
    /// # Errors
    /// As `OrgDb.record_usage_buffered`.
    pub fn record_event(&self, event: UsageEvent) -> Result<UsageReceipt> {
        Ok(self.recorder.record_event(&event)?)
    }

    /// Makes every admitted usage event of the database durable now.
    ///
    /// # Errors
    /// `storage_error`.
    pub fn flush(&self) -> Result<()> {
        Ok(self.recorder.flush()?)
    }
}

/// The Rust recorder names a batch's fields `events[i].count` and `events[i].resource_id`
/// (and `count` for a sum past 2^64); the bindings take two lists, `resource_ids` and
/// `counts`.
fn batch_fields(err: Error) -> Error {
    match err {
        Error::Validation { message, details } => {
            let details = details
                .into_iter()
                .map(|(field, reason)| {
                    let field = match field.strip_prefix("events") {
                        // The period's total would pass 2^64 (an unlimited organization).
                        None if field == "count" => "counts".to_owned(),
                        Some("") => "resource_ids".to_owned(),
                        Some(rest) => match rest.rsplit_once('.') {
                            Some((index, "count")) => format!("counts{index}"),
                            Some((index, _)) => format!("resource_ids{index}"),
                            None => field,
                        },
                        None => field,
                    };
                    (field, reason)
                })
                .collect();
            Error::Validation { message, details }
        }
        other => other,
    }
}
