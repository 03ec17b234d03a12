//! Resources: the MCP servers and API keys counted by the `mcps` / `api_keys` limits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The two kinds of limited resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// An MCP server (limit `mcps`).
    Mcp,
    /// An API key (limit `api_keys`).
    ApiKey,
}

impl ResourceKind {
    /// `mcp` or `api_key`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Mcp => "mcp",
            ResourceKind::ApiKey => "api_key",
        }
    }

    /// The limit that counts this kind.
    pub fn limit_name(self) -> &'static str {
        match self {
            ResourceKind::Mcp => "mcps",
            ResourceKind::ApiKey => "api_keys",
        }
    }

    /// Parses `mcp` / `api_key` case-insensitively.
    pub fn parse(text: &str) -> Option<ResourceKind> {
        [ResourceKind::Mcp, ResourceKind::ApiKey]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(text.trim()))
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            ResourceKind::Mcp => 0,
            ResourceKind::ApiKey => 1,
        }
    }
}

/// A registered resource. Removed resources are kept (with `removed_at`) so that usage
/// reports still name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct Resource {
    /// `res_…`
    pub id: String,
    /// The organization.
    pub organization_id: String,
    /// `mcp` or `api_key`.
    pub kind: ResourceKind,
    /// Display name.
    pub name: String,
    /// Registration time.
    #[serde(with = "crate::model::time")]
    pub created_at: DateTime<Utc>,
    /// Removal time; removed resources no longer count against limits.
    #[serde(with = "crate::model::time::option")]
    pub removed_at: Option<DateTime<Utc>>,
}

impl Resource {
    /// Whether the resource belongs to `org` and is not removed: the only resources a usage
    /// event, a reservation or a resource call may name.
    pub(crate) fn is_live_in(&self, org: &str) -> bool {
        self.organization_id == org && self.removed_at.is_none()
    }
}
