//! Projects and project members.

use serde_json::json;

use super::{entitlements, members, record, Changes, Ctx};
use crate::authz::{authorize, require_grant, Action, Actor};
use crate::error::{Error, Result};
use crate::model::membership::MemberRef;
use crate::model::project::{
    NewProject, Project, ProjectMember, ProjectMembership, ProjectPatch, UserProject,
};
use crate::model::role::{Role, RoleArg};
use crate::store::{Reads, Writes};
use crate::validate::{Validator, TEXT_MAX};

fn load_in_org(tx: &dyn Reads, org: &str, id: &str) -> Result<Project> {
    tx.project(id.trim())?
        .filter(|p| p.organization_id == org)
        .ok_or_else(|| Error::not_found("Project"))
}

pub(crate) fn create(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    new: &NewProject,
) -> Result<Project> {
    let cleared = authorize(tx, actor, org, Action::ManageProjects)?;
    let mut validator = Validator::new();
    let name = validator.name("name", &new.name);
    let description = validator.text("description", new.description.as_deref(), TEXT_MAX);
    validator.finish()?;
    // The `projects` limit (with the overage cap of a soft one), when the plan or an
    // override sets one.
    let limit = entitlements::named_limit(tx, ctx, &cleared.org, entitlements::PROJECTS)?;
    let enforcement = ctx
        .opts
        .plans
        .enforcement(&cleared.org.org.plan, entitlements::PROJECTS);
    if let Some(limit) = enforcement.ceiling(limit) {
        let used = tx.project_count(org)?;
        if used >= limit {
            return Err(Error::quota(entitlements::PROJECTS, limit, used, 1));
        }
    }
    let project = Project {
        id: ctx.id("proj"),
        organization_id: org.to_owned(),
        name,
        description,
        created_at: ctx.now,
        updated_at: ctx.now,
    };
    tx.put_project(&project)?;
    let details = json!({ "name": project.name });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "project.created",
        &project.id,
        details,
    )?;
    Ok(project)
}

pub(crate) fn get(tx: &dyn Reads, actor: &Actor, org: &str, id: &str) -> Result<Project> {
    authorize(tx, actor, org, Action::ReadOrganization)?;
    load_in_org(tx, org, id)
}

pub(crate) fn list(tx: &dyn Reads, actor: &Actor, org: &str) -> Result<Vec<Project>> {
    authorize(tx, actor, org, Action::ReadOrganization)?;
    tx.project_ids_of_org(org)?
        .iter()
        .map(|id| {
            tx.project(id)?
                .ok_or_else(|| Error::corrupted("project index names a missing project"))
        })
        .collect()
}

/// The projects of a member (by user id or membership id) in the organization, with their
/// project role, in project id order.
pub(crate) fn of_member(
    tx: &dyn Reads,
    actor: &Actor,
    org: &str,
    who: &MemberRef,
) -> Result<Vec<UserProject>> {
    authorize(tx, actor, org, Action::ReadOrganization)?;
    let m = members::resolve(tx, org, who)?;
    let mut out = Vec::new();
    for id in tx.project_ids_of_member(org, &m.user_id)? {
        let project = tx
            .project(&id)?
            .ok_or_else(|| Error::corrupted("project index names a missing project"))?;
        let pm = tx
            .project_membership(&id, &m.user_id)?
            .ok_or_else(|| Error::corrupted("project index names a missing project member"))?;
        out.push(UserProject {
            project,
            project_role: pm.role,
        });
    }
    Ok(out)
}

pub(crate) fn update(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    id: &str,
    patch: &ProjectPatch,
) -> Result<Project> {
    authorize(tx, actor, org, Action::ManageProjects)?;
    let mut validator = Validator::new();
    let name = patch.name.as_deref().map(|n| validator.name("name", n));
    let description = patch
        .description
        .as_ref()
        .map(|d| validator.text("description", d.as_deref(), TEXT_MAX));
    validator.finish()?;
    let old = load_in_org(tx, org, id)?;
    let mut new = old.clone();
    if let Some(name) = name {
        new.name = name;
    }
    if let Some(description) = description {
        new.description = description;
    }
    let mut changes = Changes::default();
    changes.diff("name", &old.name, &new.name);
    changes.diff("description", &old.description, &new.description);
    if changes.is_empty() {
        return Ok(old);
    }
    new.updated_at = ctx.now;
    tx.put_project(&new)?;
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "project.updated",
        &new.id,
        changes.into_value(),
    )?;
    Ok(new)
}

