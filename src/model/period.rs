//! Quota periods: how an organization's usage quota is cut into periods that reset.
//!
//! One pure function, [`QuotaPeriod::span`], says which period a UTC day belongs to; every
//! place that counts usage by period (the ledger, the shared backend's transactions, leases,
//! reports, `check()`) asks it.

use chrono::{Datelike, Days, Months, NaiveDate};
use serde::{Deserialize, Serialize};

/// How an organization's `monthly_requests` quota resets. The default is the UTC calendar
/// month; the limit keeps its seed name whatever the period.
///
/// JSON: `{"kind": "calendar_month"}`, `{"kind": "day"}`, `{"kind": "week"}`,
/// `{"kind": "year"}`, `{"kind": "anchored", "anchor": "2024-01-31"}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
pub enum QuotaPeriod {
    /// The UTC calendar month (the default).
    #[default]
    CalendarMonth,
    /// One UTC day.
    Day,
    /// An ISO week, Monday to Sunday.
    Week,
    /// The UTC calendar year.
    Year,
    /// Monthly from a billing anchor: periods start on the anchor's day of the month, or on
    /// the month's last day when the month is shorter (an anchor on the 31st starts periods on
    /// Jan 31, Feb 28 or 29, Mar 31, Apr 30…). Days before the anchor are cut the same way.
    Anchored {
        /// The billing start date; its day of the month is the billing day.
        anchor: NaiveDate,
    },
}

/// The last day of a month.
fn last_day(year: i32, month: u32) -> Option<u32> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    Some(first.checked_add_months(Months::new(1))?.pred_opt()?.day())
}

/// The month after (`year`, `month`).
fn next_month(year: i32, month: u32) -> (i32, u32) {
    if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

/// The month before (`year`, `month`).
fn prev_month(year: i32, month: u32) -> (i32, u32) {
    if month == 1 {
        (year - 1, 12)
    } else {
        (year, month - 1)
    }
}

/// The billing day `billing_day` in (`year`, `month`), clamped to the month's last day.
fn anchored_start(billing_day: u32, year: i32, month: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(year, month, billing_day.min(last_day(year, month)?))
}

impl QuotaPeriod {
    /// The first and last day of the period that holds `day`; `None` at the ends of the
    /// calendar, where no whole period fits.
    pub fn span(self, day: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
        match self {
            QuotaPeriod::CalendarMonth => {
                let first = day.with_day(1)?;
                Some((first, first.checked_add_months(Months::new(1))?.pred_opt()?))
            }
            QuotaPeriod::Day => Some((day, day)),
            QuotaPeriod::Week => {
                let back = u64::from(day.weekday().num_days_from_monday());
                let monday = day.checked_sub_days(Days::new(back))?;
                Some((monday, monday.checked_add_days(Days::new(6))?))
            }
            QuotaPeriod::Year => Some((
                NaiveDate::from_ymd_opt(day.year(), 1, 1)?,
                NaiveDate::from_ymd_opt(day.year(), 12, 31)?,
            )),
            QuotaPeriod::Anchored { anchor } => {
                let billing_day = anchor.day();
                let this = anchored_start(billing_day, day.year(), day.month())?;
                let (y, m) = if day >= this {
                    (day.year(), day.month())
                } else {
                    prev_month(day.year(), day.month())
                };
                let start = anchored_start(billing_day, y, m)?;
                let (ny, nm) = next_month(y, m);
                let end = anchored_start(billing_day, ny, nm)?.pred_opt()?;
                Some((start, end))
            }
        }
    }

    /// The name reports give the period: `month`, `day`, `week`, `year` or `billing`.
    pub fn label(self) -> &'static str {
        match self {
            QuotaPeriod::CalendarMonth => "month",
            QuotaPeriod::Day => "day",
            QuotaPeriod::Week => "week",
            QuotaPeriod::Year => "year",
            QuotaPeriod::Anchored { .. } => "billing",
        }
    }
}

