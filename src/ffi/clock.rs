//! The manual clock and the open options.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;

use super::custom::UtcTimestamp;
use super::error::{invalid, OrgDbError};
use crate::model::org::Limits;

/// A clock that moves only when told to, for tests of expiry and month rollover. Pass it in
/// [`Options::clock`]; every database opened with it reads this time, and the clock can be
/// moved while they are open.
#[derive(Debug, uniffi::Object)]
pub struct ManualClock {
    clock: crate::ManualClock,
}

#[uniffi::export]
impl ManualClock {
    /// A clock stopped at `at`.
    ///
    /// # Errors
    /// `validation_error` (`at`) for an instant out of orgdb's range.
    #[uniffi::constructor]
    pub fn new(at: UtcTimestamp) -> Result<Arc<ManualClock>, OrgDbError> {
        Ok(Arc::new(ManualClock {
            clock: crate::ManualClock::new(at),
        }))
    }

    /// Moves the clock to `at` (it may go backwards).
    ///
    /// # Errors
    /// `validation_error` (`at`) for an instant out of range.
    pub fn set(&self, at: UtcTimestamp) -> Result<(), OrgDbError> {
        self.clock.set(at);
        Ok(())
    }

    /// Moves the clock by `seconds` (negative moves it back).
    ///
    /// # Errors
    /// `validation_error` (`seconds`) when the result would be out of range.
    pub fn advance_seconds(&self, seconds: i64) -> Result<(), OrgDbError> {
        use crate::Clock as _;
        let by = TimeDelta::try_seconds(seconds)
            .filter(|by| self.clock.now().checked_add_signed(*by).is_some())
            .ok_or_else(|| invalid("seconds", "Moves the clock out of range"))?;
        self.clock.advance(by);
        Ok(())
    }

    /// The clock's current time.
    pub fn now(&self) -> UtcTimestamp {
        use crate::Clock as _;
        self.clock.now()
    }
}

/// When a committed write reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Durability {
    /// Every write is on disk when its call returns (default).
    Immediate,
    /// Writes reach the disk with a later immediate commit or a clean close.
    Eventual,
}

/// What a plan grants beyond the four seed limits.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct PlanEntitlements {
    /// Features the plan includes (`sso`…).
    #[uniffi(default)]
    pub features: Vec<String>,
    /// Named limits (`projects`…): name → at most this many, null for unlimited.
    #[uniffi(default)]
    pub limits: HashMap<String, Option<u64>>,
    /// Soft limits (a seed limit or one of `limits`): name → the overage cap past the limit,
    /// null for no cap. Limits not named here are hard.
    #[uniffi(default)]
    pub soft_limits: HashMap<String, Option<u64>>,
}

/// Settings of a database handle; every null field keeps its default.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct Options {
    /// A manual clock (the system clock when null).
    #[uniffi(default)]
    pub clock: Option<Arc<ManualClock>>,
    /// Default invitation lifetime in seconds, 1 hour to 30 days (7 days).
    #[uniffi(default)]
    pub invitation_lifetime_secs: Option<u64>,
    /// Invite URL with `{token}` where the token goes.
    #[uniffi(default)]
    pub invite_url_template: Option<String>,
    /// Plan name → limits, replacing the default catalog (free, pro, team, enterprise); name
    /// `default_plan` too when the new catalog has no `free`.
    #[uniffi(default)]
    pub plans: Option<HashMap<String, Limits>>,
    /// Plan name → its features and named limits (`projects`…), for plans of the catalog
    /// (`plans`, or the default one); plans not named here have none beyond the default
    /// catalog's.
    #[uniffi(default)]
    pub plan_entitlements: Option<HashMap<String, PlanEntitlements>>,
    /// Plan given to organizations created without one (`free`).
    #[uniffi(default)]
    pub default_plan: Option<String>,
    /// Slugs no organization may take (admin, api, app, new, settings, www).
    #[uniffi(default)]
    pub reserved_slugs: Option<Vec<String>>,
    /// Commit durability of file databases (immediate).
    #[uniffi(default)]
    pub durability: Option<Durability>,
    /// How often buffered usage is checkpointed, in milliseconds (1 000).
    #[uniffi(default)]
    pub usage_flush_interval_ms: Option<u64>,
    /// Size of the usage journal file in bytes (32 MiB, at least 64 KiB).
    #[uniffi(default)]
    pub journal_size: Option<u64>,
    /// How many organizations one user may own (no cap when null).
    #[uniffi(default)]
    pub max_owned_organizations: Option<u64>,
    /// How long a usage reservation holds quota unless settled, in seconds (300; 1 to
    /// 86 400).
    #[uniffi(default)]
    pub reservation_ttl_secs: Option<u64>,
}

impl TryFrom<Options> for crate::Options {
    type Error = OrgDbError;

    fn try_from(o: Options) -> Result<crate::Options, OrgDbError> {
        let mut opts = crate::Options::default();
        if let Some(clock) = o.clock {
            opts.clock = Arc::new(clock.clock.clone());
        }
        if let Some(secs) = o.invitation_lifetime_secs {
            opts.invitation_lifetime = i64::try_from(secs)
                .ok()
                .and_then(TimeDelta::try_seconds)
                .ok_or_else(|| {
                    invalid("invitation_lifetime", "Must be between 1 hour and 30 days")
                })?;
        }
        opts.max_owned_organizations = o.max_owned_organizations;
        if let Some(template) = o.invite_url_template {
            opts.invite_url_template = template;
        }
        if let Some(plans) = o.plans {
            opts.plans.plans = plans
                .into_iter()
                .map(|(name, limits)| (name, crate::Plan::from(limits)))
                .collect();
        }
        for (name, extra) in o.plan_entitlements.unwrap_or_default() {
            let plan = opts.plans.plans.get_mut(&name).ok_or_else(|| {
                invalid(
                    "plan_entitlements",
                    &format!("{name:?} is not a plan of the catalog"),
                )
            })?;
            plan.features = extra.features.into_iter().collect();
            plan.named_limits = extra.limits.into_iter().collect();
            plan.enforcement = extra
                .soft_limits
                .into_iter()
                .map(|(name, overage_cap)| (name, crate::Enforcement::Soft { overage_cap }))
                .collect();
        }
        if let Some(plan) = o.default_plan {
            opts.plans.default_plan = plan;
        }
        if let Some(slugs) = o.reserved_slugs {
            opts.reserved_slugs = slugs;
        }
        if let Some(durability) = o.durability {
            opts.durability = match durability {
                Durability::Immediate => crate::Durability::Immediate,
                Durability::Eventual => crate::Durability::Eventual,
            };
        }
        if let Some(ms) = o.usage_flush_interval_ms {
            opts.usage_flush_interval = Duration::from_millis(ms);
        }
        if let Some(size) = o.journal_size {
            opts.journal_size = size;
        }
        if let Some(secs) = o.reservation_ttl_secs {
            opts.reservation_ttl = Duration::from_secs(secs);
        }
        Ok(opts)
    }
}
