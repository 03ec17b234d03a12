//! Timestamp and date conversions at the boundary. None of them panics: values out of range
//! become `validation_error`s naming the field.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, Utc};

use super::error::{invalid, OrgDbError};
use crate::model::time::from_micros;

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

/// An optional stored timestamp as a `SystemTime`.
pub(crate) fn system_time_opt(at: Option<DateTime<Utc>>) -> Option<SystemTime> {
    at.map(system_time)
}

/// A `SystemTime` from the host, truncated to microseconds like every stored timestamp.
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

/// An optional `SystemTime` from the host.
pub(crate) fn date_time_opt(
    at: Option<SystemTime>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, OrgDbError> {
    at.map(|at| date_time(at, field)).transpose()
}

/// A date as `YYYY-MM-DD`.
pub(crate) fn date_text(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// A `YYYY-MM-DD` date from the host.
pub(crate) fn date(text: &str, field: &str) -> Result<NaiveDate, OrgDbError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| invalid(field, "Must be a date as YYYY-MM-DD"))
}

/// An optional `YYYY-MM-DD` date from the host.
pub(crate) fn date_opt(text: Option<String>, field: &str) -> Result<Option<NaiveDate>, OrgDbError> {
    text.map(|t| date(&t, field)).transpose()
}

/// A sorted map as a host map.
pub(crate) fn hash_map<V>(map: BTreeMap<String, V>) -> HashMap<String, V> {
    map.into_iter().collect()
}

/// A host map as a sorted map.
pub(crate) fn btree_map<V>(map: HashMap<String, V>) -> BTreeMap<String, V> {
    map.into_iter().collect()
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
}
