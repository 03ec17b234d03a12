//! `Db`: Members: list, add, change role, remove, leave, transfer ownership.

use crate::authz::Actor;
use crate::error::Result;
use crate::model::membership::{Member, MemberQuery, MemberRef, RemovedMember};
use crate::model::page::Page;
use crate::model::permission::Permissions;
use crate::model::role::RoleArg;
use crate::ops;

use super::Db;

impl Db {
    /// One page of members, ordered by `joined_at` then id, optionally filtered by role and
    /// status (`active` by default; `deactivated`; `all`: the active members, then the
    /// deactivated ones).
    ///
    /// # Errors
    /// `forbidden` for a non-member, `validation_error` (`page`, `per_page`, `role`, `status`,
    /// `cursor`).
    pub fn list_members(
        &self,
        actor: &Actor,
        org: &str,
        query: &MemberQuery,
    ) -> Result<Page<Member>> {
        self.read(|tx, _| ops::members::list(tx, actor, org, query))
    }

    /// What `actor` may do in the organization: the actions of the permission matrix their
    /// role reaches, the roles they may grant and the roles of the members they may manage,
    /// with the relational rules applied (the last owner may not leave). A host shows or hides
    /// its controls from this instead of copying the matrix.
    ///
    /// ```
    /// use orgdb::{Action, Actor, Db, NewOrganization, NewUser, Role};
    ///
    /// let db = Db::in_memory()?;
    /// let ada = db.create_user(&NewUser { email: "ada@example.com".into(), name: "Ada".into() })?;
    /// let bob = db.create_user(&NewUser { email: "bob@example.com".into(), name: "Bob".into() })?;
    /// let org = db.create_organization(&ada.id, &NewOrganization {
    ///     name: "Acme".into(),
    ///     ..Default::default()
    /// })?.organization.id;
    /// db.add_member(&Actor::user(&ada.id), &org, &bob.id, Role::Admin)?;
    ///
    /// let mine = db.permissions(&Actor::user(&ada.id), &org)?;
    /// assert!(mine.allows(Action::DeleteOrganization));
    /// assert!(!mine.allows(Action::LeaveOrganization)); // the only owner
    ///
    /// let bobs = db.permissions(&Actor::user(&bob.id), &org)?;
    /// assert!(bobs.allows(Action::ManageInvitations) && !bobs.allows(Action::ChangePlan));
    /// assert_eq!(bobs.grantable_roles, [Role::Viewer, Role::Member, Role::Admin]);
    /// assert_eq!(bobs.manageable_roles, [Role::Viewer, Role::Member, Role::Admin]);
    /// # Ok::<(), orgdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `not_found` (organization), `forbidden` for a non-member.
    pub fn permissions(&self, actor: &Actor, org: &str) -> Result<Permissions> {
        self.read(|tx, _| ops::members::permissions(tx, actor, org))
    }

    /// One member, by user id or membership id.
    ///
    /// # Errors
    /// `forbidden` for a non-member actor, `not_found`.
    pub fn get_member(&self, actor: &Actor, org: &str, who: &MemberRef) -> Result<Member> {
        self.read(|tx, _| ops::members::get(tx, actor, org, who))
    }

