//! Quota periods: how an organization's usage quota resets, and changing it.

use serde_json::json;

use super::usage::LATE_WINDOW;
use super::{record, Ctx};
use crate::authz::{authorize, Action, Actor};
use crate::error::{Error, Result};
use crate::model::period::{BillingPeriod, QuotaPeriod};
use crate::model::time;
use crate::store::{day_number, OrgRecord, Reads, Span, Writes, USAGE_PRUNED_BEFORE};
use crate::validate::Validator;

/// The earliest and latest billing anchor taken: dates a billing system can mean.
const ANCHOR_YEARS: std::ops::RangeInclusive<i32> = 1900..=9999;

/// The organization's rule and the period that holds today.
pub(crate) fn current(ctx: &Ctx, rec: &OrgRecord) -> BillingPeriod {
    let span = Span::of(rec.period, day_number(ctx.now.date_naive()));
    let (period_start, period_end) = span.dates();
    BillingPeriod {
        rule: rec.period,
        period_start,
        period_end,
    }
}

/// `billing_period`: any member may read it.
pub(crate) fn get(tx: &dyn Reads, ctx: &Ctx, actor: &Actor, org: &str) -> Result<BillingPeriod> {
    let cleared = authorize(tx, actor, org, Action::ReadOrganization)?;
    Ok(current(ctx, &cleared.org))
}

/// `set_billing_anchor`: the operator's (`Actor::System`) alone, since it decides what is
/// billed. In the caller's transaction, which sees the organization's stored usage complete
/// (the ledger folded it first): every period total of the organization is computed again
/// from its day rows under the new rule (no count lives only in a period total, so nothing
/// is lost or counted twice), then the rule is stored. Audited as
/// `organization.quota_period_changed` with `before` and `after`; setting the rule it
/// already has changes nothing.
pub(crate) fn set(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    rule: QuotaPeriod,
) -> Result<BillingPeriod> {
    if *actor != Actor::System {
        return Err(Error::forbidden());
    }
    let cleared = authorize(tx, actor, org, Action::ChangePlan)?;
    if let QuotaPeriod::Anchored { anchor } = rule {
        let mut v = Validator::new();
        if !ANCHOR_YEARS.contains(&chrono::Datelike::year(&anchor)) {
            v.fail("anchor", "Must be a date from 1900 to 9999");
        }
        v.finish()?;
    }
    let old = cleared.org;
    if old.period == rule {
        return Ok(current(ctx, &old));
    }
    // Every day row, read before the prune mark: a prune that commits between the two reads
    // (another process, on a shared backend) is then seen by the mark, so the rows are never
    // taken as complete after it removed some.
    let first = day_number(chrono::NaiveDate::MIN);
    let last = day_number(chrono::NaiveDate::MAX);
    let rows = tx.day_rows(org, first, last)?;
    // Day rows before the mark may be gone: a period of the new rule that starts before it
    // cannot be computed again. One that can still change (late events reach back
    // `LATE_WINDOW`) refuses the rule; a closed one keeps the total of the days that remain
    // (its quota no longer matters). An organization created on or after the mark lost
    // nothing to it.
    let created = day_number(old.org.created_at.date_naive());
    let pruned = match tx.meta_u64(USAGE_PRUNED_BEFORE)? {
        Some(mark) => u32::try_from(mark).unwrap_or(u32::MAX),
        None => 0,
    };
    let oldest_open = day_number(time::minus(ctx.now, LATE_WINDOW).date_naive());
    let open = Span::of(rule, oldest_open);
    if open.start < pruned && created < pruned {
        let (period_start, _) = open.dates();
        let (pruned_before, _) = Span {
            start: pruned,
            end: pruned,
        }
        .dates();
        return Err(Error::Conflict {
            message: format!(
                "Usage before {pruned_before} was pruned: the new rule's period from \
                 {period_start} cannot be counted"
            ),
            details: crate::error::Details::from([
                ("pruned_before".to_owned(), pruned_before.to_string().into()),
                ("period_start".to_owned(), period_start.to_string().into()),
            ]),
        });
    }
    let mut totals: Vec<(Span, u64)> = Vec::new();
    for (day, row) in rows {
        let span = Span::of(rule, day);
        match totals.last_mut() {
            Some((s, total)) if *s == span => *total = total.saturating_add(row.total),
            _ => totals.push((span, row.total)),
        }
    }
    tx.replace_period_totals(org, &totals)?;
    // Other processes' leases count against today's period of the new rule, where what they
    // admitted will be stored (a lease's own sync then sees the new rule and returns it).
    tx.move_leases(org, Span::of(rule, day_number(ctx.now.date_naive())).start)?;
    let new = OrgRecord {
        period: rule,
        ..old.clone()
    };
    tx.replace_org(&old, &new)?;
    let details = json!({ "before": old.period, "after": rule });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "organization.quota_period_changed",
        org,
        details,
    )?;
    Ok(current(ctx, &new))
}
