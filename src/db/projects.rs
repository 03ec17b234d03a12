//! `Db`: Projects and their members.

use crate::authz::Actor;
use crate::error::Result;
use crate::model::membership::MemberRef;
use crate::model::project::{NewProject, Project, ProjectMember, ProjectPatch, UserProject};
use crate::model::role::RoleArg;
use crate::ops;

use super::Db;

impl Db {
    /// Creates a project (admins and owners). When the plan or an override sets the
    /// `projects` limit, an organization at it is refused.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `quota_exceeded` (`projects`).
    pub fn create_project(&self, actor: &Actor, org: &str, new: &NewProject) -> Result<Project> {
        self.write(|tx, ctx| ops::projects::create(tx, ctx, actor, org, new))
    }

    /// One project.
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn get_project(&self, actor: &Actor, org: &str, id: &str) -> Result<Project> {
        self.read(|tx, _| ops::projects::get(tx, actor, org, id))
    }

    /// The organization's projects, oldest first.
    ///
    /// # Errors
    /// `forbidden`.
    pub fn list_projects(&self, actor: &Actor, org: &str) -> Result<Vec<Project>> {
        self.read(|tx, _| ops::projects::list(tx, actor, org))
    }

    /// The projects of one member (by user id or membership id) in the organization, with
    /// their project role, oldest project first. Any member may read them.
    ///
    /// # Errors
    /// `forbidden` for a non-member actor, `not_found` (organization, member).
    pub fn list_user_projects(
        &self,
        actor: &Actor,
        org: &str,
        who: &MemberRef,
    ) -> Result<Vec<UserProject>> {
        self.read(|tx, _| ops::projects::of_member(tx, actor, org, who))
    }

    /// PATCH of a project.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `not_found`.
    pub fn update_project(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        patch: &ProjectPatch,
    ) -> Result<Project> {
        self.write(|tx, ctx| ops::projects::update(tx, ctx, actor, org, id, patch))
    }

    /// Deletes a project and its memberships; invitations naming it become organization-only.
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn delete_project(&self, actor: &Actor, org: &str, id: &str) -> Result<()> {
        self.write(|tx, ctx| ops::projects::delete(tx, ctx, actor, org, id))
    }

    /// Adds an organization member to a project with `role` (default `member`, as an
    /// invitation's project role): `Some(Role::Viewer.into())`, or a name an edge received.
    ///
    /// # Errors
    /// `forbidden`, `validation_error` (`role`), `not_found` (project, member), `conflict`.
    pub fn add_project_member(
        &self,
        actor: &Actor,
        org: &str,
        project: &str,
        user: &str,
        role: Option<RoleArg<'_>>,
    ) -> Result<ProjectMember> {
        self.write(|tx, ctx| ops::projects::add_member(tx, ctx, actor, org, project, user, role))
    }

    /// Changes a project member's role.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `not_found`.
    pub fn update_project_member_role<'a>(
        &self,
        actor: &Actor,
        org: &str,
        project: &str,
        user: &str,
        role: impl Into<RoleArg<'a>>,
    ) -> Result<ProjectMember> {
        let role = role.into();
        self.write(|tx, ctx| {
            ops::projects::update_member_role(tx, ctx, actor, org, project, user, role)
        })
    }

    /// Removes a user from a project (they stay in the organization).
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn remove_project_member(
        &self,
        actor: &Actor,
        org: &str,
        project: &str,
        user: &str,
    ) -> Result<()> {
        self.write(|tx, ctx| ops::projects::remove_member(tx, ctx, actor, org, project, user))
    }

    /// Members of a project, by time added.
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn list_project_members(
        &self,
        actor: &Actor,
        org: &str,
        project: &str,
    ) -> Result<Vec<ProjectMember>> {
        self.read(|tx, _| ops::projects::list_members(tx, actor, org, project))
    }
}
