//! Organizations, their settings, limits and usage.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::membership::Membership;

/// An organization (tenant).
///
/// The postal address is flattened into the organization, as seed 001 sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct Organization {
    /// `org_…`
    pub id: String,
    /// Display name.
    pub name: String,
    /// Unique URL-safe name (`[a-z0-9-]`, 1–64).
    pub slug: String,
    /// The host's own id for this organization (unique when set).
    pub external_id: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Plan name from the plan catalog.
    pub plan: String,
    /// Address, first line.
    pub address_line1: Option<String>,
    /// Address, second line.
    pub address_line2: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State or province.
    pub state: Option<String>,
    /// Postal code.
    pub zipcode: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// Feature settings.
    pub settings: OrganizationSettings,
    /// Free-form string map for the host (at most 64 keys).
    pub metadata: BTreeMap<String, String>,
    /// Creation time.
    #[serde(with = "crate::model::time")]
    pub created_at: DateTime<Utc>,
    /// Last change of any field.
    #[serde(with = "crate::model::time")]
    pub updated_at: DateTime<Utc>,
}

impl Organization {
    /// The address fields as one value.
    pub fn address(&self) -> Address {
        Address {
            address_line1: self.address_line1.clone(),
            address_line2: self.address_line2.clone(),
            city: self.city.clone(),
            state: self.state.clone(),
            zipcode: self.zipcode.clone(),
            country: self.country.clone(),
        }
    }
}

/// A postal address (every line optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// First line.
    #[serde(default)]
    pub address_line1: Option<String>,
    /// Second line.
    #[serde(default)]
    pub address_line2: Option<String>,
    /// City.
    #[serde(default)]
    pub city: Option<String>,
    /// State or province.
    #[serde(default)]
    pub state: Option<String>,
    /// Postal code.
    #[serde(default)]
    pub zipcode: Option<String>,
    /// Country.
    #[serde(default)]
    pub country: Option<String>,
}

/// Organization settings: `pin_protection` plus any host-defined string settings.
///
/// In JSON the extra settings sit beside `pin_protection` (`{"pin_protection": true,
/// "theme": "dark"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct OrganizationSettings {
    /// Whether a PIN protects sensitive actions (seed 000).
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub pin_protection: bool,
    /// Host-defined settings.
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub extra: BTreeMap<String, String>,
}

impl Serialize for OrganizationSettings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut map = s.serialize_map(Some(1 + self.extra.len()))?;
            map.serialize_entry("pin_protection", &self.pin_protection)?;
            for (k, v) in &self.extra {
                map.serialize_entry(k, v)?;
            }
            map.end()
        } else {
            (self.pin_protection, &self.extra).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for OrganizationSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        if d.is_human_readable() {
            let map = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
            let mut settings = OrganizationSettings::default();
            for (k, v) in map {
                if k == "pin_protection" {
                    settings.pin_protection = v
                        .as_bool()
                        .ok_or_else(|| D::Error::custom("pin_protection must be a boolean"))?;
                } else {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    settings.extra.insert(k, text);
                }
            }
            Ok(settings)
        } else {
            let (pin_protection, extra) = <(bool, BTreeMap<String, String>)>::deserialize(d)?;
            Ok(OrganizationSettings {
                pin_protection,
                extra,
            })
        }
    }
}

/// The four limits of a plan. `None` is unlimited and serializes as `null`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct Limits {
    /// Registered MCP servers.
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub mcps: Option<u64>,
    /// Registered API keys.
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub api_keys: Option<u64>,
    /// Members plus pending, unexpired invitations.
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub team_members: Option<u64>,
    /// Usage in the current UTC calendar month.
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub monthly_requests: Option<u64>,
}

/// One limit override: unlimited, or a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// No limit.
    Unlimited,
    /// At most this many.
    Count(u64),
}

impl Limit {
    fn as_option(self) -> Option<u64> {
        match self {
            Limit::Unlimited => None,
            Limit::Count(n) => Some(n),
        }
    }
}

/// Per-organization overrides; a field that is set wins over the plan's limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitOverrides {
    /// Override of `mcps`.
    #[serde(default)]
    pub mcps: Option<Limit>,
    /// Override of `api_keys`.
    #[serde(default)]
    pub api_keys: Option<Limit>,
    /// Override of `team_members`.
    #[serde(default)]
    pub team_members: Option<Limit>,
    /// Override of `monthly_requests`.
    #[serde(default)]
    pub monthly_requests: Option<Limit>,
}

impl LimitOverrides {
    /// The plan's limits with these overrides applied.
    pub fn apply(&self, plan: Limits) -> Limits {
        fn pick(over: Option<Limit>, base: Option<u64>) -> Option<u64> {
            over.map_or(base, Limit::as_option)
        }
        Limits {
            mcps: pick(self.mcps, plan.mcps),
            api_keys: pick(self.api_keys, plan.api_keys),
            team_members: pick(self.team_members, plan.team_members),
            monthly_requests: pick(self.monthly_requests, plan.monthly_requests),
        }
    }
}

