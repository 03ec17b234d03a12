//! Usage: event validation, the report, pruning. Counting itself is the ledger's.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde_json::json;

use super::{record, Ctx};
use crate::authz::{authorize, Action, Actor};
use crate::error::{Error, Result};
use crate::ledger::{day_of, Admit, PeriodGrowth, Quota, UsageEnv, KEY_RETENTION};
use crate::model::period::QuotaPeriod;
use crate::model::resource::ResourceKind;
use crate::model::time;
use crate::model::usage::{
    ApiKeyUsage, CorrectedUsage, DayUsage, Period, RequestTotals, ResourceUsage, UsageCorrection,
    UsageEvent, UsageQuery, UsageReport,
};
use crate::store::{day_number, AlertFired, OrgRecord, Reads, Writes};
use crate::validate::Validator;

/// Largest count of one event: 2^53, the largest integer JSON carries exactly.
pub(crate) const COUNT_MAX: u64 = 1 << 53;
/// How far ahead of the clock an event may be.
pub(crate) const FUTURE_SLACK: TimeDelta = TimeDelta::minutes(5);
/// How late an event may arrive.
pub(crate) const LATE_WINDOW: TimeDelta = TimeDelta::days(35);
/// Largest batch.
pub(crate) const BATCH_MAX: usize = 10_000;
/// Longest report range.
pub(crate) const RANGE_MAX_DAYS: i64 = 366;
const KEY_MAX: usize = 255;

/// Validates one event; field names get `prefix` (`events[3].`) in batches.
fn validate_event<'a>(
    validator: &mut Validator,
    ctx: &Ctx,
    prefix: &str,
    e: &'a UsageEvent,
) -> Admit<'a> {
    check_count(validator, prefix, e.count);
    // Most events carry no time: they are now, and inside the window by definition.
    let at = match e.at {
        None => ctx.now,
        Some(at) => {
            let at = time::truncate(at);
            if at > time::plus(ctx.now, FUTURE_SLACK) {
                validator.fail(
                    &format!("{prefix}at"),
                    "Must be at most 5 minutes ahead of now",
                );
            } else if at < time::minus(ctx.now, LATE_WINDOW) {
                validator.fail(&format!("{prefix}at"), "Must be at most 35 days ago");
            }
            at
        }
    };
    if let Some(k) = &e.idempotency_key {
        let len = k.chars().count();
        if len == 0 || len > KEY_MAX || k.chars().any(char::is_control) {
            validator.token_text(&format!("{prefix}idempotency_key"), k, KEY_MAX);
        }
    }
    let resource = check_resource(validator, prefix, e.resource_id.as_deref());
    Admit {
        resource,
        count: e.count,
        day: day_of(at),
        key: e.idempotency_key.as_deref(),
        at_micros: ctx.now.timestamp_micros(),
    }
}

pub(crate) fn validate_one<'a>(ctx: &Ctx, e: &'a UsageEvent) -> Result<Admit<'a>> {
    let mut validator = Validator::new();
    let admit = validate_event(&mut validator, ctx, "", e);
    validator.finish()?;
    Ok(admit)
}

fn check_count(validator: &mut Validator, prefix: &str, count: u64) {
    if count == 0 || count > COUNT_MAX {
        validator.fail(&format!("{prefix}count"), "Must be between 1 and 2^53");
    }
}

/// The resource id trimmed; an empty one fails.
fn check_resource<'a>(
    validator: &mut Validator,
    prefix: &str,
    id: Option<&'a str>,
) -> Option<&'a str> {
    let resource = id.map(str::trim);
    if resource == Some("") {
        validator.fail(&format!("{prefix}resource_id"), "Must not be empty");
    }
    resource
}

fn check_batch_size(validator: &mut Validator, len: usize) {
    if len == 0 || len > BATCH_MAX {
        validator.fail("events", format!("Must hold 1 to {BATCH_MAX} events"));
    }
}

/// Validates a recorder's batch (`UsageRecorder::record_many`): events without keys, all at
/// `now_micros`, by the rules `validate_batch` applies to what they carry.
pub(crate) fn validate_keyless_batch<'a>(
    events: &[(Option<&'a str>, u64)],
    now_micros: i64,
) -> Result<Vec<Admit<'a>>> {
    let mut validator = Validator::new();
    check_batch_size(&mut validator, events.len());
    let admits = events
        .iter()
        .enumerate()
        .map(|(i, &(resource, count))| {
            let prefix = format!("events[{i}].");
            check_count(&mut validator, &prefix, count);
            let resource = check_resource(&mut validator, &prefix, resource);
            Admit::keyless(resource, count, now_micros)
        })
        .collect();
    validator.finish()?;
    Ok(admits)
}

