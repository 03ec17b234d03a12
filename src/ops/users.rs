//! Users.

use serde_json::json;

use super::{load_user, members, record, seats, Changes, Ctx};
use crate::authz::Actor;
use crate::error::{Error, Result};
use crate::model::org::{NewOrganization, UserWithOrganization};
use crate::model::role::Role;
use crate::model::user::{NewUser, User, UserPatch};
use crate::store::{Reads, Writes};
use crate::validate::{normalize_email, Validator};

fn email_taken(email: &str) -> Error {
    Error::conflict_with("Email already in use", "email", email)
}

pub(crate) fn create(tx: &mut dyn Writes, ctx: &Ctx, new: &NewUser) -> Result<User> {
    let mut validator = Validator::new();
    let email = validator.email("email", &new.email);
    let name = validator.name("name", &new.name);
    validator.finish()?;
    if tx.user_id_by_email(&email)?.is_some() {
        return Err(email_taken(&email));
    }
    let user = User {
        id: ctx.id("user"),
        email,
        name,
        created_at: ctx.now,
        last_active: None,
    };
    tx.insert_user(&user)?;
    let details = json!({ "email": user.email, "name": user.name });
    record(tx, ctx, "system", None, "user.created", &user.id, details)?;
    Ok(user)
}

/// A user and their first organization, in the caller's one transaction: the user's fields
/// are validated first, then the organization's (a failure of either writes nothing).
pub(crate) fn create_with_organization(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    new_user: &NewUser,
    new_org: &NewOrganization,
) -> Result<UserWithOrganization> {
    let user = create(tx, ctx, new_user)?;
    let created = super::orgs::create(tx, ctx, &user.id, new_org)?;
    Ok(UserWithOrganization {
        user,
        organization: created.organization,
        membership: created.membership,
    })
}

pub(crate) fn find_by_email(tx: &dyn Reads, email: &str) -> Result<User> {
    let id = tx
        .user_id_by_email(&normalize_email(email))?
        .ok_or_else(|| Error::not_found("User"))?;
    load_user(tx, &id)
}

pub(crate) fn update(tx: &mut dyn Writes, ctx: &Ctx, id: &str, patch: &UserPatch) -> Result<User> {
    let old = load_user(tx, id)?;
    let mut validator = Validator::new();
    let email = patch.email.as_deref().map(|e| validator.email("email", e));
    let name = patch.name.as_deref().map(|n| validator.name("name", n));
    validator.finish()?;
    let mut new = old.clone();
    if let Some(email) = email {
        if email != old.email && tx.user_id_by_email(&email)?.is_some() {
            return Err(email_taken(&email));
        }
        new.email = email;
    }
    if let Some(name) = name {
        new.name = name;
    }
    let mut changes = Changes::default();
    changes.diff("email", &old.email, &new.email);
    changes.diff("name", &old.name, &new.name);
    if changes.is_empty() {
        return Ok(old);
    }
    tx.replace_user(&old, &new)?;
    record(tx, ctx, id, None, "user.updated", id, changes.into_value())?;
    if new.email != old.email {
        // The new address may hold a pending invitation in an organization the user already
        // belongs to: it becomes accepted, as in `add_member`, so nobody is counted twice.
        let actor = Actor::User(id.to_owned());
        for org in tx.user_org_ids(id)? {
            if let Some(inv) = seats::pending_for_email(tx, ctx, &org, &new.email)? {
                seats::mark_accepted(tx, ctx, &actor, inv)?;
            }
        }
    }
    Ok(new)
}

/// Sets `last_active`. Activity is not audited: it is not a change of state a host ships.
pub(crate) fn touch(tx: &mut dyn Writes, ctx: &Ctx, id: &str) -> Result<User> {
    let old = load_user(tx, id)?;
    let new = User {
        last_active: Some(ctx.now),
        ..old.clone()
    };
    tx.replace_user(&old, &new)?;
    Ok(new)
}

/// Refused while the user is the only owner of any organization; otherwise removes every
/// membership (and project membership) with the user.
pub(crate) fn delete(tx: &mut dyn Writes, ctx: &Ctx, id: &str) -> Result<()> {
    let user = load_user(tx, id)?;
    let org_ids = tx.user_org_ids(id)?;
    let mut sole_owner_of = Vec::new();
    let mut memberships = Vec::new();
    for org in &org_ids {
        let m = tx
            .membership(org, id)?
            .ok_or_else(|| Error::corrupted("user_orgs names a missing membership"))?;
        if m.acting_role() == Some(Role::Owner) && tx.org_stats(org)?.owners() <= 1 {
            sole_owner_of.push(org.clone());
        }
        memberships.push(m);
    }
    if !sole_owner_of.is_empty() {
        return Err(Error::conflict_with(
            "User is the only owner of an organization; transfer ownership first",
            "organizations",
            sole_owner_of,
        ));
    }
    for m in &memberships {
        members::remove_membership_everywhere(tx, m)?;
    }
    tx.remove_user(&user)?;
    let details = json!({ "email": user.email, "organizations": org_ids });
    record(tx, ctx, "system", None, "user.deleted", id, details)
}
