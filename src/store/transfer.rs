//! Export and import of a whole database as [`Record`]s.
//!
//! Export walks every table in key order, so two databases with the same content export the
//! same lines. Import writes through the typed writers (so every index and counter is rebuilt,
//! not copied) and refuses records that reference something not imported before them.
//!
//! Audit events keep their numbers, except when the export numbers them per organization
//! (PostgreSQL's feeds, said by the header's `audit_feeds`) and the target has one feed for
//! the whole database (the embedded backend): then every event is renumbered 1, 2, 3… in the
//! order the export lists them, which keeps each feed's own order.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;

use super::codec;
use super::keys::KeyReader;
use super::records::Stored;
use super::{
    day_from_number, day_number, schema, AlertFired, DayRow, InvitationRecord, KvRead, OrgRecord,
    Reads, ResourceRecord, Span, Table, Writes,
};
use crate::error::{Error, Result};
use crate::ids;
use crate::model::alert::{valid_thresholds, THRESHOLDS_MAX, THRESHOLD_PERCENT_MAX};
use crate::model::audit::AuditEvent;
use crate::model::entitlement::{valid_name, EntitlementValue, LIMIT_MAX, SEED_LIMITS};
use crate::model::membership::Membership;
use crate::model::period::QuotaPeriod;
use crate::model::project::{Project, ProjectMembership};
use crate::model::reservation::Reservation;
use crate::model::transfer::{AuditFeeds, Record};
use crate::model::user::User;

fn each<T: Stored, R: KvRead + ?Sized>(
    tx: &R,
    table: Table,
    mut f: impl FnMut(&[u8], T) -> Result<()>,
) -> Result<()> {
    tx.scan(table, &[], None, false, &mut |k, v| {
        f(k, T::decode(v)?)?;
        Ok(true)
    })
}

fn bad_key(table: Table) -> Error {
    Error::corrupted(format!("bad key in {}", table.name()))
}

/// (org, number) keys of the usage tables.
fn org_and_number(table: Table, key: &[u8]) -> Result<(String, u32)> {
    let mut r = KeyReader::new(key);
    let org = r.str().ok_or_else(|| bad_key(table))?.to_owned();
    let rest = key.get(org.len() + 1..).ok_or_else(|| bad_key(table))?;
    let n = rest
        .try_into()
        .map(u32::from_be_bytes)
        .map_err(|_| bad_key(table))?;
    Ok((org, n))
}

/// The version of the export format, written in its header. It describes records, not the
/// storage layout, so it changes only when a record's shape does: storage version 2 (the
/// pending index carrying expiries) still wrote version 1 exports.
///
/// - 2: memberships carry `status` and `deactivated_at` (member deactivation). A version-1
///   export imports as it is (its memberships are active); a version-2 export is refused by
///   an orgdb that would import its deactivated members as active ones.
/// - 3: `entitlement_override` records (an organization's overrides of named limits and
///   features), after the organizations. Older exports have none; an orgdb that would drop
///   them refuses a version-3 export.
/// - 4: quota periods. An organization carries `quota_period` (when not the calendar month)
///   and usage totals are `usage_period` records (first and last day) instead of
///   `usage_month`; older exports' `usage_month` records import as calendar months.
/// - 5: usage alerts. An organization carries `usage_alerts` (its thresholds, when not the
///   defaults), and `usage_alert_fired` records name each announcement (period, threshold,
///   limit), `reservation` records the live usage reservations; the header may carry
///   `usage_pruned_before`. Older exports have none.
pub(crate) const EXPORT_VERSION: u32 = 5;