/// A PATCH of an organization's limit overrides, like [`OrganizationPatch`]: `None` keeps a
/// field, `Some(None)` clears it back to the plan's limit, `Some(Some(limit))` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitOverridesPatch {
    /// Change of `mcps`.
    #[serde(default, deserialize_with = "double_option")]
    pub mcps: Option<Option<Limit>>,
    /// Change of `api_keys`.
    #[serde(default, deserialize_with = "double_option")]
    pub api_keys: Option<Option<Limit>>,
    /// Change of `team_members`.
    #[serde(default, deserialize_with = "double_option")]
    pub team_members: Option<Option<Limit>>,
    /// Change of `monthly_requests`.
    #[serde(default, deserialize_with = "double_option")]
    pub monthly_requests: Option<Option<Limit>>,
}

impl LimitOverridesPatch {
    /// `current` with this patch applied.
    pub fn apply(&self, current: LimitOverrides) -> LimitOverrides {
        LimitOverrides {
            mcps: self.mcps.unwrap_or(current.mcps),
            api_keys: self.api_keys.unwrap_or(current.api_keys),
            team_members: self.team_members.unwrap_or(current.team_members),
            monthly_requests: self.monthly_requests.unwrap_or(current.monthly_requests),
        }
    }
}

impl From<LimitOverrides> for LimitOverridesPatch {
    /// Sets the overrides that are given and keeps the others.
    fn from(o: LimitOverrides) -> LimitOverridesPatch {
        LimitOverridesPatch {
            mcps: o.mcps.map(Some),
            api_keys: o.api_keys.map(Some),
            team_members: o.team_members.map(Some),
            monthly_requests: o.monthly_requests.map(Some),
        }
    }
}

/// Live counts of the four limited things.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct Usage {
    /// Registered MCP servers.
    pub mcps: u64,
    /// Registered API keys.
    pub api_keys: u64,
    /// Members plus pending, unexpired invitations.
    pub team_members: u64,
    /// Usage recorded in the current UTC calendar month.
    pub monthly_requests: u64,
}

/// `GET /v1/organization` of seed 000: the organization with its limits and live usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct OrganizationDetails {
    /// The organization (its fields are flattened into the JSON object).
    #[serde(flatten)]
    pub organization: Organization,
    /// Effective limits (plan, then overrides).
    pub limits: Limits,
    /// Live counts.
    pub usage: Usage,
}

/// An organization together with one user's membership in it (seed 001's organization
/// objects "with membership details").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct OrganizationWithMembership {
    /// The organization (its fields are flattened into the JSON object).
    #[serde(flatten)]
    pub organization: Organization,
    /// The user's membership.
    pub membership: Membership,
}

/// A new user with their first organization (`Db::create_user_with_organization`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct UserWithOrganization {
    /// The user.
    pub user: crate::model::user::User,
    /// Their organization.
    pub organization: Organization,
    /// Their owner membership of it.
    pub membership: Membership,
}

/// Input of `create_organization`. Its address fields are flat, as in [`Organization`] and
/// [`OrganizationPatch`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct NewOrganization {
    /// Display name (required).
    pub name: String,
    /// Explicit slug; derived from the name when absent.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub slug: Option<String>,
    /// The host's own id.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub external_id: Option<String>,
    /// Free text.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub description: Option<String>,
    /// Plan name; the default plan of Options when absent.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub plan: Option<String>,
    /// Address, first line.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub address_line1: Option<String>,
    /// Address, second line.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub address_line2: Option<String>,
    /// City.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub city: Option<String>,
    /// State or province.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub state: Option<String>,
    /// Postal code.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub zipcode: Option<String>,
    /// Country.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub country: Option<String>,
    /// Settings (all off when absent).
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub settings: Option<OrganizationSettings>,
    /// Host metadata.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub metadata: BTreeMap<String, String>,
}

/// A PATCH of an organization: `None` keeps a field, `Some(None)` clears an optional field,
/// `Some(Some(v))` sets it. `metadata` replaces the whole map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationPatch {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New slug (must be free; an organization may keep its own).
    #[serde(default)]
    pub slug: Option<String>,
    /// New or cleared external id.
    #[serde(default, deserialize_with = "double_option")]
    pub external_id: Option<Option<String>>,
    /// New or cleared description.
    #[serde(default, deserialize_with = "double_option")]
    pub description: Option<Option<String>>,
    /// Address line 1.
    #[serde(default, deserialize_with = "double_option")]
    pub address_line1: Option<Option<String>>,
    /// Address line 2.
    #[serde(default, deserialize_with = "double_option")]
    pub address_line2: Option<Option<String>>,
    /// City.
    #[serde(default, deserialize_with = "double_option")]
    pub city: Option<Option<String>>,
    /// State.
    #[serde(default, deserialize_with = "double_option")]
    pub state: Option<Option<String>>,
    /// Postal code.
    #[serde(default, deserialize_with = "double_option")]
    pub zipcode: Option<Option<String>>,
    /// Country.
    #[serde(default, deserialize_with = "double_option")]
    pub country: Option<Option<String>>,
    /// Replacement settings.
    #[serde(default)]
    pub settings: Option<OrganizationSettings>,
    /// Replacement metadata map.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// JSON PATCH semantics: a missing field is `None` (via `default`), `null` is `Some(None)`.
/// A present JSON field (even `null`) is `Some`: `null` clears, absence keeps.
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Answer of `check_slug`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct SlugCheck {
    /// The slug asked about.
    pub slug: String,
    /// Whether an organization could take it now.
    pub available: bool,
    /// Why not: `invalid`, `reserved` or `taken`.
    pub reason: Option<String>,
}
