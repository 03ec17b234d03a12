//! `Db`: Users.

use crate::authz::Actor;
use crate::error::Result;
use crate::model::org::{NewOrganization, UserWithOrganization};
use crate::model::page::{ListQuery, Page};
use crate::model::user::{NewUser, User, UserPatch};
use crate::ops;

use super::Db;

impl Db {
    /// Creates a user. The email is normalized and must be unique.
    ///
    /// # Errors
    /// `validation_error` (`email`, `name`), `conflict` when the email is taken.
    pub fn create_user(&self, new: &NewUser) -> Result<User> {
        self.write(|tx, ctx| ops::users::create(tx, ctx, new))
    }

    /// Creates a user and their first organization (they become its owner) in one
    /// transaction: a sign-up either leaves both or neither. The user's fields are validated
    /// first, then the organization's, with the errors of [`create_user`](Db::create_user)
    /// and [`create_organization`](Db::create_organization).
    ///
    /// ```
    /// use orgdb::{Db, NewOrganization, NewUser};
    ///
    /// let db = Db::in_memory()?;
    /// let signed_up = db.create_user_with_organization(
    ///     &NewUser { email: "ada@example.com".into(), name: "Ada".into() },
    ///     &NewOrganization { name: "Analytical Engines".into(), ..Default::default() },
    /// )?;
    /// assert_eq!(signed_up.organization.slug, "analytical-engines");
    /// assert_eq!(signed_up.membership.user_id, signed_up.user.id);
    /// # Ok::<(), orgdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `validation_error`, `conflict` (email, slug or external id taken), `quota_exceeded`
    /// (`owned_organizations`, when `Options::max_owned_organizations` is 0).
    pub fn create_user_with_organization(
        &self,
        user: &NewUser,
        organization: &NewOrganization,
    ) -> Result<UserWithOrganization> {
        self.write(|tx, ctx| ops::users::create_with_organization(tx, ctx, user, organization))
    }

    /// Every user, oldest first, for the host's admin tools (`Actor::System` only; a user is
    /// `forbidden`): optionally only those whose email, whole name or a later word of their
    /// name starts with `query.search` (case-insensitive), paged by offset or cursor.
    ///
    /// # Errors
    /// `forbidden` for a user actor, `validation_error` (`page`, `per_page`, `search`,
    /// `cursor`).
    pub fn list_users(&self, actor: &Actor, query: &ListQuery) -> Result<Page<User>> {
        self.read(|tx, _| ops::directory::users(tx, actor, query))
    }

    /// A user by id.
    ///
    /// # Errors
    /// `not_found`.
    pub fn get_user(&self, id: &str) -> Result<User> {
        self.read(|tx, _| ops::load_user(tx, id))
    }

    /// A user by email (normalized before the look-up).
    ///
    /// # Errors
    /// `not_found`.
    pub fn find_user_by_email(&self, email: &str) -> Result<User> {
        self.read(|tx, _| ops::users::find_by_email(tx, email))
    }

    /// Changes a user's email or name.
    ///
    /// # Errors
    /// `not_found`, `validation_error`, `conflict` when the new email is taken.
    pub fn update_user(&self, id: &str, patch: &UserPatch) -> Result<User> {
        self.write(|tx, ctx| ops::users::update(tx, ctx, id, patch))
    }

    /// Sets the user's `last_active` to now.
    ///
    /// # Errors
    /// `not_found`.
    pub fn touch_user(&self, id: &str) -> Result<User> {
        self.write(|tx, ctx| ops::users::touch(tx, ctx, id))
    }

    /// Deletes a user with all their memberships and project memberships. Invitations they
    /// sent stay valid.
    ///
    /// # Errors
    /// `not_found`; `conflict` (naming the organizations in `details.organizations`) while the
    /// user is the only owner of any organization.
    pub fn delete_user(&self, id: &str) -> Result<()> {
        self.write(|tx, ctx| ops::users::delete(tx, ctx, id))
    }
}