/// Visits every record of the database, header first.
pub(crate) fn export<R: KvRead + ?Sized>(
    tx: &R,
    visit: &mut dyn FnMut(Record) -> Result<()>,
) -> Result<u64> {
    let mut n = 0u64;
    let mut out = |r: Record| -> Result<()> {
        n += 1;
        visit(r)
    };
    out(Record::Header {
        schema_version: EXPORT_VERSION,
        audit_seq: tx.meta_u64(schema::AUDIT_SEQ)?.unwrap_or(0),
        audit_feeds: AuditFeeds::Global,
        usage_pruned_before: pruned_before(tx.meta_u64(super::USAGE_PRUNED_BEFORE)?),
    })?;
    each(tx, Table::Users, |_, u: User| out(Record::User(u)))?;
    each(tx, Table::Orgs, |_, o: OrgRecord| {
        out(Record::Organization {
            organization: Box::new(o.org),
            limit_overrides: o.overrides,
            quota_period: o.period,
            usage_alerts: o.alerts,
        })
    })?;
    each(
        tx,
        Table::EntitlementOverrides,
        |k, value: EntitlementValue| {
            let mut r = KeyReader::new(k);
            let (Some(organization_id), Some(name)) = (r.str(), r.str()) else {
                return Err(bad_key(Table::EntitlementOverrides));
            };
            out(Record::EntitlementOverride {
                organization_id: organization_id.to_owned(),
                name: name.to_owned(),
                value,
            })
        },
    )?;
    each(tx, Table::Memberships, |_, m: Membership| {
        out(Record::Membership(m))
    })?;
    each(tx, Table::Projects, |_, p: Project| out(Record::Project(p)))?;
    each(tx, Table::ProjectMembers, |_, pm: ProjectMembership| {
        out(Record::ProjectMember(pm))
    })?;
    let mut column_ids: HashMap<(String, u32), String> = HashMap::new();
    each(tx, Table::Resources, |_, r: ResourceRecord| {
        column_ids.insert(
            (r.resource.organization_id.clone(), r.column),
            r.resource.id.clone(),
        );
        out(Record::Resource(r.resource))
    })?;
    each(tx, Table::Invitations, |_, i: InvitationRecord| {
        out(Record::Invitation {
            invitation: i.invitation,
            lifetime_secs: i.lifetime_secs,
        })
    })?;
    let mut periods = Vec::new();
    tx.scan(Table::UsagePeriod, &[], None, false, &mut |k, v| {
        let (org, start) = org_and_number(Table::UsagePeriod, k)?;
        periods.push((org, start, codec::decode_u64(v)?));
        Ok(true)
    })?;
    let mut rules: HashMap<String, QuotaPeriod> = HashMap::new();
    for (organization_id, start, total) in periods {
        if !rules.contains_key(&organization_id) {
            let rule = tx
                .org(&organization_id)?
                .map(|r| r.period)
                .unwrap_or_default();
            rules.insert(organization_id.clone(), rule);
        }
        let span = Span::of(rules[&organization_id], start);
        let (period_start, period_end) = span.dates();
        out(Record::UsagePeriod {
            organization_id,
            period_start,
            period_end,
            total,
        })?;
    }
    each(tx, Table::Reservations, |_, r: Reservation| {
        out(Record::Reservation(r))
    })?;
    let mut fired = Vec::new();
    tx.scan(Table::AlertState, &[], None, false, &mut |k, v| {
        let mut r = KeyReader::new(k);
        let bad = || bad_key(Table::AlertState);
        let org = r.str().ok_or_else(bad)?.to_owned();
        let (start, end, percent) = (
            r.u32().ok_or_else(bad)?,
            r.u32().ok_or_else(bad)?,
            r.u32().ok_or_else(bad)?,
        );
        fired.push((org, Span { start, end }, percent, codec::decode_u64(v)?));
        Ok(true)
    })?;
    for (organization_id, span, threshold_percent, limit) in fired {
        let (period_start, period_end) = (
            day_from_number(span.start).ok_or_else(|| bad_key(Table::AlertState))?,
            day_from_number(span.end).ok_or_else(|| bad_key(Table::AlertState))?,
        );
        out(Record::UsageAlertFired {
            organization_id,
            period_start,
            period_end,
            threshold_percent,
            limit,
        })?;
    }
    let mut days = Vec::new();
    tx.scan(Table::UsageDay, &[], None, false, &mut |k, v| {
        let (org, day) = org_and_number(Table::UsageDay, k)?;
        days.push((org, day, DayRow::decode(v)?));
        Ok(true)
    })?;
    for (organization_id, day, row) in days {
        let date = day_from_number(day).ok_or_else(|| bad_key(Table::UsageDay))?;
        out(day_record(&column_ids, organization_id, date, &row)?)?;
    }
    let mut keys = Vec::new();
    tx.scan(Table::Idempotency, &[], None, false, &mut |k, v| {
        let mut r = KeyReader::new(k);
        let org = r
            .str()
            .ok_or_else(|| bad_key(Table::Idempotency))?
            .to_owned();
        let key = r
            .str()
            .ok_or_else(|| bad_key(Table::Idempotency))?
            .to_owned();
        keys.push((org, key, codec::decode_u64(v)? as i64));
        Ok(true)
    })?;
    for (organization_id, key, at) in keys {
        let recorded_at = crate::model::time::from_micros(at)
            .ok_or_else(|| Error::corrupted("idempotency time out of range"))?;
        out(Record::IdempotencyKey {
            organization_id,
            key,
            recorded_at,
        })?;
    }
    each(tx, Table::Audit, |_, e: AuditEvent| {
        out(Record::AuditEvent(e))
    })?;
    Ok(n)
}

