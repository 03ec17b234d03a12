//! The audit log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One audited mutation. `seq` increases without gaps within its feed: the whole database on
/// the embedded backend, one organization (or the events outside any) on PostgreSQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct AuditEvent {
    /// `evt_…`
    pub id: String,
    /// Position in the database's log, from 1, without gaps.
    pub seq: u64,
    /// When it happened.
    #[serde(with = "crate::model::time")]
    pub at: DateTime<Utc>,
    /// `user_…` or `system`.
    pub actor: String,
    /// The organization concerned, if any.
    pub organization_id: Option<String>,
    /// What happened (`member.role_changed`).
    pub action: String,
    /// The id acted on.
    pub target: String,
    /// Before/after values that changed; never a secret.
    #[serde(with = "json_text")]
    pub details: serde_json::Value,
}

/// JSON values are stored as their text in binary formats (the codec cannot carry
/// self-describing values) and as themselves in JSON.
mod json_text {
    use super::*;

    pub fn serialize<S: Serializer>(v: &serde_json::Value, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            v.serialize(s)
        } else {
            s.serialize_str(&v.to_string())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
        if d.is_human_readable() {
            serde_json::Value::deserialize(d)
        } else {
            let text = String::deserialize(d)?;
            serde_json::from_str(&text).map_err(serde::de::Error::custom)
        }
    }
}