    /// Adds a user directly with `role` (admins and owners; seat-checked): a typed
    /// [`Role`](crate::Role), or a role name an edge received ([`RoleArg`]). A pending
    /// invitation of the user in this organization is marked accepted.
    ///
    /// # Errors
    /// `forbidden`, `validation_error` (`role`), `not_found` (user), `conflict` (already a
    /// member), `quota_exceeded` (`team_members`).
    pub fn add_member<'a>(
        &self,
        actor: &Actor,
        org: &str,
        user: &str,
        role: impl Into<RoleArg<'a>>,
    ) -> Result<Member> {
        let role = role.into();
        self.write(|tx, ctx| ops::members::add(tx, ctx, actor, org, user, role))
    }

    /// Changes a member's role.
    ///
    /// # Errors
    /// `forbidden` (below admin, an admin touching an owner or granting owner),
    /// `validation_error` (`role`), `not_found`, `conflict` (the last owner).
    pub fn update_member_role<'a>(
        &self,
        actor: &Actor,
        org: &str,
        who: &MemberRef,
        role: impl Into<RoleArg<'a>>,
    ) -> Result<Member> {
        let role = role.into();
        self.write(|tx, ctx| ops::members::update_role(tx, ctx, actor, org, who, role))
    }

    /// Deactivates a member: the membership, its history and its project memberships stay,
    /// but the member holds no seat, cannot act in the organization (`forbidden`), and is
    /// listed only under the `deactivated` and `all` status filters of
    /// [`list_members`](Db::list_members). Who may remove the member may deactivate them; the
    /// last active owner cannot be deactivated. Audited as `member.deactivated` with the
    /// status before and after; deactivating a deactivated member changes nothing.
    ///
    /// ```
    /// use orgdb::{Actor, Db, MemberQuery, MemberRef, MemberStatus, NewOrganization, NewUser, Role};
    ///
    /// let db = Db::in_memory()?;
    /// let ada = db.create_user(&NewUser { email: "ada@example.com".into(), name: "Ada".into() })?;
    /// let bob = db.create_user(&NewUser { email: "bob@example.com".into(), name: "Bob".into() })?;
    /// let org = db.create_organization(&ada.id, &NewOrganization {
    ///     name: "Acme".into(),
    ///     ..Default::default()
    /// })?.organization.id;
    /// let owner = Actor::user(&ada.id);
    /// db.add_member(&owner, &org, &bob.id, Role::Member)?;
    ///
    /// let bob_ref = MemberRef::User(bob.id.clone());
    /// let off = db.deactivate_member(&owner, &org, &bob_ref)?;
    /// assert_eq!(off.status, MemberStatus::Deactivated);
    /// // Bob holds no seat and cannot act there any more.
    /// assert_eq!(db.get_organization(&owner, &org)?.usage.team_members, 1);
    /// assert_eq!(db.get_organization(&Actor::user(&bob.id), &org).unwrap_err().code(), "forbidden");
    /// let listed = db.list_members(&owner, &org, &MemberQuery {
    ///     status: Some("deactivated".into()),
    ///     ..Default::default()
    /// })?;
    /// assert_eq!(listed.data[0].id, bob.id);
    ///
    /// db.reactivate_member(&owner, &org, &bob_ref)?;
    /// assert_eq!(db.get_organization(&owner, &org)?.usage.team_members, 2);
    /// # Ok::<(), orgdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `forbidden` (below admin, an admin acting on an owner), `not_found`, `conflict` (the
    /// last active owner).
    pub fn deactivate_member(&self, actor: &Actor, org: &str, who: &MemberRef) -> Result<Member> {
        self.write(|tx, ctx| ops::members::deactivate(tx, ctx, actor, org, who))
    }

    /// Reactivates a deactivated member with the role they had, seat-checked like
    /// [`add_member`](Db::add_member). Who may add a member with that role may reactivate
    /// them. Audited as `member.reactivated`; reactivating an active member changes nothing.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `quota_exceeded` (`team_members`).
    pub fn reactivate_member(&self, actor: &Actor, org: &str, who: &MemberRef) -> Result<Member> {
        self.write(|tx, ctx| ops::members::reactivate(tx, ctx, actor, org, who))
    }

    /// Removes a member and their project memberships.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `conflict` (the last owner).
    pub fn remove_member(
        &self,
        actor: &Actor,
        org: &str,
        who: &MemberRef,
    ) -> Result<RemovedMember> {
        self.write(|tx, ctx| ops::members::remove(tx, ctx, actor, org, who))
    }

    /// The user leaves the organization.
    ///
    /// # Errors
    /// `not_found`, `conflict` for the last owner.
    pub fn leave_organization(&self, user: &str, org: &str) -> Result<RemovedMember> {
        self.write(|tx, ctx| ops::members::leave(tx, ctx, user, org))
    }

    /// Makes `to` an owner; the calling owner becomes admin.
    ///
    /// # Errors
    /// `forbidden` below owner, `not_found` (`to` is not a member), `validation_error` (`to`
    /// is the caller), `conflict` (`to` is already an owner).
    pub fn transfer_ownership(&self, actor: &Actor, org: &str, to: &str) -> Result<Member> {
        self.write(|tx, ctx| ops::members::transfer_ownership(tx, ctx, actor, org, to))
    }
}