/// An organization's quota period and the one that holds today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct BillingPeriod {
    /// How the quota resets.
    pub rule: QuotaPeriod,
    /// The current period's first day (UTC).
    pub period_start: NaiveDate,
    /// The current period's last day (UTC).
    pub period_end: NaiveDate,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn anchored(y: i32, m: u32, day: u32) -> QuotaPeriod {
        QuotaPeriod::Anchored {
            anchor: d(y, m, day),
        }
    }

    #[test]
    fn an_anchor_on_the_31st_clamps_to_short_months() {
        let p = anchored(2023, 1, 31);
        assert_eq!(
            p.span(d(2024, 2, 10)),
            Some((d(2024, 1, 31), d(2024, 2, 28)))
        );
        assert_eq!(
            p.span(d(2024, 2, 29)),
            Some((d(2024, 2, 29), d(2024, 3, 30)))
        );
        assert_eq!(
            p.span(d(2023, 2, 28)),
            Some((d(2023, 2, 28), d(2023, 3, 30)))
        );
        assert_eq!(
            p.span(d(2024, 3, 31)),
            Some((d(2024, 3, 31), d(2024, 4, 29)))
        );
        assert_eq!(
            p.span(d(2024, 4, 30)),
            Some((d(2024, 4, 30), d(2024, 5, 30)))
        );
        assert_eq!(
            p.span(d(2024, 12, 31)),
            Some((d(2024, 12, 31), d(2025, 1, 30)))
        );
    }

    #[test]
    fn an_anchor_on_the_29th_meets_leap_years() {
        let p = anchored(2024, 2, 29);
        assert_eq!(
            p.span(d(2024, 2, 29)),
            Some((d(2024, 2, 29), d(2024, 3, 28)))
        );
        assert_eq!(
            p.span(d(2025, 2, 28)),
            Some((d(2025, 2, 28), d(2025, 3, 28)))
        );
        assert_eq!(
            p.span(d(2025, 3, 1)),
            Some((d(2025, 2, 28), d(2025, 3, 28)))
        );
        assert_eq!(
            p.span(d(2025, 3, 29)),
            Some((d(2025, 3, 29), d(2025, 4, 28)))
        );
        assert_eq!(
            p.span(d(2028, 2, 29)),
            Some((d(2028, 2, 29), d(2028, 3, 28)))
        );
    }

    #[test]
    fn the_15th_starts_and_ends_periods() {
        let p = anchored(2020, 5, 15);
        assert_eq!(
            p.span(d(2024, 1, 14)),
            Some((d(2023, 12, 15), d(2024, 1, 14)))
        );
        assert_eq!(
            p.span(d(2024, 1, 15)),
            Some((d(2024, 1, 15), d(2024, 2, 14)))
        );
        // Days before the anchor are cut the same way.
        assert_eq!(
            p.span(d(2019, 3, 1)),
            Some((d(2019, 2, 15), d(2019, 3, 14)))
        );
    }

    #[test]
    fn calendar_periods() {
        assert_eq!(
            QuotaPeriod::CalendarMonth.span(d(2024, 2, 29)),
            Some((d(2024, 2, 1), d(2024, 2, 29)))
        );
        assert_eq!(
            QuotaPeriod::CalendarMonth.span(d(2023, 2, 1)),
            Some((d(2023, 2, 1), d(2023, 2, 28)))
        );
        assert_eq!(
            QuotaPeriod::Day.span(d(2024, 2, 29)),
            Some((d(2024, 2, 29), d(2024, 2, 29)))
        );
        // 2024-12-30 is the Monday of ISO week 1 of 2025.
        assert_eq!(
            QuotaPeriod::Week.span(d(2025, 1, 1)),
            Some((d(2024, 12, 30), d(2025, 1, 5)))
        );
        assert_eq!(
            QuotaPeriod::Year.span(d(2024, 7, 4)),
            Some((d(2024, 1, 1), d(2024, 12, 31)))
        );
    }

    /// Every day of twelve years under every anchor day: the periods tile the calendar (each
    /// starts the day after the one before ends) and hold the day asked for.
    #[test]
    fn periods_tile_the_calendar() {
        let rules: Vec<QuotaPeriod> = [
            QuotaPeriod::CalendarMonth,
            QuotaPeriod::Day,
            QuotaPeriod::Week,
            QuotaPeriod::Year,
        ]
        .into_iter()
        .chain((1..=31).map(|day| anchored(2024, 1, day)))
        .collect();
        for rule in rules {
            let mut day = d(2020, 1, 1);
            let mut last: Option<(NaiveDate, NaiveDate)> = None;
            while day < d(2032, 1, 1) {
                let (start, end) = rule.span(day).unwrap();
                assert!(start <= day && day <= end, "{rule:?} {day}");
                assert!((end - start).num_days() < 366, "{rule:?} {day}");
                if let Some(prev) = last.filter(|p| *p != (start, end)) {
                    assert_eq!(prev.1.succ_opt(), Some(start), "{rule:?} {day}");
                }
                last = Some((start, end));
                day = day.succ_opt().unwrap();
            }
        }
    }

    #[test]
    fn the_ends_of_the_calendar_have_no_period() {
        assert_eq!(QuotaPeriod::CalendarMonth.span(NaiveDate::MAX), None);
        assert_eq!(anchored(2024, 1, 31).span(NaiveDate::MAX), None);
        assert_eq!(QuotaPeriod::Week.span(NaiveDate::MIN), None);
    }

    #[test]
    fn json() {
        let text = serde_json::to_string(&anchored(2024, 1, 31)).unwrap();
        assert_eq!(text, r#"{"kind":"anchored","anchor":"2024-01-31"}"#);
        let back: QuotaPeriod = serde_json::from_str(&text).unwrap();
        assert_eq!(back, anchored(2024, 1, 31));
        assert_eq!(
            serde_json::to_string(&QuotaPeriod::CalendarMonth).unwrap(),
            r#"{"kind":"calendar_month"}"#
        );
    }
}
