//! Usage alerts: percentages of an organization's `monthly_requests` limit whose crossing
//! appends a `usage.threshold` event to the audit change feed, once per quota period.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// The thresholds of an organization that set none: 80 % and 100 %.
pub const DEFAULT_THRESHOLDS: [u32; 2] = [80, 100];
/// The most thresholds an organization may have.
pub const THRESHOLDS_MAX: usize = 10;
/// The highest threshold, in percent (above 100 %: overage under a soft limit).
pub const THRESHOLD_PERCENT_MAX: u32 = 1_000;

/// The count at which usage crosses `percent` of `limit` (rounded up), or `None` for a limit
/// of 0, which has no thresholds.
pub fn mark(limit: u64, percent: u32) -> Option<u64> {
    (limit > 0).then(|| {
        u64::try_from((u128::from(limit) * u128::from(percent)).div_ceil(100)).unwrap_or(u64::MAX)
    })
}

/// Whether `thresholds` are as an organization stores them: at most [`THRESHOLDS_MAX`], each
/// 1 to [`THRESHOLD_PERCENT_MAX`], strictly ascending.
pub fn valid_thresholds(thresholds: &[u32]) -> bool {
    thresholds.len() <= THRESHOLDS_MAX
        && thresholds
            .iter()
            .all(|t| (1..=THRESHOLD_PERCENT_MAX).contains(t))
        && thresholds.windows(2).all(|w| w[0] < w[1])
}

/// One threshold and where the organization stands against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct UsageAlert {
    /// The threshold, in percent of the limit.
    pub threshold_percent: u32,
    /// The period total that reaches it (`None` without a limit, or with a limit of 0).
    pub mark: Option<u64>,
    /// The current period's total has reached it.
    pub reached: bool,
    /// The first day of the last period in which reaching it was announced (`None`: never).
    pub fired_period_start: Option<NaiveDate>,
    /// It was announced in the current period under the current limit (it is announced once
    /// per period and limit).
    pub fired_this_period: bool,
}

/// An organization's usage alerts: its thresholds and the current period against them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct UsageAlerts {
    /// The thresholds, ascending.
    pub alerts: Vec<UsageAlert>,
    /// Whether these are the defaults (80 % and 100 %) rather than the organization's own.
    pub default_thresholds: bool,
    /// The current period's total.
    pub used: u64,
    /// The `monthly_requests` limit (`None`: unlimited).
    pub limit: Option<u64>,
    /// `used` in percent of the limit, rounded down (`None` without a limit or at 0).
    pub percentage: Option<u64>,
    /// The current quota period's first day.
    pub period_start: NaiveDate,
    /// Its last day.
    pub period_end: NaiveDate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_up_and_saturate() {
        assert_eq!(mark(100, 80), Some(80));
        assert_eq!(mark(3, 50), Some(2));
        assert_eq!(mark(0, 80), None);
        // 1 000 % of a limit near i64::MAX does not fit a u64: the mark is out of reach.
        assert_eq!(mark(i64::MAX as u64, 1_000), Some(u64::MAX));
        assert!(valid_thresholds(&[1, 80, 1_000]));
        assert!(!valid_thresholds(&[80, 80]) && !valid_thresholds(&[0]));
    }
}
