//! Usage reservations: quota held before an expensive call (`reserve_usage`) and settled after
//! it with the real count (`commit_reservation`) or given back (`release_reservation`).
//!
//! Each runs in one transaction after the ledger folded every admitted change
//! (`Ledger::fold_and_write`; on a shared backend, a usage transaction of the organization),
//! so the stored totals it reads are complete; the ledger reads the organization's live holds
//! again at its next admission. A live hold counts against every period of the organization
//! (what a commit records lands on the commit's day, whatever period the hold was made in).

use crate::error::{Error, Result};
use crate::ledger::{PeriodGrowth, UsageEnv, KEY_RETENTION};
use crate::model::reservation::{NewReservation, Reservation, RESERVATION_TTL_RANGE};
use crate::model::usage::UsageReceipt;
use crate::store::{day_number, DayRow, OrgRecord, Span, UsageAsk, Writes};
use crate::validate::Validator;

use super::usage::COUNT_MAX;
use super::Ctx;

/// The organization, or `not_found`.
fn org_record(tx: &dyn Writes, org: &str) -> Result<OrgRecord> {
    tx.org(org)?.ok_or_else(|| Error::not_found("Organization"))
}

/// Today's period's stored total and what live leases and reservations hold, and whether
/// `key` is a stored idempotency key.
fn standing(
    tx: &dyn Writes,
    ctx: &Ctx,
    org: &str,
    span: Span,
    key: &str,
) -> Result<(u64, u64, bool)> {
    let keys = [key];
    let state = tx.usage_state(
        org,
        &UsageAsk {
            periods: &[span.start],
            leases: true,
            except_holder: None,
            now_micros: ctx.now.timestamp_micros(),
            keys: if key.is_empty() { &[] } else { &keys },
            resources: &[],
        },
    )?;
    let (stored, held) = state
        .periods
        .first()
        .map_or((0, 0), |&(_, stored, held)| (stored, held));
    Ok((stored, held, !state.keys.is_empty()))
}

/// A live resource's usage column, or `not_found`.
fn column_of(tx: &dyn Writes, org: &str, id: &str) -> Result<u32> {
    tx.live_resource_column(org, id)?
        .ok_or_else(|| Error::not_found("Resource"))
}

/// `reserve_usage`: holds `count` of today's quota, refused whole with `quota_exceeded` when
/// the period's total plus what live leases and reservations hold would pass the bound.
/// Expired reservations of the organization are removed on the way.
pub(crate) fn reserve(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    org: &str,
    new: &NewReservation,
) -> Result<Reservation> {
    let mut v = Validator::new();
    if !(1..=COUNT_MAX).contains(&new.count) {
        v.fail("count", "Must be between 1 and 2^53");
    }
    let ttl = new.expires_in.unwrap_or(ctx.opts.reservation_ttl);
    if !RESERVATION_TTL_RANGE.contains(&ttl) {
        v.fail("expires_in", "Must be between 1 second and 1 day");
    }
    if new
        .resource_id
        .as_deref()
        .is_some_and(|r| r.trim().is_empty())
    {
        v.fail("resource_id", "Must not be empty");
    }
    v.finish()?;
    let rec = org_record(tx, org)?;
    let resource = new.resource_id.as_deref().map(str::trim);
    if let Some(id) = resource {
        column_of(tx, org, id)?;
    }
    // Expired holds count for nothing; they are kept for the keys' retention, so a late
    // commit of one still records its usage (against the quota) rather than `not_found`.
    let stale = crate::model::time::minus(ctx.now, KEY_RETENTION);
    for old in tx.reservations(org)? {
        if old.expires_at <= stale {
            tx.delete_reservation(org, &old.id)?;
        }
    }
    let quota = ctx.quota(&rec);
    let span = quota.span(day_number(ctx.now.date_naive()));
    let (stored, held, _) = standing(tx, ctx, org, span, "")?;
    quota.admit(stored.saturating_add(held), new.count)?;
    let (period_start, period_end) = span.dates();
    let expires_at = crate::model::time::plus(
        ctx.now,
        chrono::TimeDelta::from_std(ttl).map_err(|_| Error::invalid("expires_in", "Too long"))?,
    );
    let reservation = Reservation {
        id: ctx.id("rsv"),
        organization_id: org.to_owned(),
        count: new.count,
        resource_id: resource.map(str::to_owned),
        created_at: ctx.now,
        expires_at,
        period_start,
        period_end,
    };
    tx.put_reservation(&reservation)?;
    Ok(reservation)
}

/// `commit_reservation`: records `actual` as usage of today (with the reservation's resource,
/// while it lives) and frees the hold, in one transaction. Up to the hold it is admitted
/// whatever the limit now says; beyond it, only as far as the quota allows (`quota_exceeded`
/// changes nothing). A hold that expired, or that was made in another period than today's,
/// protects nothing: all of `actual` is admitted against the quota. The reservation's id is the usage's idempotency key, so a repeated
/// commit answers `duplicate` (for the keys' 48 hours); an unknown or released id is
/// `not_found`.
pub(crate) fn commit(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    org: &str,
    id: &str,
    actual: u64,
) -> Result<UsageReceipt> {
    if actual > COUNT_MAX {
        return Err(Error::invalid("actual", "Must be at most 2^53"));
    }
    let rec = org_record(tx, org)?;
    let quota = ctx.quota(&rec);
    let today = day_number(ctx.now.date_naive());
    let span = quota.span(today);
    let Some(r) = tx.reservation(org, id)? else {
        let (stored, _, settled) = standing(tx, ctx, org, span, id)?;
        if settled {
            return Ok(quota.receipt(true, stored, span));
        }
        return Err(Error::not_found("Reservation"));
    };
    tx.delete_reservation(org, id)?;
    // The others' holds, this one gone.
    let (stored, others, _) = standing(tx, ctx, org, span, "")?;
    // The hold protects the period it was checked against, while it lives: committed in
    // another period (the clock passed its end, or the rule changed), all of `actual` must
    // fit there.
    let covered = if r.expires_at > ctx.now && r.period_start == span.dates().0 {
        r.count
    } else {
        0
    };
    if actual > covered {
        quota.admit(
            stored.saturating_add(others).saturating_add(covered),
            actual - covered,
        )?;
    }
    let column = match r.resource_id.as_deref() {
        // A resource removed since the reservation counts outside any resource; any other
        // failure (the connection) fails the commit.
        Some(res) => match column_of(tx, org, res) {
            Ok(column) => Some(column),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let after = stored.saturating_add(actual);
    let mut row = DayRow::default();
    let keys = [(id.to_owned(), ctx.now.timestamp_micros())];
    if actual > 0 {
        row.add(column, actual);
        tx.apply_usage(org, &[(span, after)], &[(today, &row)], &keys)?;
        ctx.period_total_grew(
            tx,
            &PeriodGrowth {
                org,
                span,
                after,
                quota,
            },
        )?;
    } else {
        tx.apply_usage(org, &[], &[], &keys)?;
    }
    Ok(quota.receipt(false, after, span))
}

/// `release_reservation`: gives the hold back. Whether a live hold was freed (an unknown,
/// settled or expired reservation frees nothing).
pub(crate) fn release(tx: &mut dyn Writes, ctx: &Ctx, org: &str, id: &str) -> Result<bool> {
    org_record(tx, org)?;
    match tx.reservation(org, id)? {
        Some(r) => {
            tx.delete_reservation(org, id)?;
            Ok(r.expires_at > ctx.now)
        }
        None => Ok(false),
    }
}
