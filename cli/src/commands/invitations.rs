//! `orgdb invitations …`

use clap::Subcommand;
use orgdb::{InvitationQuery, NewInvitation, Result};

use super::{seconds, App};
use crate::output::View;

const COLUMNS: &[&str] = &[
    "id",
    "email",
    "role",
    "status",
    "project_id",
    "project_role",
    "invited_by",
    "expires_at",
];
const FOR_EMAIL: &[&str] = &[
    "invitation.id",
    "organization_name",
    "organization_slug",
    "invitation.role",
    "invitation.project_id",
    "invitation.expires_at",
];

/// Invitations to join an organization (and optionally a project). The token is shown once,
/// by `create` and `resend`.
#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Invite one or more emails (several: one transaction, all or nothing).
    Create {
        /// Organization id or slug.
        org: String,
        /// Invitee email (repeatable).
        #[arg(long = "email", required = true)]
        emails: Vec<String>,
        /// Organization role on acceptance (default member).
        #[arg(long)]
        role: Option<String>,
        /// Project to join on acceptance.
        #[arg(long)]
        project: Option<String>,
        /// Role in that project (default member).
        #[arg(long)]
        project_role: Option<String>,
        /// Lifetime: seconds or 90m, 48h, 7d (1 hour to 30 days; default 7 days).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// An organization's invitations, oldest first.
    List {
        /// Organization id or slug.
        org: String,
        /// Only this status: pending, accepted, declined, revoked, expired.
        #[arg(long)]
        status: Option<String>,
        /// Page number, from 1.
        #[arg(long)]
        page: Option<u32>,
        /// Rows per page, 1–100 (default 20).
        #[arg(long)]
        per_page: Option<u32>,
    },
    /// One invitation (the admin view).
    Get {
        /// Organization id or slug.
        org: String,
        /// Invitation id (`inv_…`).
        invitation: String,
    },
    /// What the accept page shows for a token.
    Preview {
        /// The invitation token.
        token: String,
    },
    /// Accept an invitation.
    Accept {
        /// The invitation token.
        token: String,
        /// The accepting user (id or email); default: the --as user, else the user with the
        /// invitation's email.
        #[arg(long)]
        user: Option<String>,
    },
    /// Decline an invitation.
    Decline {
        /// The invitation token.
        token: String,
    },
    /// Revoke a pending or expired invitation.
    Revoke {
        /// Organization id or slug.
        org: String,
        /// Invitation id.
        invitation: String,
    },
    /// Issue a new token and expiry (the old token stops working).
    Resend {
        /// Organization id or slug.
        org: String,
        /// Invitation id.
        invitation: String,
    },
    /// Pending invitations of an email across organizations.
    ForEmail {
        /// Email address.
        email: String,
    },
}

pub(crate) fn run(app: &App, cmd: Cmd) -> Result<()> {
    let (db, out, actor) = (&app.db, &app.out, &app.actor);
    match cmd {
        Cmd::Create {
            org,
            emails,
            role,
            project,
            project_role,
            expires_in,
        } => {
            let org = app.org(&org)?;
            let expires_in = match expires_in {
                Some(text) => Some(std::time::Duration::from_secs(seconds(
                    "expires_in",
                    &text,
                )?)),
                None => None,
            };
            let batch: Vec<NewInvitation> = emails
                .into_iter()
                .map(|email| NewInvitation {
                    email,
                    role: role.clone(),
                    project_id: project.clone(),
                    project_role: project_role.clone(),
                    expires_in,
                })
                .collect();
            if let [one] = &batch[..] {
                out.ok(&db.create_invitation(actor, &org, one)?, View::Record);
            } else {
                out.ok(
                    &db.create_invitations(actor, &org, &batch)?,
                    View::Rows(&["invite_id", "invitation.email", "token", "invite_url"]),
                );
            }
        }
        Cmd::List {
            org,
            status,
            page,
            per_page,
        } => {
            let org = app.org(&org)?;
            let query = InvitationQuery {
                status,
                page,
                per_page,
            };
            out.page(&db.list_invitations(actor, &org, &query)?, COLUMNS);
        }
        Cmd::Get { org, invitation } => {
            let org = app.org(&org)?;
            out.ok(&db.get_invitation(actor, &org, &invitation)?, View::Record);
        }
        Cmd::Preview { token } => out.ok(&db.get_invitation_by_token(&token)?, View::Record),
        Cmd::Accept { token, user } => {
            let user = match (user, &app.actor) {
                (Some(u), _) => app.user(&u)?,
                (None, orgdb::Actor::User(id)) => id.clone(),
                (None, orgdb::Actor::System) => {
                    let email = db.get_invitation_by_token(&token)?.email;
                    db.find_user_by_email(&email)?.id
                }
            };
            out.ok(&db.accept_invitation(&token, &user)?, View::Record);
        }
        Cmd::Decline { token } => out.ok(&db.decline_invitation(&token)?, View::Record),
        Cmd::Revoke { org, invitation } => {
            let org = app.org(&org)?;
            out.ok(
                &db.revoke_invitation(actor, &org, &invitation)?,
                View::Record,
            );
        }
        Cmd::Resend { org, invitation } => {
            let org = app.org(&org)?;
            out.ok(
                &db.resend_invitation(actor, &org, &invitation)?,
                View::Record,
            );
        }
        Cmd::ForEmail { email } => out.ok(
            &db.list_invitations_for_email(&email)?,
            View::Rows(FOR_EMAIL),
        ),
    }
    Ok(())
}
