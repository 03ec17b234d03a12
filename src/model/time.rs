//! Timestamp encoding shared by every model type.
//!
//! Human-readable formats (JSON) get RFC 3339 with a `Z` (`2024-01-15T10:30:00Z`, fractional
//! seconds only when present); binary formats (the storage codec) get i64 microseconds since
//! the epoch. Stored timestamps have microsecond precision: [`truncate`] is applied to every
//! clock reading so that what is returned equals what is read back.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

/// Drops sub-microsecond precision so a timestamp survives a round trip through storage.
pub fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    from_micros(at.timestamp_micros()).unwrap_or(at)
}

/// `at + by`, saturating at the end of the calendar (a clock set there must not panic).
pub(crate) fn plus(at: DateTime<Utc>, by: chrono::TimeDelta) -> DateTime<Utc> {
    at.checked_add_signed(by)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at - by`, saturating at the start of the calendar.
pub(crate) fn minus(at: DateTime<Utc>, by: chrono::TimeDelta) -> DateTime<Utc> {
    at.checked_sub_signed(by)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Microseconds since the epoch → timestamp (None when out of chrono's range).
pub fn from_micros(micros: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_micros(micros).single()
}

/// RFC 3339 with `Z`, as the seeds print timestamps.
pub fn format(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses an RFC 3339 timestamp (any offset) into UTC.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| truncate(t.with_timezone(&Utc)))
}

/// `#[serde(with = "crate::model::time")]` for `DateTime<Utc>`.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&format(at))
    } else {
        s.serialize_i64(at.timestamp_micros())
    }
}

/// See [`serialize`].
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    if d.is_human_readable() {
        let text = String::deserialize(d)?;
        parse(&text).ok_or_else(|| D::Error::custom(format!("invalid timestamp {text:?}")))
    } else {
        let micros = i64::deserialize(d)?;
        from_micros(micros).ok_or_else(|| D::Error::custom("timestamp out of range"))
    }
}

/// `#[serde(with = "crate::model::time::option")]` for `Option<DateTime<Utc>>`.
pub mod option {
    use super::*;

    /// Serializes `None` as null / a none tag.
    pub fn serialize<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) if s.is_human_readable() => s.serialize_some(&format(at)),
            Some(at) => s.serialize_some(&at.timestamp_micros()),
            None => s.serialize_none(),
        }
    }

    /// See [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        if d.is_human_readable() {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(text) => parse(&text)
                    .map(Some)
                    .ok_or_else(|| D::Error::custom(format!("invalid timestamp {text:?}"))),
            }
        } else {
            match Option::<i64>::deserialize(d)? {
                None => Ok(None),
                Some(micros) => from_micros(micros)
                    .map(Some)
                    .ok_or_else(|| D::Error::custom("timestamp out of range")),
            }
        }
    }
}
