//! `orgdb members …`

use clap::Subcommand;
use orgdb::{MemberQuery, Page, Result};

use super::App;
use crate::output::View;

const COLUMNS: &[&str] = &[
    "id",
    "email",
    "name",
    "role",
    "status",
    "joined_at",
    "last_active",
];

/// Members of an organization and their roles. A member is named by user id, membership id
/// (`mem_…`) or email.
#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// One page of members, by join time (seed 000's member list).
    List {
        /// Organization id or slug.
        org: String,
        /// Page number, from 1.
        #[arg(long)]
        page: Option<u32>,
        /// Rows per page, 1–100 (default 20).
        #[arg(long)]
        per_page: Option<u32>,
        /// Only this role (case-insensitive).
        #[arg(long)]
        role: Option<String>,
        /// active (default), deactivated, or all.
        #[arg(long)]
        status: Option<String>,
        /// Only members whose email, name, or a later word of their name starts with this
        /// (case-insensitive).
        #[arg(long)]
        search: Option<String>,
        /// Start after this cursor (the `next_cursor` of a previous page).
        #[arg(long)]
        cursor: Option<String>,
        /// Every member, following the cursors (one list, no paging).
        #[arg(long, conflicts_with_all = ["page", "cursor"])]
        all: bool,
    },
    /// One member.
    Get {
        /// Organization id or slug.
        org: String,
        /// User id, membership id or email.
        member: String,
    },
    /// Add a user directly (seat-checked).
    Add {
        /// Organization id or slug.
        org: String,
        /// User id or email.
        user: String,
        /// Role: owner, admin, member or viewer.
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// Change a member's role.
    SetRole {
        /// Organization id or slug.
        org: String,
        /// User id, membership id or email.
        member: String,
        /// New role.
        role: String,
    },
    /// Deactivate a member: they keep the membership and its history but hold no seat and
    /// cannot act in the organization.
    Deactivate {
        /// Organization id or slug.
        org: String,
        /// User id, membership id or email.
        member: String,
    },
    /// Reactivate a deactivated member (seat-checked).
    Reactivate {
        /// Organization id or slug.
        org: String,
        /// User id, membership id or email.
        member: String,
    },
    /// Remove a member (and their project memberships).
    Remove {
        /// Organization id or slug.
        org: String,
        /// User id, membership id or email.
        member: String,
    },
    /// Leave an organization.
    Leave {
        /// Organization id or slug.
        org: String,
        /// Who leaves (user id or email); default: the --as user.
        #[arg(long)]
        user: Option<String>,
    },
    /// What the --as user may do in an organization: the actions of the permission matrix,
    /// the roles they may grant and the roles of the members they may manage.
    Permissions {
        /// Organization id or slug.
        org: String,
    },
    /// Make a member an owner; a calling owner (--as) becomes admin.
    Transfer {
        /// Organization id or slug.
        org: String,
        /// The new owner (user id or email).
        to: String,
    },
}

pub(crate) fn run(app: &App, cmd: Cmd) -> Result<()> {
    let (db, out, actor) = (&app.db, &app.out, &app.actor);
    match cmd {
        Cmd::List {
            org,
            page,
            per_page,
            role,
            status,
            search,
            cursor,
            all,
        } => {
            let org = app.org(&org)?;
            let mut query = MemberQuery {
                page,
                per_page,
                role,
                status,
                search,
                cursor,
            };
            if !all {
                out.page(&db.list_members(actor, &org, &query)?, COLUMNS);
                return Ok(());
            }
            query.per_page = Some(query.per_page.unwrap_or(100));
            let mut rows = Vec::new();
            loop {
                let Page {
                    data, next_cursor, ..
                } = db.list_members(actor, &org, &query)?;
                rows.extend(data);
                match next_cursor {
                    Some(c) => query.cursor = Some(c),
                    None => break,
                }
            }
            out.ok(&rows, View::Rows(COLUMNS));
        }
        Cmd::Get { org, member } => {
            let org = app.org(&org)?;
            out.ok(
                &db.get_member(actor, &org, &app.member(&member)?)?,
                View::Record,
            );
        }
        Cmd::Add { org, user, role } => {
            let org = app.org(&org)?;
            out.ok(
                &db.add_member(actor, &org, &app.user(&user)?, &role)?,
                View::Record,
            );
        }
        Cmd::SetRole { org, member, role } => {
            let org = app.org(&org)?;
            let who = app.member(&member)?;
            out.ok(
                &db.update_member_role(actor, &org, &who, &role)?,
                View::Record,
            );
        }
        Cmd::Deactivate { org, member } => {
            let org = app.org(&org)?;
            out.ok(
                &db.deactivate_member(actor, &org, &app.member(&member)?)?,
                View::Record,
            );
        }
        Cmd::Reactivate { org, member } => {
            let org = app.org(&org)?;
            out.ok(
                &db.reactivate_member(actor, &org, &app.member(&member)?)?,
                View::Record,
            );
        }
        Cmd::Remove { org, member } => {
            let org = app.org(&org)?;
            out.ok(
                &db.remove_member(actor, &org, &app.member(&member)?)?,
                View::Record,
            );
        }
        Cmd::Leave { org, user } => {
            let org = app.org(&org)?;
            let user = app.acting_user(user.as_deref(), "--user")?;
            out.ok(&db.leave_organization(&user, &org)?, View::Record);
        }
        Cmd::Permissions { org } => {
            let org = app.org(&org)?;
            out.ok(&db.permissions(actor, &org)?, View::Record);
        }
        Cmd::Transfer { org, to } => {
            let org = app.org(&org)?;
            out.ok(
                &db.transfer_ownership(actor, &org, &app.user(&to)?)?,
                View::Record,
            );
        }
    }
    Ok(())
}