/// Removes the project and its memberships; invitations naming it become organization-only.
pub(crate) fn delete(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    id: &str,
) -> Result<()> {
    authorize(tx, actor, org, Action::ManageProjects)?;
    let project = load_in_org(tx, org, id)?;
    // Its invitations stay, as organization-only ones.
    for inv_id in tx.invitation_ids_of_project(&project.id)? {
        let old = tx
            .invitation(&inv_id)?
            .ok_or_else(|| Error::corrupted("project index names a missing invitation"))?;
        let mut new = old.clone();
        new.invitation.project_id = None;
        new.invitation.project_role = None;
        tx.replace_invitation(&old, &new)?;
    }
    tx.remove_project(&project)?;
    let details = json!({ "name": project.name });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "project.deleted",
        &project.id,
        details,
    )
}

fn row(tx: &dyn Reads, pm: ProjectMembership) -> Result<ProjectMember> {
    let user = tx
        .user(&pm.user_id)?
        .ok_or_else(|| Error::corrupted("project membership names a missing user"))?;
    Ok(ProjectMember {
        id: user.id,
        project_id: pm.project_id,
        email: user.email,
        name: user.name,
        role: pm.role,
        added_at: pm.added_at,
        updated_at: pm.updated_at,
    })
}

fn project_role(cleared_role: Option<Role>, role: RoleArg<'_>) -> Result<Role> {
    let role = role.resolve("role")?;
    require_grant(cleared_role, role)?;
    Ok(role)
}

/// Adds an organization member to a project (a non-member is `not_found` as a member).
pub(crate) fn add_member(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    project: &str,
    user: &str,
    role: Option<RoleArg<'_>>,
) -> Result<ProjectMember> {
    let cleared = authorize(tx, actor, org, Action::ManageProjects)?;
    // Defaults to `member`, as an invitation's project role does.
    let role = project_role(cleared.role, role.unwrap_or(RoleArg::Role(Role::Member)))?;
    let project = load_in_org(tx, org, project)?;
    let m = members::resolve(tx, org, &MemberRef::User(user.to_owned()))?;
    if tx.project_membership(&project.id, &m.user_id)?.is_some() {
        return Err(Error::conflict_with(
            "User is already a member of this project",
            "user_id",
            m.user_id.as_str(),
        ));
    }
    let pm = ProjectMembership {
        project_id: project.id.clone(),
        user_id: m.user_id.clone(),
        role,
        added_at: ctx.now,
        updated_at: ctx.now,
    };
    tx.put_project_membership(org, &pm)?;
    let details = json!({ "user_id": m.user_id, "role": role });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "project.member_added",
        &project.id,
        details,
    )?;
    row(tx, pm)
}

pub(crate) fn update_member_role(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    project: &str,
    user: &str,
    role: RoleArg<'_>,
) -> Result<ProjectMember> {
    let cleared = authorize(tx, actor, org, Action::ManageProjects)?;
    let role = project_role(cleared.role, role)?;
    let project = load_in_org(tx, org, project)?;
    let old = tx
        .project_membership(&project.id, user.trim())?
        .ok_or_else(|| Error::not_found("Project member"))?;
    if old.role == role {
        return row(tx, old);
    }
    let new = ProjectMembership {
        role,
        updated_at: ctx.now,
        ..old.clone()
    };
    tx.put_project_membership(org, &new)?;
    let details = json!({ "user_id": old.user_id, "role": { "before": old.role, "after": role } });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "project.member_role_changed",
        &project.id,
        details,
    )?;
    row(tx, new)
}

pub(crate) fn remove_member(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    project: &str,
    user: &str,
) -> Result<()> {
    authorize(tx, actor, org, Action::ManageProjects)?;
    let project = load_in_org(tx, org, project)?;
    if !tx.remove_project_membership(org, &project.id, user.trim())? {
        return Err(Error::not_found("Project member"));
    }
    let details = json!({ "user_id": user.trim() });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "project.member_removed",
        &project.id,
        details,
    )
}

pub(crate) fn list_members(
    tx: &dyn Reads,
    actor: &Actor,
    org: &str,
    project: &str,
) -> Result<Vec<ProjectMember>> {
    authorize(tx, actor, org, Action::ReadOrganization)?;
    let project = load_in_org(tx, org, project)?;
    let mut out = Vec::new();
    for user in tx.project_member_ids(&project.id)? {
        let pm = tx
            .project_membership(&project.id, &user)?
            .ok_or_else(|| Error::corrupted("project member vanished"))?;
        out.push(row(tx, pm)?);
    }
    out.sort_by(|a, b| a.added_at.cmp(&b.added_at).then_with(|| a.id.cmp(&b.id)));
    Ok(out)
}