pub(crate) fn validate_batch<'a>(ctx: &Ctx, events: &'a [UsageEvent]) -> Result<Vec<Admit<'a>>> {
    let mut validator = Validator::new();
    check_batch_size(&mut validator, events.len());
    let admits = events
        .iter()
        .enumerate()
        .map(|(i, e)| validate_event(&mut validator, ctx, &format!("events[{i}]."), e))
        .collect();
    validator.finish()?;
    Ok(admits)
}

pub(crate) fn validate_count(count: u64) -> Result<()> {
    if count == 0 || count > COUNT_MAX {
        return Err(Error::invalid("count", "Must be between 1 and 2^53"));
    }
    Ok(())
}

/// The first and last day of a report and its period label; `rule` is the organization's
/// quota period, the default.
fn range(ctx: &Ctx, q: &UsageQuery, rule: QuotaPeriod) -> Result<(Period, NaiveDate, NaiveDate)> {
    let period = q.period.unwrap_or(match rule {
        QuotaPeriod::CalendarMonth => Period::Month,
        _ => Period::Billing,
    });
    // Checked calendar arithmetic: a date at the edge of the calendar has no whole week or
    // month around it.
    let around = |d: NaiveDate| -> Option<(NaiveDate, NaiveDate)> {
        match period {
            Period::Day => QuotaPeriod::Day.span(d),
            Period::Week => QuotaPeriod::Week.span(d),
            Period::Month => QuotaPeriod::CalendarMonth.span(d),
            Period::Year => QuotaPeriod::Year.span(d),
            Period::Billing => rule.span(d),
        }
    };
    let out_of_range = |field: &str| Error::invalid(field, "Is out of the supported range");
    let (first, last) = match (q.start_date, q.end_date) {
        (Some(s), Some(e)) => (s, e),
        (Some(d), None) => around(d).ok_or_else(|| out_of_range("start_date"))?,
        (None, Some(d)) => around(d).ok_or_else(|| out_of_range("end_date"))?,
        (None, None) => around(ctx.now.date_naive()).ok_or_else(|| out_of_range("start_date"))?,
    };
    let mut validator = Validator::new();
    if last < first {
        validator.fail("end_date", "Must not be before start_date");
    } else if (last - first).num_days() + 1 > RANGE_MAX_DAYS {
        validator.fail(
            "end_date",
            format!("The range must be at most {RANGE_MAX_DAYS} days"),
        );
    }
    validator.finish()?;
    Ok((period, first, last))
}

fn day_start(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(NaiveTime::MIN).and_utc()
}

pub(crate) fn report(
    tx: &dyn Reads,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    q: &UsageQuery,
) -> Result<UsageReport> {
    let cleared = authorize(tx, actor, org, Action::ReadOrganization)?;
    let (period, first, last) = range(ctx, q, cleared.org.period)?;
    let rows = tx.day_rows(org, day_number(first), day_number(last))?;

    let mut total = 0u64;
    let mut by_column: Vec<u64> = Vec::new();
    for (_, row) in &rows {
        total = total.saturating_add(row.total);
        if by_column.len() < row.columns.len() {
            by_column.resize(row.columns.len(), 0);
        }
        for (sum, n) in by_column.iter_mut().zip(&row.columns) {
            *sum = sum.saturating_add(*n);
        }
    }
    let by_mcp = by_resource(tx, org, ResourceKind::Mcp, &by_column)?
        .into_iter()
        .map(|(mcp_id, name, requests)| ResourceUsage {
            mcp_id,
            name,
            requests,
        })
        .collect();
    let by_api_key = by_resource(tx, org, ResourceKind::ApiKey, &by_column)?
        .into_iter()
        .map(|(api_key_id, name, requests)| ApiKeyUsage {
            api_key_id,
            name,
            requests,
        })
        .collect();

    let mut by_day = Vec::with_capacity(rows.len().max(31));
    let mut rows = rows.into_iter().peekable();
    let mut day = first;
    while day <= last {
        let n = day_number(day);
        let requests = match rows.peek() {
            Some((d, row)) if *d == n => {
                let r = row.total;
                rows.next();
                r
            }
            _ => 0,
        };
        by_day.push(DayUsage {
            date: day,
            requests,
        });
        day = match day.succ_opt() {
            Some(d) => d,
            None => break,
        };
    }

    let limit = super::limits(ctx, &cleared.org).monthly_requests;
    let percentage = limit
        .filter(|l| *l > 0)
        .map(|l| (u128::from(total) * 100 / u128::from(l)) as u64);
    Ok(UsageReport {
        period,
        start_date: day_start(first),
        end_date: time::plus(day_start(last), TimeDelta::seconds(86_399)),
        requests: RequestTotals {
            total,
            limit,
            percentage,
        },
        by_mcp,
        by_api_key,
        by_day,
    })
}

