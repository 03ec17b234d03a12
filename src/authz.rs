//! The permission matrix of SPEC section 3, in one table.

use crate::error::{Error, Result};
pub(crate) use crate::model::permission::Action;
use crate::model::permission::Permissions;
use crate::model::role::Role;
use crate::store::{OrgRecord, Reads};

/// Who acts: a user (checked against their role in the organization) or the trusted host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A user, by id; checked against the matrix.
    User(String),
    /// The trusted host (billing, admin tools, migrations): never checked against the matrix,
    /// but invariants (last owner, seats) still hold.
    System,
}

impl Actor {
    /// Shorthand for `Actor::User(id.into())`.
    pub fn user(id: impl Into<String>) -> Actor {
        Actor::User(id.into())
    }

    /// `user_…` or `system`, as the audit log names actors.
    pub fn label(&self) -> &str {
        match self {
            Actor::User(id) => id,
            Actor::System => "system",
        }
    }
}

/// The lowest role allowed each action. Relational rules (no escalation, admins never touch an
/// owner, the last owner never leaves) are in [`may_grant`], [`may_manage`] and the
/// operations; [`permissions`] applies them all to answer what one actor may do.
const MATRIX: [(Action, Role); 13] = [
    (Action::ReadOrganization, Role::Viewer),
    (Action::UpdateOrganization, Role::Admin),
    (Action::ManageInvitations, Role::Admin),
    (Action::AddMember, Role::Admin),
    (Action::ChangeRole, Role::Admin),
    (Action::RemoveMember, Role::Admin),
    (Action::ManageProjects, Role::Admin),
    (Action::ManageResources, Role::Admin),
    (Action::ReadAudit, Role::Admin),
    (Action::TransferOwnership, Role::Owner),
    (Action::ChangePlan, Role::Owner),
    (Action::DeleteOrganization, Role::Owner),
    (Action::LeaveOrganization, Role::Viewer),
];

pub(crate) fn lowest_role(action: Action) -> Role {
    MATRIX
        .iter()
        .find(|(a, _)| *a == action)
        .map_or(Role::Owner, |(_, r)| *r)
}

/// An actor cleared for an action in one organization.
pub(crate) struct Cleared {
    pub(crate) org: OrgRecord,
    /// The actor's role; `None` for `Actor::System`.
    pub(crate) role: Option<Role>,
}

/// Loads the organization (`not_found`) and checks the actor's role against the matrix
/// (`forbidden`). Runs before any input is validated.
pub(crate) fn authorize(
    tx: &(impl Reads + ?Sized),
    actor: &Actor,
    org_id: &str,
    action: Action,
) -> Result<Cleared> {
    let (org, role) = match actor {
        Actor::System => (tx.org(org_id)?, None),
        Actor::User(user) => match tx.org_with_role(org_id, user)? {
            Some((org, role)) => (Some(org), role),
            None => (None, None),
        },
    };
    let org = org.ok_or_else(|| Error::not_found("Organization"))?;
    clear(org, actor, role, action)
}

/// [`authorize`] once the organization and the actor's role there (`None`: not a member) are
/// read.
pub(crate) fn clear(
    org: OrgRecord,
    actor: &Actor,
    role: Option<Role>,
    action: Action,
) -> Result<Cleared> {
    match actor {
        Actor::System => Ok(Cleared { org, role: None }),
        Actor::User(_) => match role {
            Some(role) if role >= lowest_role(action) => Ok(Cleared {
                org,
                role: Some(role),
            }),
            _ => Err(Error::forbidden()),
        },
    }
}

/// No escalation: nobody grants a role above their own, and only owners grant `owner`.
pub(crate) fn may_grant(actor_role: Option<Role>, granted: Role) -> bool {
    match actor_role {
        None => true,
        Some(Role::Owner) => true,
        Some(role) => granted <= role && granted != Role::Owner,
    }
}

/// [`may_grant`] as the one answer every call that grants a role gives when it may not.
pub(crate) fn require_grant(actor_role: Option<Role>, granted: Role) -> Result<()> {
    if may_grant(actor_role, granted) {
        Ok(())
    } else {
        Err(Error::forbidden_because(
            "You cannot grant a role above your own",
        ))
    }
}

/// Admins never act on an owner (change their role, remove them).
pub(crate) fn may_manage(actor_role: Option<Role>, target: Role) -> bool {
    match actor_role {
        None | Some(Role::Owner) => true,
        Some(_) => target != Role::Owner,
    }
}

/// What `actor` may do in the organization `cleared` for reading: every action of the matrix
/// their role reaches, with the relational rules applied (`owners` is how many active owners
/// the organization has: the last one may not leave). `Actor::System` may take every action
/// but leaving (it is not a member).
pub(crate) fn permissions(cleared: &Cleared, owners: u64) -> Permissions {
    let role = cleared.role;
    let reaches = |action: Action| role.is_none_or(|r| r >= lowest_role(action));
    let actions: Vec<Action> = Action::ALL
        .into_iter()
        .filter(|&action| match action {
            Action::LeaveOrganization => role.is_some_and(|r| r != Role::Owner || owners > 1),
            action => reaches(action),
        })
        .collect();
    let grants = [
        Action::AddMember,
        Action::ChangeRole,
        Action::ManageInvitations,
    ]
    .iter()
    .any(|a| actions.contains(a));
    let manages = [Action::ChangeRole, Action::RemoveMember]
        .iter()
        .any(|a| actions.contains(a));
    Permissions {
        organization_id: cleared.org.org.id.clone(),
        role,
        grantable_roles: Role::ALL
            .into_iter()
            .filter(|&r| grants && may_grant(role, r))
            .collect(),
        manageable_roles: Role::ALL
            .into_iter()
            .filter(|&r| manages && may_manage(role, r))
            .collect(),
        actions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalation_rules() {
        assert!(may_grant(Some(Role::Admin), Role::Admin));
        assert!(!may_grant(Some(Role::Admin), Role::Owner));
        assert!(!may_grant(Some(Role::Member), Role::Admin));
        assert!(may_grant(Some(Role::Owner), Role::Owner));
        assert!(may_grant(None, Role::Owner));
        assert!(!may_manage(Some(Role::Admin), Role::Owner));
        assert!(may_manage(Some(Role::Owner), Role::Owner));
    }
}
