//! `Db`: Users.

use crate::error::Result;
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
