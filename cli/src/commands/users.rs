//! `orgdb users …`

use clap::Subcommand;
use orgdb::{MemberRef, NewUser, Result, UserPatch};

use super::{deleted, App};
use crate::output::View;

const COLUMNS: &[&str] = &["id", "email", "name", "created_at", "last_active"];

/// Users: people who can belong to organizations.
#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Create a user (the email is normalized and must be unique).
    Create {
        /// Email address.
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Also create the user's first organization, with this name, in the same
        /// transaction (the user becomes its owner).
        #[arg(long, value_name = "NAME")]
        organization: Option<String>,
        /// The first organization's plan (with --organization).
        #[arg(long, requires = "organization")]
        plan: Option<String>,
    },
    /// Show a user by id (or email).
    Get {
        /// User id (`user_…`) or email.
        user: String,
    },
    /// Find a user by email.
    Find {
        /// Email address (normalized before the look-up).
        email: String,
    },
    /// Change a user's email or name.
    Update {
        /// User id or email.
        user: String,
        /// New email.
        #[arg(long)]
        email: Option<String>,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Set a user's last_active to now.
    Touch {
        /// User id or email.
        user: String,
    },
    /// Delete a user and their memberships (refused while they are the only owner of an
    /// organization).
    Delete {
        /// User id or email.
        user: String,
    },
    /// List every user, oldest first (the operator's list: not with --as).
    List {
        #[command(flatten)]
        list: super::ListArgs,
    },
    /// The projects of a member of an organization, with their project role.
    Projects {
        /// Organization id or slug.
        org: String,
        /// User id, membership id or email; default: the --as user.
        user: Option<String>,
    },
}

pub(crate) fn run(app: &App, cmd: Cmd) -> Result<()> {
    let (db, out) = (&app.db, &app.out);
    match cmd {
        Cmd::Create {
            email,
            name,
            organization: None,
            ..
        } => out.ok(&db.create_user(&NewUser { email, name })?, View::Record),
        Cmd::Create {
            email,
            name,
            organization: Some(org_name),
            plan,
        } => {
            let new_org = orgdb::NewOrganization {
                name: org_name,
                plan,
                ..Default::default()
            };
            out.ok(
                &db.create_user_with_organization(&NewUser { email, name }, &new_org)?,
                View::Record,
            );
        }
        Cmd::Get { user } => out.ok(&db.get_user(&app.user(&user)?)?, View::Record),
        Cmd::Find { email } => out.ok(&db.find_user_by_email(&email)?, View::Record),
        Cmd::Update { user, email, name } => {
            let id = app.user(&user)?;
            out.ok(
                &db.update_user(&id, &UserPatch { email, name })?,
                View::Record,
            );
        }
        Cmd::Touch { user } => out.ok(&db.touch_user(&app.user(&user)?)?, View::Record),
        Cmd::Delete { user } => {
            let id = app.user(&user)?;
            db.delete_user(&id)?;
            out.ok(&deleted(&id), View::Record);
        }
        Cmd::List { list } => {
            super::print_list(out, COLUMNS, list, |q| db.list_users(&app.actor, q))?;
        }
        Cmd::Projects { org, user } => {
            let org = app.org(&org)?;
            let who = match user {
                Some(reference) => app.member(&reference)?,
                None => MemberRef::User(app.acting_user(None, "USER")?),
            };
            out.ok(
                &db.list_user_projects(&app.actor, &org, &who)?,
                View::Rows(&["id", "name", "project_role", "created_at"]),
            );
        }
    }
    Ok(())
}
