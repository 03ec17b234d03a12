//! `Db`: Invitations.

use crate::authz::Actor;
use crate::error::Result;
use crate::model::invitation::{
    CreatedInvitation, Invitation, InvitationPreview, InvitationQuery, NewInvitation,
    PendingInvitation,
};
use crate::model::membership::Membership;
use crate::model::page::Page;
use crate::ops;

use super::Db;

impl Db {
    /// Invites an email (admins and owners; only owners invite owners). The token is in the
    /// result only: just its hash is stored.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `not_found` (project), `conflict` (a member, or a
    /// pending invitation: `details.invitation_id`), `quota_exceeded` (`team_members`).
    pub fn create_invitation(
        &self,
        actor: &Actor,
        org: &str,
        new: &NewInvitation,
    ) -> Result<CreatedInvitation> {
        self.write(|tx, ctx| ops::invitations::create(tx, ctx, actor, org, new))
    }

    /// Many invitations in one transaction: all or nothing; the error names the email.
    ///
    /// # Errors
    /// As [`Db::create_invitation`], with `details.email`.
    pub fn create_invitations(
        &self,
        actor: &Actor,
        org: &str,
        batch: &[NewInvitation],
    ) -> Result<Vec<CreatedInvitation>> {
        self.write(|tx, ctx| ops::invitations::create_many(tx, ctx, actor, org, batch))
    }

    /// Invitations of an organization, oldest first, with an optional status filter.
    ///
    /// # Errors
    /// `forbidden` below admin, `validation_error` (`status`, `page`, `per_page`).
    pub fn list_invitations(
        &self,
        actor: &Actor,
        org: &str,
        query: &InvitationQuery,
    ) -> Result<Page<Invitation>> {
        self.read(|tx, ctx| ops::invitations::list(tx, ctx, actor, org, query))
    }

    /// One invitation (the admin view).
    ///
    /// # Errors
    /// `forbidden` below admin, `not_found`.
    pub fn get_invitation(&self, actor: &Actor, org: &str, id: &str) -> Result<Invitation> {
        self.read(|tx, ctx| ops::invitations::get(tx, ctx, actor, org, id))
    }

    /// What an accept page shows for a token.
    ///
    /// # Errors
    /// `not_found` for an unknown token.
    pub fn get_invitation_by_token(&self, token: &str) -> Result<InvitationPreview> {
        self.read(|tx, ctx| ops::invitations::preview(tx, ctx, token))
    }

    /// Accepts an invitation for a user whose email matches it.
    ///
    /// # Errors
    /// `not_found` (token, user), `forbidden` (other email), `invitation_expired`, `conflict`
    /// (declined, revoked, or accepted by someone else), `quota_exceeded` (`team_members`).
    pub fn accept_invitation(&self, token: &str, user: &str) -> Result<Membership> {
        self.write(|tx, ctx| ops::invitations::accept(tx, ctx, token, user))
    }

    /// Declines a pending or expired invitation.
    ///
    /// # Errors
    /// `not_found`, `conflict` for other statuses.
    pub fn decline_invitation(&self, token: &str) -> Result<Invitation> {
        self.write(|tx, ctx| ops::invitations::decline(tx, ctx, token))
    }

    /// Revokes a pending or expired invitation.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `conflict` for other statuses.
    pub fn revoke_invitation(&self, actor: &Actor, org: &str, id: &str) -> Result<Invitation> {
        self.write(|tx, ctx| ops::invitations::revoke(tx, ctx, actor, org, id))
    }

    /// New token and expiry for a pending or expired invitation (same id).
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `conflict`, `quota_exceeded` when an expired one no longer
    /// fits.
    pub fn resend_invitation(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
    ) -> Result<CreatedInvitation> {
        self.write(|tx, ctx| ops::invitations::resend(tx, ctx, actor, org, id))
    }

    /// Pending, unexpired invitations of an email across organizations.
    ///
    /// # Errors
    /// Only storage errors.
    pub fn list_invitations_for_email(&self, email: &str) -> Result<Vec<PendingInvitation>> {
        self.read(|tx, ctx| ops::invitations::for_email(tx, ctx, email))
    }
}
