//! Invitations.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::role::Role;

/// Shortest lifetime of one invitation.
pub(crate) const MIN_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// Longest lifetime of one invitation.
pub(crate) const MAX_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// Where an invitation stands. `Expired` is derived at read time from `expires_at` (and stored
/// only when a newer invitation for the same email superseded an expired one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[serde(rename_all = "lowercase")]
pub enum InvitationStatus {
    /// Waiting for the invitee; holds a seat.
    Pending,
    /// The invitee joined.
    Accepted,
    /// The invitee said no.
    Declined,
    /// An admin withdrew it.
    Revoked,
    /// Its expiry passed while pending.
    Expired,
}

impl InvitationStatus {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationStatus::Pending => "pending",
            InvitationStatus::Accepted => "accepted",
            InvitationStatus::Declined => "declined",
            InvitationStatus::Revoked => "revoked",
            InvitationStatus::Expired => "expired",
        }
    }

    /// Parses a status name case-insensitively.
    pub fn parse(text: &str) -> Option<InvitationStatus> {
        use InvitationStatus::*;
        [Pending, Accepted, Declined, Revoked, Expired]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// An invitation to join an organization (and optionally one of its projects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct Invitation {
    /// `inv_…`
    pub id: String,
    /// The organization.
    pub organization_id: String,
    /// The invitee's normalized email.
    pub email: String,
    /// Organization role given on acceptance.
    pub role: Role,
    /// Project joined on acceptance, if any.
    pub project_id: Option<String>,
    /// Role in that project.
    pub project_role: Option<Role>,
    /// Status as of the read (expiry is applied).
    pub status: InvitationStatus,
    /// Who invited (`user_…` or `system`).
    pub invited_by: String,
    /// Creation time.
    #[serde(with = "crate::model::time")]
    pub created_at: DateTime<Utc>,
    /// Pending until this instant.
    #[serde(with = "crate::model::time")]
    pub expires_at: DateTime<Utc>,
    /// When it was accepted.
    #[serde(with = "crate::model::time::option")]
    pub accepted_at: Option<DateTime<Utc>>,
}

impl Invitation {
    /// The status as of `now`: pending with `now >= expires_at` reads `expired`.
    pub fn status_at(&self, now: DateTime<Utc>) -> InvitationStatus {
        if self.status == InvitationStatus::Pending && now >= self.expires_at {
            InvitationStatus::Expired
        } else {
            self.status
        }
    }
}

/// Input of `create_invitation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct NewInvitation {
    /// Invitee's email.
    pub email: String,
    /// Organization role (default `member`), case-insensitive.
    #[serde(default, alias = "organization_role")]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub role: Option<String>,
    /// Project to join on acceptance.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub project_id: Option<String>,
    /// Role in the project (default `member`).
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub project_role: Option<String>,
    /// Lifetime of this invitation, 1 hour to 30 days (default from Options). Whole seconds
    /// (an integer) in JSON.
    #[serde(default, with = "seconds")]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub expires_in: Option<std::time::Duration>,
}

/// A new (or re-sent) invitation with its secret token, shown this once.
///
/// In JSON the invitation's fields stand at the top level beside `invite_id`, `token` and
/// `invite_url`, as seed 000's invite response has them (`email`, `role`, `expires_at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct CreatedInvitation {
    /// The invitation's id (seed 000's `invite_id`).
    pub invite_id: String,
    /// The invitation (flattened into the JSON object).
    #[serde(flatten)]
    pub invitation: Invitation,
    /// The secret token (64 hex characters). Only its hash is stored.
    pub token: String,
    /// The invite URL built from the template in Options.
    pub invite_url: String,
}

/// Query of `list_invitations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct InvitationQuery {
    /// Status filter.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub status: Option<String>,
    /// Page number, from 1.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub page: Option<u32>,
    /// Rows per page, 1–100 (default 20).
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub per_page: Option<u32>,
}

/// What an accept page shows for a token: never the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct InvitationPreview {
    /// `inv_…`
    pub id: String,
    /// Status as of now.
    pub status: InvitationStatus,
    /// Invitee email.
    pub email: String,
    /// Organization role offered.
    pub role: Role,
    /// Project offered, if any.
    pub project_id: Option<String>,
    /// Its name.
    pub project_name: Option<String>,
    /// Project role offered.
    pub project_role: Option<Role>,
    /// Expiry.
    #[serde(with = "crate::model::time")]
    pub expires_at: DateTime<Utc>,
    /// Organization id.
    pub organization_id: String,
    /// Organization name.
    pub organization_name: String,
    /// Organization slug.
    pub organization_slug: String,
    /// Inviter's name (absent when the inviter was the system or is gone).
    pub inviter_name: Option<String>,
    /// Inviter's email.
    pub inviter_email: Option<String>,
}

/// A pending invitation with its organization's name and slug (`list_invitations_for_email`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct PendingInvitation {
    /// The invitation.
    pub invitation: Invitation,
    /// Organization name.
    pub organization_name: String,
    /// Organization slug.
    pub organization_slug: String,
}

/// `Option<Duration>` as whole seconds.
pub(crate) mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        d.map(|d| d.as_secs()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}