/// (id, name, requests) of every resource of `kind` with requests in `by_column` (the summed
/// day rows), most used first; removed resources keep their names.
fn by_resource(
    tx: &dyn Reads,
    org: &str,
    kind: ResourceKind,
    by_column: &[u64],
) -> Result<Vec<(String, String, u64)>> {
    let mut rows = Vec::new();
    if !by_column.iter().any(|n| *n > 0) {
        return Ok(rows);
    }
    for rec in tx.resources_of_org(org, Some(kind), true)? {
        let requests = by_column.get(rec.column as usize).copied().unwrap_or(0);
        if requests > 0 {
            rows.push((rec.resource.id, rec.resource.name, requests));
        }
    }
    rows.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    Ok(rows)
}

/// What `prune_usage` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Day rows (one per organization and day) removed.
    pub day_rows: u64,
    /// Quota period totals removed (named when periods were months).
    pub month_rows: u64,
    /// Idempotency keys older than the retention removed.
    pub idempotency_keys: u64,
}

/// Removes day rows before `before`, period totals of periods that ended before it and can no
/// longer receive late events, and idempotency keys past their retention. Returns the report,
/// the day number periods must end on or after to stay, and the key cutoff.
pub(crate) fn prune(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    before: NaiveDate,
) -> Result<(PruneReport, u32, i64)> {
    let oldest_open = time::minus(ctx.now, LATE_WINDOW).date_naive();
    let period_cutoff = day_number(before.min(oldest_open));
    let key_cutoff = time::minus(ctx.now, KEY_RETENTION).timestamp_micros();
    let (day_rows, month_rows, idempotency_keys) =
        tx.prune_usage_rows(day_number(before), period_cutoff, key_cutoff)?;
    tx.raise_pruned_mark(before)?;
    let report = PruneReport {
        day_rows,
        month_rows,
        idempotency_keys,
    };
    let details = json!({ "before": before.to_string(), "removed": report });
    record(tx, ctx, "system", None, "usage.pruned", "usage", details)?;
    Ok((report, period_cutoff, key_cutoff))
}

/// The ledger's view of the operations: the call's time, the plan rule for limits, and the
/// threshold events a fold appends.
impl UsageEnv for Ctx<'_> {
    fn now(&self) -> DateTime<Utc> {
        self.now
    }

    fn quota(&self, org: &OrgRecord) -> Quota {
        Quota {
            limit: super::limits(self, org).monthly_requests,
            ceiling: super::ceilings(self, org).monthly_requests,
            period: org.period,
            alerts: crate::ledger::Thresholds::of(org.alerts.as_deref()),
        }
    }

    /// One `usage.threshold` audit event per alert threshold of the organization that the
    /// period's new total has reached (`after >= mark`) and that was not announced yet in this
    /// period under this limit (`usage_alert_state`). Level, not edge: a threshold added below
    /// the total, a limit lowered under it, or a change of rule that recomputed the total is
    /// announced by the next growth; a total lowered by a correction and raised again
    /// announces nothing twice. The state is read only when a mark is reached. A limit of 0
    /// has no thresholds.
    fn period_total_grew(&self, tx: &mut dyn Writes, growth: &PeriodGrowth<'_>) -> Result<()> {
        let Some(limit) = growth.quota.limit else {
            return Ok(());
        };
        let reached: Vec<u32> = growth.quota.alerts_reached(growth.after).collect();
        if reached.is_empty() {
            return Ok(());
        }
        let fired = tx.alerts_fired(growth.org, growth.span)?;
        for percent in reached {
            if fired
                .iter()
                .any(|f| f.percent == percent && f.limit == limit)
            {
                continue;
            }
            tx.put_alert_fired(
                growth.org,
                &AlertFired {
                    span: growth.span,
                    percent,
                    limit,
                },
            )?;
            let details = threshold_details(growth, u64::from(percent), limit);
            record(
                tx,
                self,
                "system",
                Some(growth.org),
                "usage.threshold",
                growth.org,
                details,
            )?;
        }
        Ok(())
    }
}

/// A `usage.threshold` event's details: the period (and, for a calendar month, `month` as
/// `YYYY-MM`, as before quota periods), the threshold, the total and the limit.
fn threshold_details(growth: &PeriodGrowth<'_>, percent: u64, limit: u64) -> serde_json::Value {
    let (start, end) = growth.span.dates();
    let mut details = json!({
        "period_start": start.to_string(), "period_end": end.to_string(),
        "threshold_percent": percent, "used": growth.after, "limit": limit,
    });
    if crate::model::period::QuotaPeriod::CalendarMonth.span(start) == Some((start, end)) {
        details["month"] = json!(start.format("%Y-%m").to_string());
    }
    details
}

