//! Organization and project roles.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// A role in an organization or a project: `owner > admin > member > viewer`.
///
/// Parsed case-insensitively (`OWNER` and `owner` are the same role), serialized lower-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
pub enum Role {
    /// Read-only access.
    Viewer,
    /// Regular member.
    Member,
    /// Manages members, invitations, projects and resources.
    Admin,
    /// Full control, including billing, ownership transfer and deletion.
    Owner,
}

impl Role {
    /// All roles, lowest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Member, Role::Admin, Role::Owner];

    /// The lower-case name (`"admin"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Rank used in storage keys and for comparisons: viewer 0 … owner 3.
    pub(crate) fn rank(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_rank(rank: u8) -> Option<Role> {
        Role::ALL.get(rank as usize).copied()
    }

    /// The message of a bad role, the same in every call that takes one.
    pub(crate) const INVALID: &'static str = "Invalid role specified";
    /// The reason `details` gives for a bad role.
    pub(crate) const CHOICES: &'static str = "Must be one of: viewer, member, admin, owner";

    /// Parses a role name case-insensitively; the error names `field`.
    pub fn parse_field(text: &str, field: &str) -> Result<Role, Error> {
        text.parse::<Role>().map_err(|_| Error::Validation {
            message: Role::INVALID.to_owned(),
            details: crate::error::Details::from([(
                field.to_owned(),
                serde_json::Value::from(Role::CHOICES),
            )]),
        })
    }
}

/// A role as a caller passes it: typed (`Role::Admin`), or as text that an edge received
/// (`"ADMIN"`: case-insensitive). Text is parsed inside the call, after the permission check,
/// so an actor without the right learns `forbidden` whatever it sent; a bad name is the
/// `validation_error` "Invalid role specified" naming the field, in every call that takes a
/// role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleArg<'a> {
    /// A typed role.
    Role(Role),
    /// A role name to parse.
    Text(&'a str),
}

impl From<Role> for RoleArg<'_> {
    fn from(role: Role) -> Self {
        RoleArg::Role(role)
    }
}

impl<'a> From<&'a str> for RoleArg<'a> {
    fn from(text: &'a str) -> Self {
        RoleArg::Text(text)
    }
}

impl<'a> From<&'a String> for RoleArg<'a> {
    fn from(text: &'a String) -> Self {
        RoleArg::Text(text)
    }
}

impl RoleArg<'_> {
    /// The role; text that names none is a `validation_error` naming `field`.
    pub(crate) fn resolve(self, field: &str) -> Result<Role, Error> {
        match self {
            RoleArg::Role(role) => Ok(role),
            RoleArg::Text(text) => Role::parse_field(text, field),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown role name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown role {:?}", self.0)
    }
}

impl std::error::Error for UnknownRole {}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        let trimmed = s.trim();
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(trimmed))
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(self.as_str())
        } else {
            s.serialize_u8(self.rank())
        }
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        use serde::de::Error as _;
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            text.parse().map_err(D::Error::custom)
        } else {
            let rank = u8::deserialize(d)?;
            Role::from_rank(rank).ok_or_else(|| D::Error::custom("invalid role rank"))
        }
    }
}
