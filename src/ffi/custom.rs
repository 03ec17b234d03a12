//! The UniFFI custom types: how the model's values that UniFFI does not carry natively cross
//! the boundary. The model types derive their records and enums with these in place (behind
//! the `ffi` feature), so this is the one place that decides each value's foreign shape.
//!
//! - `DateTime<Utc>` crosses as its microseconds since the Unix epoch (an `i64`), and
//!   `uniffi.toml` turns them into a timezone-aware UTC `datetime` in Python and a
//!   `java.time.Instant` in Kotlin, exactly (microsecond precision, like everything orgdb
//!   stores). Not a `SystemTime`: UniFFI's generated Python reads one field by field and
//!   builds it through two `timedelta`s, about 4 µs a timestamp, where an integer and one
//!   conversion take under 1 µs (issue 18's profile of a member page: 40 timestamps).
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

use chrono::{DateTime, NaiveDate, Utc};

use super::error::{invalid, OrgDbError};
use crate::model::time::from_micros;

/// A UTC instant (`DateTime<Utc>`), as microseconds since the Unix epoch across the boundary.
pub type UtcTimestamp = DateTime<Utc>;
/// A calendar day (`NaiveDate`), as `YYYY-MM-DD` text across the boundary.
pub type IsoDate = NaiveDate;
/// A sorted string map, as a plain map across the boundary.
pub type StringMap = BTreeMap<String, String>;
/// A JSON value, as its compact text across the boundary.
pub type JsonText = serde_json::Value;

uniffi::custom_type!(UtcTimestamp, i64, {
    remote,
    lower: |at| at.timestamp_micros(),
    try_lift: |micros| Ok(micros_time(micros, "at")?),
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

/// The resource ids of a recorder batch (`UsageRecorder.record_many`): one per event, `None`
/// for an event outside any resource. A list of strings crosses UniFFI's generated Python at
/// about 4 µs an element, which would cap a batch near 250 000 events a second; this list
/// crosses as one string the languages build with their own `join` (`uniffi.toml`): the count,
/// then one line per id, `+id` or `-` for none. Kept as that text; [`ResourceIdList::ids`]
/// reads it without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceIdList {
    text: String,
    len: usize,
}

impl ResourceIdList {
    /// The ids in order (`None`: no resource).
    pub(crate) fn ids(&self) -> impl Iterator<Item = Option<&str>> {
        let body = self.text.split_once('\n').map_or("", |(_, rest)| rest);
        body.split('\n')
            .take(self.len)
            .map(|line| line.strip_prefix('+'))
    }

    /// How many ids.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn parse(text: String) -> Result<ResourceIdList, OrgDbError> {
        let malformed = || invalid("resource_ids", "Malformed list of resource ids");
        let (head, body) = text.split_once('\n').ok_or_else(malformed)?;
        let len: usize = head.parse().map_err(|_| malformed())?;
        let lines = if len == 0 && body.is_empty() {
            0
        } else {
            body.split('\n').count()
        };
        if lines != len {
            return Err(invalid(
                "resource_ids",
                "A resource id must not contain a line break",
            ));
        }
        if len > 0 && body.split('\n').any(|l| l != "-" && !l.starts_with('+')) {
            return Err(malformed());
        }
        Ok(ResourceIdList { text, len })
    }

    fn text(ids: &ResourceIdList) -> String {
        ids.text.clone()
    }
}

uniffi::custom_type!(ResourceIdList, String, {
    lower: |ids| ResourceIdList::text(&ids),
    try_lift: |text| Ok(ResourceIdList::parse(text)?),
});

/// The counts of a recorder batch, one per event: crosses as their decimal text joined by
/// commas (for the reason [`ResourceIdList`] gives). Anything but a whole number in
/// `0..2^64` is a `validation_error` naming `counts[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountList(pub(crate) Vec<u64>);

uniffi::custom_type!(CountList, String, {
    lower: |counts| counts.0.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
    try_lift: |text| {
        if text.is_empty() {
            return Ok(CountList(Vec::new()));
        }
        let counts = text
            .split(',')
            .enumerate()
            .map(|(i, c)| {
                c.parse::<u64>()
                    .map_err(|_| invalid(&format!("counts[{i}]"), "Must be between 1 and 2^53"))
            })
            .collect::<Result<Vec<u64>, OrgDbError>>()?;
        Ok(CountList(counts))
    },
});

