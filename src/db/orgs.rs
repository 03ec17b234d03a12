//! `Db`: Organizations: create, read, patch, plans and limit overrides, delete.

use crate::authz::Actor;
use crate::error::Result;
use crate::model::org::{
    LimitOverrides, LimitOverridesPatch, NewOrganization, Organization, OrganizationDetails,
    OrganizationPatch, OrganizationSettings, OrganizationWithMembership, SlugCheck,
};
use crate::model::page::{ListQuery, Page};
use crate::ops;

use super::Db;

impl Db {
    /// Creates an organization; `owner` becomes its first owner. The slug is derived from the
    /// name when not given (and made unique with `-2`, `-3`…).
    ///
    /// # Errors
    /// `validation_error` (any bad field, an unknown plan, a reserved slug), `not_found` for
    /// the owner, `conflict` when an explicit slug or external id is taken.
    pub fn create_organization(
        &self,
        owner: &str,
        new: &NewOrganization,
    ) -> Result<OrganizationWithMembership> {
        self.write(|tx, ctx| ops::orgs::create(tx, ctx, owner, new))
    }

    /// The organization with its limits and live usage (seed 000's `GET /v1/organization`).
    ///
    /// # Errors
    /// `not_found`; `forbidden` for a non-member.
    pub fn get_organization(&self, actor: &Actor, org: &str) -> Result<OrganizationDetails> {
        self.read(|tx, ctx| ops::orgs::get(tx, ctx, actor, org))
    }

    /// As [`Db::get_organization`], by slug.
    ///
    /// # Errors
    /// As [`Db::get_organization`].
    pub fn get_organization_by_slug(
        &self,
        actor: &Actor,
        slug: &str,
    ) -> Result<OrganizationDetails> {
        self.read(|tx, ctx| {
            let id = ops::orgs::id_by_slug(tx, slug)?;
            ops::orgs::get(tx, ctx, actor, &id)
        })
    }

    /// As [`Db::get_organization`], by the host's external id.
    ///
    /// # Errors
    /// As [`Db::get_organization`].
    pub fn get_organization_by_external_id(
        &self,
        actor: &Actor,
        external_id: &str,
    ) -> Result<OrganizationDetails> {
        self.read(|tx, ctx| {
            let id = ops::orgs::id_by_external(tx, external_id)?;
            ops::orgs::get(tx, ctx, actor, &id)
        })
    }

    /// Every organization, oldest first, for the host's admin tools (`Actor::System` only; a
    /// user is `forbidden`): optionally only those whose slug, whole name or a later word of
    /// their name starts with `query.search` (case-insensitive), paged by offset or cursor.
    ///
    /// ```
    /// use orgdb::{Actor, Db, ListQuery, NewOrganization, NewUser};
    ///
    /// let db = Db::in_memory()?;
    /// let ada = db.create_user(&NewUser { email: "ada@example.com".into(), name: "Ada".into() })?;
    /// for name in ["Acme Rockets", "Globex", "Acme Anvils"] {
    ///     db.create_organization(&ada.id, &NewOrganization { name: name.into(), ..Default::default() })?;
    /// }
    /// let acme = db.list_organizations(&Actor::System, &ListQuery {
    ///     search: Some("acme".into()),
    ///     ..Default::default()
    /// })?;
    /// assert_eq!(acme.pagination.total, 2);
    /// # Ok::<(), orgdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `forbidden` for a user actor, `validation_error` (`page`, `per_page`, `search`,
    /// `cursor`).
    pub fn list_organizations(
        &self,
        actor: &Actor,
        query: &ListQuery,
    ) -> Result<Page<Organization>> {
        self.read(|tx, _| ops::directory::organizations(tx, actor, query))
    }

    /// Every organization the user belongs to, with the user's membership, oldest first.
    ///
    /// # Errors
    /// `not_found` for an unknown user.
    pub fn list_organizations_for_user(
        &self,
        user: &str,
    ) -> Result<Vec<OrganizationWithMembership>> {
        self.read(|tx, _| ops::orgs::list_for_user(tx, user))
    }

    /// PATCH: only the fields given change; optional fields can be cleared.
    ///
    /// # Errors
    /// `forbidden` below admin, `validation_error`, `conflict` for a taken slug or external id.
    pub fn update_organization(
        &self,
        actor: &Actor,
        org: &str,
        patch: &OrganizationPatch,
    ) -> Result<Organization> {
        self.write(|tx, ctx| ops::orgs::update(tx, ctx, actor, org, patch))
    }

    /// Replaces the organization's settings.
    ///
    /// # Errors
    /// As [`Db::update_organization`].
    pub fn update_settings(
        &self,
        actor: &Actor,
        org: &str,
        settings: &OrganizationSettings,
    ) -> Result<Organization> {
        self.write(|tx, ctx| ops::orgs::update_settings(tx, ctx, actor, org, settings))
    }

    /// Changes the plan (owners only). Lowering limits below current use deletes nothing; it
    /// refuses new additions.
    ///
    /// # Errors
    /// `forbidden` below owner, `validation_error` (`plan`) for a plan not in the catalog.
    pub fn set_plan(&self, actor: &Actor, org: &str, plan: &str) -> Result<Organization> {
        let org_row = self.write(|tx, ctx| ops::orgs::set_plan(tx, ctx, actor, org, plan))?;
        self.inner.ledger.refresh_limit(org);
        Ok(org_row)
    }

    /// Changes per-organization limit overrides (`Actor::System` only), as a patch: fields
    /// not given stay, `Some(None)` clears one back to the plan's limit. A
    /// [`LimitOverrides`] converts into the patch that sets its given fields.
    ///
    /// # Errors
    /// `forbidden` for a user actor, `not_found`, `validation_error` naming the field whose
    /// count is above `i64::MAX` (what every backend can store).
    pub fn set_limit_overrides(
        &self,
        actor: &Actor,
        org: &str,
        patch: &LimitOverridesPatch,
    ) -> Result<OrganizationDetails> {
        let details =
            self.write(|tx, ctx| ops::orgs::set_limit_overrides(tx, ctx, actor, org, patch))?;
        self.inner.ledger.refresh_limit(org);
        Ok(details)
    }

    /// The organization's limit overrides (unset fields follow the plan).
    ///
    /// # Errors
    /// `not_found`; `forbidden` for a non-member.
    pub fn get_limit_overrides(&self, actor: &Actor, org: &str) -> Result<LimitOverrides> {
        self.read(|tx, _| ops::orgs::limit_overrides(tx, actor, org))
    }

    /// Deletes the organization with its memberships, invitations, projects, resources and
    /// usage, in one transaction. Its audit history stays readable by `Actor::System`.
    ///
    /// # Errors
    /// `forbidden` below owner, `not_found`.
    pub fn delete_organization(&self, actor: &Actor, org: &str) -> Result<()> {
        self.write(|tx, ctx| ops::orgs::delete(tx, ctx, actor, org))?;
        self.inner.ledger.forget_org(org);
        Ok(())
    }

    /// Whether an organization could take `slug` now, and why not.
    ///
    /// # Errors
    /// Only storage errors.
    pub fn check_slug(&self, slug: &str) -> Result<SlugCheck> {
        self.read(|tx, ctx| ops::orgs::check_slug(tx, ctx, slug))
    }
}
