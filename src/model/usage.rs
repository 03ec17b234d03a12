//! Usage events, receipts and reports.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// One usage event of `record_usage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct UsageEvent {
    /// How many requests, 1 to 2^53.
    pub count: u64,
    /// The resource (MCP server or API key) used, if any; it must belong to the organization.
    /// Events without one count in totals and `by_day` only.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub resource_id: Option<String>,
    /// When it happened (default now): at most 5 minutes ahead of the clock and 35 days
    /// behind. A late event counts in its own day and quota period, against that period's limit.
    #[serde(default, with = "crate::model::time::option")]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub at: Option<DateTime<Utc>>,
    /// Retry key, 1–255 characters, scoped to the organization and remembered for at least
    /// 48 hours: a repeat is acknowledged with `duplicate: true` and counts nothing.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub idempotency_key: Option<String>,
}

impl UsageEvent {
    /// `count` requests now, without a resource or key.
    pub fn new(count: u64) -> UsageEvent {
        UsageEvent {
            count,
            ..UsageEvent::default()
        }
    }

    /// Sets the resource.
    pub fn resource(mut self, id: impl Into<String>) -> UsageEvent {
        self.resource_id = Some(id.into());
        self
    }

    /// Sets the idempotency key.
    pub fn key(mut self, key: impl Into<String>) -> UsageEvent {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the time.
    pub fn at(mut self, at: DateTime<Utc>) -> UsageEvent {
        self.at = Some(at);
        self
    }
}

/// The answer to a recorded (or checked) event: the quota period's figures after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct UsageReceipt {
    /// The event's idempotency key had already been recorded: nothing was counted.
    pub duplicate: bool,
    /// Usage of the event's quota period after it (the calendar month unless the
    /// organization's quota period says otherwise).
    pub used: u64,
    /// The `monthly_requests` limit (null when unlimited).
    pub limit: Option<u64>,
    /// `limit - used` (null when unlimited); 0 at or past the limit, even while a soft
    /// limit still admits up to its overage cap.
    pub remaining: Option<u64>,
    /// The period's usage is past the limit: only a soft limit admits that.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub over: bool,
    /// How far past the limit the period's usage is (0 within it).
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub overage: u64,
    /// The first day (UTC) of the quota period the receipt speaks of.
    #[serde(default)]
    pub period_start: NaiveDate,
    /// The last day (UTC) of that period.
    #[serde(default)]
    pub period_end: NaiveDate,
}

/// Report granularity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// One UTC day.
    Day,
    /// One ISO week, Monday first.
    Week,
    /// One UTC calendar month.
    #[default]
    Month,
    /// One UTC calendar year.
    Year,
    /// The organization's quota period (`Db::billing_period`): the default of a report
    /// without dates when that is not the calendar month.
    Billing,
}

impl Period {
    /// `day`, `week`, `month`, `year` or `billing`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Year => "year",
            Period::Billing => "billing",
        }
    }

    /// Parses a period name case-insensitively.
    pub fn parse(text: &str) -> Option<Period> {
        [
            Period::Day,
            Period::Week,
            Period::Month,
            Period::Year,
            Period::Billing,
        ]
        .into_iter()
        .find(|p| p.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// Query of `usage_report`. Without dates, the period containing today (or containing
/// `start_date` when only it is given); with both dates, exactly that range (at most 366 days).
/// Without a period, the organization's quota period (the calendar month unless
/// `set_billing_anchor` said otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageQuery {
    /// Granularity of the default range.
    #[serde(default)]
    pub period: Option<Period>,
    /// First day (inclusive).
    #[serde(default)]
    pub start_date: Option<NaiveDate>,
    /// Last day (inclusive).
    #[serde(default)]
    pub end_date: Option<NaiveDate>,
}

/// Totals of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct RequestTotals {
    /// Requests in the range.
    pub total: u64,
    /// The `monthly_requests` limit (null when unlimited).
    pub limit: Option<u64>,
    /// `total * 100 / limit`, rounded down; null when unlimited or the limit is 0.
    pub percentage: Option<u64>,
}

/// One resource's requests in the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct ResourceUsage {
    /// The resource's id.
    pub mcp_id: String,
    /// Its name (kept after removal).
    pub name: String,
    /// Requests in the range.
    pub requests: u64,
}

/// One API key's requests in the range (a report's `by_api_key` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct ApiKeyUsage {
    /// The API key resource's id.
    pub api_key_id: String,
    /// Its name (kept after removal).
    pub name: String,
    /// Requests in the range.
    pub requests: u64,
}

/// One day's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct DayUsage {
    /// The day.
    pub date: NaiveDate,
    /// Requests that day.
    pub requests: u64,
}

/// Seed 000's usage response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct UsageReport {
    /// `day`, `week` or `month`.
    pub period: Period,
    /// Start of the first day.
    #[serde(with = "crate::model::time")]
    pub start_date: DateTime<Utc>,
    /// Last second of the last day.
    #[serde(with = "crate::model::time")]
    pub end_date: DateTime<Utc>,
    /// Totals.
    pub requests: RequestTotals,
    /// Per MCP server with usage in the range, most used first.
    pub by_mcp: Vec<ResourceUsage>,
    /// Per API key with usage in the range, most used first (beside the seed's `by_mcp`).
    pub by_api_key: Vec<ApiKeyUsage>,
    /// Every day of the range, zero days included.
    pub by_day: Vec<DayUsage>,
}

/// Input of `Db::correct_usage`: raise or lower one day's count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct UsageCorrection {
    /// The UTC day corrected: inside the late-event window (35 days), not after today.
    pub date: NaiveDate,
    /// The resource (`res_…`, live in the organization) whose count changes; without one,
    /// the day's count outside any resource.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub resource_id: Option<String>,
    /// How much to add (negative: remove); never 0, and never below zero for the day.
    pub delta: i64,
    /// Makes a retried correction count once (the same keys as usage events).
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub idempotency_key: Option<String>,
    /// Why, for the audit log (at most 1 000 characters).
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub reason: Option<String>,
}

/// What `Db::correct_usage` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct CorrectedUsage {
    /// The day corrected.
    pub date: NaiveDate,
    /// The resource, if any.
    pub resource_id: Option<String>,
    /// The day's count (of the resource, or outside any resource) before.
    pub before: u64,
    /// The day's count after.
    pub after: u64,
    /// The quota period's total after (what `monthly_requests` counts).
    pub month_total: u64,
    /// The key was used before: nothing changed, and the counts are today's.
    pub duplicate: bool,
}