/// Microseconds since the Unix epoch from the host as a timestamp; out of chrono's range it is
/// a `validation_error` naming `field`.
pub(crate) fn micros_time(micros: i64, field: &str) -> Result<DateTime<Utc>, OrgDbError> {
    from_micros(micros).ok_or_else(|| invalid(field, "Timestamp out of range"))
}

/// A date as `YYYY-MM-DD` (chrono's `%Y-%m-%d`: a year outside 0-9999 gets a sign and its
/// digits). Every receipt carries two, so years 0-9999 are written digit by digit: chrono's
/// format parses its pattern on each call, half of a buffered `record`'s Rust time.
pub(crate) fn date_text(date: NaiveDate) -> String {
    use chrono::Datelike;
    let year = date.year();
    if !(0..=9999).contains(&year) {
        return date.format("%Y-%m-%d").to_string();
    }
    let digit = |n: u32| char::from(b'0' + (n % 10) as u8);
    let (y, m, d) = (year as u32, date.month(), date.day());
    [
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        '-',
        digit(m / 10),
        digit(m),
        '-',
        digit(d / 10),
        digit(d),
    ]
    .iter()
    .collect()
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
    fn dates_are_written_as_chrono_writes_them() {
        let mut dates: Vec<NaiveDate> = [(2026, 1, 1), (2026, 12, 31), (1, 2, 3), (0, 1, 1)]
            .into_iter()
            .map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap())
            .collect();
        dates.extend([
            NaiveDate::from_ymd_opt(9999, 12, 31).unwrap(),
            NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(-1, 6, 15).unwrap(),
            NaiveDate::MIN,
            NaiveDate::MAX,
        ]);
        let mut day = NaiveDate::from_ymd_opt(2023, 12, 25).unwrap();
        for _ in 0..800 {
            dates.push(day);
            day = day.succ_opt().unwrap();
        }
        for date in dates {
            assert_eq!(
                date_text(date),
                date.format("%Y-%m-%d").to_string(),
                "{date:?}"
            );
        }
    }

    #[test]
    fn timestamps_cross_as_exact_microseconds() {
        use uniffi::{Lift, Lower};
        for micros in [0, 1, -1, 1_705_314_600_123_456, -86_400_000_001] {
            let at = from_micros(micros).unwrap();
            let lowered = <UtcTimestamp as Lower<crate::UniFfiTag>>::lower(at);
            assert_eq!(lowered, micros);
            let lifted = <UtcTimestamp as Lift<crate::UniFfiTag>>::try_lift(lowered).unwrap();
            assert_eq!(lifted, at);
        }
    }

    #[test]
    fn batch_lists_parse_their_text_and_refuse_a_malformed_one() {
        let ids = ResourceIdList::parse("3\n+mcp_a\n-\n+".to_owned()).unwrap();
        assert_eq!(ids.len(), 3);
        assert_eq!(
            ids.ids().collect::<Vec<_>>(),
            [Some("mcp_a"), None, Some("")]
        );
        assert_eq!(ResourceIdList::parse("0\n".to_owned()).unwrap().len(), 0);
        for bad in ["", "x\n+a", "2\n+a", "1\n+a\n+b", "1\nmcp_a", "1\n"] {
            assert!(
                matches!(
                    ResourceIdList::parse(bad.to_owned()),
                    Err(OrgDbError::Validation { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn out_of_range_times_and_bad_dates_are_validation_errors() {
        assert!(matches!(
            micros_time(i64::MAX, "at"),
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
        let mut buf = Vec::new();
        <i64 as uniffi::Lower<crate::UniFfiTag>>::write(i64::MAX, &mut buf);
        let err =
            <UtcTimestamp as Lift<crate::UniFfiTag>>::try_read(&mut buf.as_slice()).unwrap_err();
        assert!(matches!(
            err.downcast::<OrgDbError>(),
            Ok(OrgDbError::Validation { .. })
        ));
    }
}
