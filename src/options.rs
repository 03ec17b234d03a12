//! Options of a database handle, and its clocks.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::{Error, Result};
use crate::model::plan::PlanCatalog;

/// A source of the current time. Every timestamp orgdb writes comes from the clock in
/// [`Options`], so tests (and binding users) can drive expiry and month rollover.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;

    /// The current instant in microseconds since the Unix epoch. A clock may answer this
    /// without building a calendar date, for the usage hot path.
    fn now_micros(&self) -> i64 {
        self.now().timestamp_micros()
    }
}

/// The system clock (default).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn now_micros(&self) -> i64 {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        match since {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
        }
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(at)),
        }
    }

    /// Moves the clock to `at` (it may go backwards).
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = now.checked_add_signed(by).unwrap_or(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// When a committed write reaches the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every write is on disk when its call returns (default).
    #[default]
    Immediate,
    /// Writes are visible at once and reach the disk with a later immediate commit or a clean
    /// close: faster, but a crash may lose the most recent writes (never tear one).
    Eventual,
}

/// Settings of a database handle.
#[derive(Debug, Clone)]
pub struct Options {
    /// Source of time (the system clock by default).
    pub clock: Arc<dyn Clock>,
    /// Default invitation lifetime (7 days); 1 hour to 30 days.
    pub invitation_lifetime: TimeDelta,
    /// Invite URL with `{token}` where the token goes.
    pub invite_url_template: String,
    /// Plan name → what the plan grants (limits, named limits, features).
    pub plans: PlanCatalog,
    /// Slugs no organization may take.
    pub reserved_slugs: Vec<String>,
    /// Commit durability of file databases.
    pub durability: Durability,
    /// How often buffered and journaled usage is checkpointed into the database (1 s).
    pub usage_flush_interval: Duration,
    /// Size of the usage journal file beside the database (32 MiB, at least 64 KiB). A larger
    /// journal checkpoints less often.
    pub journal_size: u64,
    /// On PostgreSQL: how long a process's lease of buffered quota lives on the server without
    /// renewal (30 s; at least twice `usage_flush_interval`, which renews it). A crashed
    /// process's unused quota returns after this.
    pub usage_lease_ttl: Duration,
    /// How long a usage reservation holds quota unless settled, when `reserve_usage` does
    /// not say (5 minutes; 1 second to 1 day).
    pub reservation_ttl: Duration,
    /// How many organizations one user may own (active owner memberships, not memberships of
    /// any role); `None`: no cap (the default). Creating an organization, or becoming an
    /// owner by an add, a role change, a transfer, an accepted invitation or a reactivation,
    /// past it is `quota_exceeded` (`owned_organizations`).
    pub max_owned_organizations: Option<u64>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            clock: Arc::new(SystemClock),
            invitation_lifetime: TimeDelta::days(7),
            invite_url_template: "https://app.example.com/invite/{token}".to_owned(),
            plans: PlanCatalog::default(),
            reserved_slugs: ["admin", "api", "app", "new", "settings", "www"]
                .map(str::to_owned)
                .to_vec(),
            durability: Durability::Immediate,
            usage_flush_interval: Duration::from_secs(1),
            journal_size: 32 << 20,
            usage_lease_ttl: Duration::from_secs(30),
            reservation_ttl: Duration::from_secs(300),
            max_owned_organizations: None,
        }
    }
}

impl Options {
    /// Options with a manual clock (everything else default).
    pub fn with_clock(clock: impl Clock + 'static) -> Options {
        Options {
            clock: Arc::new(clock),
            ..Options::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        use crate::model::invitation::{MAX_LIFETIME, MIN_LIFETIME};
        if !(MIN_LIFETIME..=MAX_LIFETIME).contains(&self.invitation_lifetime) {
            return Err(Error::invalid(
                "invitation_lifetime",
                "Must be between 1 hour and 30 days",
            ));
        }
        if self.plans.limits(&self.plans.default_plan).is_none() {
            return Err(Error::invalid(
                "default_plan",
                "Must name a plan of the catalog",
            ));
        }
        if let Some(problem) = self.plans.problem() {
            return Err(Error::invalid("plans", problem));
        }
        if !crate::model::reservation::RESERVATION_TTL_RANGE.contains(&self.reservation_ttl) {
            return Err(Error::invalid(
                "reservation_ttl",
                "Must be between 1 second and 1 day",
            ));
        }
        if !self.invite_url_template.contains("{token}") {
            return Err(Error::invalid(
                "invite_url_template",
                "Must contain {token}",
            ));
        }
        Ok(())
    }
}
