//! Entitlements: what an organization may do, from its plan or an override (SPEC section 13).

use serde::{Deserialize, Serialize};

/// The four limits of the seed, which keep their own fields in `Limits` and
/// `LimitOverrides`; every other name is a named limit or a feature.
pub const SEED_LIMITS: [&str; 4] = ["mcps", "api_keys", "team_members", "monthly_requests"];

/// The named limit orgdb counts and enforces itself (in `create_project`): always a limit,
/// never a feature.
pub const PROJECTS: &str = "projects";

/// The largest count a limit may hold (every backend stores it as a signed 64-bit number).
pub const LIMIT_MAX: u64 = i64::MAX as u64;

/// The longest entitlement name.
pub const NAME_MAX: usize = 64;

/// `[a-z][a-z0-9_]*`, at most [`NAME_MAX`] characters.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= NAME_MAX
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A feature (on or off) or a limit (a count, or unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
pub enum EntitlementKind {
    /// A boolean feature (`sso`).
    Feature,
    /// A numeric limit (`projects`, `mcps`).
    Limit,
}

impl EntitlementKind {
    /// `feature` or `limit`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntitlementKind::Feature => "feature",
            EntitlementKind::Limit => "limit",
        }
    }
}

/// Why an organization has what it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
pub enum EntitlementSource {
    /// The organization's plan sets it.
    Plan,
    /// A per-organization override sets it; it wins over the plan.
    Override,
    /// Neither: a feature is off, a limit unlimited.
    Default,
}

/// How a limit is enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
pub enum Enforcement {
    /// Refuse what would pass the limit (`quota_exceeded`).
    #[default]
    Hard,
    /// Admit past the limit and count the overage (a usage receipt says `over`), up to
    /// `limit + overage_cap`, which is hard; no cap: no bound.
    Soft {
        /// How far past the limit may go; `None`: without bound.
        #[serde(default)]
        overage_cap: Option<u64>,
    },
}

impl Enforcement {
    /// The bound admission enforces for `limit`: the limit itself when hard, the limit plus
    /// the cap when soft (at most [`LIMIT_MAX`], what every backend can store), none when soft
    /// without a cap or when unlimited.
    pub fn ceiling(self, limit: Option<u64>) -> Option<u64> {
        match self {
            Enforcement::Hard => limit,
            Enforcement::Soft {
                overage_cap: Some(cap),
            } => limit.map(|l| l.saturating_add(cap).min(LIMIT_MAX.max(l))),
            Enforcement::Soft { overage_cap: None } => None,
        }
    }
}

/// What an override sets: a feature on or off, or a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
pub enum EntitlementValue {
    /// A feature, switched on or off for this organization.
    Feature {
        /// On or off.
        enabled: bool,
    },
    /// A limit for this organization.
    Limit {
        /// At most this many; `None` (JSON `null`): unlimited.
        #[serde(default)]
        limit: Option<u64>,
    },
}

impl EntitlementValue {
    /// Feature or limit.
    pub fn kind(&self) -> EntitlementKind {
        match self {
            EntitlementValue::Feature { .. } => EntitlementKind::Feature,
            EntitlementValue::Limit { .. } => EntitlementKind::Limit,
        }
    }
}

/// What an organization has of one entitlement, and why: the answer of `entitlement`.
///
/// JSON: `{"name": "projects", "kind": "limit", "has_access": true, "limit": 10, "used": 3,
/// "source": "override", "plan": "pro"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct Entitlement {
    /// The name (`sso`, `projects`, `mcps`…).
    pub name: String,
    /// Feature or limit.
    pub kind: EntitlementKind,
    /// A feature: whether it is on. A limit: whether one more may be used now (unlimited, or
    /// `used` below the enforced bound: `limit`, or `limit` plus the overage cap of a soft
    /// limit; when orgdb does not count the use, whether that bound is above 0).
    pub has_access: bool,
    /// A limit's value; `None` for a feature or an unlimited limit.
    pub limit: Option<u64>,
    /// What counts against a limit today, where orgdb counts it: the four seed limits (as in
    /// `get_organization`'s `usage`) and `projects`. `None` for features and for named
    /// limits the host counts.
    pub used: Option<u64>,
    /// Where the answer comes from.
    pub source: EntitlementSource,
    /// How a limit is enforced (the plan's; `Hard` for features). Under `Soft`, `has_access`
    /// holds up to the overage cap.
    pub enforcement: Enforcement,
    /// The organization's plan.
    pub plan: String,
}