/// An organization's day row as exported: its resources named by id, not by column.
/// `column_ids` maps (organization, column) to the resource that holds the column.
pub(crate) fn day_record(
    column_ids: &HashMap<(String, u32), String>,
    organization_id: String,
    date: chrono::NaiveDate,
    row: &DayRow,
) -> Result<Record> {
    let mut by_resource = BTreeMap::new();
    for (column, count) in row.columns.iter().enumerate() {
        if *count > 0 {
            let id = column_ids
                .get(&(organization_id.clone(), column as u32))
                .ok_or_else(|| Error::corrupted("usage row names an unknown resource column"))?;
            by_resource.insert(id.clone(), *count);
        }
    }
    Ok(Record::UsageDay {
        organization_id,
        date,
        total: row.total,
        by_resource,
    })
}

/// Import bookkeeping carried across records (and batches).
#[derive(Debug, Default, Clone)]
pub(crate) struct ImportState {
    header: bool,
    /// The last sequence number handed out: the target's counter after the import.
    audit_seq: u64,
    /// Whether each event gets the next number of the target's single feed instead of its
    /// own (a per-organization export into a single-feed database).
    renumber: bool,
    /// The feed (organization, or `None` for events without one) and source number of the
    /// last event renumbered, to refuse a feed's number that repeats or goes back.
    last_source: Option<(Option<String>, u64)>,
}

fn refused(what: &str, reason: impl Into<String>) -> Error {
    Error::invalid(what, reason)
}