/// Validates a usage correction (before any read): the day inside the late-event window and
/// not after today, a delta other than 0 within ±2^53, the key and the reason. Returns the
/// day number.
pub(crate) fn validate_correction(ctx: &Ctx, c: &UsageCorrection) -> Result<u32> {
    let mut validator = Validator::new();
    let today = ctx.now.date_naive();
    let oldest = time::minus(ctx.now, LATE_WINDOW).date_naive();
    if c.date > today {
        validator.fail("date", "Must not be after today");
    } else if c.date < oldest {
        validator.fail("date", "Must be at most 35 days ago");
    }
    if c.delta == 0 || c.delta.unsigned_abs() > COUNT_MAX {
        validator.fail("delta", "Must be between -2^53 and 2^53, not 0");
    }
    if let Some(k) = &c.idempotency_key {
        validator.token_text("idempotency_key", k, KEY_MAX);
    }
    if c.resource_id.as_deref().map(str::trim) == Some("") {
        validator.fail("resource_id", "Must not be empty");
    }
    validator.text("reason", c.reason.as_deref(), REASON_MAX);
    validator.finish()?;
    Ok(day_number(c.date))
}

/// Longest correction reason.
const REASON_MAX: usize = 1_000;

/// A usage correction, in the caller's transaction, which sees the organization's stored
/// usage complete (the ledger folded it first): raises or lowers one day's count, of a
/// resource or outside any, never below zero; the period total follows (and its thresholds);
/// the key is remembered like an event's; audited as `usage.corrected`. Owners and
/// `Actor::System` only: it changes what is billed.
pub(crate) fn correct(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    c: &UsageCorrection,
) -> Result<CorrectedUsage> {
    let cleared = authorize(tx, actor, org, Action::ChangePlan)?;
    let day = validate_correction(ctx, c)?;
    let span = crate::store::Span::of(cleared.org.period, day);
    let resource = c.resource_id.as_deref().map(str::trim);
    let keys: Vec<&str> = c.idempotency_key.as_deref().into_iter().collect();
    let resources: Vec<&str> = resource.into_iter().collect();
    let state = tx.usage_state(
        org,
        &crate::store::UsageAsk {
            periods: &[span.start],
            leases: false,
            except_holder: None,
            now_micros: ctx.now.timestamp_micros(),
            keys: &keys,
            resources: &resources,
        },
    )?;
    let column = match resource {
        Some(_) => Some(
            state
                .columns
                .first()
                .and_then(|(_, col)| *col)
                .ok_or_else(|| Error::not_found("Resource"))?,
        ),
        None => None,
    };
    let mut row = tx.day_row(org, day)?.unwrap_or_default();
    let count_of = |row: &crate::store::DayRow| match column {
        Some(col) => row.columns.get(col as usize).copied().unwrap_or(0),
        // Outside any resource: what no column accounts for.
        None => row.total.saturating_sub(row.columns.iter().sum::<u64>()),
    };
    let before = count_of(&row);
    let period_before = state.periods.first().map_or(0, |m| m.1);
    let outcome = |after: u64, month_total: u64, duplicate: bool| CorrectedUsage {
        date: c.date,
        resource_id: resource.map(str::to_owned),
        before,
        after,
        month_total,
        duplicate,
    };
    if !state.keys.is_empty() {
        return Ok(outcome(before, period_before, true));
    }
    let magnitude = c.delta.unsigned_abs();
    let (after, period_after) = if c.delta > 0 {
        (
            before.saturating_add(magnitude),
            period_before.saturating_add(magnitude),
        )
    } else {
        if magnitude > before {
            return Err(Error::invalid(
                "delta",
                format!("Would take the day's count below zero (it is {before})"),
            ));
        }
        (before - magnitude, period_before.saturating_sub(magnitude))
    };
    row.total = if c.delta > 0 {
        row.total.saturating_add(magnitude)
    } else {
        row.total.saturating_sub(magnitude)
    };
    if let Some(col) = column {
        let i = col as usize;
        if row.columns.len() <= i {
            row.columns.resize(i + 1, 0);
        }
        row.columns[i] = after;
    }
    tx.put_day_row(org, day, &row)?;
    tx.put_period_usage(org, span, period_after)?;
    if let Some(k) = &c.idempotency_key {
        tx.put_idempotency(org, k, ctx.now.timestamp_micros())?;
    }
    if period_after > period_before {
        ctx.period_total_grew(
            tx,
            &PeriodGrowth {
                org,
                span,
                after: period_after,
                quota: ctx.quota(&cleared.org),
            },
        )?;
    }
    let details = json!({
        "date": c.date.to_string(),
        "resource_id": resource,
        "delta": c.delta,
        "before": before,
        "after": after,
        "month_total": period_after,
        "reason": c.reason,
    });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "usage.corrected",
        resource.unwrap_or(org),
        details,
    )?;
    Ok(outcome(after, period_after, false))
}
