//! `Db`: Entitlements: what an organization has of a feature or a limit, overrides, and how
//! the usage quota resets.

use crate::authz::Actor;
use crate::error::Result;
use crate::model::alert::UsageAlerts;
use crate::model::entitlement::{Entitlement, EntitlementValue, SEED_LIMITS};
use crate::model::period::{BillingPeriod, QuotaPeriod};
use crate::ops;

use super::Db;

impl Db {
    /// What the organization has of one feature or limit (`sso`, `projects`, `mcps`…), and
    /// why: its plan, a per-organization override (which wins), or neither (a feature is
    /// off, a limit unlimited). Limits orgdb counts (the four seed limits and `projects`)
    /// come with `used`, and `has_access` says whether one more fits. Any member may ask.
    ///
    /// ```
    /// use orgdb::{Actor, Db, EntitlementSource, EntitlementValue, NewOrganization, NewUser};
    /// let db = Db::in_memory()?;
    /// let ada = db.create_user(&NewUser { email: "ada@example.com".into(), name: "Ada".into() })?;
    /// let acme = db.create_organization(&ada.id, &NewOrganization {
    ///     name: "Acme".into(),
    ///     plan: Some("team".into()),
    ///     ..Default::default()
    /// })?;
    /// let org = acme.organization;
    /// let sso = db.entitlement(&Actor::user(&ada.id), &org.id, "sso")?;
    /// assert!(sso.has_access);
    /// assert_eq!(sso.source, EntitlementSource::Plan);
    /// // The operator switches it off for this organization only.
    /// let off = EntitlementValue::Feature { enabled: false };
    /// db.set_entitlement_override(&Actor::System, &org.id, "sso", Some(&off))?;
    /// assert!(!db.entitlement(&Actor::System, &org.id, "sso")?.has_access);
    /// # Ok::<(), orgdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `not_found` (the organization, or a name neither the plan catalog nor an override
    /// knows), `forbidden` for a non-member, `validation_error` for a malformed `name`.
    pub fn entitlement(&self, actor: &Actor, org: &str, name: &str) -> Result<Entitlement> {
        self.read(|tx, ctx| ops::entitlements::get(tx, ctx, actor, org, name))
    }

    /// Every entitlement of the organization: the four seed limits, then every other name
    /// the plan catalog or one of the organization's overrides knows, by name.
    ///
    /// # Errors
    /// `not_found`, `forbidden` for a non-member.
    pub fn entitlements(&self, actor: &Actor, org: &str) -> Result<Vec<Entitlement>> {
        self.read(|tx, ctx| ops::entitlements::list(tx, ctx, actor, org))
    }

    /// Sets (`Some`) or clears (`None`) the organization's override of one feature or limit
    /// (`Actor::System` only, like [`Db::set_limit_overrides`]), and returns the entitlement
    /// as it now is. A name the plan catalog knows takes a value of its kind; other names
    /// may be set as either, for what the host checks itself. Overrides of the four seed
    /// limits are the same as [`Db::set_limit_overrides`]'. Audited
    /// (`organization.entitlement_changed`, or `organization.limits_changed` for the four).
    ///
    /// # Errors
    /// `forbidden` for a user actor, `not_found`, `validation_error` (`name`, or `value` of
    /// the wrong kind).
    pub fn set_entitlement_override(
        &self,
        actor: &Actor,
        org: &str,
        name: &str,
        value: Option<&EntitlementValue>,
    ) -> Result<Entitlement> {
        let out = self
            .write(|tx, ctx| ops::entitlements::set_override(tx, ctx, actor, org, name, value))?;
        if SEED_LIMITS.contains(&out.name.as_str()) {
            self.inner.ledger.refresh_limit(org);
        }
        Ok(out)
    }
}

impl Db {
    /// How the organization's usage quota resets, and the period that holds today. Any
    /// member may ask.
    ///
    /// # Errors
    /// `not_found`, `forbidden` for a non-member.
    pub fn billing_period(&self, actor: &Actor, org: &str) -> Result<BillingPeriod> {
        self.read(|tx, ctx| ops::periods::get(tx, ctx, actor, org))
    }

