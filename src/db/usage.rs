//! `Db`: Usage: durable, batched and buffered admission, the recorder, reports and pruning.

use super::UsageRecorder;
use crate::authz::Actor;
use crate::error::Result;
use crate::ledger::{Admit, Mode, OrgHandle};
use crate::model::usage::{
    CorrectedUsage, UsageCorrection, UsageEvent, UsageQuery, UsageReceipt, UsageReport,
};
use crate::ops;
use crate::ops::usage::PruneReport;
use crate::ops::Ctx;

use super::Db;

impl Db {
    /// Records usage, durable when it returns. Refused whole (nothing recorded) with
    /// `quota_exceeded` when the quota period's total would pass `monthly_requests` (when the plan
    /// makes that limit soft: its overage cap, and receipts past the limit say `over`); a repeated
    /// idempotency key is acknowledged with `duplicate: true` and counts nothing.
    ///
    /// Concurrent callers share journal syncs (group commit), so throughput grows with the
    /// number of callers.
    ///
    /// # Errors
    /// `validation_error` (`count`, `at`, `idempotency_key`, `resource_id`), `not_found`
    /// (organization, or a resource not live in it), `quota_exceeded`, `storage_error`.
    pub fn record_usage(&self, org: &str, event: &UsageEvent) -> Result<UsageReceipt> {
        self.admit_one(org, event, Mode::Durable)
    }

    /// Records many events of one organization as one unit: all counted or none. Duplicates
    /// inside the batch count once. Returns one receipt per event.
    ///
    /// # Errors
    /// As [`Db::record_usage`]; field names carry the index (`events[3].count`).
    pub fn record_usage_batch(
        &self,
        org: &str,
        events: &[UsageEvent],
    ) -> Result<Vec<UsageReceipt>> {
        let ctx = self.ctx();
        let admits = ops::usage::validate_batch(&ctx, events)?;
        self.admit(&ctx, org, &admits, Mode::Durable)
    }

    /// Admits an event in memory against the same exact quota and returns at once; it
    /// becomes durable within `Options::usage_flush_interval`, on [`Db::flush`], or when the
    /// last handle is dropped. A crash before then loses it (never half of it).
    ///
    /// # Errors
    /// As [`Db::record_usage`].
    pub fn record_usage_buffered(&self, org: &str, event: &UsageEvent) -> Result<UsageReceipt> {
        self.admit_one(org, event, Mode::Buffered)
    }

    /// Corrects one day's usage: raises or lowers the count of a resource (or the count outside
    /// any resource) on a day inside the late-event window (35 days), never below zero. The
    /// month total, reports and quota checks follow at once; a raise that crosses 80 % or
    /// 100 % of `monthly_requests` emits `usage.threshold` like usage does, and is not refused
    /// by the limit (a correction fixes the books, it is not admission). A repeated
    /// idempotency key (the same keys as usage events) changes nothing and answers
    /// `duplicate`. Audited as `usage.corrected` (date, resource, delta, before, after,
    /// reason). Owners and `Actor::System` only. Durable when it returns: on a file, in the
    /// same commit as a fold of every usage admitted before it.
    ///
    /// ```
    /// use chrono::Utc;
    /// use orgdb::{Actor, Db, NewOrganization, NewUser, UsageCorrection, UsageEvent};
    ///
    /// let db = Db::in_memory()?;
    /// let ada = db.create_user(&NewUser { email: "ada@example.com".into(), name: "Ada".into() })?;
    /// let org = db.create_organization(&ada.id, &NewOrganization {
    ///     name: "Acme".into(),
    ///     ..Default::default()
    /// })?.organization.id;
    /// db.record_usage(&org, &UsageEvent::new(10))?;
    /// let fixed = db.correct_usage(&Actor::System, &org, &UsageCorrection {
    ///     date: Utc::now().date_naive(),
    ///     resource_id: None,
    ///     delta: -4,
    ///     idempotency_key: Some("refund-17".into()),
    ///     reason: Some("retried requests counted twice".into()),
    /// })?;
    /// assert_eq!((fixed.before, fixed.after, fixed.month_total), (10, 6, 6));
    /// # Ok::<(), orgdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `forbidden` (below owner), `not_found` (organization, resource), `validation_error`
    /// (`date`, `delta` — including a count that would go below zero —, `resource_id`,
    /// `idempotency_key`, `reason`).
    pub fn correct_usage(
        &self,
        actor: &Actor,
        org: &str,
        correction: &UsageCorrection,
    ) -> Result<CorrectedUsage> {
        let ctx = self.ctx();
        let org = org.trim();
        let key = correction
            .idempotency_key
            .as_deref()
            .map(|k| (k, ctx.now.timestamp_micros()));
        self.inner
            .ledger
            .fold_and_write(&*self.inner.store, &ctx, org, key, &|tx| {
                ops::usage::correct(tx, &ctx, actor, org, correction)
            })
    }