/// Whether the database holds no data yet (imports go into empty databases only).
pub(crate) fn is_empty<R: KvRead + ?Sized>(tx: &R) -> Result<bool> {
    for table in [Table::Users, Table::Orgs, Table::Audit] {
        let mut any = false;
        tx.scan(table, &[], None, false, &mut |_, _| {
            any = true;
            Ok(false)
        })?;
        if any {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The header's `usage_pruned_before`, from the meta value (`None`: never pruned).
pub(crate) fn pruned_before(mark: Option<u64>) -> Option<NaiveDate> {
    mark.and_then(|n| day_from_number(u32::try_from(n).ok()?))
}

/// Writes one record. References must point at records imported before.
pub(crate) fn import(tx: &mut dyn Writes, state: &mut ImportState, record: Record) -> Result<()> {
    if !state.header && !matches!(record, Record::Header { .. }) {
        return Err(refused("header", "The first record must be the header"));
    }
    match record {
        Record::Header {
            schema_version,
            audit_seq,
            audit_feeds,
            usage_pruned_before,
        } => {
            if state.header {
                return Err(refused("header", "Only one header is allowed"));
            }
            if schema_version > EXPORT_VERSION {
                return Err(Error::IncompatibleVersion {
                    format: "export",
                    found: schema_version,
                    supported: EXPORT_VERSION,
                });
            }
            state.header = true;
            state.renumber = audit_feeds == AuditFeeds::PerOrganization && tx.single_audit_feed();
            // Renumbered events count from 1: the source's numbers mean nothing here.
            state.audit_seq = if state.renumber { 0 } else { audit_seq };
            if let Some(before) = usage_pruned_before {
                tx.raise_pruned_mark(before)?;
            }
        }
        Record::User(u) => {
            if tx.user(&u.id)?.is_some() || tx.user_id_by_email(&u.email)?.is_some() {
                return Err(refused("user", format!("{} is duplicated", u.id)));
            }
            tx.insert_user(&u)?;
        }
        Record::Organization {
            organization,
            limit_overrides,
            quota_period,
            usage_alerts,
        } => {
            if usage_alerts
                .as_deref()
                .is_some_and(|t| !valid_thresholds(t))
            {
                return Err(refused(
                    "organization",
                    format!(
                        "{}: usage_alerts must be at most {THRESHOLDS_MAX} ascending \
                         percentages from 1 to {THRESHOLD_PERCENT_MAX}",
                        organization.id
                    ),
                ));
            }
            if tx.org(&organization.id)?.is_some()
                || tx.org_id_by_slug(&organization.slug)?.is_some()
            {
                return Err(refused(
                    "organization",
                    format!("{} is duplicated", organization.id),
                ));
            }
            tx.insert_org(&OrgRecord {
                org: *organization,
                overrides: limit_overrides,
                period: quota_period,
                alerts: usage_alerts,
            })?;
        }
        Record::Membership(m) => {
            let user = match (tx.org(&m.organization_id)?, tx.user(&m.user_id)?) {
                (Some(_), Some(user)) => user,
                _ => {
                    return Err(refused(
                        "membership",
                        format!("{} names a missing user or organization", m.id),
                    ))
                }
            };
            if tx.membership(&m.organization_id, &m.user_id)?.is_some() {
                return Err(refused("membership", format!("{} is duplicated", m.id)));
            }
            if m.is_active() != m.deactivated_at.is_none() {
                return Err(refused(
                    "membership",
                    format!("{}: status and deactivated_at disagree", m.id),
                ));
            }
            tx.insert_membership(&m, &user)?;
        }
        Record::EntitlementOverride {
            organization_id,
            name,
            value,
        } => {
            if tx.org(&organization_id)?.is_none() {
                return Err(refused(
                    "entitlement_override",
                    format!("{name} names a missing organization"),
                ));
            }
            if !valid_name(&name) || SEED_LIMITS.contains(&name.as_str()) {
                return Err(refused(
                    "entitlement_override",
                    format!("{name:?} is not a name of a named limit or feature"),
                ));
            }
            if let EntitlementValue::Limit { limit: Some(n) } = value {
                if n > LIMIT_MAX {
                    return Err(refused(
                        "entitlement_override",
                        format!("{name}: the limit {n} is above {LIMIT_MAX}"),
                    ));
                }
            }
            if tx.entitlement_override(&organization_id, &name)?.is_some() {
                return Err(refused(
                    "entitlement_override",
                    format!("{name} of {organization_id} is duplicated"),
                ));
            }
            tx.put_entitlement_override(&organization_id, &name, Some(&value))?;
        }
        Record::Project(p) => {
            if tx.org(&p.organization_id)?.is_none() {
                return Err(refused(
                    "project",
                    format!("{} names a missing organization", p.id),
                ));
            }
            tx.put_project(&p)?;
        }
        Record::ProjectMember(pm) => {
            let project = tx
                .project(&pm.project_id)?
                .ok_or_else(|| refused("project_member", "Names a missing project"))?;
            if tx
                .membership(&project.organization_id, &pm.user_id)?
                .is_none()
            {
                return Err(refused(
                    "project_member",
                    "Names someone who is not a member",
                ));
            }
            tx.put_project_membership(&project.organization_id, &pm)?;
        }
        Record::Resource(r) => {
            if tx.org(&r.organization_id)?.is_none() || tx.resource(&r.id)?.is_some() {
                return Err(refused(
                    "resource",
                    format!("{} is duplicated or orphaned", r.id),
                ));
            }
            tx.insert_resource(&r)?;
            if r.removed_at.is_some() {
                tx.retire_resource(&r)?;
            }
        }
        Record::Invitation {
            invitation,
            lifetime_secs,
        } => {
            if tx.org(&invitation.organization_id)?.is_none() {
                return Err(refused(
                    "invitation",
                    format!("{} names a missing organization", invitation.id),
                ));
            }
            // The token is not exported: this one is random and unknown to anyone. A pending
            // invitation needs a resend before it can be accepted.
            let token = ids::new_token()?;
            tx.insert_invitation(&InvitationRecord {
                invitation,
                token_hash: ids::token_hash(&token),
                lifetime_secs,
            })?;
        }
        Record::UsageMonth {
            organization_id,
            month,
            total,
        } => {
            let first = month
                .split_once('-')
                .and_then(|(y, m)| {
                    NaiveDate::from_ymd_opt(y.parse::<i32>().ok()?, m.parse::<u32>().ok()?, 1)
                })
                .filter(|_| month.len() == 7)
                .ok_or_else(|| refused("month", format!("{month:?} is not YYYY-MM")))?;
            let span = Span::of(QuotaPeriod::CalendarMonth, day_number(first));
            tx.put_period_usage(&organization_id, span, total)?;
        }
        Record::UsagePeriod {
            organization_id,
            period_start,
            period_end,
            total,
        } => {
            let rule = tx.org(&organization_id)?.map(|r| r.period).ok_or_else(|| {
                refused(
                    "usage_period",
                    format!("names a missing organization {organization_id}"),
                )
            })?;
            let span = Span::of(rule, day_number(period_start));
            if span.dates() != (period_start, period_end) {
                return Err(refused(
                    "usage_period",
                    format!(
                        "{period_start}..{period_end} of {organization_id} is not a period of \
                         its quota period"
                    ),
                ));
            }
            tx.put_period_usage(&organization_id, span, total)?;
        }
        Record::UsageAlertFired {
            organization_id,
            period_start,
            period_end,
            threshold_percent,
            limit,
        } => {
            if tx.org(&organization_id)?.is_none() {
                return Err(refused(
                    "usage_alert_fired",
                    format!("names a missing organization {organization_id}"),
                ));
            }
            if !(1..=THRESHOLD_PERCENT_MAX).contains(&threshold_percent) {
                return Err(refused(
                    "usage_alert_fired",
                    format!("threshold {threshold_percent} is not 1 to {THRESHOLD_PERCENT_MAX}"),
                ));
            }
            if period_end < period_start || limit == 0 || limit > LIMIT_MAX {
                return Err(refused(
                    "usage_alert_fired",
                    format!(
                        "{period_start}..{period_end} of {organization_id} with limit {limit} \
                         is not an announcement"
                    ),
                ));
            }
            tx.put_alert_fired(
                &organization_id,
                &AlertFired {
                    span: Span {
                        start: day_number(period_start),
                        end: day_number(period_end),
                    },
                    percent: threshold_percent,
                    limit,
                },
            )?;
        }
        Record::Reservation(r) => {
            if tx.org(&r.organization_id)?.is_none() {
                return Err(refused(
                    "reservation",
                    format!("names a missing organization {}", r.organization_id),
                ));
            }
            let lifetime = r.expires_at.signed_duration_since(r.created_at);
            let resource_ok = match r.resource_id.as_deref() {
                Some(id) => tx
                    .resource_record(id)?
                    .is_some_and(|res| res.resource.organization_id == r.organization_id),
                None => true,
            };
            if r.count == 0
                || r.count > crate::ops::usage::COUNT_MAX
                || r.period_end < r.period_start
                || !r.id.starts_with("rsv_")
                || lifetime <= chrono::TimeDelta::zero()
                || lifetime > chrono::TimeDelta::days(1)
                || !resource_ok
                || tx.reservation(&r.organization_id, &r.id)?.is_some()
            {
                return Err(refused(
                    "reservation",
                    format!("{} is malformed or duplicated", r.id),
                ));
            }
            tx.put_reservation(&r)?;
        }
        Record::UsageDay {
            organization_id,
            date,
            total,
            by_resource,
        } => {
            let mut row = DayRow {
                total,
                columns: Vec::new(),
            };
            let mut attributed = 0u64;
            for (id, count) in by_resource {
                let rec = tx
                    .resource_record(&id)?
                    .filter(|r| r.resource.organization_id == organization_id)
                    .ok_or_else(|| {
                        refused(
                            "by_resource",
                            format!("{id} is not a resource of {organization_id}"),
                        )
                    })?;
                let i = rec.column as usize;
                if row.columns.len() <= i {
                    row.columns.resize(i + 1, 0);
                }
                row.columns[i] = count;
                attributed = attributed.saturating_add(count);
            }
            if attributed > total {
                return Err(refused("total", "Is less than the sum of by_resource"));
            }
            tx.put_day_row(&organization_id, day_number(date), &row)?;
        }
        Record::IdempotencyKey {
            organization_id,
            key,
            recorded_at,
        } => {
            tx.put_idempotency(&organization_id, &key, recorded_at.timestamp_micros())?;
        }
        Record::AuditEvent(mut e) if state.renumber => {
            if e.seq == 0 {
                return Err(refused("audit_event", "seq 0 is not a sequence number"));
            }
            // The export lists each feed in increasing order: a number that repeats or goes
            // back within a run of one feed is a duplicate (or a reordered file).
            if let Some((feed, seq)) = &state.last_source {
                if *feed == e.organization_id && *seq >= e.seq {
                    return Err(refused(
                        "audit_event",
                        format!(
                            "seq {} of {} is duplicated or out of order",
                            e.seq,
                            e.organization_id.as_deref().unwrap_or("the user feed")
                        ),
                    ));
                }
            }
            state.last_source = Some((e.organization_id.clone(), e.seq));
            let next = state
                .audit_seq
                .checked_add(1)
                .ok_or_else(|| refused("audit_event", "Too many events"))?;
            e.seq = next;
            if !tx.insert_audit_event(&e)? {
                return Err(refused("audit_event", format!("seq {next} is duplicated")));
            }
            state.audit_seq = next;
        }
        Record::AuditEvent(e) => {
            if e.seq == 0 || !tx.insert_audit_event(&e)? {
                return Err(refused(
                    "audit_event",
                    format!("seq {} is duplicated", e.seq),
                ));
            }
            let seq = e.seq;
            state.audit_seq = state.audit_seq.max(seq);
        }
    }
    Ok(())
}

/// Ends an import batch: the audit sequence continues after the imported events (after the
/// last renumbered one when the import renumbers).
pub(crate) fn finish_batch(tx: &mut dyn Writes, state: &ImportState) -> Result<()> {
    tx.set_audit_seq(state.audit_seq)
}
