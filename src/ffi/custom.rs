//! The UniFFI custom types: how the model's values that UniFFI does not carry natively cross
//! the boundary. The model types derive their records and enums with these in place (behind
//! the `ffi` feature), so this is the one place that decides each value's foreign shape.
//!
//! - `DateTime<Utc>` is a `SystemTime`: a timezone-aware UTC `datetime` in Python, a
//!   `java.time.Instant` in Kotlin, with microsecond precision like everything orgdb stores.
//! - `NaiveDate` is its `YYYY-MM-DD` text.
//! - `BTreeMap<String, String>` (metadata, extra settings) is a `HashMap<String, String>`.
//! - `serde_json::Value` (audit details) is its compact JSON text.
//!
//! A value the host hands in that cannot be converted is a `validation_error`: lifting fails
//! with an [`OrgDbError`], which UniFFI raises as itself. A custom type does not know its
//! field, so the error names the one field that takes it from a host today (`at`, of
//! `UsageEvent`; also inside `record_usage_batch`, where it named `events[i].at` before).
//! Report dates still cross as text in the FFI `UsageQuery` so that a bad one names
//! `start_date` or `end_date`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, Utc};

use super::error::{invalid, OrgDbError};
use crate::model::time::from_micros;

/// A UTC instant (`DateTime<Utc>`), as a `SystemTime` across the boundary.
pub type UtcTimestamp = DateTime<Utc>;
/// A calendar day (`NaiveDate`), as `YYYY-MM-DD` text across the boundary.
pub type IsoDate = NaiveDate;
/// A sorted string map, as a plain map across the boundary.
pub type StringMap = BTreeMap<String, String>;
/// A JSON value, as its compact text across the boundary.
pub type JsonText = serde_json::Value;

uniffi::custom_type!(UtcTimestamp, SystemTime, {
    remote,
    lower: |at| system_time(at),
    try_lift: |at| Ok(date_time(at, "at")?),
});

uniffi::custom_type!(IsoDate, String, {
    remote,
    lower: |date| date_text(date),
    try_lift: |text| Ok(date(&text, "date")?),
});

uniffi::custom_type!(StringMap, HashMap<String, String>, {
    remote,
    lower: |map| map.into_iter().collect(),
    try_lift: |map| Ok(map.into_iter().collect()),
});

uniffi::custom_type!(JsonText, String, {
    remote,
    lower: |value| value.to_string(),
    try_lift: |text| {
        let value = serde_json::from_str(&text).map_err(|_| invalid("details", "Must be JSON"))?;
        Ok(value)
    },
});

/// A stored timestamp as a `SystemTime` (microsecond precision, exact).
pub(crate) fn system_time(at: DateTime<Utc>) -> SystemTime {
    let micros = at.timestamp_micros();
    let offset = Duration::from_micros(micros.unsigned_abs());
    let moved = if micros >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    };
    // chrono's range fits in SystemTime on every platform orgdb builds for.
    moved.unwrap_or(UNIX_EPOCH)
}

/// A `SystemTime` from the host, truncated to microseconds like every stored timestamp; out
/// of chrono's range it is a `validation_error` naming `field`.
pub(crate) fn date_time(at: SystemTime, field: &str) -> Result<DateTime<Utc>, OrgDbError> {
    let micros = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).ok(),
        Err(before) => {
            // Round towards the past so that truncation never moves an instant forward.
            let d = before.duration();
            let whole = i64::try_from(d.as_micros()).ok();
            let partial = d.subsec_nanos() % 1_000 != 0;
            whole.and_then(|m| m.checked_add(i64::from(partial)).map(|m| -m))
        }
    };
    micros
        .and_then(from_micros)
        .ok_or_else(|| invalid(field, "Timestamp out of range"))
}

/// A date as `YYYY-MM-DD`.
pub(crate) fn date_text(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// A `YYYY-MM-DD` date from the host; anything else is a `validation_error` naming `field`.
pub(crate) fn date(text: &str, field: &str) -> Result<NaiveDate, OrgDbError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| invalid(field, "Must be a date as YYYY-MM-DD"))
}

/// An optional `YYYY-MM-DD` date from the host.
pub(crate) fn date_opt(text: Option<String>, field: &str) -> Result<Option<NaiveDate>, OrgDbError> {
    text.map(|t| date(&t, field)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_microsecond_precision() {
        for micros in [0, 1, -1, 1_705_314_600_123_456, -86_400_000_001] {
            let at = from_micros(micros).unwrap();
            assert_eq!(date_time(system_time(at), "at").unwrap(), at);
        }
        let nanos = UNIX_EPOCH + Duration::new(10, 999);
        assert_eq!(
            date_time(nanos, "at").unwrap().timestamp_micros(),
            10_000_000
        );
        let before = UNIX_EPOCH - Duration::new(0, 1_500);
        assert_eq!(date_time(before, "at").unwrap().timestamp_micros(), -2);
    }

    #[test]
    fn out_of_range_times_and_bad_dates_are_validation_errors() {
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert!(matches!(
            date_time(far, "at"),
            Err(OrgDbError::Validation { .. })
        ));
        assert_eq!(date("2024-01-15", "d").unwrap().to_string(), "2024-01-15");
        assert_eq!(date_text(date(" 2024-02-29 ", "d").unwrap()), "2024-02-29");
        for bad in ["2023-02-29", "15/01/2024", "", "2024-1-5x"] {
            let Err(OrgDbError::Validation { details, .. }) = date(bad, "start_date") else {
                panic!("{bad:?} accepted")
            };
            assert!(details.contains_key("start_date"));
        }
    }

    #[test]
    fn a_failed_lift_is_the_validation_error_itself() {
        use uniffi::Lift;
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        let mut buf = Vec::new();
        <SystemTime as uniffi::Lower<crate::UniFfiTag>>::write(far, &mut buf);
        let err =
            <UtcTimestamp as Lift<crate::UniFfiTag>>::try_read(&mut buf.as_slice()).unwrap_err();
        assert!(matches!(
            err.downcast::<OrgDbError>(),
            Ok(OrgDbError::Validation { .. })
        ));
    }
}
