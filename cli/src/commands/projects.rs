//! `orgdb projects …`

use clap::Subcommand;
use orgdb::{NewProject, ProjectPatch, Result};

use super::{deleted, App};
use crate::output::View;

/// Projects inside an organization and their members.
#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Create a project (admins and owners).
    Create {
        /// Organization id or slug.
        org: String,
        /// Name.
        #[arg(long)]
        name: String,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
    },
    /// One project.
    Get {
        /// Organization id or slug.
        org: String,
        /// Project id (`proj_…`).
        project: String,
    },
    /// An organization's projects, oldest first.
    List {
        /// Organization id or slug.
        org: String,
    },
    /// Rename a project or change its description ('' clears it).
    Update {
        /// Organization id or slug.
        org: String,
        /// Project id.
        project: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New description ('' clears it).
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a project and its memberships.
    Delete {
        /// Organization id or slug.
        org: String,
        /// Project id.
        project: String,
    },
    /// Add an organization member to a project.
    AddMember {
        /// Organization id or slug.
        org: String,
        /// Project id.
        project: String,
        /// User id or email.
        user: String,
        /// Project role (default member).
        #[arg(long)]
        role: Option<String>,
    },
    /// Change a project member's role.
    SetMemberRole {
        /// Organization id or slug.
        org: String,
        /// Project id.
        project: String,
        /// User id or email.
        user: String,
        /// New project role.
        role: String,
    },
    /// Remove a user from a project (they stay in the organization).
    RemoveMember {
        /// Organization id or slug.
        org: String,
        /// Project id.
        project: String,
        /// User id or email.
        user: String,
    },
    /// Members of a project.
    Members {
        /// Organization id or slug.
        org: String,
        /// Project id.
        project: String,
    },
}

const COLUMNS: &[&str] = &["id", "name", "description", "created_at", "updated_at"];
const MEMBERS: &[&str] = &["id", "email", "name", "role", "added_at"];

pub(crate) fn run(app: &App, cmd: Cmd) -> Result<()> {
    let (db, out, actor) = (&app.db, &app.out, &app.actor);
    match cmd {
        Cmd::Create {
            org,
            name,
            description,
        } => {
            let org = app.org(&org)?;
            let new = NewProject { name, description };
            out.ok(&db.create_project(actor, &org, &new)?, View::Record);
        }
        Cmd::Get { org, project } => {
            let org = app.org(&org)?;
            out.ok(&db.get_project(actor, &org, &project)?, View::Record);
        }
        Cmd::List { org } => {
            let org = app.org(&org)?;
            out.ok(&db.list_projects(actor, &org)?, View::Rows(COLUMNS));
        }
        Cmd::Update {
            org,
            project,
            name,
            description,
        } => {
            let org = app.org(&org)?;
            let patch = ProjectPatch {
                name,
                description: description.map(|d| Some(d).filter(|d| !d.is_empty())),
            };
            out.ok(
                &db.update_project(actor, &org, &project, &patch)?,
                View::Record,
            );
        }
        Cmd::Delete { org, project } => {
            let org = app.org(&org)?;
            db.delete_project(actor, &org, &project)?;
            out.ok(&deleted(&project), View::Record);
        }
        Cmd::AddMember {
            org,
            project,
            user,
            role,
        } => {
            let org = app.org(&org)?;
            let user = app.user(&user)?;
            out.ok(
                &db.add_project_member(
                    actor,
                    &org,
                    &project,
                    &user,
                    role.as_deref().map(orgdb::RoleArg::from),
                )?,
                View::Record,
            );
        }
        Cmd::SetMemberRole {
            org,
            project,
            user,
            role,
        } => {
            let org = app.org(&org)?;
            let user = app.user(&user)?;
            out.ok(
                &db.update_project_member_role(actor, &org, &project, &user, &role)?,
                View::Record,
            );
        }
        Cmd::RemoveMember { org, project, user } => {
            let org = app.org(&org)?;
            let user = app.user(&user)?;
            db.remove_project_member(actor, &org, &project, &user)?;
            out.ok(
                &serde_json::json!({ "removed": true, "project_id": project, "user_id": user }),
                View::Record,
            );
        }
        Cmd::Members { org, project } => {
            let org = app.org(&org)?;
            out.ok(
                &db.list_project_members(actor, &org, &project)?,
                View::Rows(MEMBERS),
            );
        }
    }
    Ok(())
}