    /// Whether `count` more requests fit in this month now, without recording anything.
    ///
    /// # Errors
    /// `quota_exceeded` when they would not fit; `validation_error`, `not_found`.
    pub fn check_quota(&self, org: &str, count: u64) -> Result<UsageReceipt> {
        ops::usage::validate_count(count)?;
        self.admit_one(org, &UsageEvent::new(count), Mode::Check)
    }

    fn admit_one(&self, org: &str, event: &UsageEvent, mode: Mode) -> Result<UsageReceipt> {
        let ctx = self.ctx();
        let admit = ops::usage::validate_one(&ctx, event)?;
        let ledger = &self.inner.ledger;
        let (receipt, wait_for) =
            ledger.admit_one(&*self.inner.store, &ctx, org.trim(), &admit, mode)?;
        ledger.wait_for(wait_for)?;
        Ok(receipt)
    }

    /// A recorder of buffered usage for one organization: the gateway's hot path.
    ///
    /// ```
    /// use orgdb::{Db, NewOrganization, NewUser};
    ///
    /// let db = Db::in_memory()?;
    /// let ada = db.create_user(&NewUser { email: "ada@example.com".into(), name: "Ada".into() })?;
    /// let org = db.create_organization(&ada.id, &NewOrganization {
    ///     name: "Acme".into(),
    ///     ..Default::default()
    /// })?;
    /// let usage = db.usage_recorder(&org.organization.id)?;
    /// let receipt = usage.record(None, 3)?;
    /// assert_eq!(receipt.used, 3);
    /// db.flush()?; // durable now (also within the flush interval, and on the last drop)
    /// # Ok::<(), orgdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `not_found` when the organization does not exist; `storage_error`.
    pub fn usage_recorder(&self, org: &str) -> Result<UsageRecorder> {
        let org = org.trim();
        let handle = self
            .inner
            .ledger
            .org_handle(&*self.inner.store, &self.ctx(), org)?;
        Ok(UsageRecorder::new(self.clone(), org.to_owned(), handle))
    }

    /// A recorder's event: admitted at once when the ledger has the organization and resource
    /// loaded, else through the general path that loads them.
    pub(crate) fn admit_recorded(
        &self,
        org: &str,
        handle: OrgHandle,
        resource: Option<&str>,
        count: u64,
    ) -> Result<UsageReceipt> {
        let now = self.inner.opts.clock.now_micros();
        let admit = Admit::keyless(resource, count, now);
        let ledger = &self.inner.ledger;
        if let Some(done) = ledger.admit_buffered(&*self.inner.store, handle, &admit) {
            return done;
        }
        let ctx = self.ctx();
        let (receipt, _) =
            ledger.admit_one(&*self.inner.store, &ctx, org, &admit, Mode::Buffered)?;
        Ok(receipt)
    }

    /// Admits a recorder's batch of events, all now and all or none (`UsageRecorder::record_many`).
    pub(crate) fn admit_recorded_many(
        &self,
        org: &str,
        events: &[(Option<&str>, u64)],
    ) -> Result<UsageReceipt> {
        let now = self.inner.opts.clock.now_micros();
        let admits = ops::usage::validate_keyless_batch(events, now)?;
        let ctx = self.ctx();
        let mut receipts = self.admit(&ctx, org, &admits, Mode::Buffered)?;
        receipts.pop().ok_or_else(crate::ledger::no_receipt)
    }

    fn admit(
        &self,
        ctx: &Ctx,
        org: &str,
        admits: &[Admit<'_>],
        mode: Mode,
    ) -> Result<Vec<UsageReceipt>> {
        let ledger = &self.inner.ledger;
        let outcome = ledger.admit(&*self.inner.store, ctx, org.trim(), admits, mode)?;
        ledger.wait(&outcome)?;
        Ok(outcome.receipts)
    }

    /// Makes every admitted usage event durable now (a checkpoint).
    ///
    /// # Errors
    /// `storage_error`.
    pub fn flush(&self) -> Result<()> {
        self.inner.checkpoint()
    }

    /// Seed 000's usage report: totals, limit, percentage, per MCP server and per day (zero
    /// days included) over a day, ISO week or month, or an explicit date range.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `validation_error` (`end_date`: before the start, or a range
    /// over 366 days).
    pub fn usage_report(
        &self,
        actor: &Actor,
        org: &str,
        query: &UsageQuery,
    ) -> Result<UsageReport> {
        let ctx = self.ctx();
        self.inner.fold_usage(&ctx)?;
        self.inner
            .store
            .read(|tx| ops::usage::report(tx, &ctx, actor, org, query))
    }

    /// Removes usage day rows before `before`, month totals that can no longer change, and
    /// idempotency keys past their 48-hour retention. Monthly totals still needed for quotas
    /// are kept.
    ///
    /// # Errors
    /// `storage_error`.
    pub fn prune_usage(&self, before: chrono::NaiveDate) -> Result<PruneReport> {
        let ctx = self.ctx();
        self.inner.fold_usage(&ctx)?;
        let (report, month, keys) = self
            .inner
            .store
            .write(|tx| ops::usage::prune(tx, &ctx, before))?;
        self.inner.ledger.forget_before(month, keys);
        Ok(report)
    }
}