    /// Sets how the organization's usage quota (`monthly_requests`) resets: the calendar
    /// month (the default), a day, an ISO week, a year, or monthly from a billing anchor
    /// (`QuotaPeriod::Anchored`: periods start on the anchor's day of the month, clamped to
    /// the month's last day). `Actor::System` only: it decides what is billed. Every period
    /// total of the organization is computed again from its day rows under the new rule, in
    /// the same commit as a fold of every usage admitted before it, so nothing is lost or
    /// counted twice; receipts, `check_quota`, `get_organization`'s usage and the default
    /// usage report then speak of the new rule's periods. Audited as
    /// `organization.quota_period_changed` (`before`, `after`). Returns the rule and the
    /// period that holds today.
    ///
    /// ```
    /// use chrono::NaiveDate;
    /// use orgdb::{Actor, Db, ManualClock, NewOrganization, NewUser, Options, QuotaPeriod, UsageEvent};
    ///
    /// let clock = ManualClock::new("2024-03-20T12:00:00Z".parse().unwrap());
    /// let db = Db::in_memory_with(Options::with_clock(clock))?;
    /// let ada = db.create_user(&NewUser { email: "ada@example.com".into(), name: "Ada".into() })?;
    /// let org = db.create_organization(&ada.id, &NewOrganization {
    ///     name: "Acme".into(),
    ///     ..Default::default()
    /// })?.organization.id;
    /// let anchor = NaiveDate::from_ymd_opt(2024, 1, 15).unwrap();
    /// let period = db.set_billing_anchor(&Actor::System, &org, QuotaPeriod::Anchored { anchor })?;
    /// assert_eq!(period.period_start, NaiveDate::from_ymd_opt(2024, 3, 15).unwrap());
    /// assert_eq!(period.period_end, NaiveDate::from_ymd_opt(2024, 4, 14).unwrap());
    /// let receipt = db.record_usage(&org, &UsageEvent::new(5))?;
    /// assert_eq!((receipt.used, receipt.period_start), (5, period.period_start));
    /// # Ok::<(), orgdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `forbidden` for a user actor, `not_found`, `validation_error` (`anchor` outside the
    /// years 1900 to 9999), `conflict` (`pruned_before`, `period_start`) when the new rule's
    /// oldest open period starts before days `prune_usage` removed.
    pub fn set_billing_anchor(
        &self,
        actor: &Actor,
        org: &str,
        rule: QuotaPeriod,
    ) -> Result<BillingPeriod> {
        let ctx = self.ctx();
        let org = org.trim();
        let out = self
            .inner
            .ledger
            .fold_and_write(&*self.inner.store, &ctx, org, None, &|tx| {
                ops::periods::set(tx, &ctx, actor, org, rule)
            })?;
        self.inner.ledger.refresh_limit(org);
        Ok(out)
    }
}

impl Db {
    /// The organization's usage alerts: its thresholds (80 % and 100 % of `monthly_requests`
    /// unless set), the current period's total against each, and the period each was last
    /// announced in. A crossing appends a `usage.threshold` event to the audit change feed,
    /// once per threshold and period. Any member may ask.
    ///
    /// ```
    /// use orgdb::{Actor, Db, NewOrganization, NewUser, UsageEvent};
    /// let db = Db::in_memory()?;
    /// let ada = db.create_user(&NewUser { email: "ada@example.com".into(), name: "Ada".into() })?;
    /// let org = db.create_organization(&ada.id, &NewOrganization {
    ///     name: "Acme".into(),
    ///     plan: Some("free".into()), // 1 000 requests a month
    ///     ..Default::default()
    /// })?.organization.id;
    /// db.set_usage_alerts(&Actor::user(&ada.id), &org, Some(&[50, 90]))?;
    /// db.record_usage(&org, &UsageEvent::new(600))?;
    /// let alerts = db.usage_alerts(&Actor::user(&ada.id), &org)?;
    /// assert!(alerts.alerts[0].fired_this_period);  // 50 %: announced
    /// assert!(!alerts.alerts[1].reached);           // 90 %: not yet
    /// # Ok::<(), orgdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `not_found`, `forbidden` for a non-member.
    pub fn usage_alerts(&self, actor: &Actor, org: &str) -> Result<UsageAlerts> {
        // Fold first, as the change feed does: a crossing admitted a moment ago is announced.
        self.inner.fold_usage(&self.ctx())?;
        // A context taken after the fold: what it stored is no reason to read again.
        let ctx = self.ctx();
        self.inner
            .store
            .read(|tx| ops::alerts::get(tx, &ctx, actor, org.trim()))
    }

    /// Sets the organization's usage alert thresholds, in percent of `monthly_requests` (at
    /// most 10, each 1 to 1 000: above 100 % they announce overage under a soft limit);
    /// `None` restores the defaults (80 % and 100 %), an empty list silences them. A
    /// threshold kept keeps its state, so nothing is announced twice in a period. Owners and
    /// `Actor::System`; audited as `organization.usage_alerts_changed`.
    ///
    /// # Errors
    /// `forbidden` (below owner), `not_found`, `validation_error` (`thresholds`,
    /// `thresholds[i]`).
    pub fn set_usage_alerts(
        &self,
        actor: &Actor,
        org: &str,
        thresholds: Option<&[u32]>,
    ) -> Result<UsageAlerts> {
        // Usage admitted before the change is folded (and announced by the old thresholds) in
        // the same commit, so the answer and the states it reports are complete.
        let ctx = self.ctx();
        let org = org.trim();
        self.inner
            .ledger
            .fold_and_write(&*self.inner.store, &ctx, org, None, &|tx| {
                ops::alerts::set(tx, &ctx, actor, org, thresholds)
            })?;
        self.inner.ledger.refresh_limit(org);
        let ctx = self.ctx();
        self.inner
            .store
            .read(|tx| ops::alerts::get(tx, &ctx, actor, org))
    }
}
