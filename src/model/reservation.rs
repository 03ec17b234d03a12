//! Usage reservations: quota held before an expensive call and settled after it.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The shortest and longest a hold may live (`NewReservation::expires_in`).
pub const RESERVATION_TTL_RANGE: std::ops::RangeInclusive<std::time::Duration> =
    std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(24 * 3600);

/// What `reserve_usage` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct NewReservation {
    /// How many requests to hold, 1 to 2^53: they count against the quota at once.
    pub count: u64,
    /// The resource (MCP server or API key) the settled usage will count for, if any; it
    /// must be a live resource of the organization.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub resource_id: Option<String>,
    /// How long the hold lives unless settled, 1 second to 1 day (default
    /// `Options::reservation_ttl`, 5 minutes). Whole seconds (an integer) in JSON.
    #[serde(default, with = "crate::model::invitation::seconds")]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub expires_in: Option<std::time::Duration>,
}

impl NewReservation {
    /// A hold of `count` requests, without a resource, for the default lifetime.
    pub fn new(count: u64) -> NewReservation {
        NewReservation {
            count,
            ..NewReservation::default()
        }
    }
}

/// A live hold of usage quota. It counts against the organization's quota until it is
/// committed (`commit_reservation`), released (`release_reservation`) or expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct Reservation {
    /// `rsv_` id.
    pub id: String,
    /// The organization.
    pub organization_id: String,
    /// Requests held.
    pub count: u64,
    /// The resource the settled usage counts for.
    pub resource_id: Option<String>,
    /// When it was made.
    #[serde(with = "crate::model::time")]
    pub created_at: DateTime<Utc>,
    /// When it stops counting unless settled.
    #[serde(with = "crate::model::time")]
    pub expires_at: DateTime<Utc>,
    /// The first day of the quota period it was made in.
    pub period_start: NaiveDate,
    /// That period's last day.
    pub period_end: NaiveDate,
}
