//! What an actor may do in an organization: the actions of the permission matrix (SPEC
//! section 3) and the answer of `Db::permissions`.

use serde::{Deserialize, Serialize};

use crate::model::role::Role;

/// An action of the permission matrix. Every operation that acts on an organization checks
/// one of these; [`Permissions`] lists those an actor may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Read the organization, its members, projects, resources and usage.
    ReadOrganization,
    /// Update the organization's details and settings.
    UpdateOrganization,
    /// Invite, revoke, resend and list invitations.
    ManageInvitations,
    /// Add a member directly, or reactivate a deactivated one.
    AddMember,
    /// Change a member's role.
    ChangeRole,
    /// Remove or deactivate a member.
    RemoveMember,
    /// Create, update and delete projects and manage their members.
    ManageProjects,
    /// Register, rename and remove resources (MCPs, API keys).
    ManageResources,
    /// Read the organization's audit log.
    ReadAudit,
    /// Make another member an owner (the caller becomes admin).
    TransferOwnership,
    /// Change the organization's plan.
    ChangePlan,
    /// Delete the organization.
    DeleteOrganization,
    /// Leave the organization (remove oneself); never the last owner.
    LeaveOrganization,
}

impl Action {
    /// Every action, in the matrix's order.
    pub const ALL: [Action; 13] = [
        Action::ReadOrganization,
        Action::UpdateOrganization,
        Action::ManageInvitations,
        Action::AddMember,
        Action::ChangeRole,
        Action::RemoveMember,
        Action::ManageProjects,
        Action::ManageResources,
        Action::ReadAudit,
        Action::TransferOwnership,
        Action::ChangePlan,
        Action::DeleteOrganization,
        Action::LeaveOrganization,
    ];

    /// The snake-case name (`"manage_invitations"`), as JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadOrganization => "read_organization",
            Action::UpdateOrganization => "update_organization",
            Action::ManageInvitations => "manage_invitations",
            Action::AddMember => "add_member",
            Action::ChangeRole => "change_role",
            Action::RemoveMember => "remove_member",
            Action::ManageProjects => "manage_projects",
            Action::ManageResources => "manage_resources",
            Action::ReadAudit => "read_audit",
            Action::TransferOwnership => "transfer_ownership",
            Action::ChangePlan => "change_plan",
            Action::DeleteOrganization => "delete_organization",
            Action::LeaveOrganization => "leave_organization",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an actor may do in one organization (`Db::permissions`), derived from the one
/// permission matrix with its relational rules applied, so a host never copies the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct Permissions {
    /// The organization.
    pub organization_id: String,
    /// The actor's role there; `null` for `Actor::System` (the trusted host, never checked).
    pub role: Option<Role>,
    /// The actions the actor may take, in the matrix's order.
    pub actions: Vec<Action>,
    /// The roles the actor may grant (invite with, add with, change a member to): never one
    /// above their own, and `owner` only by an owner. Empty without `change_role`, `add_member`
    /// and `manage_invitations`.
    pub grantable_roles: Vec<Role>,
    /// The roles of the members whose role the actor may change, or whom they may remove or
    /// deactivate (an admin never acts on an owner). Empty without `change_role` and
    /// `remove_member`.
    pub manageable_roles: Vec<Role>,
}

impl Permissions {
    /// Whether `action` is allowed.
    pub fn allows(&self, action: Action) -> bool {
        self.actions.contains(&action)
    }
}
